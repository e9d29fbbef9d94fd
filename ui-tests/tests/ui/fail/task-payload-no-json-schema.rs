//! A task payload has a JSON Schema: it implements `schemars::JsonSchema`.

use runcast::task;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Email {
    pub to: String,
}

#[task(id = "send-email", payload = Email, output = bool)]
pub struct SendEmail;

fn main() {}
