//! A task output crosses the wire: it implements `Serialize` and `Deserialize`.

use runcast::task;

#[derive(schemars::JsonSchema)]
pub struct Receipt {
    pub message_id: String,
}

#[task(id = "send-email", payload = String, output = Receipt)]
pub struct SendEmail;

fn main() {}
