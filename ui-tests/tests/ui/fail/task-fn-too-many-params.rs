//! A task function takes at most two parameters: the payload and the context.

use runcast::{TaskContext, task};

#[task(id = "resize-image")]
async fn resize_image(width: u32, _ctx: TaskContext, height: u32) -> Result<u32, String> {
    Ok(width * height)
}

fn main() {}
