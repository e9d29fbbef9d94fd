//! Load program for the Postgres store. Prints its figures beside the limit measured on the
//! same database in the same run; asserts nothing about speed.
//!
//! ```sh
//! DATABASE_URL="host=/tmp/pg user=runcast dbname=postgres" \
//!     cargo bench -p runcast --features postgres --bench postgres
//! ```
//!
//! Sections (name some to run only those, as in `-- limit changes`):
//! - `limit`: plain `UPDATE … ; NOTIFY` transactions per second from `CONCURRENCY`
//!   connections, and runcast's changes per second (metadata updates of live runs, each one
//!   change with its whole snapshot in the log) from as many tasks, side by side;
//! - `runs`: no-op runs triggered in batches by this process and completed by two worker
//!   processes (this program again), per second, until this process's tag feed saw the last;
//!   then runs triggered one at a time, 100 per second, from the trigger to the start of their
//!   attempt in a worker process (p50, p99, max). `peers/graphile` does the same work with
//!   Graphile Worker, for comparison;
//! - `backlog`: the `runs` section with `BACKLOG` runs, most of which wait while the workers
//!   work: each claim must read the runs it takes, not every run that waits;
//! - `kept`: the `runs` section again, over a run table that already keeps `KEPT` finished
//!   runs (as a retention of an hour would under load, its changes pruned): claims and timers
//!   must read what they take, not the whole table;
//! - `latency`: a change made here, at 1,000 changes per second, to the typed item in a
//!   subscriber process: p50, p99, max;
//! - `fanout`: typed updates per second delivered to 100 tag subscribers in another process.
//!
//! Each section uses a fresh database made on the server (`CREATE DATABASE`), so the user must
//! be allowed to create databases.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use runcast::{
    Engine, MetadataOp, PostgresStore, RunFeed, RunId, RunStatus, RunStreamExt, Scope, TaskContext,
    TriggerOptions, realtime_union, task,
};
use tokio_postgres::NoTls;

mod common;
use common::{Hold, Noop, held_runs};

/// Connections (or tasks) writing at once in `limit`.
const CONCURRENCY: usize = 8;
/// Rounds of `limit`, each measuring the limit, then runcast.
const ROUNDS: usize = 3;
/// How long each writing measurement lasts.
const SPAN: Duration = Duration::from_secs(5);
/// Runs completed in `runs`.
const RUNS: u64 = 5_000;
/// Runs completed in `backlog`.
const BACKLOG: u64 = 40_000;
/// Runs measured one by one in `runs`, from trigger to the start of their attempt.
const STARTS: usize = 1_000;
/// Finished runs the table keeps in `kept`.
const KEPT: i64 = 100_000;
/// Subscribers in `fanout`.
const SUBSCRIBERS: usize = 100;

/// Says how long after `sent` (microseconds since the epoch) its attempt started.
#[task(id = "stamp")]
async fn stamp(sent: u64, _ctx: TaskContext) -> Result<(), String> {
    println!("start {}", now_micros().saturating_sub(sent));
    Ok(())
}

realtime_union! {
    enum Noops {
        Noop,
    }
}

realtime_union! {
    enum Holds {
        Hold,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var("RUNCAST_BENCH_CHILD") {
        let url = std::env::var("RUNCAST_BENCH_URL").unwrap();
        runtime.block_on(child(&role, &url));
        return;
    }
    let Ok(server) = std::env::var("DATABASE_URL") else {
        eprintln!("set DATABASE_URL to a Postgres server whose user may create databases");
        std::process::exit(2);
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    runtime.block_on(async {
        settings(&server).await;
        if wanted("limit") {
            limit(&database(&server, "limit").await).await;
        }
        if wanted("runs") {
            runs(&database(&server, "runs").await, RUNS).await;
        }
        if wanted("backlog") {
            runs(&database(&server, "backlog").await, BACKLOG).await;
        }
        if wanted("kept") {
            let url = database(&server, "kept").await;
            keep_finished(&url).await;
            runs(&url, RUNS).await;
        }
        if wanted("latency") {
            latency(&database(&server, "latency").await).await;
        }
        if wanted("fanout") {
            fanout(&database(&server, "fanout").await).await;
        }
    });
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Prints the server's settings that bear on write speed.
async fn settings(server: &str) {
    let client = connect(server).await;
    let mut line = String::from("server:");
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
        "wal_level",
    ] {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap();
        line.push_str(&format!(" {name}={}", row.get::<_, String>(0)));
    }
    println!("{line}");
}

/// A fresh database for one section; returns its connection string.
async fn database(server: &str, section: &str) -> String {
    let client = connect(server).await;
    let name = format!("runcast_bench_{section}_{}", std::process::id());
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    let mut config: tokio_postgres::Config = server.parse().unwrap();
    config.dbname(&name);
    // tokio-postgres's config has no writer back to a string: rebuild the key=value form.
    let mut url = String::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(host) => url.push_str(&format!("host={host} ")),
            tokio_postgres::config::Host::Unix(path) => {
                url.push_str(&format!("host={} ", path.display()));
            }
        }
    }
    if let Some(port) = config.get_ports().first() {
        url.push_str(&format!("port={port} "));
    }
    if let Some(user) = config.get_user() {
        url.push_str(&format!("user={user} "));
    }
    if let Some(password) = config.get_password() {
        url.push_str(&format!("password={} ", String::from_utf8_lossy(password)));
    }
    url.push_str(&format!("dbname={name}"));
    url
}

/// Counts what `work` does from `CONCURRENCY` tasks during `SPAN`; returns per second.
async fn per_second<F, Fut>(work: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let clock = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY).map(|i| tokio::spawn(work(i))).collect();
    let mut done = 0;
    for task in tasks {
        done += task.await.unwrap();
    }
    done as f64 / clock.elapsed().as_secs_f64()
}

async fn limit(url: &str) {
    let client = connect(url).await;
    client
        .batch_execute(
            "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO counters SELECT g, 0 FROM generate_series(0, 63) g",
        )
        .await
        .unwrap();
    let (engine, ids) = holding(url, "limit", CONCURRENCY).await;
    let ids = Arc::new(ids);
    // Alternating, so that both see the same machine: the ratio of each round, and their
    // median.
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let url = url.to_owned();
        let plain = per_second(move |i| {
            let url = url.clone();
            async move {
                let client = connect(&url).await;
                let (mut done, clock) = (0, Instant::now());
                while clock.elapsed() < SPAN {
                    client
                        .batch_execute(&format!(
                            "BEGIN; UPDATE counters SET n = n + 1 WHERE id = {i}; NOTIFY counters; COMMIT"
                        ))
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            }
        })
        .await;
        let (engine, ids) = (engine.clone(), Arc::clone(&ids));
        let changes = per_second(move |i| {
            let (engine, id) = (engine.clone(), ids[i].clone());
            async move {
                let (mut done, clock) = (0u64, Instant::now());
                while clock.elapsed() < SPAN {
                    let op = MetadataOp::Set("n".into(), done.into());
                    engine.update_metadata(&id, [op]).await.unwrap();
                    done += 1;
                }
                done
            }
        })
        .await;
        println!(
            "limit, round {round}: plain UPDATE + NOTIFY {plain:.0} tx/s; runcast {changes:.0} changes/s ({:.2}x), {CONCURRENCY} writers",
            changes / plain
        );
        ratios.push(changes / plain);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "limit: runcast's changes/s over the limit's, median of {ROUNDS} rounds: {:.2}x",
        ratios[ratios.len() / 2]
    );
    for id in ids.iter() {
        engine.cancel(id).await.unwrap();
    }
    engine.shutdown(Duration::from_secs(5)).await;
}

/// Starts this program again as a child in `role`, on the database at `url`.
fn spawn(role: &str, url: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("RUNCAST_BENCH_CHILD", role)
        .env("RUNCAST_BENCH_URL", url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    (child, lines)
}

/// What a child process does: `worker` runs no-ops; `latency` and `fanout` subscribe.
async fn child(role: &str, url: &str) {
    let store = PostgresStore::connect(url).await.unwrap();
    match role {
        "worker" => {
            let _engine = Engine::builder()
                .postgres(store)
                .task::<Noop>()
                .task::<Stamp>()
                .concurrency(64)
                .build()
                .unwrap();
            println!("ready");
            std::future::pending::<()>().await;
        }
        "latency" => {
            let engine = Engine::builder()
                .postgres(store)
                .declare::<Hold>()
                .build()
                .unwrap();
            let mut feed = engine
                .subscribe(Scope::Tags(vec!["latency".into()]), runcast::Cursor::START)
                .await
                .unwrap()
                .union::<Holds>();
            println!("ready");
            let mut took = Vec::new();
            while let Some(update) = feed.next().await {
                let Holds::Hold(run) = update.unwrap().run;
                let Some(sent) = run.metadata.as_ref().and_then(|m| m.get("sent")) else {
                    continue;
                };
                let sent = sent.as_u64().unwrap();
                if sent == 0 {
                    break;
                }
                took.push(now_micros().saturating_sub(sent));
            }
            took.sort_unstable();
            let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
            println!(
                "latency {} {} {} {}",
                took.len(),
                at(0.5),
                at(0.99),
                took.last().unwrap()
            );
        }
        "fanout" => {
            let engine = Engine::builder()
                .postgres(store)
                .declare::<Hold>()
                .build()
                .unwrap();
            let delivered = Arc::new(AtomicU64::new(0));
            for _ in 0..SUBSCRIBERS {
                let mut feed = engine
                    .subscribe(Scope::Tags(vec!["fanout".into()]), runcast::Cursor::START)
                    .await
                    .unwrap()
                    .union::<Holds>();
                let delivered = Arc::clone(&delivered);
                tokio::spawn(async move {
                    // Until the engine stops, when the program ends.
                    while let Some(Ok(update)) = feed.next().await {
                        let Holds::Hold(_) = update.run;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let expected: u64 = line.trim().parse().unwrap();
            let clock = Instant::now();
            while delivered.load(Ordering::Relaxed) < expected {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            println!("fanout {}", clock.elapsed().as_secs_f64());
        }
        other => panic!("unknown role {other}"),
    }
}

fn now_micros() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// Fills the run table with `KEPT` finished runs, their changes pruned from the log, and
/// has Postgres analyze it, as it would have by then.
async fn keep_finished(url: &str) {
    drop(PostgresStore::connect(url).await.unwrap());
    let clock = Instant::now();
    connect(url)
        .await
        .batch_execute(&format!(
            r#"INSERT INTO "TaskRun" (id, "friendlyId", "taskIdentifier", number, status,
                   "createdAt", "updatedAt", "startedAt", "completedAt", payload, output,
                   runcast_created, runcast_attempts, runcast_max_attempts, runcast_forget_at)
               SELECT 'run_kept' || n, 'run_kept' || n, 'noop', n, 'COMPLETED_SUCCESSFULLY',
                   now(), now(), now(), now(), n::text, 'null', n, 1, 3, now() + interval '1 day'
               FROM generate_series(1, {KEPT}) n;
               SELECT setval('runcast_position', {KEPT});
               UPDATE runcast_meta SET pruned_through = {KEPT};
               ANALYZE "TaskRun";"#
        ))
        .await
        .unwrap();
    println!(
        "kept: {KEPT} finished runs stored in {:.1} s",
        clock.elapsed().as_secs_f64()
    );
}

/// `count` runs as the `runs` section describes, then the starts measured one by one.
async fn runs(url: &str, count: u64) {
    let store = PostgresStore::connect(url).await.unwrap();
    let workers: Vec<_> = (0..2).map(|_| spawn("worker", url)).collect();
    for (_, lines) in &workers {
        assert_eq!(lines.recv().unwrap(), "ready");
    }
    let engine = Engine::builder()
        .postgres(store)
        .declare::<Noop>()
        .build()
        .unwrap();
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Noops>(["runs"])
        .await
        .unwrap();
    let tagged = TriggerOptions::default().tag("runs");
    let clock = Instant::now();
    let producer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for batch in 0..count / 500 {
                let items = (batch * 500..(batch + 1) * 500).map(|n| (n, tagged.clone()));
                engine.batch_trigger::<Noop>(items).await.unwrap();
            }
            clock.elapsed()
        })
    };
    let mut completed = 0;
    while completed < count {
        let Noops::Noop(run) = feed.next().await.unwrap().unwrap().run;
        completed += u64::from(run.status == RunStatus::Completed);
    }
    let done = clock.elapsed();
    let triggered = producer.await.unwrap();
    println!(
        "runs: {count} no-op runs triggered in batches of 500 at {:.0}/s, completed by 2 worker processes at {:.0}/s (each run 3 changes)",
        count as f64 / triggered.as_secs_f64(),
        count as f64 / done.as_secs_f64()
    );
    // From a trigger here to the start of its attempt in a worker process.
    let stamps = Engine::builder().postgres(PostgresStore::connect(url).await.unwrap());
    let stamps = stamps.declare::<Stamp>().build().unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..STARTS {
        tick.tick().await;
        stamps.trigger::<Stamp>(now_micros()).await.unwrap();
    }
    let mut took = Vec::new();
    while took.len() < STARTS {
        for (_, lines) in &workers {
            while let Ok(line) = lines.try_recv() {
                if let Some(micros) = line.strip_prefix("start ") {
                    took.push(micros.parse::<u64>().unwrap());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "start: trigger -> attempt start in a worker process, {STARTS} runs at 100/s: p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    for (mut child, _) in workers {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// An engine over the database at `url` that runs `hold`, and `runs` live runs of it tagged
/// `tag`, executing.
async fn holding(url: &str, tag: &str, runs: usize) -> (Engine, Vec<RunId>) {
    let store = PostgresStore::connect(url).await.unwrap();
    let engine = Engine::builder()
        .postgres(store)
        .task::<Hold>()
        .concurrency(runs)
        .build()
        .unwrap();
    let ids = held_runs(&engine, tag, runs).await;
    (engine, ids)
}

async fn latency(url: &str) {
    let (engine, ids) = holding(url, "latency", 10).await;
    let (mut child, lines) = spawn("latency", url);
    assert_eq!(lines.recv().unwrap(), "ready");
    // 1,000 changes per second for `SPAN`, over the runs in turn.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let total = SPAN.as_millis() as usize;
    for n in 0..total {
        tick.tick().await;
        let op = MetadataOp::Set("sent".into(), now_micros().into());
        engine
            .update_metadata(&ids[n % ids.len()], [op])
            .await
            .unwrap();
    }
    engine
        .update_metadata(&ids[0], [MetadataOp::Set("sent".into(), 0.into())])
        .await
        .unwrap();
    let line = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    let figures: Vec<f64> = line
        .split(' ')
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    println!(
        "latency: change here -> typed item in another process, {} changes at 1,000/s: p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        figures[0],
        figures[1] / 1000.0,
        figures[2] / 1000.0,
        figures[3] / 1000.0
    );
    child.wait().unwrap();
    for id in &ids {
        engine.cancel(id).await.unwrap();
    }
}

async fn fanout(url: &str) {
    let (engine, ids) = holding(url, "fanout", CONCURRENCY).await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("RUNCAST_BENCH_CHILD", "fanout")
        .env("RUNCAST_BENCH_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(stdout.next().unwrap().unwrap(), "ready");
    // Each subscriber first gets the current state of each run.
    const CHANGES: u64 = 2_000;
    let expected = SUBSCRIBERS as u64 * (CHANGES + CONCURRENCY as u64);
    use std::io::Write;
    writeln!(child.stdin.as_mut().unwrap(), "{expected}").unwrap();
    let per_writer = CHANGES / CONCURRENCY as u64;
    let writers = (0..CONCURRENCY).map(|i| {
        let (engine, id) = (engine.clone(), ids[i].clone());
        tokio::spawn(async move {
            for n in 0..per_writer {
                let op = MetadataOp::Set("n".into(), n.into());
                engine.update_metadata(&id, [op]).await.unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let line = stdout.next().unwrap().unwrap();
    let seconds: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    println!(
        "fanout: {CHANGES} changes to {SUBSCRIBERS} tag subscribers in another process: {:.0} typed updates/s delivered",
        expected as f64 / seconds
    );
    child.wait().unwrap();
    for id in &ids {
        engine.cancel(id).await.unwrap();
    }
}
