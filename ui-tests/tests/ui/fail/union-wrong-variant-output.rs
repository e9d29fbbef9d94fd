//! Each variant of a `realtime_union!` holds its own task's run: its `output` is that task's
//! output type, never another's.

use runcast::{realtime_union, task};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resized {
    pub url: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Transcoded {
    pub bytes: u64,
}

#[task(id = "resize-image", payload = u32, output = Resized)]
pub struct ResizeImage;

#[task(id = "transcode-video", payload = String, output = Transcoded)]
pub struct TranscodeVideo;

realtime_union! {
    pub enum MediaRun {
        ResizeImage,
        TranscodeVideo,
    }
}

fn size(run: MediaRun) -> u64 {
    match run {
        MediaRun::ResizeImage(run) => run.output.unwrap().bytes,
        MediaRun::TranscodeVideo(run) => run.output.unwrap().bytes,
    }
}

fn main() {
    let _ = size;
}
