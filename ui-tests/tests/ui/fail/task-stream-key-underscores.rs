//! A stream key must name a variant of the chunk enum: not only underscores.

use runcast::prelude::*;
use runcast::{Engine, StreamError};

#[task(id = "chat", streams(__ = String))]
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
