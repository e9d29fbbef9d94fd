//! Small helpers every layer uses: a lock that survives a panic, and hash maps keyed by ids
//! runcast generates.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A map keyed by what runcast generates (run and batch ids, subscription numbers): hashed with
/// foldhash, at a fraction of the cost of std's SipHash (which was a quarter of a trigger).
/// Keys that clients choose (tags, idempotency keys) stay in std's maps, whose SipHash resists
/// keys crafted to collide.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
/// A set hashed as a [`Map`].
pub(crate) type Set<K> = HashSet<K, foldhash::quality::RandomState>;

/// Locks a state that stays consistent even if a thread panicked while holding the lock: every
/// change to it is made before any call that could panic.
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
