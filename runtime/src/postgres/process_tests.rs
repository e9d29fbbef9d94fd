//! Engines in separate OS processes over one database: this test binary, started again as a
//! child in a role (a worker, a holder that runs one task only, a process that triggers, a
//! watcher), by the tests here.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use futures::StreamExt;

use super::PostgresStore;
use super::testing::database;
use crate::model::RunStatus;
use crate::{Cursor, Engine, RunFeed, Scope, TaskContext, TriggerOptions, task};

/// A process that triggers and watches, and runs nothing.
fn declaring(store: PostgresStore) -> Engine {
    Engine::builder()
        .postgres(store)
        .declare::<Double>()
        .declare::<Hold>()
        .build()
        .expect("an engine")
}

/// What a child prints before each line meant for its parent.
const LINE: &str = "runcast-child:";

#[task(id = "mp-double")]
async fn double(n: u64, _ctx: TaskContext) -> Result<u64, String> {
    Ok(n * 2)
}

/// Holds its first attempt for `ms` milliseconds; returns its attempt number.
#[task(id = "mp-hold")]
async fn hold(ms: u64, ctx: TaskContext) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(ctx.attempt())
}

/// The entry point of the child processes the tests below start: this test binary run again
/// with `RUNCAST_CHILD` set to a role. Started by the test harness without it, it returns at
/// once.
#[test]
fn child() {
    let Ok(role) = std::env::var("RUNCAST_CHILD") else {
        return;
    };
    let url = std::env::var("RUNCAST_CHILD_URL").expect("RUNCAST_CHILD_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let store = PostgresStore::connect(&url)
            .await
            .expect("connect")
            .lease(Duration::from_millis(600));
        match role.as_str() {
            "worker" => {
                let _engine = Engine::builder()
                    .postgres(store)
                    .task::<Double>()
                    .task::<Hold>()
                    .concurrency(4)
                    .build()
                    .expect("an engine");
                say(&format!("ready {}", std::process::id()));
                std::future::pending::<()>().await;
            }
            "holder" => {
                // Runs `mp-hold` only: runs of `mp-double` stay queued.
                let _engine = Engine::builder()
                    .postgres(store)
                    .task::<Hold>()
                    .declare::<Double>()
                    .build()
                    .expect("an engine");
                say("ready");
                std::future::pending::<()>().await;
            }
            "trigger" => {
                let engine = declaring(store);
                let held = engine.trigger::<Hold>(300_000).await.expect("a trigger");
                let later = TriggerOptions::default().delay(Duration::from_secs(2));
                let delayed = (engine.trigger_with::<Double>(1, later).await).expect("a trigger");
                let queued = engine.trigger::<Double>(2).await.expect("a trigger");
                let much_later = TriggerOptions::default().delay(Duration::from_secs(8));
                let not_yet =
                    (engine.trigger_with::<Double>(3, much_later).await).expect("a trigger");
                say(&format!(
                    "runs {} {} {} {}",
                    held.id(),
                    delayed.id(),
                    queued.id(),
                    not_yet.id()
                ));
                std::future::pending::<()>().await;
            }
            "watcher" => {
                let engine = declaring(store);
                let from: Cursor = std::env::var("RUNCAST_CHILD_FROM")
                    .map_or(Cursor::START, |c| c.parse().expect("a cursor"));
                let until: usize = (std::env::var("RUNCAST_CHILD_UNTIL").expect("UNTIL"))
                    .parse()
                    .expect("a count");
                let scope = Scope::Tags(vec!["mp".into()]);
                let mut feed = engine.subscribe(scope, from).await.expect("a feed");
                say("ready");
                let mut completed = 0;
                // Then a second more: a change repeated after the last completion shows too.
                let mut grace = None;
                loop {
                    let next = match grace {
                        None => feed.next().await,
                        Some(grace) => match tokio::time::timeout_at(grace, feed.next()).await {
                            Ok(next) => next,
                            Err(_) => break,
                        },
                    };
                    let item = next.expect("an item").expect("no error");
                    completed += usize::from(item.run.status == RunStatus::Completed);
                    say(&format!(
                        "item {} {} {} {}",
                        item.cursor, item.run.id, item.run.status, item.coalesced
                    ));
                    if completed == until && grace.is_none() {
                        grace = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn say(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{LINE} {line}");
    }
}

/// A child process in `role`, and the lines it says.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it wrote to stderr, for the message of a test that fails.
    errors: Arc<Mutex<String>>,
}

impl Process {
    fn start(role: &str, url: &str, env: &[(&str, String)]) -> Process {
        let mut command = Command::new(std::env::current_exe().expect("this test binary"));
        command
            .args([
                "--exact",
                "postgres::process_tests::child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RUNCAST_CHILD", role)
            .env("RUNCAST_CHILD_URL", url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("a child process");
        let stdout = child.stdout.take().expect("its stdout");
        let errors = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("its stderr");
        std::thread::spawn({
            let errors = Arc::clone(&errors);
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut errors = crate::support::lock(&errors);
                    errors.push_str(&line);
                    errors.push('\n');
                }
            }
        });
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness's own words may precede it on the line ("test child ... ").
                if let Some((_, said)) = line.split_once(LINE) {
                    let _ = sender.send(said.trim().to_owned());
                }
            }
        });
        Process {
            child,
            lines,
            errors,
        }
    }

    /// The next line it says, within `wait`.
    fn next(&self, wait: Duration) -> String {
        self.lines.recv_timeout(wait).unwrap_or_else(|_| {
            let errors = crate::support::lock(&self.errors);
            panic!("a child said nothing for {wait:?}; its stderr:\n{errors}")
        })
    }

    /// Its lines until it ends.
    fn rest(mut self, wait: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(wait) {
            lines.push(line);
        }
        let status = self.child.wait().expect("its status");
        let errors = crate::support::lock(&self.errors);
        assert!(
            status.success(),
            "a child failed ({status}); its stderr:\n{errors}"
        );
        drop(errors);
        lines
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An item a watcher said: `(cursor, run, status, coalesced)`.
fn item(line: &str) -> (Cursor, String, String, bool) {
    let mut words = line.split(' ');
    assert_eq!(words.next(), Some("item"), "{line}");
    let cursor = words.next().expect("a cursor").parse().expect("a cursor");
    let run = words.next().expect("a run").to_owned();
    let status = words.next().expect("a status").to_owned();
    let coalesced = words.next() == Some("true");
    (cursor, run, status, coalesced)
}

/// This process triggers; two worker processes execute; a watcher process subscribes. A
/// worker is killed (SIGKILL) in the middle of an attempt: the other retries the run. Every
/// run shows each of its states once, in order, to the watcher. A second watcher, started
/// after all of it from a cursor in the middle of the first one's items, gets exactly the
/// rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_trigger_execute_watch_and_survive_a_killed_worker() {
    let url = database().await;
    drop(PostgresStore::connect(&url).await.unwrap());
    const DOUBLES: usize = 40;
    let until = [("RUNCAST_CHILD_UNTIL", (DOUBLES + 1).to_string())];
    let watcher = Process::start("watcher", &url, &until);
    assert_eq!(watcher.next(Duration::from_secs(60)), "ready");
    let workers = [
        Process::start("worker", &url, &[]),
        Process::start("worker", &url, &[]),
    ];
    let pids: Vec<String> = (workers.iter())
        .map(|w| w.next(Duration::from_secs(60)))
        .map(|line| line.strip_prefix("ready ").expect("ready <pid>").to_owned())
        .collect();

    let producer = declaring(PostgresStore::connect(&url).await.unwrap());
    let tagged = TriggerOptions::default().tag("mp");
    let held = producer
        .trigger_with::<Hold>(300_000, tagged.clone())
        .await
        .unwrap();
    for n in 0..DOUBLES as u64 {
        producer
            .trigger_with::<Double>(n, tagged.clone())
            .await
            .unwrap();
    }
    // The worker executing the held run, by its lease.
    let client = super::tests::client(&url).await;
    let owner = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let row = client
                .query_one(
                    "SELECT runcast_lease_owner FROM \"TaskRun\" WHERE id = $1 AND status = 'EXECUTING'",
                    &[&held.id().as_str()],
                )
                .await;
            if let Ok(row) = row {
                return row.get::<_, String>(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held run never started");
    let victim = (pids.iter())
        .position(|pid| owner.starts_with(&format!("{pid}-")))
        .expect("the owner is one of the workers");
    let mut workers = workers;
    workers[victim].child.kill().unwrap();

    let done = producer.wait(&held).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(2), "the second attempt completed it");

    let lines = watcher.rest(Duration::from_secs(60));
    let items: Vec<_> = lines.iter().map(|line| item(line)).collect();
    assert!(items.windows(2).all(|w| w[0].0 < w[1].0), "in cursor order");
    assert!(items.iter().all(|i| !i.3), "none coalesced");
    let mut by_run: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, run, status, _) in &items {
        by_run.entry(run).or_default().push(status);
    }
    assert_eq!(by_run.len(), DOUBLES + 1);
    // Runs the killed worker was executing (the held one, perhaps others) were retried.
    let retried = [
        "QUEUED",
        "EXECUTING",
        "REATTEMPTING",
        "EXECUTING",
        "COMPLETED",
    ];
    let once = ["QUEUED", "EXECUTING", "COMPLETED"];
    assert_eq!(by_run[held.id().as_str()], retried);
    for (run, statuses) in &by_run {
        assert!(
            *statuses == retried || *statuses == once,
            "run {run}: {statuses:?}"
        );
    }

    // Another process, later, resumes from the middle.
    let middle = items.len() / 2;
    let completed_before = (items[..=middle].iter())
        .filter(|i| i.2 == "COMPLETED")
        .count();
    let env = [
        ("RUNCAST_CHILD_FROM", items[middle].0.to_string()),
        (
            "RUNCAST_CHILD_UNTIL",
            (DOUBLES + 1 - completed_before).to_string(),
        ),
    ];
    let resumed = Process::start("watcher", &url, &env);
    assert_eq!(resumed.next(Duration::from_secs(60)), "ready");
    let rest: Vec<_> = (resumed.rest(Duration::from_secs(60)).iter())
        .map(|line| item(line))
        .collect();
    assert_eq!(rest, items[middle + 1..], "exactly the rest");
}

/// Every process is killed while runs wait: one executing (its worker killed mid-attempt),
/// two delayed, one queued with no process to run it. The first delay's time passes while no
/// process is alive. Processes started afterwards, none of which saw the runs triggered,
/// attempt the executing run again, fire the first delay, fire the second at its time (not
/// at once) and run the queued run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_waiting_outlive_the_restart_of_every_process() {
    let url = database().await;
    drop(PostgresStore::connect(&url).await.unwrap());
    let holder = Process::start("holder", &url, &[]);
    assert_eq!(holder.next(Duration::from_secs(60)), "ready");
    let trigger = Process::start("trigger", &url, &[]);
    let said = trigger.next(Duration::from_secs(60));
    let ids: Vec<String> = (said.strip_prefix("runs ").expect("runs <ids>").split(' '))
        .map(str::to_owned)
        .collect();
    let [held, delayed, queued, not_yet] = &ids[..] else {
        panic!("four runs: {said}")
    };
    let client = super::tests::client(&url).await;
    let status = async |id: &str| -> String {
        let row = client
            .query_one("SELECT status FROM \"TaskRun\" WHERE id = $1", &[&id])
            .await
            .unwrap();
        row.get(0)
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while status(held).await != "EXECUTING" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held run never started");
    assert_eq!(status(delayed).await, "DELAYED");
    assert_eq!(status(not_yet).await, "DELAYED");
    assert_eq!(status(queued).await, "PENDING");
    drop((holder, trigger));
    // Nobody is alive when the delay is due.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(status(delayed).await, "DELAYED");

    let restarted = crate::Timestamp::now();
    let _worker = Process::start("worker", &url, &[]);
    let watcher = declaring(PostgresStore::connect(&url).await.unwrap());
    let limit = Duration::from_secs(30);
    let id = |id: &str| crate::RunId::from(id);
    let held = tokio::time::timeout(limit, watcher.wait::<Hold>(&id(held)))
        .await
        .expect("the held run never finished")
        .unwrap();
    assert_eq!(held.status, RunStatus::Completed);
    assert_eq!(held.output, Some(2), "attempted again");
    let delayed = tokio::time::timeout(limit, watcher.wait::<Double>(&id(delayed)))
        .await
        .expect("the delayed run never finished")
        .unwrap();
    assert_eq!(delayed.output, Some(2));
    let not_yet = tokio::time::timeout(limit, watcher.wait::<Double>(&id(not_yet)))
        .await
        .expect("the second delayed run never finished")
        .unwrap();
    assert_eq!(not_yet.output, Some(6));
    let (due, started) = (not_yet.delayed_until.unwrap(), not_yet.started_at.unwrap());
    assert!(
        restarted < due,
        "the processes started again at {restarted}, after its delay ({due}): too late to tell"
    );
    assert!(started >= due, "started {started} before its delay, {due}");
    let queued = tokio::time::timeout(limit, watcher.wait::<Double>(&id(queued)))
        .await
        .expect("the queued run never finished")
        .unwrap();
    assert_eq!(queued.output, Some(4));
}
