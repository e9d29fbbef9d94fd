//! Task types for TypeScript: writes the `.d.ts` module of the tasks of the other examples
//! (`quickstart`'s `resize-image` and `streaming`'s `generate-text`), which a frontend imports
//! to follow their runs with Trigger.dev's SDK or React hooks, checked by `tsc`.
//!
//! Run with `cargo run --example typescript_types > tasks.d.ts`.
#![allow(clippy::print_stdout)]

use runcast::task;
use runcast::typescript::Declarations;
use serde::{Deserialize, Serialize};

/// What `resize-image` is triggered with.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Resize {
    /// The image to resize.
    url: String,
    /// The width to resize it to, in pixels.
    width: u32,
}

/// What `resize-image` returns.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Resized {
    url: String,
    bytes: u64,
}

/// How far the generation is: the run's metadata.
#[derive(Default, Serialize, Deserialize, schemars::JsonSchema)]
struct Progress {
    tokens: u32,
    of: u32,
}

// The tasks as a process that only triggers them declares them (their functions run in the
// other examples). A task on an `async fn` is listed the same way.
#[task(id = "resize-image", payload = Resize, output = Resized)]
struct ResizeImage;

#[task(id = "generate-text", payload = String, output = String, metadata = Progress,
       streams(tokens = String))]
struct GenerateText;

fn main() {
    let declarations = Declarations::new()
        .task::<ResizeImage>()
        .task::<GenerateText>()
        // A stream's chunk type, which `#[task]` does not record as a schema.
        .stream(GenerateText::TOKENS);
    print!("{declarations}");
}
