//! The Postgres store against a real server (see `testing`): its schema, its change log's
//! commit order, and engines over it that share one database as processes would.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use futures::StreamExt;
use tokio_postgres::NoTls;

use super::testing::{Cluster, database};
use super::tx::Tx;
use super::{PostgresError, PostgresStore, changes};
use crate::model::{AnyRun, RunId, RunStatus};
use crate::{Engine, RunFeed, Scope, TaskContext, TriggerError, TriggerOptions, task};

#[task(id = "pg-double")]
async fn double(n: u64, _ctx: TaskContext) -> Result<u64, String> {
    Ok(n * 2)
}

#[task(id = "pg-sleep")]
async fn sleep(ms: u64, _ctx: TaskContext) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// What attempts of `pg-hold` did: `(run, "started")` when one starts, `(run, "stopped")` when
/// one is stopped before it finished (its future dropped).
static HOLDS: Mutex<Vec<(RunId, &str)>> = Mutex::new(Vec::new());

/// Holds its first attempt for `ms` milliseconds; returns its attempt number.
#[task(id = "pg-hold")]
async fn hold(ms: u64, ctx: TaskContext) -> Result<u32, String> {
    struct Stopped(Option<RunId>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            if let Some(run) = self.0.take() {
                HOLDS.lock().unwrap().push((run, "stopped"));
            }
        }
    }
    HOLDS
        .lock()
        .unwrap()
        .push((ctx.run_id().clone(), "started"));
    let mut stopped = Stopped(Some(ctx.run_id().clone()));
    if ctx.attempt() == 1 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    stopped.0 = None;
    Ok(ctx.attempt())
}

/// Waits until an attempt of `pg-hold` for `run` did `what`; panics with `otherwise` after
/// five seconds.
async fn held(run: &RunId, what: &str, otherwise: &str) {
    let done = || {
        HOLDS
            .lock()
            .unwrap()
            .iter()
            .any(|(r, w)| r == run && *w == what)
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect(otherwise);
}

/// A builder of an engine over the database at `url`, as a process would start one.
async fn builder(url: &str) -> crate::EngineBuilder {
    Engine::builder().postgres(PostgresStore::connect(url).await.unwrap())
}

/// A process that triggers and watches runs of the tasks, and runs none.
async fn producer(url: &str) -> Engine {
    builder(url)
        .await
        .declare::<Double>()
        .declare::<Hold>()
        .build()
        .unwrap()
}

/// A process that runs the tasks, with a short lease so that its loss shows soon.
async fn worker(url: &str, concurrency: usize) -> Engine {
    let store = PostgresStore::connect(url)
        .await
        .unwrap()
        .lease(Duration::from_millis(600));
    Engine::builder()
        .postgres(store)
        .task::<Double>()
        .task::<Hold>()
        .concurrency(concurrency)
        .build()
        .unwrap()
}

/// An engine over the database at `url`, as one process would build it.
async fn engine(url: &str) -> Engine {
    builder(url)
        .await
        .task::<Double>()
        .task::<Sleep>()
        .build()
        .unwrap()
}

pub(super) async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_at_once_migrate_once_and_share_the_epoch() {
    let url = database().await;
    let connects = (0..8).map(|_| PostgresStore::connect(&url));
    let stores = futures::future::join_all(connects).await;
    let epochs: BTreeSet<u64> = stores
        .into_iter()
        .map(|store| store.unwrap().inner.epoch)
        .collect();
    assert_eq!(epochs.len(), 1, "every process names the same history");
    assert_ne!(epochs.first(), Some(&0));
    let client = client(&url).await;
    let versions: Vec<i32> = (client.query("SELECT version FROM runcast_migrations", &[]))
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=super::schema::LATEST).collect::<Vec<_>>());

    // A database a newer runcast migrated is refused, not written.
    client
        .execute(
            "INSERT INTO runcast_migrations (version, description) VALUES (999, 'newer')",
            &[],
        )
        .await
        .unwrap();
    match PostgresStore::connect(&url).await {
        Err(PostgresError::NewerSchema { found: 999, known }) => {
            assert_eq!(known, super::schema::LATEST);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_connection_string_or_an_unreachable_server_is_a_clear_error() {
    let error = PostgresStore::connect("postgres://host:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(error, PostgresError::InvalidUrl(_)), "{error:?}");
    assert!(error.to_string().contains("port"), "{error}");
    let error = PostgresStore::connect("host=/nonexistent/runcast port=1 user=x dbname=x")
        .await
        .unwrap_err();
    assert!(matches!(error, PostgresError::Database(_)), "{error:?}");
    // A connection the pool could not make, as an operation reports it.
    let Err(cause) =
        tokio_postgres::connect("host=/nonexistent/runcast port=1 user=x", NoTls).await
    else {
        panic!("connected to nothing");
    };
    let error = crate::model::StoreError::from(deadpool_postgres::PoolError::Backend(cause));
    assert!(error.to_string().contains("No such file"), "{error}");
    // What the server said, not only "db error".
    let url = database().await;
    let missing = url.replace("dbname=", "dbname=missing_");
    let error = PostgresStore::connect(&missing).await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}

/// The pool's connections (every statement of an engine) and the change reader's run with JIT
/// compilation off, unless the connection's own options turn it on.
#[tokio::test]
async fn connections_run_without_jit_unless_their_options_ask_for_it() {
    let url = database().await;
    let jit = |store: &PostgresStore| {
        let (pool, config) = (store.inner.pool.clone(), store.inner.config.clone());
        async move {
            let pooled = pool.get().await.unwrap();
            let (own, connection) = config.connect(NoTls).await.unwrap();
            tokio::spawn(connection);
            let mut said = Vec::new();
            for client in [&**pooled, &own] {
                let row = client.query_one("SHOW jit", &[]).await.unwrap();
                said.push(row.get::<_, String>(0));
            }
            said
        }
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(jit(&store).await, ["off", "off"]);
    let theirs = format!("{url} options='-c jit=on -c application_name=mine'");
    let store = PostgresStore::connect(&theirs).await.unwrap();
    assert_eq!(jit(&store).await, ["on", "on"]);
}

/// Writers take positions and commit after a random delay, some roll back; a reader reading
/// all the while must see, in the end, exactly the committed positions, each once, and never
/// see a position after having read a greater one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_skips_a_change_that_commits_after_a_greater_position() {
    let url = database().await;
    drop(PostgresStore::connect(&url).await.unwrap());
    const WRITERS: usize = 12;
    const EACH: usize = 40;
    let writers = (0..WRITERS).map(|writer| {
        let url = url.clone();
        tokio::spawn(async move {
            let config: tokio_postgres::Config = url.parse().unwrap();
            let manager = deadpool_postgres::Manager::new(config, NoTls);
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(1)
                .build()
                .unwrap();
            let mut committed = Vec::new();
            for n in 0..EACH {
                let tx = Tx::begin(&pool).await.unwrap();
                let run = RunId::from(format!("run_{writer}_{n}"));
                let data = serde_json::value::RawValue::from_string("1".into()).unwrap();
                let chunk = changes::Entry::chunk(&run, "s", &data);
                let rows = tx.run(&changes::append([&chunk])).await.unwrap();
                let [position] = changes::positions(&rows)[..] else {
                    panic!("one position for one entry: {rows:?}")
                };
                // The commit comes after the position was taken, late.
                let delay = rand::random::<u64>() % 3;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if rand::random::<u8>().is_multiple_of(10) {
                    // Dropped: its connection closes, and the transaction rolls back.
                    drop(tx);
                } else {
                    tx.commit().await.unwrap();
                    committed.push(position);
                }
            }
            committed
        })
    });
    let writers: Vec<_> = writers.collect();
    let reader = {
        let url = url.clone();
        tokio::spawn(async move {
            let client = client(&url).await;
            let mut seen = Vec::new();
            let mut after = 0i64;
            let mut quiet = 0;
            // Reads until nothing new came for a while after the writers are done.
            while quiet < 50 {
                let rows = client
                    .query(
                        "SELECT position FROM runcast_changes WHERE position > $1 ORDER BY position",
                        &[&after],
                    )
                    .await
                    .unwrap();
                if rows.is_empty() {
                    quiet += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    quiet = 0;
                }
                for row in rows {
                    let position: i64 = row.get(0);
                    seen.push(position.cast_unsigned());
                    after = position;
                }
            }
            seen
        })
    };
    let mut committed = BTreeSet::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }
    let seen = reader.await.unwrap();
    let seen_set: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(seen_set.len(), seen.len(), "a position was read twice");
    assert_eq!(
        seen_set, committed,
        "the reader missed a committed change (or read one that rolled back)"
    );
    assert!(committed.len() > WRITERS * EACH / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_postgres_shows_every_state_and_outlives_its_engine() {
    let url = database().await;
    let first = engine(&url).await;
    let handle = first.trigger::<Double>(21).await.unwrap();
    let mut updates = first.subscribe_to_run(&handle).await.unwrap();
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    while let Some(update) = updates.next().await {
        let update = update.unwrap();
        assert!(!update.coalesced);
        cursors.push(update.cursor);
        seen.push(update.run);
    }
    let statuses: Vec<RunStatus> = seen.iter().map(|run| run.status).collect();
    assert_eq!(
        statuses,
        [
            RunStatus::Queued,
            RunStatus::Executing,
            RunStatus::Completed
        ]
    );
    let done = seen.last().unwrap();
    assert_eq!(done.output, Some(42));
    assert_eq!(done.number, 1);
    assert!(done.finished_at.is_some());
    first.shutdown(Duration::from_secs(5)).await;
    drop(first);

    // Another process, later: the run is there, as it ended.
    let second = engine(&url).await;
    let run = second.retrieve::<Double>(handle.id()).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(42));
    assert_eq!(run.payload, 21);
    assert_eq!(run.created_at, done.created_at);
    assert_eq!(run.finished_at, done.finished_at);
    assert_eq!(second.wait(&handle).await.unwrap().output, Some(42));
    // Its changes are replayed from the database to a feed resumed from a cursor of the
    // first process: exactly the rest, none coalesced.
    let scope = Scope::Run(handle.id().clone());
    let mut resumed = second.subscribe(scope, cursors[0]).await.unwrap();
    for (cursor, run) in cursors.iter().zip(&seen).skip(1) {
        let item = resumed.next().await.unwrap().unwrap();
        assert_eq!(
            (item.cursor, item.run.status, item.coalesced),
            (*cursor, run.status, false)
        );
    }
    // Its next run is number 2: numbers live in the database.
    let next = second.trigger::<Double>(1).await.unwrap();
    assert_eq!(second.wait(&next).await.unwrap().number, 2);
}

/// Two engines on one database stand for two processes: one subscribes by tag, the other
/// triggers; the subscriber sees every change, and a cursor from it resumes in the other
/// engine with exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_in_one_process_sees_every_change_made_in_another_and_resumes_there() {
    let url = database().await;
    let (producer, watcher) = (engine(&url).await, engine(&url).await);
    let mut feed = watcher
        .subscribe(Scope::Tags(vec!["cross".into()]), crate::Cursor::START)
        .await
        .unwrap();
    const RUNS: usize = 30;
    let tagged = TriggerOptions::default().tag("cross");
    let mut ids = Vec::new();
    for n in 0..RUNS {
        let handle = producer
            .trigger_with::<Double>(n as u64, tagged.clone())
            .await
            .unwrap();
        ids.push(handle.id().clone());
    }
    let mut items = Vec::new();
    let mut completed = 0;
    while completed < RUNS {
        let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .expect("the feed stalled")
            .unwrap()
            .unwrap();
        assert!(!item.coalesced, "a reader that keeps up gets every change");
        completed += usize::from(item.run.status == RunStatus::Completed);
        items.push(item);
    }
    for id in &ids {
        let statuses: Vec<RunStatus> = (items.iter())
            .filter(|item| item.run.id == *id)
            .map(|item| item.run.status)
            .collect();
        assert_eq!(
            statuses,
            [
                RunStatus::Queued,
                RunStatus::Executing,
                RunStatus::Completed
            ],
            "run {id}"
        );
    }
    assert!(items.windows(2).all(|w| w[0].cursor < w[1].cursor));

    // Resume from a cursor in the middle, in the producer's process: exactly the rest.
    let middle = items.len() / 2;
    let mut resumed = producer
        .subscribe(Scope::Tags(vec!["cross".into()]), items[middle].cursor)
        .await
        .unwrap();
    for expected in &items[middle + 1..] {
        let item = tokio::time::timeout(Duration::from_secs(20), resumed.next())
            .await
            .expect("the resumed feed stalled")
            .unwrap()
            .unwrap();
        assert_eq!(item.cursor, expected.cursor);
        assert_eq!(item.run.status, expected.run.status);
        assert_eq!(item.run.id, expected.run.id);
    }
    let nothing_more = tokio::time::timeout(Duration::from_millis(300), resumed.next()).await;
    assert!(
        nothing_more.is_err(),
        "a duplicate or stray item after the rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_numbers_and_idempotency_keys() {
    let url = database().await;
    let engines = [engine(&url).await, engine(&url).await];
    let triggers = (0..40).map(|n| {
        let engine = engines[n % 2].clone();
        async move { engine.trigger::<Double>(n as u64).await.unwrap() }
    });
    let handles = futures::future::join_all(triggers).await;
    let mut numbers = BTreeSet::new();
    for handle in &handles {
        numbers.insert(engines[0].wait(handle).await.unwrap().number);
    }
    assert_eq!(numbers, (1..=40).collect::<BTreeSet<u64>>());

    let keyed = TriggerOptions::default().idempotency_key("order-7");
    let triggers = (0..10).map(|n| {
        let engine = engines[n % 2].clone();
        let keyed = keyed.clone();
        async move { engine.trigger_with::<Double>(7, keyed).await.unwrap() }
    });
    let handles = futures::future::join_all(triggers).await;
    let ids: BTreeSet<&RunId> = handles.iter().map(|h| h.id()).collect();
    assert_eq!(ids.len(), 1, "one key, one run, whichever process triggers");
    // Two runs with one key in one batch are one run too.
    let batch = engines[0]
        .batch_trigger::<Double>([(1, keyed.clone()), (2, keyed.clone())])
        .await
        .unwrap();
    assert!(batch.runs.iter().all(|run| ids.contains(run.id())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_canceled_while_executing_ends_once_as_canceled() {
    let url = database().await;
    let engine = engine(&url).await;
    let handle = engine.trigger::<Sleep>(60_000).await.unwrap();
    let mut updates = engine.subscribe_to_run(&handle).await.unwrap();
    let executing = updates.next().await.unwrap().unwrap();
    assert_eq!(executing.run.status, RunStatus::Queued);
    let executing = updates.next().await.unwrap().unwrap();
    assert_eq!(executing.run.status, RunStatus::Executing);
    engine.cancel(handle.id()).await.unwrap();
    let canceled = updates.next().await.unwrap().unwrap().run;
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert!(
        updates.next().await.is_none(),
        "one final change, then the end"
    );
    let error = engine.cancel(handle.id()).await.unwrap_err();
    assert!(error.to_string().contains("CANCELED"), "{error}");
}

/// Postgres stops while an engine serves a feed: operations fail with a clear error, nothing
/// panics; once it is back, operations work again and the feed goes on from where it was,
/// with the changes made since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_survives_postgres_restarting() {
    let cluster = Cluster::start().unwrap();
    let admin = client(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE restarts")
        .await
        .unwrap();
    drop(admin);
    let url = cluster.url("restarts");
    let engine = engine(&url).await;
    let mut feed = engine
        .subscribe(Scope::Tags(vec!["r".into()]), crate::Cursor::START)
        .await
        .unwrap();
    let tagged = TriggerOptions::default().tag("r");
    let before = engine
        .trigger_with::<Double>(1, tagged.clone())
        .await
        .unwrap();
    engine.wait(&before).await.unwrap();

    cluster.pg_ctl_stop().unwrap();
    let error = engine
        .trigger_with::<Double>(2, tagged.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, TriggerError::Store(_)), "{error:?}");
    cluster.pg_ctl_start().unwrap();

    let after = engine.trigger_with::<Double>(3, tagged).await.unwrap();
    assert_eq!(engine.wait(&after).await.unwrap().output, Some(6));
    let mut seen: Vec<AnyRun> = Vec::new();
    while !(seen.iter()).any(|run| run.id == *after.id() && run.status == RunStatus::Completed) {
        let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .expect("the feed did not go on after the restart")
            .unwrap()
            .unwrap();
        seen.push(item.run);
    }
    let of = |id: &RunId| -> Vec<RunStatus> {
        seen.iter()
            .filter(|r| r.id == *id)
            .map(|r| r.status)
            .collect()
    };
    let every = [
        RunStatus::Queued,
        RunStatus::Executing,
        RunStatus::Completed,
    ];
    assert_eq!(of(before.id()), every);
    assert_eq!(of(after.id()), every);
    assert_eq!(seen.len(), 6, "nothing else, nothing twice");
}

/// A process that only declares the tasks triggers them; two worker processes share the
/// queue; every run is attempted once and completes, and the producer sees each state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_other_processes_share_the_runs_a_producer_triggers() {
    let url = database().await;
    let producer = producer(&url).await;
    // Queued before any worker exists: nothing runs them yet.
    let early = producer.trigger::<Double>(1).await.unwrap();
    let workers = [worker(&url, 4).await, worker(&url, 4).await];
    let mut feed = producer
        .subscribe(Scope::Tags(vec!["split".into()]), crate::Cursor::START)
        .await
        .unwrap();
    const RUNS: u64 = 100;
    let tagged = TriggerOptions::default().tag("split");
    let items = (0..RUNS).map(|n| (n, tagged.clone()));
    let batch = producer.batch_trigger::<Double>(items).await.unwrap();
    assert_eq!(producer.wait(&early).await.unwrap().output, Some(2));
    let mut executing = BTreeSet::new();
    let mut completed = BTreeSet::new();
    while completed.len() < RUNS as usize {
        let item = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .expect("the runs stalled")
            .unwrap()
            .unwrap();
        match item.run.status {
            RunStatus::Executing => assert!(executing.insert(item.run.id), "attempted twice"),
            RunStatus::Completed => {
                let read = |raw: &Option<Arc<serde_json::value::RawValue>>| {
                    serde_json::from_str::<u64>(raw.as_deref().unwrap().get()).unwrap()
                };
                assert_eq!(read(&item.run.output), 2 * read(&item.run.payload));
                assert!(completed.insert(item.run.id));
            }
            _ => {}
        }
    }
    let ids: BTreeSet<RunId> = batch.runs.iter().map(|run| run.id().clone()).collect();
    assert_eq!(completed, ids);
    assert_eq!(executing, ids);
    drop(workers);
}

/// A worker stops mid-attempt without a word (its engine dropped: its attempts stop, its
/// leases are no longer renewed): another worker takes the run over once the lease ran out,
/// counting the lost attempt, and completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_worker_vanishes_is_retried_by_another() {
    let url = database().await;
    let producer = producer(&url).await;
    let first = worker(&url, 1).await;
    let handle = producer.trigger::<Hold>(300_000).await.unwrap();
    let mut updates = producer.subscribe_to_run(&handle).await.unwrap();
    let statuses = |run: &crate::Run<Hold>| run.status;
    assert_eq!(
        statuses(&updates.next().await.unwrap().unwrap().run),
        RunStatus::Queued
    );
    assert_eq!(
        statuses(&updates.next().await.unwrap().unwrap().run),
        RunStatus::Executing
    );
    held(handle.id(), "started", "the attempt never started").await;
    drop(first);
    // Its attempt was stopped with its engine.
    held(
        handle.id(),
        "stopped",
        "the vanished worker's attempt kept running",
    )
    .await;
    // Nobody answers for the run until another worker comes.
    let second = worker(&url, 1).await;
    let lost = tokio::time::timeout(Duration::from_secs(20), updates.next())
        .await
        .expect("the lost attempt was never noticed")
        .unwrap()
        .unwrap()
        .run;
    assert_eq!(lost.status, RunStatus::Reattempting);
    let error = lost.error.unwrap();
    assert_eq!(error.name.as_deref(), Some("WorkerLost"));
    assert!(error.message.contains("attempt 1"), "{}", error.message);
    let mut rest = Vec::new();
    while let Some(update) = tokio::time::timeout(Duration::from_secs(20), updates.next())
        .await
        .expect("the run was not retried")
    {
        rest.push(update.unwrap().run);
    }
    let statuses: Vec<RunStatus> = rest.iter().map(|run| run.status).collect();
    assert_eq!(statuses, [RunStatus::Executing, RunStatus::Completed]);
    assert_eq!(rest[1].output, Some(2), "the second attempt completed it");
    drop(second);
}

/// A cancel from the process that triggered the run reaches the attempt executing in
/// another process, which stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_attempt_in_another_process() {
    let url = database().await;
    let producer = producer(&url).await;
    let worker = worker(&url, 2).await;
    let handle = producer.trigger::<Hold>(300_000).await.unwrap();
    let mut updates = producer.subscribe_to_run(&handle).await.unwrap();
    updates.next().await.unwrap().unwrap();
    let executing = updates.next().await.unwrap().unwrap().run;
    assert_eq!(executing.status, RunStatus::Executing);
    held(handle.id(), "started", "the attempt never started").await;
    producer.cancel(handle.id()).await.unwrap();
    held(
        handle.id(),
        "stopped",
        "the attempt in the other process did not stop",
    )
    .await;
    let canceled = updates.next().await.unwrap().unwrap().run;
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert!(updates.next().await.is_none());
    // The stopped attempt's end is written (or refused) before the worker stops: the log
    // holds one final change of the run, whatever the attempt wrote afterwards.
    worker.shutdown(Duration::from_secs(5)).await;
    let finals = client(&url)
        .await
        .query_one(
            "SELECT count(*) FROM runcast_changes
             WHERE kind = 'run' AND run_id = $1 AND data::jsonb ->> 'status' = 'CANCELED'",
            &[&handle.id().as_str()],
        )
        .await
        .unwrap();
    assert_eq!(finals.get::<_, i64>(0), 1, "one final change");
    let last = client(&url)
        .await
        .query_one(
            "SELECT data::jsonb ->> 'status' FROM runcast_changes
             WHERE kind = 'run' AND run_id = $1 ORDER BY position DESC LIMIT 1",
            &[&handle.id().as_str()],
        )
        .await
        .unwrap();
    assert_eq!(
        last.get::<_, &str>(0),
        "CANCELED",
        "nothing after the final change"
    );
}

/// Timers live in the database: a delayed run whose producer is gone starts when a worker
/// is there at its time; a run with a TTL and no worker expires, fired by whichever process
/// is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_and_ttls_fire_whichever_process_is_alive() {
    let url = database().await;
    let first = producer(&url).await;
    let delayed = first
        .trigger_with::<Double>(
            5,
            TriggerOptions::default().delay(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    let expiring = first
        .trigger_with::<Double>(6, TriggerOptions::default().ttl(Duration::from_millis(500)))
        .await
        .unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Both are due and no process was alive; this one fires them (it runs neither task).
    let second = producer(&url).await;
    let queued = |run: &crate::Run<Double>| run.status == RunStatus::Queued;
    let mut updates = second.subscribe_to_run(&delayed).await.unwrap();
    let mut run = updates.next().await.unwrap().unwrap().run;
    if !queued(&run) {
        assert_eq!(run.status, RunStatus::Delayed);
        run = tokio::time::timeout(Duration::from_secs(10), updates.next())
            .await
            .expect("the delay never fired")
            .unwrap()
            .unwrap()
            .run;
        assert!(queued(&run), "{:?}", run.status);
    }
    let expired = tokio::time::timeout(Duration::from_secs(10), second.wait(&expiring))
        .await
        .expect("the TTL never fired")
        .unwrap();
    assert_eq!(expired.status, RunStatus::Expired);
    let worker = worker(&url, 1).await;
    let done = tokio::time::timeout(Duration::from_secs(10), second.wait(&delayed))
        .await
        .expect("the queued run never ran")
        .unwrap();
    assert_eq!(done.output, Some(10));
    drop(worker);
}

/// Writes `0..n` to `numbers`, each a chunk of its own.
#[task(id = "pg-count", streams(numbers = u64))]
async fn count(n: u64, ctx: TaskContext) -> Result<u64, crate::StreamError> {
    let numbers = ctx.stream(Count::NUMBERS);
    numbers.pipe(futures::stream::iter(0..n)).await?;
    Ok(n)
}

/// Chunks are kept in Postgres: a process that runs nothing reads a run's stream, written in
/// another, in order, and a process started later reads it from the start; a run's streams
/// keep the engine's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_written_in_one_process_are_read_in_order_in_others() {
    use crate::RunStreamExt;
    use futures::TryStreamExt;
    let url = database().await;
    let reader = builder(&url).await.declare::<Count>().build().unwrap();
    let writer = builder(&url)
        .await
        .task::<Count>()
        .max_stream_bytes(100 * (crate::engine::store::CHUNK_OVERHEAD + 2))
        .build()
        .unwrap();
    let handle = reader.trigger::<Count>(300).await.unwrap();
    let scope = Scope::Run(handle.id().clone());
    let items: Vec<crate::Realtime<AnyRun, crate::AnyChunk>> = (reader
        .subscribe(scope, handle.cursor()))
    .await
    .unwrap()
    .with_streams()
    .until_finished()
    .try_collect()
    .await
    .unwrap();
    assert!(
        items.windows(2).all(|w| w[0].cursor() < w[1].cursor()),
        "one cursor order"
    );
    let numbers: Vec<u64> = items
        .iter()
        .filter_map(|item| match item {
            crate::Realtime::Chunk(chunk) => Some(serde_json::from_str(chunk.data.get()).unwrap()),
            crate::Realtime::Run(_) => None,
        })
        .collect();
    // Within the limit: 100 chunks of one or two digits fit, the next is refused and fails
    // the run.
    assert_eq!(numbers, (0..100).collect::<Vec<_>>());
    let last = reader.retrieve::<Count>(handle.id()).await.unwrap();
    assert_eq!(last.status, RunStatus::Failed);
    assert!(
        last.error.unwrap().message.contains("over the limit"),
        "the limit is the engine's"
    );
    drop((reader, writer));

    let later = producer(&url).await;
    // Resumed there from the middle, the run's feed with its streams goes on exactly after.
    let middle = items.len() / 2;
    let scope = Scope::Run(handle.id().clone());
    let rest: Vec<crate::Realtime<AnyRun, crate::AnyChunk>> = (later
        .subscribe(scope, items[middle].cursor()))
    .await
    .unwrap()
    .with_streams()
    .until_finished()
    .try_collect()
    .await
    .unwrap();
    let seen = |items: &[crate::Realtime<AnyRun, crate::AnyChunk>]| -> Vec<String> {
        let seen = items.iter().map(|item| match item {
            crate::Realtime::Chunk(chunk) => format!("{} {}", chunk.cursor, chunk.data.get()),
            crate::Realtime::Run(update) => format!("{} {}", update.cursor, update.run.status),
        });
        seen.collect()
    };
    assert_eq!(seen(&rest), seen(&items[middle + 1..]), "exactly the rest");
    let numbers: Vec<u64> = later
        .read_stream(handle.id(), Count::NUMBERS)
        .await
        .unwrap()
        .map_ok(|chunk| chunk.value)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(numbers, (0..100).collect::<Vec<_>>());
}

/// Finished runs are forgotten after the retention, with their chunks, changes and keys, and
/// every process hears of it. The log keeps of a run still kept only its latest change once
/// the others are older than the retention, and the notices of forgotten runs only for the
/// retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_are_forgotten_after_the_retention_everywhere() {
    let url = database().await;
    let short = |store: PostgresStore| {
        Engine::builder()
            .postgres(store)
            .task::<Double>()
            .retention(Duration::from_millis(300))
            .build()
            .unwrap()
    };
    let first = short(PostgresStore::connect(&url).await.unwrap());
    let second = short(PostgresStore::connect(&url).await.unwrap());
    let later = TriggerOptions::default().delay(Duration::from_secs(3_600));
    let kept = first.trigger_with::<Double>(1, later).await.unwrap();
    for _ in 0..3 {
        let op = crate::MetadataOp::Increment("n".into(), 1.0);
        first.update_metadata(kept.id(), [op]).await.unwrap();
    }
    let keyed = TriggerOptions::default().idempotency_key("once");
    let handle = first
        .trigger_with::<Double>(4, keyed.clone())
        .await
        .unwrap();
    assert_eq!(first.wait(&handle).await.unwrap().output, Some(8));
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let gone = |e: &Engine| {
                let id = handle.id().clone();
                let e = e.clone();
                async move { e.latest(&id).await.is_err() }
            };
            if gone(&first).await && gone(&second).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the run was never forgotten");
    let client = client(&url).await;
    let count = async |query: &str, id: &RunId| -> i64 {
        (client.query_one(query, &[&id.as_str()]).await.unwrap()).get(0)
    };
    let left = count(
        "SELECT (SELECT count(*) FROM \"TaskRun\" WHERE id = $1)
              + (SELECT count(*) FROM runcast_idempotency WHERE run_id = $1)
              + (SELECT count(*) FROM runcast_changes WHERE kind <> 'forgotten' AND run_id = $1)",
        handle.id(),
    );
    assert_eq!(left.await, 0, "rows of the forgotten run are left");
    let latest = first.latest(kept.id()).await.unwrap().cursor.position();
    tokio::time::timeout(Duration::from_secs(10), async {
        let pruned = "SELECT (SELECT count(*) FROM runcast_changes
                              WHERE kind = 'forgotten' OR (run_id = $1 AND position <> $2))
                           + (SELECT count(*) FROM runcast_meta WHERE pruned_through < $2 - 1)";
        let statement = client.prepare(pruned).await.unwrap();
        while (client
            .query_one(&statement, &[&kept.id().as_str(), &(latest as i64)])
            .await)
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("changes older than the retention were kept");
    let kept_changes = "SELECT count(*) FROM runcast_changes WHERE run_id = $1";
    assert_eq!(count(kept_changes, kept.id()).await, 1, "its latest change");
    // Its key starts a new run.
    let again = second.trigger_with::<Double>(5, keyed).await.unwrap();
    assert_ne!(again.id(), handle.id());
}

/// Each database names its own history: a cursor from another database is refused, not
/// read as a position of this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_another_database_is_refused() {
    let (a, b) = (database().await, database().await);
    let (store_a, store_b) = (
        PostgresStore::connect(&a).await.unwrap(),
        PostgresStore::connect(&b).await.unwrap(),
    );
    assert_ne!(store_a.inner.epoch, store_b.inner.epoch);
    let (first, second) = (engine(&a).await, engine(&b).await);
    let there = second.trigger::<Double>(2).await.unwrap();
    second.wait(&there).await.unwrap();
    let cursor = second.latest(there.id()).await.unwrap().cursor;
    // A's history runs past the cursor's position, so only its epoch tells it apart.
    let mut here = first.trigger::<Double>(1).await.unwrap();
    while first.latest(here.id()).await.unwrap().cursor.position() <= cursor.position() {
        here = first.trigger::<Double>(1).await.unwrap();
        first.wait(&here).await.unwrap();
    }
    let refused = first.subscribe(Scope::Run(here.id().clone()), cursor).await;
    assert!(
        matches!(refused, Err(crate::FeedError::UnknownCursor(_))),
        "{refused:?}"
    );
}

/// Holds its first attempt for 3 s and its second for 5 s; returns its attempt number.
#[task(id = "pg-outlive")]
async fn outlive(_: (), ctx: TaskContext) -> Result<u32, String> {
    let ms = if ctx.attempt() == 1 { 3_000 } else { 5_000 };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ctx.attempt())
}

/// An attempt that outlives its lease (its process was taken for gone, and another attempt
/// started) cannot write its end: the run still reaches its final status in one change, the
/// later attempt's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_outlived_its_lease_does_not_end_the_run() {
    let url = database().await;
    let store = PostgresStore::connect(&url)
        .await
        .unwrap()
        .lease(Duration::from_millis(600));
    let engine = Engine::builder()
        .postgres(store)
        .task::<Outlive>()
        .concurrency(2)
        .retry_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    let handle = engine.trigger::<Outlive>(()).await.unwrap();
    let mut updates = engine.subscribe_to_run_forever(&handle).await.unwrap();
    let mut statuses = Vec::new();
    while statuses.last() != Some(&RunStatus::Executing) {
        statuses.push(updates.next().await.unwrap().unwrap().run.status);
    }
    // The first attempt's process is taken for gone: its lease is someone else's, and over.
    client(&url)
        .await
        .execute(
            "UPDATE \"TaskRun\" SET runcast_lease_owner = 'gone',
                 runcast_lease_until = now() - interval '1 second' WHERE id = $1",
            &[&handle.id().as_str()],
        )
        .await
        .unwrap();
    let mut last = None;
    while statuses.last() != Some(&RunStatus::Completed) {
        let update = tokio::time::timeout(Duration::from_secs(20), updates.next())
            .await
            .expect("the run never ended")
            .unwrap()
            .unwrap();
        statuses.push(update.run.status);
        last = Some(update.run);
    }
    // The first attempt ended (at 3 s) while the second ran (from about 1 s to 6 s).
    engine.shutdown(Duration::from_secs(10)).await;
    let rest: Vec<_> = updates.collect().await;
    assert!(
        matches!(rest[..], [Err(crate::FeedError::Stopped)]),
        "one final change: {rest:?}"
    );
    assert_eq!(
        statuses,
        [
            RunStatus::Queued,
            RunStatus::Executing,
            RunStatus::Reattempting,
            RunStatus::Executing,
            RunStatus::Completed
        ]
    );
    assert_eq!(last.unwrap().output, Some(2));
}

/// A worker that cannot renew its leases (the database stopped) stops its attempts before
/// they run out, so that the run never has two attempts at once; once the database is back,
/// the run is attempted again and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_its_leases_stops_its_attempts() {
    let cluster = Cluster::start().unwrap();
    let admin = client(&cluster.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE leases").await.unwrap();
    drop(admin);
    let url = cluster.url("leases");
    // Renewed every second, its attempts stopped 2 s after the last renewal: a second
    // before the lease runs out, a margin for a busy machine.
    let lease = Duration::from_secs(3);
    let store = PostgresStore::connect(&url).await.unwrap().lease(lease);
    let worker = Engine::builder()
        .postgres(store)
        .task::<Hold>()
        .build()
        .unwrap();
    let handle = worker.trigger::<Hold>(300_000).await.unwrap();
    held(handle.id(), "started", "the attempt never started").await;

    cluster.pg_ctl_stop().unwrap();
    // Every renewal was asked for before this, so the last lease runs out before a lease
    // from now.
    let stopped_db = Instant::now();
    held(
        handle.id(),
        "stopped",
        "the attempt ran on with a lease it could not renew",
    )
    .await;
    let stopped_after = stopped_db.elapsed();
    assert!(
        stopped_after < lease,
        "the attempt stopped {stopped_after:?} after the last renewal, past its lease"
    );
    cluster.pg_ctl_start().unwrap();

    let run = tokio::time::timeout(Duration::from_secs(30), worker.wait(&handle))
        .await
        .expect("the run was not attempted again")
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(2), "the second attempt completed it");
}

/// Changes made at once, by two processes, to runs that both change: each change commits
/// exactly once (counted in the runs' metadata), and a subscriber sees every one, in order.
/// Changes of one run meet in a group, and groups of both processes lock the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_at_once_in_two_processes_each_commit_once() {
    const RUNS: usize = 6;
    const EACH: usize = 60;
    let url = database().await;
    let engines = [engine(&url).await, engine(&url).await];
    let mut runs = Vec::new();
    for n in 0..RUNS {
        let options = TriggerOptions::default()
            .tag("counted")
            .delay(Duration::from_secs(3_600));
        runs.push(
            engines[0]
                .trigger_with::<Double>(n as u64, options)
                .await
                .unwrap(),
        );
    }
    let mut feed = engines[1]
        .subscribe(Scope::Tags(vec!["counted".into()]), runs[0].cursor())
        .await
        .unwrap();
    let increments = (0..2 * RUNS * EACH).map(|n| {
        let engine = engines[n % 2].clone();
        let id = runs[n / 2 % RUNS].id().clone();
        tokio::spawn(async move {
            let op = crate::MetadataOp::Increment("n".into(), 1.0);
            engine.update_metadata(&id, [op]).await.unwrap();
        })
    });
    for increment in increments.collect::<Vec<_>>() {
        increment.await.unwrap();
    }
    let mut counts = vec![Vec::new(); RUNS];
    let total = RUNS * (2 * EACH + 1);
    while counts.iter().map(Vec::len).sum::<usize>() < total {
        let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .expect("a change never came")
            .unwrap()
            .unwrap();
        assert!(!item.coalesced, "the subscriber keeps up");
        let index = runs.iter().position(|r| *r.id() == item.run.id).unwrap();
        let n = (item.run.metadata.as_ref())
            .map(|m| serde_json::from_str::<serde_json::Value>(m.get()).unwrap())
            .and_then(|m| m["n"].as_f64())
            .unwrap_or(0.0);
        counts[index].push(n as usize);
    }
    let every: Vec<usize> = (0..=2 * EACH).collect();
    for count in counts {
        assert_eq!(count, every, "each change once, in order");
    }
}

/// A busy process claims a run ahead of its free slots, and holds it only a few seconds: an
/// idle process then takes it, well before a lease (30 s) would run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_claimed_ahead_by_a_busy_process_goes_to_an_idle_one() {
    let url = database().await;
    let process = || async {
        builder(&url)
            .await
            .task::<Double>()
            .task::<Hold>()
            .concurrency(1)
            .build()
            .unwrap()
    };
    let producer = producer(&url).await;
    let busy = process().await;
    let holding = producer.trigger::<Hold>(300_000).await.unwrap();
    held(holding.id(), "started", "the attempt never started").await;
    let waiting = producer.trigger::<Double>(21).await.unwrap();
    // The busy process claimed it, to start once its one slot frees.
    let db = client(&url).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let row = db
                .query_one(
                    "SELECT status, runcast_lease_owner FROM \"TaskRun\" WHERE id = $1",
                    &[&waiting.id().as_str()],
                )
                .await
                .unwrap();
            if row.get::<_, Option<String>>(1).is_some() {
                assert_eq!(row.get::<_, &str>(0), "PENDING");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the busy process did not claim the run ahead");
    let idle = process().await;
    let run = tokio::time::timeout(Duration::from_secs(15), producer.wait(&waiting))
        .await
        .expect("the claimed run was kept from the idle process")
        .unwrap();
    assert_eq!(run.output, Some(42));
    drop((busy, idle));
}

/// A member of a group that never reads its row (its future held and not polled, or on a
/// blocked thread) does not stall the process's changes: the group goes on without it, and it
/// learns so when it reads at last, to make its change alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_goes_on_without_a_member_that_is_not_polled() {
    use super::group::{Groups, Locked};
    let url = database().await;
    let engine = engine(&url).await;
    let later = TriggerOptions::default().delay(Duration::from_secs(3_600));
    let first = engine
        .trigger_with::<Double>(1, later.clone())
        .await
        .unwrap();
    let second = engine.trigger_with::<Double>(2, later).await.unwrap();
    let store = PostgresStore::connect(&url).await.unwrap();
    let groups = Groups::new(store.inner.pool.clone(), store.inner.epoch);
    // Joins the group that commits next, and stops there.
    let mut stuck = groups.join(first.id()).unwrap();
    let (locked, found) = Locked::run(&groups, second.id()).await.unwrap();
    assert!(found.is_some());
    tokio::time::timeout(
        Duration::from_secs(10),
        locked.commit(Vec::new(), Vec::new()),
    )
    .await
    .expect("a member that is not polled stalled the next group")
    .unwrap();
    assert!(
        stuck.lock(first.id()).await.unwrap().is_none(),
        "the group went on without it: it changes alone"
    );
    // The transaction its late read opened ends with it: the run's row is free.
    drop((stuck, groups));
    let increment = [crate::MetadataOp::Increment("n".into(), 1.0)];
    tokio::time::timeout(
        Duration::from_secs(10),
        engine.update_metadata(first.id(), increment),
    )
    .await
    .expect("the late read's transaction still holds the run's row")
    .unwrap();
}

/// The first `count` items of a feed of `scope` from `from` in `engine`, each as its cursor, run
/// id, status, metadata and whether it is coalesced; panics if the feed stalls.
async fn shown(engine: &Engine, scope: Scope, from: crate::Cursor, count: usize) -> Vec<String> {
    let mut feed = engine.subscribe(scope, from).await.unwrap();
    let mut items = Vec::new();
    while items.len() < count {
        let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .unwrap_or_else(|_| panic!("the feed stalled after {} of {count}", items.len()))
            .unwrap()
            .unwrap();
        items.push(format!(
            "{} {} {} {:?} {}",
            item.cursor, item.run.id, item.run.status, item.run.metadata, item.coalesced
        ));
    }
    items
}

/// An engine over the database at `url` that declares `pg-double` and keeps the latest
/// `changes` changes only (a process's history; the database's log keeps the rest).
async fn short_history(url: &str, changes: usize) -> Engine {
    (builder(url).await.declare::<Double>())
        .change_history(changes, 1 << 20)
        .build()
        .unwrap()
}

/// A process's history holds its latest changes only; the database's log holds every change
/// of the retention. A feed resumed from before a process's history, in that process, gets
/// every change from the database's log, none coalesced, as a process that saw them all gets
/// them; and from before what the retention pruned, the latest snapshots, marked coalesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_resumed_from_before_its_processs_history_replays_the_databases_log() {
    const RUNS: usize = 4;
    const EACH: usize = 30;
    let url = database().await;
    let writer = engine(&url).await;
    let scope = || Scope::Tags(vec!["replay".into()]);
    let mut runs = Vec::new();
    for n in 0..RUNS {
        let options = TriggerOptions::default()
            .tag("replay")
            .delay(Duration::from_secs(3_600));
        runs.push(
            (writer.trigger_with::<Double>(n as u64, options))
                .await
                .unwrap(),
        );
    }
    let from = runs[0].cursor();
    // At the last run's creation: the first change after it takes a run out of the scope.
    let last_created = writer.latest(runs[RUNS - 1].id()).await.unwrap().cursor;
    // A run leaves the scope, early in the history: that change is replayed too, the last of
    // that run.
    writer.remove_tags(runs[1].id(), ["replay"]).await.unwrap();
    // Changes out of the feeds' scope, between theirs: never replayed.
    let later = TriggerOptions::default().delay(Duration::from_secs(3_600));
    let untagged = writer.trigger_with::<Double>(9, later).await.unwrap();
    for _ in 0..EACH {
        for run in runs.iter().chain([&untagged]) {
            let op = crate::MetadataOp::Increment("n".into(), 1.0);
            writer.update_metadata(run.id(), [op]).await.unwrap();
        }
    }
    let read = async |engine: &Engine, from, count| shown(engine, scope(), from, count).await;
    // Every change of the runs, as the writer's process (history of 4,096) has them.
    let total = RUNS * (EACH + 1) + 1 - EACH;
    let everything = read(&writer, from, total).await;
    assert!(everything.iter().all(|item| item.ends_with("false")));

    // A process that keeps the latest 8 changes only.
    let short = || short_history(&url, 8);
    let reader = short().await;
    assert_eq!(
        read(&reader, from, total).await,
        everything,
        "every change, from the log"
    );
    // From a cursor whose first change takes a run out of the scope: it shows, as the run
    // was in scope at the cursor.
    let rest = &everything[RUNS..];
    assert!(rest[0].contains(runs[1].id().as_str()), "{}", rest[0]);
    assert_eq!(read(&reader, last_created, rest.len()).await, rest);
    // Then live changes, after the replayed ones.
    let op = crate::MetadataOp::Increment("n".into(), 1.0);
    writer.update_metadata(runs[0].id(), [op]).await.unwrap();
    let mut with_next = read(&reader, from, total + 1).await;
    let next = with_next.pop().unwrap();
    assert_eq!(with_next, everything);
    assert!(next.contains(r#"{"n":31}"#), "{next}");

    // The retention pruned changes after the cursor: the latest snapshots, marked.
    client(&url)
        .await
        .execute(
            "UPDATE runcast_meta SET pruned_through = $1",
            &[&(from.position() as i64 + 2)],
        )
        .await
        .unwrap();
    let pruned = short().await;
    // Of the runs still in scope: one left it.
    let latest = read(&pruned, from, RUNS - 1).await;
    assert!(
        latest.iter().all(|item| item.ends_with("true")),
        "{latest:?}"
    );
}

/// A feed resumed from before its process's history while changes keep coming: the history
/// moves on while the database's log is read, and the feed still gets every change of its
/// run in order, none coalesced, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_resumed_while_the_history_moves_on_gets_every_change() {
    const ROUNDS: usize = 100;
    let url = database().await;
    let writer = engine(&url).await;
    let later = |tag: &str| {
        TriggerOptions::default()
            .tag(tag)
            .delay(Duration::from_secs(3_600))
    };
    let watched = writer
        .trigger_with::<Double>(1, later("moving"))
        .await
        .unwrap();
    let mut others = Vec::new();
    for n in 0..3 {
        others.push(
            writer
                .trigger_with::<Double>(n, later("other"))
                .await
                .unwrap(),
        );
    }
    let reader = short_history(&url, 16).await;
    // Changes of the watched run (counted once written) every few milliseconds, and of
    // others, more often: they move the reader's history on, and its feeds see none of them.
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writing = Vec::new();
    for id in std::iter::once(watched.id()).chain(others.iter().map(|run| run.id())) {
        let (writer, id, stop) = (writer.clone(), id.clone(), Arc::clone(&stop));
        let written = (&id == watched.id()).then(|| Arc::clone(&written));
        let pause = Duration::from_millis(if written.is_some() { 5 } else { 1 });
        writing.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let op = crate::MetadataOp::Increment("n".into(), 1.0);
                writer.update_metadata(&id, [op]).await.unwrap();
                if let Some(written) = &written {
                    written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }
    // Each round resumes from the last change the previous one read: the run's creation
    // first (the handle's cursor is before it), then each change of the watched run.
    let (mut from, mut seen) = (watched.cursor(), None);
    for round in 0..ROUNDS {
        let next = seen.map_or(0, |n| n + 1);
        let through = loop {
            let written = written.load(std::sync::atomic::Ordering::Relaxed);
            if written >= next + 10 {
                break written;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let mut feed = (reader.subscribe(Scope::Tags(vec!["moving".into()]), from))
            .await
            .unwrap();
        for n in next..=through {
            let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the feed stalled before change {n}"))
                .unwrap()
                .unwrap();
            assert!(!item.coalesced, "round {round}: change {n} came coalesced");
            let expected = (n > 0).then(|| format!(r#"{{"n":{n}}}"#));
            assert_eq!(
                item.run.metadata.as_ref().map(|m| m.get()),
                expected.as_deref(),
                "round {round}: change {n} of {through}"
            );
            from = item.cursor;
        }
        seen = Some(through);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in writing {
        task.await.unwrap();
    }
}

/// Notifications alone wake a process's reader (its backstop is an hour in these tests): bursts
/// of changes from several writers at once, each burst's last change committed while the
/// reader may be reading the ones before, all reach a feed in another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_a_reader_woken_only_by_notifications() {
    const BURSTS: usize = 10;
    const EACH: usize = 100;
    let url = database().await;
    let writer = engine(&url).await;
    let reader = engine(&url).await;
    let later = TriggerOptions::default()
        .tag("woken")
        .delay(Duration::from_secs(3_600));
    let mut runs = Vec::new();
    for n in 0..4 {
        runs.push(
            writer
                .trigger_with::<Double>(n, later.clone())
                .await
                .unwrap(),
        );
    }
    let mut feed = (reader.subscribe(Scope::Tags(vec!["woken".into()]), runs[0].cursor()))
        .await
        .unwrap();
    let mut shown = std::collections::HashMap::new();
    for burst in 1..=BURSTS {
        let writing = runs.iter().map(|run| {
            let (writer, id) = (writer.clone(), run.id().clone());
            tokio::spawn(async move {
                for _ in 0..EACH {
                    let op = crate::MetadataOp::Increment("n".into(), 1.0);
                    writer.update_metadata(&id, [op]).await.unwrap();
                }
            })
        });
        for task in writing.collect::<Vec<_>>() {
            task.await.unwrap();
        }
        let last = format!(r#"{{"n":{}}}"#, burst * EACH);
        while shown.len() < runs.len() || shown.values().any(|n| *n != last) {
            let item = tokio::time::timeout(Duration::from_secs(30), feed.next())
                .await
                .unwrap_or_else(|_| panic!("burst {burst}: the feed stalled at {shown:?}"))
                .unwrap()
                .unwrap();
            if let Some(metadata) = &item.run.metadata {
                shown.insert(item.run.id.clone(), metadata.get().to_owned());
            }
        }
    }
}

/// A batch's feed resumed from before a process's history replays the database's log of the
/// batch's runs only, as a process that saw every change has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_feed_resumed_from_before_its_processs_history_replays_the_batch() {
    let url = database().await;
    let writer = engine(&url).await;
    let later = || TriggerOptions::default().delay(Duration::from_secs(3_600));
    let batch = (writer.batch_trigger::<Double>((0..3).map(|n| (n, later()))))
        .await
        .unwrap();
    let other = (writer.batch_trigger::<Double>([(7, later())]))
        .await
        .unwrap();
    let alone = writer.trigger_with::<Double>(9, later()).await.unwrap();
    let mut ids: Vec<&RunId> = batch.runs.iter().map(|run| run.id()).collect();
    ids.extend([other.runs[0].id(), alone.id()]);
    for _ in 0..10 {
        for id in &ids {
            let op = crate::MetadataOp::Increment("n".into(), 1.0);
            writer.update_metadata(id, [op]).await.unwrap();
        }
    }
    let read = async |engine: &Engine, count| {
        shown(engine, Scope::Batch(batch.id.clone()), batch.cursor, count).await
    };
    // Each run of the batch: its creation and 10 changes.
    let everything = read(&writer, 33).await;
    assert!(everything.iter().all(|item| item.ends_with("false")));
    let reader = short_history(&url, 4).await;
    assert_eq!(read(&reader, 33).await, everything);
}

/// Asserts that `later` has each of runs `ids` exactly as `first` has it, at the same cursor.
async fn same_in_both<'a>(
    first: &Engine,
    later: &Engine,
    ids: impl IntoIterator<Item = &'a RunId>,
) {
    for id in ids {
        let (here, there) = (
            first.latest(id).await.unwrap(),
            later.latest(id).await.unwrap(),
        );
        let json = |run: &AnyRun| serde_json::to_string(run).unwrap();
        assert_eq!(json(&there.run), json(&here.run), "{id}");
        assert_eq!(there.cursor, here.cursor, "{id}");
    }
}

/// A run's row holds everything its trigger set: a process started afterwards, which reads
/// the runs from their rows, has each run exactly as the triggering process does, alone or
/// in a batch, with every option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_triggered_with_every_option_read_back_whole_in_a_later_process() {
    let url = database().await;
    let first = producer(&url).await;
    let mut metadata = crate::JsonObject::new();
    metadata.insert(
        "step".into(),
        serde_json::json!({"of": 3, "cost": 9_925.123_456_789_473}),
    );
    let every = TriggerOptions::default()
        .tag("a")
        .tag("b")
        .max_attempts(7)
        .metadata(metadata)
        .test()
        .idempotency_key("key")
        .delay(Duration::from_secs(3_600))
        .ttl(Duration::from_secs(7_200))
        .max_duration(Duration::from_millis(1_500));
    let alone = first
        .trigger_with::<Double>(1, every.clone())
        .await
        .unwrap();
    let items = [
        (2, TriggerOptions::default()),
        (3, every.idempotency_key("other")),
    ];
    let batch = first.batch_trigger::<Double>(items).await.unwrap();
    let ids = std::iter::once(alone.id()).chain(batch.runs.iter().map(|run| run.id()));
    let later = producer(&url).await;
    same_in_both(&first, &later, ids).await;
    // What the rows keep that no snapshot shows.
    let hidden = client(&url)
        .await
        .query_one(
            "SELECT runcast_max_attempts, runcast_max_duration_ms,
                    runcast_expire_at - \"createdAt\" = interval '7200 seconds'
             FROM \"TaskRun\" WHERE id = $1",
            &[&alone.id().as_str()],
        )
        .await
        .unwrap();
    assert_eq!(hidden.get::<_, i32>(0), 7);
    assert_eq!(hidden.get::<_, Option<i64>>(1), Some(1_500));
    assert!(hidden.get::<_, bool>(2), "expires a TTL after its creation");
}

/// When each run of `pg-fail-once` started its second attempt.
static RETRIED: Mutex<Vec<(RunId, crate::Timestamp)>> = Mutex::new(Vec::new());

/// Fails its first attempt; notes when the second starts, and returns its attempt number.
#[task(id = "pg-fail-once")]
async fn fail_once(_: (), ctx: TaskContext) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        return Err("the first attempt fails".into());
    }
    let now = crate::Timestamp::now();
    RETRIED.lock().unwrap().push((ctx.run_id().clone(), now));
    Ok(ctx.attempt())
}

/// A retry's backoff lives in the database: the process whose attempt failed is gone before
/// the retry is due, and a process that never saw the run attempts it again at its time, not
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_attempted_at_its_time_by_a_process_that_never_saw_the_run() {
    let url = database().await;
    let worker = || async {
        builder(&url)
            .await
            .task::<FailOnce>()
            .retry_delay(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let producer = builder(&url).await.declare::<FailOnce>().build().unwrap();
    let first = worker().await;
    let handle = producer.trigger::<FailOnce>(()).await.unwrap();
    let db = client(&url).await;
    let retry_at = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let row = db
                .query_one(
                    "SELECT status, runcast_retry_at FROM \"TaskRun\" WHERE id = $1",
                    &[&handle.id().as_str()],
                )
                .await
                .unwrap();
            if row.get::<_, &str>(0) == "RETRYING_AFTER_FAILURE" {
                break super::row::from_column(row.get(1));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first attempt never failed");
    first.shutdown(Duration::from_secs(1)).await;
    drop(first);
    let restarted = crate::Timestamp::now();
    assert!(
        restarted < retry_at,
        "the second process came at {restarted}, after the retry's time ({retry_at}): too late to tell"
    );
    let second = worker().await;
    let run = tokio::time::timeout(Duration::from_secs(20), producer.wait(&handle))
        .await
        .expect("the retry never ran")
        .unwrap();
    assert_eq!(run.output, Some(2));
    let retried = RETRIED.lock().unwrap().clone();
    let [(id, started)] = &retried[..] else {
        panic!("one retry: {retried:?}")
    };
    assert_eq!(id, handle.id());
    assert!(
        *started >= retry_at,
        "attempted at {started}, before its retry at {retry_at}"
    );
    drop(second);
}

/// Returns nothing: its output is JSON `null`.
#[task(id = "pg-nothing")]
async fn nothing(_: (), _ctx: TaskContext) -> Result<(), String> {
    Ok(())
}

/// Always fails.
#[task(id = "pg-refuse")]
async fn refuse(_: (), _ctx: TaskContext) -> Result<(), String> {
    Err("refused".into())
}

/// A row holds everything a change set: a process started afterwards has each changed run
/// exactly as the process that changed it does: tags removed and added, metadata, streams,
/// output (`null` too), error, cancellation. A finished run is leased to none, and is to be forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_runs_read_back_whole_in_a_later_process() {
    let url = database().await;
    let first = builder(&url)
        .await
        .task::<Count>()
        .task::<Refuse>()
        .task::<Nothing>()
        .declare::<Double>()
        .build()
        .unwrap();
    let tagged = TriggerOptions::default().tag("a").tag("b");
    let counted = first
        .trigger_with::<Count>(3, tagged.clone())
        .await
        .unwrap();
    let refused = (first.trigger_with::<Refuse>((), tagged.clone().max_attempts(1)))
        .await
        .unwrap();
    let waits = tagged.delay(Duration::from_secs(3_600));
    let canceled = first.trigger_with::<Double>(1, waits).await.unwrap();
    first.remove_tags(canceled.id(), ["a"]).await.unwrap();
    first.add_tags(canceled.id(), ["c"]).await.unwrap();
    let step = crate::MetadataOp::Set("step".into(), serde_json::json!({"of": [1, "two"]}));
    first.update_metadata(canceled.id(), [step]).await.unwrap();
    first.cancel(canceled.id()).await.unwrap();
    let unit = first.trigger::<Nothing>(()).await.unwrap();
    let ids = [counted.id(), refused.id(), canceled.id(), unit.id()];
    tokio::time::timeout(Duration::from_secs(10), async {
        for id in ids {
            while !first.latest(id).await.unwrap().run.status.is_final() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .expect("every run finishes");
    let later = producer(&url).await;
    same_in_both(&first, &later, ids).await;
    let (counted, refused, canceled) = (
        later.latest(counted.id()).await.unwrap().run,
        later.latest(refused.id()).await.unwrap().run,
        later.latest(canceled.id()).await.unwrap().run,
    );
    assert_eq!(counted.status, RunStatus::Completed);
    assert_eq!(counted.realtime_streams, ["numbers"]);
    assert_eq!(counted.output.as_ref().map(|o| o.get()), Some("3"));
    assert_eq!(refused.status, RunStatus::Failed);
    assert!(refused.error.is_some(), "{refused:?}");
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert_eq!(&*canceled.tags, ["b", "c"]);
    assert_eq!(
        canceled.metadata.as_ref().map(|m| m.get()),
        Some(r#"{"step":{"of":[1,"two"]}}"#)
    );
    let rows = client(&url)
        .await
        .query(
            "SELECT runcast_lease_owner IS NULL AND runcast_lease_until IS NULL,
                    runcast_forget_at IS NOT NULL
             FROM \"TaskRun\" WHERE id = ANY($1)",
            &[&ids.map(|id| id.as_str()).to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        assert!(row.get::<_, bool>(0), "a finished run is leased to none");
        assert!(row.get::<_, bool>(1), "a finished run is to be forgotten");
    }
}

/// Every process fires the timers it finds due (a delay, a TTL), and an attempt's end makes
/// its run final: each run reaches each of those states in exactly one change, however many
/// processes race to make it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_processes_make_each_timer_and_final_change_once() {
    const DELAYED: usize = 200;
    const EXPIRING: usize = 100;
    let url = database().await;
    let declaring = || async {
        builder(&url)
            .await
            .declare::<Double>()
            .declare::<Refuse>()
            .declare::<Sleep>()
            .build()
            .unwrap()
    };
    let (a, b, c) = (declaring().await, declaring().await, declaring().await);
    let _worker = builder(&url)
        .await
        .task::<Refuse>()
        .task::<Sleep>()
        .build()
        .unwrap();
    let delay = TriggerOptions::default().delay(Duration::from_secs(1));
    (a.batch_trigger::<Double>((0..DELAYED as u64).map(|n| (n, delay.clone()))))
        .await
        .unwrap();
    let ttl = TriggerOptions::default().ttl(Duration::from_secs(1));
    (b.batch_trigger::<Double>((0..EXPIRING as u64).map(|n| (n, ttl.clone()))))
        .await
        .unwrap();
    let once = TriggerOptions::default().max_attempts(1);
    c.trigger_with::<Refuse>((), once.clone()).await.unwrap();
    let limited = once.max_duration(Duration::from_millis(200));
    c.trigger_with::<Sleep>(5_000, limited).await.unwrap();
    let db = client(&url).await;
    // How many changes of the log show each status, of how many runs.
    let counts = async || -> Vec<(String, i64, i64)> {
        let rows = db
            .query(
                "SELECT status, count(*), count(DISTINCT run_id) FROM (
                     SELECT run_id, data::jsonb->>'status' AS status FROM runcast_changes
                     WHERE kind = 'run') s
                 WHERE status IN ('QUEUED', 'EXPIRED', 'FAILED', 'TIMED_OUT')
                 GROUP BY status ORDER BY status",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    };
    let expected = vec![
        ("EXPIRED".to_owned(), EXPIRING as i64, EXPIRING as i64),
        ("FAILED".to_owned(), 1, 1),
        // The runs delayed, once their delay passed; the others when triggered.
        (
            "QUEUED".to_owned(),
            (DELAYED + EXPIRING + 2) as i64,
            (DELAYED + EXPIRING + 2) as i64,
        ),
        ("TIMED_OUT".to_owned(), 1, 1),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    while counts().await.iter().map(|c| c.2).collect::<Vec<_>>()
        != expected.iter().map(|c| c.2).collect::<Vec<_>>()
    {
        assert!(Instant::now() < deadline, "{:?}", counts().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every process had a second more to make a change again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counts().await, expected);
}

/// An order, for a task that a server triggers without knowing its type.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Order {
    sku: String,
    lines: Vec<Line>,
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    quantity: u32,
}

#[derive(Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Packed {
    boxes: u32,
}

#[task(id = "pg-pack", metadata = Packed)]
async fn pack(order: Order, _ctx: TaskContext) -> Result<u32, String> {
    Ok(order.lines.iter().map(|line| line.quantity).sum())
}

/// The run `id` once it finished, as `engine` sees it.
async fn finished(engine: &Engine, id: &RunId) -> AnyRun {
    let scope = Scope::Run(id.clone());
    let mut feed = engine.subscribe(scope, crate::Cursor::START).await.unwrap();
    loop {
        let run = feed.next().await.unwrap().unwrap().run;
        if run.status.is_final() {
            return run;
        }
    }
}

/// The refusal of triggering `pg-pack` with `payload` by `engine`, which does not know the
/// task's type.
async fn refused(engine: &Engine, payload: &str) -> TriggerError {
    let payload = serde_json::value::RawValue::from_string(payload.into()).unwrap();
    let item = crate::BatchItem::from_json("pg-pack", payload, TriggerOptions::default());
    engine.trigger_item(item).await.unwrap_err()
}

/// A process that registers no task at all (a server) triggers the tasks a worker publishes,
/// refusing, with the path of the mismatch, what the task could not read, and metadata its
/// readers could not decode; a task no worker published is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_knows_no_task_triggers_what_workers_publish_checked_by_its_schemas() {
    let url = database().await;
    let server = builder(&url).await.build().unwrap();
    let json = |text: &str| serde_json::value::RawValue::from_string(text.into()).unwrap();
    let valid = r#"{"sku": "tea", "lines": [{"quantity": 2}, {"quantity": 3}]}"#;
    let item = |payload: &str| {
        crate::BatchItem::from_json("pg-pack", json(payload), TriggerOptions::default())
    };
    // Before any worker published it, the task is unknown.
    let unknown = server.trigger_item(item(valid)).await.unwrap_err();
    assert!(matches!(unknown, TriggerError::UnknownTask(ref task) if task == "pg-pack"));

    let _worker = builder(&url).await.task::<Pack>().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let run = loop {
        match server.trigger_item(item(valid)).await {
            Ok(run) => break run,
            Err(TriggerError::UnknownTask(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("the published task was not triggered: {error}"),
        }
    };
    let done = finished(&server, run.id()).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output.as_ref().map(|raw| raw.get()), Some("5"));
    assert_eq!(done.number, 1);

    // Each mismatch is refused with where it is, and nothing is stored.
    for (payload, path, says) in [
        (r#"{"lines": []}"#, ".", "\"sku\" is a required property"),
        (
            r#"{"sku": 7, "lines": []}"#,
            "sku",
            "7 is not of type \"string\"",
        ),
        (
            r#"{"sku": "tea", "lines": [{"quantity": 1}, {"quantity": -1}]}"#,
            "lines[1].quantity",
            "-1 is less than the minimum of 0",
        ),
        ("[1, 2]", ".", "is not of type \"object\""),
    ] {
        match refused(&server, payload).await {
            TriggerError::PayloadMismatch {
                task,
                path: at,
                message,
            } => {
                assert_eq!((task.as_str(), at.as_str()), ("pg-pack", path), "{payload}");
                assert!(message.contains(says), "{payload}: {message}");
            }
            other => panic!("{payload}: {other}"),
        }
    }
    // Metadata at trigger, and later changes of it, are checked against the task's schema.
    let metadata = serde_json::from_str(r#"{"boxes": "two"}"#).unwrap();
    let options = TriggerOptions::default().metadata(metadata);
    let with_metadata = crate::BatchItem::from_json("pg-pack", json(valid), options);
    let refused_metadata = server.trigger_item(with_metadata).await.unwrap_err();
    assert!(
        matches!(
            refused_metadata,
            TriggerError::Metadata(crate::MetadataError::DoesNotMatch { .. })
        ),
        "{refused_metadata}"
    );
    let set = |value: serde_json::Value| [crate::MetadataOp::Set("boxes".into(), value)];
    let wrong = server.update_metadata(run.id(), set("two".into())).await;
    assert!(
        matches!(wrong, Err(crate::MetadataError::DoesNotMatch { .. })),
        "{wrong:?}"
    );
    server
        .update_metadata(run.id(), set(2.into()))
        .await
        .unwrap();
    let latest = server.latest(run.id()).await.unwrap().run;
    let metadata = latest.metadata.as_ref().map(|raw| raw.get());
    assert_eq!(metadata, Some(r#"{"boxes":2}"#));
    // The refused triggers stored nothing: the next run is number 2.
    let next = server.trigger_item(item(valid)).await.unwrap();
    assert_eq!(finished(&server, next.id()).await.number, 2);
    // A task no worker published is still unknown.
    let other = crate::BatchItem::from_json("pg-nothing", json("1"), TriggerOptions::default());
    assert!(matches!(
        server.trigger_item(other).await,
        Err(TriggerError::UnknownTask(task)) if task == "pg-nothing"
    ));
}
