//! The catch-all variant of a `realtime_union!` cannot have the name of a task variant.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

realtime_union! {
    pub enum Feed {
        A,
        _ => A,
    }
}

fn main() {}
