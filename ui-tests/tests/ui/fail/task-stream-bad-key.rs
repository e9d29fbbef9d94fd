//! A stream key must name a variant of the chunk enum: not only underscores, not `self`.

use runcast::task;

#[task(id = "a", payload = u8, output = u8, streams(__ = String))]
pub struct A;

#[task(id = "b", payload = u8, output = u8, streams(self = String))]
pub struct B;

fn main() {}
