//! The `runcast-server` binary as users start it: a real process over a real Postgres (a
//! temporary cluster, see `runtime/src/postgres/testing.rs`), next to a worker (an engine in
//! this test process) that runs the tasks and publishes them, reached over loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../runtime/tests/common/http.rs"]
#[allow(dead_code, unreachable_pub)]
mod http;
#[path = "../../runtime/tests/common/sdk.rs"]
#[allow(dead_code, unreachable_pub)]
mod sdk;
#[path = "../../runtime/src/postgres/testing.rs"]
#[allow(dead_code, unreachable_pub)]
mod testing;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runcast::{Engine, PostgresStore};
use serde_json::{Value, json};

use self::http::{Count, Echo, SECRET, call};

const BINARY: &str = env!("CARGO_BIN_EXE_runcast-server");

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// What it logged after its address.
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary over `database` on an ephemeral port, with these flags, once it says
/// where it listens.
fn start(database: &str, flags: &[&str]) -> Server {
    let mut child = Command::new(BINARY)
        .args(flags)
        .env("DATABASE_URL", database)
        .env("RUNCAST_SECRET_KEY", SECRET)
        .env("RUNCAST_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, log) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .expect("the server said where it listens");
        if let Some((_, addr)) = line.split_once("serving Trigger.dev's API on http://") {
            let addr = addr.split_whitespace().next().unwrap();
            break addr.parse().unwrap();
        }
    };
    Server { child, addr, log }
}

/// A worker over `database` that runs `count` and `echo` (and publishes them).
async fn worker(database: &str) -> Engine {
    let store = PostgresStore::connect(database).await.unwrap();
    let engine = Engine::builder()
        .postgres(store)
        .task::<Count>()
        .task::<Echo>();
    engine.build().unwrap()
}

/// Triggers `task` with `payload` as the SDK sends it (a superjson packet).
async fn trigger(addr: SocketAddr, task: &str, payload: &Value) -> http::Reply {
    let body = json!({
        "payload": json!({ "json": payload }).to_string(),
        "options": { "payloadType": "application/super+json" },
    });
    let path = format!("/api/v1/tasks/{task}/trigger");
    call(addr, "POST", &path, Some(SECRET), Some(&body.to_string())).await
}

/// `request` (a trigger) answered once a worker published its task: its reply, retried while
/// it is `404`, for up to 20 seconds.
async fn once_published<F: Future<Output = http::Reply>>(request: impl Fn() -> F) -> http::Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = request().await;
        if reply.status != 404 || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run `id` as the server retrieves it once it completed (or after 20 seconds).
async fn completed(addr: SocketAddr, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = call(
            addr,
            "GET",
            &format!("/api/v3/runs/{id}"),
            Some(SECRET),
            None,
        )
        .await;
        assert_eq!(run.status, 200, "{}", run.body);
        let run = run.json();
        if run["status"] == "COMPLETED" || Instant::now() > deadline {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the binary says on stderr when it refuses to start with `args`.
fn refused(args: &[&str]) -> String {
    let out = Command::new(BINARY)
        .env_remove("RUNCAST_SECRET_KEY")
        .env_remove("DATABASE_URL")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_names_every_setting_and_its_environment_variable() {
    let out = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, variable) in [
        ("--database-url", "DATABASE_URL"),
        ("--secret-key", "RUNCAST_SECRET_KEY"),
        ("--listen", "RUNCAST_LISTEN"),
        ("--public-url", "RUNCAST_PUBLIC_URL"),
        ("--environment", "RUNCAST_ENVIRONMENT"),
        ("--max-payload-bytes", "RUNCAST_MAX_PAYLOAD_BYTES"),
        ("--max-body-bytes", "RUNCAST_MAX_BODY_BYTES"),
        ("--max-packet-bytes", "RUNCAST_MAX_PACKET_BYTES"),
        ("--live-hold-secs", "RUNCAST_LIVE_HOLD_SECS"),
        ("--sse-secs", "RUNCAST_SSE_SECS"),
        ("--max-live-requests", "RUNCAST_MAX_LIVE_REQUESTS"),
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
        assert!(help.contains(&format!("env: {variable}")), "{variable}");
    }
    assert!(help.contains("RUST_LOG"));
}

#[test]
fn missing_or_wrong_settings_are_clear_errors() {
    let said = refused(&["--database-url", "host=/nowhere dbname=none"]);
    assert!(said.contains("--secret-key <SECRET_KEY>"), "{said}");
    let said = refused(&["--secret-key", "", "--database-url", "host=/nowhere"]);
    assert!(said.contains("the secret key is empty"), "{said}");
    let unreachable = "host=/nonexistent dbname=x";
    let said = refused(&["--secret-key", SECRET, "--database-url", unreachable]);
    assert!(said.contains("could not open the database"), "{said}");
}

/// The split Trigger.dev makes between API and workers: the server runs no task, triggers
/// the ones a worker published (refusing others, and payloads their schemas refuse, with the
/// path), and serves the runs the worker executes; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_triggers_what_a_worker_in_another_process_runs_and_publishes() {
    let database = testing::database().await;
    let mut server = start(&database, &[]);
    let addr = server.addr;
    let health = call(addr, "GET", "/healthcheck", None, None).await;
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    // No worker yet: no task is known.
    let reply = trigger(addr, "count", &json!({ "to": 2, "pause": 1 })).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(reply.body.contains("count"), "{}", reply.body);

    let worker = worker(&database).await;
    let counting = json!({ "to": 3, "pause": 1 });
    let reply = once_published(|| trigger(addr, "count", &counting)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();

    // The worker runs it; the server reads it as it ends.
    let run = completed(addr, &id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["output"], 3, "{run}");
    assert_eq!(run["metadata"]["count"], 3, "{run}");
    // Its feed, from the start, in the shape protocol.
    let path = format!("/realtime/v1/runs/{id}?offset=-1");
    let feed = call(addr, "GET", &path, Some(SECRET), None).await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    assert!(
        feed.body.contains("\"status\":\"PENDING\""),
        "{}",
        feed.body
    );

    // A payload the published schema refuses, with where; a task no worker published.
    let reply = trigger(addr, "count", &json!({ "to": "three", "pause": 1 })).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("at `to`") && error.contains("\"three\""),
        "{error}"
    );
    let reply = trigger(addr, "resize", &json!({})).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    // Any JSON is an `echo` payload: its schema says so.
    let reply = trigger(addr, "echo", &json!([1, "two", null])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The official SDK, as the README points it at the server.
    let report = tokio::task::spawn_blocking(move || {
        sdk::run(
            "server-binary.mjs",
            &[
                ("TRIGGER_API_URL", format!("http://{addr}")),
                ("TRIGGER_SECRET_KEY", SECRET.to_owned()),
            ],
        )
    })
    .await
    .unwrap();
    let state = |status: &str, count: Value, output: Value| json!({ "status": status, "count": count, "output": output });
    let expected = json!([
        state("QUEUED", Value::Null, Value::Null),
        state("EXECUTING", Value::Null, Value::Null),
        state("EXECUTING", json!(1), Value::Null),
        state("EXECUTING", json!(2), Value::Null),
        state("EXECUTING", json!(3), Value::Null),
        state("COMPLETED", json!(3), json!(3)),
    ]);
    assert_eq!(report["follow"], expected, "{report:#}");
    let mismatch = &report["mismatch"]["failed"];
    assert_eq!(mismatch["status"], 422, "{report:#}");
    let said = mismatch["message"].as_str().unwrap();
    assert!(said.contains("at `to`"), "{said}");
    assert_eq!(report["unknown"]["failed"]["status"], 404, "{report:#}");

    // SIGTERM: the server stops and says so.
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let said: Vec<String> = server.log.try_iter().collect();
    assert!(
        said.iter().any(|line| line.contains("stopping")),
        "{said:?}"
    );
    drop(worker);
}

/// Two servers over one database, as behind a load balancer: a packet uploaded through one is
/// triggered through the other, and a batch named by one receives its items through both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_over_one_database_share_uploaded_packets_and_open_batches() {
    let database = testing::database().await;
    let (one, two) = (start(&database, &[]), start(&database, &[]));
    let (a, b) = (one.addr, two.addr);
    let _worker = worker(&database).await;

    // Upload through one...
    let path = "trigger/packet_shared/payload.json";
    let encoded = path.replace('/', "%2F");
    let url = call(
        a,
        "PUT",
        &format!("/api/v2/packets/{encoded}"),
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(url.status, 200, "{}", url.body);
    let presigned = url.json()["presignedUrl"].as_str().unwrap().to_owned();
    let upload = presigned.strip_prefix(&format!("http://{a}")).unwrap();
    let packet = json!({ "json": { "to": 2, "pause": 1 } }).to_string();
    let headers = [("Content-Type", "application/super+json")];
    let uploaded = http::call_headers(a, "PUT", upload, None, &headers, Some(&packet)).await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    // ...trigger through the other (once the worker published `count`).
    let body = json!({ "payload": path, "options": { "payloadType": "application/store" } });
    let body = body.to_string();
    let path = "/api/v1/tasks/count/trigger";
    let reply = once_published(|| call(b, "POST", path, Some(SECRET), Some(&body))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let run = call(a, "GET", &format!("/api/v3/runs/{id}"), Some(SECRET), None).await;
    assert_eq!(run.json()["payload"], json!({ "to": 2, "pause": 1 }));

    // A batch named by one, its items sent to both.
    let named = json!({ "runCount": 3, "taskIdentifiers": ["count"] }).to_string();
    let named = call(a, "POST", "/api/v3/batches", Some(SECRET), Some(&named)).await;
    assert_eq!(named.status, 202, "{}", named.body);
    let batch = named.json()["id"].as_str().unwrap().to_owned();
    let items = format!("/api/v3/batches/{batch}/items");
    let line = |index: usize| {
        let payload = json!({ "json": { "to": 1, "pause": 1 } }).to_string();
        json!({ "index": index, "task": "count", "payload": payload, "options": { "payloadType": "application/super+json" } }).to_string()
    };
    let part = call(b, "POST", &items, Some(SECRET), Some(&line(1))).await;
    assert_eq!(part.status, 200, "{}", part.body);
    assert_eq!(part.json()["sealed"], false);
    let rest = format!("{}\n{}\n{}", line(0), line(1), line(2));
    let sealed = call(a, "POST", &items, Some(SECRET), Some(&rest))
        .await
        .json();
    assert_eq!(
        (
            sealed["sealed"].clone(),
            sealed["itemsAccepted"].clone(),
            sealed["itemsDeduplicated"].clone()
        ),
        (json!(true), json!(2), json!(1)),
        "{sealed}"
    );
    // Sent again through the other: sealed already, nothing new.
    let again = call(b, "POST", &items, Some(SECRET), Some(&rest))
        .await
        .json();
    assert_eq!(
        (again["sealed"].clone(), again["itemsAccepted"].clone()),
        (json!(true), json!(0))
    );
    let feed = format!("/realtime/v1/batches/{batch}?offset=-1");
    let feed = call(b, "GET", &feed, Some(SECRET), None).await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let rows = |reply: &http::Reply| {
        let messages = reply.json();
        messages
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.get("key").is_some())
            .count()
    };
    assert_eq!(rows(&feed), 3, "{}", feed.body);

    // A server that stopped while it triggered a batch's runs leaves it `sealing`; a minute
    // later, the batch is sealed if its runs were stored, or open again if not.
    let (client, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let abandon = "UPDATE runcast_open_batches
                   SET phase = 'sealing', named_at = now() - interval '2 minutes' WHERE id = $1";
    client.execute(abandon, &[&batch]).await.unwrap();
    let again = call(b, "POST", &items, Some(SECRET), Some(&rest))
        .await
        .json();
    assert_eq!(
        (again["sealed"].clone(), again["itemsAccepted"].clone()),
        (json!(true), json!(0))
    );
    let named = json!({ "runCount": 2, "taskIdentifiers": ["count"] }).to_string();
    let named = call(a, "POST", "/api/v3/batches", Some(SECRET), Some(&named)).await;
    let stopped = named.json()["id"].as_str().unwrap().to_owned();
    let items = format!("/api/v3/batches/{stopped}/items");
    let part = call(a, "POST", &items, Some(SECRET), Some(&line(0))).await;
    assert_eq!(part.json()["sealed"], false, "{}", part.body);
    client.execute(abandon, &[&stopped]).await.unwrap();
    let rest = format!("{}\n{}", line(0), line(1));
    let sealed = call(b, "POST", &items, Some(SECRET), Some(&rest))
        .await
        .json();
    assert_eq!(
        (sealed["sealed"].clone(), sealed["itemsAccepted"].clone()),
        (json!(true), json!(1)),
        "{sealed}"
    );
    let feed = format!("/realtime/v1/batches/{stopped}?offset=-1");
    let feed = call(a, "GET", &feed, Some(SECRET), None).await;
    assert_eq!(rows(&feed), 2, "{}", feed.body);
}

/// SIGTERM while a client waits on a live feed request: the request is answered at once (it
/// does not wait out its hold, two minutes here), and the server exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_answers_its_waiting_feed_requests_and_exits() {
    let database = testing::database().await;
    let mut server = start(&database, &["--live-hold-secs", "120"]);
    let addr = server.addr;
    let _worker = worker(&database).await;
    let hello = json!("hello");
    let reply = once_published(|| trigger(addr, "echo", &hello)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(completed(addr, &id).await["status"], "COMPLETED");
    let first = format!("/realtime/v1/runs/{id}?offset=-1");
    let first = call(addr, "GET", &first, Some(SECRET), None).await;
    let handle = first.header("electric-handle").unwrap().to_owned();
    let mut offset = first.header("electric-offset").unwrap().to_owned();
    // Read to the end of the run's changes (it finished): a live request then waits.
    loop {
        let next = format!("/realtime/v1/runs/{id}?handle={handle}&offset={offset}");
        let next = call(addr, "GET", &next, Some(SECRET), None).await;
        let rows = next
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.get("key").is_some())
            .count();
        if rows == 0 {
            break;
        }
        offset = next.header("electric-offset").unwrap().to_owned();
    }
    let live = format!("/realtime/v1/runs/{id}?handle={handle}&offset={offset}&live=true");
    let waiting = tokio::spawn(async move { call(addr, "GET", &live, Some(SECRET), None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    if waiting.is_finished() {
        let answered = waiting.await.unwrap();
        panic!(
            "the live request did not wait: {} {}",
            answered.status, answered.body
        );
    }

    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let answered = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the waiting request was answered before its hold")
        .unwrap();
    assert!(matches!(answered.status, 200 | 503), "{}", answered.status);
    let mut child = std::mem::replace(&mut server.child, Command::new("true").spawn().unwrap());
    let exited = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(60), exited)
        .await
        .expect("the server exited before the hold ended")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// The database goes away under a running server (it refuses connections, and the server's
/// are cut): `/healthcheck` answers 503, and 200 again once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_follows_the_database_away_and_back() {
    let database = testing::database().await;
    let server = start(&database, &[]);
    let health = || async { call(server.addr, "GET", "/healthcheck", None, None).await };
    assert_eq!(health().await.status, 200);
    // From the server's `postgres` database: a database cannot refuse its own connections.
    let mut config: tokio_postgres::Config = database.parse().unwrap();
    let name = config.get_dbname().unwrap().to_owned();
    config.dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let allow = |allowed: bool| format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS {allowed}"#);
    client.batch_execute(&allow(false)).await.unwrap();
    let cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1";
    client.execute(cut, &[&name]).await.unwrap();
    let until = |status: u16| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = health().await;
            if reply.status == status {
                return reply;
            }
            assert!(
                Instant::now() < deadline,
                "no {status}: {} {}",
                reply.status,
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let away = until(503).await;
    assert_eq!(away.body, "Unavailable");
    client.batch_execute(&allow(true)).await.unwrap();
    until(200).await;
}
