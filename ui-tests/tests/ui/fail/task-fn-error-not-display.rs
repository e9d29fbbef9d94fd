//! The error type of a task function implements `Display`: it becomes the run's error message.

use runcast::prelude::*;
use runcast::Engine;

#[derive(Debug)]
pub struct ResizeError;

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> Result<u32, ResizeError> {
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
