//! The payload of a task function is a named type, not `impl Trait`: the task's `Payload`
//! type must be nameable.

use runcast::task;

#[task(id = "greet")]
async fn greet(name: impl AsRef<str> + Send) -> Result<String, String> {
    Ok(format!("hello {}", name.as_ref()))
}

fn main() {}
