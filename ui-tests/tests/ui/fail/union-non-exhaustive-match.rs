//! A `match` on a `realtime_union!` enum covers every variant (or has a `_` arm).

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

#[task(id = "b", payload = u8, output = u8)]
pub struct B;

realtime_union! {
    pub enum Feed {
        A,
        B,
    }
}

fn describe(run: &Feed) -> &'static str {
    match run {
        Feed::A(_) => "a",
    }
}

fn main() {
    let _ = describe;
}
