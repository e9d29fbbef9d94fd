//! What `#[task]` generates, used as a program would: the identifier, the schemas, and running
//! the function through `TaskFn`.

mod common;

use common::{Resize, ResizeImage, SendEmail, resize_image};
use futures::executor::block_on;
use runcast::{Task, TaskContext, TaskFn, task};

#[task(id = "fail-on-zero")]
async fn fail_on_zero(n: u32) -> Result<u32, std::num::TryFromIntError> {
    u8::try_from(n).map(u32::from)
}

#[test]
fn task_fn_runs_the_function_with_payload_and_context() {
    let payload = Resize {
        url: "u".into(),
        width: 7,
    };
    let output = block_on(ResizeImage::run(
        payload.clone(),
        TaskContext::new("run_1".into()),
    ));
    assert_eq!(output.unwrap().bytes, 70);
    // The function itself is still there, for unit tests.
    let direct = block_on(resize_image(payload, TaskContext::new("run_1".into())));
    assert_eq!(direct.unwrap().bytes, 70);
}

#[test]
fn task_fn_returns_the_functions_error() {
    assert_eq!(
        block_on(FailOnZero::run(9, TaskContext::new("run_2".into()))).unwrap(),
        9
    );
    let err = block_on(FailOnZero::run(300, TaskContext::new("run_2".into()))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "out of range integral type conversion attempted"
    );
}

#[test]
fn identifiers_and_schemas() {
    assert_eq!(ResizeImage::ID, "resize-image");
    assert_eq!(<SendEmail as Task>::ID, "send-email");
    let payload = serde_json::to_value(ResizeImage::payload_schema()).unwrap();
    assert_eq!(payload["type"], "object");
    assert_eq!(payload["properties"]["width"]["type"], "integer");
    assert_eq!(payload["required"], serde_json::json!(["url", "width"]));
    let output = serde_json::to_value(SendEmail::output_schema()).unwrap();
    assert_eq!(output["type"], "boolean");
}
