//! `#[task]` on a struct needs `payload = Type`: there is no function to take it from.

use runcast::task;

#[task(id = "send-email", output = bool)]
pub struct SendEmail;

fn main() {}
