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

// The layers, each importing only the ones before it.
mod support;

mod engine;
mod feed;
mod hub;
mod model;
#[cfg(test)]
mod test_tasks;
mod typed;

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
pub use crate::typed::stream;
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
/// The function's `ctx: TaskContext` parameter is optional. Payload and output types must
/// implement `Serialize`, `DeserializeOwned` and `schemars::JsonSchema`; metadata and chunk
/// types `Serialize` and `DeserializeOwned`. Every rule is checked at compile time, with the
/// error on the offending token.
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

/// The README's tour, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeTour;

/// What the macros' generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::{IsTaskContext, TaskContext, TaskFn, TaskReturn};
    pub use crate::model::{AnyChunk, AnyRun, ChunkInfo, Run, RunInfo};
    pub use crate::typed::chunk::{
        ChunkError, FromAnyChunk, NoStreams, StreamKey, TaskChunk, UnionChunk, debug_chunk,
        decode_chunk, unexpected_chunk,
    };
    pub use crate::typed::decode::{DecodeError, RunSource};
    pub use crate::typed::{RunUnion, Task};
    pub use serde_json::value::RawValue;

    pub use self::check::*;

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

    /// Compile-time checks of the types given to the macros.
    ///
    /// `#[task]` checks a task's types in one constant of the task type (`realtime_union!`,
    /// each member's in one constant of the union), and writes each of these types as
    /// `Checked<T, { that constant }>`, which is `T`. A failed check is one error, at the
    /// type, saying what it lacks; and the constant then has no value, so rustc treats every
    /// type checked by it as an error and reports nothing more about it: not the bounds of the
    /// `Task` impl, and not each use of the task in the program. A macro's own errors go in
    /// that constant too, to the same effect.
    mod check {
        use std::convert::Infallible;
        use std::fmt::{Debug, Display};
        use std::marker::PhantomData;

        use schemars::JsonSchema;
        use serde::Serialize;
        use serde::de::DeserializeOwned;

        use crate::typed::Task;

        /// `T`, once the constant `CHECK` has a value: an error type if a check failed.
        pub type Checked<T, const CHECK: usize> = <T as Check<CHECK>>::Type;

        /// What [`Checked`] goes through.
        pub trait Check<const CHECK: usize> {
            /// `Self`.
            type Type: ?Sized;
        }

        impl<T: ?Sized, const CHECK: usize> Check<CHECK> for T {
            type Type = T;
        }

        /// What `T` implements, as constants: `<Is<T>>::SERIALIZE` is `true` if `T` implements
        /// `Serialize`, and, with [`IsNot`] in scope, `false` if it does not.
        #[derive(Debug)]
        pub struct Is<T: ?Sized>(PhantomData<T>);

        /// The answers of [`Is`] for a type that lacks the trait.
        pub trait IsNot {
            /// `Serialize`.
            const SERIALIZE: bool = false;
            /// `DeserializeOwned`.
            const DESERIALIZE: bool = false;
            /// `JsonSchema`.
            const JSON_SCHEMA: bool = false;
            /// `Send + Sync + 'static`.
            const SEND_SYNC: bool = false;
            /// `Send + 'static`.
            const SEND: bool = false;
            /// `Display`.
            const DISPLAY: bool = false;
            /// `Debug`.
            const DEBUG: bool = false;
            /// A `Result`.
            const RESULT: bool = false;
            /// A task.
            const TASK: bool = false;
        }

        impl<T: ?Sized> IsNot for Is<T> {}

        impl<T: ?Sized + Serialize> Is<T> {
            /// `T: Serialize`.
            pub const SERIALIZE: bool = true;
        }

        impl<T: DeserializeOwned> Is<T> {
            /// `T: DeserializeOwned`.
            pub const DESERIALIZE: bool = true;
        }

        impl<T: ?Sized + JsonSchema> Is<T> {
            /// `T: JsonSchema`.
            pub const JSON_SCHEMA: bool = true;
        }

        impl<T: ?Sized + Send + Sync + 'static> Is<T> {
            /// `T: Send + Sync + 'static`.
            pub const SEND_SYNC: bool = true;
        }

        impl<T: ?Sized + Send + 'static> Is<T> {
            /// `T: Send + 'static`.
            pub const SEND: bool = true;
        }

        impl<T: ?Sized + Display> Is<T> {
            /// `T: Display`.
            pub const DISPLAY: bool = true;
        }

        impl<T: ?Sized + Debug> Is<T> {
            /// `T: Debug`.
            pub const DEBUG: bool = true;
        }

        impl<T, E> Is<Result<T, E>> {
            /// A `Result`.
            pub const RESULT: bool = true;
        }

        impl<T: Task> Is<T> {
            /// `T: Task`.
            pub const TASK: bool = true;
        }

        /// Whether a type is a `Result`, as a type.
        #[derive(Debug)]
        pub struct IsResult<const RESULT: bool>;

        /// The `Ok` and `Err` types of `R` if it is a `Result`; `()` and `Infallible`, which
        /// pass every check, if not.
        pub trait ResultParts<R: ?Sized> {
            /// The `Ok` type.
            type Ok: ?Sized;
            /// The `Err` type.
            type Err: ?Sized;
        }

        impl<T, E> ResultParts<Result<T, E>> for IsResult<true> {
            type Ok = T;
            type Err = E;
        }

        impl<R: ?Sized> ResultParts<R> for IsResult<false> {
            type Ok = ();
            type Err = Infallible;
        }

        /// The `Ok` type of `R`, a `Result` if `RESULT`.
        pub type OkOf<R, const RESULT: bool> = <IsResult<RESULT> as ResultParts<R>>::Ok;

        /// The `Err` type of `R`, a `Result` if `RESULT`.
        pub type ErrOf<R, const RESULT: bool> = <IsResult<RESULT> as ResultParts<R>>::Err;

        /// A task's payload type.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be a task's payload: it must implement `Serialize`, `Deserialize`, `JsonSchema`, `Send` and `Sync`",
            label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `JsonSchema`: {SCHEMA}, `Send + Sync`: {SEND}",
            note = "a payload is stored and sent between processes as JSON, and its JSON Schema describes the task: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
        )]
        pub trait TaskPayload<const SER: bool, const DE: bool, const SCHEMA: bool, const SEND: bool>
        {
        }

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> TaskPayload<true, true, true, true> for T {}

        /// A task's output type.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be a task's output: it must implement `Serialize`, `Deserialize`, `JsonSchema`, `Send` and `Sync`",
            label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `JsonSchema`: {SCHEMA}, `Send + Sync`: {SEND}",
            note = "an output is stored and sent to subscribers as JSON, and its JSON Schema describes the task: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
        )]
        pub trait TaskOutput<const SER: bool, const DE: bool, const SCHEMA: bool, const SEND: bool>
        {
        }

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> TaskOutput<true, true, true, true> for T {}

        /// A task's metadata type.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be a task's metadata: it must implement `Serialize`, `Deserialize`, `Send` and `Sync`",
            label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `Send + Sync`: {SEND}",
            note = "metadata is stored and sent to subscribers as JSON: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize)]`"
        )]
        pub trait TaskMetadata<const SER: bool, const DE: bool, const SEND: bool> {}

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> TaskMetadata<true, true, true> for T {}

        /// The chunk type of a task's stream.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be the chunk type of a stream: it must implement `Serialize`, `Deserialize` and `Send`",
            label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `Send`: {SEND}",
            note = "chunks are stored and sent to subscribers as JSON: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize)]`"
        )]
        pub trait StreamChunk<const SER: bool, const DE: bool, const SEND: bool> {}

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> StreamChunk<true, true, true> for T {}

        /// The return type of a task function.
        #[diagnostic::on_unimplemented(
            message = "a task function must return `Result<Output, Error>`, not `{Self}`",
            label = "not a `Result`",
            note = "the `Ok` type is the task's output, what subscribers receive, and the error's `Display` becomes the run's error message; an alias such as `std::io::Result<T>` works too"
        )]
        pub trait TaskFnReturn<const RESULT: bool> {}

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> TaskFnReturn<true> for T {}

        /// The error type of a task function's `Result`.
        #[diagnostic::on_unimplemented(
            message = "a task function cannot return `{Self}`: its error type must implement `Display`, `Debug` and `Send`",
            label = "error type implements `Display`: {DISPLAY}, `Debug`: {DEBUG}, `Send + 'static`: {SEND}",
            note = "the error's `Display` becomes the run's error message, sent from the worker that ran the task; a boxed error must be `Send`: `Box<dyn std::error::Error + Send + Sync>`"
        )]
        pub trait TaskFnError<const DISPLAY: bool, const DEBUG: bool, const SEND: bool> {}

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> TaskFnError<true, true, true> for T {}

        /// A type listed in `realtime_union!`.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` is not a task, so `realtime_union!` cannot list it",
            label = "not declared with `#[task]`",
            note = "list the types `#[task]` declares: a task struct, or the struct named after a task function (`ResizeImage` for `async fn resize_image`)"
        )]
        pub trait UnionMember<const TASK: bool> {}

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized> UnionMember<true> for T {}

        /// Two tasks of a union, whose identifiers must differ.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` and `{Other}` have the same task identifier, so a run of one could not be told from a run of the other",
            label = "same identifier as `{Other}`",
            note = "a union matches runs to its tasks by identifier: give one of them another `#[task(id = \"...\")]`"
        )]
        pub trait DistinctId<Other: ?Sized, const DISTINCT: bool> {}

        #[diagnostic::do_not_recommend]
        impl<T: ?Sized, Other: ?Sized> DistinctId<Other, true> for T {}

        /// Checks that two tasks of a union have different identifiers.
        pub const fn distinct<T, Other, const DISTINCT: bool>() -> usize
        where
            T: ?Sized + DistinctId<Other, DISTINCT>,
            Other: ?Sized,
        {
            0
        }

        /// Checks a payload type.
        pub const fn payload<
            T,
            const SER: bool,
            const DE: bool,
            const SCHEMA: bool,
            const SEND: bool,
        >() -> usize
        where
            T: ?Sized + TaskPayload<SER, DE, SCHEMA, SEND>,
        {
            0
        }

        /// Checks an output type.
        pub const fn output<
            T,
            const SER: bool,
            const DE: bool,
            const SCHEMA: bool,
            const SEND: bool,
        >() -> usize
        where
            T: ?Sized + TaskOutput<SER, DE, SCHEMA, SEND>,
        {
            0
        }

        /// Checks a metadata type.
        pub const fn metadata<T, const SER: bool, const DE: bool, const SEND: bool>() -> usize
        where
            T: ?Sized + TaskMetadata<SER, DE, SEND>,
        {
            0
        }

        /// Checks a stream's chunk type.
        pub const fn chunk<T, const SER: bool, const DE: bool, const SEND: bool>() -> usize
        where
            T: ?Sized + StreamChunk<SER, DE, SEND>,
        {
            0
        }

        /// Checks a task function's return type: a `Result` whose error type is
        /// `Display + Debug + Send` (the error's answers are `true` if it is not a `Result`).
        pub const fn fn_return<
            R,
            const RESULT: bool,
            const DISPLAY: bool,
            const DEBUG: bool,
            const SEND: bool,
        >() -> usize
        where
            R: ?Sized + TaskFnReturn<RESULT> + TaskFnError<DISPLAY, DEBUG, SEND>,
        {
            0
        }

        /// Checks a type listed in a union.
        pub const fn member<T: ?Sized + UnionMember<TASK>, const TASK: bool>() -> usize {
            0
        }
    }
}
