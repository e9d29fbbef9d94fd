//! The worker pool: take queued runs, run one attempt each, and move each run to its next
//! status in one change: `EXECUTING`, then `COMPLETED`, `REATTEMPTING` (queued again after a
//! backoff, see `timers`) when an attempt fails or panics and attempts remain, else `FAILED`
//! (an error), `CRASHED` (a panic) or `TIMED_OUT`.
//!
//! A change the store fails to make in the background (an attempt's start or result, a
//! timer's change) is made again after [`STORE_RETRY`] until it is made (a result: until it is
//! made, the run is canceled or the last engine handle is dropped): a store that fails for a
//! while loses no run and no result.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::Shared;
use super::context::{Attempt, BoxFuture, CancelSignal, MetadataChange, RunAccess, StreamError};
use super::executor::Failure;
use super::panic::{CatchPanic, Panic};
use super::store::{Record, RunStore};
use super::timers::Timer;
use crate::model::{
    Cursor, MetadataError, RunId, RunStatus, SerializedError, StoreError, Timestamp,
};
use crate::support::lock;

/// The longest wait between two attempts.
pub(super) const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How long the engine waits before it makes again a change that its store failed to make in
/// the background (an attempt's start or result, a timer's change, forgetting finished runs).
pub(super) const STORE_RETRY: Duration = Duration::from_secs(1);

/// The runs waiting for an attempt, in the order they were queued. A worker is a task that
/// holds one of the engine's `slots` (one per attempt that may run at once) and runs one
/// attempt after another while runs wait: under load, attempts cost no task of their own, and
/// an idle engine has no worker.
#[derive(Default)]
pub(super) struct Queue {
    ids: VecDeque<RunId>,
}

impl Queue {
    /// How many runs wait.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

impl Shared {
    /// Queues run `id` for an attempt, and starts a worker if a slot is free. Once the engine
    /// stops, no run is queued: runs still waiting are never run.
    pub(super) fn enqueue(self: &Arc<Self>, id: RunId) {
        if self.store.is_shared() {
            // Any process may attempt it: it is claimed from the store (see `claims`).
            self.store.nudge();
            return;
        }
        self.enqueue_here(id);
    }

    /// Queues run `id` for an attempt in this process, and starts a worker if a slot is free.
    pub(super) fn enqueue_here(self: &Arc<Self>, id: RunId) {
        let mut queue = lock(&self.queue);
        if self.is_closed() {
            return;
        }
        queue.ids.push_back(id);
        // Under the queue's lock, in which workers give their slot back.
        let slot = Arc::clone(&self.slots).try_acquire_owned().ok();
        drop(queue);
        if let Some(slot) = slot {
            self.runtime.spawn(work(Arc::downgrade(self), slot));
        }
    }
}

/// A worker's slot: given back when no run waits (or the engine stopped), in the queue's lock,
/// so that a run queued meanwhile starts another worker; or when the worker ends some other
/// way (a panic outside the task's own code), and then a worker takes it over if runs wait.
struct Place {
    shared: Weak<Shared>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Place {
    /// The next queued run, or `None` when none waits: then the slot is given back.
    fn next(&mut self, shared: &Shared) -> Option<RunId> {
        let mut queue = lock(&shared.queue);
        if shared.is_closed() {
            queue.ids.clear();
        }
        let next = queue.ids.pop_front();
        if next.is_none() {
            self.slot = None;
            // A slot is free: runs queued in the shared store may be claimed for it.
            shared.store.nudge();
        }
        next
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let queue = lock(&shared.queue);
        if queue.ids.is_empty() {
            drop((slot, queue));
        } else {
            drop(queue);
            shared.runtime.spawn(work(Arc::downgrade(&shared), slot));
        }
    }
}

/// A worker: attempts queued runs, one at a time, until none waits or the engine stops.
async fn work(weak: Weak<Shared>, slot: OwnedSemaphorePermit) {
    let mut place = Place {
        shared: weak.clone(),
        slot: Some(slot),
    };
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let Some(id) = place.next(&shared) else {
            return;
        };
        attempt(&shared, &id).await;
        drop(shared);
        // Attempts that finish without waiting must not keep this worker's thread from other
        // tasks.
        tokio::task::consume_budget().await;
    }
}

/// One attempt of a run.
pub(super) async fn attempt(shared: &Arc<Shared>, id: &RunId) {
    let running = Running::register(shared, id);
    run_attempt(shared, id, &running.signal).await;
}

/// An attempt's cancellation signal in the engine's `running` map. It is registered before
/// the attempt starts its run, so a `cancel` that finds the run executing finds the signal
/// too; it is removed when the attempt ends, however it ends. A run may have more than one
/// attempt registered at once (the next attempt of a retry, before the last one let go; or,
/// over a shared store, a run claimed twice, whose second attempt finds it executing and does
/// not start): each keeps its own signal, and a cancellation reaches them all.
pub(super) struct Running<'a> {
    shared: &'a Shared,
    id: &'a RunId,
    pub(super) signal: CancelSignal,
}

impl<'a> Running<'a> {
    pub(super) fn register(shared: &'a Shared, id: &'a RunId) -> Self {
        let signal = CancelSignal::default();
        let mut running = lock(&shared.running);
        match running.get_mut(id) {
            Some(signals) => signals.more.push(signal.clone()),
            None => {
                let signals = Signals {
                    first: signal.clone(),
                    more: Vec::new(),
                };
                running.insert(id.clone(), signals);
            }
        }
        Self { shared, id, signal }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = lock(&self.shared.running);
        let Some(signals) = running.get_mut(self.id) else {
            return;
        };
        if signals.first.same_as(&self.signal) {
            match signals.more.pop() {
                Some(next) => signals.first = next,
                None => {
                    running.remove(self.id);
                }
            }
        } else {
            signals.more.retain(|s| !s.same_as(&self.signal));
        }
    }
}

/// The signals of a run's attempts registered in the engine's `running` map: one, but for
/// the moments when two are (see [`Running`]); only then is `more` allocated.
pub(super) struct Signals {
    first: CancelSignal,
    more: Vec<CancelSignal>,
}

impl Signals {
    /// Tells each attempt to stop.
    pub(super) fn cancel(&self) {
        self.first.cancel();
        for signal in &self.more {
            signal.cancel();
        }
    }

    /// Whether `signal` is one of them.
    #[cfg(test)]
    pub(super) fn holds(&self, signal: &CancelSignal) -> bool {
        self.first.same_as(signal) || self.more.iter().any(|s| s.same_as(signal))
    }
}

/// Why an attempt did not start.
enum NotStarted {
    /// The run's task is not registered with this engine.
    Unregistered(String),
    Store(StoreError),
}

impl From<StoreError> for NotStarted {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// How an attempt ended.
enum Ended {
    /// The task returned.
    Returned(super::executor::Outcome),
    /// It ran past the run's maximum duration.
    TimedOut(Duration),
    /// It panicked.
    Panicked(Panic),
}

async fn run_attempt(shared: &Arc<Shared>, id: &RunId, cancel: &CancelSignal) {
    // Checked inside the change: after `shutdown` began, no attempt starts.
    let waiting = |status| {
        let closed = shared.is_closed();
        !closed && matches!(status, RunStatus::Queued | RunStatus::Reattempting)
    };
    let started = shared.store.change_if(id, waiting, |record| {
        // The registry's key: a `&'static str`, for the attempt's span. A run of a task this
        // engine does not run is left as it is.
        let task = &*record.snapshot.task_identifier;
        let registered = shared.executors.get_key_value(task);
        let Some((task, executor)) = registered.filter(|(_, e)| e.runs_here()) else {
            return Err(NotStarted::Unregistered(task.to_owned()));
        };
        let now = Timestamp::now();
        record.attempts += 1;
        record.attempt_started = Some(now);
        let (attempt, max_duration) = (record.attempts, record.max_duration);
        let run = record.run();
        run.status = RunStatus::Executing;
        run.started_at.get_or_insert(now);
        let context = Attempt {
            run_id: id.clone(),
            attempt,
            tags: Arc::clone(&run.tags),
            cancel: cancel.clone(),
            run: Arc::new(EngineRun {
                shared: Arc::downgrade(shared),
                id: id.clone(),
            }),
        };
        let executor = Arc::clone(executor);
        Ok((*task, executor, run.payload.clone(), context, max_duration))
    });
    let (task, executor, payload, context, max_duration) = match started.await {
        Ok(Some(started)) => started,
        Ok(None) => return,
        Err(NotStarted::Unregistered(task)) => {
            tracing::error!(run = %id, task, "no task with this id is registered; the run stays queued");
            return;
        }
        Err(NotStarted::Store(error)) => {
            tracing::error!(
                run = %id, %error, retry_in = ?STORE_RETRY,
                "an attempt could not start; it will start again"
            );
            shared.start_timer(STORE_RETRY, id.clone(), Timer::Retry);
            return;
        }
    };
    let context_attempt = context.attempt;
    let span = tracing::info_span!("attempt", run = %id, task, attempt = context_attempt);
    let ended = async {
        tracing::debug!("attempt started");
        let run = CatchPanic::new(executor.execute(payload, context));
        let limited = async {
            match max_duration {
                Some(max) => match tokio::time::timeout(max, run).await {
                    Ok(Ok(outcome)) => Ended::Returned(outcome),
                    Ok(Err(panic)) => Ended::Panicked(panic),
                    Err(_) => Ended::TimedOut(max),
                },
                None => match run.await {
                    Ok(outcome) => Ended::Returned(outcome),
                    Err(panic) => Ended::Panicked(panic),
                },
            }
        };
        tokio::select! {
            ended = limited => Some(ended),
            // Canceled: `cancel` made the run final, with the time this attempt ran. Or, over a
            // shared store, this process lost its leases: the run is attempted again once its
            // lease runs out.
            () = cancel.canceled() => None,
        }
    }
    .instrument(span.clone())
    .await;
    let Some(ended) = ended else {
        return;
    };
    // Written until the store takes it: a store that fails for a while loses no result.
    let ending = Ending::from(ended);
    let ended_at = Timestamp::now();
    let cost_per_ms = shared.config.cost_per_ms_cents;
    let attempt = context_attempt;
    let base_delay = shared.config.retry_delay;
    let finished = loop {
        // Only into the attempt that ran: another process may have taken the run over if
        // this one was taken for gone (a store shared by processes).
        let ours = |status| status == RunStatus::Executing;
        let finish = shared.store.update_if(id, ours, |record| {
            if record.attempts != attempt {
                return None;
            }
            count_time(record, ended_at, cost_per_ms);
            let (status, retry) = ending.write(record, ended_at);
            record.retry_at = retry.and_then(|n| ended_at.checked_add(retry_delay(base_delay, n)));
            Some((status, retry))
        });
        match finish.instrument(span.clone()).await {
            Err(error) => {
                tracing::error!(
                    parent: &span, %error, retry_in = ?STORE_RETRY,
                    "the attempt's result could not be stored; it will be stored again"
                );
                tokio::select! {
                    () = tokio::time::sleep(STORE_RETRY) => {}
                    // The run was canceled (so it is final), or the last engine handle dropped.
                    () = cancel.canceled() => break Err(error),
                }
            }
            done => break done,
        }
    };
    let _entered = span.enter();
    match finished.map(Option::flatten) {
        Ok(Some((_, Some(attempts)))) => {
            let delay = retry_delay(shared.config.retry_delay, attempts);
            tracing::warn!(retry_in = ?delay, "attempt failed; the run will be retried");
            shared.start_timer(delay, id.clone(), Timer::Retry);
        }
        Ok(Some((status, None))) => tracing::info!(%status, "run finished"),
        // Canceled meanwhile (the cancel counted this attempt's time), or taken over by
        // another process that took this one for gone.
        Ok(None) => {}
        Err(error) => tracing::warn!(
            %error,
            "the attempt's result was not stored before the run was canceled or the engine dropped"
        ),
    }
}

/// What an attempt's end writes into its run.
struct Ending {
    /// The output, if the task returned one.
    output: Option<Arc<RawValue>>,
    error: Option<SerializedError>,
    /// Whether another attempt may follow, if the run has attempts left.
    retryable: bool,
    /// The run's status when no attempt follows.
    last: RunStatus,
}

impl From<Ended> for Ending {
    fn from(ended: Ended) -> Self {
        let failed = |error, retryable, last| Ending {
            output: None,
            error: Some(error),
            retryable,
            last,
        };
        match ended {
            Ended::Returned(Ok(output)) => Ending {
                output: crate::model::run::unless_null(output),
                error: None,
                retryable: false,
                last: RunStatus::Completed,
            },
            Ended::Returned(Err(Failure { error, retry })) => {
                failed(error, retry, RunStatus::Failed)
            }
            Ended::TimedOut(max) => failed(
                SerializedError {
                    message: format!("the attempt ran longer than its maximum duration of {max:?}"),
                    name: Some("MaxDurationExceeded".into()),
                    stack_trace: None,
                },
                false,
                RunStatus::TimedOut,
            ),
            Ended::Panicked(panic) => failed(
                SerializedError {
                    message: format!("the task panicked: {}", panic.message),
                    name: Some("Panic".into()),
                    stack_trace: panic.location,
                },
                true,
                RunStatus::Crashed,
            ),
        }
    }
}

impl Ending {
    /// Writes the attempt's end, at `now`, into its run; returns the run's new status, and
    /// the attempts made if another follows.
    fn write(&self, record: &mut Record, now: Timestamp) -> (RunStatus, Option<u32>) {
        let retry = self.retryable && record.attempts < record.max_attempts;
        let attempts = record.attempts;
        let run = record.run();
        if let Some(output) = &self.output {
            run.output = Some(Arc::clone(output));
        }
        run.error.clone_from(&self.error);
        run.status = if retry {
            RunStatus::Reattempting
        } else {
            self.last
        };
        if run.status.is_final() {
            run.finished_at = Some(now);
        }
        (run.status, retry.then_some(attempts))
    }
}

/// What a running task reaches of its run: the engine's store.
struct EngineRun {
    shared: Weak<Shared>,
    id: RunId,
}

impl RunAccess for EngineRun {
    fn change_metadata<'a>(
        &'a self,
        change: MetadataChange<'a>,
    ) -> BoxFuture<'a, Result<(), MetadataError>> {
        Box::pin(async move {
            match self.shared.upgrade() {
                Some(shared) => shared.change_metadata(&self.id, change).await,
                None => Err(MetadataError::UnknownRun(self.id.clone())),
            }
        })
    }

    fn metadata(&self) -> BoxFuture<'_, Result<Option<Arc<RawValue>>, MetadataError>> {
        Box::pin(async move {
            let Some(shared) = self.shared.upgrade() else {
                return Err(MetadataError::UnknownRun(self.id.clone()));
            };
            match shared.store.snapshot(&self.id).await? {
                Some(run) => Ok(run.metadata.clone()),
                None => Err(MetadataError::UnknownRun(self.id.clone())),
            }
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

/// Ends the executing attempt's clock at `now`: adds its time to the run's duration, and
/// prices it.
pub(super) fn count_time(record: &mut Record, now: Timestamp, cost_per_ms_cents: f64) {
    let Some(started) = record.attempt_started.take() else {
        return;
    };
    let elapsed = now.saturating_duration_since(started);
    let elapsed = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let run = record.run();
    run.duration_ms = run.duration_ms.saturating_add(elapsed);
    #[allow(clippy::cast_precision_loss)] // Milliseconds far below 2^52.
    let cost = run.duration_ms as f64 * cost_per_ms_cents;
    run.cost_in_cents = cost;
}

/// `base`, doubled for every attempt after the first, at most [`MAX_RETRY_DELAY`].
pub(super) fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}
