//! A task function returns a `Result` (or an alias of one), not a bare output.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> u32 {
    width
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<ResizeImage>().build()?;
    let run = engine.trigger::<ResizeImage>(64).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", ResizeImage::ID, done.output.map(|width| width * 2));
    Ok(())
}

fn main() {
    let _ = app;
}
