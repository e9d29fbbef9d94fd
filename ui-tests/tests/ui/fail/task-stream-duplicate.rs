//! A stream declared twice, a stream without a chunk type, and `streams()` with none.

use runcast::task;

#[task(id = "a", payload = u8, output = u8, streams(tokens = String, tokens = u8))]
pub struct A;

#[task(id = "b", payload = u8, output = u8, streams(tokens))]
pub struct B;

#[task(id = "c", payload = u8, output = u8, streams())]
pub struct C;

fn main() {}
