//! Two tasks of a `realtime_union!` cannot share an identifier: a run could not tell them
//! apart.

use runcast::{realtime_union, task};

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail;

mod legacy {
    #[runcast::task(id = "send-email", payload = String, output = ())]
    pub struct SendEmail;
}

realtime_union! {
    pub enum Feed {
        SendEmail,
        Legacy(legacy::SendEmail),
    }
}

fn main() {}
