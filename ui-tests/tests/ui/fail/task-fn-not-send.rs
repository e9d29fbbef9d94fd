//! The future of a task function is `Send`: the engine runs it on a multi-threaded pool.

use std::rc::Rc;

use runcast::prelude::*;
use runcast::Engine;

async fn tick() {}

#[task(id = "count")]
async fn count(n: u32) -> Result<u32, String> {
    let shared = Rc::new(n);
    tick().await;
    Ok(*shared)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Count>().build()?;
    let run = engine.trigger::<Count>(3).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Count::ID, done.output.map(|n| n + 1));
    Ok(())
}

fn main() {
    let _ = app;
}
