//! A task function must be `async`. The task is still declared, and the function compiled as
//! the `async fn` it should be, so neither its body nor the task's uses add errors.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::{Engine, StreamError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resize {
    pub url: String,
    pub width: u32,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resized {
    pub url: String,
}

#[task(id = "resize-image", streams(log = String))]
fn resize_image(payload: Resize, ctx: TaskContext) -> Result<Resized, StreamError> {
    ctx.stream(ResizeImage::LOG).append(&payload.url).await?;
    Ok(Resized { url: payload.url })
}

realtime_union! {
    pub enum Media {
        ResizeImage,
    }
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<ResizeImage>().build()?;
    let resize = Resize { url: "u".into(), width: 64 };
    let run = engine.trigger::<ResizeImage>(resize).await?;
    let mut updates = engine.subscribe_to_run(&run).await?.with_streams();
    while let Some(item) = updates.next().await {
        match item? {
            Realtime::Run(update) => println!("{:?}", update.run.output.map(|o| o.url)),
            Realtime::Chunk(chunk) => match chunk.data {
                ResizeImageChunk::Log(line) => println!("{line}"),
            },
        }
    }
    let mut media = engine.subscribe_to_runs_with_tag::<Media>(["media"]).await?;
    while let Some(run) = media.next().await {
        match run?.run {
            Media::ResizeImage(run) => println!("{} {}", ResizeImage::ID, run.payload.width),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
