//! A task function cannot have an `extern` ABI.

use runcast::task;

#[task(id = "ffi")]
async extern "C" fn ffi(n: u32) -> Result<u32, String> {
    Ok(n)
}

fn main() {}
