//! The embedded engine: triggers runs, executes registered `#[task]` functions on a worker
//! pool, and publishes every change of every run to a [`RunHub`] that subscriptions read.
//!
//! This first version covers triggering (tags, metadata, attempts, test runs), execution with
//! retries, crash capture, and subscriptions by run, tags and any scope. Delays, time to
//! live, maximum duration, idempotency keys, batches, cancellation, metadata operations and
//! graceful shutdown are not implemented yet.

mod executor;
mod worker;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use self::executor::{Executor, FnExecutor};
use crate::feed::{Cursor, Scope};
use crate::hub::{RunHub, SubscribeError, Subscription};
use crate::run::{AnyRun, JsonObject, Run, RunId};
use crate::status::RunStatus;
use crate::stream::{Decoded, RunStreamExt, UntilFinished};
use crate::task::{Task, TaskFn};
use crate::timestamp::Timestamp;
use crate::union::RunUnion;

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
/// let run = engine.trigger::<Double>(21)?;
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
    hub: RunHub,
    executors: HashMap<&'static str, Arc<dyn Executor>>,
    config: Config,
    state: Mutex<State>,
    queue: mpsc::UnboundedSender<RunId>,
    /// Makes run ids unique to this engine.
    prefix: String,
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    runs: HashMap<RunId, Record>,
    numbers: HashMap<&'static str, u64>,
}

/// What the engine knows of a run beyond its public snapshot.
struct Record {
    snapshot: AnyRun,
    attempts: u32,
    max_attempts: u32,
}

#[derive(Debug, Clone)]
struct Config {
    concurrency: usize,
    max_payload_bytes: usize,
    default_max_attempts: u32,
    retry_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 64,
            max_payload_bytes: 10 * 1024 * 1024,
            default_max_attempts: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Configures and starts an [`Engine`].
#[must_use = "an engine builder does nothing until `build` is called"]
pub struct EngineBuilder {
    executors: HashMap<&'static str, Arc<dyn Executor>>,
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

    /// How many attempts may run at once (default 64).
    pub fn concurrency(mut self, attempts: usize) -> Self {
        self.config.concurrency = attempts.max(1);
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

    /// Publishes to `hub` instead of a hub of its own, to share it with other publishers.
    pub fn hub(mut self, hub: RunHub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Starts the engine's workers on the current Tokio runtime.
    pub fn build(self) -> Result<Engine, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(BuildError::NoRuntime)?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            hub: self.hub.unwrap_or_default(),
            executors: self.executors,
            state: Mutex::new(State::default()),
            queue,
            prefix: id_prefix(),
            next_id: AtomicU64::new(1),
            config: self.config,
        });
        runtime.spawn(worker::dispatch(Arc::downgrade(&shared), receiver));
        Ok(Engine { shared })
    }
}

/// A prefix that differs between engines started at different times.
fn id_prefix() -> String {
    let now = Timestamp::now().unix_millis().unsigned_abs();
    format!("{:x}", now % (1 << 40))
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

impl<T: Task> fmt::Debug for RunHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("task", &T::ID)
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl<T> RunHandle<T> {
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
            executors: HashMap::new(),
            config: Config::default(),
            hub: None,
        }
    }

    /// The hub the engine publishes to.
    pub fn hub(&self) -> &RunHub {
        &self.shared.hub
    }

    /// Triggers a run of `T`.
    pub fn trigger<T: Task>(&self, payload: T::Payload) -> Result<RunHandle<T>, TriggerError> {
        self.trigger_with(payload, TriggerOptions::default())
    }

    /// Triggers a run of `T` with options.
    pub fn trigger_with<T: Task>(
        &self,
        payload: T::Payload,
        options: TriggerOptions,
    ) -> Result<RunHandle<T>, TriggerError> {
        let shared = &self.shared;
        if !shared.executors.contains_key(T::ID) {
            return Err(TriggerError::UnknownTask(T::ID));
        }
        check_tags(&options.tags)?;
        let max_attempts = options
            .max_attempts
            .unwrap_or(shared.config.default_max_attempts);
        if max_attempts == 0 {
            return Err(TriggerError::NoAttempts);
        }
        let payload: Box<RawValue> =
            serde_json::value::to_raw_value(&payload).map_err(TriggerError::Payload)?;
        let size = payload.get().len();
        if size > shared.config.max_payload_bytes {
            return Err(TriggerError::PayloadTooLarge {
                size,
                limit: shared.config.max_payload_bytes,
            });
        }
        let sequence = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let id = RunId::from(format!("run_{}{sequence:08}", shared.prefix));
        let now = Timestamp::now();
        let mut state = shared.lock();
        let number = state.numbers.entry(T::ID).or_default();
        *number += 1;
        let snapshot = AnyRun {
            id: id.clone(),
            task_identifier: T::ID.to_owned(),
            payload: Some(payload),
            output: None,
            created_at: now,
            updated_at: now,
            number: *number,
            status: RunStatus::Queued,
            duration_ms: 0,
            cost_in_cents: 0.0,
            base_cost_in_cents: 0.0,
            tags: options.tags,
            idempotency_key: None,
            expired_at: None,
            ttl: None,
            finished_at: None,
            started_at: None,
            delayed_until: None,
            queued_at: Some(now),
            metadata: options.metadata,
            error: None,
            is_test: options.is_test,
        };
        let created = shared.hub.publish(snapshot.clone(), None);
        state.runs.insert(
            id.clone(),
            Record {
                snapshot,
                attempts: 0,
                max_attempts,
            },
        );
        drop(state);
        // The dispatcher lives as long as any engine handle, so the queue is open.
        let _ = shared.queue.send(id.clone());
        Ok(RunHandle {
            id,
            cursor: Cursor::new(created.version() - 1),
            task: PhantomData,
        })
    }

    /// Subscribes to the runs in `scope` from `from`, untyped (see [`RunHub::subscribe`]).
    pub fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, SubscribeError> {
        self.shared.hub.subscribe(scope, from)
    }

    /// Subscribes to one run of `T`: its current snapshot, then every change, ending after
    /// its final status.
    pub fn subscribe_to_run<T: Task>(
        &self,
        id: &RunId,
    ) -> Result<Decoded<UntilFinished<Subscription>, Run<T>>, SubscribeError> {
        Ok(self
            .subscribe(Scope::Run(id.clone()), Cursor::START)?
            .until_finished()
            .typed::<T>())
    }

    /// Subscribes to the runs that carry all of `tags`, as variants of the union `U`. Never
    /// ends on its own.
    pub fn subscribe_to_runs_with_tag<U: RunUnion>(
        &self,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Decoded<Subscription, U>, SubscribeError> {
        let tags = tags.into_iter().map(Into::into).collect();
        Ok(self
            .subscribe(Scope::Tags(tags), Cursor::START)?
            .union::<U>())
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("tasks", &self.shared.executors.keys().collect::<Vec<_>>())
            .field("hub", &self.shared.hub)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes a run's snapshot and publishes it; `None` if the run is unknown.
    fn update<R>(&self, id: &RunId, change: impl FnOnce(&mut Record) -> R) -> Option<R> {
        let mut state = self.lock();
        let record = state.runs.get_mut(id)?;
        let result = change(record);
        record.snapshot.updated_at = Timestamp::now();
        self.hub.publish(record.snapshot.clone(), None);
        Some(result)
    }
}
