//! `payload = ...` is for `#[task]` on a struct; a task function's payload is its first
//! parameter's type.

use runcast::task;

#[task(id = "resize-image", payload = u32)]
async fn resize_image(width: u32) -> Result<u32, String> {
    Ok(width)
}

fn main() {}
