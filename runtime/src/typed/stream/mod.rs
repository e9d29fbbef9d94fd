//! Typed adaptors over streams of run snapshots.
//!
//! Any `Stream<Item = Result<AnyRun, E>>` (a subscription, a recorded feed, a test fixture)
//! becomes a stream of typed values through [`RunStreamExt`]. A snapshot that fails to decode
//! is an `Err` item; the stream goes on.

mod decoded;
mod until_finished;

pub use self::decoded::Decoded;
pub use self::until_finished::{FeedItem, UntilFinished};

use futures_core::Stream;

use crate::model::Run;
use crate::typed::decode::{DecodeError, Snapshot};
use crate::typed::task::Task;
use crate::typed::union::RunUnion;

/// Adaptors for streams of run snapshots, available on every [`Stream`].
///
/// ```
/// use futures::{TryStreamExt, executor::block_on, stream};
/// use runcast::{AnyRun, DecodeError, RunStatus, RunStreamExt, task};
///
/// #[task(id = "count", payload = u32, output = u32)]
/// pub struct Count;
///
/// let snapshot = |status: &str| {
///     serde_json::from_str::<AnyRun>(&format!(
///         r#"{{"id":"run_1","taskIdentifier":"count","payload":3,"status":"{status}",
///             "createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}}"#
///     ))
///     .map_err(DecodeError::Malformed)
/// };
/// let feed = stream::iter(["QUEUED", "EXECUTING", "COMPLETED", "EXECUTING"].map(snapshot));
///
/// let statuses: Vec<RunStatus> = block_on(
///     feed.until_finished()
///         .typed::<Count>()
///         .map_ok(|run| run.status)
///         .try_collect(),
/// )?;
/// assert_eq!(statuses, [RunStatus::Queued, RunStatus::Executing, RunStatus::Completed]);
/// # Ok::<(), DecodeError>(())
/// ```
pub trait RunStreamExt: Stream {
    /// Decodes each [`AnyRun`](crate::AnyRun) as a [`Run<T>`](crate::Run).
    ///
    /// The stream's error type must convert from [`DecodeError`]: a snapshot
    /// of another task, or one whose payload or output does not match `T`'s types, is an `Err`
    /// item, and the stream goes on.
    fn typed<T: Task>(self) -> Decoded<Self, Run<T>>
    where
        Self: AnyRunStream + Sized,
    {
        Decoded::new(self)
    }

    /// Decodes each [`AnyRun`](crate::AnyRun) as the variant of a
    /// [`realtime_union!`](crate::realtime_union) enum that matches its task.
    ///
    /// A run of a task the union does not list is an `Err` item (or the catch-all variant,
    /// if the union has one), and the stream goes on.
    fn union<U: RunUnion>(self) -> Decoded<Self, U>
    where
        Self: AnyRunStream + Sized,
    {
        Decoded::new(self)
    }

    /// Follows one run: ends the stream after the first snapshot in a final status (see
    /// [`RunStatus::is_final`](crate::RunStatus::is_final)) of the run of the first snapshot,
    /// which it yields. Snapshots of other runs pass through and never end it.
    ///
    /// `Err` items pass through and do not end the stream, so put it before
    /// [`typed`](Self::typed) or [`union`](Self::union), on the untyped snapshots: then a final
    /// snapshot that fails to decode still ends the stream, as an `Err` item.
    fn until_finished<R, E>(self) -> UntilFinished<Self>
    where
        Self: Stream<Item = Result<R, E>> + Sized,
        R: FeedItem,
    {
        UntilFinished::new(self)
    }
}

/// A subscription, or adaptors over one, that can carry the chunks of its runs' streams too.
///
/// ```
/// # use runcast::{Engine, TaskContext, task};
/// use futures::StreamExt;
/// use runcast::prelude::*;
///
/// #[task(id = "chat", streams(tokens = String))]
/// async fn chat(prompt: String, ctx: TaskContext) -> Result<usize, runcast::StreamError> {
///     let tokens = ctx.stream(Chat::TOKENS);
///     for word in prompt.split(' ') {
///         tokens.append(&word.to_owned()).await?;
///     }
///     Ok(prompt.len())
/// }
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let engine = Engine::builder().task::<Chat>().build()?;
/// let run = engine.trigger::<Chat>("hello there".into()).await?;
/// let mut items = engine.subscribe_to_run(&run).await?.with_streams();
/// let mut words = Vec::new();
/// while let Some(item) = items.next().await {
///     match item? {
///         Realtime::Chunk(chunk) => match chunk.data {
///             ChatChunk::Tokens(word) => words.push(word),
///         },
///         Realtime::Run(update) => println!("{}", update.run.status),
///     }
/// }
/// assert_eq!(words, ["hello", "there"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait WithStreams {
    /// The same stream, with chunks.
    type WithStreams;

    /// From where it is, yields [`Realtime`](crate::Realtime) items: each run change and each
    /// chunk of the runs' streams, in one cursor order (see
    /// [`Subscription::with_streams`](crate::Subscription::with_streams)).
    fn with_streams(self) -> Self::WithStreams;
}

impl<St: WithStreams> WithStreams for UntilFinished<St> {
    type WithStreams = UntilFinished<St::WithStreams>;

    fn with_streams(self) -> Self::WithStreams {
        self.map_inner(St::with_streams)
    }
}

impl<St: WithStreams, D> WithStreams for Decoded<St, D> {
    type WithStreams = Decoded<St::WithStreams, D>;

    fn with_streams(self) -> Self::WithStreams {
        self.map_inner(St::with_streams)
    }
}

impl<St: Stream + ?Sized> RunStreamExt for St {}

/// A stream of untyped run snapshots ([`AnyRun`](crate::AnyRun) or [`Update<AnyRun>`](crate::Update)) whose
/// error type can hold a [`DecodeError`]: what [`RunStreamExt::typed`] and
/// [`RunStreamExt::union`] decode.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stream of `Result<AnyRun, E>` (or of `Result<Update<AnyRun>, E>`) where `E: From<DecodeError>`",
    note = "decoding yields a `DecodeError` for a snapshot that does not match: the stream's error type must convert from it, as `runcast::DecodeError` itself does"
)]
pub trait AnyRunStream: Stream {
    /// The stream's error type.
    type Error: From<DecodeError>;
}

impl<St, S, E> AnyRunStream for St
where
    St: Stream<Item = Result<S, E>> + ?Sized,
    S: Snapshot,
    E: From<DecodeError>,
{
    type Error = E;
}
