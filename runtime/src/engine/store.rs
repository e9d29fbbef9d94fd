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
use super::timers::Timer;
use crate::feed::Scope;
use crate::hub::{Replayed, RunHub};
use crate::model::{AnyRun, BatchId, Cursor, RunId, RunStatus, StoreError, Timestamp};

/// What a stored chunk costs besides its JSON, counted against a run's stream limit: the
/// hub's record of it and the allocation of its text.
pub(crate) const CHUNK_OVERHEAD: usize = 64;

/// `(task, idempotency key)`.
pub(crate) type IdempotencyKey = (crate::model::run::TaskIdentifier, String);

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
    /// When the run expires if it has not started by then (its TTL). The engine's timers
    /// expire it; a store shared by processes keeps it for when its process is gone.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) expire_at: Option<Timestamp>,
    /// When a run waiting for a retry may be attempted again.
    pub(crate) retry_at: Option<Timestamp>,
    /// Until when the process executing the run's attempt holds it, for a store shared by
    /// processes: past it, the process is taken for gone (see [`Timer::LeaseLost`]). Set and
    /// renewed by the store.
    pub(crate) lease_until: Option<Timestamp>,
}

impl Record {
    /// The snapshot, to change: a copy of the published one (the hub holds that until the
    /// change is published), so published snapshots never change. The copy shares payload,
    /// output and metadata; later calls in the same change reuse it.
    pub(crate) fn run(&mut self) -> &mut AnyRun {
        Arc::make_mut(&mut self.snapshot)
    }
}

/// Whether a change left something a subscriber can see different.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visible {
    /// Nothing visible changed: nothing is published, and `updatedAt` stays.
    No,
    /// The snapshot changed (its `updatedAt` is now); `finished` when the run just reached a
    /// final status.
    Yes { finished: bool },
}

/// Applies `change` to a record as every store does: on `Err` the snapshot is left as it was;
/// a change that leaves nothing visible different keeps the published snapshot; any other
/// gets `updatedAt` now. The caller stores the record and publishes it if [`Visible::Yes`].
pub(crate) fn apply<R, E>(
    record: &mut Record,
    change: impl FnOnce(&mut Record) -> Result<R, E>,
) -> Result<(R, Visible), E> {
    let before = Arc::clone(&record.snapshot);
    let result = match change(record) {
        Ok(result) => result,
        Err(error) => {
            record.snapshot = before;
            return Err(error);
        }
    };
    if Arc::ptr_eq(&before, &record.snapshot) || record.snapshot.looks_like(&before) {
        record.snapshot = before;
        return Ok((result, Visible::No));
    }
    record.run().updated_at = Timestamp::now();
    let finished = !before.status.is_final() && record.snapshot.status.is_final();
    Ok((result, Visible::Yes { finished }))
}

/// Admits a chunk of `size` bytes of JSON to stream `key` of a run, from its attempt
/// `attempt`: the attempt must be the run's executing one, and the run's streams stay within
/// `limit` bytes (see [`CHUNK_OVERHEAD`]). Counts the chunk; returns whether it is the
/// stream's first, which adds the key to the run's `realtimeStreams` (a visible change, with
/// `updatedAt` now).
pub(crate) fn admit_chunk(
    record: &mut Record,
    attempt: u32,
    key: &str,
    size: usize,
    limit: usize,
) -> Result<bool, StreamError> {
    let id = &record.snapshot.id;
    if record.snapshot.status != RunStatus::Executing || record.attempts != attempt {
        return Err(StreamError::NotRunning(id.clone()));
    }
    let total = (record.stream_bytes)
        .saturating_add(size)
        .saturating_add(CHUNK_OVERHEAD);
    if total > limit {
        return Err(StreamError::RunStreamsTooLarge {
            run: id.clone(),
            size: total,
            limit,
        });
    }
    record.stream_bytes = total;
    if record.snapshot.realtime_streams.iter().any(|k| k == key) {
        return Ok(false);
    }
    let run = record.run();
    run.realtime_streams.push(key.to_owned());
    run.updated_at = Timestamp::now();
    Ok(true)
}

/// What [`RunStore::create`] did with one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// The run was stored; the cursor precedes its creation.
    New(Cursor),
    /// Its idempotency key had started this run, which was kept instead.
    Existing(RunId, Cursor),
}

/// Attempts a shared store asks the engine to stop in this process.
#[derive(Debug)]
#[cfg_attr(
    not(feature = "postgres"),
    expect(dead_code, reason = "only a shared store (feature `postgres`) asks")
)]
pub(crate) enum Stop {
    /// The run was canceled, by any process.
    Canceled(RunId),
    /// This process could not renew its leases for so long that other processes may soon take
    /// its runs for gone and attempt them again: every attempt here stops, so that no run has
    /// two attempts at once.
    LeaseLost,
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

    /// Waits until the hub holds every change the store committed before the call, this
    /// process's or another's: reads through the hub (subscriptions, `latest`, listings) see
    /// at least that.
    fn caught_up(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

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

    /// Whether other processes share the store's runs: then the engine takes the runs it
    /// attempts from the store ([`claim`](Self::claim)) and fires the timers the store keeps
    /// ([`due`](Self::due)), instead of queueing its own runs in memory.
    fn is_shared(&self) -> bool {
        false
    }

    /// The changes in `scope` after position `after` through `through`, read from a log the
    /// store keeps beside the hub's (a database's), for a subscription resumed from before the
    /// hub's log: `None` if the store keeps no such log or no longer holds them all.
    fn replay(
        &self,
        _scope: &Scope,
        _after: u64,
        _through: u64,
    ) -> impl Future<Output = Result<Option<Replayed>, StoreError>> + Send {
        std::future::ready(Ok(None))
    }

    /// Takes up to `max` runs of `tasks` that wait for an attempt (queued, or waiting for a
    /// retry that is due), held for this process for a while, so that other processes pass
    /// them by.
    fn claim(
        &self,
        _tasks: &[&'static str],
        _max: usize,
    ) -> impl Future<Output = Result<Vec<RunId>, StoreError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    /// Up to `max` timers the store keeps that are due: delays that ended, TTLs that ended,
    /// leases that ran out.
    fn due(
        &self,
        _max: usize,
    ) -> impl Future<Output = Result<Vec<(RunId, Timer)>, StoreError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    /// Completes when work may wait: a run was queued (here or in another process), or a while
    /// passed.
    fn work(&self) -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    /// Tells [`work`](Self::work) that a run was queued in this process.
    fn nudge(&self) {}

    /// Attempts for the engine to stop here (runs canceled by any process, or every attempt
    /// once this process may have lost its leases): taken once.
    fn cancellations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Stop>> {
        None
    }

    /// Forgets the runs that finished a retention or more ago, by the store's clock, with their
    /// chunks and idempotency keys; returns how long until the next finished run is due. A run
    /// that finishes after this call is due a retention after it.
    fn forget_finished(&self) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Publishes the tasks this process runs where the processes that share the store find
    /// them (see [`catalog`](super::catalog)), replacing what was published of them before.
    #[cfg(feature = "postgres")]
    fn publish(
        &self,
        _tasks: &[super::catalog::Published],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    /// The task `id` as a process that runs it published it, if one did.
    #[cfg(feature = "postgres")]
    fn published(
        &self,
        _id: &str,
    ) -> impl Future<Output = Result<Option<super::catalog::Published>, StoreError>> + Send {
        std::future::ready(Ok(None))
    }
}

/// The store an engine uses.
// One per engine, reached on every operation: the memory store, the common one, stays inline.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Store {
    /// The embedded engine's.
    Memory(MemoryStore),
    /// Postgres, shared by processes.
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::Started),
    /// A store whose operations suspend, for the engine's tests.
    #[cfg(test)]
    Suspending(super::tests::Suspending),
}

/// `$body` with `$store` bound to the store inside `$self`.
macro_rules! each_store {
    ($self:expr, $store:ident => $body:expr) => {
        match $self {
            Store::Memory($store) => $body,
            #[cfg(feature = "postgres")]
            Store::Postgres($store) => $body,
            #[cfg(test)]
            Store::Suspending($store) => $body,
        }
    };
}

impl RunStore for Store {
    fn hub(&self) -> &RunHub {
        each_store!(self, store => store.hub())
    }

    async fn caught_up(&self) -> Result<(), StoreError> {
        each_store!(self, store => store.caught_up().await)
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

    fn is_shared(&self) -> bool {
        each_store!(self, store => store.is_shared())
    }

    async fn replay(
        &self,
        scope: &Scope,
        after: u64,
        through: u64,
    ) -> Result<Option<Replayed>, StoreError> {
        each_store!(self, store => store.replay(scope, after, through).await)
    }

    async fn claim(&self, tasks: &[&'static str], max: usize) -> Result<Vec<RunId>, StoreError> {
        each_store!(self, store => store.claim(tasks, max).await)
    }

    async fn due(&self, max: usize) -> Result<Vec<(RunId, Timer)>, StoreError> {
        each_store!(self, store => store.due(max).await)
    }

    fn work(&self) -> impl Future<Output = ()> + Send + 'static {
        let work: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> =
            each_store!(self, store => Box::pin(store.work()));
        work
    }

    fn nudge(&self) {
        each_store!(self, store => store.nudge())
    }

    fn cancellations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Stop>> {
        each_store!(self, store => store.cancellations())
    }

    #[cfg(feature = "postgres")]
    async fn publish(&self, tasks: &[super::catalog::Published]) -> Result<(), StoreError> {
        each_store!(self, store => store.publish(tasks).await)
    }

    #[cfg(feature = "postgres")]
    async fn published(&self, id: &str) -> Result<Option<super::catalog::Published>, StoreError> {
        each_store!(self, store => store.published(id).await)
    }
}
