//! A unit-struct task, for a task executed elsewhere.

use runcast::{Run, Task, task};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendEmail {
    pub to: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Receipt {
    pub message_id: String,
}

/// Sends an email, in another service.
#[task(id = "send-email", payload = SendEmail, output = Receipt)]
pub struct SendEmailTask;

fn main() {
    const ID: &str = SendEmailTask::ID;
    assert_eq!(ID, <SendEmailTask as Task>::ID);
    let _: fn(&Run<SendEmailTask>) -> &SendEmail = |run| &run.payload;
    let _: fn(&Run<SendEmailTask>) -> Option<&Receipt> = |run| run.output.as_ref();
    let schema = serde_json::to_value(SendEmailTask::output_schema()).unwrap();
    assert!(schema["properties"]["message_id"].is_object());
}
