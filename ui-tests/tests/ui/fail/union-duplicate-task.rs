//! A task is listed at most once in a `realtime_union!`: each task gets one variant.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

#[task(id = "b", payload = u8, output = u8)]
pub struct B;

realtime_union! {
    pub enum Feed {
        A,
        B,
        Again(A),
    }
}

fn main() {}
