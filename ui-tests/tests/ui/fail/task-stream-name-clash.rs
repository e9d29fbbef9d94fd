//! Two streams whose constants or variants would collide.

use runcast::prelude::*;
use runcast::{Engine, StreamError};

#[task(id = "chat", streams(log_lines = String, logLines = u8))]
async fn chat(prompt: String, ctx: TaskContext) -> Result<usize, StreamError> {
    ctx.stream(Chat::LOG_LINES).append(&prompt).await?;
    Ok(prompt.len())
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Chat>().build()?;
    let run = engine.trigger::<Chat>("hello".into()).await?;
    println!("{} {:?}", Chat::ID, engine.wait(&run).await?.output);
    Ok(())
}

fn main() {
    let _ = app;
}
