//! A task function takes its context by value: `ctx: TaskContext`, not `&TaskContext`.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "count")]
async fn count(n: u32, ctx: &TaskContext) -> Result<u32, String> {
    println!("attempt {}", ctx.attempt());
    Ok(n)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Count>().build()?;
    let run = engine.trigger::<Count>(3).await?;
    println!("{:?}", engine.wait(&run).await?.output);
    Ok(())
}

fn main() {
    let _ = app;
}
