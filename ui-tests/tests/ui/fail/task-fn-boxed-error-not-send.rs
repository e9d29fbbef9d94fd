//! A task function's error is sent from the worker that ran it: `Box<dyn Error>` is not
//! `Send`; `Box<dyn Error + Send + Sync>` is.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "parse")]
async fn parse(text: String) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(text.parse()?)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Parse>().build()?;
    let run = engine.trigger::<Parse>("42".into()).await?;
    println!("{:?}", engine.wait(&run).await?.output.map(|n| n + 1));
    Ok(())
}

fn main() {
    let _ = app;
}
