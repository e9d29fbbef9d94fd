//! `realtime_union!` declares a named enum; a bare list of tasks says how to write it.

use runcast::prelude::*;

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

#[task(id = "b", payload = u8, output = u8)]
pub struct B;

realtime_union!(A, B);

fn main() {}
