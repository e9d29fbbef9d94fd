//! The payload of a task function is a named type, not `impl Trait`: the task's `Payload`
//! type must be nameable.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "greet")]
async fn greet(name: impl AsRef<str> + Send) -> Result<String, String> {
    Ok(format!("hello {}", name.as_ref()))
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Greet>().build()?;
    let run = engine.trigger::<Greet>("ann".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Greet::ID, done.output.map(|s| s.len()));
    Ok(())
}

fn main() {
    let _ = app;
}
