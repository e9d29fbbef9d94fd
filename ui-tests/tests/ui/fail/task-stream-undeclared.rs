//! Writing to a stream the task does not declare does not compile.

use runcast::{StreamError, TaskContext, task};

#[task(id = "chat", streams(tokens = String))]
async fn chat(prompt: String, ctx: TaskContext) -> Result<(), StreamError> {
    ctx.stream(Chat::ROWS).append(&prompt).await?;
    Ok(())
}

fn main() {}
