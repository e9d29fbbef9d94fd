//! Load program for the embedded engine and its fan-out. Prints its figures; asserts nothing
//! about speed. Run with `cargo bench -p runcast --bench engine`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use runcast::{
    Cursor, Engine, FeedError, MetadataOp, Realtime, RunFeed, RunStatus, RunStreamExt, Scope,
    TaskContext, TriggerOptions, realtime_union, task,
};

mod common;
use common::{Hold, Noop, cpu_of, held_runs, rss_of};

/// Writes `n` small chunks (numbers) as fast as it can.
#[task(id = "burst", streams(numbers = u64))]
async fn burst(n: u64, ctx: TaskContext) -> Result<u64, runcast::StreamError> {
    let numbers = ctx.stream(Burst::NUMBERS);
    for i in 0..n {
        numbers.append(&i).await?;
    }
    Ok(n)
}

realtime_union! {
    enum Feed {
        Noop,
    }
}

realtime_union! {
    enum Held {
        Hold,
    }
}

/// A change of a run's metadata: `n` as its progress.
fn progress(n: u64) -> [MetadataOp; 1] {
    [MetadataOp::Set("progress".into(), n.into())]
}

/// The progress a typed `hold` run shows.
fn progress_of(run: &runcast::Run<Hold>) -> u64 {
    let progress = run.metadata.as_ref().and_then(|m| m.get("progress"));
    progress.and_then(serde_json::Value::as_u64).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Change → typed item latency with `subscribers` typed subscriptions on one run: from the
/// call that changes the run's metadata from outside to each subscriber's typed item.
async fn latency(subscribers: usize, changes: usize) {
    let engine = Engine::builder()
        .task::<Hold>()
        .max_subscriptions(usize::MAX)
        .build()
        .unwrap();
    let id = held_runs(&engine, "t", 1).await.pop().unwrap();
    // Each subscriber notes when its typed item of the current change arrived, in nanoseconds
    // since `base`; the last one to arrive wakes the publisher.
    let base = Instant::now();
    let arrived: Arc<Vec<AtomicU64>> =
        Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let remaining = Arc::new(AtomicUsize::new(0));
    let all_arrived = Arc::new(tokio::sync::Notify::new());
    for slot in 0..subscribers {
        let mut feed = engine
            .subscribe(Scope::Run(id.clone()), Cursor::START)
            .await
            .unwrap()
            .typed::<Hold>();
        let (arrived, remaining) = (Arc::clone(&arrived), Arc::clone(&remaining));
        let all_arrived = Arc::clone(&all_arrived);
        tokio::spawn(async move {
            while let Some(update) = feed.next().await {
                let at = base.elapsed().as_nanos() as u64;
                let update = match update {
                    // The engine is dropped at the end of the section: the feed ends.
                    Err(FeedError::Stopped) => break,
                    update => update.unwrap(),
                };
                // The first item is the run as it was before the measured changes.
                if progress_of(&update.run) > 0 {
                    arrived[slot].store(at, Ordering::Relaxed);
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        all_arrived.notify_one();
                    }
                }
            }
        });
    }
    // Let every subscriber read the run's first snapshot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut per_item = Vec::new();
    let mut whole = Vec::new();
    for n in 1..=changes as u64 {
        remaining.store(subscribers, Ordering::Release);
        let sent = base.elapsed();
        engine.update_metadata(&id, progress(n)).await.unwrap();
        all_arrived.notified().await;
        let arrivals = arrived
            .iter()
            .map(|at| Duration::from_nanos(at.load(Ordering::Relaxed)));
        let arrivals: Vec<Duration> = arrivals.map(|at| at - sent).collect();
        whole.push(*arrivals.iter().max().unwrap());
        per_item.extend(arrivals);
    }
    per_item.sort();
    whole.sort();
    println!(
        "latency, {subscribers:>5} subscribers on one run: per item p50 {:?} p99 {:?}; whole fan-out p50 {:?} p99 {:?} max {:?} ({changes} changes)",
        percentile(&per_item, 0.5),
        percentile(&per_item, 0.99),
        percentile(&whole, 0.5),
        percentile(&whole, 0.99),
        whole.last().unwrap(),
    );
}

/// Typed updates delivered per second: `runs` live runs whose metadata changes `changes` times
/// from outside, `subscribers` tag subscribers.
async fn throughput(runs: usize, subscribers: usize, changes: usize) {
    let engine = Engine::builder()
        .task::<Hold>()
        .concurrency(runs + 1)
        .build()
        .unwrap();
    let ids = held_runs(&engine, "t", runs).await;
    let last = ids[0].clone();
    let mut counters = Vec::new();
    for _ in 0..subscribers {
        let mut feed = engine
            .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
            .await
            .unwrap()
            .union::<Held>();
        counters.push(tokio::spawn(async move {
            let mut delivered = 0u64;
            while let Some(update) = feed.next().await {
                let Held::Hold(run) = update.unwrap().run;
                delivered += 1;
                // The last change: every subscriber sees it, as the latest snapshot of its run.
                if progress_of(&run) == u64::MAX {
                    break;
                }
            }
            delivered
        }));
    }
    let clock = Instant::now();
    for n in 0..changes {
        engine
            .update_metadata(&ids[n % runs], progress(n as u64 + 1))
            .await
            .unwrap();
        if n % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    engine
        .update_metadata(&last, progress(u64::MAX))
        .await
        .unwrap();
    let mut delivered = 0;
    for counter in counters {
        delivered += counter.await.unwrap();
    }
    let elapsed = clock.elapsed();
    println!(
        "throughput, {runs} runs changing {changes} times, {subscribers} tag subscribers: {delivered} typed updates delivered in {elapsed:?} = {:.0}/s ({:.0} changes/s published)",
        delivered as f64 / elapsed.as_secs_f64(),
        changes as f64 / elapsed.as_secs_f64(),
    );
}

async fn idle_subscription_memory(count: usize) {
    let engine = Engine::builder().build().unwrap();
    let before = rss_of("self");
    let mut subs = Vec::with_capacity(count);
    for i in 0..count {
        let scope = Scope::Tags(vec![format!("idle-{i}")]);
        subs.push(engine.subscribe(scope, Cursor::START).await.unwrap());
    }
    let after = rss_of("self");
    println!(
        "memory, {count} idle subscriptions: {:.1} MiB, {} bytes each",
        (after - before) as f64 / (1024.0 * 1024.0),
        (after - before) / count
    );
    drop(subs);
}

/// Triggers per second, and completed runs per second, of `runs` no-op runs followed by a tag
/// subscriber; `place` says where the triggering code runs.
async fn engine_throughput(runs: u64, place: &str) {
    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Feed>(["bench"])
        .await
        .unwrap();
    let tagged = TriggerOptions::default().tag("bench");
    let cpu_before = cpu_of("self");
    let clock = Instant::now();
    for n in 0..runs {
        engine
            .trigger_with::<Noop>(n, tagged.clone())
            .await
            .unwrap();
    }
    let triggered = clock.elapsed();
    let mut completed = 0;
    while completed < runs {
        let Feed::Noop(run) = feed.next().await.unwrap().unwrap().run;
        if run.status == RunStatus::Completed {
            completed += 1;
        }
    }
    let elapsed = clock.elapsed();
    let cpu_used = cpu_of("self") - cpu_before;
    println!(
        "engine, {runs} no-op runs triggered from {place}: {:.0} triggers/s; all completed in {elapsed:?} = {:.0} completed runs/s, {:.1} µs of CPU each",
        runs as f64 / triggered.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        cpu_used.as_secs_f64() * 1e6 / runs as f64,
    );
}

/// Typed chunks delivered per second from one writer to `subscribers` subscribers.
async fn chunk_throughput(subscribers: usize, chunks: u64) {
    let engine = Engine::builder()
        .task::<Burst>()
        .max_stream_bytes(usize::MAX)
        .build()
        .unwrap();
    let clock = Instant::now();
    let handle = engine.trigger::<Burst>(chunks).await.unwrap();
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let feed = engine.subscribe(Scope::Run(handle.id().clone()), handle.cursor());
        let mut feed = feed.await.unwrap().with_streams().typed::<Burst>();
        readers.push(tokio::spawn(async move {
            let mut received = 0u64;
            while received < chunks {
                if let Realtime::Chunk(chunk) = feed.next().await.unwrap().unwrap() {
                    let BurstChunk::Numbers(n) = chunk.data;
                    assert_eq!(n, received, "in order, none lost");
                    received += 1;
                }
            }
            received
        }));
    }
    let mut delivered = 0;
    for reader in readers {
        delivered += reader.await.unwrap();
    }
    let elapsed = clock.elapsed();
    println!(
        "chunks, 1 writer, {subscribers:>3} subscribers: {delivered} typed chunks delivered in {elapsed:?} = {:.0}/s",
        delivered as f64 / elapsed.as_secs_f64(),
    );
}

/// Memory of subscribers that lag `chunks` chunks behind, by resident memory with and without
/// `lagging` of them: the chunks are the hub's either way. Each is measured twice, and the
/// second figures kept, so that both reuse memory freed by an earlier engine alike.
async fn lagging_memory(lagging: usize, chunks: u64) {
    let mut per_run = Vec::new();
    for subscribers in [0, lagging, 0, lagging] {
        let engine = Engine::builder()
            .task::<Burst>()
            .max_stream_bytes(usize::MAX)
            .build()
            .unwrap();
        let handle = engine.trigger::<Burst>(chunks).await.unwrap();
        let mut feeds = Vec::new();
        for _ in 0..subscribers {
            let feed = engine.subscribe(Scope::Run(handle.id().clone()), handle.cursor());
            feeds.push(feed.await.unwrap().with_streams().typed::<Burst>());
        }
        // Each reads one item, then lags while the run writes every chunk.
        for feed in &mut feeds {
            feed.next().await.unwrap().unwrap();
        }
        let before = rss_of("self");
        while !engine
            .latest(handle.id())
            .await
            .unwrap()
            .run
            .status
            .is_final()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        per_run.push(rss_of("self").saturating_sub(before));
        // Then they catch up, losing nothing.
        for feed in &mut feeds {
            let mut received = 0;
            while received < chunks {
                if let Realtime::Chunk(_) = feed.next().await.unwrap().unwrap() {
                    received += 1;
                }
            }
        }
    }
    // A subscriber holding each chunk it has not read would hold at least a pointer (16 bytes)
    // per chunk: `lagging * chunks * 16` bytes in all.
    let proportional = lagging as f64 * chunks as f64 * 16.0;
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    println!(
        "memory, {lagging} subscribers lagging {chunks} chunks: resident memory grew {:.1} MiB during the writes without them and {:.1} MiB with them (holding each unread chunk would take at least {:.0} MiB)",
        mib(per_run[2] as f64),
        mib(per_run[3] as f64),
        mib(proportional),
    );
}

/// Triggers per second of runs delayed past the measurement: the cost of a trigger alone,
/// without workers executing runs on the other core meanwhile.
async fn trigger_alone(runs: u64) {
    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let delayed = TriggerOptions::default()
        .tag("bench")
        .delay(Duration::from_secs(3600));
    let before = rss_of("self");
    let cpu_before = cpu_of("self");
    let clock = Instant::now();
    for n in 0..runs {
        engine
            .trigger_with::<Noop>(n, delayed.clone())
            .await
            .unwrap();
    }
    let elapsed = clock.elapsed();
    let cpu_used = cpu_of("self") - cpu_before;
    let after = rss_of("self");
    println!(
        "engine, {runs} delayed runs (none executing): {:.0} triggers/s, {:.1} µs of CPU each; {} bytes of resident memory each",
        runs as f64 / elapsed.as_secs_f64(),
        cpu_used.as_secs_f64() * 1e6 / runs as f64,
        (after - before) / runs as usize,
    );
}

fn main() {
    // `cargo bench --bench engine -- throughput` runs only the sections whose name contains
    // one of the arguments.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // First, before other allocations leave freed memory for it to reuse.
        if wanted("memory") {
            idle_subscription_memory(100_000).await;
        }
        if wanted("latency") {
            latency(1, 2_000).await;
            latency(1_000, 100).await;
            latency(10_000, 100).await;
        }
        if wanted("throughput") {
            throughput(1_000, 100, 200_000).await;
        }
        if wanted("engine") {
            // From a thread outside the runtime's workers, which it shares two cores with.
            engine_throughput(100_000, "block_on's thread").await;
            // From a task on the runtime, as a request handler would.
            let spawned = engine_throughput(100_000, "a runtime task");
            tokio::spawn(spawned).await.unwrap();
        }
        if wanted("engine, delayed") {
            trigger_alone(100_000).await;
        }
        if wanted("chunks") {
            chunk_throughput(1, 1_000_000).await;
            chunk_throughput(100, 100_000).await;
        }
        if wanted("lag") {
            lagging_memory(100, 100_000).await;
        }
    });
}
