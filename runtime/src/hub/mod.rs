//! In-process fan-out: the latest snapshot of every run, a cursor for every change, the change
//! log, the chunks of the runs' streams, and subscriptions indexed by run id, tag and batch.
//!
//! A subscription first yields the state it starts from, every item of it; then every change of
//! the runs in its scope, in cursor order, while it has at most a window of them unread; beyond
//! the window its mailbox keeps only the latest unread change of each run, marked coalesced, so
//! that its memory is bounded by the runs in scope and a run's final snapshot is never lost
//! while the run is kept. A
//! subscription resumed from a cursor replays every change after it from the change log (the
//! latest changes, bounded by count and bytes), however many; from a cursor older than the
//! log, it gets the latest snapshot of each run in scope that changed since, each marked
//! coalesced (runs that left the scope, or were forgotten, meanwhile are not shown then).
//!
//! Chunks are numbered by the same cursor and kept with their run; a subscription with streams
//! notes which runs have chunks it has not read and reads them from the hub, a bounded batch at
//! a time: chunks never coalesce, and a subscriber that lags holds none of them. A resumed
//! subscription reads the chunks of the runs in its scope now.
//!
//! When a run is forgotten, a subscriber that has not read its chunks, or (beyond its window)
//! its latest change, keeps them within the hub's `orphan_bytes`; past that they are dropped
//! and the subscriber is told ([`FeedError::ChunksDropped`], [`FeedError::ChangesDropped`]), so
//! that a subscriber that stalls for longer than the engine keeps runs holds a bounded amount.

mod chunks;
mod history;
mod index;
mod mailbox;
mod subscription;
#[cfg(test)]
mod tests;

pub use self::subscription::{RealtimeSubscription, Subscription};

use std::collections::VecDeque;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::value::RawValue;

use self::chunks::Streams;
use self::history::{Change, History};
pub(crate) use self::index::in_scope;
use self::index::{RunIndex, WatchIndex};
use self::mailbox::{Mailbox, Pending};
use self::subscription::Handle;
use crate::feed::{FeedError, RunPage, RunQuery, Scope};
use crate::model::{AnyRun, BatchId, Cursor, RunId};
use crate::support::{Map, Set, lock};

/// The hub's limits.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    /// How many unread changes a subscription holds before it coalesces.
    pub(crate) window: usize,
    /// How many changes the change log keeps.
    pub(crate) history_changes: usize,
    /// How many bytes of snapshots the change log keeps.
    pub(crate) history_bytes: usize,
    /// How many subscriptions may be open at once.
    pub(crate) max_subscriptions: Option<usize>,
    /// How many bytes of forgotten runs (their unread chunks, and beyond the window their
    /// latest change) a subscription may keep for its reader.
    pub(crate) orphan_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            window: 1024,
            history_changes: 4_096,
            history_bytes: 16 * 1024 * 1024,
            max_subscriptions: None,
            orphan_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The latest snapshot of every run published to it, the recent changes of each, and
/// subscriptions to their changes. Clones share the same hub. Only the engine (through its
/// store) publishes; readers reach it through the engine's [`RunFeed`](crate::RunFeed).
#[derive(Clone)]
pub(crate) struct RunHub {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Names this hub's history in its cursors.
    epoch: u64,
    /// The position of the latest change or chunk.
    position: u64,
    /// Set by [`RunHub::close`]: subscriptions end once they have read what was published.
    closed: bool,
    config: HubConfig,
    runs: Map<RunId, Entry>,
    /// Runs by the position of their creation, oldest first, to list them newest first.
    /// Forgotten runs are left in it until they make up most of it.
    created: VecDeque<(u64, RunId)>,
    index: RunIndex,
    watch: WatchIndex,
    subscriptions: Map<u64, Watcher>,
    /// Subscriptions that fell behind their window, and had not caught up when a run was last
    /// forgotten: those that may hold a forgotten run's latest change.
    lagging: Set<u64>,
    next_subscription: u64,
    history: History,
}

struct Entry {
    /// The latest snapshot, shared with the store that published it and the mailboxes it waits
    /// in.
    run: Arc<AnyRun>,
    /// The position of its latest change.
    position: u64,
    /// The position of its creation.
    created: u64,
    batch: Option<BatchId>,
    /// The chunks of the run's streams, once one is written. Shared only while a reader reads
    /// them under the hub's lock, or after the run is forgotten (see
    /// [`mailbox::UnreadChunks::orphans`]), so appending never copies them.
    streams: Option<Arc<Streams>>,
}

/// A subscription as the hub sees it: what it watches, and where its changes go.
struct Watcher {
    scope: Scope,
    mailbox: Arc<Mutex<Mailbox>>,
    /// Whether it reads chunks too.
    streams: bool,
}

/// What the hub held of a forgotten run: dropped by its owner outside any lock.
pub(crate) struct Forgotten(#[allow(dead_code)] Entry);

/// Changes a subscription resumed from before the hub's change log gets first, read from a
/// log that holds them: every change in the subscription's scope after the cursor through
/// `through`, in cursor order.
pub(crate) struct Replayed {
    pub(crate) changes: Vec<(u64, Arc<AnyRun>)>,
    pub(crate) through: u64,
}

impl Replayed {
    /// No change yet, through `position`.
    pub(crate) fn none_after(position: u64) -> Self {
        Self {
            changes: Vec::new(),
            through: position,
        }
    }

    /// Adds `more`, the changes that follow these.
    pub(crate) fn extend(&mut self, more: Replayed) {
        self.changes.extend(more.changes);
        self.through = self.through.max(more.through);
    }
}

impl fmt::Debug for RunHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("RunHub")
            .field("runs", &inner.runs.len())
            .field("subscriptions", &inner.subscriptions.len())
            .field("cursor", &Cursor::new(inner.epoch, inner.position))
            .finish()
    }
}

impl RunHub {
    /// An empty hub with a history of its own, named by a random epoch.
    pub(crate) fn new(config: HubConfig) -> Self {
        // Non-zero: epoch 0 is `Cursor::START`'s.
        Self::with_epoch(config, rand::random::<u64>() | 1)
    }

    /// An empty hub for the history named `epoch` (non-zero), whose changes come with their
    /// positions ([`publish_at`](Self::publish_at)): a database's history, read by one of the
    /// processes that share it.
    pub(crate) fn with_epoch(config: HubConfig, epoch: u64) -> Self {
        let history = History::new(config.history_changes, config.history_bytes);
        let inner = Inner {
            epoch,
            position: 0,
            closed: false,
            config,
            runs: Map::default(),
            created: VecDeque::new(),
            index: RunIndex::default(),
            watch: WatchIndex::default(),
            subscriptions: Map::default(),
            lagging: Set::default(),
            next_subscription: 0,
            history,
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Stores a run's new snapshot, records the change, and gives it to the subscriptions that
    /// watch the run (by its id, any of its tags before or after the change, or its batch).
    /// Returns the change's cursor.
    ///
    /// `batch` is the run's batch; `None` keeps the batch it was published with before.
    pub(crate) fn publish(&self, run: Arc<AnyRun>, batch: Option<BatchId>) -> Cursor {
        self.publish_inner(None, run, batch, true)
    }

    /// [`publish`](Self::publish) at a position the change was given elsewhere (a database's
    /// change log), after every position published so far.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn publish_at(&self, position: u64, run: Arc<AnyRun>, batch: Option<BatchId>) {
        self.publish_inner(Some(position), run, batch, true);
    }

    /// Loads a new hub with a run's latest snapshot, the change at `position`, without
    /// recording the change in the log (see [`load_history`](Self::load_history)).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn load_run(&self, position: u64, run: Arc<AnyRun>, batch: Option<BatchId>) {
        self.publish_inner(Some(position), run, batch, false);
    }

    /// The name of this hub's history: the epoch of its cursors.
    #[cfg(feature = "server")]
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// How many changes the change log keeps.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn history_changes(&self) -> usize {
        self.lock().config.history_changes
    }

    /// Fills a new hub's change log with changes made before it existed (its database's), in
    /// cursor order, none of them after the hub's position: subscriptions resumed from a
    /// cursor after `kept_after` replay them. Changes through `kept_after` are not kept.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn load_history(
        &self,
        kept_after: u64,
        changes: impl IntoIterator<Item = (u64, Arc<AnyRun>, Option<BatchId>)>,
    ) {
        let mut inner = self.lock();
        inner.history.starts_after(kept_after);
        // Each change's previous snapshot, among the loaded ones.
        let mut latest: Map<RunId, Arc<AnyRun>> = Map::default();
        let mut evicted = Vec::new();
        for (position, run, batch) in changes {
            let previous = latest.insert(run.id.clone(), Arc::clone(&run));
            let change = Change::new(position, run, batch, previous.as_deref());
            evicted.extend(inner.history.record(change));
        }
        drop(inner);
        drop(evicted);
    }

    /// Moves the hub's position to `position` (if it is later) without a change: positions
    /// that were never used, or were used by changes the hub does not keep.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn advance_to(&self, position: u64) {
        let mut inner = self.lock();
        inner.position = inner.position.max(position);
    }

    fn publish_inner(
        &self,
        at: Option<u64>,
        run: Arc<AnyRun>,
        batch: Option<BatchId>,
        record: bool,
    ) -> Cursor {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let position = inner.next_position(at);
        let id = run.id.clone();
        // The run's previous snapshot and batch, replaced in place.
        // One hash of the id, whether the run is new or not.
        let (previous, batch) = match inner.runs.entry(id.clone()) {
            MapEntry::Occupied(mut entry) => {
                let entry = entry.get_mut();
                let batch = batch.or_else(|| entry.batch.clone());
                let old_run = std::mem::replace(&mut entry.run, Arc::clone(&run));
                let old_batch = std::mem::replace(&mut entry.batch, batch.clone());
                entry.position = position;
                (Some((old_run, old_batch)), batch)
            }
            MapEntry::Vacant(slot) => {
                slot.insert(Entry {
                    run: Arc::clone(&run),
                    position,
                    created: position,
                    batch: batch.clone(),
                    streams: None,
                });
                inner.created.push_back((position, id.clone()));
                (None, batch)
            }
        };
        let was = previous
            .as_ref()
            .map(|(old_run, old_batch)| (&old_run.tags[..], old_batch.as_ref()));
        inner.index.reindex(&id, was, (&run.tags, batch.as_ref()));
        // Subscriptions that watched the run by a tag it just lost see it once more, without it.
        let changed_tags = previous
            .iter()
            .filter(|(old, _)| !Arc::ptr_eq(&old.tags, &run.tags));
        let old_tags = changed_tags.flat_map(|(old_run, _)| distinct(&old_run.tags));
        let lost = old_tags.filter(|tag| !run.tags.contains(tag));
        let tags = distinct(&run.tags).chain(lost);
        let mut wake = Vec::new();
        for subscription in inner.watch.of(&id, tags, batch.as_ref()) {
            let Some(watcher) = inner.subscriptions.get(&subscription) else {
                continue;
            };
            let was_in = previous.as_ref().is_some_and(|(old_run, old_batch)| {
                in_scope(&watcher.scope, old_run, old_batch.as_ref())
            });
            if was_in || in_scope(&watcher.scope, &run, batch.as_ref()) {
                let mut mailbox = lock(&watcher.mailbox);
                let pending = Pending::new(position, Arc::clone(&run), false);
                if mailbox.push(pending, inner.config.window) {
                    inner.lagging.insert(subscription);
                }
                wake.extend(mailbox.waker.take());
            }
        }
        let previous_run = previous.as_ref().map(|(old_run, _)| &**old_run);
        let evicted = record.then(|| {
            let change = Change::new(position, Arc::clone(&run), batch, previous_run);
            inner.history.record(change)
        });
        let cursor = Cursor::new(inner.epoch, position);
        drop(guard);
        // Woken subscribers may publish in turn: wake them once the lock is free. What this
        // replaced or evicted is freed outside the lock too.
        for waker in wake {
            waker.wake();
        }
        drop((previous, evicted));
        cursor
    }

    /// Appends a chunk to stream `stream` of run `run`, which must have been published; returns
    /// the chunk's cursor, or `None` for an unknown run. Subscriptions with streams that watch
    /// the run receive it; the hub keeps it as long as the run.
    ///
    /// The hub checks no limit: the engine checks chunk sizes, and that the run is running.
    pub(crate) fn append_chunk(
        &self,
        run: &RunId,
        stream: &str,
        data: Arc<RawValue>,
    ) -> Option<Cursor> {
        self.append_chunk_inner(None, run, stream, data)
    }

    /// [`append_chunk`](Self::append_chunk) at a position the chunk was given elsewhere,
    /// after every position published so far. A chunk of a run the hub does not hold (the
    /// run was forgotten) only moves the position.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn append_chunk_at(
        &self,
        position: u64,
        run: &RunId,
        stream: &str,
        data: Arc<RawValue>,
    ) {
        if self
            .append_chunk_inner(Some(position), run, stream, data)
            .is_none()
        {
            self.advance_to(position);
        }
    }

    fn append_chunk_inner(
        &self,
        at: Option<u64>,
        run: &RunId,
        stream: &str,
        data: Arc<RawValue>,
    ) -> Option<Cursor> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let entry = inner.runs.get_mut(run)?;
        let position = match at {
            Some(at) => {
                inner.position = inner.position.max(at);
                at
            }
            None => {
                inner.position += 1;
                inner.position
            }
        };
        let streams = entry
            .streams
            .get_or_insert_with(|| Arc::new(Streams::new(&entry.run.task_identifier)));
        // Unshared: readers share it only while they hold the lock this holds.
        Arc::make_mut(streams).push(position, stream, data);
        let (snapshot, batch) = (&entry.run, entry.batch.as_ref());
        let mut wake = Vec::new();
        for subscription in inner.watch.of(run, distinct(&snapshot.tags), batch) {
            let Some(watcher) = inner.subscriptions.get(&subscription) else {
                continue;
            };
            if watcher.streams && in_scope(&watcher.scope, snapshot, batch) {
                let mut mailbox = lock(&watcher.mailbox);
                mailbox.note_chunk(run);
                wake.extend(mailbox.waker.take());
            }
        }
        let cursor = Cursor::new(inner.epoch, position);
        drop(guard);
        for waker in wake {
            waker.wake();
        }
        Some(cursor)
    }

    /// Forgets a run: new subscriptions and reads no longer find it. Subscribers that had not
    /// read its last changes yet still get them, and those with chunks of it still unread keep
    /// those chunks until they read them. Returns what the hub held of it, to be freed outside
    /// any lock.
    pub(crate) fn remove(&self, id: &RunId) -> Option<Forgotten> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let old = inner.runs.remove(id)?;
        if inner.created.len() > 2 * inner.runs.len() + 1024 {
            let runs = &inner.runs;
            inner.created.retain(|(_, id)| runs.contains_key(id));
        }
        let was = (&old.run.tags[..], old.batch.as_ref());
        inner.index.reindex(id, Some(was), (&[], None));
        // A subscription that lags keeps what it has not read of the run, within a budget; past
        // it, the run is dropped and the subscription told.
        let limit = inner.config.orphan_bytes;
        let mut wake = Vec::new();
        if let Some(streams) = &old.streams {
            // Every subscription with streams, not only those the index finds the run by now:
            // one may hold unread chunks written while the run was in its scope, before it
            // left it (a tag removed).
            for watcher in inner.subscriptions.values().filter(|w| w.streams) {
                let mut mailbox = lock(&watcher.mailbox);
                if mailbox.keep_orphan(id, streams, limit) {
                    wake.extend(mailbox.waker.take());
                }
            }
        }
        // Within its window, a subscription holds at most the window's changes; beyond it, the
        // latest change of every run that changed, forgotten since or not.
        let cost = history::cost(&old.run, None);
        let subscriptions = &inner.subscriptions;
        inner.lagging.retain(|subscription| {
            let Some(watcher) = subscriptions.get(subscription) else {
                return false;
            };
            let mut mailbox = lock(&watcher.mailbox);
            if mailbox.forget_run(id, cost, limit) {
                wake.extend(mailbox.waker.take());
            }
            mailbox.is_coalescing()
        });
        drop(guard);
        for waker in wake {
            waker.wake();
        }
        Some(Forgotten(old))
    }

    /// Closes the hub: its subscriptions end, with [`FeedError::Stopped`], once they have read
    /// what was published; new ones are refused.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        let mut wake = Vec::new();
        for watcher in inner.subscriptions.values() {
            let mut mailbox = lock(&watcher.mailbox);
            mailbox.closed = true;
            wake.extend(mailbox.waker.take());
        }
        drop(inner);
        for waker in wake {
            waker.wake();
        }
    }

    /// The cursor just before a run's first change: a subscription from it shows every change
    /// of the run this hub still holds (a run loaded from a store, its latest).
    #[cfg(feature = "server")]
    pub(crate) fn before_creation(&self, id: &RunId) -> Option<Cursor> {
        let inner = self.lock();
        let entry = inner.runs.get(id)?;
        Some(Cursor::new(inner.epoch, entry.created).before())
    }

    /// The batch a run was triggered in, if any.
    #[cfg(feature = "server")]
    pub(crate) fn batch_of(&self, id: &RunId) -> Option<BatchId> {
        self.lock().runs.get(id)?.batch.clone()
    }

    /// The latest snapshot of a run and the cursor of its change, shared, not copied.
    pub(crate) fn latest(&self, id: &RunId) -> Option<(Cursor, Arc<AnyRun>)> {
        let inner = self.lock();
        let entry = inner.runs.get(id)?;
        Some((
            Cursor::new(inner.epoch, entry.position),
            Arc::clone(&entry.run),
        ))
    }

    /// One page of the runs that match `query`, newest first. It walks the runs from the
    /// newest (or from `query.before`) until the page is full.
    pub(crate) fn list(&self, query: &RunQuery) -> Result<RunPage, FeedError> {
        let inner = self.lock();
        let before = match query.before {
            None => u64::MAX,
            Some(cursor) => inner.check_cursor(cursor)?.position(),
        };
        let limit = query.limit.clamp(1, crate::feed::MAX_PAGE_SIZE);
        let mut runs = Vec::with_capacity(limit);
        let mut next = None;
        let older = inner
            .created
            .partition_point(|&(created, _)| created < before);
        for &(created, ref id) in inner.created.range(..older).rev() {
            // A forgotten run, or another run published later under a forgotten one's id.
            let Some(entry) = inner.runs.get(id).filter(|entry| entry.created == created) else {
                continue;
            };
            if !query.matches(&entry.run, entry.batch.as_ref()) {
                continue;
            }
            if runs.len() == limit {
                // One more matches: the page after starts before the last one taken.
                next = runs
                    .last()
                    .map(|&(created, _)| Cursor::new(inner.epoch, created));
                break;
            }
            runs.push((created, Arc::clone(&entry.run)));
        }
        drop(inner);
        let runs = runs
            .into_iter()
            .map(|(_, run)| Arc::unwrap_or_clone(run))
            .collect();
        Ok(RunPage::new(runs, next))
    }

    /// A new subscription's place, its mailbox holding what it yields first: from
    /// [`Cursor::START`], the latest change of every run in scope; from a cursor, every
    /// retained change in scope after it, beginning with `earlier` (see
    /// [`RunHub::subscribe_replayed`]). Gives `earlier` back when the change log no longer
    /// holds every change after it.
    fn register(
        &self,
        scope: Scope,
        from: Cursor,
        earlier: Option<Replayed>,
    ) -> Result<Result<Handle, Replayed>, FeedError> {
        if matches!(&scope, Scope::Tags(tags) if tags.is_empty()) {
            return Err(FeedError::NoTags);
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.closed {
            return Err(FeedError::Stopped);
        }
        inner.check_cursor(from)?;
        // No change of a run the hub does not know will ever come.
        if let Scope::Run(id) = &scope
            && !inner.runs.contains_key(id)
        {
            return Err(FeedError::UnknownRun(id.clone()));
        }
        if let Some(limit) = inner.config.max_subscriptions
            && inner.subscriptions.len() >= limit
        {
            return Err(FeedError::TooManySubscriptions { limit });
        }
        let first = match earlier {
            None => inner.since(&scope, from),
            Some(earlier) if !inner.history.holds_all_after(earlier.through) => {
                return Ok(Err(earlier));
            }
            Some(Replayed { changes, through }) => {
                let earlier =
                    (changes.into_iter()).map(|(position, run)| Pending::new(position, run, false));
                let mut first: Vec<Pending> = earlier.collect();
                first.extend(inner.since(&scope, Cursor::new(inner.epoch, through)));
                first
            }
        };
        let id = inner.next_subscription;
        inner.next_subscription += 1;
        let mailbox = Arc::new(Mutex::new(Mailbox::new(first)));
        inner.watch.watch(&scope, id, true);
        let watcher = Watcher {
            scope,
            mailbox: Arc::clone(&mailbox),
            // Set by `Subscription::with_streams`.
            streams: false,
        };
        inner.subscriptions.insert(id, watcher);
        Ok(Ok(Handle {
            hub: Arc::clone(&self.inner),
            epoch: inner.epoch,
            id,
            mailbox,
        }))
    }

    /// Subscribes to the runs in `scope` from `from` (see [`RunFeed`](crate::RunFeed)); with
    /// [`Subscription::with_streams`], to their chunks too.
    pub(crate) fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Subscription, FeedError> {
        match self.register(scope, from, None)? {
            Ok(handle) => Ok(Subscription::new(handle, from)),
            Err(_) => unreachable!("only replayed changes are given back"),
        }
    }

    /// Where `from`, a cursor of this hub's history, is older than its change log: the
    /// latest position, through which to read the changes after `from` elsewhere (read
    /// through the latest, they still join the log after as many changes as it holds came
    /// while they were read; through the log's start, one change would do); `None` if the
    /// log holds every change after it (or the cursor is not this hub's, which
    /// [`RunHub::subscribe`] refuses).
    pub(crate) fn missing_after(&self, from: Cursor) -> Option<u64> {
        let inner = self.lock();
        let ours = from != Cursor::START && inner.check_cursor(from).is_ok();
        (ours && !inner.history.holds_all_after(from.position())).then_some(inner.position)
    }

    /// Subscribes from `from`, a cursor older than the change log (see
    /// [`RunHub::missing_after`]), with the changes the log misses read elsewhere (a
    /// database's log): those in scope come first, none of them coalesced, then the log's
    /// changes after them. Gives `replayed` back if the log moved on while they were read
    /// (it no longer holds every change after them): read the rest, and try again.
    pub(crate) fn subscribe_replayed(
        &self,
        scope: Scope,
        from: Cursor,
        replayed: Replayed,
    ) -> Result<Result<Subscription, Replayed>, FeedError> {
        Ok((self.register(scope, from, Some(replayed))?)
            .map(|handle| Subscription::new(handle, from)))
    }

    /// How many subscriptions are open.
    #[cfg(test)]
    pub(crate) fn subscriptions(&self) -> usize {
        self.lock().subscriptions.len()
    }
}

/// Each tag once, in order: a run's tags may repeat one, and a subscription must be found once.
fn distinct(tags: &[String]) -> impl Iterator<Item = &String> {
    tags.iter()
        .enumerate()
        .filter(|&(i, tag)| !tags[..i].contains(tag))
        .map(|(_, tag)| tag)
}

impl Inner {
    /// The position of the next change: the next one, or `at` where the change has one.
    fn next_position(&mut self, at: Option<u64>) -> u64 {
        self.position = match at {
            Some(at) => self.position.max(at),
            None => self.position + 1,
        };
        at.unwrap_or(self.position)
    }

    /// Refuses a cursor of another history, or one this hub never handed out.
    fn check_cursor(&self, cursor: Cursor) -> Result<Cursor, FeedError> {
        let ours = cursor == Cursor::START
            || (cursor.epoch() == self.epoch && cursor.position() <= self.position);
        if ours {
            Ok(cursor)
        } else {
            Err(FeedError::UnknownCursor(cursor))
        }
    }

    /// What a subscription from `from` yields first, in cursor order: from [`Cursor::START`],
    /// the latest change of every run in scope; from a cursor the log still holds every change
    /// after, those changes; from an older one, the latest change of every run in scope made
    /// after it, marked coalesced.
    fn since(&self, scope: &Scope, from: Cursor) -> Vec<Pending> {
        let resumed = from != Cursor::START;
        let from = from.position();
        if resumed && self.history.holds_all_after(from) {
            let changes = self.history.after(from).filter(|c| c.shown_to(scope));
            return changes
                .map(|change| Pending::new(change.position, Arc::clone(&change.run), false))
                .collect();
        }
        let mut pending: Vec<Pending> = self
            .index
            .candidates(scope)
            .filter_map(|id| self.runs.get(id))
            .filter(|entry| entry.position > from)
            .filter(|entry| in_scope(scope, &entry.run, entry.batch.as_ref()))
            .map(|entry| Pending::new(entry.position, Arc::clone(&entry.run), resumed))
            .collect();
        pending.sort_unstable_by_key(|p| p.position);
        pending
    }

    /// The runs in `scope` with chunks written after `from`.
    fn chunks_since(&self, scope: &Scope, from: Cursor) -> Set<RunId> {
        self.index
            .candidates(scope)
            .filter_map(|id| self.runs.get(id))
            .filter(|entry| in_scope(scope, &entry.run, entry.batch.as_ref()))
            .filter(|entry| {
                entry
                    .streams
                    .as_deref()
                    .is_some_and(|s| s.has_after(from.position()))
            })
            .map(|entry| entry.run.id.clone())
            .collect()
    }
}
