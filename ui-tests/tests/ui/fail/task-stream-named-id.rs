//! A stream cannot be named `id`: its constant would be the task's `ID`.

use runcast::prelude::*;
use runcast::{Engine, StreamError};

#[task(id = "chat", streams(id = String))]
async fn chat(prompt: String) -> Result<usize, StreamError> {
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
