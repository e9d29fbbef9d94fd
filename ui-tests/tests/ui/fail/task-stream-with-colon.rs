//! A stream is declared `key = ChunkType`, not with a struct field's `:`.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::{Engine, StreamError};

#[task(id = "chat", streams(tokens: String))]
async fn chat(prompt: String, ctx: TaskContext) -> Result<(), StreamError> {
    ctx.stream(Chat::TOKENS).append(&prompt).await?;
    Ok(())
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Chat>().build()?;
    let run = engine.trigger::<Chat>("hello".into()).await?;
    let mut items = engine.subscribe_to_run(&run).await?.with_streams();
    while let Some(item) = items.next().await {
        match item? {
            Realtime::Run(update) => println!("{:?}", update.run.output),
            Realtime::Chunk(chunk) => match chunk.data {
                ChatChunk::Tokens(token) => println!("{token}"),
            },
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
