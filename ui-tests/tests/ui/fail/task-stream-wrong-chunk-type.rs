//! A chunk of the wrong type does not compile: `tokens` carries `String`s.

use runcast::{StreamError, TaskContext, task};

#[task(id = "chat", streams(tokens = String))]
async fn chat(prompt: String, ctx: TaskContext) -> Result<(), StreamError> {
    ctx.stream(Chat::TOKENS).append(&42u32).await?;
    let _ = prompt;
    Ok(())
}

fn main() {}
