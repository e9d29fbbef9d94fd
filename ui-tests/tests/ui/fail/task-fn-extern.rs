//! A task function cannot have an `extern` ABI.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "ffi")]
async extern "C" fn ffi(n: u32) -> Result<u32, String> {
    Ok(n)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Ffi>().build()?;
    let run = engine.trigger::<Ffi>(3).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Ffi::ID, done.output.map(|n| n + 1));
    Ok(())
}

fn main() {
    let _ = app;
}
