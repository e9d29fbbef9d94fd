//! The embedded engine: triggers runs, executes registered `#[task]` functions on a worker
//! pool, and publishes every change of every run to a [`RunHub`] that subscriptions read.
//!
//! It covers triggering (tags, metadata, attempts, test runs, idempotency keys, delays, time
//! to live, maximum duration, batches), execution with retries, crash capture, cancellation,
//! cost, metadata operations, tags changed on a live run, realtime streams (with their limits),
//! subscriptions by run, tags and batch (of one task or mixed, with streams or without), the
//! retention of finished runs, and graceful shutdown.

mod executor;
mod memory;
mod store;
mod worker;

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc};

use self::executor::{Executor, FnExecutor};
use self::memory::MemoryStore;
use self::store::{Created, Record, RunStore, Store};
use crate::decode::DecodeError;
use crate::feed::{Cursor, RunFeed, Scope};
use crate::hub::{self, Map, RunHub, SubscribeError, Subscription};
use crate::metadata::{self, MetadataError, MetadataOp};
use crate::run::{AnyRun, BatchId, JsonObject, Run, RunId, Untyped};
use crate::status::RunStatus;
use crate::stream::{Decoded, RunStreamExt, UntilFinished};
use crate::streams::{ReadStream, StreamError, StreamKey};
use crate::task::{CancelSignal, Task, TaskFn};
use crate::timestamp::Timestamp;

/// The most tags a run may carry.
pub const MAX_TAGS: usize = 10;
/// The longest tag, in characters.
pub const MAX_TAG_LEN: usize = 128;

/// Runs tasks in this process and publishes every change of their runs.
///
/// ```
/// use futures::StreamExt;
/// use runcast::{Engine, RunStatus, TaskContext, task};
///
/// #[task(id = "double")]
/// async fn double(n: u64, _ctx: TaskContext) -> Result<u64, String> {
///     Ok(n * 2)
/// }
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let engine = Engine::builder().task::<Double>().build()?;
/// let run = engine.trigger::<Double>(21).await?;
/// let mut updates = engine.subscribe_to_run::<Double>(run.id())?;
/// let mut last = None;
/// while let Some(update) = updates.next().await {
///     last = Some(update?.run);
/// }
/// let last = last.unwrap();
/// assert_eq!((last.status, last.output), (RunStatus::Completed, Some(42)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    /// Set by `shutdown`: no trigger passes its checks and no attempt starts from then on.
    closed: AtomicBool,
    /// The cancellation signal of each attempt executing in this process.
    running: Mutex<Map<RunId, CancelSignal>>,
    executors: Map<&'static str, Arc<dyn Executor>>,
    config: Config,
    queue: mpsc::UnboundedSender<RunId>,
    /// One permit per attempt that may run at once.
    slots: Arc<Semaphore>,
    /// The runtime the engine was built in: timers start there, so `trigger` may be called
    /// from any thread.
    runtime: tokio::runtime::Handle,
    /// Makes run ids unique to this engine.
    prefix: String,
    next_id: AtomicU64,
}

#[derive(Debug, Clone)]
struct Config {
    concurrency: usize,
    max_payload_bytes: usize,
    default_max_attempts: u32,
    retry_delay: Duration,
    idempotency_ttl: Duration,
    cost_per_ms_cents: f64,
    retention: Duration,
    max_chunk_bytes: usize,
    max_stream_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 64,
            max_payload_bytes: 10 * 1024 * 1024,
            default_max_attempts: 3,
            retry_delay: Duration::from_secs(1),
            idempotency_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            cost_per_ms_cents: 0.0,
            retention: Duration::from_secs(60 * 60),
            max_chunk_bytes: 1024 * 1024,
            max_stream_bytes: 100 * 1024 * 1024,
        }
    }
}

/// Configures and starts an [`Engine`].
#[must_use = "an engine builder does nothing until `build` is called"]
pub struct EngineBuilder {
    executors: Map<&'static str, Arc<dyn Executor>>,
    config: Config,
    hub: Option<RunHub>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("tasks", &self.executors.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish()
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The engine runs its workers on the Tokio runtime it is built in.
    #[error("Engine::build must be called within a Tokio runtime: {0}")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

impl EngineBuilder {
    /// Registers a task the engine runs: one declared with `#[task]` on an `async fn`.
    pub fn task<T: TaskFn>(mut self) -> Self {
        self.executors
            .insert(T::ID, Arc::new(FnExecutor::<T>::new()));
        self
    }

    /// How many attempts may run at once (default 64; at least 1).
    pub fn concurrency(mut self, attempts: usize) -> Self {
        // Within what a semaphore holds and what `shutdown` can wait for at once.
        let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
        self.config.concurrency = attempts.clamp(1, most);
        self
    }

    /// The largest payload accepted by `trigger`, in bytes of JSON (default 10 MiB).
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.config.max_payload_bytes = bytes;
        self
    }

    /// How many attempts a run gets unless its trigger says otherwise (default 3).
    pub fn default_max_attempts(mut self, attempts: u32) -> Self {
        self.config.default_max_attempts = attempts.max(1);
        self
    }

    /// The wait before the first retry; each later retry waits twice as long, up to 30 s
    /// (default 1 s).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.config.retry_delay = delay;
        self
    }

    /// How long an idempotency key keeps returning the run it first triggered (default 30
    /// days).
    pub fn idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.config.idempotency_ttl = ttl;
        self
    }

    /// The cost of a millisecond of execution, in cents: a run's `costInCents` is its
    /// `durationMs` times this (default 0).
    pub fn cost_per_ms_cents(mut self, cents: f64) -> Self {
        self.config.cost_per_ms_cents = cents;
        self
    }

    /// The largest chunk a task may write to a stream, in bytes of JSON (default 1 MiB).
    pub fn max_chunk_bytes(mut self, bytes: usize) -> Self {
        self.config.max_chunk_bytes = bytes;
        self
    }

    /// The most bytes of chunks, across its streams, one run may write (default 100 MiB): each
    /// chunk counts its bytes of JSON plus 64, what the engine spends on keeping it.
    pub fn max_stream_bytes(mut self, bytes: usize) -> Self {
        self.config.max_stream_bytes = bytes;
        self
    }

    /// How long a finished run, with the chunks of its streams, is kept after it finished
    /// (default 1 hour); a subscriber that arrives within it still reads the streams from
    /// their start. Then the run is forgotten: [`Engine::run`] and new subscriptions no longer
    /// find it, and its idempotency key starts a new run. This bounds the memory of an engine
    /// that runs for long.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// Refuses subscriptions past `limit` at once, with
    /// [`SubscribeError::TooManySubscriptions`] (default: no limit).
    pub fn max_subscriptions(mut self, limit: usize) -> Self {
        self.hub = Some(RunHub::with_max_subscriptions(limit));
        self
    }

    /// Publishes to `hub` instead of a hub of its own, to share it with other publishers.
    pub fn hub(mut self, hub: RunHub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Starts the engine's workers on the current Tokio runtime.
    pub fn build(self) -> Result<Engine, BuildError> {
        self.build_with(|hub, retention| Store::Memory(MemoryStore::new(hub, retention)))
    }

    /// Starts the engine's workers on the current Tokio runtime, over the store `store` makes
    /// from the hub and the retention.
    fn build_with(
        self,
        store: impl FnOnce(RunHub, Duration) -> Store,
    ) -> Result<Engine, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(BuildError::NoRuntime)?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: store(self.hub.unwrap_or_default(), self.config.retention),
            closed: AtomicBool::new(false),
            running: Mutex::default(),
            executors: self.executors,
            queue,
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            runtime: runtime.clone(),
            prefix: id_prefix(),
            next_id: AtomicU64::new(1),
            config: self.config,
        });
        runtime.spawn(worker::dispatch(Arc::downgrade(&shared), receiver));
        runtime.spawn(worker::forget_finished(Arc::downgrade(&shared)));
        Ok(Engine { shared })
    }
}

/// A prefix that differs between engines started at different times.
fn id_prefix() -> String {
    let now = Timestamp::now().unix_millis().unsigned_abs();
    format!("{:x}", now % (1 << 40))
}

/// `kind`, the engine's `prefix`, then `sequence` in at least 8 digits, as a run or batch id:
/// written by hand on the stack, as `format!` and a `String` cost a tenth of a trigger.
fn new_id<I: for<'a> From<&'a str>>(kind: &str, prefix: &str, sequence: u64) -> I {
    // `kind` and `prefix` (at most 10 hex digits) are short; a `u64` has at most 20 digits.
    let mut id = [0; 64];
    let mut len = 0;
    for part in [kind, prefix] {
        id[len..len + part.len()].copy_from_slice(part.as_bytes());
        len += part.len();
    }
    let digits = sequence.checked_ilog10().unwrap_or(0).max(7) as usize + 1;
    let mut n = sequence;
    for digit in id[len..len + digits].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    len += digits;
    // ASCII, so valid UTF-8: borrowed, never replaced.
    I::from(&String::from_utf8_lossy(&id[..len]))
}

/// One run of a batch, of any task: its task, payload and options.
pub struct BatchItem {
    task: &'static str,
    payload: Result<Box<RawValue>, TriggerError>,
    options: TriggerOptions,
}

impl BatchItem {
    /// A run of `T`.
    pub fn new<T: Task>(payload: &T::Payload, options: TriggerOptions) -> Self {
        BatchItem {
            task: T::ID,
            payload: serde_json::value::to_raw_value(payload).map_err(TriggerError::Payload),
            options,
        }
    }
}

impl fmt::Debug for BatchItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchItem")
            .field("task", &self.task)
            .field("options", &self.options)
            .finish()
    }
}

/// A trigger that passed its checks.
struct Prepared {
    task: &'static str,
    payload: Box<RawValue>,
    /// The initial metadata, as the run holds it.
    metadata: Option<Arc<RawValue>>,
    max_attempts: u32,
    options: TriggerOptions,
}

/// Options of a trigger; `TriggerOptions::default()` for none.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TriggerOptions {
    /// Tags of the run: at most 10, each 1 to 128 characters without control characters.
    pub tags: Vec<String>,
    /// How many attempts the run gets (the engine's default when `None`).
    pub max_attempts: Option<u32>,
    /// The run's initial metadata.
    pub metadata: Option<JsonObject>,
    /// Marks the run as a test run.
    pub is_test: bool,
    /// A second trigger of the same task with the same key, within the engine's idempotency
    /// TTL, returns the first run instead of starting another.
    pub idempotency_key: Option<String>,
    /// The run waits in `DELAYED` this long before it is queued.
    pub delay: Option<Duration>,
    /// The run becomes `EXPIRED` if it has not started this long after it was triggered.
    pub ttl: Option<Duration>,
    /// An attempt that runs longer is stopped and the run becomes `TIMED_OUT`.
    pub max_duration: Option<Duration>,
}

impl TriggerOptions {
    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets how many attempts the run gets.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets the run's initial metadata.
    pub fn metadata(mut self, metadata: JsonObject) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Marks the run as a test run.
    pub fn test(mut self) -> Self {
        self.is_test = true;
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Delays the run.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the time to live before the run starts.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the maximum duration of an attempt.
    pub fn max_duration(mut self, max: Duration) -> Self {
        self.max_duration = Some(max);
        self
    }
}

/// Why a trigger was refused. Nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// The task is not registered with this engine.
    #[error(
        "task `{0}` is not registered with this engine; register it with `Engine::builder().task::<T>()`"
    )]
    UnknownTask(&'static str),
    /// The payload serializes to more JSON than the engine accepts.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size as JSON.
        size: usize,
        /// The engine's limit.
        limit: usize,
    },
    /// The payload could not be serialized as JSON.
    #[error("payload could not be serialized as JSON: {0}")]
    Payload(#[source] serde_json::Error),
    /// A tag breaks a rule.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag.
        tag: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// More tags than a run may carry.
    #[error("{count} tags given; a run carries at most {MAX_TAGS}")]
    TooManyTags {
        /// How many were given.
        count: usize,
    },
    /// `max_attempts` of zero.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// The initial metadata is over its size limit.
    #[error("initial metadata refused: {0}")]
    Metadata(#[source] MetadataError),
    /// The engine is shutting down.
    #[error("the engine is shutting down and accepts no more runs")]
    ShuttingDown,
    /// A batch with more items than allowed.
    #[error("a batch holds at most {MAX_BATCH} runs; more were given")]
    BatchTooLarge {
        /// How many were read before refusing: `MAX_BATCH + 1`.
        count: usize,
    },
}

/// Why a run's tags could not change. Nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// No unfinished run has this id.
    #[error("no unfinished run `{0}`")]
    NotLive(RunId),
    /// The tags would break a rule.
    #[error(transparent)]
    Invalid(TriggerError),
}

/// Why a run could not be canceled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    /// No run has this id.
    #[error("no run `{0}`")]
    UnknownRun(RunId),
    /// The run already finished.
    #[error("run `{id}` already finished as {status}")]
    AlreadyFinished {
        /// The run.
        id: RunId,
        /// Its final status.
        status: RunStatus,
    },
}

/// The most runs one batch trigger creates.
pub const MAX_BATCH: usize = 1_000;

/// Runs triggered together: the batch's id and a handle of each run, in order.
pub struct BatchHandle<T> {
    /// The batch's id: subscribe to it with [`Engine::subscribe_to_batch`].
    pub id: BatchId,
    /// The runs, in the order of the items.
    pub runs: Vec<RunHandle<T>>,
}

impl<T> fmt::Debug for BatchHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchHandle")
            .field("id", &self.id)
            .field("runs", &self.runs)
            .finish()
    }
}

/// A run just triggered: its id, and a cursor that precedes its creation.
pub struct RunHandle<T> {
    id: RunId,
    cursor: Cursor,
    task: PhantomData<fn() -> T>,
}

impl<T> Clone for RunHandle<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            cursor: self.cursor,
            task: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RunHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl<T> RunHandle<T> {
    fn new(id: RunId, cursor: Cursor) -> Self {
        Self {
            id,
            cursor,
            task: PhantomData,
        }
    }

    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// A cursor before the run's creation: subscribing from it cannot miss the first event.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }
}

fn check_tags(tags: &[String]) -> Result<(), TriggerError> {
    if tags.len() > MAX_TAGS {
        return Err(TriggerError::TooManyTags { count: tags.len() });
    }
    for tag in tags {
        let reason = if tag.is_empty() {
            "a tag cannot be empty"
        } else if tag.chars().count() > MAX_TAG_LEN {
            "a tag has at most 128 characters"
        } else if tag.chars().any(char::is_control) {
            "a tag cannot contain control characters"
        } else {
            continue;
        };
        return Err(TriggerError::InvalidTag {
            tag: tag.clone(),
            reason,
        });
    }
    Ok(())
}

impl Engine {
    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            executors: Map::default(),
            config: Config::default(),
            hub: None,
        }
    }

    /// The hub the engine publishes to.
    pub fn hub(&self) -> &RunHub {
        self.shared.store.hub()
    }

    /// Triggers a run of `T`. The handle's cursor precedes the run's creation: a subscription
    /// from it sees the run's first snapshot.
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
        let prepared = self.prepare(BatchItem::new::<T>(&payload, options))?;
        // Serialized: not kept while the run is stored.
        drop(payload);
        match self.store_runs(vec![prepared], None).await.pop() {
            Some(handle) => Ok(handle),
            None => unreachable!("a store returns what it did with each run"),
        }
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
            .map(|(payload, options)| BatchItem::new::<T>(&payload, options));
        let prepared = self.prepare_batch(items)?;
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
    ///         BatchItem::new::<A>(&1, TriggerOptions::default()),
    ///         BatchItem::new::<B>(&"one".to_owned(), TriggerOptions::default()),
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
        let prepared = self.prepare_batch(items.into_iter())?;
        self.batch(prepared).await
    }

    /// Checks a batch's items; stores nothing.
    fn prepare_batch(
        &self,
        items: impl Iterator<Item = BatchItem>,
    ) -> Result<Vec<Prepared>, TriggerError> {
        let items: Vec<BatchItem> = items.take(MAX_BATCH + 1).collect();
        if items.len() > MAX_BATCH {
            return Err(TriggerError::BatchTooLarge { count: items.len() });
        }
        items.into_iter().map(|item| self.prepare(item)).collect()
    }

    async fn batch<T>(&self, prepared: Vec<Prepared>) -> Result<BatchHandle<T>, TriggerError> {
        let sequence = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let id: BatchId = new_id("batch_", &self.shared.prefix, sequence);
        let runs = self.store_runs(prepared, Some(id.clone())).await;
        Ok(BatchHandle { id, runs })
    }

    /// Refuses a trigger once `shutdown` began.
    fn check_open(&self) -> Result<(), TriggerError> {
        if self.shared.is_closed() {
            Err(TriggerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Checks a trigger; stores nothing.
    fn prepare(&self, item: BatchItem) -> Result<Prepared, TriggerError> {
        let BatchItem {
            task,
            payload,
            options,
        } = item;
        let config = &self.shared.config;
        self.check_open()?;
        if !self.shared.executors.contains_key(task) {
            return Err(TriggerError::UnknownTask(task));
        }
        check_tags(&options.tags)?;
        let max_attempts = options.max_attempts.unwrap_or(config.default_max_attempts);
        if max_attempts == 0 {
            return Err(TriggerError::NoAttempts);
        }
        let metadata = options
            .metadata
            .as_ref()
            .map(metadata::to_raw)
            .transpose()
            .map_err(TriggerError::Metadata)?;
        let payload = payload?;
        let size = payload.get().len();
        if size > config.max_payload_bytes {
            return Err(TriggerError::PayloadTooLarge {
                size,
                limit: config.max_payload_bytes,
            });
        }
        Ok(Prepared {
            task,
            payload,
            metadata,
            max_attempts,
            options,
        })
    }

    /// Stores prepared runs in one [`RunStore::create`] (or finds the runs their idempotency
    /// keys started), then queues or schedules the new ones.
    async fn store_runs<T>(
        &self,
        prepared: Vec<Prepared>,
        batch: Option<BatchId>,
    ) -> Vec<RunHandle<T>> {
        let shared = &self.shared;
        let now = Timestamp::now();
        let mut timers = Vec::with_capacity(prepared.len());
        let records = prepared
            .into_iter()
            .map(|prepared| {
                let (delay, ttl) = (prepared.options.delay, prepared.options.ttl);
                let record = self.record(prepared, now);
                timers.push((record.snapshot.id.clone(), delay, ttl));
                record
            })
            .collect();
        let ttl = shared.config.idempotency_ttl;
        let created = shared.store.create(records, batch, ttl).await;
        let handles = created.into_iter().zip(timers);
        let handles = handles.map(|(created, (id, delay, ttl))| match created {
            Created::Existing(id, cursor) => RunHandle::new(id, cursor),
            Created::New(cursor) => {
                match delay {
                    Some(delay) => worker::after(shared, delay, id.clone(), worker::Timer::Delay),
                    // The dispatcher lives as long as any engine handle, so the queue is open.
                    None => drop(shared.queue.send(id.clone())),
                }
                if let Some(ttl) = ttl {
                    worker::after(shared, ttl, id.clone(), worker::Timer::Ttl);
                }
                RunHandle::new(id, cursor)
            }
        });
        handles.collect()
    }

    /// The record of a new run, numbered by the store.
    fn record(&self, prepared: Prepared, now: Timestamp) -> Record {
        let Prepared {
            task,
            payload,
            metadata,
            max_attempts,
            options,
        } = prepared;
        let sequence = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let id: RunId = new_id("run_", &self.shared.prefix, sequence);
        let delayed_until = options.delay.and_then(|delay| now.checked_add(delay));
        let snapshot = AnyRun {
            id,
            task_identifier: task.to_owned(),
            payload: Some(payload.into()),
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
            tags: options.tags,
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
        }
    }

    /// Cancels a run that has not finished: it becomes `CANCELED`, a queued or delayed run
    /// never starts, and a running attempt is stopped at its next `.await` (its context's
    /// [`canceled`](crate::TaskContext::canceled) completes).
    pub async fn cancel(&self, id: &RunId) -> Result<(), CancelError> {
        if self.cancel_if(id, |status| !status.is_final()).await {
            return Ok(());
        }
        match self.shared.store.snapshot(id).await {
            Some(run) => Err(CancelError::AlreadyFinished {
                id: id.clone(),
                status: run.status,
            }),
            None => Err(CancelError::UnknownRun(id.clone())),
        }
    }

    /// Cancels a run whose status passes `when`, and stops its attempt running here, if any;
    /// returns whether it did.
    async fn cancel_if(&self, id: &RunId, when: impl FnOnce(RunStatus) -> bool + Send) -> bool {
        let shared = &self.shared;
        let canceled = shared.store.update_if(id, when, |record| {
            let run = record.run();
            run.status = RunStatus::Canceled;
            run.finished_at = Some(Timestamp::now());
        });
        if canceled.await.is_none() {
            return false;
        }
        // An attempt registers its signal before it starts the run, so one that started
        // before this change is found here.
        if let Some(signal) = hub::lock(&shared.running).get(id) {
            signal.cancel();
        }
        true
    }

    /// Changes a run's metadata, all or nothing (see [`MetadataOp`]). A finished run's
    /// metadata can still change, as child runs may report into it.
    pub async fn update_metadata(
        &self,
        id: &RunId,
        ops: impl IntoIterator<Item = MetadataOp>,
    ) -> Result<(), MetadataError> {
        let ops = ops.into_iter().collect();
        self.shared.update_metadata(id, ops).await
    }

    /// Adds tags to a run that has not finished; the checks of a trigger's tags apply to the
    /// result.
    pub async fn add_tags(
        &self,
        id: &RunId,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), TagError> {
        let added: Vec<String> = tags.into_iter().map(Into::into).collect();
        let change = |tags: &mut Vec<String>| {
            for tag in added {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        };
        self.change_tags(id, change).await
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
            let mut tags = record.snapshot.tags.clone();
            change(&mut tags);
            check_tags(&tags).map_err(TagError::Invalid)?;
            record.run().tags = tags;
            Ok(())
        });
        (outcome.await).unwrap_or_else(|| Err(TagError::NotLive(id.clone())))
    }

    /// Stops the engine gracefully: refuses new triggers, starts no more queued runs, and waits
    /// up to `deadline` for running attempts to finish; the ones still running then are
    /// canceled, and it returns after waiting as long again for them to stop. Runs still
    /// queued, delayed or waiting for a retry stay as they are, as do the runs of a trigger
    /// that was past its checks when `shutdown` began.
    ///
    /// Returns how many attempts were canceled.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        let shared = &self.shared;
        // No trigger passes its checks and no attempt starts after this (see `check_open` and
        // `worker::run_attempt`).
        shared.closed.store(true, Ordering::SeqCst);
        let all = u32::try_from(shared.config.concurrency).unwrap_or(u32::MAX);
        if let Ok(Ok(idle)) =
            tokio::time::timeout(deadline, Arc::clone(&shared.slots).acquire_many_owned(all)).await
        {
            drop(idle);
            return 0;
        }
        let running: Vec<RunId> = hub::lock(&shared.running).keys().cloned().collect();
        let mut canceled = 0;
        for id in &running {
            // An attempt registered but refused its start (the engine is closed) leaves its
            // run queued.
            let executing = |status| status == RunStatus::Executing;
            canceled += usize::from(self.cancel_if(id, executing).await);
        }
        // Canceled attempts stop at their next `.await`; give them as long again to hand back
        // their slot (a task blocked outside an `.await` may never).
        let slots = Arc::clone(&shared.slots).acquire_many_owned(all);
        let _ = tokio::time::timeout(deadline, slots).await;
        canceled
    }

    /// The latest snapshot of a run.
    pub async fn run(&self, id: &RunId) -> Option<AnyRun> {
        let run = self.shared.store.snapshot(id).await?;
        Some(Arc::unwrap_or_clone(run))
    }

    /// Subscribes to the runs in `scope` from `from`, untyped (see [`RunHub::subscribe`]).
    pub fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, SubscribeError> {
        self.shared.store.hub().subscribe(scope, from)
    }

    /// Subscribes to one run of `T`: its current snapshot, then every change, ending after
    /// its final status.
    pub fn subscribe_to_run<T: Task>(
        &self,
        id: &RunId,
    ) -> Result<Decoded<UntilFinished<Subscription>, Run<T>>, SubscribeError> {
        self.known(id)?;
        Ok(self
            .subscribe(Scope::Run(id.clone()), Cursor::START)?
            .until_finished()
            .typed::<T>())
    }

    /// Reads one stream of a run of `T` from its start: its chunks, typed as declared, ending
    /// once the run has finished (a finished run's stream is read whole, then ends).
    ///
    /// ```
    /// # use runcast::{Engine, TaskContext, task};
    /// use futures::TryStreamExt;
    ///
    /// #[task(id = "count", streams(numbers = u32))]
    /// async fn count(to: u32, ctx: TaskContext) -> Result<(), runcast::StreamError> {
    ///     let numbers = ctx.stream(Count::NUMBERS);
    ///     for n in 1..=to {
    ///         numbers.append(&n).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let engine = Engine::builder().task::<Count>().build()?;
    /// let run = engine.trigger::<Count>(3).await?;
    /// let chunks: Vec<_> = engine.read_stream(run.id(), Count::NUMBERS)?.try_collect().await?;
    /// assert_eq!(chunks.iter().map(|c| c.value).collect::<Vec<_>>(), [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream<T: Task, C: DeserializeOwned>(
        &self,
        id: &RunId,
        key: StreamKey<T, C>,
    ) -> Result<ReadStream<C>, SubscribeError> {
        self.read_stream_from(id, key, Cursor::START)
    }

    /// Reads one stream of a run like [`read_stream`](Self::read_stream), from after `from`
    /// (the cursor of a chunk read before, to continue after it).
    pub fn read_stream_from<T: Task, C: DeserializeOwned>(
        &self,
        id: &RunId,
        key: StreamKey<T, C>,
        from: Cursor,
    ) -> Result<ReadStream<C>, SubscribeError> {
        let hub = self.shared.store.hub();
        let Some(latest) = hub.latest(id) else {
            return Err(SubscribeError::UnknownRun(id.clone()));
        };
        if latest.run.task_identifier != T::ID {
            return Err(SubscribeError::UnexpectedTask {
                run: id.clone(),
                task_identifier: latest.run.task_identifier.clone(),
                expected: T::ID,
            });
        }
        // A finished run writes no more chunks: from past its latest change, read that change
        // only, which ends the stream.
        let from = if latest.run.status.is_final() {
            from.min(latest.cursor.before())
        } else {
            from
        };
        let items = hub.subscribe_with_streams(Scope::Run(id.clone()), from)?;
        Ok(ReadStream::new(items.until_finished(), key.key()))
    }

    /// Refuses a subscription to a run that does not exist, which would never yield.
    fn known(&self, id: &RunId) -> Result<(), SubscribeError> {
        if self.shared.store.hub().latest(id).is_some() {
            Ok(())
        } else {
            Err(SubscribeError::UnknownRun(id.clone()))
        }
    }

    /// Subscribes to one run of `T` like [`subscribe_to_run`](Self::subscribe_to_run), but
    /// does not end after its final status: changes made after it finished (metadata from
    /// outside) still arrive. Trigger.dev calls this `stopOnCompletion: false`.
    pub fn subscribe_to_run_forever<T: Task>(
        &self,
        id: &RunId,
    ) -> Result<Decoded<Subscription, Run<T>>, SubscribeError> {
        self.known(id)?;
        Ok(self
            .subscribe(Scope::Run(id.clone()), Cursor::START)?
            .typed::<T>())
    }
}

impl RunFeed for Engine {
    type Error = DecodeError;
    type Subscription = Subscription;

    fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, SubscribeError> {
        Engine::subscribe(self, scope, from)
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
    /// Whether `shutdown` began.
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
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

    /// Changes a run's metadata, finished or not, and publishes it.
    async fn update_metadata(&self, id: &RunId, ops: Vec<MetadataOp>) -> Result<(), MetadataError> {
        let outcome = self.store.change_if(
            id,
            |_| true,
            |record| {
                let metadata = metadata::apply_raw(record.snapshot.metadata.as_deref(), ops)?;
                record.run().metadata = Some(metadata);
                Ok(())
            },
        );
        (outcome.await).unwrap_or_else(|| Err(MetadataError::UnknownRun(id.to_string())))
    }
}

#[cfg(test)]
mod tests;
