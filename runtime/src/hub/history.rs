//! The change log: the latest changes of every run, in cursor order, evicted oldest first once
//! the log holds more changes or bytes than it may. A subscription resumed from a cursor
//! replays the changes after it from here.

use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::feed::Scope;
use crate::model::{AnyRun, BatchId};

/// One change of a run, as the log keeps it.
pub(super) struct Change {
    pub(super) position: u64,
    pub(super) run: Arc<AnyRun>,
    /// The run's batch.
    pub(super) batch: Option<BatchId>,
    /// The run's tags before this change, if it changed them: a tag subscription resumed from
    /// before the change sees the run leave its scope, as a live one does.
    previous_tags: Option<Arc<[String]>>,
    /// What keeping it costs, as counted against the log's bytes.
    bytes: usize,
}

impl Change {
    /// The change of `run` at `position`, after `previous` (none for a new run). Its cost
    /// counts what it does not share with `previous`: a change of status shares the payload,
    /// output and metadata of the snapshot before it.
    pub(super) fn new(
        position: u64,
        run: Arc<AnyRun>,
        batch: Option<BatchId>,
        previous: Option<&AnyRun>,
    ) -> Self {
        let previous_tags = previous
            .filter(|previous| !Arc::ptr_eq(&previous.tags, &run.tags) && previous.tags != run.tags)
            .map(|previous| Arc::clone(&previous.tags));
        let bytes = cost(&run, previous);
        Self {
            position,
            run,
            batch,
            previous_tags,
            bytes,
        }
    }

    /// Whether a subscription to `scope` sees this change: the run is in scope after it, or
    /// was just before it (a tag removed).
    pub(super) fn shown_to(&self, scope: &Scope) -> bool {
        let was_in = match (&self.previous_tags, scope) {
            (Some(before), Scope::Tags(tags)) => tags.iter().all(|t| before.contains(t)),
            _ => false,
        };
        was_in || super::index::in_scope(scope, &self.run, self.batch.as_ref())
    }
}

/// What keeping a snapshot costs beyond what it shares with `previous`.
pub(super) fn cost(run: &AnyRun, previous: Option<&AnyRun>) -> usize {
    let unshared = |now: Option<&Arc<RawValue>>, before: Option<&Arc<RawValue>>| match (now, before)
    {
        (Some(now), Some(before)) if Arc::ptr_eq(now, before) => 0,
        (Some(now), _) => now.get().len(),
        (None, _) => 0,
    };
    let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    size_of::<AnyRun>()
        + size_of::<Change>()
        + run.task_identifier.len()
        + match previous {
            Some(p) if Arc::ptr_eq(&p.tags, &run.tags) => 0,
            _ => strings(&run.tags),
        }
        + optional(&run.idempotency_key)
        + optional(&run.ttl)
        + run.error.as_ref().map_or(0, |e| {
            e.message.len() + optional(&e.name) + optional(&e.stack_trace)
        })
        + strings(&run.realtime_streams)
        + unshared(
            run.payload.as_ref(),
            previous.and_then(|p| p.payload.as_ref()),
        )
        + unshared(
            run.output.as_ref(),
            previous.and_then(|p| p.output.as_ref()),
        )
        + unshared(
            run.metadata.as_ref(),
            previous.and_then(|p| p.metadata.as_ref()),
        )
}

fn strings(strings: &[String]) -> usize {
    strings.iter().map(|s| s.len() + size_of::<String>()).sum()
}

/// The log: the latest changes, oldest first, within its bounds.
pub(super) struct History {
    changes: VecDeque<Change>,
    bytes: usize,
    max_changes: usize,
    max_bytes: usize,
    /// The position of the latest change evicted (0: none): a subscription resumed from
    /// before it may have missed changes.
    evicted_through: u64,
}

impl History {
    pub(super) fn new(max_changes: usize, max_bytes: usize) -> Self {
        Self {
            changes: VecDeque::new(),
            bytes: 0,
            max_changes,
            max_bytes,
            evicted_through: 0,
        }
    }

    /// Records a change, and evicts the oldest ones while the log holds more than it may.
    /// Returns the first evicted (usually the only one), to be freed outside the hub's lock.
    pub(super) fn record(&mut self, change: Change) -> Option<Change> {
        self.bytes += change.bytes;
        self.changes.push_back(change);
        let first = self.evict_one();
        while self.evict_one().is_some() {}
        first
    }

    /// Evicts the oldest change if the log holds more than it may.
    fn evict_one(&mut self) -> Option<Change> {
        if self.changes.len() <= self.max_changes && self.bytes <= self.max_bytes {
            return None;
        }
        let oldest = self.changes.pop_front()?;
        self.bytes -= oldest.bytes;
        self.evicted_through = oldest.position;
        Some(oldest)
    }

    /// Marks the changes through `position` as not kept: the log starts after it (a log
    /// loaded from a database keeps its latest changes only).
    pub(super) fn starts_after(&mut self, position: u64) {
        self.evicted_through = self.evicted_through.max(position);
    }

    /// Whether every change after `position` is still in the log.
    pub(super) fn holds_all_after(&self, position: u64) -> bool {
        position >= self.evicted_through
    }

    /// The changes after `position`, oldest first.
    pub(super) fn after(&self, position: u64) -> impl Iterator<Item = &Change> {
        let start = self.changes.partition_point(|c| c.position <= position);
        self.changes.range(start..)
    }

    /// How many changes it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.changes.len()
    }
}
