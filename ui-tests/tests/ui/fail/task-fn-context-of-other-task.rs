//! A task function's context is its own: `ctx: TaskContext`, which the macro makes the
//! context of this task, not another task's.

use runcast::prelude::*;
use runcast::{Engine, StreamError};

#[task(id = "chat", streams(tokens = String))]
async fn chat(prompt: String, ctx: TaskContext) -> Result<(), StreamError> {
    ctx.stream(Chat::TOKENS).append(&prompt).await?;
    Ok(())
}

#[task(id = "summarize")]
async fn summarize(text: String, ctx: TaskContext<Chat>) -> Result<usize, StreamError> {
    ctx.stream(Chat::TOKENS).append(&text).await?;
    Ok(text.len())
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Chat>().task::<Summarize>().build()?;
    let run = engine.trigger::<Summarize>("a long text".into()).await?;
    println!("{:?}", engine.wait(&run).await?.output);
    Ok(())
}

fn main() {
    let _ = app;
}
