//! The engine over a store whose every operation suspends before and after it takes effect,
//! as a store doing I/O does: the engine's logic must not rely on a store answering at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail the test on bad fixtures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::value::RawValue;

use super::context::CancelSignal;
use super::memory::MemoryStore;
use super::store::{Created, Record, RunStore, Store};
use super::worker::Running;
use super::{
    BatchItem, CancelError, Engine, StreamError, TagError, TaskContext, TriggerError,
    TriggerOptions,
};
use crate::feed::{FeedError, RunFeed, RunQuery, Scope};
use crate::hub::{HubConfig, RunHub};
use crate::model::{
    AnyRun, BatchId, Cursor, MetadataError, MetadataOp, Realtime, RunId, RunStatus, StoreError,
    Timestamp,
};
use crate::support::lock;
use crate::task;
use crate::typed::RunStreamExt;

/// A [`MemoryStore`] whose operations each suspend before and after they take effect, and
/// count it; and fail, taking no effect, while `failing` is set.
pub(crate) struct Suspending {
    inner: MemoryStore,
    suspended: AtomicUsize,
    failing: AtomicBool,
}

impl Suspending {
    /// `operation`, between two suspensions; or a failure, if `failing` is set.
    async fn suspend<T, E: From<StoreError>>(
        &self,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.suspended.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new("the test store is failing").into());
        }
        let output = operation.await;
        tokio::task::yield_now().await;
        output
    }
}

impl RunStore for Suspending {
    fn hub(&self) -> &RunHub {
        self.inner.hub()
    }

    async fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, StoreError> {
        let create = self.inner.create(runs, batch, idempotency_ttl);
        self.suspend(create).await
    }

    async fn change_if<R: Send, E: From<StoreError> + Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> Result<Option<R>, E> {
        self.suspend(self.inner.change_if(id, when, change)).await
    }

    async fn snapshot(&self, id: &RunId) -> Result<Option<Arc<AnyRun>>, StoreError> {
        self.suspend(self.inner.snapshot(id)).await
    }

    async fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        let append = self.inner.append_chunk(id, attempt, stream, data, limit);
        self.suspend(append).await
    }

    async fn forget_finished(&self) -> Result<Option<Duration>, StoreError> {
        self.suspend(self.inner.forget_finished()).await
    }
}

/// Writes `n` numbers to its stream and its progress to metadata, reading it back.
#[task(id = "steps", streams(numbers = u32))]
async fn steps(n: u32, ctx: TaskContext) -> Result<u32, String> {
    let numbers = ctx.stream(Steps::NUMBERS);
    for i in 1..=n {
        numbers.append(&i).await.map_err(|e| e.to_string())?;
        let step = MetadataOp::Set("step".into(), i.into());
        ctx.update_metadata([step])
            .await
            .map_err(|e| e.to_string())?;
    }
    let metadata = ctx.metadata().await.map_err(|e| e.to_string())?;
    Ok(metadata
        .unwrap_or_default()
        .get("step")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as u32)
}

/// Fails its first attempt.
#[task(id = "second-time")]
async fn second_time(_: (), ctx: TaskContext) -> Result<u32, String> {
    match ctx.attempt() {
        1 => Err("first attempt".into()),
        attempt => Ok(attempt),
    }
}

/// Waits until canceled.
#[task(id = "forever")]
async fn forever(_: (), ctx: TaskContext) -> Result<(), String> {
    ctx.canceled().await;
    Ok(())
}

/// Fails its first attempt, then waits until canceled.
#[task(id = "retry-then-wait")]
async fn retry_then_wait(_: (), ctx: TaskContext) -> Result<(), String> {
    if ctx.attempt() == 1 {
        return Err("first attempt".into());
    }
    ctx.canceled().await;
    Ok(())
}

/// Lets `writes-when-told` write.
static WRITE: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Lets `writes-when-told` return.
static RETURN: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// What `writes-when-told`'s writes returned.
static WRITTEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Writes metadata and a chunk when told, notes how each write ended, and returns when told.
#[task(id = "writes-when-told", streams(notes = String))]
async fn writes_when_told(_: (), ctx: TaskContext) -> Result<(), String> {
    WRITE.notified().await;
    let note = MetadataOp::Set("note".into(), "hi".into());
    let metadata = ctx.update_metadata([note]).await;
    let chunk = ctx.stream(WritesWhenTold::NOTES).append(&"hi".into()).await;
    lock(&WRITTEN).extend([
        metadata.map_or_else(|e| e.to_string(), |()| "written".into()),
        chunk.map_or_else(|e| e.to_string(), |_| "written".into()),
    ]);
    RETURN.notified().await;
    Ok(())
}

/// Lets `returns-when-told` attempts return, one per permit.
static RELEASE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// Returns its payload when the test lets it.
#[task(id = "returns-when-told")]
async fn returns_when_told(n: u32) -> Result<u32, String> {
    RELEASE.acquire().await.map_err(|e| e.to_string())?.forget();
    Ok(n)
}

/// An engine over a [`Suspending`] store, running at most `concurrency` attempts at once.
fn engine(concurrency: usize) -> Engine {
    Engine::builder()
        .task::<Steps>()
        .task::<SecondTime>()
        .task::<Forever>()
        .task::<RetryThenWait>()
        .task::<WritesWhenTold>()
        .task::<ReturnsWhenTold>()
        .concurrency(concurrency)
        .retry_delay(Duration::ZERO)
        .build_with(|hub, retention| {
            Store::Suspending(Suspending {
                inner: MemoryStore::new(crate::hub::RunHub::new(hub), retention),
                suspended: AtomicUsize::new(0),
                failing: AtomicBool::new(false),
            })
        })
        .unwrap()
}

/// The tests' engine's store.
fn store(engine: &Engine) -> &Suspending {
    let Store::Suspending(store) = &engine.shared.store else {
        unreachable!("the tests' engine uses the suspending store")
    };
    store
}

/// How many store operations suspended so far.
fn suspended(engine: &Engine) -> usize {
    store(engine).suspended.load(Ordering::Relaxed)
}

/// The final snapshot of a run.
async fn finished(engine: &Engine, id: &RunId) -> AnyRun {
    let updates = engine
        .subscribe(Scope::Run(id.clone()), Cursor::START)
        .await;
    let last = updates.unwrap().until_finished().try_collect::<Vec<_>>();
    let last = tokio::time::timeout(Duration::from_secs(10), last).await;
    last.expect("the run finishes").unwrap().pop().unwrap().run
}

/// Waits until run `id` is executing its first attempt, or a retry if `retry`.
async fn executing(engine: &Engine, id: &RunId, retry: bool) {
    let mut updates = engine
        .subscribe(Scope::Run(id.clone()), Cursor::START)
        .await
        .unwrap();
    let started = async {
        loop {
            let run = updates.next().await.unwrap().unwrap().run;
            // A retry starts with the error of the attempt before it.
            if run.status == RunStatus::Executing && run.error.is_some() == retry {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("the attempt starts");
}

/// Waits until no attempt is registered as running.
async fn no_attempt_running(engine: &Engine) {
    let idle = async {
        while !lock(&engine.shared.running).is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .expect("every attempt ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_streams_keys_retries_tags_and_expiry_work_over_a_store_that_suspends() {
    let engine = engine(4);

    // A run writing chunks and metadata, followed from its handle's cursor with streams.
    let run = engine.trigger::<Steps>(5).await.unwrap();
    let items = engine
        .subscribe(Scope::Run(run.id().clone()), run.cursor())
        .await;
    let items = items.unwrap().with_streams().until_finished().try_collect();
    let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), items)
        .await
        .expect("the run finishes")
        .unwrap();
    // Every change, in order: queued, executing, the stream's first chunk (with the run's new
    // `realtimeStreams`), each chunk and metadata change, then completed.
    let statuses: Vec<_> = (items.iter())
        .filter_map(|item| match item {
            Realtime::Run(update) => Some(update.run.status),
            Realtime::Chunk(_) => None,
        })
        .collect();
    let mut expected = vec![
        RunStatus::Queued,
        RunStatus::Executing,
        RunStatus::Executing,
    ];
    expected.extend([RunStatus::Executing; 5]);
    expected.push(RunStatus::Completed);
    assert_eq!(statuses, expected, "{items:?}");
    let chunks: Vec<_> = (items.iter())
        .filter_map(|item| match item {
            Realtime::Chunk(chunk) => Some(chunk.data.get()),
            Realtime::Run(_) => None,
        })
        .collect();
    assert_eq!(chunks, ["1", "2", "3", "4", "5"]);
    let last = finished(&engine, run.id()).await;
    assert_eq!(last.status, RunStatus::Completed);
    assert_eq!(last.output.as_deref().map(RawValue::get), Some("5"));

    // Idempotency keys, alone and within a batch.
    let keyed = || {
        TriggerOptions::default()
            .idempotency_key("k")
            .delay(Duration::from_secs(60))
    };
    let a = engine.trigger_with::<Steps>(1, keyed()).await.unwrap();
    let b = engine.trigger_with::<Steps>(2, keyed()).await.unwrap();
    assert_eq!((a.id(), a.cursor()), (b.id(), b.cursor()));
    let other = || TriggerOptions::default().idempotency_key("other");
    let batch = engine
        .batch_trigger_mixed([
            BatchItem::new::<Steps>(1, other()),
            BatchItem::new::<Steps>(2, other()),
            BatchItem::new::<SecondTime>((), TriggerOptions::default()),
        ])
        .await
        .unwrap();
    assert_eq!(batch.runs[0].id(), batch.runs[1].id());
    assert_ne!(batch.runs[0].id(), batch.runs[2].id());

    // A retry, through the engine's timer.
    let retried = finished(&engine, batch.runs[2].id()).await;
    assert_eq!(retried.status, RunStatus::Completed);
    assert_eq!(retried.output.as_deref().map(RawValue::get), Some("2"));

    // Tags and metadata changed from outside on a running run.
    let waiting = engine.trigger::<Forever>(()).await.unwrap();
    executing(&engine, waiting.id(), false).await;
    engine.add_tags(waiting.id(), ["a", "b"]).await.unwrap();
    engine.remove_tags(waiting.id(), ["a"]).await.unwrap();
    let note = MetadataOp::Set("note".into(), "hi".into());
    engine.update_metadata(waiting.id(), [note]).await.unwrap();
    engine.cancel(waiting.id()).await.unwrap();
    let canceled = finished(&engine, waiting.id()).await;
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert_eq!(*canceled.tags, ["b"]);
    let metadata = canceled.metadata.as_deref().map(RawValue::get);
    assert_eq!(metadata, Some(r#"{"note":"hi"}"#));

    // A run whose time to live ends before its delay.
    let late = TriggerOptions::default()
        .delay(Duration::from_secs(60))
        .ttl(Duration::from_millis(5));
    let late = engine.trigger_with::<Steps>(1, late).await.unwrap();
    let expired = finished(&engine, late.id()).await;
    assert_eq!(expired.status, RunStatus::Expired);

    no_attempt_running(&engine).await;
    assert_eq!(engine.shutdown(Duration::from_secs(5)).await, 0);
    let refused = engine.trigger::<Steps>(1).await.unwrap_err();
    assert!(matches!(refused, TriggerError::ShuttingDown), "{refused}");
    let suspended = suspended(&engine);
    assert!(suspended > 30, "{suspended} operations suspended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_retried_attempt_over_a_store_that_suspends() {
    // One attempt at a time: an attempt that never stopped would keep the next from starting.
    let engine = engine(1);
    let retried = engine.trigger::<RetryThenWait>(()).await.unwrap();
    executing(&engine, retried.id(), true).await;
    engine.cancel(retried.id()).await.unwrap();
    let canceled = finished(&engine, retried.id()).await;
    assert_eq!(canceled.status, RunStatus::Canceled);
    no_attempt_running(&engine).await;
    let next = engine.trigger::<SecondTime>(()).await.unwrap();
    assert_eq!(
        finished(&engine, next.id()).await.status,
        RunStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_executing_runs_only_over_a_store_that_suspends() {
    let engine = engine(1);
    let running = engine.trigger::<Forever>(()).await.unwrap();
    executing(&engine, running.id(), false).await;
    let queued = engine.trigger::<Steps>(1).await.unwrap();
    // As an attempt that registered its signal, then had its start refused by the shutdown.
    let _refused = Running::register(&engine.shared, queued.id());
    let watching = engine
        .subscribe(Scope::Run(running.id().clone()), Cursor::START)
        .await;
    assert_eq!(engine.shutdown(Duration::from_millis(50)).await, 1);
    // Its subscription saw the cancel, then ended: the engine stopped.
    let items: Vec<_> = watching.unwrap().collect().await;
    let statuses: Vec<_> = items
        .iter()
        .map(|i| i.as_ref().map(|u| u.run.status).ok())
        .collect();
    assert_eq!(
        statuses,
        [Some(RunStatus::Executing), Some(RunStatus::Canceled), None]
    );
    assert!(matches!(items.last(), Some(Err(FeedError::Stopped))));
    let queued_run = engine.latest(queued.id()).await.unwrap().run;
    assert_eq!(queued_run.status, RunStatus::Queued);
    // An attempt a worker took before the shutdown began does not start it either.
    super::worker::attempt(&engine.shared, queued.id()).await;
    let queued = engine.latest(queued.id()).await.unwrap().run;
    assert_eq!(
        (queued.status, queued.started_at),
        (RunStatus::Queued, None)
    );
}

#[tokio::test]
async fn an_ending_attempt_leaves_the_next_attempts_signal_registered() {
    let engine = engine(2);
    let id = RunId::from("run_1");
    let first = Running::register(&engine.shared, &id);
    let second = Running::register(&engine.shared, &id);
    drop(first);
    let registered = |signal: &CancelSignal| {
        lock(&engine.shared.running)
            .get(&id)
            .is_some_and(|signals| signals.holds(signal))
    };
    assert!(registered(&second.signal));
    drop(second);
    assert!(lock(&engine.shared.running).is_empty());
}

#[tokio::test]
async fn an_attempt_that_did_not_start_leaves_the_running_attempts_signal_registered() {
    // Over a shared store, a run claimed twice: its second attempt finds it executing, does
    // not start, and lets go first. A cancellation must still reach the first.
    let engine = engine(2);
    let id = RunId::from("run_1");
    let running = Running::register(&engine.shared, &id);
    let refused = Running::register(&engine.shared, &id);
    drop(refused);
    lock(&engine.shared.running)
        .get(&id)
        .expect("still registered")
        .cancel();
    assert!(running.signal.is_canceled());
    drop(running);
    assert!(lock(&engine.shared.running).is_empty());
}

#[tokio::test]
async fn forgetting_runs_across_shards_leaves_a_key_to_the_newer_run_that_took_it() {
    let engine = engine(1);
    // A zero retention: a finished run is due at once.
    let store = MemoryStore::new(RunHub::new(HubConfig::default()), Duration::ZERO);
    let ttl = Duration::from_secs(1);
    let t0 = Timestamp::now();
    // A record of a `Steps` run created `after` t0, with key `k` if `keyed`.
    let record = async |after: Duration, keyed: bool| {
        let options = TriggerOptions::default();
        let options = if keyed {
            options.idempotency_key("k")
        } else {
            options
        };
        let prepared = engine
            .prepare(BatchItem::new::<Steps>(1, options))
            .await
            .unwrap();
        super::record(prepared, t0.checked_add(after).unwrap())
    };
    let mut runs = vec![record(Duration::ZERO, true).await];
    for _ in 0..200 {
        runs.push(record(Duration::ZERO, false).await);
    }
    let ids: Vec<RunId> = (runs.iter()).map(|r| r.snapshot.id.clone()).collect();
    store.create(runs, None, ttl).await.unwrap();
    // Past the key's TTL, the key starts a second run, which takes it.
    let second = record(Duration::from_secs(2), true).await;
    let second_id = second.snapshot.id.clone();
    let created = store.create(vec![second], None, ttl).await.unwrap();
    assert!(matches!(created[..], [Created::New(_)]), "{created:?}");

    let complete = |record: &mut Record| record.run().status = RunStatus::Completed;
    for id in &ids {
        store
            .update_if(id, |status| !status.is_final(), complete)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(store.forget_finished().await.unwrap(), None);
    for id in &ids {
        assert!(store.snapshot(id).await.unwrap().is_none(), "{id} is kept");
    }
    assert!(store.snapshot(&second_id).await.unwrap().is_some());
    assert_ne!(ids[0], second_id);
    // Within the second run's TTL, its key still returns it.
    let again = record(Duration::from_millis(2_500), true).await;
    let again = store.create(vec![again], None, ttl).await.unwrap();
    assert!(
        matches!(&again[..], [Created::Existing(id, _)] if *id == second_id),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_reaches_every_caller_and_nothing_changes() {
    let engine = engine(2);
    let live = engine.trigger::<Forever>(()).await.unwrap();
    executing(&engine, live.id(), false).await;
    store(&engine).failing.store(true, Ordering::SeqCst);

    let trigger = engine.trigger::<Steps>(1).await.unwrap_err();
    assert!(matches!(trigger, TriggerError::Store(_)), "{trigger}");
    assert!(trigger.to_string().contains("the test store is failing"));
    let batch = engine
        .batch_trigger::<Steps>([(1, TriggerOptions::default())])
        .await
        .unwrap_err();
    assert!(matches!(batch, TriggerError::Store(_)), "{batch}");
    let cancel = engine.cancel(live.id()).await.unwrap_err();
    assert!(matches!(cancel, CancelError::Store(_)), "{cancel}");
    let tags = engine.add_tags(live.id(), ["x"]).await.unwrap_err();
    assert!(matches!(tags, TagError::Store(_)), "{tags}");
    let tags = engine.remove_tags(live.id(), ["x"]).await.unwrap_err();
    assert!(matches!(tags, TagError::Store(_)), "{tags}");
    let op = MetadataOp::Set("a".into(), 1.into());
    let metadata = engine.update_metadata(live.id(), [op]).await.unwrap_err();
    assert!(matches!(metadata, MetadataError::Store(_)), "{metadata}");

    store(&engine).failing.store(false, Ordering::SeqCst);
    // Nothing of it took effect: one run, still executing, untouched.
    let page = engine.list_runs(&RunQuery::new()).await.unwrap();
    assert_eq!(page.runs.len(), 1);
    let run = &page.runs[0];
    assert_eq!(
        (run.status, run.tags.len(), run.metadata.is_none()),
        (RunStatus::Executing, 0, true)
    );
    engine.cancel(live.id()).await.unwrap();
    assert_eq!(
        finished(&engine, live.id()).await.status,
        RunStatus::Canceled
    );
    let stopped = engine
        .subscribe(Scope::Run(live.id().clone()), Cursor::START)
        .await
        .unwrap();
    engine.shutdown(Duration::from_secs(5)).await;
    let items: Vec<_> = stopped.collect().await;
    assert!(
        matches!(items.last(), Some(Err(FeedError::Stopped))),
        "{items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_reaches_a_tasks_writes_and_nothing_changes() {
    let engine = engine(2);
    let run = engine.trigger::<WritesWhenTold>(()).await.unwrap();
    executing(&engine, run.id(), false).await;
    store(&engine).failing.store(true, Ordering::SeqCst);
    WRITE.notify_one();
    let written = async {
        while lock(&WRITTEN).len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), written)
        .await
        .expect("the task writes");
    store(&engine).failing.store(false, Ordering::SeqCst);
    let written = lock(&WRITTEN).clone();
    assert!(
        written
            .iter()
            .all(|w| w.contains("the test store is failing")),
        "{written:?}"
    );
    RETURN.notify_one();
    let done = finished(&engine, run.id()).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert!(done.metadata.is_none() && done.realtime_streams.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_for_a_while_loses_no_result_start_or_timer() {
    let engine = engine(3);
    // Its result is stored while the store fails.
    let finishing = engine.trigger::<ReturnsWhenTold>(1).await.unwrap();
    executing(&engine, finishing.id(), false).await;
    // Its delay ends while the store fails.
    let later = TriggerOptions::default().delay(Duration::from_secs(5));
    let delayed = engine
        .trigger_with::<ReturnsWhenTold>(2, later)
        .await
        .unwrap();
    // Stored, but not queued: a worker takes it while the store fails.
    let prepared = BatchItem::new::<ReturnsWhenTold>(3, TriggerOptions::default());
    let record = super::record(engine.prepare(prepared).await.unwrap(), Timestamp::now());
    let starting = record.snapshot.id.clone();
    let create = engine
        .shared
        .store
        .create(vec![record], None, Duration::ZERO);
    create.await.unwrap();

    store(&engine).failing.store(true, Ordering::SeqCst);
    RELEASE.add_permits(3);
    super::worker::attempt(&engine.shared, &starting).await;
    // A minute of failures: each change is tried again, and none takes effect.
    let tried = suspended(&engine);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let tried = suspended(&engine) - tried;
    // About once a second each, not in a loop: the result and the start from the first
    // second, the delay from its fifth.
    assert!((3 * 50..=3 * 61).contains(&tried), "{tried} tries");
    let status = |id: RunId| {
        let engine = engine.clone();
        async move { engine.latest(&id).await.unwrap().run.status }
    };
    assert_eq!(
        [
            status(finishing.id().clone()).await,
            status(delayed.id().clone()).await,
            status(starting.clone()).await,
        ],
        [RunStatus::Executing, RunStatus::Delayed, RunStatus::Queued]
    );

    store(&engine).failing.store(false, Ordering::SeqCst);
    for (id, output) in [(finishing.id(), 1), (delayed.id(), 2), (&starting, 3)] {
        let done = finished(&engine, id).await;
        assert_eq!(done.status, RunStatus::Completed, "{id}");
        assert_eq!(done.output.unwrap().get(), output.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_does_not_decode_fails_the_run_at_once_without_retries() {
    let engine = engine(2);
    // As another version of the task would have stored it.
    let prepared = engine
        .prepare(BatchItem::new::<Steps>(1, TriggerOptions::default()))
        .await
        .unwrap();
    let mut record = super::record(prepared, Timestamp::now());
    record.run().payload = Some(RawValue::from_string(r#""five""#.into()).unwrap().into());
    let id = record.snapshot.id.clone();
    assert!(record.max_attempts > 1);
    engine
        .shared
        .store
        .create(vec![record], None, Duration::ZERO)
        .await
        .unwrap();
    let updates = engine
        .subscribe(Scope::Run(id.clone()), Cursor::START)
        .await
        .unwrap();
    engine.shared.enqueue(id.clone());
    let updates = updates.until_finished().try_collect::<Vec<_>>();
    let updates = tokio::time::timeout(Duration::from_secs(10), updates)
        .await
        .expect("the run ends")
        .unwrap();
    let statuses: Vec<_> = updates.iter().map(|u| u.run.status).collect();
    assert_eq!(
        statuses,
        [RunStatus::Queued, RunStatus::Executing, RunStatus::Failed]
    );
    let error = updates.last().unwrap().run.error.clone().unwrap();
    assert_eq!(error.name.as_deref(), Some("PayloadError"));
    assert!(
        error
            .message
            .contains("the payload does not match task `steps`"),
        "{}",
        error.message
    );
}
