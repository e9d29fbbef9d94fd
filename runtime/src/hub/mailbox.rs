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
    /// the queue takes over again.
    coalesced: Option<Map<RunId, Pending>>,
    /// For a subscription with streams, once it has any: the runs with chunks it has not read.
    chunks: Option<Box<UnreadChunks>>,
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
    /// kept for it until it has.
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
    pub(super) fn push(&mut self, pending: Pending, window: usize) {
        if let Some(latest) = &mut self.coalesced {
            coalesce(latest, pending);
        } else if self.queue.len() - self.backlog < window {
            self.queue.push_back(pending);
        } else {
            let mut latest = Map::default();
            for earlier in self.queue.drain(self.backlog..) {
                coalesce(&mut latest, earlier);
            }
            coalesce(&mut latest, pending);
            self.coalesced = Some(latest);
        }
    }

    /// How many unread changes it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len() + self.coalesced.as_ref().map_or(0, Map::len)
    }

    /// Whether it holds no unread change.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.coalesced.is_none()
    }

    /// Moves the next unread changes to `ready` (empty), in cursor order: the queue if it holds
    /// any, else the coalesced ones. Sorting coalesced ones is left to the caller, after it
    /// lets go of the mailbox (publishers wait for it). Returns whether they need sorting.
    pub(super) fn take(&mut self, ready: &mut VecDeque<Pending>) -> bool {
        debug_assert!(ready.is_empty());
        self.backlog = 0;
        if !self.queue.is_empty() {
            // The queue's buffer goes to the reader, and the reader's empty one comes back.
            std::mem::swap(&mut self.queue, ready);
            return false;
        }
        match self.coalesced.take() {
            Some(latest) => {
                ready.extend(latest.into_values());
                true
            }
            None => false,
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
            ready.extend(
                latest
                    .extract_if(|_, p| p.position <= position)
                    .map(|(_, p)| p),
            );
            if latest.is_empty() {
                self.coalesced = None;
            }
        }
    }

    /// Notes that run `id` has a chunk the subscriber has not read.
    pub(super) fn note_chunk(&mut self, id: &RunId) {
        self.chunks().runs.insert(id.clone());
    }

    /// Whether some run has chunks the subscriber has not read.
    pub(super) fn has_unread_chunks(&self) -> bool {
        self.chunks.as_ref().is_some_and(|c| !c.runs.is_empty())
    }

    /// The runs with unread chunks, and the chunks kept of those forgotten since.
    pub(super) fn chunks(&mut self) -> &mut UnreadChunks {
        self.chunks.get_or_insert_with(Box::default)
    }

    /// Keeps the chunks of run `id`, being forgotten, if the subscriber has not read them all.
    pub(super) fn keep_orphan(&mut self, id: &RunId, streams: &Arc<Streams>) {
        if let Some(chunks) = &mut self.chunks
            && chunks.runs.contains(id)
        {
            chunks.orphans.insert(id.clone(), Arc::clone(streams));
        }
    }
}

/// Keeps the latest change of the run, marked coalesced if it replaced an unread one.
fn coalesce(latest: &mut Map<RunId, Pending>, mut pending: Pending) {
    // One hash of the id, whether the run is there or not.
    match latest.entry(pending.run.id.clone()) {
        Entry::Occupied(mut earlier) => {
            pending.coalesced = true;
            earlier.insert(pending);
        }
        Entry::Vacant(slot) => {
            slot.insert(pending);
        }
    }
}
