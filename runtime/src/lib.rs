//! Typed background tasks and real-time subscriptions to their runs.
//!
//! Declare a task with [`#[task]`](task), list the tasks a feed may carry with
//! [`realtime_union!`], and turn a stream of untyped run snapshots ([`AnyRun`]) into typed
//! values with [`RunStreamExt`]:
//!
//! ```
//! use futures::{StreamExt, executor::block_on, stream};
//! use runcast::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)] pub struct Resize { pub width: u32 }
//! # #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)] pub struct Resized { pub url: String }
//! # #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)] pub struct Transcode { pub codec: String }
//!
//! #[task(id = "resize-image")]
//! async fn resize_image(payload: Resize, _ctx: TaskContext) -> Result<Resized, String> {
//!     Ok(Resized { url: format!("https://img.example/{}.png", payload.width) })
//! }
//!
//! #[task(id = "transcode-video", payload = Transcode, output = u64)]
//! pub struct TranscodeVideo;
//!
//! realtime_union! {
//!     pub enum MediaRun { ResizeImage, TranscodeVideo }
//! }
//!
//! # let feed = stream::iter([
//! #     r#"{"id":"run_1","taskIdentifier":"resize-image","payload":{"width":64},"output":{"url":"u"},
//! #         "status":"COMPLETED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:01.000Z"}"#,
//! # ].map(|json| serde_json::from_str::<AnyRun>(json).map_err(DecodeError::Malformed)));
//! block_on(async {
//!     let mut runs = feed.union::<MediaRun>();
//!     while let Some(run) = runs.next().await {
//!         match run? {
//!             MediaRun::ResizeImage(run) => println!("{}: width {}", run.status, run.payload.width),
//!             MediaRun::TranscodeVideo(run) => println!("{}: {:?} bytes", run.status, run.output),
//!         }
//!     }
//!     Ok::<(), DecodeError>(())
//! })?;
//! # Ok::<(), DecodeError>(())
//! ```
#![deny(missing_docs)]

// The macros' expansions name `::runcast`, as in a dependent crate; so do this crate's tests.
#[cfg(test)]
extern crate self as runcast;

// The layers, from the bottom: `model` (runs, cursors, chunks, metadata), `typed` (tasks,
// decoding, unions, adaptors), `feed` (the seam subscriptions are read through), `hub` (the
// in-process fan-out), `engine`. Each imports only the ones below it, and `support`.
mod support;

#[cfg(feature = "client")]
pub mod client;
mod engine;
mod feed;
#[cfg(feature = "server")]
pub mod http;
mod hub;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(test)]
mod test_tasks;
mod typed;
#[cfg(any(feature = "postgres", feature = "server", feature = "client"))]
mod wire;

pub use crate::engine::{
    BatchItem, BuildError, CancelError, Engine, EngineBuilder, MAX_BATCH, MAX_TAG_LEN, MAX_TAGS,
    StreamError, StreamWriter, TagError, TaskContext, TaskFn, TriggerError, TriggerOptions,
};
pub use crate::feed::{
    BatchHandle, BatchRef, FeedError, MAX_PAGE_SIZE, ReadStream, RunFeed, RunHandle, RunPage,
    RunQuery, RunRef, Scope, StreamChunk,
};
pub use crate::hub::{RealtimeSubscription, Subscription};
pub use crate::model::{
    AnyChunk, AnyRun, BatchId, ChunkInfo, Cursor, JsonObject, MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH, MetadataError, MetadataOp, ParseCursorError, ParseTimestampError, Realtime,
    Run, RunId, RunInfo, RunKind, RunStatus, SerializedError, StoreError, TaskIdentifier,
    Timestamp, UnknownStatus, Untyped, Update,
};
#[cfg(feature = "postgres")]
pub use crate::postgres::{PostgresError, PostgresStore};
pub use crate::typed::stream;
pub use crate::typed::typescript;
pub use crate::typed::{
    Chunk, ChunkError, DecodeError, FromAnyChunk, FromAnyRun, NoStreams, RunField, RunStreamExt,
    RunUnion, Snapshot, StreamKey, StreamOf, Task, TaskChunk, WithStreams,
};

/// Declares a task: a unit struct implementing [`Task`].
///
/// On an `async fn`, the payload type is the first parameter's, the output type is the `Ok`
/// type of the returned `Result`, and the struct (named in UpperCamelCase after the function)
/// also implements [`TaskFn`]; the function itself stays callable:
///
/// ```
/// use runcast::{Task, TaskContext, task};
///
/// #[task(id = "add-one")]
/// async fn add_one(n: u64, _ctx: TaskContext) -> Result<u64, std::convert::Infallible> {
///     Ok(n + 1)
/// }
///
/// assert_eq!(AddOne::ID, "add-one");
/// ```
///
/// On a unit struct, for a task executed elsewhere, the types are given as arguments:
///
/// ```
/// # use runcast::task;
/// #[task(id = "send-email", payload = String, output = bool)]
/// pub struct SendEmail;
/// ```
///
/// Accepted arguments:
/// - `id` (always): 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `/`;
/// - `payload` and `output` (on a struct only);
/// - `metadata = M`: what subscribers decode the run's metadata as (a
///   [`JsonObject`] without it);
/// - `streams(key = C, ...)`: the task's realtime streams and their chunk types. Each gets a
///   [`StreamKey`] constant on the task type, named after the key in upper case
///   (`tokens` → `Chat::TOKENS`), to write it with [`TaskContext::stream`]; and the task gets
///   an enum of its chunks, `<Task>Chunk`, with a variant per stream in UpperCamelCase
///   (`ChatChunk::Tokens(String)`).
///
/// The function's `ctx: TaskContext` parameter is optional. Payload, output and metadata
/// types must implement `Serialize`, `DeserializeOwned` and `schemars::JsonSchema` (a worker
/// over Postgres publishes their schemas, which other processes check their triggers against);
/// chunk types `Serialize` and `DeserializeOwned`. Every rule is checked at compile time, with
/// the error on the offending token.
pub use runcast_macros::task;

/// Declares an enum over the runs of several tasks, implementing [`RunUnion`].
///
/// Each listed task becomes a variant named after its type and holding a [`Run`] of it;
/// `Name(path::ToTask)` names the variant explicitly. A last `_ => Name` adds a catch-all
/// variant holding an [`AnyRun`] for runs of any other task; without one, such a run decodes
/// to a [`DecodeError::UnexpectedTask`].
///
/// Beside the union, it declares `<Union>Chunk`: the chunks of the tasks' streams, with the
/// same variants, each holding a [`Chunk`] of its task (and an [`AnyChunk`] for the
/// catch-all). A feed of the union with streams yields `Realtime<Union, UnionChunk>` items.
///
/// ```
/// # use runcast::{task, realtime_union, AnyRun};
/// # #[task(id = "a", payload = u8, output = u8)] pub struct A;
/// # #[task(id = "b", payload = u8, output = u8)] pub struct B;
/// realtime_union! {
///     /// Runs shown on the dashboard.
///     #[derive(Debug)]
///     pub enum Dashboard {
///         A,
///         Second(B),
///         _ => Other,
///     }
/// }
///
/// fn label(run: &Dashboard) -> &str {
///     match run {
///         Dashboard::A(_) => "a",
///         Dashboard::Second(_) => "b",
///         Dashboard::Other(run) => &run.task_identifier,
///     }
/// }
/// ```
pub use runcast_macros::realtime_union;

/// The names most programs use, for `use runcast::prelude::*`: the traits whose methods they
/// call (subscriptions on any [`RunFeed`], the stream adaptors), the macros, and the types of
/// a task function.
pub mod prelude {
    pub use crate::{
        AnyRun, DecodeError, FeedError, FromAnyRun, Realtime, Run, RunFeed, RunId, RunInfo,
        RunStatus, RunStreamExt, RunUnion, Task, TaskContext, TaskFn, WithStreams, realtime_union,
        task,
    };
}

/// The README's tour, compiled and run as a doc test (with the features its sections need:
/// `cargo test --workspace` has them).
#[cfg(all(doctest, feature = "postgres", feature = "server", feature = "client"))]
#[doc = include_str!("../../README.md")]
struct ReadmeTour;

/// What the macros' generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::{IsTaskContext, TaskContext, TaskFn, TaskReturn};
    pub use crate::model::{AnyChunk, AnyRun, ChunkInfo, Run, RunInfo};
    pub use crate::typed::chunk::{
        ChunkError, FromAnyChunk, NoStreams, StreamKey, TaskChunk, UnionChunk, debug_chunk,
        decode_chunk, stream_key, unexpected_chunk,
    };
    pub use crate::typed::decode::{DecodeError, RunSource};
    pub use crate::typed::{RunUnion, Task};
    pub use serde_json::value::RawValue;

    pub use crate::typed::checks::*;

    /// `a == b`, usable in a `const` assertion.
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}
