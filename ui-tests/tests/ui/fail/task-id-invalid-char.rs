//! A task `id` uses only ASCII letters, digits, `-`, `_`, `.` and `/`.

use runcast::task;

#[task(id = "resize image", payload = u32, output = u32)]
pub struct ResizeImage;

fn main() {}
