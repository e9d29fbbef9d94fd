//! The output of a task function (the `Ok` type of its `Result`) crosses the wire: it
//! implements `Serialize` and `Deserialize`.

use runcast::prelude::*;
use runcast::Engine;

#[derive(Debug, schemars::JsonSchema)]
pub struct Resized {
    pub url: String,
}

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> Result<Resized, String> {
    Ok(Resized {
        url: width.to_string(),
    })
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<ResizeImage>().build()?;
    let run = engine.trigger::<ResizeImage>(64).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", ResizeImage::ID, done.output.map(|resized| resized.url));
    Ok(())
}

fn main() {
    let _ = app;
}
