//! [`RunHub`]: the latest snapshot of every run, a cursor for every change, and fan-out of
//! changes to subscriptions indexed by run id, tag and batch.
//!
//! A subscription keeps the set of runs that changed since it last read, not a queue of
//! snapshots: a slow subscriber coalesces to the latest snapshot of each run, so its memory is
//! bounded by the runs in its scope and the final snapshot of a run is never lost.
//!
//! The hub also keeps the chunks of each run's realtime streams, numbered by the same cursor.
//! A subscription with streams ([`RealtimeSubscription`]) notes which runs have chunks it has
//! not read and reads them from the hub, a bounded batch at a time: chunks never coalesce, and
//! a subscriber that lags holds none of them.
//!
//! A run that leaves a tag subscription's scope (a tag removed) is shown to it once more,
//! without the tag; a subscription resumed from before that change shows the run's latest
//! snapshot too (for the latest 8 such changes of a run), but not the chunks the run wrote
//! while in scope: a resumed subscription reads the chunks of the runs in its scope now.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use serde_json::value::RawValue;

use crate::decode::DecodeError;
use crate::feed::{Cursor, RunFeed, Scope, Update};
use crate::run::{AnyRun, BatchId, RunId};
use crate::streams::{AnyChunk, Realtime};

/// A map keyed by what runcast generates (run and batch ids, subscription numbers): hashed with
/// foldhash, at a fraction of the cost of std's SipHash (which was a quarter of a trigger).
/// Keys that clients choose (tags, idempotency keys) stay in std's maps, whose SipHash resists
/// keys crafted to collide.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
/// A set hashed as a [`Map`].
pub(crate) type Set<K> = HashSet<K, foldhash::quality::RandomState>;

/// The latest snapshot of every run published to it, and subscriptions to their changes.
///
/// It is the fan-out of the embedded engine, usable on its own: publish snapshots from
/// anywhere, subscribe by run, tags or batch. Clones share the same hub.
///
/// ```
/// use futures::{StreamExt, executor::block_on};
/// use runcast::{AnyRun, Cursor, RunHub, Scope};
///
/// let hub = RunHub::new();
/// let run: AnyRun = serde_json::from_str(r#"{"id":"run_1","taskIdentifier":"t","status":"QUEUED",
///     "tags":["user:1"],"createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#)?;
/// let cursor = hub.publish(run, None);
///
/// let mut feed = hub.subscribe(Scope::Tags(vec!["user:1".into()]), Cursor::START)?;
/// let first = block_on(feed.next()).unwrap()?;
/// assert_eq!((first.run.id.as_str(), first.cursor), ("run_1", cursor));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct RunHub {
    inner: Arc<Mutex<Inner>>,
}

/// Why a subscription could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The hub already serves as many subscriptions as it is allowed.
    #[error("too many subscriptions: the limit is {limit}; drop one or raise the limit")]
    TooManySubscriptions {
        /// The configured limit.
        limit: usize,
    },
    /// A tag scope with no tag would watch every run.
    #[error("a tag subscription needs at least one tag")]
    NoTags,
    /// No run has this id.
    #[error("no run `{0}`")]
    UnknownRun(RunId),
    /// The run belongs to another task than the one asked for.
    #[error("run `{run}` is a run of task `{task_identifier}`, not of `{expected}`")]
    UnexpectedTask {
        /// The run.
        run: RunId,
        /// Its task.
        task_identifier: String,
        /// The task asked for.
        expected: &'static str,
    },
}

#[derive(Default)]
struct Inner {
    version: u64,
    runs: Map<RunId, Entry>,
    by_tag: HashMap<String, Set<RunId>>,
    by_batch: Map<BatchId, Set<RunId>>,
    subscriptions: Map<u64, Watcher>,
    next_subscription: u64,
    max_subscriptions: Option<usize>,
    watch_run: Map<RunId, Set<u64>>,
    /// Tag subscriptions, by the first of their tags: a run they watch carries it.
    watch_tag: HashMap<String, Set<u64>>,
    watch_batch: Map<BatchId, Set<u64>>,
    /// Runs by each tag they lost, for subscriptions resumed after the loss: see
    /// [`Entry::departures`].
    departed: HashMap<String, Set<RunId>>,
}

/// How many of a run's latest tag losses the hub remembers.
const MAX_DEPARTURES: usize = 8;

struct Entry {
    /// Shared with the engine that published it and the mailboxes it waits in.
    run: Arc<AnyRun>,
    version: u64,
    batch: Option<BatchId>,
    /// The run's tags before each of its latest changes that removed some, with the version of
    /// that change: a tag subscription resumed from before it still sees the run leave.
    departures: Vec<(u64, Vec<String>)>,
    /// The chunks of the run's streams, once one is written. Shared only while a reader reads
    /// them under the hub's lock, or after the run is forgotten (see [`Mailbox::orphans`]), so
    /// appending never copies them.
    streams: Option<Arc<Streams>>,
}

/// The chunks of a run's streams, in the order they were written: kept as long as the run, so
/// that a subscriber that arrives late or lags reads them all.
#[derive(Clone)]
struct Streams {
    task: Arc<str>,
    keys: Vec<Arc<str>>,
    chunks: Vec<StoredChunk>,
}

#[derive(Clone)]
struct StoredChunk {
    version: u64,
    /// Index in [`Streams::keys`].
    key: usize,
    data: Arc<RawValue>,
}

impl Streams {
    /// The index of the first chunk written after `version`.
    fn first_after(&self, version: u64) -> usize {
        self.chunks
            .partition_point(|chunk| chunk.version <= version)
    }

    fn item(&self, run: &RunId, chunk: &StoredChunk) -> AnyChunk {
        AnyChunk {
            cursor: Cursor::new(chunk.version),
            run_id: run.clone(),
            task_identifier: Arc::clone(&self.task),
            stream: Arc::clone(&self.keys[chunk.key]),
            data: Arc::clone(&chunk.data),
        }
    }
}

/// Moves the mailbox's unread snapshots to `ready` (empty), in cursor order, sorting them
/// after letting go of the mailbox (publishers wait for it); `false`, with the waker
/// registered, if there are none.
fn take_pending<T>(
    mut mailbox: MutexGuard<'_, Mailbox>,
    cx: &Context<'_>,
    ready: &mut VecDeque<T>,
    item: impl Fn(Cursor, Arc<AnyRun>) -> T,
    cursor: impl FnMut(&T) -> Cursor,
) -> bool {
    if mailbox.pending.is_empty() {
        mailbox.waker = Some(cx.waker().clone());
        return false;
    }
    debug_assert!(ready.is_empty());
    ready.extend(mailbox.pending.drain().map(|(_, (c, run))| item(c, run)));
    drop(mailbox);
    ready.make_contiguous().sort_unstable_by_key(cursor);
    true
}

/// A subscription as the hub sees it: what it watches, and where its changes go.
struct Watcher {
    scope: Scope,
    mailbox: Arc<Mutex<Mailbox>>,
    /// Whether it reads chunks too.
    streams: bool,
}

/// The changes a subscriber has not read yet. It has a lock of its own, so a subscriber
/// reading snapshots never contends with a publisher for the hub's lock (reading chunks does,
/// briefly); publishers fill it under the hub's lock, so changes reach it in cursor order.
#[derive(Default)]
struct Mailbox {
    /// The latest unread snapshot of each run that changed: coalesced, so bounded by the runs
    /// in scope.
    pending: Map<RunId, (Cursor, Arc<AnyRun>)>,
    /// Runs with chunks the subscriber has not read yet (for a subscription with streams). The
    /// chunks stay in the hub: a lagging subscriber costs no memory per chunk.
    chunk_runs: Set<RunId>,
    /// The chunks of runs in `chunk_runs` that were forgotten before the subscriber read them
    /// all: kept for it until it has.
    orphans: Map<RunId, Arc<Streams>>,
    waker: Option<Waker>,
}

/// Adds `value` to, or removes it from, the set at `key`; an emptied set is removed.
fn set_member<K, V, H>(map: &mut HashMap<K, Set<V>, H>, key: &K, value: &V, add: bool)
where
    K: std::hash::Hash + Eq + Clone,
    V: std::hash::Hash + Eq + Clone,
    H: std::hash::BuildHasher,
{
    if add {
        // The key is cloned only when it is new.
        match map.get_mut(key) {
            Some(set) => set.insert(value.clone()),
            None => map.entry(key.clone()).or_default().insert(value.clone()),
        };
    } else if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

fn in_scope(scope: &Scope, run: &AnyRun, batch: Option<&BatchId>) -> bool {
    match scope {
        Scope::Run(id) => run.id == *id,
        Scope::Tags(tags) => tags.iter().all(|tag| run.tags.contains(tag)),
        Scope::Batch(id) => batch == Some(id),
    }
}

impl Inner {
    /// The subscriptions that may watch a run with these tags and batch: by its id, any of
    /// its tags, or its batch.
    fn subscribers_of<'a>(
        &'a self,
        id: &RunId,
        tags: &'a [String],
        batch: Option<&BatchId>,
    ) -> impl Iterator<Item = u64> + 'a {
        let by_run = self.watch_run.get(id);
        let by_tag = tags.iter().filter_map(|tag| self.watch_tag.get(tag));
        let by_batch = batch.and_then(|b| self.watch_batch.get(b));
        by_run
            .into_iter()
            .chain(by_tag)
            .chain(by_batch)
            .flatten()
            .copied()
    }

    /// Moves a run in the tag and batch indexes from its old tags and batch to its new ones,
    /// touching only what changed (most changes keep both).
    fn reindex(
        &mut self,
        id: &RunId,
        old: Option<(&[String], Option<&BatchId>)>,
        new: (&[String], Option<&BatchId>),
    ) {
        let (old_tags, old_batch) = old.unwrap_or((&[], None));
        let (new_tags, new_batch) = new;
        for tag in old_tags.iter().filter(|tag| !new_tags.contains(tag)) {
            set_member(&mut self.by_tag, tag, id, false);
        }
        for tag in new_tags.iter().filter(|tag| !old_tags.contains(tag)) {
            set_member(&mut self.by_tag, tag, id, true);
        }
        if old_batch != new_batch {
            if let Some(batch) = old_batch {
                set_member(&mut self.by_batch, batch, id, false);
            }
            if let Some(batch) = new_batch {
                set_member(&mut self.by_batch, batch, id, true);
            }
        }
    }

    /// Adds or removes a subscription in the index its scope is found by.
    fn watch(&mut self, scope: &Scope, subscription: u64, add: bool) {
        match scope {
            Scope::Run(id) => set_member(&mut self.watch_run, id, &subscription, add),
            Scope::Tags(tags) => {
                if let Some(first) = tags.first() {
                    set_member(&mut self.watch_tag, first, &subscription, add);
                }
            }
            Scope::Batch(id) => set_member(&mut self.watch_batch, id, &subscription, add),
        }
    }

    /// The runs in `scope`.
    fn in_scope<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Entry> + 'a {
        let candidates: Box<dyn Iterator<Item = &RunId> + '_> = match scope {
            Scope::Run(id) => Box::new(std::iter::once(id)),
            Scope::Tags(tags) => Box::new(
                tags.first()
                    .and_then(|tag| self.by_tag.get(tag))
                    .into_iter()
                    .flatten(),
            ),
            Scope::Batch(id) => Box::new(self.by_batch.get(id).into_iter().flatten()),
        };
        candidates
            .filter_map(|id| self.runs.get(id))
            .filter(|entry| in_scope(scope, &entry.run, entry.batch.as_ref()))
    }

    /// The runs that left a tag scope after `from`: out of it now, they were in it before a
    /// change after `from` (among the latest [`MAX_DEPARTURES`] that removed tags).
    fn departed_since<'a>(
        &'a self,
        tags: &'a [String],
        from: Cursor,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        let candidates = tags
            .iter()
            .filter_map(|tag| self.departed.get(tag))
            .flatten();
        candidates
            .filter_map(|id| self.runs.get(id))
            .filter(move |entry| {
                let now_in = tags.iter().all(|tag| entry.run.tags.contains(tag));
                !now_in
                    && entry.departures.iter().any(|(version, was)| {
                        *version > from.version() && tags.iter().all(|tag| was.contains(tag))
                    })
            })
    }

    /// The latest snapshot of each run in `scope` that changed after `from`, and, resuming a
    /// tag subscription, of each run that left its scope since: a live subscription saw that
    /// change too.
    fn changed_since(&self, scope: &Scope, from: Cursor) -> Map<RunId, (Cursor, Arc<AnyRun>)> {
        let departed = match scope {
            Scope::Tags(tags) if from > Cursor::START => Some(self.departed_since(tags, from)),
            _ => None,
        };
        self.in_scope(scope)
            .filter(|entry| entry.version > from.version())
            .chain(departed.into_iter().flatten())
            .map(|entry| {
                let snapshot = (Cursor::new(entry.version), Arc::clone(&entry.run));
                (entry.run.id.clone(), snapshot)
            })
            .collect()
    }

    /// The runs in `scope` with chunks written after `from`.
    fn chunks_since(&self, scope: &Scope, from: Cursor) -> Set<RunId> {
        self.in_scope(scope)
            .filter(|entry| {
                let last = entry.streams.as_deref().and_then(|s| s.chunks.last());
                last.is_some_and(|chunk| chunk.version > from.version())
            })
            .map(|entry| entry.run.id.clone())
            .collect()
    }
}

impl RunHub {
    /// An empty hub with no limit on subscriptions.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty hub that refuses subscriptions past `limit` at once.
    pub fn with_max_subscriptions(limit: usize) -> Self {
        let hub = Self::new();
        hub.lock().max_subscriptions = Some(limit);
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Stores a run's new snapshot and wakes the subscriptions that watch it (by its id, any of
    /// its tags before or after the change, or its batch). Returns the change's cursor.
    ///
    /// `batch` is the run's batch; `None` keeps the batch it was published with before.
    pub fn publish(&self, run: impl Into<Arc<AnyRun>>, batch: Option<BatchId>) -> Cursor {
        let run = run.into();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.version += 1;
        let cursor = Cursor::new(inner.version);
        // The run's previous snapshot and batch, replaced in place.
        let (old, batch) = match inner.runs.get_mut(&run.id) {
            Some(entry) => {
                let batch = batch.or_else(|| entry.batch.clone());
                let old_run = std::mem::replace(&mut entry.run, Arc::clone(&run));
                let old_batch = std::mem::replace(&mut entry.batch, batch.clone());
                entry.version = cursor.version();
                if old_run.tags.iter().any(|tag| !run.tags.contains(tag)) {
                    if entry.departures.len() == MAX_DEPARTURES {
                        let (_, evicted) = entry.departures.remove(0);
                        // Out of the index the tags no kept departure (nor this one) has.
                        for tag in &evicted {
                            let kept = old_run.tags.contains(tag)
                                || entry.departures.iter().any(|(_, was)| was.contains(tag));
                            if !kept {
                                set_member(&mut inner.departed, tag, &run.id, false);
                            }
                        }
                    }
                    let departure = (cursor.version(), old_run.tags.clone());
                    entry.departures.push(departure);
                }
                (Some((old_run, old_batch)), batch)
            }
            None => {
                let entry = Entry {
                    run: Arc::clone(&run),
                    version: cursor.version(),
                    batch: batch.clone(),
                    departures: Vec::new(),
                    streams: None,
                };
                inner.runs.insert(run.id.clone(), entry);
                (None, batch)
            }
        };
        let was = old
            .as_ref()
            .map(|(old_run, old_batch)| (old_run.tags.as_slice(), old_batch.as_ref()));
        inner.reindex(&run.id, was, (&run.tags, batch.as_ref()));
        let lost: Vec<&String> = old
            .iter()
            .flat_map(|(old_run, _)| old_run.tags.iter())
            .filter(|tag| !run.tags.contains(tag))
            .collect();
        for tag in &lost {
            set_member(&mut inner.departed, *tag, &run.id, true);
        }
        // Subscriptions that watched the run by a tag it just lost see it once more, without it.
        let lost = lost
            .iter()
            .filter_map(|tag| inner.watch_tag.get(*tag))
            .flatten()
            .copied();
        let (mut wake, mut garbage) = (Vec::new(), Vec::new());
        for subscription in inner
            .subscribers_of(&run.id, &run.tags, batch.as_ref())
            .chain(lost)
        {
            let Some(watcher) = inner.subscriptions.get(&subscription) else {
                continue;
            };
            // A run that just left the scope (a tag removed) is shown once more, without it.
            let was_in = old.as_ref().is_some_and(|(old_run, old_batch)| {
                in_scope(&watcher.scope, old_run, old_batch.as_ref())
            });
            if was_in || in_scope(&watcher.scope, &run, batch.as_ref()) {
                let mut mailbox = lock(&watcher.mailbox);
                let unread = (cursor, Arc::clone(&run));
                if let Some(coalesced) = mailbox.pending.insert(run.id.clone(), unread) {
                    garbage.push(coalesced);
                }
                wake.extend(mailbox.waker.take());
            }
        }
        drop(guard);
        // Woken subscribers may publish in turn: wake them once the lock is free. Snapshots
        // this replaced, if it held them last, are freed outside the lock too.
        for waker in wake {
            waker.wake();
        }
        drop((old, garbage));
        cursor
    }

    /// Forgets a run: new subscriptions no longer see it and [`get`](Self::get) no longer
    /// finds it. Subscribers that had not read its last change yet still get it.
    ///
    /// The hub keeps every run published to it until then; the engine forgets its finished
    /// runs after their retention.
    pub fn forget(&self, id: &RunId) {
        drop(self.remove(id));
    }

    /// Forgets a run, and returns what the hub held of it, to be freed outside any lock.
    /// Subscribers with chunks of it still unread keep those chunks until they read them.
    pub(crate) fn remove(&self, id: &RunId) -> Option<Forgotten> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let old = inner.runs.remove(id)?;
        let was = (old.run.tags.as_slice(), old.batch.as_ref());
        inner.reindex(id, Some(was), (&[], None));
        for (_, tags) in &old.departures {
            for tag in tags {
                set_member(&mut inner.departed, tag, id, false);
            }
        }
        if let Some(streams) = &old.streams {
            for watcher in inner.subscriptions.values().filter(|w| w.streams) {
                let mut mailbox = lock(&watcher.mailbox);
                if mailbox.chunk_runs.contains(id) {
                    mailbox.orphans.insert(id.clone(), Arc::clone(streams));
                }
            }
        }
        Some(Forgotten(old))
    }

    /// The cursor of the latest change: subscribing from it yields only later changes.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.lock().version)
    }

    /// The latest snapshot of a run.
    pub fn get(&self, id: &RunId) -> Option<Update<AnyRun>> {
        let latest = self.latest(id)?;
        Some(Update {
            cursor: latest.cursor,
            run: AnyRun::clone(&latest.run),
        })
    }

    /// The latest snapshot of a run, shared, not copied.
    pub(crate) fn latest(&self, id: &RunId) -> Option<Update<Arc<AnyRun>>> {
        self.lock().runs.get(id).map(|entry| Update {
            cursor: Cursor::new(entry.version),
            run: Arc::clone(&entry.run),
        })
    }

    /// Subscribes to the runs in `scope`: first the current snapshot of every run in scope
    /// that changed after `from` ([`Cursor::START`]: all of them), then every later change, in
    /// cursor order. Resuming from an item's cursor continues with no gap and no duplicate.
    ///
    /// A subscriber that reads slowly gets the latest snapshot of each run that changed, not
    /// every intermediate one.
    pub fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, SubscribeError> {
        Ok(Subscription {
            handle: self.register(scope, from, false)?,
            last: from,
            ready: VecDeque::new(),
        })
    }

    /// Subscribes to the runs in `scope` and the chunks of their streams, from `from`: see
    /// [`Subscription::with_streams`].
    pub fn subscribe_with_streams(
        &self,
        scope: Scope,
        from: Cursor,
    ) -> Result<RealtimeSubscription, SubscribeError> {
        Ok(RealtimeSubscription {
            handle: self.register(scope, from, true)?,
            last: from,
            ready: VecDeque::new(),
        })
    }

    /// A new subscription's place, its mailbox holding what changed in `scope` after `from`.
    fn register(
        &self,
        scope: Scope,
        from: Cursor,
        streams: bool,
    ) -> Result<Handle, SubscribeError> {
        if matches!(&scope, Scope::Tags(tags) if tags.is_empty()) {
            return Err(SubscribeError::NoTags);
        }
        let mut inner = self.lock();
        if let Some(limit) = inner.max_subscriptions
            && inner.subscriptions.len() >= limit
        {
            return Err(SubscribeError::TooManySubscriptions { limit });
        }
        let id = inner.next_subscription;
        inner.next_subscription += 1;
        let mailbox = Arc::new(Mutex::new(Mailbox {
            pending: inner.changed_since(&scope, from),
            chunk_runs: if streams {
                inner.chunks_since(&scope, from)
            } else {
                Set::default()
            },
            orphans: Map::default(),
            waker: None,
        }));
        inner.watch(&scope, id, true);
        let watcher = Watcher {
            scope,
            mailbox: Arc::clone(&mailbox),
            streams,
        };
        inner.subscriptions.insert(id, watcher);
        Ok(Handle {
            hub: Arc::clone(&self.inner),
            id,
            mailbox,
        })
    }

    /// Appends a chunk to stream `stream` of run `run`, which must have been published; returns
    /// the chunk's cursor, or `None` for an unknown run. Subscriptions with streams that watch
    /// the run receive it; the hub keeps it as long as the run.
    ///
    /// The hub checks no limit: the engine checks chunk sizes, and that the run is running.
    pub fn append_chunk(&self, run: &RunId, stream: &str, data: Arc<RawValue>) -> Option<Cursor> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let entry = inner.runs.get_mut(run)?;
        inner.version += 1;
        let cursor = Cursor::new(inner.version);
        let streams = entry.streams.get_or_insert_with(|| {
            Arc::new(Streams {
                task: Arc::from(entry.run.task_identifier.as_str()),
                keys: Vec::new(),
                chunks: Vec::new(),
            })
        });
        // Unshared: readers share it only while they hold the lock this holds.
        let streams = Arc::make_mut(streams);
        let key = match streams.keys.iter().position(|key| **key == *stream) {
            Some(key) => key,
            None => {
                streams.keys.push(Arc::from(stream));
                streams.keys.len() - 1
            }
        };
        streams.chunks.push(StoredChunk {
            version: cursor.version(),
            key,
            data,
        });
        let (snapshot, batch) = (Arc::clone(&entry.run), entry.batch.clone());
        let mut wake = Vec::new();
        for subscription in inner.subscribers_of(run, &snapshot.tags, batch.as_ref()) {
            let Some(watcher) = inner.subscriptions.get(&subscription) else {
                continue;
            };
            if watcher.streams && in_scope(&watcher.scope, &snapshot, batch.as_ref()) {
                let mut mailbox = lock(&watcher.mailbox);
                mailbox.chunk_runs.insert(run.clone());
                wake.extend(mailbox.waker.take());
            }
        }
        drop(guard);
        for waker in wake {
            waker.wake();
        }
        Some(cursor)
    }

    /// How many subscriptions are open.
    pub fn subscriptions(&self) -> usize {
        self.lock().subscriptions.len()
    }
}

impl RunFeed for RunHub {
    type Error = DecodeError;
    type Subscription = Subscription;

    fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, SubscribeError> {
        RunHub::subscribe(self, scope, from)
    }
}

impl fmt::Debug for RunHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("RunHub")
            .field("runs", &inner.runs.len())
            .field("subscriptions", &inner.subscriptions.len())
            .field("cursor", &inner.version)
            .finish()
    }
}

/// A state that stays consistent even if a thread panicked while holding the lock: every
/// change to it is made before any call that could panic.
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the hub held of a forgotten run: dropped by its owner outside any lock.
pub(crate) struct Forgotten(#[allow(dead_code)] Entry);

/// A subscription's place in the hub; dropping it unsubscribes.
struct Handle {
    hub: Arc<Mutex<Inner>>,
    id: u64,
    mailbox: Arc<Mutex<Mailbox>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut inner = lock(&self.hub);
        if let Some(watcher) = inner.subscriptions.remove(&self.id) {
            inner.watch(&watcher.scope, self.id, false);
        }
    }
}

/// The stream of a [`RunHub::subscribe`]: [`Update`]s of the runs in its scope.
///
/// It never ends on its own; dropping it unsubscribes. Its error type is [`DecodeError`] so
/// that [`typed`](crate::RunStreamExt::typed) and [`union`](crate::RunStreamExt::union) apply;
/// the hub itself yields no errors.
#[must_use = "streams do nothing unless polled"]
pub struct Subscription {
    handle: Handle,
    /// The cursor of the last item yielded (or the one subscribed from).
    last: Cursor,
    /// Snapshots taken at the last read, in cursor order; each is copied only when yielded.
    ready: VecDeque<(Cursor, Arc<AnyRun>)>,
}

impl Subscription {
    /// The same subscription, with the chunks of its runs' streams too: from where it is, it
    /// yields [`Realtime`] items, each run change and each chunk in one cursor order, so that
    /// resuming from any item's cursor continues with no gap and no duplicate of either.
    ///
    /// Snapshots of a run may coalesce for a slow reader, as before; chunks never do: they are
    /// read back from the hub, which keeps them as long as their run, so a reader that lags
    /// loses none and holds at most a few hundred in memory.
    pub fn with_streams(self) -> RealtimeSubscription {
        let Subscription {
            handle,
            last,
            ready,
        } = self;
        {
            let mut guard = lock(&handle.hub);
            let inner = &mut *guard;
            if let Some(watcher) = inner.subscriptions.get_mut(&handle.id) {
                watcher.streams = true;
                let scope = watcher.scope.clone();
                // Chunks from after the last item yielded; snapshots read but not yielded go
                // back to the mailbox, unless it holds a newer one of their run.
                let chunk_runs = inner.chunks_since(&scope, last);
                let mut mailbox = lock(&handle.mailbox);
                mailbox.chunk_runs = chunk_runs;
                for (cursor, run) in ready {
                    mailbox
                        .pending
                        .entry(run.id.clone())
                        .or_insert((cursor, run));
                }
            }
        }
        RealtimeSubscription {
            handle,
            last,
            ready: VecDeque::new(),
        }
    }
}

/// The item for a snapshot: a copy of it (its payload and output are shared, not copied),
/// unless nothing else holds it any more.
fn yielded((cursor, run): (Cursor, Arc<AnyRun>)) -> Update<AnyRun> {
    Update {
        cursor,
        run: Arc::unwrap_or_clone(run),
    }
}

impl Stream for Subscription {
    type Item = Result<Update<AnyRun>, DecodeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.ready.pop_front() {
                this.last = next.0;
                return Poll::Ready(Some(Ok(yielded(next))));
            }
            let mailbox = lock(&this.handle.mailbox);
            if !take_pending(mailbox, cx, &mut this.ready, |c, run| (c, run), |(c, _)| *c) {
                return Poll::Pending;
            }
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.handle.id)
            .field("last", &self.last)
            .field("ready", &self.ready.len())
            .finish()
    }
}

/// The most chunks a subscription with streams reads from the hub at once: what bounds the
/// memory of one that lags, and how long a read holds the hub's lock.
const CHUNK_BATCH: usize = 256;

/// The stream of a [`Subscription::with_streams`]: run changes and chunks of the runs' streams,
/// as [`Realtime`] items in cursor order. It never ends on its own; dropping it unsubscribes.
#[must_use = "streams do nothing unless polled"]
pub struct RealtimeSubscription {
    handle: Handle,
    last: Cursor,
    /// Items read at the last read, in cursor order.
    ready: VecDeque<Ready>,
}

enum Ready {
    Run(Cursor, Arc<AnyRun>),
    Chunk(AnyChunk),
}

impl Ready {
    fn cursor(&self) -> Cursor {
        match self {
            Self::Run(cursor, _) => *cursor,
            Self::Chunk(chunk) => chunk.cursor,
        }
    }
}

impl RealtimeSubscription {
    /// Moves the next items, in cursor order, from the mailbox and the hub's chunks to `ready`.
    /// `false` if there are none (the waker is then registered).
    fn read(&mut self, cx: &Context<'_>) -> bool {
        {
            let mailbox = lock(&self.handle.mailbox);
            if mailbox.chunk_runs.is_empty() {
                // No unread chunk: a chunk written before any of these snapshots would have
                // been noted here before it, so the snapshots alone are the next items.
                return take_pending(mailbox, cx, &mut self.ready, Ready::Run, Ready::cursor);
            }
        }
        let inner = lock(&self.handle.hub);
        // The hub's lock is held, so nothing is published meanwhile: what the mailbox and the
        // chunk logs hold is every change up to now.
        let mut mailbox = lock(&self.handle.mailbox);
        let last = self.last.version();
        let runs = std::mem::take(&mut mailbox.chunk_runs);
        // Each run's chunks, and whether the run was forgotten (its chunks kept for this reader).
        let sources: Vec<(RunId, Arc<Streams>, bool)> = runs
            .into_iter()
            .filter_map(|id| {
                let kept = inner.runs.get(&id).and_then(|entry| entry.streams.clone());
                match kept {
                    Some(streams) => Some((id, streams, false)),
                    None => mailbox
                        .orphans
                        .remove(&id)
                        .map(|streams| (id, streams, true)),
                }
            })
            .collect();
        // The next CHUNK_BATCH chunks across the runs, merged by cursor.
        let mut next: BinaryHeap<Reverse<(u64, usize, usize)>> = BinaryHeap::new();
        for (source, (_, streams, _)) in sources.iter().enumerate() {
            let start = streams.first_after(last);
            if let Some(chunk) = streams.chunks.get(start) {
                next.push(Reverse((chunk.version, source, start)));
            }
        }
        let items = &mut self.ready;
        debug_assert!(items.is_empty());
        while items.len() < CHUNK_BATCH {
            let Some(Reverse((_, source, at))) = next.pop() else {
                break;
            };
            let (id, streams, _) = &sources[source];
            items.push_back(Ready::Chunk(streams.item(id, &streams.chunks[at])));
            if let Some(chunk) = streams.chunks.get(at + 1) {
                next.push(Reverse((chunk.version, source, at + 1)));
            }
        }
        // Every chunk up to `bound` is read; later ones, and later snapshots, wait.
        let bound = match (next.is_empty(), items.back()) {
            (false, Some(last)) => last.cursor().version(),
            _ => u64::MAX,
        };
        // A live run's chunks are let go under the hub's lock, so that its next append does
        // not find them shared and copy them; a forgotten run's, which may be the last
        // reference, are freed after the locks.
        let mut read_whole = Vec::new();
        for (id, streams, orphan) in sources {
            let unread = streams.chunks.last().is_some_and(|c| c.version > bound);
            match (unread, orphan) {
                (true, true) => {
                    mailbox.orphans.insert(id.clone(), streams);
                    mailbox.chunk_runs.insert(id);
                }
                (true, false) => {
                    mailbox.chunk_runs.insert(id);
                }
                (false, true) => read_whole.push(streams),
                (false, false) => {}
            }
        }
        let due = (mailbox.pending).extract_if(|_, (cursor, _)| cursor.version() <= bound);
        items.extend(due.map(|(_, (cursor, run))| Ready::Run(cursor, run)));
        drop(mailbox);
        drop(inner);
        drop(read_whole);
        items.make_contiguous().sort_unstable_by_key(Ready::cursor);
        true
    }
}

impl Stream for RealtimeSubscription {
    type Item = Result<Realtime<AnyRun, AnyChunk>, DecodeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.ready.pop_front() {
                this.last = next.cursor();
                let item = match next {
                    Ready::Run(cursor, run) => Realtime::Run(yielded((cursor, run))),
                    Ready::Chunk(chunk) => Realtime::Chunk(chunk),
                };
                return Poll::Ready(Some(Ok(item)));
            }
            if !this.read(cx) {
                return Poll::Pending;
            }
        }
    }
}

impl fmt::Debug for RealtimeSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeSubscription")
            .field("id", &self.handle.id)
            .field("last", &self.last)
            .field("ready", &self.ready.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tags: &[&str]) -> AnyRun {
        serde_json::from_value(serde_json::json!({
            "id": "run_1",
            "taskIdentifier": "t",
            "status": "QUEUED",
            "tags": tags,
            "createdAt": "2024-11-01T12:00:00.000Z",
            "updatedAt": "2024-11-01T12:00:00.000Z",
        }))
        .unwrap()
    }

    #[test]
    fn the_departed_index_keeps_only_the_departures_a_run_still_holds() {
        let hub = RunHub::new();
        hub.publish(run(&["a"]), None);
        hub.publish(run(&[]), None);
        for _ in 0..MAX_DEPARTURES {
            hub.publish(run(&["b"]), None);
            hub.publish(run(&[]), None);
        }
        // The departure from `a` is no longer kept, so neither is its index entry.
        assert!(!hub.lock().departed.contains_key("a"));
        hub.forget(&RunId::from("run_1"));
        assert!(hub.lock().departed.is_empty());
    }
}
