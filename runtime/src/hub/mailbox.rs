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
    /// What the subscription yields before any live change: the state it starts from, or the
    /// retained changes it resumes after (bounded by the history), and changes read but not
    /// yielded. Never coalesced; read first.
    pub(super) backlog: VecDeque<Pending>,
    /// Every unread live change, in cursor order, while there are at most `window` of them.
    pub(super) queue: VecDeque<Pending>,
    /// Beyond the window: the latest unread change of each run, so that memory stays bounded
    /// by the runs in scope. Read (in cursor order), it empties and the queue takes over again.
    pub(super) coalesced: Option<Map<RunId, Pending>>,
    /// Runs with chunks the subscriber has not read yet (for a subscription with streams). The
    /// chunks stay in the hub: a lagging subscriber costs no memory per chunk.
    pub(super) chunk_runs: Set<RunId>,
    /// The chunks of runs in `chunk_runs` that were forgotten before the subscriber read them
    /// all: kept for it until it has.
    pub(super) orphans: Map<RunId, Arc<Streams>>,
    pub(super) waker: Option<Waker>,
    /// The hub was closed: once the mailbox is empty, the subscription ends.
    pub(super) closed: bool,
}

impl Mailbox {
    /// A mailbox holding `initial`, in cursor order, every one of which is yielded.
    pub(super) fn new(initial: Vec<Pending>) -> Self {
        Mailbox {
            backlog: initial.into(),
            ..Mailbox::default()
        }
    }

    /// Adds a live change, coalescing once more than `window` are unread.
    pub(super) fn push(&mut self, pending: Pending, window: usize) {
        if let Some(latest) = &mut self.coalesced {
            coalesce(latest, pending);
        } else if self.queue.len() < window {
            self.queue.push_back(pending);
        } else {
            let mut latest = Map::default();
            for earlier in self.queue.drain(..) {
                coalesce(&mut latest, earlier);
            }
            coalesce(&mut latest, pending);
            self.coalesced = Some(latest);
        }
    }

    /// Whether it holds no unread change.
    pub(super) fn is_empty(&self) -> bool {
        self.backlog.is_empty() && self.queue.is_empty() && self.coalesced.is_none()
    }

    /// Moves the next unread changes to `ready` (empty), in cursor order: the backlog if there is
    /// one, else every live change. Sorting coalesced ones is left to the caller, after it lets
    /// go of the mailbox (publishers wait for it). Returns whether they need sorting.
    pub(super) fn take(&mut self, ready: &mut VecDeque<Pending>) -> bool {
        debug_assert!(ready.is_empty());
        if !self.backlog.is_empty() {
            std::mem::swap(&mut self.backlog, ready);
            return false;
        }
        match self.coalesced.take() {
            Some(latest) => {
                ready.extend(latest.into_values());
                true
            }
            None => {
                // The queue's buffer goes to the reader, and the reader's empty one comes back.
                std::mem::swap(&mut self.queue, ready);
                false
            }
        }
    }

    /// Puts back changes read but not yielded, which precede every change it holds.
    pub(super) fn unread(&mut self, mut read: VecDeque<Pending>) {
        read.append(&mut self.backlog);
        self.backlog = read;
    }

    /// Moves the unread changes at or before `position` to `ready`, unsorted.
    pub(super) fn take_through(&mut self, position: u64, ready: &mut Vec<Pending>) {
        let due = self.backlog.partition_point(|p| p.position <= position);
        ready.extend(self.backlog.drain(..due));
        if !self.backlog.is_empty() {
            // Every live change comes after the backlog.
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
        } else {
            let due = self.queue.partition_point(|p| p.position <= position);
            ready.extend(self.queue.drain(..due));
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
