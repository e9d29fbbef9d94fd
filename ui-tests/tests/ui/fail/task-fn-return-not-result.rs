//! A task function returns a `Result` (or an alias of one), not a bare output.

use runcast::task;

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> u32 {
    width
}

fn main() {}
