//! The hub's indexes: runs by tag and batch, and subscriptions by the run, tag or batch they
//! watch, so that a change costs work proportional to its own subscribers.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use crate::feed::Scope;
use crate::model::{AnyRun, BatchId, RunId};
use crate::support::{Map, Set};

/// Runs by the tags they carry and the batch they belong to. Tags are chosen by clients, so
/// their map keeps std's hasher (see [`Map`]).
#[derive(Default)]
pub(super) struct RunIndex {
    pub(super) by_tag: HashMap<String, Set<RunId>>,
    pub(super) by_batch: Map<BatchId, Set<RunId>>,
}

/// Subscriptions by what they watch.
#[derive(Default)]
pub(super) struct WatchIndex {
    pub(super) by_run: Map<RunId, Set<u64>>,
    /// Tag subscriptions, by the first of their tags: a run they watch carries it.
    pub(super) by_tag: HashMap<String, Set<u64>>,
    pub(super) by_batch: Map<BatchId, Set<u64>>,
}

/// Adds `value` to, or removes it from, the set at `key`; an emptied set is removed.
pub(super) fn set_member<K, V, H>(map: &mut HashMap<K, Set<V>, H>, key: &K, value: &V, add: bool)
where
    K: Hash + Eq + Clone,
    V: Hash + Eq + Clone,
    H: BuildHasher,
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

/// Whether a run with this snapshot and batch is in `scope`.
pub(crate) fn in_scope(scope: &Scope, run: &AnyRun, batch: Option<&BatchId>) -> bool {
    match scope {
        Scope::Run(id) => run.id == *id,
        Scope::Tags(tags) => tags.iter().all(|tag| run.tags.contains(tag)),
        Scope::Batch(id) => batch == Some(id),
    }
}

impl RunIndex {
    /// Moves a run from its old tags and batch to its new ones, touching only what changed
    /// (most changes keep both).
    pub(super) fn reindex(
        &mut self,
        id: &RunId,
        old: Option<(&[String], Option<&BatchId>)>,
        new: (&[String], Option<&BatchId>),
    ) {
        let (old_tags, old_batch) = old.unwrap_or((&[], None));
        let (new_tags, new_batch) = new;
        // Most changes keep the very same tags (shared by the run's snapshots).
        if !std::ptr::eq(old_tags, new_tags) {
            for tag in old_tags.iter().filter(|tag| !new_tags.contains(tag)) {
                set_member(&mut self.by_tag, tag, id, false);
            }
            for tag in new_tags.iter().filter(|tag| !old_tags.contains(tag)) {
                set_member(&mut self.by_tag, tag, id, true);
            }
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

    /// The runs that may be in `scope` now: by its id, its first tag or its batch.
    pub(super) fn candidates<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> Box<dyn Iterator<Item = &'a RunId> + 'a> {
        match scope {
            Scope::Run(id) => Box::new(std::iter::once(id)),
            Scope::Tags(tags) => Box::new(
                tags.first()
                    .and_then(|tag| self.by_tag.get(tag))
                    .into_iter()
                    .flatten(),
            ),
            Scope::Batch(id) => Box::new(self.by_batch.get(id).into_iter().flatten()),
        }
    }
}

impl WatchIndex {
    /// Adds or removes a subscription in the index its scope is found by.
    pub(super) fn watch(&mut self, scope: &Scope, subscription: u64, add: bool) {
        match scope {
            Scope::Run(id) => set_member(&mut self.by_run, id, &subscription, add),
            Scope::Tags(tags) => {
                if let Some(first) = tags.first() {
                    set_member(&mut self.by_tag, first, &subscription, add);
                }
            }
            Scope::Batch(id) => set_member(&mut self.by_batch, id, &subscription, add),
        }
    }

    /// The subscriptions that may watch a run with these tags (now or before the change) and
    /// batch: by its id, any of the tags, or its batch. A subscription is indexed under one
    /// key, so it comes once if the tags are distinct.
    pub(super) fn of<'a>(
        &'a self,
        id: &RunId,
        tags: impl Iterator<Item = &'a String> + 'a,
        batch: Option<&BatchId>,
    ) -> impl Iterator<Item = u64> + 'a {
        let by_run = self.by_run.get(id);
        let by_tag = tags.filter_map(|tag| self.by_tag.get(tag));
        let by_batch = batch.and_then(|b| self.by_batch.get(b));
        by_run
            .into_iter()
            .chain(by_tag)
            .chain(by_batch)
            .flatten()
            .copied()
    }
}
