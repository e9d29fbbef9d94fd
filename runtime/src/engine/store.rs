//! The seam between the engine's logic and where its runs are kept: [`RunStore`].
//!
//! The lifecycle (what a trigger, an attempt, a timer or a cancellation changes) lives in the
//! engine and its workers, which reach runs only through a store's operations. The embedded
//! engine keeps runs in memory ([`MemoryStore`]); a store over Postgres implements the same
//! operations, each a database transaction, and becomes another variant of [`Store`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::context::StreamError;
use super::memory::MemoryStore;
use crate::hub::RunHub;
use crate::model::{AnyRun, BatchId, Cursor, RunId, RunStatus, StoreError, Timestamp};

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
    /// When the executing attempt started: its time counts into the run's duration when it
    /// ends, however it ends (a cancel counts it too).
    pub(crate) attempt_started: Option<Timestamp>,
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

/// Where an engine keeps its runs. Every change is published to the store's [`RunHub`] in
/// the order the changes of each run are made, which is the order subscribers see.
///
/// The hub is the read side: it holds the latest snapshot of every run the store keeps, and
/// subscriptions, stream reads and the checks before them read it.
///
/// Operations are `async` for a store that does I/O, and each is atomic: when one fails (a
/// [`StoreError`]), nothing of it took effect. A closure passed to one runs at most once, inside
/// it (for Postgres, inside its transaction, with the run's row locked: never retried; for the
/// memory store, under the lock of the run's shard, which other runs share), and must be short
/// and must not block: the engine's closures only set fields and compute.
///
/// A change that leaves nothing a subscriber can see different (every field but `updatedAt`)
/// is not published, and does not touch `updatedAt`.
pub(crate) trait RunStore: Send + Sync + 'static {
    /// The hub this store's changes are published to.
    fn hub(&self) -> &RunHub;

    /// Stores new runs, numbering each per task (1, 2, 3...; the records come with `number`
    /// unset). A run whose idempotency key started a run less than `idempotency_ttl` before
    /// its `created_at`, still kept, is not stored: that run is returned instead. Two runs
    /// with one key in one call are one run.
    fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> impl Future<Output = Result<Vec<Created>, StoreError>> + Send;

    /// Changes a run whose status passes `when`, and publishes it; `Ok(None)` if the run is
    /// unknown or `when` refuses it. When `change` returns `Err`, nothing changes and nothing
    /// is published.
    fn change_if<R: Send, E: From<StoreError> + Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> impl Future<Output = Result<Option<R>, E>> + Send;

    /// Changes a run whose status passes `when`, and publishes it; `Ok(None)` otherwise.
    fn update_if<R: Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> R + Send,
    ) -> impl Future<Output = Result<Option<R>, StoreError>> + Send {
        self.change_if(id, when, |record| Ok(change(record)))
    }

    /// Changes a run that has not finished and publishes it; `Ok(None)` if the run is unknown
    /// or finished, so that a late worker or timer never changes a finished run.
    fn update<R: Send>(
        &self,
        id: &RunId,
        change: impl FnOnce(&mut Record) -> R + Send,
    ) -> impl Future<Output = Result<Option<R>, StoreError>> + Send {
        self.update_if(id, |status| !status.is_final(), change)
    }

    /// The run's latest snapshot.
    fn snapshot(
        &self,
        id: &RunId,
    ) -> impl Future<Output = Result<Option<Arc<AnyRun>>, StoreError>> + Send;

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

    /// Forgets the runs that finished a retention or more ago, by the store's clock, with their
    /// chunks and idempotency keys; returns how long until the next finished run is due. A run
    /// that finishes after this call is due a retention after it.
    fn forget_finished(&self) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;
}

/// The store an engine uses.
pub(crate) enum Store {
    /// The embedded engine's.
    Memory(MemoryStore),
    /// A store whose operations suspend, for the engine's tests.
    #[cfg(test)]
    Suspending(super::tests::Suspending),
}

/// `$body` with `$store` bound to the store inside `$self`.
macro_rules! each_store {
    ($self:expr, $store:ident => $body:expr) => {
        match $self {
            Store::Memory($store) => $body,
            #[cfg(test)]
            Store::Suspending($store) => $body,
        }
    };
}

impl RunStore for Store {
    fn hub(&self) -> &RunHub {
        each_store!(self, store => store.hub())
    }

    async fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, StoreError> {
        each_store!(self, store => store.create(runs, batch, idempotency_ttl).await)
    }

    async fn change_if<R: Send, E: From<StoreError> + Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> Result<Option<R>, E> {
        each_store!(self, store => store.change_if(id, when, change).await)
    }

    async fn snapshot(&self, id: &RunId) -> Result<Option<Arc<AnyRun>>, StoreError> {
        each_store!(self, store => store.snapshot(id).await)
    }

    async fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        each_store!(self, store => store.append_chunk(id, attempt, stream, data, limit).await)
    }

    async fn forget_finished(&self) -> Result<Option<Duration>, StoreError> {
        each_store!(self, store => store.forget_finished().await)
    }
}
