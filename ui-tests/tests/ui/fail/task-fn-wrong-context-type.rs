//! The second parameter of a task function is a `runcast::TaskContext`.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "resize-image")]
async fn resize_image(width: u32, run_id: String) -> Result<u32, String> {
    let _ = run_id;
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
