//! The catch-all `_ => Variant` of a `realtime_union!` comes last, as in a `match`.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

#[task(id = "b", payload = u8, output = u8)]
pub struct B;

realtime_union! {
    pub enum Feed {
        A,
        _ => Other,
        B,
    }
}

fn main() {
    // The enum is still declared, so its uses add no errors of their own.
    let _ = (Feed::Other, Feed::B);
}
