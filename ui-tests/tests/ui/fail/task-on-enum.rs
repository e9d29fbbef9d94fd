//! `#[task]` applies to an `async fn` or a unit struct, not to an enum.

use runcast::task;

#[task(id = "send-email", payload = String, output = bool)]
pub enum SendEmail {
    Now,
    Later,
}

fn main() {}
