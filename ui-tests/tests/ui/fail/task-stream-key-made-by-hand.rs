//! A stream key is the task's to declare: one made by hand, with another type or key, does not
//! compile.

use runcast::{StreamError, StreamKey, TaskContext, task};

#[task(id = "chat", streams(tokens = String))]
async fn chat(prompt: String, ctx: TaskContext) -> Result<(), StreamError> {
    let numbers = StreamKey::<Chat, u64>::new("tokens");
    ctx.stream(numbers).append(&prompt.len().try_into().unwrap()).await?;
    Ok(())
}

fn main() {}
