//! [`FeedError`]: what can go wrong reading runs, whichever backend produces them.

use crate::model::{Cursor, RunId, StoreError};
use crate::typed::DecodeError;

/// Why a subscription, a read of runs, or one item of a subscription failed.
///
/// Subscribing and reading return the variants that refuse at once (an unknown run, a cursor of
/// another history, too many subscriptions); a subscription's items are [`Decode`] errors (one
/// bad snapshot; the stream goes on), [`ChangesDropped`] and [`ChunksDropped`] (what a reader
/// lagging behind the retention lost; the stream goes on) and, as its last item, [`Stopped`]
/// when its source stops before the subscription would end.
///
/// [`Decode`]: FeedError::Decode
/// [`ChangesDropped`]: FeedError::ChangesDropped
/// [`ChunksDropped`]: FeedError::ChunksDropped
/// [`Stopped`]: FeedError::Stopped
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// A snapshot or chunk did not decode as the type asked for; the stream goes on.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The engine stopped (it was shut down, or its last handle was dropped): no change will
    /// come any more. A subscription's last item when it ends this way.
    #[error(
        "the engine stopped (shut down, or its last handle dropped): no more changes will come"
    )]
    Stopped,
    /// No run has this id (or it finished longer ago than the engine keeps runs).
    #[error("no run `{0}`")]
    UnknownRun(RunId),
    /// The run belongs to another task than the one asked for.
    #[error("run `{run}` is a run of task `{task_identifier}`, not of `{expected}`")]
    UnexpectedTask {
        /// The run.
        run: RunId,
        /// Its task.
        task_identifier: String,
        /// The task asked for.
        expected: &'static str,
    },
    /// A tag scope with no tag would watch every run.
    #[error("a tag subscription needs at least one tag")]
    NoTags,
    /// The engine already serves as many subscriptions as it is allowed.
    #[error("too many subscriptions: the limit is {limit}; drop one or raise the limit")]
    TooManySubscriptions {
        /// The configured limit.
        limit: usize,
    },
    /// The cursor does not belong to this engine's history: it comes from another engine, from
    /// an earlier incarnation of this one whose history is gone, or was never handed out.
    /// Resuming from it could skip changes silently, so it is refused.
    #[error(
        "cursor `{0}` is not from this engine's history (another engine's, or one from before a restart): subscribe from the start, or from a cursor this engine gave"
    )]
    UnknownCursor(Cursor),
    /// The changes of this run that the subscription had not read yet are gone, its final
    /// snapshot with them: the run was forgotten (its retention ended) while the subscriber
    /// lagged beyond its window, and what is kept of forgotten runs for the subscriber would
    /// have passed the engine's
    /// [`lagging_reader_bytes`](crate::EngineBuilder::lagging_reader_bytes). The stream goes
    /// on.
    #[error(
        "the unread changes of run `{0}` were dropped: the run was forgotten while this subscriber lagged, past the bytes kept for lagging readers"
    )]
    ChangesDropped(RunId),
    /// The chunks of this run that the subscription had not read yet are gone: the run was
    /// forgotten (its retention ended) while the subscriber lagged behind its streams, and
    /// what is kept of forgotten runs for the subscriber would have passed the engine's
    /// [`lagging_reader_bytes`](crate::EngineBuilder::lagging_reader_bytes). The stream goes
    /// on; the run's changes still come.
    #[error(
        "the unread chunks of run `{0}` were dropped: the run was forgotten while this subscriber lagged, past the bytes kept for lagging readers"
    )]
    ChunksDropped(RunId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server a remote subscription reads from (the remote client's, feature `client`)
    /// refused it, broke the protocol, or sent a change that cannot be read; the message says
    /// which. A refusal (`401`, `403`, `404`, `400`) or a broken protocol is the subscription's
    /// last item; a change that cannot be read is one item, and the stream goes on.
    #[error("{message}")]
    Remote {
        /// The HTTP status of the server's answer, if it answered.
        status: Option<u16>,
        /// What happened.
        message: String,
    },
}
