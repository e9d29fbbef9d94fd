//! [`EngineBuilder`]: an engine's tasks and settings.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::claims;
use super::context::TaskFn;
use super::error::BuildError;
use super::executor::{Declared, Executor, FnExecutor};
use super::memory::MemoryStore;
use super::store::{RunStore, Stop, Store};
use super::timers::{self, Timers};
use super::{Engine, Shared, panic};
use crate::hub::{HubConfig, RunHub};
use crate::support::Map;
use crate::typed::Task;

/// The engine's settings.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) concurrency: usize,
    pub(super) max_payload_bytes: usize,
    pub(super) default_max_attempts: u32,
    pub(super) retry_delay: Duration,
    pub(super) idempotency_ttl: Duration,
    pub(super) cost_per_ms_cents: f64,
    pub(super) retention: Duration,
    pub(super) max_chunk_bytes: usize,
    pub(super) max_stream_bytes: usize,
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

/// Configures and starts an [`Engine`]. Settings may be given in any order.
#[must_use = "an engine builder does nothing until `build` is called"]
pub struct EngineBuilder {
    executors: Map<&'static str, Arc<dyn Executor>>,
    /// The first task registered under an id already taken: `(id, first, second)`.
    duplicate: Option<(&'static str, &'static str, &'static str)>,
    config: Config,
    hub: HubConfig,
    #[cfg(feature = "postgres")]
    postgres: Option<crate::postgres::PostgresStore>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("tasks", &self.executors.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .field("hub", &self.hub)
            .finish()
    }
}

impl EngineBuilder {
    pub(super) fn new() -> Self {
        Self {
            executors: Map::default(),
            duplicate: None,
            config: Config::default(),
            hub: HubConfig::default(),
            #[cfg(feature = "postgres")]
            postgres: None,
        }
    }

    /// Keeps the engine's runs in Postgres instead of this process's memory (feature
    /// `postgres`): they survive the process, and the engines of every process connected to
    /// the same database share them. Subscriptions see the changes every process makes, and
    /// their cursors resume in any of them.
    ///
    /// Every engine that registered a task's function attempts its runs, whichever process
    /// triggered them: it claims queued runs from the database for its free slots (and some
    /// ahead, held for it a few seconds), holds each attempt under a lease it renews, and
    /// fires the delays, TTLs and backoffs kept in the runs' rows; a run whose process
    /// vanished is taken over once its lease runs out (see
    /// [`PostgresStore::lease`](crate::PostgresStore::lease) and the README's Postgres
    /// section).
    #[cfg(feature = "postgres")]
    pub fn postgres(mut self, store: crate::postgres::PostgresStore) -> Self {
        self.postgres = Some(store);
        self
    }

    /// Registers a task the engine runs: one declared with `#[task]` on an `async fn`. Two
    /// tasks with one identifier make [`build`](Self::build) fail.
    pub fn task<T: TaskFn>(self) -> Self {
        self.register(T::ID, Arc::new(FnExecutor::<T>::new()))
    }

    /// Declares a task this engine triggers and watches but does not run, such as one
    /// declared with `#[task]` on a struct: its runs wait until an engine that registered its
    /// function ([`task`](Self::task)) attempts them, in another process that shares the
    /// engine's store (`postgres`, with the feature of that name). Triggers are checked as
    /// for a task that runs here (payload type, metadata type, limits). An engine that keeps
    /// its runs in memory refuses to build with a declared task
    /// ([`BuildError::DeclaredInMemory`]).
    pub fn declare<T: Task>(self) -> Self {
        self.register(T::ID, Arc::new(Declared::<T>::new()))
    }

    fn register(mut self, id: &'static str, executor: Arc<dyn Executor>) -> Self {
        if let Some(first) = self.executors.get(id) {
            self.duplicate
                .get_or_insert((id, first.type_name(), executor.type_name()));
        } else {
            self.executors.insert(id, executor);
        }
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
    /// their start. Then the run is forgotten: reads and new subscriptions no longer find it,
    /// and its idempotency key starts a new run. This bounds the memory of an engine that runs
    /// for long.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// How many bytes a subscription keeps for its reader of runs that were forgotten (see
    /// [`retention`](Self::retention)) before it read them (default 64 MiB).
    ///
    /// A reader that keeps up, or lags by less than the retention, never needs it: chunks are
    /// read back from the engine while their runs are kept, and a lagging reader's changes are
    /// the latest snapshot of each run. One that lags longer keeps, for each run forgotten
    /// meanwhile, the chunks it had not read and (beyond its
    /// [`subscription_window`](Self::subscription_window)) the run's latest change, within
    /// this budget. Past it, they are dropped, and the reader gets a
    /// [`FeedError::ChunksDropped`](crate::FeedError::ChunksDropped) or
    /// [`FeedError::ChangesDropped`](crate::FeedError::ChangesDropped) item naming the run: a
    /// reader that stalls cannot make the engine's memory grow without bound.
    pub fn lagging_reader_bytes(mut self, bytes: usize) -> Self {
        self.hub.orphan_bytes = bytes;
        self
    }

    /// Refuses subscriptions past `limit` at once, with
    /// [`FeedError::TooManySubscriptions`](crate::FeedError::TooManySubscriptions) (default: no
    /// limit).
    pub fn max_subscriptions(mut self, limit: usize) -> Self {
        self.hub.max_subscriptions = Some(limit);
        self
    }

    /// How many live changes a subscription may hold unread before it falls behind (default
    /// 1,024; at least 1). Within the window it gets every change; beyond it, the latest
    /// snapshot of each run that changed, marked [`coalesced`](crate::Update::coalesced). What
    /// a subscription starts with (the current state of each run in scope, or the retained
    /// changes after the cursor it resumes from) is not counted: it is yielded whole.
    pub fn subscription_window(mut self, changes: usize) -> Self {
        self.hub.window = changes.max(1);
        self
    }

    /// How much of the history of changes the engine keeps for subscriptions resumed from a
    /// cursor: at most `changes` changes and about `bytes` bytes of snapshots (default 4,096
    /// and 16 MiB). A subscription resumed from before the oldest change kept gets the latest
    /// snapshot of each run that changed since, marked coalesced; over Postgres, it first
    /// replays the database's log, which keeps the changes of the retention (up to 100,000
    /// changes back).
    pub fn change_history(mut self, changes: usize, bytes: usize) -> Self {
        self.hub.history_changes = changes;
        self.hub.history_bytes = bytes;
        self
    }

    /// Starts the engine's workers on the current Tokio runtime.
    pub fn build(self) -> Result<Engine, BuildError> {
        #[cfg(feature = "postgres")]
        if let Some(postgres) = self.postgres.clone() {
            return self
                .build_with(|hub, retention| Store::Postgres(postgres.start(hub, retention)));
        }
        self.build_with(|hub, retention| {
            Store::Memory(MemoryStore::new(RunHub::new(hub), retention))
        })
    }

    /// Starts the engine's workers on the current Tokio runtime, over the store `store` makes
    /// from the hub and the retention.
    pub(super) fn build_with(
        self,
        store: impl FnOnce(HubConfig, Duration) -> Store,
    ) -> Result<Engine, BuildError> {
        if let Some((id, first, second)) = self.duplicate {
            return Err(BuildError::DuplicateTask { id, first, second });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(BuildError::NoRuntime)?;
        let store = store(self.hub, self.config.retention);
        if !store.is_shared()
            && let Some((id, _)) = self.executors.iter().find(|(_, e)| !e.runs_here())
        {
            return Err(BuildError::DeclaredInMemory(id));
        }
        panic::install_hook();
        let engine = Shared {
            store,
            closed: AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
            running: std::sync::Mutex::default(),
            executors: self.executors,
            #[cfg(feature = "postgres")]
            catalog: super::catalog::Catalog::default(),
            queue: std::sync::Mutex::default(),
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            timers: Timers::default(),
            runtime: runtime.clone(),
            config: self.config,
        }
        .into_engine();
        let shared = &engine.shared;
        runtime.spawn(timers::serve(Arc::downgrade(shared)));
        if shared.store.is_shared() {
            runtime.spawn(claims::serve(Arc::downgrade(shared)));
        }
        if let Some(canceled) = shared.store.cancellations() {
            runtime.spawn(stop_canceled(Arc::downgrade(shared), canceled));
        }
        Ok(engine)
    }
}

/// Stops the attempts running here that a shared store asks to stop.
async fn stop_canceled(
    shared: std::sync::Weak<Shared>,
    mut stops: tokio::sync::mpsc::UnboundedReceiver<Stop>,
) {
    while let Some(stop) = stops.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match stop {
            Stop::Canceled(id) => {
                if let Some(signals) = crate::support::lock(&shared.running).get(&id) {
                    signals.cancel();
                }
            }
            Stop::LeaseLost => {
                // Sent at every failed renewal: said only when attempts stop.
                if !crate::support::lock(&shared.running).is_empty() {
                    tracing::warn!(
                        "this process could not renew its leases: its attempts stop, to be \
                         attempted again once their leases run out"
                    );
                }
                shared.cancel_running();
            }
        }
    }
}
