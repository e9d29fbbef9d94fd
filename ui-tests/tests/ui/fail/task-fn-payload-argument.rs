//! `payload = ...` is for `#[task]` on a struct; a task function's payload is its first
//! parameter's type.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "resize-image", payload = u32)]
async fn resize_image(width: u32) -> Result<u32, String> {
    Ok(width)
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
