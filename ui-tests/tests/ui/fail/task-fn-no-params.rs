//! A task function takes its payload as its first parameter.

use runcast::task;

#[task(id = "heartbeat")]
async fn heartbeat() -> Result<(), String> {
    Ok(())
}

fn main() {}
