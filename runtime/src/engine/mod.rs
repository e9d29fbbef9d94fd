//! The embedded engine: triggers runs, executes registered `#[task]` functions on a worker
//! pool, and publishes every change of every run to the fan-out hub that subscriptions read.
//!
//! Its API is here (`Engine`); its settings in `builder`, what a trigger says in `options`, its
//! errors in `error`; the run lifecycle in `worker` (attempts, retries) and `timers` (delays,
//! TTLs, backoffs, retention); what a task reaches in `context`; the store seam in `store` and
//! the memory store in `memory`.

mod builder;
#[cfg(feature = "postgres")]
pub(crate) mod catalog;
mod claims;
mod context;
mod error;
mod executor;
mod memory;
mod options;
mod panic;
pub(crate) mod store;
pub(crate) mod timers;
mod worker;

#[cfg(test)]
mod tests;

pub use self::builder::EngineBuilder;
pub use self::context::{
    IsTaskContext, StreamError, StreamWriter, TaskContext, TaskFn, TaskReturn,
};
pub use self::error::{BuildError, CancelError, TagError, TriggerError};
pub use self::options::{BatchItem, MAX_BATCH, MAX_TAG_LEN, MAX_TAGS, TriggerOptions};

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use self::builder::Config;
use self::context::MetadataChange;
use self::executor::Executor;
use self::options::checked_tags;
use self::store::{Created, Record, RunStore, Store};
use self::timers::{Timer, Timers};
use crate::feed::{BatchHandle, FeedError, RunFeed, RunHandle, RunPage, RunQuery, Scope};
use crate::hub::{RealtimeSubscription, Replayed, Subscription};
use crate::model::metadata;
use crate::model::run::TaskIdentifier;
use crate::model::{
    AnyRun, BatchId, Cursor, MetadataError, MetadataOp, RunId, RunStatus, StoreError, Timestamp,
    Untyped, Update,
};
use crate::support::{Map, lock};
use crate::typed::Task;

/// Runs tasks in this process and publishes every change of their runs.
///
/// ```
/// use futures::StreamExt;
/// use runcast::prelude::*;
/// use runcast::Engine;
///
/// #[task(id = "double")]
/// async fn double(n: u64, _ctx: TaskContext) -> Result<u64, String> {
///     Ok(n * 2)
/// }
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let engine = Engine::builder().task::<Double>().build()?;
/// let run = engine.trigger::<Double>(21).await?;
/// let mut updates = engine.subscribe_to_run(&run).await?;
/// let mut statuses = Vec::new();
/// while let Some(update) = updates.next().await {
///     statuses.push(update?.run.status);
/// }
/// assert_eq!(statuses, [RunStatus::Queued, RunStatus::Executing, RunStatus::Completed]);
/// assert_eq!(engine.wait(&run).await?.output, Some(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// By default it keeps its runs in this process's memory: they live as long as the engine
/// (with the feature `postgres`, `EngineBuilder::postgres` keeps them in a database that
/// outlives it and that other processes share). When it stops (see
/// [`shutdown`](Self::shutdown)), or its last handle is dropped, every subscription ends, with
/// [`FeedError::Stopped`] as its last item where it ended early (a run's feed that saw the run
/// finish has ended already), and runs still queued, delayed or waiting for a retry are never
/// run by it. Dropping the last handle stops it at once, without waiting: attempts still
/// executing are dropped at their next `.await`, and in memory their runs are lost with the
/// engine (call `shutdown` first to let them finish); in a database, another process takes
/// them over once their lease runs out.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    /// Shared by the user's handles only (attempts and timers hold `shared`): its drop stops
    /// the engine.
    _owner: Arc<Owner>,
}

/// Stops the engine when the last user handle is dropped.
struct Owner(std::sync::Weak<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.stop();
        }
    }
}

struct Shared {
    store: Store,
    /// Set by `shutdown`: no trigger passes its checks and no attempt starts from then on.
    closed: AtomicBool,
    /// Told when `closed` is set, for those who wait for it.
    closing: tokio::sync::watch::Sender<bool>,
    /// The cancellation signal of each attempt executing in this process.
    running: Mutex<Map<RunId, worker::Signals>>,
    executors: Map<&'static str, Arc<dyn Executor>>,
    /// The tasks that workers sharing the store published, as far as this engine read them.
    #[cfg(feature = "postgres")]
    catalog: catalog::Catalog,
    config: Config,
    /// Runs waiting for an attempt.
    queue: Mutex<worker::Queue>,
    /// One permit per attempt that may run at once, each held by a worker while it lives:
    /// `shutdown` waits for them all.
    slots: Arc<Semaphore>,
    timers: Timers,
    /// The runtime the engine was built in: timers count on its clock, so `trigger` may be
    /// called from any thread.
    runtime: tokio::runtime::Handle,
}

impl Drop for Shared {
    /// Nothing refers to the engine any more: subscriptions end (they did already, unless it
    /// was never handed out).
    fn drop(&mut self) {
        self.store.hub().close();
        self.timers.stop();
    }
}

/// A trigger that passed its checks.
struct Prepared {
    task: TaskIdentifier,
    payload: Box<RawValue>,
    /// The initial metadata, as the run holds it.
    metadata: Option<Arc<RawValue>>,
    max_attempts: u32,
    delayed_until: Option<Timestamp>,
    options: options::TriggerOptions,
}

/// The timers a new run starts with: its delay and its TTL.
#[derive(Clone, Copy)]
struct StartTimers {
    delay: Option<Duration>,
    ttl: Option<Duration>,
}

impl StartTimers {
    fn of(prepared: &Prepared) -> Self {
        StartTimers {
            delay: prepared.options.delay,
            ttl: prepared.options.ttl,
        }
    }
}

impl Engine {
    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// Triggers a run of `T`. Subscribing with the handle
    /// ([`subscribe_to_run`](RunFeed::subscribe_to_run)) shows every state of the run, from the
    /// first (while the engine's history holds them: see [`RunHandle`]).
    ///
    /// Like every operation that reaches the store, it is `async`. Any executor may drive it,
    /// not only the engine's runtime (its timers start on the runtime it was built in).
    pub async fn trigger<T: Task>(
        &self,
        payload: T::Payload,
    ) -> Result<RunHandle<T>, TriggerError> {
        self.trigger_with(payload, TriggerOptions::default()).await
    }

    /// Triggers a run of `T` with options.
    pub async fn trigger_with<T: Task>(
        &self,
        payload: T::Payload,
        options: TriggerOptions,
    ) -> Result<RunHandle<T>, TriggerError> {
        let item = BatchItem::new::<T>(payload, options);
        Ok(self.trigger_one(item).await?.0)
    }

    /// Triggers a run described by `item`, of any registered or declared task: for a payload
    /// that comes as JSON ([`BatchItem::from_json`]), as a server's does.
    pub async fn trigger_item(&self, item: BatchItem) -> Result<RunHandle<Untyped>, TriggerError> {
        Ok(self.trigger_one(item).await?.0)
    }

    /// [`trigger_item`](Self::trigger_item), and whether the run was started before, by the
    /// same idempotency key.
    pub(crate) async fn trigger_one<T>(
        &self,
        item: BatchItem,
    ) -> Result<(RunHandle<T>, bool), TriggerError> {
        let prepared = self.prepare(item).await?;
        let timers = StartTimers::of(&prepared);
        let record = record(prepared, Timestamp::now());
        let id = record.snapshot.id.clone();
        let ttl = self.shared.config.idempotency_ttl;
        let created = self.shared.store.create(vec![record], None, ttl).await?;
        let created = created.into_iter().next();
        let created = created.ok_or_else(|| StoreError::new("the store returned no run"))?;
        let cached = matches!(created, Created::Existing(..));
        Ok((self.shared.launch(created, id, timers), cached))
    }

    /// Triggers one run of `T` per item, as one batch, all or none: if any item is refused,
    /// nothing is stored.
    ///
    /// An item whose idempotency key started a run within the idempotency TTL gets a handle of
    /// that run, as a single trigger would; that run stays in the batch it was started in (if
    /// any), so this batch's subscription does not show it.
    pub async fn batch_trigger<T: Task>(
        &self,
        items: impl IntoIterator<Item = (T::Payload, TriggerOptions)>,
    ) -> Result<BatchHandle<T>, TriggerError> {
        let items = items
            .into_iter()
            .map(|(payload, options)| BatchItem::new::<T>(payload, options));
        let prepared = self.prepare_batch(items).await?;
        self.batch(prepared).await
    }

    /// Triggers a batch whose runs may belong to different tasks; subscribe to it with a union
    /// of them. All or none, as [`batch_trigger`](Self::batch_trigger).
    ///
    /// ```
    /// # use runcast::{BatchItem, Engine, TriggerOptions, task};
    /// # #[task(id = "a")] async fn a(n: u8) -> Result<u8, String> { Ok(n) }
    /// # #[task(id = "b")] async fn b(s: String) -> Result<usize, String> { Ok(s.len()) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let engine = Engine::builder().task::<A>().task::<B>().build()?;
    /// let batch = engine
    ///     .batch_trigger_mixed([
    ///         BatchItem::new::<A>(1, TriggerOptions::default()),
    ///         BatchItem::new::<B>("one".into(), TriggerOptions::default()),
    ///     ])
    ///     .await?;
    /// assert_eq!(batch.runs.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn batch_trigger_mixed(
        &self,
        items: impl IntoIterator<Item = BatchItem>,
    ) -> Result<BatchHandle<Untyped>, TriggerError> {
        let prepared = self.prepare_batch(items.into_iter()).await?;
        self.batch(prepared).await
    }

    /// Checks a batch's items; stores nothing.
    async fn prepare_batch(
        &self,
        items: impl Iterator<Item = BatchItem>,
    ) -> Result<Vec<Prepared>, TriggerError> {
        let items: Vec<BatchItem> = items.take(MAX_BATCH + 1).collect();
        if items.len() > MAX_BATCH {
            return Err(TriggerError::BatchTooLarge { count: items.len() });
        }
        let mut prepared = Vec::with_capacity(items.len());
        for item in items {
            prepared.push(self.prepare(item).await?);
        }
        Ok(prepared)
    }

    async fn batch<T>(&self, prepared: Vec<Prepared>) -> Result<BatchHandle<T>, TriggerError> {
        self.batch_as(crate::model::ids::new_id("batch_"), prepared)
            .await
    }

    /// [`batch_trigger_mixed`](Self::batch_trigger_mixed) under an id given beforehand (a
    /// server's two-phase batch names it first, then receives its items).
    #[cfg(feature = "server")]
    pub(crate) async fn batch_trigger_as(
        &self,
        id: BatchId,
        items: Vec<BatchItem>,
    ) -> Result<BatchHandle<Untyped>, TriggerError> {
        let prepared = self.prepare_batch(items.into_iter()).await?;
        self.batch_as(id, prepared).await
    }

    async fn batch_as<T>(
        &self,
        id: BatchId,
        prepared: Vec<Prepared>,
    ) -> Result<BatchHandle<T>, TriggerError> {
        let (runs, first) = self.store_runs(prepared, Some(id.clone())).await?;
        // Runs started earlier by their idempotency key stay in their own batch: the batch's
        // feed starts before the first of its new runs.
        let cursor = first.unwrap_or(Cursor::START);
        tracing::debug!(batch = %id, runs = runs.len(), "batch triggered");
        Ok(BatchHandle { id, cursor, runs })
    }

    /// Whether `item` would be triggered, as [`prepare`](Self::prepare) checks it; stores
    /// nothing.
    #[cfg(feature = "server")]
    pub(crate) async fn check_item(&self, item: BatchItem) -> Result<(), TriggerError> {
        self.prepare(item).await.map(drop)
    }

    /// Checks a trigger; stores nothing.
    async fn prepare(&self, item: BatchItem) -> Result<Prepared, TriggerError> {
        let BatchItem {
            task,
            payload,
            from_json,
            mut options,
        } = item;
        let config = &self.shared.config;
        if self.shared.is_closed() {
            return Err(TriggerError::ShuttingDown);
        }
        let (task, executor) = self.shared.executor(task).await?;
        options.tags = checked_tags(std::mem::take(&mut options.tags))?;
        let max_attempts = options.max_attempts.unwrap_or(config.default_max_attempts);
        if max_attempts == 0 {
            return Err(TriggerError::NoAttempts);
        }
        let metadata = match &options.metadata {
            Some(object) => {
                let raw = metadata::to_raw(object).map_err(TriggerError::Metadata)?;
                executor
                    .check_metadata(&raw)
                    .map_err(TriggerError::Metadata)?;
                Some(raw)
            }
            None => None,
        };
        let payload = payload?;
        let size = payload.get().len();
        if size > config.max_payload_bytes {
            return Err(TriggerError::PayloadTooLarge {
                size,
                limit: config.max_payload_bytes,
            });
        }
        if from_json {
            executor.check_payload(&payload)?;
        }
        let delayed_until = match options.delay {
            Some(delay) => Some(
                Timestamp::now()
                    .checked_add(delay)
                    .ok_or(TriggerError::DelayTooLong(delay))?,
            ),
            None => None,
        };
        Ok(Prepared {
            task,
            payload,
            metadata,
            max_attempts,
            delayed_until,
            options,
        })
    }

    /// Stores prepared runs in one [`RunStore::create`] (or finds the runs their idempotency
    /// keys started), then queues or schedules the new ones.
    async fn store_runs<T>(
        &self,
        prepared: Vec<Prepared>,
        batch: Option<BatchId>,
    ) -> Result<(Vec<RunHandle<T>>, Option<Cursor>), StoreError> {
        let shared = &self.shared;
        let now = Timestamp::now();
        let mut launches = Vec::with_capacity(prepared.len());
        let records = prepared
            .into_iter()
            .map(|prepared| {
                let timers = StartTimers::of(&prepared);
                let record = record(prepared, now);
                launches.push((record.snapshot.id.clone(), timers));
                record
            })
            .collect();
        let ttl = shared.config.idempotency_ttl;
        let created = shared.store.create(records, batch, ttl).await?;
        let first_new = created
            .iter()
            .filter_map(|created| match created {
                Created::New(cursor) => Some(*cursor),
                Created::Existing(..) => None,
            })
            .min();
        let handles = created.into_iter().zip(launches);
        let handles = handles.map(|(created, (id, timers))| shared.launch(created, id, timers));
        Ok((handles.collect(), first_new))
    }

    /// Cancels a run that has not finished: it becomes `CANCELED` in one change that carries its
    /// final duration and cost, a queued or delayed run never starts, and a running attempt is
    /// stopped at its next `.await` (its context's [`canceled`](TaskContext::canceled)
    /// completes).
    pub async fn cancel(&self, id: &RunId) -> Result<(), CancelError> {
        if self.cancel_if(id, |status| !status.is_final()).await? {
            return Ok(());
        }
        match self.shared.store.snapshot(id).await? {
            Some(run) => Err(CancelError::AlreadyFinished {
                id: id.clone(),
                status: run.status,
            }),
            None => Err(CancelError::UnknownRun(id.clone())),
        }
    }

    /// Cancels a run whose status passes `when`, and stops its attempt running here, if any;
    /// returns whether it did.
    async fn cancel_if(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
    ) -> Result<bool, StoreError> {
        let shared = &self.shared;
        let cost_per_ms = shared.config.cost_per_ms_cents;
        let canceled = shared.store.update_if(id, when, |record| {
            let now = Timestamp::now();
            worker::count_time(record, now, cost_per_ms);
            let run = record.run();
            run.status = RunStatus::Canceled;
            run.finished_at = Some(now);
        });
        if canceled.await?.is_none() {
            return Ok(false);
        }
        tracing::info!(run = %id, "canceled");
        // An attempt registers its signal before it starts the run, so one that started
        // before this change is found here.
        if let Some(signals) = lock(&shared.running).get(id) {
            signals.cancel();
        }
        Ok(true)
    }

    /// Changes a run's metadata, all or nothing (see [`MetadataOp`]). The result must decode
    /// as the metadata type the run's task declares, or nothing changes
    /// ([`MetadataError::DoesNotMatch`]). A finished run's metadata can still change, as child
    /// runs may report into it.
    pub async fn update_metadata(
        &self,
        id: &RunId,
        ops: impl IntoIterator<Item = MetadataOp>,
    ) -> Result<(), MetadataError> {
        self.write_metadata(id, ops.into_iter().collect()).await?;
        Ok(())
    }

    /// Changes a run's metadata as [`update_metadata`](Self::update_metadata) does; returns
    /// the metadata written.
    pub(crate) async fn write_metadata(
        &self,
        id: &RunId,
        ops: Vec<MetadataOp>,
    ) -> Result<Arc<RawValue>, MetadataError> {
        let mut written = None;
        let change: MetadataChange<'_> = Box::new(|raw| {
            let next = metadata::apply_raw(raw, ops)?;
            written = Some(Arc::clone(&next));
            Ok(next)
        });
        self.shared.change_metadata(id, change).await?;
        written.ok_or_else(|| MetadataError::UnknownRun(id.clone()))
    }

    /// Adds tags to a run that has not finished; the checks of a trigger's tags apply to the
    /// result.
    pub async fn add_tags(
        &self,
        id: &RunId,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), TagError> {
        let added: Vec<String> = tags.into_iter().map(Into::into).collect();
        self.change_tags(id, |tags| tags.extend(added)).await
    }

    /// Removes tags from a run that has not finished.
    pub async fn remove_tags(
        &self,
        id: &RunId,
        tags: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<(), TagError> {
        let removed: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_owned()).collect();
        let change = move |tags: &mut Vec<String>| tags.retain(|tag| !removed.contains(tag));
        self.change_tags(id, change).await
    }

    async fn change_tags(
        &self,
        id: &RunId,
        change: impl FnOnce(&mut Vec<String>) + Send,
    ) -> Result<(), TagError> {
        let live = |status: RunStatus| !status.is_final();
        let outcome = self.shared.store.change_if(id, live, |record| {
            let mut tags = record.snapshot.tags.to_vec();
            change(&mut tags);
            let tags = checked_tags(tags).map_err(TagError::Invalid)?;
            record.run().tags = tags.into();
            Ok::<_, TagError>(())
        });
        outcome.await?.ok_or_else(|| TagError::NotLive(id.clone()))
    }

    /// Stops the engine gracefully: refuses new triggers, starts no more queued runs, and waits
    /// up to `deadline` for running attempts to finish; the ones still running then are
    /// canceled, and it waits as long again for them to stop. Then every subscription ends,
    /// with [`FeedError::Stopped`] as its last item where it ended early. Runs still queued,
    /// delayed or waiting for a retry stay as they are, never run by this engine: the memory
    /// store loses them with it.
    ///
    /// Returns how many attempts were canceled.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        let shared = &self.shared;
        // No trigger passes its checks and no attempt starts after this (see `prepare` and
        // `worker::run_attempt`).
        shared.close();
        let all = u32::try_from(shared.config.concurrency).unwrap_or(u32::MAX);
        let idle = Arc::clone(&shared.slots).acquire_many_owned(all);
        let mut canceled = 0;
        if tokio::time::timeout(deadline, idle).await.is_err() {
            let running: Vec<RunId> = lock(&shared.running).keys().cloned().collect();
            for id in &running {
                // An attempt registered but refused its start (the engine is closed) leaves its
                // run queued.
                let executing = |status| status == RunStatus::Executing;
                match self.cancel_if(id, executing).await {
                    Ok(done) => canceled += usize::from(done),
                    Err(error) => tracing::error!(run = %id, %error, "shutdown could not cancel"),
                }
            }
            // Canceled attempts stop at their next `.await`; give them as long again to hand
            // back their slot (a task blocked outside an `.await` may never).
            let slots = Arc::clone(&shared.slots).acquire_many_owned(all);
            let _ = tokio::time::timeout(deadline, slots).await;
        }
        // Subscriptions end once they have read every change made before: a store whose
        // changes reach the hub through a reader (Postgres) is waited for, as long again.
        if tokio::time::timeout(deadline, shared.store.caught_up())
            .await
            .is_err()
        {
            tracing::warn!("the hub did not catch up with the store before the engine stopped");
        }
        shared.store.hub().close();
        tracing::info!(canceled, "engine stopped");
        canceled
    }
}

/// The record of a new run, numbered by the store.
fn record(prepared: Prepared, now: Timestamp) -> Record {
    let Prepared {
        task,
        payload,
        metadata,
        max_attempts,
        delayed_until,
        options,
    } = prepared;
    let snapshot = AnyRun {
        id: crate::model::ids::new_id("run_"),
        task_identifier: task.clone(),
        payload: crate::model::run::unless_null(payload),
        output: None,
        created_at: now,
        updated_at: now,
        number: 0,
        status: if delayed_until.is_some() {
            RunStatus::Delayed
        } else {
            RunStatus::Queued
        },
        duration_ms: 0,
        cost_in_cents: 0.0,
        base_cost_in_cents: 0.0,
        tags: options.tags.into(),
        idempotency_key: options.idempotency_key.clone(),
        expired_at: None,
        ttl: options.ttl.map(|ttl| format!("{}ms", ttl.as_millis())),
        finished_at: None,
        started_at: None,
        delayed_until,
        queued_at: delayed_until.is_none().then_some(now),
        metadata,
        error: None,
        is_test: options.is_test,
        realtime_streams: Vec::new(),
    };
    Record {
        snapshot: Arc::new(snapshot),
        created: Cursor::START,
        attempts: 0,
        max_attempts,
        max_duration: options.max_duration,
        idempotency: options.idempotency_key.map(|key| (task, key)),
        stream_bytes: 0,
        attempt_started: None,
        expire_at: options.ttl.and_then(|ttl| now.checked_add(ttl)),
        retry_at: None,
        lease_until: None,
    }
}

/// How many times a subscription resumed from before the hub's log reads the store's log (see
/// [`Engine::subscribe`](RunFeed::subscribe)): with the default history, once is the rule, and a
/// second time happens only when thousands of changes commit while one read runs.
const REPLAYS: usize = 16;

impl RunFeed for Engine {
    type Subscription = Subscription;
    type RealtimeSubscription = RealtimeSubscription;

    async fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, FeedError> {
        let store = &self.shared.store;
        store.caught_up().await?;
        let hub = store.hub();
        // A cursor older than the hub's log: the store's own log (a database's) may still
        // hold what the hub's lost. The hub's log moves on while the store's is read: read
        // again, until the hub's holds the rest (or, where it moves on faster than the store
        // is read, fall back to the latest snapshots, marked coalesced).
        let mut replayed = Replayed::none_after(from.position());
        let replays = match &scope {
            // Refused by the hub, whatever the cursor.
            Scope::Tags(tags) if tags.is_empty() => 0,
            _ => REPLAYS,
        };
        for _ in 0..replays {
            let Some(through) = hub.missing_after(Cursor::new(from.epoch(), replayed.through))
            else {
                break;
            };
            let Some(more) = store.replay(&scope, replayed.through, through).await? else {
                break;
            };
            replayed.extend(more);
            match hub.subscribe_replayed(scope.clone(), from, replayed)? {
                Ok(subscription) => return Ok(subscription),
                Err(back) => replayed = back,
            }
        }
        hub.subscribe(scope, from)
    }

    async fn latest(&self, id: &RunId) -> Result<Update<AnyRun>, FeedError> {
        self.shared.store.caught_up().await?;
        match self.shared.store.hub().latest(id) {
            Some((cursor, run)) => Ok(Update {
                cursor,
                run: Arc::unwrap_or_clone(run),
                coalesced: false,
            }),
            None => Err(FeedError::UnknownRun(id.clone())),
        }
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, FeedError> {
        self.shared.store.caught_up().await?;
        self.shared.store.hub().list(query)
    }
}

impl Engine {
    /// The name of the engine's history of changes: the epoch of its cursors.
    #[cfg(feature = "server")]
    pub(crate) fn epoch(&self) -> u64 {
        self.shared.store.hub().epoch()
    }

    /// Whether the engine is stopping, and otherwise, whether its store answers (and its hub
    /// has caught up with it).
    #[cfg(feature = "server")]
    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        if self.shared.is_closed() {
            return Err(StoreError::new("the engine is stopping"));
        }
        self.shared.store.caught_up().await
    }

    /// Completes once the engine is stopping (`shutdown`, or its last handle dropped).
    #[cfg(feature = "server")]
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut closing = self.shared.closing.subscribe();
        async move {
            // An error: the engine is gone, which is stopping too.
            let _ = closing.wait_for(|&closed| closed).await;
        }
    }

    /// The engine's Postgres connections, if it keeps its runs there.
    #[cfg(all(feature = "server", feature = "postgres"))]
    pub(crate) fn postgres_pool(&self) -> Option<deadpool_postgres::Pool> {
        match &self.shared.store {
            Store::Postgres(started) => Some(started.pool().clone()),
            _ => None,
        }
    }

    /// The batch run `id` was triggered in, if any, as far as this engine has read.
    #[cfg(feature = "server")]
    pub(crate) fn batch_of(&self, id: &RunId) -> Option<BatchId> {
        self.shared.store.hub().batch_of(id)
    }

    /// The cursor just before run `id` was created, as its handle holds it: a subscription
    /// from it shows every state of the run still kept.
    #[cfg(feature = "server")]
    pub(crate) async fn before_creation(&self, id: &RunId) -> Result<Cursor, FeedError> {
        self.shared.store.caught_up().await?;
        let hub = self.shared.store.hub();
        hub.before_creation(id)
            .ok_or_else(|| FeedError::UnknownRun(id.clone()))
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("tasks", &self.shared.executors.keys().collect::<Vec<_>>())
            .field("hub", self.shared.store.hub())
            .finish()
    }
}

impl Shared {
    /// Wraps the engine's state in its first user handle.
    fn into_engine(self) -> Engine {
        let shared = Arc::new(self);
        let owner = Owner(Arc::downgrade(&shared));
        Engine {
            shared,
            _owner: Arc::new(owner),
        }
    }

    /// The handle of a run the store created (or found by its idempotency key); a new one is
    /// queued, or waits for its delay, and its TTL starts.
    fn launch<T>(
        self: &Arc<Self>,
        created: Created,
        id: RunId,
        timers: StartTimers,
    ) -> RunHandle<T> {
        let cursor = match created {
            Created::Existing(id, cursor) => return RunHandle::new(id, cursor),
            Created::New(cursor) => cursor,
        };
        tracing::debug!(run = %id, "triggered");
        match timers.delay {
            Some(delay) => self.start_timer(delay, id.clone(), Timer::Delay),
            None => self.enqueue(id.clone()),
        }
        if let Some(ttl) = timers.ttl {
            self.start_timer(ttl, id.clone(), Timer::Ttl);
        }
        RunHandle::new(id, cursor)
    }

    /// Starts a timer that fires `timer` for run `id` after `wait`, on the clock of the engine's
    /// runtime (a paused one in tests), whichever thread starts it.
    fn start_timer(&self, wait: Duration, id: RunId, timer: Timer) {
        let now = {
            let _runtime = self.runtime.enter();
            tokio::time::Instant::now()
        };
        self.timers.start(now, wait, id, timer);
    }

    /// Refuses triggers and attempts from now on, and tells those waiting for it.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closing.send_replace(true);
    }

    /// Whether the engine is stopping.
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops at once: no trigger passes its checks and no attempt starts from now on (see
    /// `shutdown`), executing attempts are told to stop, and every subscription ends.
    fn stop(&self) {
        self.close();
        self.cancel_running();
        self.store.hub().close();
    }

    /// Tells every attempt executing here to stop.
    pub(super) fn cancel_running(&self) {
        for signals in lock(&self.running).values() {
            signals.cancel();
        }
    }

    /// The executor of `task`: registered or declared here, or published by a worker that
    /// shares the store.
    async fn executor(
        &self,
        task: TaskIdentifier,
    ) -> Result<(TaskIdentifier, Cow<'_, Arc<dyn Executor>>), TriggerError> {
        if let Some((&id, executor)) = self.executors.get_key_value(&*task) {
            // Borrowed: no reference count to touch on every trigger.
            return Ok((TaskIdentifier::Borrowed(id), Cow::Borrowed(executor)));
        }
        #[cfg(feature = "postgres")]
        if let Some(executor) = self.published(&task).await? {
            return Ok((task, Cow::Owned(executor)));
        }
        Err(TriggerError::UnknownTask(task.into_owned()))
    }

    /// The executor of `task` as a worker that shares the store published it, if one did.
    #[cfg(feature = "postgres")]
    async fn published(&self, task: &str) -> Result<Option<Arc<dyn Executor>>, StoreError> {
        if !self.store.is_shared() {
            return Ok(None);
        }
        if let Some(executor) = self.catalog.fresh(task) {
            return Ok(Some(executor));
        }
        match self.store.published(task).await? {
            Some(published) => self.catalog.keep(published).map(Some),
            None => {
                self.catalog.forget(task);
                Ok(None)
            }
        }
    }

    /// Changes a run's metadata, finished or not, if the result decodes as its task's
    /// metadata type (or, for a task that is not registered or declared here, matches the
    /// metadata schema a worker published), and publishes it.
    async fn change_metadata(
        &self,
        id: &RunId,
        change: MetadataChange<'_>,
    ) -> Result<(), MetadataError> {
        /// Why a change did not happen.
        enum Refused {
            Metadata(MetadataError),
            /// The run's task is not known here: read what a worker published of it, and try
            /// again.
            Unknown(#[cfg_attr(not(feature = "postgres"), allow(dead_code))] String),
        }
        impl From<StoreError> for Refused {
            fn from(error: StoreError) -> Self {
                Refused::Metadata(error.into())
            }
        }
        impl From<MetadataError> for Refused {
            fn from(error: MetadataError) -> Self {
                Refused::Metadata(error)
            }
        }
        let mut change = Some(change);
        // What a worker published of the run's task, once a try found it unknown here: `None`
        // until then; `Some(None)` if no worker published it (the change is not checked).
        let mut published: Option<Option<Arc<dyn Executor>>> = None;
        loop {
            let (slot, found) = (&mut change, &published);
            let outcome = self.store.change_if(
                id,
                |_| true,
                |record| {
                    let task = &*record.snapshot.task_identifier;
                    let executor = match (self.executors.get(task), found) {
                        (Some(executor), _) | (None, Some(Some(executor))) => Some(executor),
                        (None, None) if cfg!(feature = "postgres") && self.store.is_shared() => {
                            return Err(Refused::Unknown(task.to_owned()));
                        }
                        (None, _) => None,
                    };
                    let change = slot
                        .take()
                        .ok_or_else(|| StoreError::new("a metadata change was applied twice"))?;
                    let next = change(record.snapshot.metadata.as_deref())?;
                    if let Some(executor) = executor {
                        executor.check_metadata(&next)?;
                    }
                    record.run().metadata = Some(next);
                    Ok::<_, Refused>(())
                },
            );
            match outcome.await {
                Ok(Some(())) => return Ok(()),
                Ok(None) => return Err(MetadataError::UnknownRun(id.clone())),
                Err(Refused::Metadata(error)) => return Err(error),
                #[cfg(feature = "postgres")]
                Err(Refused::Unknown(task)) => published = Some(self.published(&task).await?),
                #[cfg(not(feature = "postgres"))]
                Err(Refused::Unknown(_)) => published = Some(None),
            }
        }
    }

    /// Appends a chunk to a stream of a running attempt's run, within the configured limits.
    async fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
    ) -> Result<Cursor, StreamError> {
        let size = data.get().len();
        let limit = self.config.max_chunk_bytes;
        if size > limit {
            return Err(StreamError::ChunkTooLarge { size, limit });
        }
        let limit = self.config.max_stream_bytes;
        self.store
            .append_chunk(id, attempt, stream, data, limit)
            .await
    }
}
