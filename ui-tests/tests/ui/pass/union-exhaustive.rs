//! A union matched exhaustively, each arm reading its own task's typed payload and output.

use runcast::{FromAnyRun, RunInfo, RunUnion, TaskContext, realtime_union, task};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resize {
    pub width: u32,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resized {
    pub url: String,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Transcode {
    pub codec: String,
}

#[task(id = "resize-image")]
async fn resize_image(payload: Resize, _ctx: TaskContext) -> Result<Resized, String> {
    Ok(Resized { url: payload.width.to_string() })
}

#[task(id = "transcode-video", payload = Transcode, output = u64)]
pub struct TranscodeVideo;

mod billing {
    #[runcast::task(id = "charge", payload = u64, output = bool)]
    pub struct Charge;
}

realtime_union! {
    /// What the media page shows.
    #[derive(Debug)]
    pub enum MediaRun {
        ResizeImage,
        TranscodeVideo,
        Payment(billing::Charge),
    }
}

fn describe(run: &MediaRun) -> String {
    match run {
        MediaRun::ResizeImage(run) => {
            let width: u32 = run.payload.width;
            let url: Option<&String> = run.output.as_ref().map(|o| &o.url);
            format!("resize {width} {url:?}")
        }
        MediaRun::TranscodeVideo(run) => {
            let codec: &str = &run.payload.codec;
            let bytes: Option<u64> = run.output;
            format!("transcode {codec} {bytes:?}")
        }
        MediaRun::Payment(run) => format!("charge {} {:?}", run.payload, run.output),
    }
}

fn main() {
    assert_eq!(
        MediaRun::TASK_IDENTIFIERS,
        ["resize-image", "transcode-video", "charge"]
    );
    let json = r#"{"id":"run_1","taskIdentifier":"transcode-video","payload":{"codec":"av1"},"output":42,
        "status":"COMPLETED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
    let run = MediaRun::from_json(json).unwrap();
    assert_eq!(describe(&run), "transcode av1 Some(42)");
    assert_eq!(run.id().as_str(), "run_1");
    assert_eq!(run.task_identifier(), "transcode-video");
    let any = serde_json::from_str(json).unwrap();
    assert!(matches!(MediaRun::from_any_run(any), Ok(MediaRun::TranscodeVideo(_))));
}
