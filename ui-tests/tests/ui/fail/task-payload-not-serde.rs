//! A task payload crosses the wire: it implements `Serialize` and `Deserialize`.

use runcast::prelude::*;
use runcast::Engine;

#[derive(Debug, schemars::JsonSchema)]
pub struct Resize {
    pub width: u32,
}

#[task(id = "resize-image")]
async fn resize_image(payload: Resize, _ctx: TaskContext) -> Result<u32, String> {
    Ok(payload.width)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<ResizeImage>().build()?;
    let run = engine.trigger::<ResizeImage>(Resize { width: 64 }).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", ResizeImage::ID, done.output.map(|width| width * 2));
    Ok(())
}

fn main() {
    let _ = app;
}
