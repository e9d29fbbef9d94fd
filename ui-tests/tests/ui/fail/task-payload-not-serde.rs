//! A task payload crosses the wire: it implements `Serialize` and `Deserialize`.

use runcast::{TaskContext, task};

#[derive(schemars::JsonSchema)]
pub struct Resize {
    pub width: u32,
}

#[task(id = "resize-image")]
async fn resize_image(payload: Resize, _ctx: TaskContext) -> Result<u32, String> {
    Ok(payload.width)
}

fn main() {}
