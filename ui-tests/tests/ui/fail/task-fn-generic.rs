//! A task function cannot be generic: a task has one payload type and one output type.

use runcast::task;

#[task(id = "echo")]
async fn echo<T: Send>(payload: T) -> Result<T, String> {
    Ok(payload)
}

fn main() {}
