//! `#[task]` needs an `id`: the identifier is what runs are matched by. The task is still
//! declared (struct, `Task` and `TaskFn` impls, stream constants, chunk enum), so its uses
//! below add no errors of their own.

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

#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub done: u32,
}

#[task(metadata = Progress, streams(log = String))]
async fn resize_image(payload: Resize, ctx: TaskContext) -> Result<Resized, StreamError> {
    ctx.stream(ResizeImage::LOG).append(&payload.url).await?;
    Ok(Resized { url: payload.url })
}

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail;

realtime_union! {
    pub enum Media {
        ResizeImage,
        SendEmail,
    }
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<ResizeImage>().build()?;
    let resize = Resize { url: "u".into(), width: 64 };
    let run = engine.trigger::<ResizeImage>(resize).await?;
    let mut updates = engine.subscribe_to_run(&run).await?.with_streams();
    while let Some(item) = updates.next().await {
        match item? {
            Realtime::Run(update) => {
                let done = update.run.metadata.map(|m: Progress| m.done);
                let url = update.run.output.map(|o| o.url);
                println!("{} {url:?} {done:?}", update.run.status);
            }
            Realtime::Chunk(chunk) => match chunk.data {
                ResizeImageChunk::Log(line) => println!("{line}"),
            },
        }
    }
    println!("{} {}", ResizeImage::ID, <ResizeImage as Task>::ID);
    let mut media = engine.subscribe_to_runs_with_tag::<Media>(["media"]).await?;
    while let Some(run) = media.next().await {
        match run?.run {
            Media::ResizeImage(run) => println!("{}", run.payload.width),
            Media::SendEmail(run) => println!("{}", run.payload),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
