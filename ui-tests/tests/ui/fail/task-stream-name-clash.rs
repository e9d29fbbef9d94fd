//! A stream named `id` (its constant would be the task's `ID`), and two streams whose
//! constants or variants would collide.

use runcast::task;

#[task(id = "a", payload = u8, output = u8, streams(id = String))]
pub struct A;

#[task(id = "b", payload = u8, output = u8, streams(log_lines = String, logLines = u8))]
pub struct B;

fn main() {}
