//! The error type of a task function implements `Display`: it becomes the run's error message.

use runcast::task;

#[derive(Debug)]
pub struct ResizeError;

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> Result<u32, ResizeError> {
    Ok(width)
}

fn main() {}
