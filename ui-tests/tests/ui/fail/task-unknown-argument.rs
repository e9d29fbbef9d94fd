//! `#[task]` accepts only `id`, `payload`, `output`, `metadata` and `streams`.

use runcast::task;

#[task(id = "resize-image", payload = u32, output = u32, retries = 3)]
pub struct ResizeImage;

fn main() {}
