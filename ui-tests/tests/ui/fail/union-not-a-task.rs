//! Every member of a `realtime_union!` is a type declared with `#[task]`. One error, at that
//! type: the union is still declared, and its uses add no errors of their own.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "a", payload = u8, output = u8, streams(log = String))]
pub struct A;

pub struct NotATask;

realtime_union! {
    pub enum Feed {
        A,
        NotATask,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Feed>(["feed"])
        .await?
        .with_streams();
    while let Some(item) = feed.next().await {
        match item? {
            Realtime::Run(update) => match update.run {
                Feed::A(run) => println!("{}", run.payload),
                Feed::NotATask(run) => println!("{}", run.id),
            },
            Realtime::Chunk(FeedChunk::A(chunk)) => match chunk.data {
                AChunk::Log(line) => println!("{line}"),
            },
            Realtime::Chunk(FeedChunk::NotATask(chunk)) => println!("{:?}", chunk.data),
        }
    }
    println!("{:?}", Feed::TASK_IDENTIFIERS);
    Ok(())
}

fn main() {
    let _ = app;
}
