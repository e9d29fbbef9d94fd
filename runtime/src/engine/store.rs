//! The seam between the engine's logic and where its runs are kept: [`RunStore`].
//!
//! The lifecycle (what a trigger, an attempt, a timer or a cancellation changes) lives in the
//! engine and its workers, which reach runs only through a store's operations. The embedded
//! engine keeps runs in memory ([`MemoryStore`](super::MemoryStore)); a store over Postgres
//! implements the same operations, each a database transaction.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::feed::Cursor;
use crate::hub::RunHub;
use crate::run::{AnyRun, BatchId, RunId};
use crate::status::RunStatus;
use crate::streams::StreamError;

/// What a stored chunk costs besides its JSON, counted against a run's stream limit: the
/// hub's record of it and the allocation of its text.
pub(crate) const CHUNK_OVERHEAD: usize = 64;

/// `(task, idempotency key)`.
pub(crate) type IdempotencyKey = (&'static str, String);

/// What a store keeps of a run: its public snapshot, and what the engine knows beyond it.
/// Everything in it is data a database row can hold.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Shared with the hub, which holds the same snapshot: see [`Record::run`].
    pub(crate) snapshot: Arc<AnyRun>,
    /// A cursor before the run's creation.
    pub(crate) created: Cursor,
    pub(crate) attempts: u32,
    pub(crate) max_attempts: u32,
    pub(crate) max_duration: Option<Duration>,
    /// The key that returns this run, if it was triggered with one.
    pub(crate) idempotency: Option<IdempotencyKey>,
    /// Bytes of chunks written to the run's streams.
    pub(crate) stream_bytes: usize,
}

impl Record {
    /// The snapshot, to change: a copy of the published one (the hub holds that until the
    /// change is published), so published snapshots never change. The copy shares payload,
    /// output and metadata; later calls in the same change reuse it.
    pub(crate) fn run(&mut self) -> &mut AnyRun {
        Arc::make_mut(&mut self.snapshot)
    }
}

/// What [`RunStore::create`] did with one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// The run was stored; the cursor precedes its creation.
    New(Cursor),
    /// Its idempotency key had started this run, which was kept instead.
    Existing(RunId, Cursor),
}

/// The store is closed: the engine is shutting down.
#[derive(Debug)]
pub(crate) struct Closed;

/// Where an engine keeps its runs. Every change is published to the store's [`RunHub`] in
/// the order the changes are made, which is the order subscribers see.
///
/// Its operations are `async` for a store that does I/O; each is atomic. Closures passed to
/// them run once, inside the operation (for Postgres, inside its transaction), and must not
/// block.
pub(crate) trait RunStore: Send + Sync + 'static {
    /// The hub this store's changes are published to, which this process's subscriptions
    /// read.
    fn hub(&self) -> &RunHub;

    /// How long a finished run is kept.
    fn retention(&self) -> Duration;

    /// Stores new runs, all or none, numbering each per task (1, 2, 3...; the records come
    /// with `number` unset). A run whose idempotency key started a run less than
    /// `idempotency_ttl` before its `created_at`, still kept, is not stored: that run is
    /// returned instead. Two runs with one key in one call are one run.
    fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> impl Future<Output = Result<Vec<Created>, Closed>> + Send;

    /// Changes a run whose status passes `when`, and publishes it; `None` if the run is
    /// unknown or `when` refuses it. On `Err` the change must have left the record as it was,
    /// and nothing is published.
    fn change_if<R: Send, E: Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> impl Future<Output = Option<Result<R, E>>> + Send;

    /// Changes a run whose status passes `when`, and publishes it; `None` otherwise.
    fn update_if<R: Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> R + Send,
    ) -> impl Future<Output = Option<R>> + Send {
        let outcome = self.change_if(id, when, |record| Ok::<_, Infallible>(change(record)));
        async move { outcome.await.map(|Ok(result)| result) }
    }

    /// Changes a run that has not finished and publishes it; `None` if the run is unknown or
    /// finished, so that a late worker or timer never changes a canceled run.
    fn update<R: Send>(
        &self,
        id: &RunId,
        change: impl FnOnce(&mut Record) -> R + Send,
    ) -> impl Future<Output = Option<R>> + Send {
        self.update_if(id, |status| !status.is_final(), change)
    }

    /// The run's latest snapshot.
    fn snapshot(&self, id: &RunId) -> impl Future<Output = Option<Arc<AnyRun>>> + Send;

    /// Appends a chunk to a stream of a run of `task` from its attempt `attempt`, which must
    /// be executing, if the run's streams stay within `limit` bytes (see [`CHUNK_OVERHEAD`]).
    /// A stream's first chunk also adds its key to the run's `realtimeStreams`, published
    /// before the chunk.
    fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> impl Future<Output = Result<Cursor, StreamError>> + Send;

    /// Forgets the runs whose retention ended by `now`, with their chunks and idempotency
    /// keys; returns when the next one's ends.
    fn forget_finished(&self, now: Instant) -> impl Future<Output = Option<Instant>> + Send;

    /// Refuses new runs, and changes that start attempts, from now on; a `create` that began
    /// before finishes first.
    fn close(&self);

    /// Whether [`close`](Self::close) was called. Checked inside `create`, and by the changes
    /// that start attempts.
    fn is_closed(&self) -> bool;
}
