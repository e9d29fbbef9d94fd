//! A task function cannot be generic: a task has one payload type and one output type.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "echo")]
async fn echo<T: Send>(payload: T) -> Result<T, String> {
    Ok(payload)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Echo>().build()?;
    let run = engine.trigger::<Echo>("hi".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Echo::ID, done.output.map(|s| s.len()));
    Ok(())
}

fn main() {
    let _ = app;
}
