//! Two tasks of a `realtime_union!` whose types have the same name need distinct variant
//! names, given as `Name(path::Task)`.

use runcast::{realtime_union, task};

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail;

mod legacy {
    #[runcast::task(id = "legacy/send-email", payload = String, output = ())]
    pub struct SendEmail;
}

realtime_union! {
    pub enum Feed {
        SendEmail,
        legacy::SendEmail,
    }
}

fn main() {}
