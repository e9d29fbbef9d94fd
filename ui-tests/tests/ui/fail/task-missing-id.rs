//! `#[task]` needs an `id`: the identifier is what runs are matched by.

use runcast::{TaskContext, task};

#[task]
async fn resize_image(width: u32, _ctx: TaskContext) -> Result<u32, String> {
    Ok(width)
}

fn main() {}
