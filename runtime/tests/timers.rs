//! The engine's timers. First their exact times on the embedded engine, pinned with Tokio's
//! paused clock: the clock only moves when every task waits, straight to the next timer, so
//! the times seen here are exactly the timers' own. Then their promises on every backend
//! (`on_every_backend!`), in real time with short timers: a store's I/O does not run on a
//! paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail the test on bad fixtures.

use std::time::Duration;

use futures::StreamExt;
use runcast::prelude::*;
use runcast::{Cursor, Engine, FeedError, RunFeed, Scope, TriggerOptions};
use tokio::time::Instant;

mod common;
use common::backend::Backend;

#[task(id = "fails")]
async fn fails(_: ()) -> Result<(), String> {
    Err("no luck".into())
}

#[task(id = "sleeps")]
async fn sleeps(secs: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(secs)
}

#[task(id = "panics")]
async fn panics(_: ()) -> Result<(), String> {
    panic!("out of luck")
}

#[task(id = "not-a-number")]
async fn not_a_number(_: ()) -> Result<f64, String> {
    // Written as JSON `null`, which does not read back as a number.
    Ok(f64::NAN)
}

fn engine() -> Engine {
    engine_with(1)
}

/// The tasks of this file, retried after 1 s, `concurrency` attempts at once.
fn engine_with(concurrency: usize) -> Engine {
    Engine::builder()
        .task::<Fails>()
        .task::<Sleeps>()
        .task::<NotANumber>()
        .task::<Panics>()
        .retry_delay(Duration::from_secs(1))
        .concurrency(concurrency)
        .build()
        .unwrap()
}

/// Each status the run passes through, with the time since `start` at which it was seen.
async fn timeline<T: Task>(
    engine: &Engine,
    run: &runcast::RunHandle<T>,
    start: Instant,
) -> Vec<(RunStatus, Duration)> {
    let updates = engine.subscribe_to_run(run).await.unwrap();
    updates
        .map(|u| (u.unwrap().run.status, start.elapsed()))
        .collect()
        .await
}

#[tokio::test(start_paused = true)]
async fn retries_wait_twice_as_long_each_time_up_to_thirty_seconds() {
    let engine = engine();
    let start = Instant::now();
    let run = engine
        .trigger_with::<Fails>((), TriggerOptions::default().max_attempts(8))
        .await
        .unwrap();
    let seen = timeline(&engine, &run, start).await;
    let started: Vec<u64> = seen
        .iter()
        .filter(|(status, _)| *status == RunStatus::Executing)
        .map(|(_, at)| at.as_secs())
        .collect();
    // Backoffs of 1, 2, 4, 8, 16, then 30 (not 32), 30 s.
    assert_eq!(started, [0, 1, 3, 7, 15, 31, 61, 91]);
    assert_eq!(seen.last().unwrap().0, RunStatus::Failed);
    let failed = engine.wait(&run).await.unwrap();
    assert_eq!(failed.error.unwrap().message, "no luck");
}

#[tokio::test(start_paused = true)]
async fn a_queued_run_expires_when_its_ttl_ends_before_a_worker_is_free() {
    let engine = engine();
    let start = Instant::now();
    // The only worker is busy for 60 s.
    let busy = engine.trigger::<Sleeps>(60).await.unwrap();
    let waiting = engine
        .trigger_with::<Sleeps>(1, TriggerOptions::default().ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    let seen = timeline(&engine, &waiting, start).await;
    assert_eq!(
        seen,
        [
            (RunStatus::Queued, Duration::ZERO),
            (RunStatus::Expired, Duration::from_secs(5))
        ]
    );
    let expired = engine.wait(&waiting).await.unwrap();
    assert!(expired.expired_at.is_some() && expired.started_at.is_none());
    // The worker then finishes the busy run, and never starts the expired one.
    let done = engine.wait(&busy).await.unwrap();
    assert_eq!(
        (done.status, start.elapsed().as_secs()),
        (RunStatus::Completed, 60)
    );
    assert_eq!(
        engine.wait(&waiting).await.unwrap().status,
        RunStatus::Expired
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_is_stopped_at_its_max_duration_and_not_retried() {
    let engine = engine();
    let start = Instant::now();
    let limited = TriggerOptions::default().max_duration(Duration::from_secs(2));
    let run = engine.trigger_with::<Sleeps>(3_600, limited).await.unwrap();
    let seen = timeline(&engine, &run, start).await;
    assert_eq!(
        seen,
        [
            (RunStatus::Queued, Duration::ZERO),
            (RunStatus::Executing, Duration::ZERO),
            (RunStatus::TimedOut, Duration::from_secs(2))
        ]
    );
    let timed_out = engine.wait(&run).await.unwrap();
    assert!(
        timed_out
            .error
            .unwrap()
            .message
            .contains("maximum duration of 2s")
    );
}

#[tokio::test(start_paused = true)]
async fn timers_fire_at_their_own_times_whatever_order_they_start_in() {
    let engine = engine();
    let start = Instant::now();
    let delay = |secs| TriggerOptions::default().delay(Duration::from_secs(secs));
    let mut runs = Vec::new();
    for secs in [90, 60] {
        runs.push(engine.trigger_with::<Sleeps>(0, delay(secs)).await.unwrap());
    }
    // The timers wait for the earliest, 60 s; one started now, due before it, still fires on
    // time, and so does one due at the same time as another.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for secs in [20, 50, 80] {
        runs.push(engine.trigger_with::<Sleeps>(0, delay(secs)).await.unwrap());
    }
    let timelines = runs.iter().map(|run| timeline(&engine, run, start));
    let queued_at: Vec<_> = futures::future::join_all(timelines)
        .await
        .into_iter()
        .map(|seen| {
            let queued = seen.iter().find(|(status, _)| *status == RunStatus::Queued);
            queued.unwrap().1
        })
        .collect();
    let secs = [90, 60, 30, 60, 90].map(Duration::from_secs);
    assert_eq!(queued_at, secs);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_run_is_queued_when_its_delay_ends() {
    let engine = engine();
    let start = Instant::now();
    let later = TriggerOptions::default().delay(Duration::from_secs(90));
    let run = engine.trigger_with::<Sleeps>(1, later).await.unwrap();
    let seen = timeline(&engine, &run, start).await;
    let secs: Vec<_> = seen.iter().map(|(s, at)| (*s, at.as_secs())).collect();
    assert_eq!(
        secs,
        [
            (RunStatus::Delayed, 0),
            (RunStatus::Queued, 90),
            (RunStatus::Executing, 90),
            (RunStatus::Completed, 91)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_run_is_kept_for_its_whole_retention_and_then_forgotten() {
    let retention = Duration::from_secs(10);
    let engine = Engine::builder()
        .task::<Sleeps>()
        .retention(retention)
        .build()
        .unwrap();
    // Finishes between two wake-ups of the loop that forgets runs (one retention apart while
    // idle), so forgetting it at the next wake-up would be too early.
    tokio::time::sleep(retention / 2).await;
    let run = engine.trigger::<Sleeps>(1).await.unwrap();
    let done = engine.wait(&run).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let finished = Instant::now();
    while engine.latest(run.id()).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let kept = finished.elapsed();
    assert!(
        kept >= retention && kept <= retention + Duration::from_millis(2),
        "forgotten {kept:?} after it finished"
    );
}

#[task(id = "naps")]
async fn naps(ms: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// The tasks of this file on `backend`, retried after `retry`, `concurrency` attempts at once.
async fn engine_on(backend: Backend, concurrency: usize, retry: Duration) -> Engine {
    (backend.builder().await)
        .task::<Fails>()
        .task::<Naps>()
        .task::<NotANumber>()
        .task::<Panics>()
        .retry_delay(retry)
        .concurrency(concurrency)
        .build()
        .unwrap()
}

/// Whether `at` is at or after `due`, and not more than a second late (a store's timers
/// fire within half a second in any process, and on time in the one that set them).
fn on_time(at: Duration, due: Duration) -> bool {
    at >= due && at < due + Duration::from_secs(1)
}

on_every_backend! {
    async fn retries_wait_twice_as_long_each_time(backend: Backend) {
        let engine = engine_on(backend, 1, Duration::from_millis(100)).await;
        let four = TriggerOptions::default().max_attempts(4);
        let run = engine.trigger_with::<Fails>((), four).await.unwrap();
        // The times the store gave the changes, not when this feed saw them (a change may
        // reach it late, which would shorten the next wait as seen here).
        let seen: Vec<_> = (engine.subscribe_to_run(&run).await.unwrap())
            .map(|u| {
                let run = u.unwrap().run;
                (run.status, run.updated_at)
            })
            .collect()
            .await;
        let started: Vec<_> = (seen.iter())
            .filter(|(status, _)| *status == RunStatus::Executing)
            .map(|(_, at)| *at)
            .collect();
        assert_eq!(started.len(), 4, "{seen:?}");
        // Backoffs of 100, 200, 400 ms after each failure, so at least as long after the
        // attempt before started (timestamps keep milliseconds: 1 ms for their rounding).
        for (pair, backoff) in started.windows(2).zip([100, 200, 400]) {
            let waited = pair[1].saturating_duration_since(pair[0]) + Duration::from_millis(1);
            assert!(on_time(waited, Duration::from_millis(backoff)), "{seen:?}");
        }
        assert_eq!(seen.last().unwrap().0, RunStatus::Failed);
    }

    async fn a_queued_run_expires_at_its_ttl_while_the_worker_is_busy(backend: Backend) {
        let engine = engine_on(backend, 1, Duration::from_millis(100)).await;
        let start = Instant::now();
        let busy = engine.trigger::<Naps>(1_500).await.unwrap();
        let ttl = TriggerOptions::default().ttl(Duration::from_millis(300));
        let waiting = engine.trigger_with::<Naps>(1, ttl).await.unwrap();
        let seen = timeline(&engine, &waiting, start).await;
        let statuses: Vec<_> = seen.iter().map(|(status, _)| *status).collect();
        assert_eq!(statuses, [RunStatus::Queued, RunStatus::Expired]);
        assert!(on_time(seen[1].1, Duration::from_millis(300)), "{seen:?}");
        let expired = engine.wait(&waiting).await.unwrap();
        assert!(expired.expired_at.is_some() && expired.started_at.is_none());
        // The worker then finishes the busy run, and never starts the expired one.
        assert_eq!(engine.wait(&busy).await.unwrap().status, RunStatus::Completed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = engine.latest(waiting.id()).await.unwrap().run;
        assert_eq!(after.status, RunStatus::Expired);
    }

    async fn an_attempt_stops_at_its_max_duration_and_is_not_retried(backend: Backend) {
        let engine = engine_on(backend, 1, Duration::from_millis(100)).await;
        let start = Instant::now();
        let limited = TriggerOptions::default().max_duration(Duration::from_millis(300));
        let run = engine.trigger_with::<Naps>(60_000, limited).await.unwrap();
        let seen = timeline(&engine, &run, start).await;
        let statuses: Vec<_> = seen.iter().map(|(status, _)| *status).collect();
        assert_eq!(
            statuses,
            [RunStatus::Queued, RunStatus::Executing, RunStatus::TimedOut]
        );
        // By the store's times (a feed may see the start late): timestamps keep milliseconds.
        let timed_out = engine.wait(&run).await.unwrap();
        let ran = (timed_out.finished_at.unwrap())
            .saturating_duration_since(timed_out.started_at.unwrap());
        let ran = ran + Duration::from_millis(1);
        assert!(on_time(ran, Duration::from_millis(300)), "{seen:?} {ran:?}");
        let message = timed_out.error.unwrap().message;
        assert!(message.contains("maximum duration of 300ms"), "{message}");
    }

    async fn a_delayed_run_is_queued_when_its_delay_ends_then_runs(backend: Backend) {
        let engine = engine_on(backend, 1, Duration::from_millis(100)).await;
        let start = Instant::now();
        let later = TriggerOptions::default().delay(Duration::from_millis(300));
        let run = engine.trigger_with::<Naps>(1, later).await.unwrap();
        let seen = timeline(&engine, &run, start).await;
        let statuses: Vec<_> = seen.iter().map(|(status, _)| *status).collect();
        assert_eq!(
            statuses,
            [RunStatus::Delayed, RunStatus::Queued, RunStatus::Executing, RunStatus::Completed]
        );
        assert!(on_time(seen[1].1, Duration::from_millis(300)), "{seen:?}");
    }

    async fn an_output_that_does_not_read_back_fails_the_run_at_once(backend: Backend) {
        let engine = engine_on(backend, 1, Duration::from_millis(100)).await;
        let run = engine.trigger::<NotANumber>(()).await.unwrap();
        let statuses: Vec<_> = timeline(&engine, &run, Instant::now())
            .await
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        assert_eq!(
            statuses,
            [RunStatus::Queued, RunStatus::Executing, RunStatus::Failed]
        );
        let error = engine.wait(&run).await.unwrap().error.unwrap();
        assert_eq!(error.name.as_deref(), Some("OutputError"));
        let message = "cannot be written as JSON that reads back";
        assert!(error.message.contains(message), "{}", error.message);
    }

    async fn each_final_status_comes_once_and_a_ttl_never_ends_a_started_run(backend: Backend) {
        // TTLs leave an attempt ample time to start (a busy machine may take a while), and
        // the retry comes after them.
        let engine = engine_on(backend, 8, Duration::from_secs(1)).await;
        let ms = Duration::from_millis;
        let mut runs = Vec::new();
        // Executing when its TTL ends: it completes all the same.
        let started = TriggerOptions::default().ttl(ms(500));
        let run = engine.trigger_with::<Naps>(1_000, started).await.unwrap();
        runs.push((run.id().clone(), RunStatus::Completed));
        // Fails twice; its TTL ends between the attempts (at 0.5 s, the second starts at 1 s),
        // when it is not waiting to start.
        let failing = TriggerOptions::default().max_attempts(2).ttl(ms(500));
        let run = engine.trigger_with::<Fails>((), failing).await.unwrap();
        runs.push((run.id().clone(), RunStatus::Failed));
        // Panics in both attempts.
        let crashing = TriggerOptions::default().max_attempts(2);
        let run = engine.trigger_with::<Panics>((), crashing).await.unwrap();
        runs.push((run.id().clone(), RunStatus::Crashed));
        // Runs past its maximum duration; its TTL ends later.
        let limited = TriggerOptions::default().max_duration(ms(600)).ttl(ms(800));
        let run = engine.trigger_with::<Naps>(10_000, limited).await.unwrap();
        runs.push((run.id().clone(), RunStatus::TimedOut));
        // Delayed past its TTL: expires, and its delay's end changes nothing.
        let expiring = TriggerOptions::default().delay(ms(1_500)).ttl(ms(500));
        let run = engine.trigger_with::<Naps>(1, expiring).await.unwrap();
        runs.push((run.id().clone(), RunStatus::Expired));
        let mut feeds = Vec::new();
        for (id, _) in &runs {
            let feed = engine.subscribe(Scope::Run(id.clone()), Cursor::START);
            feeds.push(feed.await.unwrap());
        }
        // Every timer and attempt is over, and a second more for late timers; the feeds end
        // with the engine.
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        engine.shutdown(Duration::from_secs(1)).await;
        for ((id, last), feed) in runs.iter().zip(feeds) {
            let items: Vec<_> = feed.collect().await;
            let (stopped, updates) = items.split_last().unwrap();
            assert!(matches!(stopped, Err(FeedError::Stopped)), "{id}: {stopped:?}");
            let statuses: Vec<RunStatus> = (updates.iter())
                .map(|u| u.as_ref().unwrap().run.status)
                .collect();
            let finals: Vec<_> = statuses.iter().filter(|s| s.is_final()).collect();
            assert_eq!(finals, [last], "{id}: {statuses:?}");
            assert_eq!(statuses.last(), Some(last), "{id}: {statuses:?}");
        }
    }
}
