//! The runcast tour: declare tasks, list them in a union, trigger runs on the embedded engine
//! and follow their changes as typed values you `match` on.
//!
//! Run with `cargo run --example quickstart`.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use futures::StreamExt;
use runcast::prelude::*;
use runcast::{Engine, MetadataOp, TriggerOptions};
use serde::{Deserialize, Serialize};

/// What `resize-image` is triggered with.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Resize {
    url: String,
    width: u32,
}

/// What `resize-image` returns.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Resized {
    url: String,
    bytes: u64,
}

/// A task run by the engine: `#[task]` makes the struct `ResizeImage` from the fn. It reports
/// its progress through the run's metadata, which every subscriber sees.
#[task(id = "resize-image")]
async fn resize_image(payload: Resize, ctx: TaskContext) -> Result<Resized, String> {
    for step in 1..=4 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let progress = f64::from(step) / 4.0;
        ctx.update_metadata([MetadataOp::Set("progress".into(), progress.into())])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Resized {
        url: format!("{}?w={}", payload.url, payload.width),
        bytes: u64::from(payload.width) * 120,
    })
}

/// What `transcode-video` is triggered with.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Transcode {
    source: String,
    codec: String,
}

/// Fails its first attempt, to show a retry.
#[task(id = "transcode-video")]
async fn transcode_video(payload: Transcode, ctx: TaskContext) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    if ctx.attempt() == 1 {
        return Err(format!("{} encoder busy", payload.codec));
    }
    Ok(1_048_576)
}

realtime_union! {
    /// Every run tagged for one user's media page.
    #[derive(Debug)]
    enum MediaRun {
        ResizeImage,
        TranscodeVideo,
        _ => Other,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .task::<ResizeImage>()
        .task::<TranscodeVideo>()
        .retry_delay(Duration::from_millis(20))
        .build()?;

    // A feed of every run tagged `user:42`, typed by task.
    let mut feed = engine
        .subscribe_to_runs_with_tag::<MediaRun>(["user:42"])
        .await?;

    let tagged = TriggerOptions::default().tag("user:42");
    let image = engine
        .trigger_with::<ResizeImage>(
            Resize {
                url: "https://img.example/cat.png".into(),
                width: 640,
            },
            tagged.clone(),
        )
        .await?;
    engine
        .trigger_with::<TranscodeVideo>(
            Transcode {
                source: "s3://in/clip.mov".into(),
                codec: "av1".into(),
            },
            tagged,
        )
        .await?;

    println!("-- one run, typed, every state until it finishes --");
    // With the handle, the subscription starts before the run was created: every state.
    let mut updates = engine.subscribe_to_run(&image).await?;
    while let Some(update) = updates.next().await {
        let run = update?.run;
        match &run.output {
            Some(out) => println!(
                "{} {}: {} bytes at {}",
                run.id, run.status, out.bytes, out.url
            ),
            None => {
                let progress = run.metadata.as_ref().and_then(|m| m.get("progress"));
                let progress = progress.and_then(|p| p.as_f64()).unwrap_or(0.0);
                println!("{} {}: {:.0}% done", run.id, run.status, progress * 100.0);
            }
        }
    }

    println!("-- the user's tag feed, as MediaRun --");
    // A tag feed never ends on its own: stop reading when done.
    let mut finished = 0;
    while finished < 2 {
        let Some(update) = feed.next().await else {
            break;
        };
        let update = update?;
        match &update.run {
            MediaRun::ResizeImage(run) => println!(
                "[{}] {} resize {}: {:?}",
                update.cursor,
                run.id,
                run.status,
                run.output.as_ref().map(|o| o.bytes)
            ),
            MediaRun::TranscodeVideo(run) => println!(
                "[{}] {} transcode to {} {}: output {:?}, error {:?}",
                update.cursor,
                run.id,
                run.payload.codec,
                run.status,
                run.output,
                run.error.as_ref().map(|e| &e.message)
            ),
            MediaRun::Other(run) => println!(
                "[{}] {} {} of another task",
                update.cursor, run.id, run.status
            ),
        }
        if update.run.status().is_final() {
            finished += 1;
        }
    }
    Ok(())
}
