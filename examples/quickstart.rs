//! The runcast tour: declare tasks, list them in a union, and turn a feed of run snapshots into
//! typed values you `match` on.
//!
//! The feed here is a recording of what a tag subscription delivers (the embedded engine that
//! produces live feeds is the next step of the project), decoded exactly as a live one is.
//!
//! Run with `cargo run --example quickstart`.

#![allow(clippy::print_stdout)]

use futures::executor::block_on;
use futures::stream::{self, StreamExt};
use runcast::prelude::*;
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

/// A task run in this process: `#[task]` makes the struct `ResizeImage` from the fn.
#[task(id = "resize-image")]
async fn resize_image(payload: Resize, _ctx: TaskContext) -> Result<Resized, String> {
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

/// A task run by another service: only its identifier and types are declared here.
#[task(id = "transcode-video", payload = Transcode, output = u64)]
struct TranscodeVideo;

realtime_union! {
    /// Every run tagged for one user's media page.
    #[derive(Debug)]
    enum MediaRun {
        ResizeImage,
        TranscodeVideo,
        _ => Other,
    }
}

/// What a subscription to the tag `user:42` delivered, one snapshot per change.
const RECORDED_FEED: &str = r#"
{"id":"run_a1","taskIdentifier":"resize-image","payload":{"url":"https://img.example/cat.png","width":640},"status":"QUEUED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z","tags":["user:42"]}
{"id":"run_b2","taskIdentifier":"transcode-video","payload":{"source":"s3://in/clip.mov","codec":"av1"},"status":"EXECUTING","createdAt":"2024-11-01T12:00:00.100Z","updatedAt":"2024-11-01T12:00:01.000Z","tags":["user:42"],"metadata":{"progress":0.3}}
{"id":"run_a1","taskIdentifier":"resize-image","payload":{"url":"https://img.example/cat.png","width":640},"output":{"url":"https://img.example/cat.png?w=640","bytes":76800},"status":"COMPLETED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:02.000Z","finishedAt":"2024-11-01T12:00:02.000Z","durationMs":1870,"tags":["user:42"]}
{"id":"run_c3","taskIdentifier":"send-newsletter","payload":{"list":"weekly"},"status":"QUEUED","createdAt":"2024-11-01T12:00:03.000Z","updatedAt":"2024-11-01T12:00:03.000Z","tags":["user:42"]}
{"id":"run_b2","taskIdentifier":"transcode-video","payload":{"source":"s3://in/clip.mov","codec":"av1"},"output":"many","status":"COMPLETED","createdAt":"2024-11-01T12:00:00.100Z","updatedAt":"2024-11-01T12:00:04.000Z","tags":["user:42"]}
{"id":"run_b2","taskIdentifier":"transcode-video","payload":{"source":"s3://in/clip.mov","codec":"av1"},"output":1048576,"status":"COMPLETED","createdAt":"2024-11-01T12:00:00.100Z","updatedAt":"2024-11-01T12:00:04.000Z","tags":["user:42"]}
"#;

/// The recording as a stream of untyped snapshots, as a subscription yields them.
fn feed() -> impl futures::Stream<Item = Result<AnyRun, DecodeError>> {
    stream::iter(RECORDED_FEED.lines().filter(|line| !line.is_empty()))
        .map(|line| serde_json::from_str::<AnyRun>(line).map_err(DecodeError::Malformed))
}

fn main() {
    block_on(async {
        println!("-- tag feed, as MediaRun --");
        let mut runs = feed().union::<MediaRun>();
        while let Some(run) = runs.next().await {
            match run {
                Ok(MediaRun::ResizeImage(run)) => match &run.output {
                    Some(out) => println!(
                        "{} resize {}: {} bytes at {}",
                        run.id, run.status, out.bytes, out.url
                    ),
                    None => println!(
                        "{} resize {} (width {})",
                        run.id, run.status, run.payload.width
                    ),
                },
                Ok(MediaRun::TranscodeVideo(run)) => {
                    let progress = run.metadata.as_ref().and_then(|m| m.get("progress"));
                    println!(
                        "{} transcode to {} {}: output {:?}, progress {:?}",
                        run.id, run.payload.codec, run.status, run.output, progress
                    );
                }
                Ok(MediaRun::Other(run)) => {
                    println!(
                        "{} {} of a task this page does not show: {}",
                        run.id, run.status, run.task_identifier
                    );
                }
                // A bad snapshot is an item, not the end of the feed.
                Err(err) => println!("skipped: {err}"),
            }
        }

        println!("-- one run, typed, until it finishes --");
        let mut one = feed()
            .filter(|run| std::future::ready(matches!(run, Ok(run) if run.id == "run_a1")))
            .until_finished()
            .typed::<ResizeImage>();
        while let Some(run) = one.next().await {
            match run {
                Ok(run) => println!("{} {} at {}", run.id, run.status, run.updated_at),
                Err(err) => println!("skipped: {err}"),
            }
        }
    });
}
