//! A subscription's mailbox: the changes it has not read yet, every one while it keeps within
//! its window, the latest of each run beyond it.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::task::Waker;

use super::chunks::Streams;
use crate::model::{AnyRun, RunId};
use crate::support::{Map, Set};

/// A change a subscriber has not read yet.
pub(super) struct Pending {
    pub(super) position: u64,
    pub(super) run: Arc<AnyRun>,
    /// Earlier changes of the run were skipped for this subscriber.
    pub(super) coalesced: bool,
    /// What keeping it costs the mailbox's budget for forgotten runs, once the engine forgot
    /// its run (0 before).
    pub(super) orphan: u32,
}

impl Pending {
    /// A change at `position`, neither coalesced nor of a forgotten run.
    pub(super) fn new(position: u64, run: Arc<AnyRun>, coalesced: bool) -> Self {
        Pending {
            position,
            run,
            coalesced,
            orphan: 0,
        }
    }
}

/// What a lagging subscriber lost, told to it one item each before anything else.
#[derive(Debug)]
pub(super) enum Dropped {
    /// The unread changes of this forgotten run.
    Changes(RunId),
    /// The unread chunks of this forgotten run.
    Chunks(RunId),
}

/// What a mailbox keeps of runs the engine forgot before its subscriber read them: their
/// unread chunks and latest changes, within the hub's `orphan_bytes`; and what it dropped
/// past that.
#[derive(Default)]
struct Orphans {
    /// What the kept chunks and changes of forgotten runs cost.
    bytes: usize,
    dropped: VecDeque<Dropped>,
}

impl Orphans {
    /// Counts `cost` more bytes if the budget (`limit`) has room for them; if not, notes the
    /// loss to tell the subscriber. Returns whether they fit.
    fn admit(&mut self, cost: usize, limit: usize, lost: Dropped) -> bool {
        match self.bytes.checked_add(cost).filter(|&bytes| bytes <= limit) {
            Some(bytes) => {
                self.bytes = bytes;
                true
            }
            None => {
                self.dropped.push_back(lost);
                false
            }
        }
    }
}

/// The changes a subscriber has not read yet. It has a lock of its own, so a subscriber
/// reading snapshots never contends with a publisher for the hub's lock (reading chunks does,
/// briefly); publishers fill it under the hub's lock, so changes reach it in cursor order.
#[derive(Default)]
pub(super) struct Mailbox {
    /// Unread changes, in cursor order. The first `backlog` are what the subscription yields
    /// before any live change (the state it starts from, the retained changes it resumes
    /// after, changes read but not yielded): never coalesced. The live ones after them are
    /// every live change while there are at most `window` of them; once `coalesced` holds the
    /// live changes, the queue holds the backlog only.
    queue: VecDeque<Pending>,
    backlog: usize,
    /// Beyond the window: the latest unread live change of each run, so that memory stays
    /// bounded by the runs in scope. Read (in cursor order, after the backlog), it empties and
    /// the queue takes over again. Boxed: most mailboxes never coalesce, and an idle
    /// subscription's memory is mostly its mailbox.
    coalesced: Option<Box<Latest>>,
    /// For a subscription with streams, once it has any: the runs with chunks it has not read.
    chunks: Option<Box<UnreadChunks>>,
    /// Once a run is forgotten before the subscriber read it.
    orphans: Option<Box<Orphans>>,
    pub(super) waker: Option<Waker>,
    /// The hub was closed: once the mailbox is empty, the subscription ends.
    pub(super) closed: bool,
}

/// Which runs have chunks a subscriber has not read yet. The chunks stay in the hub: a lagging
/// subscriber costs no memory per chunk.
#[derive(Default)]
pub(super) struct UnreadChunks {
    pub(super) runs: Set<RunId>,
    /// The chunks of runs in `runs` that were forgotten before the subscriber read them all:
    /// kept for it until it has, within the hub's `orphan_bytes`.
    pub(super) orphans: Map<RunId, Arc<Streams>>,
}

impl Mailbox {
    /// A mailbox holding `initial`, in cursor order, every one of which is yielded.
    pub(super) fn new(initial: Vec<Pending>) -> Self {
        Mailbox {
            backlog: initial.len(),
            queue: initial.into(),
            ..Mailbox::default()
        }
    }

    /// Adds a live change, coalescing once more than `window` are unread.
    /// Returns whether it began to coalesce.
    pub(super) fn push(&mut self, pending: Pending, window: usize) -> bool {
        if let Some(latest) = &mut self.coalesced {
            latest.push(pending);
            false
        } else if self.queue.len() - self.backlog < window {
            self.queue.push_back(pending);
            false
        } else {
            let mut latest = Box::<Latest>::default();
            for earlier in self.queue.drain(self.backlog..) {
                latest.push(earlier);
            }
            latest.push(pending);
            self.coalesced = Some(latest);
            true
        }
    }

    /// How many unread changes it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len() + self.coalesced.as_ref().map_or(0, |latest| latest.at.len())
    }

    /// How many changes it holds, with the places of those replaced by a later one.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.queue.len()
            + self
                .coalesced
                .as_ref()
                .map_or(0, |latest| latest.changes.len())
    }

    /// Whether it holds no unread change.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.coalesced.is_none()
    }

    /// Moves the next unread changes to `ready` (empty), in cursor order: the queue if it holds
    /// any, else the coalesced ones.
    pub(super) fn take(&mut self, ready: &mut VecDeque<Pending>) {
        debug_assert!(ready.is_empty());
        self.backlog = 0;
        if !self.queue.is_empty() {
            // The queue's buffer goes to the reader, and the reader's empty one comes back.
            std::mem::swap(&mut self.queue, ready);
        } else if let Some(latest) = self.coalesced.take() {
            let start = ready.len();
            ready.extend(latest.changes.into_iter().flatten());
            self.release(ready.range(start..));
        }
    }

    /// Gives back to the budget for forgotten runs what the changes read cost it.
    fn release<'a>(&mut self, read: impl Iterator<Item = &'a Pending>) {
        if let Some(orphans) = &mut self.orphans {
            let freed: usize = read.map(|p| p.orphan as usize).sum();
            orphans.bytes = orphans.bytes.saturating_sub(freed);
        }
    }

    /// Puts back changes read but not yielded, which precede every change it holds.
    pub(super) fn unread(&mut self, mut read: VecDeque<Pending>) {
        self.backlog += read.len();
        read.append(&mut self.queue);
        self.queue = read;
    }

    /// Moves the unread changes at or before `position` to `ready`, unsorted.
    pub(super) fn take_through(&mut self, position: u64, ready: &mut Vec<Pending>) {
        let due = self.queue.partition_point(|p| p.position <= position);
        ready.extend(self.queue.drain(..due));
        self.backlog = self.backlog.saturating_sub(due);
        if !self.queue.is_empty() {
            // Every coalesced change comes after the queue's.
            return;
        }
        if let Some(latest) = &mut self.coalesced {
            let start = ready.len();
            latest.take_through(position, ready);
            if latest.at.is_empty() {
                self.coalesced = None;
            }
            self.release(ready[start..].iter());
        }
    }

    /// Notes that run `id` has a chunk the subscriber has not read.
    pub(super) fn note_chunk(&mut self, id: &RunId) {
        self.chunks().runs.insert(id.clone());
    }

    /// The next loss to tell the subscriber of.
    pub(super) fn next_dropped(&mut self) -> Option<Dropped> {
        self.orphans.as_mut()?.dropped.pop_front()
    }

    /// Whether it holds the latest changes of runs beyond its window.
    pub(super) fn is_coalescing(&self) -> bool {
        self.coalesced.is_some()
    }

    /// Run `id` was forgotten: its latest change, if coalesced here unread, is kept if it
    /// costs (`cost` bytes) what the budget for forgotten runs (`limit`) has left, else
    /// dropped, and the subscriber will be told. Returns whether it must be woken to be told.
    pub(super) fn forget_run(&mut self, id: &RunId, cost: usize, limit: usize) -> bool {
        let Some(latest) = &mut self.coalesced else {
            return false;
        };
        let Some(&index) = latest.at.get(id) else {
            return false;
        };
        let orphans = self.orphans.get_or_insert_with(Box::default);
        if orphans.admit(cost, limit, Dropped::Changes(id.clone())) {
            if let Some(pending) = &mut latest.changes[index - latest.taken] {
                pending.orphan = u32::try_from(cost).unwrap_or(u32::MAX);
            }
            false
        } else {
            latest.at.remove(id);
            latest.changes[index - latest.taken] = None;
            if latest.at.is_empty() {
                self.coalesced = None;
            }
            true
        }
    }

    /// Lets go of a forgotten run's chunks, read to their end.
    pub(super) fn read_orphan(&mut self, streams: &Streams) {
        if let Some(orphans) = &mut self.orphans {
            orphans.bytes = orphans.bytes.saturating_sub(streams.bytes);
        }
    }

    /// Whether some run has chunks the subscriber has not read.
    pub(super) fn has_unread_chunks(&self) -> bool {
        self.chunks.as_ref().is_some_and(|c| !c.runs.is_empty())
    }

    /// The runs with unread chunks, and the chunks kept of those forgotten since.
    pub(super) fn chunks(&mut self) -> &mut UnreadChunks {
        self.chunks.get_or_insert_with(Box::default)
    }

    /// Keeps the chunks of run `id`, being forgotten, if the subscriber has not read them all
    /// and the chunks it keeps so stay within `limit` bytes. Past the limit, they are dropped,
    /// and the subscriber will be told. Returns whether it must be woken to be told.
    pub(super) fn keep_orphan(&mut self, id: &RunId, streams: &Arc<Streams>, limit: usize) -> bool {
        let Some(chunks) = &mut self.chunks else {
            return false;
        };
        if !chunks.runs.contains(id) {
            return false;
        }
        let orphans = self.orphans.get_or_insert_with(Box::default);
        if orphans.admit(streams.bytes, limit, Dropped::Chunks(id.clone())) {
            chunks.orphans.insert(id.clone(), Arc::clone(streams));
            false
        } else {
            chunks.runs.remove(id);
            true
        }
    }
}

/// The latest unread change of each run, in cursor order, without sorting: a change replaced
/// by a later one of its run leaves a hole, and the holes are swept out once they are as many
/// as the changes, so that memory stays bounded by the runs.
#[derive(Default)]
struct Latest {
    /// In cursor order; `None` where a later change of the run replaced this one.
    changes: VecDeque<Option<Pending>>,
    /// How many were taken from the front of `changes` since it was last swept: an index in
    /// `at`, less this, is a place in `changes`.
    taken: usize,
    /// Where each run's latest change is, as an index in `changes` plus `taken`.
    at: Map<RunId, usize>,
}

impl Latest {
    /// Adds the run's latest change, marked coalesced if it replaces an unread one.
    fn push(&mut self, mut pending: Pending) {
        let index = self.taken + self.changes.len();
        // One hash of the id, whether the run is there or not.
        match self.at.entry(pending.run.id.clone()) {
            Entry::Occupied(mut earlier) => {
                let earlier = std::mem::replace(earlier.get_mut(), index);
                self.changes[earlier - self.taken] = None;
                pending.coalesced = true;
            }
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
        self.changes.push_back(Some(pending));
        if self.changes.len() > 2 * self.at.len() + 64 {
            self.sweep();
        }
    }

    /// Removes the holes: each change's place is counted again.
    fn sweep(&mut self) {
        self.changes.retain(Option::is_some);
        self.taken = 0;
        for (index, pending) in self.changes.iter().flatten().enumerate() {
            if let Some(at) = self.at.get_mut(&pending.run.id) {
                *at = index;
            }
        }
    }

    /// Moves the changes at or before `position` to `ready`, in cursor order.
    fn take_through(&mut self, position: u64, ready: &mut Vec<Pending>) {
        while let Some(front) = self.changes.front() {
            if front.as_ref().is_some_and(|p| p.position > position) {
                break;
            }
            self.taken += 1;
            if let Some(pending) = self.changes.pop_front().flatten() {
                self.at.remove(&pending.run.id);
                ready.push(pending);
            }
        }
    }
}
