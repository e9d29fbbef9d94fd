//! The engine's timers: delays, TTLs and retry backoffs, due at a time on Tokio's clock, and
//! the end of finished runs' retention. They wait in one ordered queue that one task serves,
//! sleeping until the earliest is due: a timer costs an entry in the queue, not a task of its
//! own, and starting one wakes that task only when it becomes the earliest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use super::store::RunStore;
use super::worker::STORE_RETRY;
use super::worker::{count_time, retry_delay};
use crate::model::{RunId, RunStatus, SerializedError, StoreError, Timestamp};
use crate::support::lock;

/// The most timers fired in one round, before the task yields to others.
const ROUND: usize = 1024;

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timer {
    /// A delayed run's delay ended: queue it.
    Delay,
    /// A run's time to live ended: expire it if it has not started.
    Ttl,
    /// A failed attempt's backoff ended: queue the run again.
    Retry,
    /// The lease of the process executing the run's attempt ran out (a store shared by
    /// processes): the process is taken for gone, and the attempt for failed.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    LeaseLost,
}

/// The timers not yet fired, earliest first, and the signal that wakes the task serving them.
#[derive(Default)]
pub(super) struct Timers {
    /// By due time, then by the order they were started in.
    due: Mutex<Queue>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Queue {
    timers: BTreeMap<(Instant, u64), (RunId, Timer)>,
    started: u64,
}

impl Timers {
    /// Starts a timer that fires `timer` for run `id` `wait` from `now` (Tokio's clock, read
    /// inside the engine's runtime). A wait too long to count never fires.
    pub(super) fn start(&self, now: Instant, wait: Duration, id: RunId, timer: Timer) {
        let Some(at) = now.checked_add(wait) else {
            return;
        };
        let mut queue = lock(&self.due);
        let earliest = queue.timers.first_key_value().map(|(&(at, _), _)| at);
        queue.started += 1;
        let key = (at, queue.started);
        queue.timers.insert(key, (id, timer));
        drop(queue);
        if earliest.is_none_or(|earliest| at < earliest) {
            self.wake.notify_one();
        }
    }

    /// Wakes the task serving the timers, so that it sees the engine is gone.
    pub(super) fn stop(&self) {
        self.wake.notify_one();
    }

    /// Takes up to `max` timers due at `now`, earliest first; returns when the next one is due
    /// if none is left due.
    fn take_due(
        &self,
        now: Instant,
        max: usize,
        fired: &mut Vec<(RunId, Timer)>,
    ) -> Option<Instant> {
        let mut queue = lock(&self.due);
        while fired.len() < max {
            let entry = queue.timers.first_entry()?;
            if entry.key().0 > now {
                return Some(entry.key().0);
            }
            fired.push(entry.remove());
        }
        // A full round: more may be due.
        Some(now)
    }
}

/// Fires the engine's timers when they are due, and forgets finished runs once their retention
/// ends, until the engine is dropped.
pub(super) async fn serve(shared: Weak<Shared>) {
    let Some(wake) = shared.upgrade().map(|s| Arc::clone(&s.timers.wake)) else {
        return;
    };
    let mut fired = Vec::new();
    // When to look for finished runs to forget next (`None`: never).
    let mut forget_at = Some(Instant::now());
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let now = Instant::now();
            if forget_at.is_some_and(|at| at <= now) {
                forget_at = now.checked_add(forget_finished(&shared).await);
            }
            let next = shared.timers.take_due(now, ROUND, &mut fired);
            for (id, timer) in fired.drain(..) {
                if let Err(error) = fire(&shared, &id, timer).await {
                    tracing::error!(
                        run = %id, ?timer, %error, retry_in = ?STORE_RETRY,
                        "a timer's change failed; it will fire again"
                    );
                    shared.start_timer(STORE_RETRY, id, timer);
                }
            }
            match (next, forget_at) {
                (Some(next), Some(forget)) => Some(next.min(forget)),
                (next, forget) => next.or(forget),
            }
        };
        match next {
            Some(at) if at <= Instant::now() => tokio::task::yield_now().await,
            // A timer started since the queue was read, earlier than `at`, left a permit: then
            // `notified` completes at once.
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// Forgets the finished runs whose retention ended; returns how long until the next is due.
async fn forget_finished(shared: &Shared) -> Duration {
    let next = match shared.store.forget_finished().await {
        Ok(next) => next,
        Err(error) => {
            tracing::error!(%error, "forgetting finished runs failed; trying again later");
            Some(STORE_RETRY)
        }
    };
    // A run that finishes from now on is due a retention from now or later. At least a
    // millisecond: a zero retention must not make this loop spin.
    next.unwrap_or(shared.config.retention)
        .max(Duration::from_millis(1))
}

/// What timer `timer` of run `id` does.
pub(super) async fn fire(shared: &Arc<Shared>, id: &RunId, timer: Timer) -> Result<(), StoreError> {
    match timer {
        Timer::Delay if shared.is_closed() => Ok(()),
        Timer::Delay => {
            let delayed = |status| status == RunStatus::Delayed;
            let queued = shared.store.update_if(id, delayed, |record| {
                let run = record.run();
                run.status = RunStatus::Queued;
                run.queued_at = Some(Timestamp::now());
            });
            if queued.await?.is_some() {
                shared.enqueue(id.clone());
            }
            Ok(())
        }
        // No attempt starts once `shutdown` began.
        Timer::Retry => {
            shared.enqueue(id.clone());
            Ok(())
        }
        Timer::LeaseLost => {
            let executing = |status| status == RunStatus::Executing;
            let now = Timestamp::now();
            let (cost_per_ms, base) = (shared.config.cost_per_ms_cents, shared.config.retry_delay);
            let lost = shared.store.update_if(id, executing, |record| {
                // Renewed since it was found due: its process is alive.
                if record.lease_until.is_none_or(|until| until > now) {
                    return None;
                }
                count_time(record, now, cost_per_ms);
                let attempt = record.attempts;
                let retry = attempt < record.max_attempts;
                let run = record.run();
                run.error = Some(SerializedError {
                    message: format!(
                        "the process executing attempt {attempt} stopped answering (its lease ran out)"
                    ),
                    name: Some("WorkerLost".into()),
                    stack_trace: None,
                });
                if retry {
                    run.status = RunStatus::Reattempting;
                    record.retry_at = now.checked_add(retry_delay(base, attempt));
                } else {
                    run.status = RunStatus::Crashed;
                    run.finished_at = Some(now);
                }
                Some(record.snapshot.status)
            });
            if let Some(Some(status)) = lost.await? {
                tracing::warn!(run = %id, %status, "the process executing the run's attempt was lost");
            }
            Ok(())
        }
        Timer::Ttl => {
            // Only a run still waiting to start expires.
            let expire = shared.store.update_if(id, RunStatus::is_queued, |record| {
                let now = Timestamp::now();
                let run = record.run();
                run.status = RunStatus::Expired;
                run.expired_at = Some(now);
                run.finished_at = Some(now);
            });
            if expire.await?.is_some() {
                tracing::info!(run = %id, "expired before it started");
            }
            Ok(())
        }
    }
}
