//! The engine over a store whose every operation suspends before it completes, as a store
//! doing I/O does: the engine's logic must not rely on a store answering at once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::store::{Closed, Created, Record, RunStore};
use super::{BatchItem, Engine, MemoryStore, TriggerError, TriggerOptions, new_id};
use crate::feed::{Cursor, Scope};
use crate::hub::{self, RunHub};
use crate::metadata::MetadataOp;
use crate::run::{AnyRun, BatchId, RunId};
use crate::status::RunStatus;
use crate::stream::RunStreamExt;
use crate::streams::{Realtime, StreamError};
use crate::task;
use crate::task::TaskContext;

/// A [`MemoryStore`] whose operations each suspend once first, and count it.
struct Suspending {
    inner: MemoryStore,
    suspended: AtomicUsize,
}

impl Suspending {
    async fn suspend(&self) {
        self.suspended.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
}

impl RunStore for Suspending {
    fn hub(&self) -> &RunHub {
        self.inner.hub()
    }

    fn retention(&self) -> Duration {
        self.inner.retention()
    }

    async fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, Closed> {
        self.suspend().await;
        self.inner.create(runs, batch, idempotency_ttl).await
    }

    async fn change_if<R: Send, E: Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> Option<Result<R, E>> {
        self.suspend().await;
        self.inner.change_if(id, when, change).await
    }

    async fn snapshot(&self, id: &RunId) -> Option<Arc<AnyRun>> {
        self.suspend().await;
        self.inner.snapshot(id).await
    }

    async fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        self.suspend().await;
        self.inner
            .append_chunk(id, attempt, stream, data, limit)
            .await
    }

    async fn forget_finished(&self, now: Instant) -> Option<Instant> {
        self.suspend().await;
        self.inner.forget_finished(now).await
    }

    fn close(&self) {
        self.inner.close();
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
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
    let metadata = ctx.metadata().await.unwrap_or_default();
    Ok(metadata
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

fn engine() -> (Engine<Suspending>, impl Fn() -> usize) {
    let engine = Engine::builder()
        .task::<Steps>()
        .task::<SecondTime>()
        .task::<Forever>()
        .retry_delay(Duration::from_millis(1))
        .build_with(|hub, retention| Suspending {
            inner: MemoryStore::new(hub, retention),
            suspended: AtomicUsize::new(0),
        })
        .unwrap();
    let shared = Arc::clone(&engine.shared);
    (engine, move || {
        shared.store.suspended.load(Ordering::Relaxed)
    })
}

/// The final snapshot of a run.
async fn finished(engine: &Engine<Suspending>, id: &RunId) -> AnyRun {
    let updates = engine
        .subscribe(Scope::Run(id.clone()), Cursor::START)
        .unwrap();
    let last = updates
        .until_finished()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    last.into_iter().last().unwrap().run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_of_the_engine_works_over_a_store_that_suspends() {
    let (engine, suspended) = engine();

    // A run writing chunks and metadata, followed from its handle's cursor with streams.
    let run = engine.trigger::<Steps>(5).await.unwrap();
    let items = engine
        .subscribe(Scope::Run(run.id().clone()), run.cursor())
        .unwrap();
    let items: Vec<_> = (items.with_streams().until_finished())
        .try_collect()
        .await
        .unwrap();
    let Some(Realtime::Run(first)) = items.first() else {
        panic!("{items:?}")
    };
    assert_eq!(first.run.status, RunStatus::Queued);
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
            BatchItem::new::<Steps>(&1, other()),
            BatchItem::new::<Steps>(&2, other()),
            BatchItem::new::<SecondTime>(&(), TriggerOptions::default()),
        ])
        .await
        .unwrap();
    assert_eq!(batch.runs[0].id(), batch.runs[1].id());
    assert_ne!(batch.runs[0].id(), batch.runs[2].id());

    // A retry, through the engine's timer.
    let retried = finished(&engine, batch.runs[2].id()).await;
    assert_eq!(retried.status, RunStatus::Completed);
    assert_eq!(retried.output.as_deref().map(RawValue::get), Some("2"));

    // Tags, metadata from outside, and a cancellation reaching the running attempt.
    let waiting = engine.trigger::<Forever>(()).await.unwrap();
    let mut updates = engine.subscribe_to_run::<Forever>(waiting.id()).unwrap();
    while updates.next().await.unwrap().unwrap().run.status != RunStatus::Executing {}
    engine.add_tags(waiting.id(), ["a", "b"]).await.unwrap();
    engine.remove_tags(waiting.id(), ["a"]).await.unwrap();
    let note = MetadataOp::Set("note".into(), "hi".into());
    engine.update_metadata(waiting.id(), [note]).await.unwrap();
    engine.cancel(waiting.id()).await.unwrap();
    let canceled = finished(&engine, waiting.id()).await;
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert_eq!(canceled.tags, ["b"]);
    assert_eq!(
        canceled.metadata.as_deref().map(RawValue::get),
        Some(r#"{"note":"hi"}"#)
    );
    while !hub::lock(&engine.shared.running).is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // A run whose time to live ends before its delay.
    let late = TriggerOptions::default()
        .delay(Duration::from_secs(60))
        .ttl(Duration::from_millis(5));
    let late = engine.trigger_with::<Steps>(1, late).await.unwrap();
    assert_eq!(
        finished(&engine, late.id()).await.status,
        RunStatus::Expired
    );

    assert_eq!(engine.shutdown(Duration::from_secs(5)).await, 0);
    let refused = engine.trigger::<Steps>(1).await.unwrap_err();
    assert!(matches!(refused, TriggerError::ShuttingDown), "{refused}");
    assert!(suspended() > 30, "{} operations suspended", suspended());
}

#[test]
fn ids_have_at_least_eight_digits() {
    assert_eq!(new_id("run_", "ab1", 0), "run_ab100000000");
    assert_eq!(new_id("run_", "ab1", 42), "run_ab100000042");
    assert_eq!(new_id("batch_", "", 123_456_789), "batch_123456789");
    assert_eq!(new_id("run_", "f", u64::MAX), format!("run_f{}", u64::MAX));
}
