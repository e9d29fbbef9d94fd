//! A metadata type must be serde-serializable, like payloads and outputs.

use runcast::task;

pub struct Progress {
    pub done: f64,
}

#[task(id = "a", payload = u8, output = u8, metadata = Progress)]
pub struct A;

fn main() {}
