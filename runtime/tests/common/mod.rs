//! Tasks shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod backend;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod sdk;

use runcast::{TaskContext, realtime_union, task};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resize {
    pub url: String,
    pub width: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resized {
    pub url: String,
    pub bytes: u64,
}

#[task(id = "resize-image")]
pub async fn resize_image(payload: Resize, _ctx: TaskContext) -> Result<Resized, String> {
    Ok(Resized {
        url: payload.url,
        bytes: u64::from(payload.width) * 10,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Email {
    pub to: String,
}

#[task(id = "send-email", payload = Email, output = bool)]
pub struct SendEmail;

realtime_union! {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Media {
        ResizeImage,
        SendEmail,
    }
}

realtime_union! {
    #[derive(Debug)]
    pub enum MediaOrOther {
        ResizeImage,
        _ => Other,
    }
}

/// A run snapshot with the given task, status and payload/output JSON.
pub fn snapshot(id: &str, task: &str, status: &str, payload: &str, output: Option<&str>) -> String {
    let output = output.map_or(String::new(), |o| format!(r#","output":{o}"#));
    format!(
        r#"{{"id":"{id}","taskIdentifier":"{task}","payload":{payload}{output},"status":"{status}","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:01.500Z","number":1,"tags":["user:1"]}}"#
    )
}
