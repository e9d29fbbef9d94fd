//! A task `id` is a string literal, so that `#[task]` can check it at compile time.

use runcast::task;

const RESIZE: &str = "resize-image";

#[task(id = RESIZE, payload = u32, output = u32)]
pub struct ResizeImage;

fn main() {
    let _ = RESIZE;
}
