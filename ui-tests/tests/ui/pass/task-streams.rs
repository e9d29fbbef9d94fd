//! Streams and metadata declared in `#[task]`: a `StreamKey` constant per stream, typed
//! writers, the task's chunk enum, and typed metadata, on a fn task and on a struct task.

use runcast::{
    Chunk, NoStreams, Realtime, Run, StreamError, StreamKey, StreamWriter, Task, TaskChunk,
    TaskContext, realtime_union, task,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Row {
    pub n: u32,
}

#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub done: f64,
}

#[task(id = "chat", metadata = Progress, streams(tokens = String, rows = Row))]
pub async fn chat(prompt: String, ctx: TaskContext) -> Result<usize, StreamError> {
    let tokens: StreamWriter<String> = ctx.stream(Chat::TOKENS);
    tokens.append(&prompt).await?;
    ctx.stream(Chat::ROWS).append(&Row { n: 1 }).await?;
    let words = futures::stream::iter(prompt.split(' ').map(str::to_owned).collect::<Vec<_>>());
    tokens.pipe(words).await?;
    Ok(prompt.len())
}

#[task(id = "report", payload = u32, output = u32, streams(log_lines = String))]
pub struct Report;

#[task(id = "plain", payload = u8, output = u8)]
pub struct Plain;

realtime_union! {
    pub enum Feed {
        Chat,
        Report,
        Plain,
    }
}

fn describe(item: Realtime<Feed, FeedChunk>) -> String {
    match item {
        Realtime::Run(update) => match update.run {
            Feed::Chat(run) => format!("{:?}", run.metadata.map(|m: Progress| m.done)),
            Feed::Report(run) => format!("{:?}", run.output),
            Feed::Plain(run) => format!("{}", run.payload),
        },
        Realtime::Chunk(FeedChunk::Chat(chunk)) => match chunk.data {
            ChatChunk::Tokens(token) => token,
            ChatChunk::Rows(row) => row.n.to_string(),
        },
        Realtime::Chunk(FeedChunk::Report(chunk)) => match chunk.data {
            ReportChunk::LogLines(line) => line,
        },
        Realtime::Chunk(FeedChunk::Plain(chunk)) => match chunk.data {},
    }
}

fn main() {
    const TOKENS: StreamKey<Chat, String> = Chat::TOKENS;
    assert_eq!(TOKENS.key(), "tokens");
    assert_eq!(Report::LOG_LINES.key(), "log_lines");
    assert_eq!(<Chat as Task>::Chunk::STREAMS, ["tokens", "rows"]);
    assert!(<NoStreams as TaskChunk>::STREAMS.is_empty());
    let _: fn(Run<Chat>) -> Option<Progress> = |run| run.metadata;
    let _: fn(Chunk<Report>) -> ReportChunk = |chunk| chunk.data;
    let _ = describe;
}
