//! A task `id` uses only ASCII letters, digits, `-`, `_`, `.` and `/`.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "resize image", payload = u32, output = u32)]
pub struct ResizeImage;

realtime_union! {
    pub enum Feed {
        ResizeImage,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<ResizeImage>(64).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", ResizeImage::ID, done.output.map(|width| width * 2));
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::ResizeImage(run) => println!("{:?}", run.payload),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
