//! A task `id` is at most 128 characters long; this one has 129.

use runcast::task;

#[task(
    id = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    payload = u32,
    output = u32
)]
pub struct ResizeImage;

fn main() {}
