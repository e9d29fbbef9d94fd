//! The future of a task function is `Send`: the engine runs it on a multi-threaded pool.

use std::rc::Rc;

use runcast::task;

async fn tick() {}

#[task(id = "count")]
async fn count(n: u32) -> Result<u32, String> {
    let shared = Rc::new(n);
    tick().await;
    Ok(*shared)
}

fn main() {}
