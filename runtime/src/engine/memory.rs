//! The embedded engine's store: runs kept in this process's memory, under one lock, so
//! changes are published in the order they are made.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use super::store::{CHUNK_OVERHEAD, Closed, Created, IdempotencyKey, Record, RunStore};
use crate::feed::Cursor;
use crate::hub::{self, RunHub};
use crate::run::{AnyRun, BatchId, RunId};
use crate::status::RunStatus;
use crate::streams::StreamError;
use crate::timestamp::Timestamp;

/// The runs, under the store's lock.
#[derive(Default)]
struct State {
    runs: HashMap<RunId, Record>,
    numbers: HashMap<String, u64>,
    /// The run each key started, and when.
    idempotency: HashMap<IdempotencyKey, (RunId, Timestamp)>,
    /// Finished runs, in the order they finished, with when to forget them.
    finished: VecDeque<(Instant, RunId)>,
}

impl State {
    /// The run `key` started, with the cursor before its creation, if the key was used less
    /// than `ttl` before `now` and the run is still kept.
    fn keyed(&mut self, key: &IdempotencyKey, now: Timestamp, ttl: Duration) -> Option<Created> {
        let (id, at) = self.idempotency.get(key)?;
        if now.saturating_duration_since(*at) >= ttl {
            // Expired: forgotten now, so the key starts a new run.
            self.idempotency.remove(key);
            return None;
        }
        let record = self.runs.get(id)?;
        Some(Created::Existing(
            record.snapshot.id.clone(),
            record.created,
        ))
    }
}

/// The embedded engine's store: every run, its chunks and its history live in this process's
/// memory, and finished runs are forgotten after their retention
/// ([`EngineBuilder::retention`](super::EngineBuilder::retention)).
pub struct MemoryStore {
    state: Mutex<State>,
    /// Set by [`close`](RunStore::close), under the lock.
    closed: AtomicBool,
    hub: RunHub,
    /// How long a finished run is kept.
    retention: Duration,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("runs", &self.lock().runs.len())
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub(super) fn new(hub: RunHub, retention: Duration) -> Self {
        Self {
            state: Mutex::default(),
            closed: AtomicBool::new(false),
            hub,
            retention,
        }
    }

    /// The state stays consistent if a thread panicked while holding the lock: every change is
    /// made before anything that could panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        hub::lock(&self.state)
    }

    fn create_now(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, Closed> {
        let mut state = self.lock();
        if self.is_closed() {
            return Err(Closed);
        }
        let state = &mut *state;
        let mut created = Vec::with_capacity(runs.len());
        for mut record in runs {
            let now = record.snapshot.created_at;
            if let Some(key) = &record.idempotency
                && let Some(existing) = state.keyed(key, now, idempotency_ttl)
            {
                created.push(existing);
                continue;
            }
            let task = record.snapshot.task_identifier.as_str();
            let number = match state.numbers.get_mut(task) {
                Some(number) => {
                    *number += 1;
                    *number
                }
                None => *state.numbers.entry(task.to_owned()).or_insert(1),
            };
            record.run().number = number;
            let id = record.snapshot.id.clone();
            if let Some(key) = &record.idempotency {
                state.idempotency.insert(key.clone(), (id.clone(), now));
            }
            let published = self
                .hub
                .publish(Arc::clone(&record.snapshot), batch.clone());
            record.created = published.before();
            created.push(Created::New(record.created));
            state.runs.insert(id, record);
        }
        Ok(created)
    }

    fn change_now<R, E>(
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

    fn append_now(
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

    fn forget_now(&self, now: Instant) -> Option<Instant> {
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
}

impl RunStore for MemoryStore {
    fn hub(&self) -> &RunHub {
        &self.hub
    }

    fn retention(&self) -> Duration {
        self.retention
    }

    async fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, Closed> {
        self.create_now(runs, batch, idempotency_ttl)
    }

    async fn change_if<R: Send, E: Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> Option<Result<R, E>> {
        self.change_now(id, when, change)
    }

    async fn snapshot(&self, id: &RunId) -> Option<Arc<AnyRun>> {
        let state = self.lock();
        state
            .runs
            .get(id)
            .map(|record| Arc::clone(&record.snapshot))
    }

    async fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        self.append_now(id, attempt, stream, data, limit)
    }

    async fn forget_finished(&self, now: Instant) -> Option<Instant> {
        self.forget_now(now)
    }

    fn close(&self) {
        let _state = self.lock();
        self.closed.store(true, Ordering::SeqCst);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
