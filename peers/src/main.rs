//! Load program comparing runcast's embedded engine with its strongest in-process peer, apalis
//! 1.0 on its in-memory storage, and with plain tokio as the limit, on the same work and in one
//! run, always in the order runcast, apalis, tokio:
//!
//! - throughput: 100,000 no-op jobs (payload a `u64`, output the same `u64`) enqueued from one
//!   task while a watcher task learns of each completion; the enqueue rate, completed jobs per
//!   second until the watcher saw the last completion, and the peak resident memory of the
//!   section, each system in a fresh process;
//! - latency: one job at a time, 2,000 times (after 100 unmeasured), from the call that
//!   enqueues it to the caller learning of its completion; p50, p99 and max;
//! - memory, for runcast: resident memory per queued run and per retained finished run;
//!
//! then a summary of the ratios runcast/apalis and runcast/tokio. It prints its figures and
//! asserts nothing about speed.
//!
//! Run with `cargo run --release --manifest-path peers/Cargo.toml`; name sections to run only
//! those, as in `-- latency memory`. Every measurement runs in a child process (this program
//! again, with `--child SYSTEM SECTION`), which prints one `result key=value ...` line that
//! this process reads.
//!
//! This package is its own workspace, excluded from the root one, so `cargo build` and
//! `cargo test --workspace` at the root never compile apalis.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{
    Event, EventListenerExt, MemorySink, MemoryStorage, MemoryStorageError, ParallelizeExt,
    TaskSink, WorkerBuilder, WorkerBuilderExt,
};
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Sink, SinkExt, StreamExt};
use runcast::prelude::*;
use runcast::{Engine, TriggerOptions};
use tokio::sync::mpsc;

/// Jobs enqueued by each throughput section.
const JOBS: u64 = 100_000;
/// Jobs measured one at a time by each latency section.
const LATENCY_JOBS: u64 = 2_000;
/// Jobs run one at a time before those measured, alike for every system, so that the first
/// job's setup (a worker's first poll, lazily grown tables) is not in the maximum.
const WARM_UP: u64 = 100;
/// Runs kept by each of runcast's memory-per-run sections.
const KEPT_RUNS: u64 = 100_000;
/// The names of a latency section's figures: p50, p99, max.
const LATENCY: [&str; 3] = ["p50_s", "p99_s", "max_s"];
/// The systems compared, in the order they always run.
const SYSTEMS: [&str; 3] = ["runcast", "apalis", "tokio"];

#[task(id = "noop")]
async fn noop(n: u64, _ctx: TaskContext) -> Result<u64, String> {
    Ok(n)
}

realtime_union! {
    enum Feed {
        Noop,
    }
}

/// apalis's job: the same no-op.
async fn apalis_noop(n: u64) -> u64 {
    n
}

/// Plain tokio's job: the same no-op.
async fn tokio_noop(n: u64) -> u64 {
    n
}

/// What a child process reports: named figures (durations in seconds, memory in bytes).
type Figures = Vec<(&'static str, f64)>;

// ---------------------------------------------------------------------------------------------
// runcast

/// runcast: every job triggered with the tag `bench`; the watcher is a tag subscription (typed
/// union of the no-op task) counting `COMPLETED` snapshots. It is sent every change of every
/// run (QUEUED, EXECUTING, COMPLETED): that is the feature. A subscriber that falls behind its
/// window (1,024 changes by default) gets the latest snapshot of each run instead, marked
/// coalesced, and never loses a final one: the updates received and those coalesced are
/// reported.
async fn runcast_throughput() -> Figures {
    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Feed>(["bench"])
        .await
        .unwrap();
    let clock = Instant::now();
    let watcher = tokio::spawn(async move {
        let (mut completed, mut updates, mut coalesced) = (0, 0u64, 0u64);
        while completed < JOBS {
            let update = feed.next().await.unwrap().unwrap();
            updates += 1;
            coalesced += u64::from(update.coalesced);
            let Feed::Noop(run) = update.run;
            if run.status == RunStatus::Completed {
                completed += 1;
            }
        }
        (clock.elapsed(), updates, coalesced)
    });
    let tagged = TriggerOptions::default().tag("bench");
    for n in 0..JOBS {
        engine
            .trigger_with::<Noop>(n, tagged.clone())
            .await
            .unwrap();
    }
    let enqueued = clock.elapsed();
    let (done, updates, coalesced) = watcher.await.unwrap();
    vec![
        ("enqueue_s", enqueued.as_secs_f64()),
        ("done_s", done.as_secs_f64()),
        ("updates", updates as f64),
        ("coalesced", coalesced as f64),
    ]
}

/// runcast: `trigger`, then `engine.wait(&handle)`, what a user writes for "trigger and wait"
/// (it subscribes to the run from its current state and returns its final snapshot). Then the
/// same with `subscribe_to_run(&handle)` read until it ends, which shows every state of the
/// run, reported beside it.
async fn runcast_latency() -> Figures {
    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let mut waited = Vec::new();
    for n in 0..WARM_UP + LATENCY_JOBS {
        let sent = Instant::now();
        let handle = engine.trigger::<Noop>(n).await.unwrap();
        let run = engine.wait(&handle).await.unwrap();
        let took = sent.elapsed();
        assert_eq!(run.output, Some(n));
        if n >= WARM_UP {
            waited.push(took);
        }
    }
    let mut followed = Vec::new();
    for n in 0..WARM_UP + LATENCY_JOBS {
        let sent = Instant::now();
        let handle = engine.trigger::<Noop>(n).await.unwrap();
        let mut updates = engine.subscribe_to_run(&handle).await.unwrap();
        let mut last = None;
        while let Some(update) = updates.next().await {
            last = Some(update.unwrap().run);
        }
        let took = sent.elapsed();
        assert_eq!(last.unwrap().output, Some(n));
        if n >= WARM_UP {
            followed.push(took);
        }
    }
    let mut figures = latency_figures(LATENCY, waited);
    figures.extend(latency_figures(
        ["handle_p50_s", "handle_p99_s", "handle_max_s"],
        followed,
    ));
    figures
}

/// runcast: resident memory grown by `KEPT_RUNS` runs that are never started: triggered with a
/// delay of an hour (their status is DELAYED), no subscriber. Each delayed run also has an
/// entry in the engine's timer queue, and the hub keeps its history of changes (the last 4,096
/// by default): both are counted, as they are in any engine holding such runs.
async fn runcast_queued() -> Figures {
    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let delayed = TriggerOptions::default().delay(Duration::from_secs(3600));
    let before = rss();
    for n in 0..KEPT_RUNS {
        engine
            .trigger_with::<Noop>(n, delayed.clone())
            .await
            .unwrap();
    }
    vec![("grew", rss().saturating_sub(before) as f64)]
}

/// runcast: resident memory grown by `KEPT_RUNS` finished runs, kept for the engine's
/// retention (an hour by default). They are triggered 1,000 at a time, each thousand waited for
/// (by a tag subscription counting `COMPLETED`) before the next, so that what the measurement
/// keeps is the finished runs rather than the memory of 100,000 queued at once, freed but still
/// resident. The hub's history of changes (the last 4,096 by default) is counted too.
async fn runcast_retained() -> Figures {
    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Feed>(["bench"])
        .await
        .unwrap();
    let tagged = TriggerOptions::default().tag("bench");
    let before = rss();
    for thousand in 0..KEPT_RUNS / 1_000 {
        for n in thousand * 1_000..(thousand + 1) * 1_000 {
            engine
                .trigger_with::<Noop>(n, tagged.clone())
                .await
                .unwrap();
        }
        let mut completed = 0;
        while completed < 1_000 {
            let Feed::Noop(run) = feed.next().await.unwrap().unwrap().run;
            if run.status == RunStatus::Completed {
                completed += 1;
            }
        }
    }
    drop(feed);
    vec![("grew", rss().saturating_sub(before) as f64)]
}

// ---------------------------------------------------------------------------------------------
// apalis

/// An apalis worker on its in-memory storage, set up as the issue says: `.concurrency(64)`,
/// `.parallelize(tokio::spawn)` (each job on its own tokio task, at most 64 at once), and an
/// `on_event` listener that sends each success event's output (or an error) to the watcher,
/// the returned receiver. Returns the storage to push jobs to.
fn apalis_worker() -> (
    MemoryStorage<u64>,
    mpsc::UnboundedReceiver<Result<u64, String>>,
) {
    // `WorkerBuilder::backend` takes the storage, and `MemoryStorage` is not `Clone` in 1.0:
    // jobs are pushed through a second `MemoryStorage` on the same channel, each made as
    // `MemoryStorage::new` makes one (an unbounded channel whose sender is boxed in a
    // `MemorySink`), through the public `MemoryStorage::new_with`. Each gets its own
    // `MemorySink` over a clone of the sender, not one shared sink: `MemorySink::start_send`
    // `try_lock().unwrap()`s its sink, which would panic whenever the worker's `poll_ready`
    // held that lock at that moment.
    let (sender, receiver) = unbounded();
    let sink = |sender: UnboundedSender<apalis::prelude::Task<u64>>| {
        let sink: Box<
            dyn Sink<apalis::prelude::Task<u64>, Error = MemoryStorageError> + Send + Sync + Unpin,
        > = Box::new(sender.sink_map_err(MemoryStorageError::from));
        MemorySink::new(Arc::new(futures::lock::Mutex::new(sink)))
    };
    let pushed = MemoryStorage::new_with(sink(sender.clone()), futures::stream::empty().boxed());
    let backend = MemoryStorage::new_with(sink(sender), receiver.boxed());
    let (done, completions) = mpsc::unbounded_channel();
    let worker = WorkerBuilder::new("bench")
        .backend(backend)
        .concurrency(64)
        .parallelize(tokio::spawn)
        .on_event(move |_, event| match event {
            Event::Success(output) => {
                let output = output.downcast_ref::<u64>().copied();
                let _ = done.send(output.ok_or_else(|| "a success of another type".to_owned()));
            }
            Event::Error(error) => {
                let _ = done.send(Err(error.to_string()));
            }
            _ => {}
        })
        .build(apalis_noop);
    tokio::spawn(worker.run());
    (pushed, completions)
}

/// apalis: every job pushed to the storage; the watcher counts the success events.
async fn apalis_throughput() -> Figures {
    let (mut storage, mut completions) = apalis_worker();
    let clock = Instant::now();
    let watcher = tokio::spawn(async move {
        for _ in 0..JOBS {
            completions.recv().await.unwrap().unwrap();
        }
        clock.elapsed()
    });
    for n in 0..JOBS {
        storage.push(n).await.unwrap();
    }
    let enqueued = clock.elapsed();
    let done = watcher.await.unwrap();
    vec![
        ("enqueue_s", enqueued.as_secs_f64()),
        ("done_s", done.as_secs_f64()),
    ]
}

/// apalis: push a job, await its success event.
async fn apalis_latency() -> Figures {
    let (mut storage, mut completions) = apalis_worker();
    let mut samples = Vec::new();
    for n in 0..WARM_UP + LATENCY_JOBS {
        let sent = Instant::now();
        storage.push(n).await.unwrap();
        let output = completions.recv().await.unwrap().unwrap();
        let took = sent.elapsed();
        assert_eq!(output, n);
        if n >= WARM_UP {
            samples.push(took);
        }
    }
    latency_figures(LATENCY, samples)
}

// ---------------------------------------------------------------------------------------------
// plain tokio

/// Plain tokio: a task spawned per job sends its output over an unbounded channel; the watcher
/// counts what it receives. No limit on concurrency, no state kept: the limit.
async fn tokio_throughput() -> Figures {
    let (done, mut completions) = mpsc::unbounded_channel();
    let clock = Instant::now();
    let watcher = tokio::spawn(async move {
        for _ in 0..JOBS {
            completions.recv().await.unwrap();
        }
        clock.elapsed()
    });
    for n in 0..JOBS {
        let done = done.clone();
        tokio::spawn(async move {
            let _ = done.send(tokio_noop(n).await);
        });
    }
    let enqueued = clock.elapsed();
    let done = watcher.await.unwrap();
    vec![
        ("enqueue_s", enqueued.as_secs_f64()),
        ("done_s", done.as_secs_f64()),
    ]
}

/// Plain tokio: spawn a job, await its output on the channel.
async fn tokio_latency() -> Figures {
    let (done, mut completions) = mpsc::unbounded_channel();
    let mut samples = Vec::new();
    for n in 0..WARM_UP + LATENCY_JOBS {
        let sent = Instant::now();
        let done = done.clone();
        tokio::spawn(async move {
            let _ = done.send(tokio_noop(n).await);
        });
        let output = completions.recv().await.unwrap();
        let took = sent.elapsed();
        assert_eq!(output, n);
        if n >= WARM_UP {
            samples.push(took);
        }
    }
    latency_figures(LATENCY, samples)
}

// ---------------------------------------------------------------------------------------------
// Figures

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// p50, p99 and max of `samples`, in seconds, under those `names`.
fn latency_figures(names: [&'static str; 3], mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let [p50, p99, max] = names;
    vec![
        (p50, percentile(&samples, 0.5).as_secs_f64()),
        (p99, percentile(&samples, 0.99).as_secs_f64()),
        (max, samples.last().unwrap().as_secs_f64()),
    ]
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The most resident memory this process has had, in bytes (Linux's `VmHWM`).
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib * 1024
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn micros(seconds: f64) -> String {
    format!("{:.1} µs", seconds * 1e6)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// In a child process: runs one system's section on a fresh multi-threaded runtime (one worker
/// thread per core), as a task on it, as a request handler would, and prints its figures on
/// one line. A throughput section also reports the resident memory before it and the peak.
fn child(system: &str, section: &str) {
    type Section = Pin<Box<dyn Future<Output = Figures> + Send>>;
    let run: Section = match (system, section) {
        ("runcast", "throughput") => Box::pin(runcast_throughput()),
        ("runcast", "latency") => Box::pin(runcast_latency()),
        ("runcast", "queued") => Box::pin(runcast_queued()),
        ("runcast", "retained") => Box::pin(runcast_retained()),
        ("apalis", "throughput") => Box::pin(apalis_throughput()),
        ("apalis", "latency") => Box::pin(apalis_latency()),
        ("tokio", "throughput") => Box::pin(tokio_throughput()),
        ("tokio", "latency") => Box::pin(tokio_latency()),
        _ => panic!("no section {section:?} for {system:?}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start_rss = rss();
    let mut figures = runtime.block_on(runtime.spawn(run)).unwrap();
    if section == "throughput" {
        figures.push(("start_rss", start_rss as f64));
        figures.push(("peak_rss", peak_rss() as f64));
    }
    let pairs: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("result {}", pairs.join(" "));
}

/// Runs `system`'s `section` in a fresh child process and reads back its figures.
fn measure(system: &str, section: &str) -> HashMap<String, f64> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--child", system, section])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{system} {section} failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    let line = stdout.lines().find_map(|l| l.strip_prefix("result "));
    let line = line.unwrap_or_else(|| panic!("{system} {section} printed no result: {stdout}"));
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, system, section] = args.as_slice()
        && flag == "--child"
    {
        child(system, section);
        return;
    }
    // `cargo run --release --manifest-path peers/Cargo.toml -- latency` runs only the sections
    // whose name contains one of the arguments.
    let only: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));

    // (system, figure) → value, for the summary.
    let mut kept: HashMap<(&str, &str), f64> = HashMap::new();
    if wanted("throughput") {
        for system in SYSTEMS {
            let r = measure(system, "throughput");
            let jobs_per_s = JOBS as f64 / r["done_s"];
            let watcher = match system {
                "runcast" => format!(
                    "a tag subscription, {} updates received, {} marked coalesced",
                    r["updates"], r["coalesced"],
                ),
                "apalis" => "on_event success events".to_owned(),
                _ => "an mpsc channel".to_owned(),
            };
            println!(
                "throughput, {system}: {JOBS} no-op jobs enqueued from one task at {:.0}/s; the watcher ({watcher}) saw the last completion after {:.1} ms = {jobs_per_s:.0} jobs/s",
                JOBS as f64 / r["enqueue_s"],
                r["done_s"] * 1e3,
            );
            println!(
                "memory, {system}: peak RSS during the throughput section {:.1} MiB ({:.1} MiB at its start, in a fresh process)",
                mib(r["peak_rss"]),
                mib(r["start_rss"]),
            );
            kept.insert((system, "jobs"), jobs_per_s);
            kept.insert((system, "peak"), r["peak_rss"]);
        }
    }
    if wanted("latency") {
        for system in SYSTEMS {
            let r = measure(system, "latency");
            let how = match system {
                "runcast" => "trigger, then engine.wait(&handle)",
                "apalis" => "push, then await the success event",
                _ => "spawn, then await the channel",
            };
            println!(
                "latency, {system} ({how}): p50 {} p99 {} max {} ({LATENCY_JOBS} jobs one at a time)",
                micros(r["p50_s"]),
                micros(r["p99_s"]),
                micros(r["max_s"]),
            );
            if system == "runcast" {
                println!(
                    "latency, runcast (trigger, then subscribe_to_run(&handle) read to its end, every state): p50 {} p99 {} max {} ({LATENCY_JOBS} jobs one at a time)",
                    micros(r["handle_p50_s"]),
                    micros(r["handle_p99_s"]),
                    micros(r["handle_max_s"]),
                );
            }
            kept.insert((system, "p50"), r["p50_s"]);
        }
    }
    if wanted("memory") {
        for (section, what) in [
            (
                "queued",
                "queued runs (delayed an hour, never started, each with its delay's timer)",
            ),
            ("retained", "retained finished runs"),
        ] {
            let grew = measure("runcast", section)["grew"];
            println!(
                "memory, runcast: {KEPT_RUNS} {what}: resident memory grew {:.1} MiB = {:.0} bytes per run, the engine's history of changes (4,096 by default) included",
                mib(grew),
                grew / KEPT_RUNS as f64,
            );
        }
    }
    let ratio = |figure: &str, peer: &str| match (
        kept.get(&("runcast", figure)),
        kept.get(&(peer, figure)),
    ) {
        (Some(ours), Some(theirs)) => format!("{:.2}×", ours / theirs),
        _ => "not measured".to_owned(),
    };
    println!(
        "summary, runcast/apalis: jobs/s {}, p50 latency {}, peak memory {}; runcast/tokio: jobs/s {}, p50 latency {}, peak memory {}",
        ratio("jobs", "apalis"),
        ratio("p50", "apalis"),
        ratio("peak", "apalis"),
        ratio("jobs", "tokio"),
        ratio("p50", "tokio"),
        ratio("peak", "tokio"),
    );
}
