//! Tasks for the crate's unit tests.

use serde::{Deserialize, Serialize};

use crate::{realtime_union, task};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Resize {
    pub(crate) url: String,
    pub(crate) width: u32,
}

#[task(id = "resize-image", payload = Resize, output = u64)]
pub(crate) struct ResizeImage;

#[task(id = "send-email", payload = String, output = bool)]
pub(crate) struct SendEmail;

realtime_union! {
    #[derive(Debug)]
    pub(crate) enum Media {
        ResizeImage,
        SendEmail,
    }
}
