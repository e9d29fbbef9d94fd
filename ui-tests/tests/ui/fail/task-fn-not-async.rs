//! A task function must be `async`.

use runcast::{TaskContext, task};

#[task(id = "resize-image")]
fn resize_image(width: u32, _ctx: TaskContext) -> Result<u32, String> {
    Ok(width)
}

fn main() {}
