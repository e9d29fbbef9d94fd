//! The second parameter of a task function is a `runcast::TaskContext`.

use runcast::task;

#[task(id = "resize-image")]
async fn resize_image(width: u32, run_id: String) -> Result<u32, String> {
    let _ = run_id;
    Ok(width)
}

fn main() {}
