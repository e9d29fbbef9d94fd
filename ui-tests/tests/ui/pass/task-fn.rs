//! An async fn task: the struct, its `Task` and `TaskFn` impls, and the fn still callable.

use runcast::{Task, TaskContext, TaskFn, task};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResizePayload {
    pub url: String,
    pub width: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResizeOutput {
    pub url: String,
}

#[derive(Debug)]
pub struct ResizeError;

impl std::fmt::Display for ResizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("resize failed")
    }
}

/// Resizes an image.
#[task(id = "resize-image")]
pub async fn resize_image(payload: ResizePayload, ctx: TaskContext) -> Result<ResizeOutput, ResizeError> {
    let _ = ctx.run_id();
    Ok(ResizeOutput { url: format!("{}?w={}", payload.url, payload.width) })
}

/// Without a context, and with an aliased `Result`.
#[task(id = "media/thumbnail.v2")]
async fn thumbnail(width: u32) -> std::io::Result<Vec<u8>> {
    Ok(vec![0; width as usize])
}

// The identifier is a constant: usable in const contexts and as a pattern.
const ID: &str = ResizeImage::ID;
const GENERIC_ID: &str = <Thumbnail as Task>::ID;

fn describe(task_identifier: &str) -> &'static str {
    match task_identifier {
        ResizeImage::ID => "resize",
        <Thumbnail as Task>::ID => "thumbnail",
        _ => "other",
    }
}

fn assert_task_fn<T: TaskFn<Payload = P, Output = O>, P, O>() {}

fn main() {
    assert_eq!(ID, "resize-image");
    assert_eq!(GENERIC_ID, "media/thumbnail.v2");
    assert_eq!(describe("media/thumbnail.v2"), "thumbnail");
    assert_task_fn::<ResizeImage, ResizePayload, ResizeOutput>();
    assert_task_fn::<Thumbnail, u32, Vec<u8>>();
    let schema = serde_json::to_value(ResizeImage::payload_schema()).unwrap();
    assert_eq!(schema["properties"]["width"]["type"], "integer");

    let payload = ResizePayload { url: "u".into(), width: 3 };
    let fut = resize_image(payload, TaskContext::new("run_1".into()));
    let _: &dyn std::future::Future<Output = Result<ResizeOutput, ResizeError>> = &fut;
    let _ = ResizeImage::run(ResizePayload { url: "u".into(), width: 3 }, TaskContext::new("run_1".into()));
    let _ = Thumbnail::run(3, TaskContext::new("run_2".into()));
    let _ = thumbnail(3);
}
