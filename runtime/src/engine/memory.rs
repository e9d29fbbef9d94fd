//! The embedded engine's store: runs kept in this process's memory, spread over locks by run
//! id. A run's changes are made and published under its lock, so in order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use super::context::StreamError;
use super::store::{Created, IdempotencyKey, Record, RunStore, Visible, admit_chunk, apply};
use crate::hub::RunHub;
use crate::model::{AnyRun, BatchId, Cursor, RunId, RunStatus, StoreError, Timestamp};
use crate::support::{Map, lock};

/// How many locks the runs are spread over: changes of different runs (a trigger, and
/// workers starting and finishing attempts) rarely wait for each other.
const SHARDS: usize = 16;

/// Some of the runs, under one lock.
#[derive(Default)]
struct Shard {
    runs: Map<RunId, Record>,
    /// This shard's finished runs, in the order they finished, with when to forget them.
    finished: VecDeque<(Instant, RunId)>,
}

/// What creating runs reads and writes besides the runs, under the creation lock.
#[derive(Default)]
struct Creation {
    numbers: Map<String, u64>,
    /// The run each key started, and when. Clients choose the keys, so this map keeps std's
    /// hasher (see [`Map`]).
    idempotency: HashMap<IdempotencyKey, (RunId, Timestamp)>,
}

/// The embedded engine's store: every run, its chunks and its history live in this process's
/// memory, and finished runs are forgotten after their retention
/// ([`EngineBuilder::retention`](super::EngineBuilder::retention)).
// Locks are taken in this order: the creation lock, then a shard's, then the hub's.
pub(crate) struct MemoryStore {
    creation: Mutex<Creation>,
    shards: [Mutex<Shard>; SHARDS],
    hub: RunHub,
    /// How long a finished run is kept.
    retention: Duration,
}

impl MemoryStore {
    pub(super) fn new(hub: RunHub, retention: Duration) -> Self {
        Self {
            creation: Mutex::default(),
            shards: Default::default(),
            hub,
            retention,
        }
    }

    /// The shard of run `id`. The state stays consistent if a thread panicked while holding a
    /// lock: every change is made before anything that could panic.
    fn shard(&self, id: &RunId) -> MutexGuard<'_, Shard> {
        // A multiplicative hash of the whole id, eight bytes at a time, so ids that differ in
        // any byte spread evenly, scaled to a shard by its high bits (the best mixed).
        let hash = (id.as_str().as_bytes().chunks(8)).fold(0u64, |hash, chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95)
        });
        let shard = (u128::from(hash) * SHARDS as u128) >> 64;
        lock(&self.shards[shard as usize])
    }

    /// The run `key` started, with the cursor before its creation, if the key was used less
    /// than `ttl` before `now` and the run is still kept.
    fn keyed(
        &self,
        creation: &mut Creation,
        key: &IdempotencyKey,
        now: Timestamp,
        ttl: Duration,
    ) -> Option<Created> {
        let (id, at) = creation.idempotency.get(key)?;
        if now.saturating_duration_since(*at) >= ttl {
            // Expired: forgotten now, so the key starts a new run.
            creation.idempotency.remove(key);
            return None;
        }
        let shard = self.shard(id);
        let record = shard.runs.get(id)?;
        Some(Created::Existing(
            record.snapshot.id.clone(),
            record.created,
        ))
    }

    fn create_now(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Vec<Created> {
        let mut creation = lock(&self.creation);
        let creation = &mut *creation;
        let mut created = Vec::with_capacity(runs.len());
        for mut record in runs {
            let now = record.snapshot.created_at;
            if let Some(key) = &record.idempotency
                && let Some(existing) = self.keyed(creation, key, now, idempotency_ttl)
            {
                created.push(existing);
                continue;
            }
            let task = &*record.snapshot.task_identifier;
            let number = match creation.numbers.get_mut(task) {
                Some(number) => {
                    *number += 1;
                    *number
                }
                None => *creation.numbers.entry(task.to_owned()).or_insert(1),
            };
            record.run().number = number;
            let id = record.snapshot.id.clone();
            if let Some(key) = &record.idempotency {
                creation.idempotency.insert(key.clone(), (id.clone(), now));
            }
            let mut shard = self.shard(&id);
            let published = self
                .hub
                .publish(Arc::clone(&record.snapshot), batch.clone());
            record.created = published.before();
            created.push(Created::New(record.created));
            shard.runs.insert(id, record);
        }
        created
    }

    fn change_now<R, E>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool,
        change: impl FnOnce(&mut Record) -> Result<R, E>,
    ) -> Result<Option<R>, E> {
        let mut shard = self.shard(id);
        let Some(record) = shard.runs.get_mut(id) else {
            return Ok(None);
        };
        if !when(record.snapshot.status) {
            return Ok(None);
        }
        let (result, visible) = apply(record, change)?;
        let Visible::Yes { finished } = visible else {
            return Ok(Some(result));
        };
        self.hub.publish(Arc::clone(&record.snapshot), None);
        if finished {
            let id = record.snapshot.id.clone();
            // Tokio's clock, as the engine's timers; a retention too long to count is
            // forever.
            if let Some(at) = Instant::now().checked_add(self.retention) {
                shard.finished.push_back((at, id));
            }
        }
        Ok(Some(result))
    }

    fn append_now(
        &self,
        id: &RunId,
        attempt: u32,
        (task, key): (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        let mut shard = self.shard(id);
        let Some(record) = shard.runs.get_mut(id) else {
            return Err(StreamError::NotRunning(id.clone()));
        };
        // A writer's key is of its context's task, so of the run's: typed, it cannot differ.
        debug_assert_eq!(record.snapshot.task_identifier, task);
        if admit_chunk(record, attempt, key, data.get().len(), limit)? {
            self.hub.publish(Arc::clone(&record.snapshot), None);
        }
        let cursor = self.hub.append_chunk(id, key, data);
        // The hub holds every run the store holds, so it knows this one.
        cursor.ok_or_else(|| StreamError::NotRunning(id.clone()))
    }

    fn forget_now(&self, now: Instant) -> Option<Instant> {
        // What is forgotten is freed after the locks: a run's chunks may be many.
        let mut forgotten = Vec::new();
        let mut next: Option<Instant> = None;
        for shard in &self.shards {
            let mut shard = lock(shard);
            while let Some(&(at, _)) = shard.finished.front() {
                if at > now {
                    next = Some(next.map_or(at, |next| next.min(at)));
                    break;
                }
                let Some((_, id)) = shard.finished.pop_front() else {
                    break;
                };
                if let Some(record) = shard.runs.remove(&id) {
                    forgotten.push((record, self.hub.remove(&id)));
                }
            }
        }
        let mut creation = lock(&self.creation);
        for (record, _) in &forgotten {
            // Unless the key started a newer run since.
            if let Some(key) = &record.idempotency
                && (creation.idempotency.get(key))
                    .is_some_and(|(started, _)| *started == record.snapshot.id)
            {
                creation.idempotency.remove(key);
            }
        }
        drop(creation);
        drop(forgotten);
        next
    }
}

impl RunStore for MemoryStore {
    fn hub(&self) -> &RunHub {
        &self.hub
    }

    async fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, StoreError> {
        Ok(self.create_now(runs, batch, idempotency_ttl))
    }

    async fn change_if<R: Send, E: From<StoreError> + Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> Result<Option<R>, E> {
        self.change_now(id, when, change)
    }

    async fn snapshot(&self, id: &RunId) -> Result<Option<Arc<AnyRun>>, StoreError> {
        let shard = self.shard(id);
        Ok(shard
            .runs
            .get(id)
            .map(|record| Arc::clone(&record.snapshot)))
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

    async fn forget_finished(&self) -> Result<Option<Duration>, StoreError> {
        let now = Instant::now();
        let next = self.forget_now(now);
        Ok(next.map(|next| next.saturating_duration_since(now)))
    }
}
