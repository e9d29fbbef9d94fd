//! A task function takes its payload first and its context second.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "count")]
async fn count(ctx: TaskContext, n: u32) -> Result<u32, String> {
    println!("attempt {}", ctx.attempt());
    Ok(n)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Count>().build()?;
    let run = engine.trigger::<Count>(3).await?;
    println!("{:?}", engine.wait(&run).await?.output.map(|n| n + 1));
    Ok(())
}

fn main() {
    let _ = app;
}
