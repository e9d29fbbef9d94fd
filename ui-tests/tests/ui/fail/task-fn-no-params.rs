//! A task function takes its payload as its first parameter.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "heartbeat")]
async fn heartbeat() -> Result<(), String> {
    Ok(())
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Heartbeat>().build()?;
    let run = engine.trigger::<Heartbeat>(()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Heartbeat::ID, done.output.map(|()| 1));
    Ok(())
}

fn main() {
    let _ = app;
}
