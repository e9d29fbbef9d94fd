//! `.typed()` needs a feed whose error type converts from `DecodeError`: said at the call.

use futures::stream;
use runcast::{AnyRun, RunStreamExt, task};

#[task(id = "count", payload = u32, output = u32)]
pub struct Count;

#[derive(Debug)]
pub struct Disconnected;

fn main() {
    let feed = stream::iter(Vec::<Result<AnyRun, Disconnected>>::new());
    let _typed = feed.typed::<Count>();
}
