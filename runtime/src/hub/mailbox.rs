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
    /// Every unread change, in cursor order, while there are at most `window` of them.
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
    /// A mailbox holding `initial`, in cursor order.
    pub(super) fn new(initial: Vec<Pending>, window: usize) -> Self {
        let mut mailbox = Mailbox::default();
        for pending in initial {
            mailbox.push(pending, window);
        }
        mailbox
    }

    /// Adds a change, coalescing once more than `window` are unread.
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
        self.queue.is_empty() && self.coalesced.is_none()
    }

    /// Moves every unread change to `ready` (empty), in cursor order; sorting coalesced ones is
    /// left to the caller, after it lets go of the mailbox (publishers wait for it). Returns
    /// whether they need sorting.
    pub(super) fn take(&mut self, ready: &mut VecDeque<Pending>) -> bool {
        debug_assert!(ready.is_empty());
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
    pub(super) fn unread(&mut self, read: VecDeque<Pending>, window: usize) {
        match &mut self.coalesced {
            Some(latest) => {
                for pending in read {
                    match latest.get_mut(&pending.run.id) {
                        Some(newer) => newer.coalesced = true,
                        None => {
                            latest.insert(pending.run.id.clone(), pending);
                        }
                    }
                }
            }
            None => {
                let newer = std::mem::replace(&mut self.queue, read);
                for pending in newer {
                    self.push(pending, window);
                }
            }
        }
    }

    /// Moves the unread changes at or before `position` to `ready`, unsorted.
    pub(super) fn take_through(&mut self, position: u64, ready: &mut Vec<Pending>) {
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
