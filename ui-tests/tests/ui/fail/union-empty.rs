//! A `realtime_union!` lists at least one task.

use runcast::realtime_union;

realtime_union! {
    pub enum Feed {}
}

fn main() {}
