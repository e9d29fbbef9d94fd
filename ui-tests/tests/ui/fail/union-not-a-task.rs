//! Every member of a `realtime_union!` is a type declared with `#[task]`.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

pub struct NotATask;

realtime_union! {
    pub enum Feed {
        A,
        NotATask,
    }
}

fn main() {}
