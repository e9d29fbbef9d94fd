//! A `realtime_union!` has at most one catch-all `_ => Variant`.

use runcast::{realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

realtime_union! {
    pub enum Feed {
        A,
        _ => Other,
        _ => Unknown,
    }
}

fn main() {
    let _ = Feed::Other;
}
