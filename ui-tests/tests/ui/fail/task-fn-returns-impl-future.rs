//! A task function is an `async fn`, not a `fn` returning `impl Future`: one error, which
//! says what to write.

use std::future::Future;

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "double")]
fn double(n: u64) -> impl Future<Output = Result<u64, String>> + Send {
    async move { Ok(n * 2) }
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Double>().build()?;
    let run = engine.trigger::<Double>(21).await?;
    println!("{:?}", engine.wait(&run).await?.output.map(|n| n + 1));
    Ok(())
}

fn main() {
    let _ = app;
}
