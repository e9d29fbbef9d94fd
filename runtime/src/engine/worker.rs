//! The worker pool and the timers: take queued runs, run one attempt each, and move each run
//! to its next status: `EXECUTING`, then `COMPLETED`, `REATTEMPTING` (queued again after a
//! backoff), `FAILED`, `TIMED_OUT`, or `CRASHED` when the task panics; `DELAYED` runs are
//! queued when their delay ends, and runs not started within their TTL become `EXPIRED`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use serde_json::value::RawValue;

use super::Shared;
use super::store::{Record, RunStore};

use crate::feed::Cursor;
use crate::hub;
use crate::metadata::{self, MetadataError, MetadataOp};
use crate::run::{JsonObject, RunId, SerializedError};
use crate::status::RunStatus;
use crate::streams::StreamError;
use crate::task::{BoxFuture, CancelSignal, RunAccess, TaskContext};
use crate::timestamp::Timestamp;

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Runs queued runs, at most `concurrency` at once, until every engine handle is dropped.
pub(super) async fn dispatch(shared: Weak<Shared>, mut queue: mpsc::UnboundedReceiver<RunId>) {
    let Some(slots) = shared.upgrade().map(|s| Arc::clone(&s.slots)) else {
        return;
    };
    while let Some(id) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.is_closed() {
            return;
        }
        tokio::spawn(async move {
            attempt(&shared, &id).await;
            drop(slot);
        });
    }
}

/// Forgets finished runs once their retention ends, until the engine is dropped.
pub(super) async fn forget_finished(shared: Weak<Shared>) {
    loop {
        let Some(engine) = shared.upgrade() else {
            return;
        };
        let retention = engine.config.retention;
        let next = engine.store.forget_finished().await;
        drop(engine);
        // A run that finishes from now on is due a retention from now or later. At least a
        // millisecond: a zero retention must not make this loop spin.
        let wait = next.unwrap_or(retention).max(Duration::from_millis(1));
        tokio::time::sleep(wait).await;
    }
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy)]
pub(super) enum Timer {
    /// A delayed run's delay ended: queue it.
    Delay,
    /// A run's time to live ended: expire it if it has not started.
    Ttl,
    /// A failed attempt's backoff ended: queue the run again.
    Retry,
}

/// Fires `timer` for run `id` after `wait`, unless the engine is gone by then.
pub(super) fn after(shared: &Arc<Shared>, wait: Duration, id: RunId, timer: Timer) {
    let runtime = shared.runtime.clone();
    let shared = Arc::downgrade(shared);
    runtime.spawn(async move {
        tokio::time::sleep(wait).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match timer {
            Timer::Delay if shared.is_closed() => {}
            Timer::Delay => {
                let queued = shared.store.update(&id, |record| {
                    let run = record.run();
                    run.status = RunStatus::Queued;
                    run.queued_at = Some(Timestamp::now());
                });
                let queued = queued.await;
                if queued.is_some() {
                    let _ = shared.queue.send(id);
                }
            }
            // The dispatcher starts no run once `shutdown` began.
            Timer::Retry => {
                let _ = shared.queue.send(id);
            }
            Timer::Ttl => {
                // Only a run still waiting to start expires.
                let expire = shared.store.update_if(&id, RunStatus::is_queued, |record| {
                    let now = Timestamp::now();
                    let run = record.run();
                    run.status = RunStatus::Expired;
                    run.expired_at = Some(now);
                    run.finished_at = Some(now);
                });
                expire.await;
            }
        }
    });
}

/// One attempt of a run.
pub(super) async fn attempt(shared: &Arc<Shared>, id: &RunId) {
    let running = Running::register(shared, id);
    run_attempt(shared, id, &running.signal).await;
}

/// An attempt's cancellation signal in the engine's `running` map. It is registered before
/// the attempt starts its run, so a `cancel` that finds the run executing finds the signal
/// too; it is removed when the attempt ends, however it ends, unless the run's next attempt
/// replaced it already.
pub(super) struct Running<'a> {
    shared: &'a Shared,
    id: &'a RunId,
    pub(super) signal: CancelSignal,
}

impl<'a> Running<'a> {
    pub(super) fn register(shared: &'a Shared, id: &'a RunId) -> Self {
        let signal = CancelSignal::default();
        hub::lock(&shared.running).insert(id.clone(), signal.clone());
        Self { shared, id, signal }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = hub::lock(&self.shared.running);
        let ours = running
            .get(self.id)
            .is_some_and(|s| s.same_as(&self.signal));
        if ours {
            running.remove(self.id);
        }
    }
}

async fn run_attempt(shared: &Arc<Shared>, id: &RunId, cancel: &CancelSignal) {
    // Checked inside the change: after `shutdown` began, no attempt starts.
    let waiting = |status| {
        let closed = shared.is_closed();
        !closed && matches!(status, RunStatus::Queued | RunStatus::Reattempting)
    };
    let started = shared.store.update_if(id, waiting, |record| {
        record.attempts += 1;
        let attempt = record.attempts;
        let max_duration = record.max_duration;
        let run = record.run();
        run.status = RunStatus::Executing;
        run.started_at.get_or_insert_with(Timestamp::now);
        let executor = shared.executors.get(run.task_identifier.as_str()).cloned();
        let engine_run = Arc::new(EngineRun {
            shared: Arc::downgrade(shared),
            id: id.clone(),
        });
        let tags = run.tags.clone();
        let ctx = TaskContext::for_attempt(id.clone(), attempt, tags, cancel.clone(), engine_run);
        (executor, run.payload.clone(), ctx, max_duration)
    });
    let started = started.await;
    let Some((Some(executor), payload, ctx, max_duration)) = started else {
        return;
    };
    let clock = Instant::now();
    let outcome = CatchPanic::new(async move {
        let run = executor.execute(payload.as_deref(), ctx);
        let limited = async {
            match max_duration {
                Some(max) => tokio::time::timeout(max, run).await.map_err(|_| max),
                None => Ok(run.await),
            }
        };
        tokio::select! {
            outcome = limited => Some(outcome),
            () = cancel.canceled() => None,
        }
    })
    .await;
    let elapsed = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let cost_per_ms = shared.config.cost_per_ms_cents;
    let count = move |record: &mut Record| count_time(record, elapsed, cost_per_ms);
    let outcome = match outcome {
        // Canceled: `cancel` already made the run final; only the time it ran is counted.
        Ok(None) => {
            shared.store.update_if(id, |_| true, count).await;
            return;
        }
        Ok(Some(outcome)) => Ok(outcome),
        Err(panic) => Err(panic),
    };
    let retry = shared.store.update(id, |record| {
        let attempts = record.attempts;
        let max_attempts = record.max_attempts;
        count(record);
        let run = record.run();
        let (status, retry) = match outcome {
            Ok(Ok(Ok(output))) => {
                run.output = Some(output.into());
                run.error = None;
                (RunStatus::Completed, false)
            }
            Ok(Ok(Err(error))) => {
                run.error = Some(error);
                if attempts < max_attempts {
                    (RunStatus::Reattempting, true)
                } else {
                    (RunStatus::Failed, false)
                }
            }
            Ok(Err(max)) => {
                run.error = Some(SerializedError {
                    message: format!("the attempt ran longer than its maximum duration of {max:?}"),
                    name: Some("MaxDurationExceeded".into()),
                    stack_trace: None,
                });
                (RunStatus::TimedOut, false)
            }
            Err(panic) => {
                run.error = Some(SerializedError {
                    message: panic_message(panic),
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
    match retry.await {
        Some(Some(attempts)) => {
            let delay = retry_delay(shared.config.retry_delay, attempts);
            after(shared, delay, id.clone(), Timer::Retry);
        }
        Some(None) => {}
        // The run became final meanwhile (canceled): still count the time the attempt ran.
        None => {
            shared.store.update_if(id, |_| true, count).await;
        }
    }
}

/// What a running task reaches of its run: the engine's store.
struct EngineRun {
    shared: Weak<Shared>,
    id: RunId,
}

impl RunAccess for EngineRun {
    fn update_metadata(&self, ops: Vec<MetadataOp>) -> BoxFuture<'_, Result<(), MetadataError>> {
        Box::pin(async move {
            match self.shared.upgrade() {
                Some(shared) => shared.update_metadata(&self.id, ops).await,
                None => Err(MetadataError::UnknownRun(self.id.to_string())),
            }
        })
    }

    fn metadata(&self) -> BoxFuture<'_, Option<JsonObject>> {
        Box::pin(async move {
            let shared = self.shared.upgrade()?;
            let run = shared.store.snapshot(&self.id).await?;
            metadata::from_raw(run.metadata.as_deref())
        })
    }

    fn append_chunk(
        &self,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
    ) -> BoxFuture<'_, Result<Cursor, StreamError>> {
        Box::pin(async move {
            match self.shared.upgrade() {
                Some(shared) => shared.append_chunk(&self.id, attempt, stream, data).await,
                None => Err(StreamError::NotRunning(self.id.clone())),
            }
        })
    }
}

/// Adds an attempt's execution time to the run's duration, and prices it.
fn count_time(record: &mut Record, elapsed_ms: u64, cost_per_ms_cents: f64) {
    let run = record.run();
    run.duration_ms = run.duration_ms.saturating_add(elapsed_ms);
    #[allow(clippy::cast_precision_loss)] // Milliseconds far below 2^52.
    let cost = run.duration_ms as f64 * cost_per_ms_cents;
    run.cost_in_cents = cost;
}

/// `base`, doubled for every attempt after the first, at most [`MAX_RETRY_DELAY`].
fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

pin_project_lite::pin_project! {
    /// A future that returns a panic of the future it wraps as an `Err`: a panicking task
    /// crashes its run, not the worker, and no task is spawned to catch it.
    struct CatchPanic<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchPanic<F> {
    fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        // Unwind safe: after a panic the future is dropped, never polled again.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into());
    format!("the task panicked: {message}")
}
