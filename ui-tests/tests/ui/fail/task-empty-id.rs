//! A task `id` must not be empty.

use runcast::task;

#[task(id = "", payload = u32, output = u32)]
pub struct ResizeImage;

fn main() {}
