//! Work from a store that processes share: the engine attempts the runs it claims from the
//! store, rather than the runs it queued itself, and fires the timers the store keeps, so
//! that a run is attempted and timed by whichever process is alive.
//!
//! One task per engine claims runs whenever work may wait (a run was queued anywhere, a slot
//! freed, or a while passed), and fires the store's due timers (delays, TTLs, leases that ran
//! out) twice a second.
//!
//! It claims for its free slots, and as many runs again as it has slots: runs claimed ahead
//! wait in the engine's
//! queue, so a slot that frees starts its next run without a round trip to the database. The
//! store holds a claimed run for its process only a few seconds before it starts, so a busy
//! process does not keep runs from an idle one.
//!
//! Timers started in this process fire here too, on time; the store's copy is for when this
//! process is gone. Both make the same checked change, so the second finds nothing to do.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::store::RunStore;
use super::timers::fire;
use super::worker::STORE_RETRY;
use crate::support::lock;

/// The most runs claimed, or timers fired, in one round.
const ROUND: usize = 256;

/// How often the store's due timers are read: a timer of a process that is gone fires within
/// this of its time. Runs are claimed at every wake-up.
const DUE_EVERY: Duration = Duration::from_millis(500);

/// Publishes the engine's tasks, then claims and times runs for it until it is dropped or
/// stops.
pub(super) async fn serve(weak: Weak<Shared>) {
    let mut due_at = Instant::now();
    let mut unpublished = true;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if shared.is_closed() {
            return;
        }
        let timers = due_at <= Instant::now();
        if timers {
            due_at = Instant::now() + DUE_EVERY;
        }
        if unpublished {
            unpublished = !publish(&shared).await;
        }
        let failed = round(&shared, timers).await || unpublished;
        let work = shared.store.work();
        // Not holding the engine while it waits: a dropped engine ends this task.
        drop(shared);
        if failed {
            tokio::time::sleep(STORE_RETRY).await;
        } else {
            work.await;
        }
    }
}

/// Publishes the tasks the engine runs, for processes that share its store but do not
/// register them (see [`catalog`](super::catalog)); returns whether they are published.
async fn publish(shared: &Shared) -> bool {
    #[cfg(feature = "postgres")]
    {
        let tasks: Vec<_> = (shared.executors.values())
            .filter_map(|executor| executor.published())
            .collect();
        if tasks.is_empty() {
            return true;
        }
        if let Err(error) = shared.store.publish(&tasks).await {
            tracing::error!(%error, retry_in = ?STORE_RETRY, "could not publish the engine's tasks");
            return false;
        }
        tracing::debug!(tasks = tasks.len(), "published the engine's tasks");
    }
    #[cfg(not(feature = "postgres"))]
    let _ = shared;
    true
}

/// Fires due timers (if `timers`) and claims runs for the free slots; returns whether the
/// store failed.
async fn round(shared: &Arc<Shared>, timers: bool) -> bool {
    let due = if timers {
        shared.store.due(ROUND).await
    } else {
        Ok(Vec::new())
    };
    match due {
        Ok(due) => {
            for (id, timer) in due {
                if let Err(error) = fire(shared, &id, timer).await {
                    tracing::error!(run = %id, ?timer, %error, "a due timer's change failed");
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, retry_in = ?STORE_RETRY, "could not read the store's due timers");
            return true;
        }
    }
    let waiting = lock(&shared.queue).len();
    // Ahead by as many runs as the engine has slots.
    let free = (shared.slots.available_permits() + shared.config.concurrency)
        .saturating_sub(waiting)
        .min(ROUND);
    if free == 0 {
        return false;
    }
    let tasks: Vec<&'static str> = (shared.executors.iter())
        .filter(|(_, executor)| executor.runs_here())
        .map(|(task, _)| *task)
        .collect();
    if tasks.is_empty() {
        return false;
    }
    match shared.store.claim(&tasks, free).await {
        Ok(claimed) => {
            for id in claimed {
                shared.enqueue_here(id);
            }
            false
        }
        Err(error) => {
            tracing::error!(%error, retry_in = ?STORE_RETRY, "could not claim runs");
            true
        }
    }
}
