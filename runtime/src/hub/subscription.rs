//! The streams of the hub's subscriptions: [`Subscription`] (run changes) and
//! [`RealtimeSubscription`] (run changes and chunks).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};

use super::Inner;
use super::chunks::Streams;
use super::mailbox::{Dropped, Mailbox, Pending};
use crate::feed::FeedError;
use crate::model::{AnyChunk, AnyRun, Cursor, Realtime, RunId, Update};
use crate::support::lock;
use crate::typed::WithStreams;

/// A subscription's place in the hub; dropping it unsubscribes.
pub(super) struct Handle {
    pub(super) hub: Arc<Mutex<Inner>>,
    pub(super) epoch: u64,
    pub(super) id: u64,
    pub(super) mailbox: Arc<Mutex<Mailbox>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut inner = lock(&self.hub);
        if let Some(watcher) = inner.subscriptions.remove(&self.id) {
            inner.watch.watch(&watcher.scope, self.id, false);
        }
    }
}

/// Where a subscription's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The hub closed and everything was read: the last item, `Stopped`, was yielded.
    Stopped,
}

impl From<Dropped> for FeedError {
    fn from(dropped: Dropped) -> Self {
        match dropped {
            Dropped::Changes(run) => FeedError::ChangesDropped(run),
            Dropped::Chunks(run) => FeedError::ChunksDropped(run),
        }
    }
}

/// The item for a change: a copy of its snapshot (payload and output are shared, not copied),
/// unless nothing else holds it any more.
fn yielded(epoch: u64, pending: Pending) -> Update<AnyRun> {
    Update {
        cursor: Cursor::new(epoch, pending.position),
        run: Arc::unwrap_or_clone(pending.run),
        coalesced: pending.coalesced,
    }
}

/// A subscription to the runs in a scope: [`Update`]s in cursor order (see
/// [`RunFeed`](crate::RunFeed) for what it promises). It never ends on its own, but when its
/// engine stops: then its last item is [`FeedError::Stopped`]. Dropping it unsubscribes.
#[must_use = "streams do nothing unless polled"]
pub struct Subscription {
    handle: Handle,
    /// The position of the last item yielded (or the one subscribed from).
    last: u64,
    /// Changes taken at the last read, in cursor order; each is copied only when yielded.
    ready: VecDeque<Pending>,
    state: State,
}

impl Subscription {
    pub(super) fn new(handle: Handle, from: Cursor) -> Self {
        Self {
            handle,
            last: from.position(),
            ready: VecDeque::new(),
            state: State::Open,
        }
    }

    /// The same subscription, with the chunks of its runs' streams too: from where it is, it
    /// yields [`Realtime`] items, each run change and each chunk in one cursor order, so that
    /// resuming from any item's cursor continues with no gap and no duplicate of either.
    ///
    /// Chunks never coalesce: they are read back from the engine, which keeps them as long as
    /// their run, so a reader that lags loses none and holds at most a few hundred in memory.
    /// Only a reader that lags behind the engine's retention can lose some: the chunks of runs
    /// forgotten before it read them are kept for it within
    /// [`lagging_reader_bytes`](crate::EngineBuilder::lagging_reader_bytes), and past that it
    /// gets a [`FeedError::ChunksDropped`] item for each run whose chunks were dropped.
    pub fn with_streams(self) -> RealtimeSubscription {
        let Subscription {
            handle,
            last,
            ready,
            state,
        } = self;
        {
            let mut guard = lock(&handle.hub);
            let inner = &mut *guard;
            if let Some(watcher) = inner.subscriptions.get_mut(&handle.id) {
                watcher.streams = true;
                let scope = watcher.scope.clone();
                // Chunks from after the last item yielded; changes read but not yielded go
                // back to the front of the mailbox, before the ones that came since.
                let chunk_runs = inner.chunks_since(&scope, Cursor::new(handle.epoch, last));
                let mut mailbox = lock(&handle.mailbox);
                mailbox.chunks().runs = chunk_runs;
                mailbox.unread(ready);
            }
        }
        RealtimeSubscription {
            handle,
            last,
            ready: VecDeque::new(),
            state,
        }
    }
}

impl WithStreams for Subscription {
    type WithStreams = RealtimeSubscription;

    fn with_streams(self) -> RealtimeSubscription {
        Subscription::with_streams(self)
    }
}

impl Stream for Subscription {
    type Item = Result<Update<AnyRun>, FeedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.ready.pop_front() {
                this.last = next.position;
                return Poll::Ready(Some(Ok(yielded(this.handle.epoch, next))));
            }
            if this.state == State::Stopped {
                return Poll::Ready(None);
            }
            let mut mailbox = lock(&this.handle.mailbox);
            if let Some(dropped) = mailbox.next_dropped() {
                return Poll::Ready(Some(Err(dropped.into())));
            }
            if mailbox.is_empty() {
                if mailbox.closed {
                    this.state = State::Stopped;
                    return Poll::Ready(Some(Err(FeedError::Stopped)));
                }
                mailbox.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            mailbox.take(&mut this.ready);
        }
    }
}

impl FusedStream for Subscription {
    fn is_terminated(&self) -> bool {
        self.state == State::Stopped && self.ready.is_empty()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.handle.id)
            .field("last", &Cursor::new(self.handle.epoch, self.last))
            .field("ready", &self.ready.len())
            .finish()
    }
}

/// The most chunks a subscription with streams reads from the hub at once: what bounds the
/// memory of one that lags, and how long a read holds the hub's lock.
const CHUNK_BATCH: usize = 256;

/// A subscription to the runs in a scope and the chunks of their streams: [`Realtime`] items
/// in cursor order. It ends as a [`Subscription`] does; dropping it unsubscribes.
#[must_use = "streams do nothing unless polled"]
pub struct RealtimeSubscription {
    handle: Handle,
    last: u64,
    /// Items read at the last read, in cursor order.
    ready: VecDeque<Ready>,
    state: State,
}

enum Ready {
    Run(Pending),
    Chunk(AnyChunk),
}

impl Ready {
    fn position(&self) -> u64 {
        match self {
            Self::Run(pending) => pending.position,
            Self::Chunk(chunk) => chunk.cursor.position(),
        }
    }
}

impl RealtimeSubscription {
    /// Moves the next items, in cursor order, from the mailbox and the hub's chunks to `ready`;
    /// or returns, before them, a loss to tell the subscriber of. `Err(closed)` if there are
    /// none (the waker is then registered unless closed).
    fn read(&mut self, cx: &Context<'_>) -> Result<Option<Dropped>, bool> {
        {
            let mut mailbox = lock(&self.handle.mailbox);
            if let Some(dropped) = mailbox.next_dropped() {
                return Ok(Some(dropped));
            }
            if !mailbox.has_unread_chunks() {
                // No unread chunk: a chunk written before any of these changes would have been
                // noted here before it, so the changes alone are the next items.
                if mailbox.is_empty() {
                    if !mailbox.closed {
                        mailbox.waker = Some(cx.waker().clone());
                    }
                    return Err(mailbox.closed);
                }
                let mut changes = VecDeque::new();
                mailbox.take(&mut changes);
                drop(mailbox);
                self.ready.extend(changes.into_iter().map(Ready::Run));
                return Ok(None);
            }
        }
        let inner = lock(&self.handle.hub);
        // The hub's lock is held, so nothing is published meanwhile: what the mailbox and the
        // chunk logs hold is every change up to now.
        let mut mailbox = lock(&self.handle.mailbox);
        let last = self.last;
        let chunks = mailbox.chunks();
        let runs = std::mem::take(&mut chunks.runs);
        // Each run's chunks, and whether the run was forgotten (its chunks kept for this reader).
        let sources: Vec<(RunId, Arc<Streams>, bool)> = runs
            .into_iter()
            .filter_map(|id| {
                let kept = inner.runs.get(&id).and_then(|entry| entry.streams.clone());
                match kept {
                    Some(streams) => Some((id, streams, false)),
                    None => chunks
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
                next.push(Reverse((chunk.position, source, start)));
            }
        }
        let epoch = self.handle.epoch;
        let items = &mut self.ready;
        debug_assert!(items.is_empty());
        while items.len() < CHUNK_BATCH {
            let Some(Reverse((_, source, at))) = next.pop() else {
                break;
            };
            let (id, streams, _) = &sources[source];
            items.push_back(Ready::Chunk(streams.item(epoch, id, &streams.chunks[at])));
            if let Some(chunk) = streams.chunks.get(at + 1) {
                next.push(Reverse((chunk.position, source, at + 1)));
            }
        }
        // Every chunk up to `bound` is read; later ones, and later changes, wait.
        let bound = match (next.is_empty(), items.back()) {
            (false, Some(last)) => last.position(),
            _ => u64::MAX,
        };
        // A live run's chunks are let go under the hub's lock, so that its next append does
        // not find them shared and copy them; a forgotten run's, which may be the last
        // reference, are freed after the locks.
        let mut read_whole = Vec::new();
        for (id, streams, orphan) in sources {
            let unread = streams.has_after(bound);
            match (unread, orphan) {
                (true, true) => {
                    chunks.orphans.insert(id.clone(), streams);
                    chunks.runs.insert(id);
                }
                (true, false) => {
                    chunks.runs.insert(id);
                }
                (false, true) => read_whole.push(streams),
                (false, false) => {}
            }
        }
        for streams in &read_whole {
            mailbox.read_orphan(streams);
        }
        let mut due = Vec::new();
        mailbox.take_through(bound, &mut due);
        items.extend(due.into_iter().map(Ready::Run));
        drop(mailbox);
        drop(inner);
        drop(read_whole);
        items
            .make_contiguous()
            .sort_unstable_by_key(Ready::position);
        Ok(None)
    }
}

impl Stream for RealtimeSubscription {
    type Item = Result<Realtime<AnyRun, AnyChunk>, FeedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.ready.pop_front() {
                this.last = next.position();
                let item = match next {
                    Ready::Run(pending) => Realtime::Run(yielded(this.handle.epoch, pending)),
                    Ready::Chunk(chunk) => Realtime::Chunk(chunk),
                };
                return Poll::Ready(Some(Ok(item)));
            }
            if this.state == State::Stopped {
                return Poll::Ready(None);
            }
            match this.read(cx) {
                Ok(None) => {}
                Ok(Some(dropped)) => return Poll::Ready(Some(Err(dropped.into()))),
                Err(false) => return Poll::Pending,
                Err(true) => {
                    this.state = State::Stopped;
                    return Poll::Ready(Some(Err(FeedError::Stopped)));
                }
            }
        }
    }
}

impl FusedStream for RealtimeSubscription {
    fn is_terminated(&self) -> bool {
        self.state == State::Stopped && self.ready.is_empty()
    }
}

impl fmt::Debug for RealtimeSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeSubscription")
            .field("id", &self.handle.id)
            .field("last", &Cursor::new(self.handle.epoch, self.last))
            .field("ready", &self.ready.len())
            .finish()
    }
}
