//! A task function cannot take `self`: `#[task]` goes on a free `async fn`, not a method.

use runcast::task;

pub struct Resizer;

impl Resizer {
    #[task(id = "resize-image")]
    pub async fn resize_image(&self, width: u32) -> Result<u32, String> {
        Ok(width)
    }
}

fn main() {}
