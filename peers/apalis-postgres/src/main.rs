//! apalis-postgres 1.0 on the same work as the Graphile Worker peer (`peers/graphile/bench.mjs`),
//! on the same Postgres server:
//!
//! - runs: 5,000 no-op jobs pushed in batches of 500 (`TaskSink::push_bulk`, one multi-row
//!   INSERT per batch) by this process, executed by two worker processes (this program again,
//!   with `APALIS_BENCH_ROLE=worker`), timed from the first push until the workers have reported
//!   5,000 completions;
//! - start: 1,000 jobs pushed one at a time, 100 per second, each carrying its push time in
//!   microseconds since the epoch; the worker prints `start <now - sent>` when the job starts:
//!   p50, p99, max.
//!
//! Each worker: one apalis worker over `PostgresStorage` (queue `bench`, `batch_size` 500,
//! other `Config` defaults), woken by `LISTEN apalis::job::insert` (the crate's `Pubsub`, its
//! pending notifications coalesced: see `Coalesce`) with a 2 s interval poll as a fallback,
//! `.concurrency(24)`, `.parallelize(tokio::spawn)`, a pool of at most 25 connections. It
//! prints `ready` when the worker starts, then `done N` (its running count) for every success
//! event.
//!
//! Run: `DATABASE_URL=postgresql://user@host/postgres cargo run --release` (a fresh database:
//! it drops and creates `apalis_bench` on the server).

use std::error::Error;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::{
    BoxDynError, Event, EventListenerExt, ParallelizeExt, PollWith, Strategy, TaskSink,
    WorkerBuilder, WorkerBuilderExt,
};
use apalis_postgres::{Config, PgConnectOptions, PostgresStorage, Pubsub};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const RUNS: u64 = 5_000;
const BATCH: u64 = 500;
const STARTS: usize = 1_000;
const DATABASE: &str = "apalis_bench";
const QUEUE: &str = "bench";
/// Worker settings, after Graphile Worker's performance page as used by the Graphile peer
/// (concurrentJobs 24, maxPoolSize 25, localQueue 500).
const CONCURRENCY: usize = 24;
const POOL: u32 = 25;
const FETCH_BATCH: usize = 500;
/// Fallback poll besides LISTEN/NOTIFY, as Graphile Worker's default pollInterval.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The jobs: one queue, one type, as the Graphile peer's two task identifiers in one runner.
#[derive(Debug, Serialize, Deserialize)]
enum Job {
    Noop(u64),
    Stamp { sent: u64 },
}

/// Microseconds since the epoch, comparable across processes on this machine.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn config() -> Config {
    Config::default().queue(QUEUE).batch_size(FETCH_BATCH)
}

fn bench_options() -> Result<PgConnectOptions> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to a Postgres server whose user may create databases")?;
    let server: PgConnectOptions = url.parse()?;
    Ok(server)
}

/// The notifications of `Pubsub`, all those pending taken at once and reported as one, so that
/// the stream is always left registered for the next. `PollWith` polls its strategy once per
/// `poll_next` and the crate's `Pubsub` yields one notification (one per inserted row) per poll:
/// after 5,000 inserts each worker is left with a backlog, each poll takes one, and a stream that
/// returned `Ready` has not registered a waker, so an idle worker is woken only by its next
/// heartbeat (30 s). Measured: start p50 of about 23 s without this.
struct Coalesce<S>(S);

impl<S: Stream + Unpin> Stream for Coalesce<S> {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let mut any = false;
        loop {
            match Pin::new(&mut self.0).poll_next(cx) {
                Poll::Ready(Some(_)) => any = true,
                Poll::Ready(None) => return Poll::Ready(if any { Some(()) } else { None }),
                Poll::Pending => {
                    return if any {
                        Poll::Ready(Some(()))
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
    }
}

async fn handle(job: Job) -> std::result::Result<(), BoxDynError> {
    if let Job::Stamp { sent } = job {
        println!("start {}", now_micros() as i64 - sent as i64);
    }
    Ok(())
}

async fn worker() -> Result<()> {
    let options = bench_options()?.database(DATABASE);
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        .connect_with(options)
        .await?;
    let storage = PostgresStorage::<Job>::new(&pool).with_config(config());
    let pubsub = Pubsub::new(pool.clone(), QUEUE.to_owned());
    // `APALIS_BENCH_RAW_PUBSUB=1`: the crate's `Pubsub` as `with_pubsub` uses it, one
    // notification taken per poll (see `Coalesce`).
    let strategy = if std::env::var_os("APALIS_BENCH_RAW_PUBSUB").is_some() {
        Strategy::new().stream(pubsub)
    } else {
        Strategy::new().stream(Coalesce(pubsub))
    }
    .interval(POLL_INTERVAL);
    let backend = PollWith::new(storage, strategy);
    let done = AtomicU64::new(0);
    let worker = WorkerBuilder::new(format!("bench-worker-{}", std::process::id()).as_str())
        .backend(backend)
        .concurrency(CONCURRENCY)
        .parallelize(tokio::spawn)
        .on_event(move |_, event| match event {
            Event::Start => println!("ready"),
            Event::Success(_) => {
                // Every completion is reported: a worker's count need not be a round number
                // when the last job is done.
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                println!("done {n}");
            }
            Event::Error(error) => eprintln!("worker error: {error}"),
            _ => {}
        })
        .build(handle);
    worker.run().await?;
    Ok(())
}

/// A line from a worker, stamped when this process read it.
enum Line {
    Ready,
    Done(usize, u64, Instant),
    Start(i64),
}

fn start_worker(index: usize, lines: mpsc::UnboundedSender<Line>) -> Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .env("APALIS_BENCH_ROLE", "worker")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let at = Instant::now();
            let parsed = if line == "ready" {
                Some(Line::Ready)
            } else if let Some(n) = line.strip_prefix("done ") {
                n.parse().ok().map(|n| Line::Done(index, n, at))
            } else if let Some(us) = line.strip_prefix("start ") {
                us.parse().ok().map(Line::Start)
            } else {
                None
            };
            match parsed {
                Some(parsed) => {
                    if lines.send(parsed).is_err() {
                        break;
                    }
                }
                None => eprintln!("worker {index}: {line}"),
            }
        }
    });
    Ok(child)
}

async fn database() -> Result<PgPool> {
    let server = bench_options()?;
    let mut conn = PgConnection::connect_with(&server).await?;
    // FORCE: a worker left over from an interrupted run must not keep the drop from happening.
    sqlx::raw_sql("DROP DATABASE IF EXISTS apalis_bench WITH (FORCE)")
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql("CREATE DATABASE apalis_bench")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(server.database(DATABASE))
        .await?;
    PostgresStorage::setup(&pool).await?;
    Ok(pool)
}

async fn parent() -> Result<()> {
    let pool = database().await?;
    let mut storage = PostgresStorage::<Job>::new(&pool).with_config(config());

    let (sender, mut lines) = mpsc::unbounded_channel();
    let mut workers = vec![start_worker(0, sender.clone())?, start_worker(1, sender)?];
    let mut ready = 0;
    while ready < workers.len() {
        match lines.recv().await.ok_or("a worker exited")? {
            Line::Ready => ready += 1,
            _ => return Err("a line from a worker before it was ready".into()),
        }
    }

    // runs
    let clock = Instant::now();
    let collect = tokio::spawn(async move {
        let mut counts = [0u64; 2];
        loop {
            match tokio::time::timeout(Duration::from_secs(120), lines.recv()).await {
                Ok(Some(Line::Done(i, n, at))) => {
                    counts[i] = counts[i].max(n);
                    if counts.iter().sum::<u64>() >= RUNS {
                        return Ok((lines, counts, at));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("workers exited after {counts:?} completions")),
                Err(_) => return Err(format!("stalled after {counts:?} completions")),
            }
        }
    });
    for batch in 0..RUNS / BATCH {
        let jobs = (batch * BATCH..(batch + 1) * BATCH)
            .map(Job::Noop)
            .collect();
        storage.push_bulk(jobs).await?;
    }
    let pushed = clock.elapsed();
    let (mut lines, counts, last) = collect.await??;
    let done = last.duration_since(clock);
    println!(
        "apalis-postgres runs: {RUNS} no-op jobs pushed in batches of {BATCH} at {:.0}/s, completed by 2 worker processes at {:.0}/s",
        RUNS as f64 / pushed.as_secs_f64(),
        RUNS as f64 / done.as_secs_f64(),
    );
    println!(
        "apalis-postgres runs: completions per worker {} + {}, the last after {:.1} ms",
        counts[0],
        counts[1],
        done.as_secs_f64() * 1e3,
    );

    // start
    let collect = tokio::spawn(async move {
        let mut starts = Vec::with_capacity(STARTS);
        while starts.len() < STARTS {
            match tokio::time::timeout(Duration::from_secs(60), lines.recv()).await {
                Ok(Some(Line::Start(us))) => starts.push(us),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("workers exited after {} starts", starts.len())),
                Err(_) => return Err(format!("stalled after {} starts", starts.len())),
            }
        }
        Ok(starts)
    });
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..STARTS {
        ticks.tick().await;
        storage.push(Job::Stamp { sent: now_micros() }).await?;
    }
    let mut starts = collect.await??;
    starts.sort_unstable();
    let at = |q: f64| starts[((starts.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "apalis-postgres start: push -> job start in a worker process, {STARTS} jobs at 100/s: p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0),
    );

    for worker in &mut workers {
        worker.kill().await?;
    }
    pool.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var("APALIS_BENCH_ROLE").as_deref() == Ok("worker") {
        worker().await
    } else {
        parent().await
    }
}
