//! A `realtime_union!` enum cannot be generic: its variants are fixed tasks.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

realtime_union! {
    pub enum Feed<T> {
        A,
    }
}

fn main() {}
