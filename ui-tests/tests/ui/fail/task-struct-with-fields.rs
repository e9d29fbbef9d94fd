//! A task struct is a unit struct: it only names the task.

use runcast::task;

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail {
    pub to: String,
}

fn main() {}
