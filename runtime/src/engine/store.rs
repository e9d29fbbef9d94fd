//! The engine's store: the record of every run it keeps, and the hub each change is published
//! to. Runs are created in a [`Transaction`] and changed through [`Store::change_if`], each
//! under the store's one lock, so changes are published in the order they are made.
//!
//! The lifecycle (what a trigger, an attempt, a timer or a cancellation changes) lives in the
//! engine and its workers, which reach the runs only through this module's operations: a
//! store over another medium (Postgres, where a transaction is a database transaction)
//! provides the same ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::feed::Cursor;
use crate::hub::{self, RunHub};
use crate::metadata;
use crate::run::{AnyRun, BatchId, JsonObject, RunId};
use crate::status::RunStatus;
use crate::streams::StreamError;
use crate::task::CancelSignal;
use crate::timestamp::Timestamp;

/// What a stored chunk costs besides its JSON, counted against a run's stream limit: the
/// hub's record of it and the allocation of its text.
pub(super) const CHUNK_OVERHEAD: usize = 64;

/// `(task, idempotency key)`.
pub(super) type IdempotencyKey = (&'static str, String);

/// What the engine knows of a run beyond its public snapshot.
pub(super) struct Record {
    /// Shared with the hub, which holds the same snapshot: see [`Record::run`].
    pub(super) snapshot: Arc<AnyRun>,
    /// A cursor before the run's creation.
    pub(super) created: Cursor,
    pub(super) attempts: u32,
    pub(super) max_attempts: u32,
    pub(super) max_duration: Option<Duration>,
    pub(super) cancel: CancelSignal,
    /// The key that returns this run, if it was triggered with one.
    pub(super) idempotency: Option<IdempotencyKey>,
    /// Bytes of chunks written to the run's streams.
    pub(super) stream_bytes: usize,
}

impl Record {
    /// The snapshot, to change: a copy of the published one (the hub holds that until the
    /// change is published), so published snapshots never change. The copy shares payload,
    /// output and metadata; later calls in the same change reuse it.
    pub(super) fn run(&mut self) -> &mut AnyRun {
        Arc::make_mut(&mut self.snapshot)
    }
}

/// The runs, under the store's lock.
#[derive(Default)]
struct State {
    runs: HashMap<RunId, Record>,
    numbers: HashMap<&'static str, u64>,
    /// The run each key started, and when.
    idempotency: HashMap<IdempotencyKey, (RunId, Timestamp)>,
    /// Finished runs, in the order they finished, with when to forget them.
    finished: VecDeque<(Instant, RunId)>,
}

/// Runs being created together, under the store's lock: the runs of one trigger or of one
/// batch, all stored or none.
pub(super) struct Transaction<'a> {
    state: &'a mut State,
    store: &'a Store,
}

/// The store is closed: the engine is shutting down.
#[derive(Debug)]
pub(super) struct Closed;

impl Transaction<'_> {
    /// The run `key` started, with the cursor before its creation, if the key was used less
    /// than `ttl` ago and the run is still kept.
    pub(super) fn keyed(
        &mut self,
        key: &IdempotencyKey,
        now: Timestamp,
        ttl: Duration,
    ) -> Option<(RunId, Cursor)> {
        let state = &mut *self.state;
        let (id, at) = state.idempotency.get(key)?;
        if now.saturating_duration_since(*at) >= ttl {
            // Expired: forgotten now, so the key starts a new run.
            state.idempotency.remove(key);
            return None;
        }
        let record = state.runs.get(id)?;
        Some((record.snapshot.id.clone(), record.created))
    }

    /// The number of `task`'s next run: 1, 2, 3...
    pub(super) fn next_number(&mut self, task: &'static str) -> u64 {
        let number = self.state.numbers.entry(task).or_default();
        *number += 1;
        *number
    }

    /// Stores a new run and publishes its first snapshot; returns the cursor before it.
    pub(super) fn add(&mut self, record: Record, batch: Option<BatchId>, now: Timestamp) -> Cursor {
        let id = record.snapshot.id.clone();
        if let Some(key) = &record.idempotency {
            self.state
                .idempotency
                .insert(key.clone(), (id.clone(), now));
        }
        let published = self.store.hub.publish(Arc::clone(&record.snapshot), batch);
        let created = published.before();
        self.state.runs.insert(id, Record { created, ..record });
        created
    }
}

pub(super) struct Store {
    state: Mutex<State>,
    /// Set by [`close`](Self::close), under the lock.
    closed: AtomicBool,
    hub: RunHub,
    /// How long a finished run is kept.
    retention: Duration,
}

impl Store {
    pub(super) fn new(hub: RunHub, retention: Duration) -> Self {
        Self {
            state: Mutex::default(),
            closed: AtomicBool::new(false),
            hub,
            retention,
        }
    }

    pub(super) fn hub(&self) -> &RunHub {
        &self.hub
    }

    /// Creates runs in one transaction, unless the store is closed.
    pub(super) fn transaction<R>(
        &self,
        create: impl FnOnce(&mut Transaction<'_>) -> R,
    ) -> Result<R, Closed> {
        let mut state = self.lock();
        if self.is_closed() {
            return Err(Closed);
        }
        Ok(create(&mut Transaction {
            state: &mut state,
            store: self,
        }))
    }

    /// Refuses new runs from now on; a transaction that began before finishes first.
    pub(super) fn close(&self) {
        let _state = self.lock();
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Self::close) was called. Checked under the lock by
    /// [`transaction`](Self::transaction) and by the changes that start attempts.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The ids of the runs executing now.
    pub(super) fn executing(&self) -> Vec<RunId> {
        let state = self.lock();
        let executing = state
            .runs
            .values()
            .filter(|record| record.snapshot.status == RunStatus::Executing);
        executing.map(|record| record.snapshot.id.clone()).collect()
    }

    /// The state stays consistent if a thread panicked while holding the lock: every change is
    /// made before anything that could panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        hub::lock(&self.state)
    }

    pub(super) fn contains(&self, id: &RunId) -> bool {
        self.lock().runs.contains_key(id)
    }

    /// The run's metadata.
    pub(super) fn metadata(&self, id: &RunId) -> Option<JsonObject> {
        let raw = self.lock().runs.get(id)?.snapshot.metadata.clone();
        metadata::from_raw(raw.as_deref())
    }

    /// Changes a run that has not finished and publishes it; `None` if the run is unknown or
    /// finished, so that a late worker or timer never changes a canceled run.
    pub(super) fn update<R>(&self, id: &RunId, change: impl FnOnce(&mut Record) -> R) -> Option<R> {
        self.update_if(id, |status| !status.is_final(), change)
    }

    /// Changes a run whose status passes `when`, and publishes it; `None` otherwise.
    pub(super) fn update_if<R>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool,
        change: impl FnOnce(&mut Record) -> R,
    ) -> Option<R> {
        let outcome = self.change_if(id, when, |record| {
            Ok::<_, std::convert::Infallible>(change(record))
        });
        outcome.map(|Ok(result)| result)
    }

    /// Like [`update_if`](Self::update_if), for a change that may be refused: on `Err` the
    /// change must have left the record as it was, and nothing is published.
    pub(super) fn change_if<R, E>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool,
        change: impl FnOnce(&mut Record) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        let mut state = self.lock();
        let record = state.runs.get_mut(id)?;
        if !when(record.snapshot.status) {
            return None;
        }
        let was_final = record.snapshot.status.is_final();
        let result = change(record);
        if result.is_ok() {
            record.run().updated_at = Timestamp::now();
            self.hub.publish(Arc::clone(&record.snapshot), None);
            if !was_final && record.snapshot.status.is_final() {
                let id = record.snapshot.id.clone();
                // A retention too long to count is forever.
                if let Some(at) = Instant::now().checked_add(self.retention) {
                    state.finished.push_back((at, id));
                }
            }
        }
        Some(result)
    }

    /// Appends a chunk to a stream of a run of `task` from its attempt `attempt`, which must
    /// be executing, if the run's streams stay within `limit` bytes (see [`CHUNK_OVERHEAD`]).
    /// A stream's first chunk also adds its key to the run's `realtimeStreams`, published
    /// before the chunk.
    pub(super) fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        (task, key): (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        let mut state = self.lock();
        let record = match state.runs.get_mut(id) {
            Some(record)
                if record.snapshot.status == RunStatus::Executing && record.attempts == attempt =>
            {
                record
            }
            _ => return Err(StreamError::NotRunning(id.clone())),
        };
        if record.snapshot.task_identifier != task {
            return Err(StreamError::WrongTask {
                key,
                key_task: task,
                run_task: record.snapshot.task_identifier.clone(),
            });
        }
        let size = (record.stream_bytes)
            .saturating_add(data.get().len())
            .saturating_add(CHUNK_OVERHEAD);
        if size > limit {
            return Err(StreamError::RunStreamsTooLarge {
                run: id.clone(),
                size,
                limit,
            });
        }
        record.stream_bytes = size;
        if !record.snapshot.realtime_streams.iter().any(|k| k == key) {
            let run = record.run();
            run.realtime_streams.push(key.to_owned());
            run.updated_at = Timestamp::now();
            self.hub.publish(Arc::clone(&record.snapshot), None);
        }
        let cursor = self.hub.append_chunk(id, key, data);
        // The hub holds every run the store holds, so it knows this one.
        cursor.ok_or_else(|| StreamError::NotRunning(id.clone()))
    }

    /// Forgets the runs whose retention ended by `now`; returns when the next one's ends.
    pub(super) fn forget_finished(&self, now: Instant) -> Option<Instant> {
        // What is forgotten is freed after the locks: a run's chunks may be many.
        let mut forgotten = Vec::new();
        let mut state = self.lock();
        let next = loop {
            let Some(&(at, _)) = state.finished.front() else {
                break None;
            };
            if at > now {
                break Some(at);
            }
            let Some((_, id)) = state.finished.pop_front() else {
                break None;
            };
            let Some(record) = state.runs.remove(&id) else {
                continue;
            };
            if let Some(key) = &record.idempotency
                && state
                    .idempotency
                    .get(key)
                    .is_some_and(|(started, _)| *started == id)
            {
                state.idempotency.remove(key);
            }
            forgotten.push((record, self.hub.remove(&id)));
        };
        drop(state);
        drop(forgotten);
        next
    }

    /// How long a finished run is kept.
    pub(super) fn retention(&self) -> Duration {
        self.retention
    }
}
