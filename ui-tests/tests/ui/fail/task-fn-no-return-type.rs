//! A task function returns `Result<Output, Error>`; here it returns nothing.

use runcast::task;

#[task(id = "resize-image")]
async fn resize_image(width: u32) {
    let _ = width;
}

fn main() {}
