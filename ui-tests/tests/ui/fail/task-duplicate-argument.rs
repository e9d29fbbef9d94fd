//! Each `#[task]` argument is given at most once.

use runcast::task;

#[task(id = "resize-image", payload = u32, output = u32, id = "resize")]
pub struct ResizeImage;

fn main() {}
