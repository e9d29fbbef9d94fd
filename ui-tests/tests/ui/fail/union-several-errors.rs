//! `realtime_union!` reports every bad member in one compile: here a task listed twice, two
//! variants with one name and a type that is not a task.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

mod other {
    #[runcast::task(id = "other-a", payload = u8, output = u8)]
    pub struct A;
}

pub struct NotATask;

realtime_union! {
    pub enum Feed {
        A,
        A,
        other::A,
        NotATask,
    }
}

fn main() {}
