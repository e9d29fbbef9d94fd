//! A task function takes at most two parameters: the payload and the context.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "resize-image")]
async fn resize_image(width: u32, _ctx: TaskContext, height: u32) -> Result<u32, String> {
    Ok(width * height)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<ResizeImage>().build()?;
    let run = engine.trigger::<ResizeImage>(64).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", ResizeImage::ID, done.output.map(|area| area * 2));
    Ok(())
}

fn main() {
    let _ = app;
}
