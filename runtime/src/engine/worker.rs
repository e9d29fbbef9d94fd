//! The worker pool: takes queued runs, runs one attempt each, and moves the run to its next
//! status: `EXECUTING`, then `COMPLETED`, `REATTEMPTING` (and queued again after a backoff),
//! `FAILED`, or `CRASHED` when the task panics.

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use super::Shared;
use crate::run::{RunId, SerializedError};
use crate::status::RunStatus;
use crate::task::TaskContext;
use crate::timestamp::Timestamp;

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Runs queued runs, at most `concurrency` at once, until every engine handle is dropped.
pub(super) async fn dispatch(shared: Weak<Shared>, mut queue: mpsc::UnboundedReceiver<RunId>) {
    let Some(concurrency) = shared.upgrade().map(|s| s.config.concurrency) else {
        return;
    };
    let slots = Arc::new(Semaphore::new(concurrency));
    while let Some(id) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            attempt(&shared, &id).await;
            drop(slot);
        });
    }
}

/// One attempt of a run.
async fn attempt(shared: &Arc<Shared>, id: &RunId) {
    let started = shared.update(id, |record| {
        record.attempts += 1;
        let run = &mut record.snapshot;
        run.status = RunStatus::Executing;
        run.started_at.get_or_insert_with(Timestamp::now);
        let executor = shared.executors.get(run.task_identifier.as_str()).cloned();
        (executor, run.payload.clone(), record.attempts)
    });
    let Some((Some(executor), payload, attempt)) = started else {
        return;
    };
    let ctx = TaskContext::for_attempt(id.clone(), attempt);
    let clock = Instant::now();
    // Spawned so that a panic in the task is caught here as a `JoinError`.
    let outcome =
        tokio::spawn(async move { executor.execute(payload.as_deref(), ctx).await }).await;
    let elapsed = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let retry = shared.update(id, |record| {
        let attempts = record.attempts;
        let max_attempts = record.max_attempts;
        let run = &mut record.snapshot;
        run.duration_ms = run.duration_ms.saturating_add(elapsed);
        let (status, retry) = match outcome {
            Ok(Ok(output)) => {
                run.output = Some(output);
                run.error = None;
                (RunStatus::Completed, false)
            }
            Ok(Err(error)) => {
                run.error = Some(error);
                if attempts < max_attempts {
                    (RunStatus::Reattempting, true)
                } else {
                    (RunStatus::Failed, false)
                }
            }
            Err(join) => {
                run.error = Some(SerializedError {
                    message: if join.is_panic() {
                        panic_message(join.into_panic())
                    } else {
                        "the attempt was aborted: the runtime is shutting down".into()
                    },
                    name: Some("Panic".into()),
                    stack_trace: None,
                });
                (RunStatus::Crashed, false)
            }
        };
        run.status = status;
        if status.is_final() {
            run.finished_at = Some(Timestamp::now());
        }
        retry.then_some(attempts)
    });
    if let Some(Some(attempts)) = retry {
        let delay = retry_delay(shared.config.retry_delay, attempts);
        let (queue, id) = (shared.queue.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = queue.send(id);
        });
    }
}

/// `base`, doubled for every attempt after the first, at most [`MAX_RETRY_DELAY`].
fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into());
    format!("the task panicked: {message}")
}
