//! The embedded engine: triggering, the run lifecycle, and subscriptions that never miss the
//! first event.
#![allow(clippy::unwrap_used)] // Test helpers fail the test on bad fixtures.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use runcast::{Engine, RunStatus, TaskContext, TriggerError, TriggerOptions, realtime_union, task};

#[task(id = "double")]
async fn double(n: u64, ctx: TaskContext) -> Result<u64, String> {
    assert_eq!(ctx.attempt(), 1);
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

fn engine() -> Engine {
    Engine::builder()
        .task::<Double>()
        .task::<Flaky>()
        .task::<AlwaysFails>()
        .task::<Panics>()
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap()
}

/// Every snapshot of the run until it finishes.
async fn follow<T: runcast::Task>(engine: &Engine, id: &runcast::RunId) -> Vec<runcast::Run<T>> {
    let updates = engine.subscribe_to_run::<T>(id).unwrap();
    updates.map(|u| u.unwrap().run).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_completes_with_its_typed_output() {
    let engine = engine();
    let handle = engine.trigger::<Double>(21).unwrap();
    let runs = follow::<Double>(&engine, handle.id()).await;
    let last = runs.last().unwrap();
    assert_eq!(last.status, RunStatus::Completed);
    assert_eq!(last.output, Some(42));
    assert_eq!(last.number, 1);
    assert!(last.started_at.is_some() && last.finished_at.is_some() && last.queued_at.is_some());
    assert!(last.finished_at >= last.started_at);
    assert!(runs.iter().all(|r| r.payload == 21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_then_the_run_fails_with_the_error() {
    let engine = engine();
    let handle = engine.trigger::<Flaky>(()).unwrap();
    let last = follow::<Flaky>(&engine, handle.id()).await.pop().unwrap();
    assert_eq!((last.status, last.output), (RunStatus::Completed, Some(3)));

    let handle = engine
        .trigger_with::<AlwaysFails>((), TriggerOptions::default().max_attempts(2))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_crashes_the_run_and_the_engine_keeps_running() {
    let engine = engine();
    let crashed = engine.trigger::<Panics>(()).unwrap();
    let last = follow::<Panics>(&engine, crashed.id()).await.pop().unwrap();
    assert_eq!(last.status, RunStatus::Crashed);
    assert_eq!(last.error.unwrap().message, "the task panicked: boom");
    let fine = engine.trigger::<Double>(1).unwrap();
    let last = follow::<Double>(&engine, fine.id()).await.pop().unwrap();
    assert_eq!(last.output, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_right_after_trigger_never_misses_a_run_that_finished_instantly() {
    let engine = engine();
    let runs = (0..2_000u64).map(|i| {
        let engine = engine.clone();
        async move {
            let handle = engine.trigger::<Double>(i).unwrap();
            let last = follow::<Double>(&engine, handle.id()).await.pop().unwrap();
            (last.status, last.output)
        }
    });
    // A missed event would leave a subscription waiting forever: fail instead of hanging.
    let results = tokio::time::timeout(Duration::from_secs(120), join_all(runs))
        .await
        .expect("every subscription saw its run finish");
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(
            result,
            (RunStatus::Completed, Some(2 * i as u64)),
            "run {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_feed_yields_each_task_as_its_variant() {
    let engine = engine();
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Numbers>(["user:7"])
        .unwrap();
    let tagged = TriggerOptions::default().tag("user:7");
    engine.trigger_with::<Double>(5, tagged.clone()).unwrap();
    engine.trigger_with::<Flaky>((), tagged).unwrap();
    engine.trigger::<Double>(6).unwrap(); // untagged: not in the feed
    let (mut doubled, mut flaky) = (None, None);
    while doubled.is_none() || flaky.is_none() {
        match feed.next().await.unwrap().unwrap().run {
            Numbers::Double(run) if run.status.is_final() => doubled = run.output,
            Numbers::Flaky(run) if run.status.is_final() => flaky = run.output,
            Numbers::Double(run) => assert_eq!(run.payload, 5),
            Numbers::Flaky(_) => {}
        }
    }
    assert_eq!((doubled, flaky), (Some(10), Some(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_triggers_are_refused_and_store_nothing() {
    let engine = Engine::builder()
        .task::<Double>()
        .max_payload_bytes(4)
        .build()
        .unwrap();
    let before = engine.hub().cursor();
    let too_large = engine.trigger::<Double>(123_456).unwrap_err();
    assert!(
        matches!(
            too_large,
            TriggerError::PayloadTooLarge { size: 6, limit: 4 }
        ),
        "{too_large}"
    );
    let unknown = engine.trigger::<Elsewhere>(1).unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("task `elsewhere` is not registered"),
        "{unknown}"
    );
    for (tags, expected) in [
        (vec![String::new()], "cannot be empty"),
        (vec!["x".repeat(129)], "at most 128 characters"),
        (vec!["a\nb".into()], "control characters"),
        ((0..11).map(|i| i.to_string()).collect(), "at most 10"),
    ] {
        let mut options = TriggerOptions::default();
        options.tags = tags;
        let err = engine.trigger_with::<Double>(1, options).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let err = engine
        .trigger_with::<Double>(1, TriggerOptions::default().max_attempts(0))
        .unwrap_err();
    assert!(matches!(err, TriggerError::NoAttempts));
    assert_eq!(engine.hub().cursor(), before, "nothing was published");
}

#[test]
fn building_outside_a_tokio_runtime_is_a_clear_error() {
    let err = Engine::builder().build().unwrap_err();
    assert!(err.to_string().contains("within a Tokio runtime"), "{err}");
}
