//! The embedded engine: triggering, the run lifecycle, and subscriptions that never miss the
//! first event.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail the test on bad fixtures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::backend::Backend;

use futures::StreamExt;
use futures::future::join_all;
use runcast::{
    AnyRun, Engine, FeedError, MetadataError, MetadataOp, RunFeed, RunId, RunInfo, RunStatus,
    RunStreamExt, Scope, TaskContext, TriggerError, TriggerOptions, realtime_union, task,
};

#[task(id = "double")]
async fn double(n: u64, ctx: TaskContext) -> Result<u64, String> {
    assert_eq!(ctx.attempt(), 1);
    // Tagged runs in these tests carry `user:7`; the context shows the run's tags.
    assert!(
        ctx.tags().is_empty() || ctx.tags() == ["user:7"],
        "{:?}",
        ctx.tags()
    );
    Ok(n * 2)
}

/// Fails its first two attempts.
#[task(id = "flaky")]
async fn flaky(_: (), ctx: TaskContext) -> Result<u32, String> {
    if ctx.attempt() < 3 {
        Err(format!("attempt {} failed", ctx.attempt()))
    } else {
        Ok(ctx.attempt())
    }
}

#[task(id = "always-fails")]
async fn always_fails(_: ()) -> Result<(), String> {
    Err("no luck".into())
}

#[task(id = "panics")]
async fn panics(_: ()) -> Result<(), String> {
    panic!("boom")
}

/// Sleeps for the given milliseconds; reports whether it saw a cancellation.
#[task(id = "sleep")]
async fn sleep(ms: u64, ctx: TaskContext) -> Result<bool, String> {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(false),
        () = ctx.canceled() => Ok(true),
    }
}

/// Reports progress through metadata, one step per payload unit.
#[task(id = "progress")]
async fn progress(steps: u32, ctx: TaskContext) -> Result<u32, runcast::MetadataError> {
    for step in 1..=steps {
        ctx.update_metadata([
            MetadataOp::Set(
                "progress".into(),
                (f64::from(step) / f64::from(steps)).into(),
            ),
            MetadataOp::Append("log".into(), format!("step {step}").into()),
        ])
        .await?;
        // The task reads back what it wrote (a mismatch panics: the run crashes).
        let log = ctx.metadata().await?.and_then(|m| m.get("log").cloned());
        assert_eq!(
            log.and_then(|l| l.as_array().map(Vec::len)),
            Some(step as usize)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(steps)
}

#[task(id = "elsewhere", payload = u8, output = u8)]
#[derive(Debug)]
pub struct Elsewhere;

realtime_union! {
    #[derive(Debug)]
    enum Numbers {
        Double,
        Flaky,
    }
}

#[task(id = "echo")]
async fn echo(text: String) -> Result<String, String> {
    Ok(text)
}

/// Lets `chatty` start, once its test's subscribers are in place.
static CHATTY_GO: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Sets metadata `i` to each of `0..n`, as fast as it can, once let go.
#[task(id = "chatty")]
async fn chatty(n: u32, ctx: TaskContext) -> Result<u32, MetadataError> {
    CHATTY_GO.notified().await;
    for i in 0..n {
        ctx.update_metadata([MetadataOp::Set("i".into(), i.into())])
            .await?;
    }
    Ok(n)
}

async fn engine(backend: Backend) -> Engine {
    backend
        .builder()
        .await
        .task::<Double>()
        .task::<Echo>()
        .task::<Chatty>()
        .task::<Flaky>()
        .task::<AlwaysFails>()
        .task::<Panics>()
        .task::<Sleep>()
        .task::<Progress>()
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap()
}

/// Every snapshot of the run until it finishes, from its current one.
async fn follow<T: runcast::Task>(engine: &Engine, id: &RunId) -> Vec<runcast::Run<T>> {
    let updates = engine.subscribe_to_run::<T>(id).await.unwrap();
    let all = updates.map(|u| u.unwrap().run).collect();
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the run finishes within 60 s")
}

/// The run's latest snapshot.
async fn current(engine: &Engine, id: &RunId) -> AnyRun {
    engine.latest(id).await.unwrap().run
}

/// How many runs the engine keeps.
async fn run_count(engine: &Engine) -> usize {
    let page = engine
        .list_runs(&runcast::RunQuery::new().limit(100))
        .await
        .unwrap();
    page.runs.len()
}

on_every_backend! {
    async fn a_run_completes_with_its_typed_output(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Double>(21).await.unwrap();
        let runs = follow::<Double>(&engine, handle.id()).await;
        let last = runs.last().unwrap();
        assert_eq!(last.status, RunStatus::Completed);
        assert_eq!(last.output, Some(42));
        assert_eq!(last.number, 1);
        assert!(last.started_at.is_some() && last.finished_at.is_some() && last.queued_at.is_some());
        assert!(last.finished_at >= last.started_at);
        assert!(runs.iter().all(|r| r.payload == 21));
    }
}

on_every_backend! {
    async fn failed_attempts_are_retried_then_the_run_fails_with_the_error(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Flaky>(()).await.unwrap();
        let last = follow::<Flaky>(&engine, handle.id()).await.pop().unwrap();
        assert_eq!((last.status, last.output), (RunStatus::Completed, Some(3)));
        // Two attempts are not enough for it: the second's error is the run's.
        let two = TriggerOptions::default().max_attempts(2);
        let handle = engine.trigger_with::<Flaky>((), two).await.unwrap();
        let last = follow::<Flaky>(&engine, handle.id()).await.pop().unwrap();
        assert_eq!(last.status, RunStatus::Failed);
        assert_eq!(last.error.unwrap().message, "attempt 2 failed");

        let handle = engine
            .trigger_with::<AlwaysFails>((), TriggerOptions::default().max_attempts(2))
            .await
            .unwrap();
        let runs = follow::<AlwaysFails>(&engine, handle.id()).await;
        let last = runs.last().unwrap();
        assert_eq!(last.status, RunStatus::Failed);
        assert_eq!(last.error.as_ref().unwrap().message, "no luck");
        assert!(
            last.error
                .as_ref()
                .unwrap()
                .name
                .as_deref()
                .unwrap()
                .contains("String")
        );
    }
}

on_every_backend! {
    async fn a_panic_crashes_the_run_and_the_engine_keeps_running(backend: Backend) {
        let engine = engine(backend).await;
        let crashed = engine.trigger::<Panics>(()).await.unwrap();
        let last = follow::<Panics>(&engine, crashed.id()).await.pop().unwrap();
        assert_eq!(last.status, RunStatus::Crashed);
        assert_eq!(last.error.unwrap().message, "the task panicked: boom");
        let fine = engine.trigger::<Double>(1).await.unwrap();
        let last = follow::<Double>(&engine, fine.id()).await.pop().unwrap();
        assert_eq!(last.output, Some(2));
    }
}

/// Subscribes from the handle's cursor, as a client resuming from it would, and returns the
/// run's final status and output.
async fn race<T: runcast::Task>(
    engine: &Engine,
    handle: &runcast::RunHandle<T>,
) -> (RunStatus, Option<T::Output>) {
    let from = engine.subscribe(Scope::Run(handle.id().clone()), handle.cursor());
    let mut updates = from.await.unwrap().until_finished().typed::<T>();
    // The handle's cursor precedes the run's creation, so a change is there at once.
    let first = futures::FutureExt::now_or_never(updates.next());
    let first = first.expect("the run's creation is after the handle's cursor");
    let rest: Vec<_> = updates.map(|u| u.unwrap().run).collect().await;
    let last = rest
        .into_iter()
        .last()
        .unwrap_or(first.unwrap().unwrap().run);
    (last.status, last.output)
}

on_every_backend! {
    async fn subscribing_right_after_trigger_never_misses_a_run_that_finished_instantly(backend: Backend) {
        let engine = engine(backend).await;
        // Runs of three tasks that finish at once, in three ways.
        let runs = (0..3_000u64).map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                match i % 3 {
                    0 => {
                        let handle = engine.trigger::<Double>(i).await.unwrap();
                        let (status, output) = race(&engine, &handle).await;
                        (status, output.map(|n| n.to_string()))
                    }
                    1 => {
                        let once = TriggerOptions::default().max_attempts(1);
                        let handle = engine.trigger_with::<AlwaysFails>((), once).await.unwrap();
                        let (status, output) = race(&engine, &handle).await;
                        (status, output.map(|()| "()".into()))
                    }
                    _ => {
                        let handle = engine.trigger::<Echo>(format!("echo {i}")).await.unwrap();
                        race(&engine, &handle).await
                    }
                }
            })
        });
        // A missed event would leave a subscription waiting forever: fail instead of hanging.
        let results = tokio::time::timeout(Duration::from_secs(120), join_all(runs))
            .await
            .expect("every subscription saw its run finish");
        for (i, result) in results.into_iter().enumerate() {
            let expected = match i % 3 {
                0 => (RunStatus::Completed, Some((2 * i).to_string())),
                1 => (RunStatus::Failed, None),
                _ => (RunStatus::Completed, Some(format!("echo {i}"))),
            };
            assert_eq!(result.unwrap(), expected, "run {i}");
        }
    }
}

on_every_backend! {
    async fn a_handles_cursor_is_the_one_just_before_its_runs_creation(backend: Backend) {
        let engine = engine(backend).await;
        let earlier = engine.trigger::<Sleep>(1).await.unwrap();
        let later = TriggerOptions::default().delay(Duration::from_secs(60));
        let handle = engine.trigger_with::<Sleep>(1, later).await.unwrap();
        assert!(handle.cursor() > earlier.cursor());
        let mut feed = engine
            .subscribe(Scope::Run(handle.id().clone()), handle.cursor())
            .await
            .unwrap();
        let created = futures::FutureExt::now_or_never(feed.next())
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(created.run.status, RunStatus::Delayed);
        assert!(created.cursor > handle.cursor());
        // From the creation's own cursor, nothing before it comes again.
        let mut after = engine
            .subscribe(Scope::Run(handle.id().clone()), created.cursor)
            .await
            .unwrap();
        assert!(futures::FutureExt::now_or_never(after.next()).is_none());
        engine.cancel(handle.id()).await.unwrap();
    }
}

on_every_backend! {
    async fn a_tag_feed_yields_each_task_as_its_variant(backend: Backend) {
        let engine = engine(backend).await;
        let mut feed = engine
            .subscribe_to_runs_with_tag::<Numbers>(["user:7"])
            .await
            .unwrap();
        let tagged = TriggerOptions::default().tag("user:7");
        let double = engine
            .trigger_with::<Double>(5, tagged.clone())
            .await
            .unwrap();
        let flaky_run = engine.trigger_with::<Flaky>((), tagged).await.unwrap();
        engine.trigger::<Double>(6).await.unwrap(); // untagged: not in the feed
        let (mut doubled, mut flaky) = (None, None);
        while doubled.is_none() || flaky.is_none() {
            let run = feed.next().await.unwrap().unwrap().run;
            assert_eq!(run.tags(), ["user:7"]);
            match run {
                Numbers::Double(run) => {
                    assert_eq!((&run.id, run.payload), (double.id(), 5));
                    if run.status.is_final() {
                        doubled = run.output;
                    }
                }
                Numbers::Flaky(run) => {
                    assert_eq!(&run.id, flaky_run.id());
                    if run.status.is_final() {
                        flaky = run.output;
                    }
                }
            }
        }
        assert_eq!((doubled, flaky), (Some(10), Some(3)));
    }
}

on_every_backend! {
    async fn bad_triggers_are_refused_and_store_nothing(backend: Backend) {
        let engine = backend.builder().await
            .task::<Double>()
            .max_payload_bytes(4)
            .build()
            .unwrap();
        let too_large = engine.trigger::<Double>(123_456).await.unwrap_err();
        assert!(
            matches!(
                too_large,
                TriggerError::PayloadTooLarge { size: 6, limit: 4 }
            ),
            "{too_large}"
        );
        let unknown = engine.trigger::<Elsewhere>(1).await.unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("task `elsewhere` is unknown to this engine"),
            "{unknown}"
        );
        for (tags, expected) in [
            (vec![String::new()], "cannot be empty"),
            (vec!["x".repeat(129)], "at most 128 characters"),
            (vec!["a\nb".into()], "control characters"),
            ((0..11).map(|i| i.to_string()).collect(), "11 tags given"),
            // Refused without checking 100,000 tags against each other.
            (
                (0..100_000).map(|i| i.to_string()).collect(),
                "100000 tags given; a run carries at most 10",
            ),
        ] {
            let mut options = TriggerOptions::default();
            options.tags = tags;
            let err = engine.trigger_with::<Double>(1, options).await.unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        // Ten distinct tags, however often each is given, are kept once each, in order.
        // (Delayed: `Double` accepts no such tags when it runs.)
        let mut options = TriggerOptions::default().delay(Duration::from_secs(3600));
        options.tags = (0..30).map(|i| (i % 10).to_string()).collect();
        let run = engine.trigger_with::<Double>(1, options).await.unwrap();
        let tags = engine.latest(run.id()).await.unwrap().run.tags;
        assert_eq!(
            tags.iter()
                .map(|t| t.parse::<u32>().unwrap())
                .collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        let err = engine
            .trigger_with::<Double>(1, TriggerOptions::default().max_attempts(0))
            .await
            .unwrap_err();
        assert!(matches!(err, TriggerError::NoAttempts));
        assert_eq!(run_count(&engine).await, 1, "nothing else was stored");
    }
}

#[task(id = "scale")]
async fn scale(factor: f64) -> Result<f64, String> {
    Ok(factor * 2.0)
}

on_every_backend! {
    async fn a_payload_that_would_not_read_back_is_refused_at_trigger(backend: Backend) {
        let engine = backend.builder().await.task::<Scale>().build().unwrap();
        // JSON has no NaN: serde_json writes `null`, which the task could never read as `f64`.
        let err = engine.trigger::<Scale>(f64::NAN).await.unwrap_err();
        assert!(
            matches!(err, TriggerError::Payload { task: "scale", .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cannot be written as JSON that reads back as its type")
        );
        assert_eq!(run_count(&engine).await, 0, "nothing was stored");
        // An exact double reads back bit for bit.
        let run = engine.trigger::<Scale>(9925.123456789473).await.unwrap();
        assert_eq!(
            engine.wait(&run).await.unwrap().payload.to_bits(),
            9925.123456789473f64.to_bits()
        );
    }
}

#[test]
fn building_outside_a_tokio_runtime_is_a_clear_error() {
    let err = Engine::builder().build().unwrap_err();
    assert!(err.to_string().contains("within a Tokio runtime"), "{err}");
}

realtime_union! {
    #[derive(Debug)]
    enum Sleeps {
        Sleep,
    }
}

on_every_backend! {
    async fn cancel_stops_a_running_attempt_and_a_queued_run(backend: Backend) {
        let engine = backend.builder().await
            .task::<Sleep>()
            .concurrency(1)
            .build()
            .unwrap();
        let running = engine.trigger::<Sleep>(60_000).await.unwrap();
        let queued = engine.trigger::<Sleep>(1).await.unwrap(); // waits: concurrency is 1
        let mut updates = engine
            .subscribe_to_run::<Sleep>(running.id())
            .await
            .unwrap();
        while updates.next().await.unwrap().unwrap().run.status != RunStatus::Executing {}
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The queued run first: canceling the running one frees its slot for the queued one.
        engine.cancel(queued.id()).await.unwrap();
        engine.cancel(running.id()).await.unwrap();
        let last = updates
            .map(|u| u.unwrap().run)
            .collect::<Vec<_>>()
            .await
            .pop()
            .unwrap();
        assert_eq!((last.status, last.output), (RunStatus::Canceled, None));
        assert!(last.finished_at.is_some());
        let queued = follow::<Sleep>(&engine, queued.id()).await.pop().unwrap();
        assert_eq!(
            (queued.status, queued.started_at),
            (RunStatus::Canceled, None)
        );
        // A run queued after both: once it completed, the workers have passed the canceled one,
        // which still never started.
        let after = engine.trigger::<Sleep>(1).await.unwrap();
        let last_after = follow::<Sleep>(&engine, after.id()).await.pop().unwrap();
        assert_eq!(last_after.status, RunStatus::Completed);
        let queued = current(&engine, &queued.id).await;
        assert_eq!(
            (queued.status, queued.started_at),
            (RunStatus::Canceled, None)
        );
        // The canceled attempt's time still counts, once it has stopped.
        let counted = async {
            while current(&engine, running.id()).await.duration_ms == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), counted)
            .await
            .unwrap();
        let again = engine.cancel(running.id()).await.unwrap_err();
        assert!(
            again.to_string().contains("already finished as CANCELED"),
            "{again}"
        );
        assert!(engine.cancel(&"run_nope".into()).await.is_err());
    }
}

on_every_backend! {
    async fn an_attempt_past_its_max_duration_times_out(backend: Backend) {
        let engine = engine(backend).await;
        let options = TriggerOptions::default().max_duration(Duration::from_millis(20));
        let handle = engine.trigger_with::<Sleep>(60_000, options).await.unwrap();
        let last = follow::<Sleep>(&engine, handle.id()).await.pop().unwrap();
        assert_eq!(last.status, RunStatus::TimedOut);
        assert!(last.error.unwrap().message.contains("maximum duration"));
    }
}

on_every_backend! {
    async fn a_delayed_run_waits_then_runs_and_a_run_past_its_ttl_expires(backend: Backend) {
        let engine = engine(backend).await;
        let delayed = engine
            .trigger_with::<Double>(4, TriggerOptions::default().delay(Duration::from_secs(1)))
            .await
            .unwrap();
        let runs = follow::<Double>(&engine, delayed.id()).await;
        assert_eq!(runs[0].status, RunStatus::Delayed);
        assert!(runs[0].delayed_until.is_some() && runs[0].queued_at.is_none());
        let last = runs.last().unwrap();
        assert_eq!((last.status, last.output), (RunStatus::Completed, Some(8)));
        assert!(last.queued_at.unwrap() >= last.delayed_until.unwrap());

        let options = TriggerOptions::default()
            .delay(Duration::from_secs(60))
            .ttl(Duration::from_millis(20));
        let expiring = engine.trigger_with::<Double>(1, options).await.unwrap();
        let last = follow::<Double>(&engine, expiring.id())
            .await
            .pop()
            .unwrap();
        assert_eq!(last.status, RunStatus::Expired);
        assert!(last.expired_at.is_some() && last.started_at.is_none());
        assert_eq!(last.ttl.as_deref(), Some("20ms"));
    }
}

on_every_backend! {
    async fn an_idempotency_key_returns_the_first_run_until_its_ttl_ends(backend: Backend) {
        let engine = backend.builder().await
            .task::<Double>()
            .idempotency_ttl(Duration::from_secs(1))
            .build()
            .unwrap();
        let keyed = || TriggerOptions::default().idempotency_key("order-1");
        let first = engine.trigger_with::<Double>(1, keyed()).await.unwrap();
        let second = engine.trigger_with::<Double>(2, keyed()).await.unwrap();
        assert_eq!(first.id(), second.id());
        assert_eq!(first.cursor(), second.cursor());
        let run = follow::<Double>(&engine, first.id()).await.pop().unwrap();
        assert_eq!(
            (run.output, run.idempotency_key.as_deref()),
            (Some(2), Some("order-1"))
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let third = engine.trigger_with::<Double>(3, keyed()).await.unwrap();
        assert_ne!(third.id(), first.id());
    }
}

on_every_backend! {
    async fn a_batch_is_all_or_nothing_and_has_its_own_feed(backend: Backend) {
        let engine = engine(backend).await;
        let batch = engine
            .batch_trigger::<Sleep>((0..3).map(|i| (i, TriggerOptions::default())))
            .await
            .unwrap();
        assert_eq!(batch.runs.len(), 3);
        let mut feed = engine
            .subscribe_to_batch::<Sleeps>(&batch.id)
            .await
            .unwrap();
        let mut done = std::collections::HashSet::new();
        while done.len() < 3 {
            let Sleeps::Sleep(run) = feed.next().await.unwrap().unwrap().run;
            if run.status == RunStatus::Completed {
                done.insert(run.id);
            }
        }
        let before = run_count(&engine).await;
        let mut bad = TriggerOptions::default();
        bad.tags = vec![String::new()];
        let items = vec![(1, TriggerOptions::default()), (2, bad)];
        assert!(engine.batch_trigger::<Sleep>(items).await.is_err());
        let too_many = (0..1_001).map(|i| (i, TriggerOptions::default()));
        assert!(matches!(
            engine.batch_trigger::<Sleep>(too_many).await,
            Err(TriggerError::BatchTooLarge { count: 1_001 })
        ));
        assert_eq!(run_count(&engine).await, before, "nothing was stored");
    }
}

on_every_backend! {
    async fn costs_follow_execution_time_and_subscriptions_are_limited(backend: Backend) {
        let engine = backend.builder().await
            .task::<Sleep>()
            .cost_per_ms_cents(0.5)
            .max_subscriptions(1)
            .build()
            .unwrap();
        let handle = engine.trigger::<Sleep>(20).await.unwrap();
        let sub = engine.subscribe_to_run::<Sleep>(handle.id()).await.unwrap();
        assert!(matches!(
            engine.subscribe_to_run::<Sleep>(handle.id()).await,
            Err(FeedError::TooManySubscriptions { limit: 1 })
        ));
        let last = sub
            .map(|u| u.unwrap().run)
            .collect::<Vec<_>>()
            .await
            .pop()
            .unwrap();
        assert!(last.duration_ms >= 20, "{}", last.duration_ms);
        assert_eq!(last.cost_in_cents, last.duration_ms as f64 * 0.5);
    }
}

on_every_backend! {
    async fn metadata_changes_from_the_task_and_from_outside_reach_subscribers(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Progress>(4).await.unwrap();
        let runs = follow::<Progress>(&engine, handle.id()).await;
        let last = runs.last().unwrap();
        let metadata = serde_json::Value::Object(last.metadata.clone().unwrap());
        assert_eq!(metadata["progress"], 1.0);
        assert_eq!(
            metadata["log"],
            serde_json::json!(["step 1", "step 2", "step 3", "step 4"])
        );
        assert_eq!(last.output, Some(4));

        // After completion, from outside; a refused change changes nothing.
        let before = engine.latest(handle.id()).await.unwrap().cursor;
        let err = engine
            .update_metadata(
                handle.id(),
                [
                    MetadataOp::Set("x".into(), 1.into()),
                    MetadataOp::Increment("log".into(), 1.0),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MetadataError::NotANumber { .. }), "{err}");
        let after = engine.latest(handle.id()).await.unwrap().cursor;
        assert_eq!(after, before, "nothing was published");
        // A subscriber that stays after completion sees the outside change, and nothing of the
        // refused one.
        let mut forever = engine
            .subscribe_to_run_forever::<Progress>(handle.id())
            .await
            .unwrap();
        let current = forever.next().await.unwrap().unwrap();
        assert_eq!(current.cursor, before);
        engine
            .update_metadata(handle.id(), [MetadataOp::Increment("children".into(), 1.0)])
            .await
            .unwrap();
        let changed = forever.next().await.unwrap().unwrap().run;
        let metadata = changed.metadata.unwrap();
        assert_eq!(metadata["children"], 1);
        assert!(!metadata.contains_key("x"));
        assert_eq!(metadata["log"].as_array().map(Vec::len), Some(4));
        assert!(
            engine
                .update_metadata(&"run_nope".into(), [])
                .await
                .is_err()
        );
    }
}

on_every_backend! {
    async fn tags_added_to_a_live_run_bring_it_into_a_tag_feed(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Sleep>(60_000).await.unwrap();
        let mut feed = engine
            .subscribe_to_runs_with_tag::<Sleeps>(["late"])
            .await
            .unwrap();
        engine
            .add_tags(handle.id(), ["late", "extra"])
            .await
            .unwrap();
        let Sleeps::Sleep(run) = feed.next().await.unwrap().unwrap().run;
        assert_eq!(*run.tags, ["late", "extra"]);
        engine.remove_tags(handle.id(), ["extra"]).await.unwrap();
        // Every change comes, the run's start among them; then the one without `extra`.
        loop {
            let Sleeps::Sleep(run) = feed.next().await.unwrap().unwrap().run;
            if *run.tags == ["late"] {
                break;
            }
            assert_eq!(*run.tags, ["late", "extra"]);
        }
        let err = engine
            .add_tags(handle.id(), (0..10).map(|i| i.to_string()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at most 10"), "{err}");
        // Refused: the tags are as they were.
        assert_eq!(*current(&engine, handle.id()).await.tags, ["late"]);
        engine.cancel(handle.id()).await.unwrap();
    }
}

on_every_backend! {
    async fn shutdown_lets_running_attempts_finish_then_cancels_the_rest_at_the_deadline(backend: Backend) {
        let engine = engine(backend).await;
        let quick = engine.trigger::<Sleep>(300).await.unwrap();
        let mut updates = engine.subscribe_to_run::<Sleep>(quick.id()).await.unwrap();
        while updates
            .next()
            .await
            .unwrap()
            .unwrap()
            .run
            .status
            .is_queued()
        {}
        // Still running when shutdown begins: shutdown waits for it.
        assert_eq!(
            current(&engine, quick.id()).await.status,
            RunStatus::Executing
        );
        assert_eq!(engine.shutdown(Duration::from_secs(30)).await, 0);
        assert_eq!(
            current(&engine, quick.id()).await.status,
            RunStatus::Completed
        );
        let refused = engine.trigger::<Sleep>(1).await.unwrap_err();
        assert!(matches!(refused, TriggerError::ShuttingDown), "{refused}");

        let engine = Engine::builder()
            .task::<Sleep>()
            .concurrency(1)
            .build()
            .unwrap();
        let slow = engine.trigger::<Sleep>(60_000).await.unwrap();
        let waiting = engine.trigger::<Sleep>(1).await.unwrap();
        let mut updates = engine.subscribe_to_run::<Sleep>(slow.id()).await.unwrap();
        while updates.next().await.unwrap().unwrap().run.status != RunStatus::Executing {}
        assert_eq!(engine.shutdown(Duration::from_millis(20)).await, 1);
        assert_eq!(
            current(&engine, slow.id()).await.status,
            RunStatus::Canceled
        );
        // The slot the canceled run freed does not start the queued one.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            current(&engine, waiting.id()).await.status,
            RunStatus::Queued
        );
    }
}

/// Returns the length of its payload.
#[task(id = "measure")]
async fn measure(text: String) -> Result<usize, String> {
    Ok(text.len())
}

on_every_backend! {
    async fn a_payload_of_several_mebibytes_goes_through_trigger_execution_and_subscription(backend: Backend) {
        let engine = backend.builder().await.task::<Measure>().build().unwrap();
        let text = "x".repeat(8 * 1024 * 1024);
        let handle = engine.trigger::<Measure>(text.clone()).await.unwrap();
        // From the handle's cursor, which precedes the run's creation.
        let updates = engine.subscribe(Scope::Run(handle.id().clone()), handle.cursor());
        let runs: Vec<_> = updates
            .await
            .unwrap()
            .until_finished()
            .typed::<Measure>()
            .map(|u| u.unwrap().run)
            .collect()
            .await;
        let last = runs.last().unwrap();
        assert_eq!(last.payload, text);
        assert_eq!(last.output, Some(text.len()));
        let over = "x".repeat(10 * 1024 * 1024);
        assert!(matches!(
            engine.trigger::<Measure>(over).await.unwrap_err(),
            TriggerError::PayloadTooLarge { .. }
        ));
    }
}

on_every_backend! {
    async fn a_batch_may_mix_tasks_and_its_feed_types_each_run(backend: Backend) {
        let engine = engine(backend).await;
        let batch = engine
            .batch_trigger_mixed([
                runcast::BatchItem::new::<Double>(21, TriggerOptions::default()),
                runcast::BatchItem::new::<Flaky>((), TriggerOptions::default()),
            ])
            .await
            .unwrap();
        let mut feed = engine
            .subscribe_to_batch::<Numbers>(&batch.id)
            .await
            .unwrap();
        let (mut doubled, mut flaky) = (None, None);
        while doubled.is_none() || flaky.is_none() {
            match feed.next().await.unwrap().unwrap().run {
                Numbers::Double(run) if run.status.is_final() => doubled = run.output,
                Numbers::Flaky(run) if run.status.is_final() => flaky = run.output,
                _ => {}
            }
        }
        assert_eq!((doubled, flaky), (Some(42), Some(3)));
        let refused = engine
            .batch_trigger_mixed([
                runcast::BatchItem::new::<Double>(1, TriggerOptions::default()),
                runcast::BatchItem::new::<Elsewhere>(1, TriggerOptions::default()),
            ])
            .await;
        assert!(matches!(
            refused,
            Err(TriggerError::UnknownTask(ref task)) if task == "elsewhere"
        ));
    }
}

#[test]
fn trigger_works_from_a_thread_outside_the_runtime() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = runtime.block_on(engine(Backend::Memory));
    let delayed = TriggerOptions::default()
        .delay(Duration::from_millis(5))
        .ttl(Duration::from_secs(60));
    // Not on the runtime: a plain executor drives the trigger, and the timers it starts run
    // on the engine's runtime.
    let handle = futures::executor::block_on(engine.trigger_with::<Double>(2, delayed)).unwrap();
    let last = runtime
        .block_on(follow::<Double>(&engine, handle.id()))
        .pop()
        .unwrap();
    assert_eq!(last.output, Some(4));
}

on_every_backend! {
    async fn bad_subscriptions_and_oversized_initial_metadata_are_refused(backend: Backend) {
        let engine = engine(backend).await;
        let err = engine
            .subscribe_to_run::<Double>(&RunId::from("run_typo"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no run `run_typo`");
        let mut big = runcast::JsonObject::new();
        big.insert(
            "blob".into(),
            "x".repeat(runcast::MAX_METADATA_BYTES).into(),
        );
        let err = engine
            .trigger_with::<Double>(1, TriggerOptions::default().metadata(big))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TriggerError::Metadata(MetadataError::TooLarge { .. })),
            "{err}"
        );
        assert_eq!(run_count(&engine).await, 0, "nothing was stored");
    }
}

on_every_backend! {
    async fn batch_items_with_idempotency_keys_return_the_runs_the_keys_started(backend: Backend) {
        let engine = engine(backend).await;
        let keyed = |key: &str| TriggerOptions::default().idempotency_key(key);
        let first = engine.trigger_with::<Double>(1, keyed("a")).await.unwrap();
        let batch = engine
            .batch_trigger::<Double>([(1, keyed("a")), (2, keyed("b")), (3, keyed("b"))])
            .await
            .unwrap();
        let ids: Vec<_> = batch.runs.iter().map(|run| run.id().clone()).collect();
        // `a` started a run before; the two `b`s are one new run, in this batch.
        assert_eq!(&ids[0], first.id());
        assert_eq!(ids[1], ids[2]);
        assert_ne!(ids[1], ids[0]);
        // The batch's feed starts before its own first run, not before the earlier run.
        assert!(first.cursor() < batch.cursor);
        assert_eq!(batch.cursor, batch.runs[1].cursor());
        let mut feed = engine
            .subscribe(Scope::Batch(batch.id.clone()), runcast::Cursor::START)
            .await
            .unwrap();
        let only = feed.next().await.unwrap().unwrap();
        assert_eq!(only.run.id, ids[1]);
        assert_eq!(only.run.payload.unwrap().get(), "2");
        let more = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                let update = feed.next().await.unwrap().unwrap();
                if update.run.id != ids[1] {
                    return update;
                }
            }
        })
        .await;
        assert!(more.is_err(), "no other run in the batch: {more:?}");
    }
}

/// Attempts of `held` in flight now, and the most ever at once.
static HELD_NOW: AtomicUsize = AtomicUsize::new(0);
static HELD_MOST: AtomicUsize = AtomicUsize::new(0);
/// Lets waiting `held` attempts finish.
static RELEASE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
/// Held by the test of `held` on one backend while it runs: the backends' tests, run at once,
/// would count each other's attempts.
static HELD_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Counts itself in flight until the test releases it.
#[task(id = "held")]
async fn held(_: u64) -> Result<(), String> {
    let now = HELD_NOW.fetch_add(1, Ordering::SeqCst) + 1;
    HELD_MOST.fetch_max(now, Ordering::SeqCst);
    RELEASE.acquire().await.map_err(|e| e.to_string())?.forget();
    HELD_NOW.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

on_every_backend! {
    async fn at_most_the_concurrency_of_attempts_run_at_once_and_every_queued_run_runs(backend: Backend) {
        let _alone = HELD_TEST.lock().await;
        HELD_MOST.store(0, Ordering::SeqCst);
        let engine = backend.builder().await
            .task::<Held>()
            .concurrency(3)
            .build()
            .unwrap();
        let mut runs = Vec::new();
        for n in 0..50 {
            runs.push(engine.trigger::<Held>(n).await.unwrap());
        }
        tokio::time::timeout(Duration::from_secs(60), async {
            while HELD_NOW.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("three attempts start");
        // Others wait for a free worker, however long the three take.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(HELD_NOW.load(Ordering::SeqCst), 3);
        RELEASE.add_permits(50);
        for run in &runs {
            let last = follow::<Held>(&engine, run.id()).await.pop().unwrap();
            assert_eq!(last.status, RunStatus::Completed);
        }
        assert_eq!(HELD_MOST.load(Ordering::SeqCst), 3);
    }
}

on_every_backend! {
    async fn any_concurrency_setting_builds(backend: Backend) {
        for concurrency in [0, 1, usize::MAX] {
            let engine = backend.builder().await
                .task::<Double>()
                .concurrency(concurrency)
                .build()
                .unwrap();
            let handle = engine.trigger::<Double>(1).await.unwrap();
            assert_eq!(
                follow::<Double>(&engine, handle.id())
                    .await
                    .pop()
                    .unwrap()
                    .output,
                Some(2)
            );
        }
    }
}

/// Returns the tags its context shows.
#[task(id = "echo-tags")]
async fn echo_tags(_: (), ctx: TaskContext) -> Result<Vec<String>, String> {
    Ok(ctx.tags().to_vec())
}

on_every_backend! {
    async fn the_context_shows_the_runs_tags(backend: Backend) {
        let engine = backend.builder().await.task::<EchoTags>().build().unwrap();
        let tagged = TriggerOptions::default().tag("a").tag("b");
        let handle = engine.trigger_with::<EchoTags>((), tagged).await.unwrap();
        let last = follow::<EchoTags>(&engine, handle.id())
            .await
            .pop()
            .unwrap();
        assert_eq!(last.output, Some(vec!["a".to_owned(), "b".to_owned()]));
    }
}

on_every_backend! {
    async fn a_run_subscription_can_outlive_the_runs_completion(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Double>(1).await.unwrap();
        let mut updates = engine
            .subscribe_to_run_forever::<Double>(handle.id())
            .await
            .unwrap();
        while !updates.next().await.unwrap().unwrap().run.status.is_final() {}
        engine
            .update_metadata(
                handle.id(),
                [MetadataOp::Set("child".into(), "done".into())],
            )
            .await
            .unwrap();
        let after = updates.next().await.unwrap().unwrap().run;
        assert_eq!(after.metadata.unwrap()["child"], "done");
    }
}

on_every_backend! {
    async fn a_stalled_subscriber_coalesces_to_the_latest_snapshot_and_keeps_the_final_one(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Chatty>(5_000).await.unwrap();
        let mut stalled = engine
            .subscribe_to_run::<Chatty>(handle.id())
            .await
            .unwrap();
        // It reads until the run waits for the go; then nothing more.
        let mut first = stalled.next().await.unwrap().unwrap();
        while first.run.status != RunStatus::Executing {
            first = stalled.next().await.unwrap().unwrap();
        }
        // Another subscriber reads every change as it comes, meanwhile.
        let mut eager = engine
            .subscribe_to_run::<Chatty>(handle.id())
            .await
            .unwrap();
        let eager = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(update) = eager.next().await {
                let run = update.unwrap().run;
                let i = run
                    .metadata
                    .and_then(|m| m.get("i").and_then(serde_json::Value::as_u64));
                seen.push((i, run.status));
            }
            seen
        });
        // The run goes through 5,000 metadata changes while the first subscriber reads nothing.
        CHATTY_GO.notify_one();
        let finished = async {
            while !current(&engine, handle.id()).await.status.is_final() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), finished)
            .await
            .expect("the engine is not held back by a stalled subscriber");
        let rest: Vec<_> = stalled.map(|u| u.unwrap()).collect().await;
        // Its pending changes coalesced to the run's latest snapshot, the final one, marked.
        assert_eq!(rest.len(), 1, "{rest:?}");
        let last = &rest[0];
        assert!(last.coalesced);
        assert!(last.cursor > first.cursor);
        assert_eq!(
            (last.run.status, last.run.output),
            (RunStatus::Completed, Some(5_000))
        );
        assert_eq!(last.run.metadata.as_ref().unwrap()["i"], 4_999);
        // The eager subscriber saw the changes in order, and the final snapshot last, however
        // many it read on the way.
        let seen = eager.await.unwrap();
        // (The final snapshot repeats the last metadata: a reader that keeps up sees both.)
        let changes = seen.iter().filter(|(_, status)| !status.is_final());
        let values: Vec<u64> = changes.filter_map(|(i, _)| *i).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{:?}", &values[values.len().saturating_sub(5)..]);
        assert_eq!(seen.last(), Some(&(Some(4_999), RunStatus::Completed)));
    }
}

/// Waits until the engine forgot run `id`.
async fn forgotten(engine: &Engine, id: &runcast::RunId) {
    let forgotten = async {
        while engine.latest(id).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), forgotten)
        .await
        .expect("forgotten once its retention ended");
}

on_every_backend! {
    async fn finished_runs_are_forgotten_after_their_retention_and_live_ones_never(backend: Backend) {
        let engine = backend.builder().await
            .task::<Echo>()
            .task::<Sleep>()
            .retention(Duration::from_millis(500))
            .build()
            .unwrap();
        let keyed = TriggerOptions::default()
            .idempotency_key("once")
            .tag("kept");
        let done = engine
            .trigger_with::<Echo>("hi".into(), keyed.clone())
            .await
            .unwrap();
        let live = engine
            .trigger_with::<Sleep>(60_000, TriggerOptions::default().tag("kept"))
            .await
            .unwrap();
        let last = follow::<Echo>(&engine, done.id()).await.pop().unwrap();
        assert_eq!(last.status, RunStatus::Completed);
        // Within its retention, the key still returns the finished run.
        let again = engine
            .trigger_with::<Echo>("hi".into(), keyed.clone())
            .await
            .unwrap();
        assert_eq!(again.id(), done.id());

        forgotten(&engine, done.id()).await;
        assert!(matches!(
            engine.subscribe_to_run::<Echo>(done.id()).await,
            Err(FeedError::UnknownRun(_))
        ));
        // A new tag feed sees only the live run; the key now starts a new run.
        let mut feed = engine
            .subscribe(Scope::Tags(vec!["kept".into()]), runcast::Cursor::START)
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the live run is still kept")
            .unwrap()
            .unwrap();
        assert_eq!(&first.run.id, live.id());
        assert_eq!(first.run.status, RunStatus::Executing);
        let fresh = engine
            .trigger_with::<Echo>("hi".into(), keyed)
            .await
            .unwrap();
        assert_ne!(fresh.id(), done.id());
        engine.cancel(live.id()).await.unwrap();
    }
}

on_every_backend! {
    async fn concurrent_triggers_get_consecutive_numbers_and_one_key_makes_one_run(backend: Backend) {
        let engine = engine(backend).await;
        let numbered = (0..8).map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..250 {
                    ids.push(engine.trigger::<Double>(n).await.unwrap().id().clone());
                }
                ids
            })
        });
        let ids: Vec<_> = join_all(numbered)
            .await
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let mut numbers = Vec::new();
        for id in &ids {
            numbers.push(current(&engine, id).await.number);
        }
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=2_000).collect::<Vec<u64>>());

        let keyed = (0..8).map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let once = TriggerOptions::default().idempotency_key("once");
                let handle = engine.trigger_with::<Echo>("hi".into(), once).await;
                handle.unwrap().id().clone()
            })
        });
        let ids: Vec<_> = join_all(keyed).await.into_iter().flatten().collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(current(&engine, &ids[0]).await.number, 1);
    }
}

on_every_backend! {
    async fn many_keys_raced_from_many_tasks_make_one_run_each(backend: Backend) {
        let engine = engine(backend).await;
        // Eight tasks trigger the same 300 keys, each in its own order.
        let keyed = (0..8).map(|t| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for k in 0..300 {
                    let key = format!("k{}", (k * (t + 1)) % 300);
                    let once = TriggerOptions::default().idempotency_key(key.clone());
                    let handle = engine.trigger_with::<Echo>("hi".into(), once).await;
                    ids.push((key, handle.unwrap().id().clone()));
                }
                ids
            })
        });
        let mut by_key = std::collections::HashMap::new();
        for (key, id) in join_all(keyed).await.into_iter().flat_map(Result::unwrap) {
            let first = by_key.entry(key.clone()).or_insert_with(|| id.clone());
            assert_eq!(*first, id, "{key}");
        }
        let mut numbers = Vec::new();
        for id in by_key.values() {
            numbers.push(current(&engine, id).await.number);
        }
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=300).collect::<Vec<u64>>());
    }
}
