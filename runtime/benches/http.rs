//! Load program for the HTTP server (feature `server`). The server runs in a child process
//! (this program again, as `serve`), so that its memory and CPU are its own; clients speak
//! HTTP/1.1 over loopback, keeping their connections. Prints figures; asserts nothing about
//! speed.
//!
//! ```sh
//! cargo bench -p runcast --features server --bench http
//! ```
//!
//! Sections (name some to run only those, as in `-- latency`):
//! - `latency`: a change of a run's metadata (made through the server's metadata route, the
//!   time sent in it) to its row in the response of each live feed request on the run, p50,
//!   p99, max, with 1 subscriber (a change every 5 ms) and with 1,000 (a change every 100 ms:
//!   10,000 rows per second to read, on the same two cores);
//! - `held`: live feed requests held at once (10,000), the server's memory per request and its
//!   CPU while they wait;
//! - `trigger`: triggers per second through `POST /api/v1/tasks/{id}/trigger` from
//!   `CLIENTS` connections, beside `engine.trigger` in one process from as many tasks.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runcast::Engine;
use runcast::http::ServerConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

mod common;
use common::{Hold, Noop, cpu_of, rss_of};

const SECRET: &str = "tr_dev_bench_secret";
/// Live requests held in `held`.
const HELD: usize = 10_000;
/// Connections (and in-process tasks) triggering at once in `trigger`.
const CLIENTS: usize = 16;
/// How long each trigger measurement lasts.
const SPAN: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if args.first().map(String::as_str) == Some("serve") {
        runtime.block_on(serve());
        return;
    }
    let sections: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.contains(&name);
    runtime.block_on(async {
        if wanted("latency") {
            latency(1, 1_000, Duration::from_millis(5)).await;
            latency(1_000, 100, Duration::from_millis(100)).await;
        }
        if wanted("held") {
            held().await;
        }
        if wanted("trigger") {
            trigger().await;
        }
    });
}

/// The child: a server over an engine in memory, until its input closes.
async fn serve() {
    let engine = Engine::builder()
        .task::<Noop>()
        .task::<Hold>()
        .max_subscriptions(usize::MAX)
        .build()
        .unwrap();
    let config = ServerConfig::new(SECRET).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    let app = runcast::http::router(engine, config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Ends with its parent: stdin closes.
    let _ = tokio::task::spawn_blocking(|| {
        let mut byte = [0u8; 1];
        std::io::Read::read(&mut std::io::stdin(), &mut byte)
    })
    .await;
}

/// A server child process and its address.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap()
            .parse()
            .unwrap();
        Server { child, addr }
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> usize {
        rss_of(&self.child.id().to_string())
    }

    /// CPU time used so far (user and system).
    fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }
}

/// CPU time this process used so far.
fn own_cpu() -> Duration {
    cpu_of("self")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One kept HTTP/1.1 connection.
struct Conn {
    stream: AsyncBufReader<TcpStream>,
    addr: SocketAddr,
}

/// A response: status, the headers asked for, body.
struct Response {
    status: u16,
    offset: Option<String>,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream: AsyncBufReader::new(stream),
            addr,
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> Response {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let (mut length, mut offset) = (0, None);
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "electric-offset" => offset = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        Response {
            status,
            offset,
            body,
        }
    }
}

fn now_micros() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// A run of `hold`, executing, to change the metadata of.
async fn held_run(addr: SocketAddr) -> String {
    let mut conn = Conn::open(addr).await;
    let body = json!({ "payload": null }).to_string();
    let reply = conn.send("POST", "/api/v1/tasks/hold/trigger", &body).await;
    let id: Value = serde_json::from_slice(&reply.body).unwrap();
    id["id"].as_str().unwrap().to_owned()
}

/// `changes` changes, `pause` apart, to a run that `subscribers` live requests watch.
async fn latency(subscribers: usize, changes: u64, pause: Duration) {
    let server = Server::start();
    let addr = server.addr;
    let id = held_run(addr).await;
    let handle = handle_of(addr, &id).await;
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let (id, handle, samples, seen) =
            (id.clone(), handle.clone(), samples.clone(), seen.clone());
        readers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let first = conn
                .send("GET", &format!("/realtime/v1/runs/{id}?offset=-1"), "")
                .await;
            let mut offset = first.offset.unwrap();
            loop {
                let path = format!(
                    "/realtime/v1/runs/{id}?handle={handle}&live=true&offset={offset}&cursor="
                );
                let reply = conn.send("GET", &path, "").await;
                let received = now_micros();
                offset = reply.offset.unwrap();
                let body: Value = serde_json::from_slice(&reply.body).unwrap();
                for message in body.as_array().unwrap() {
                    let Some(metadata) = message["value"]["metadata"].as_str() else {
                        continue;
                    };
                    let metadata: Value = serde_json::from_str(metadata).unwrap();
                    let (Some(sent), Some(n)) = (metadata["sent"].as_u64(), metadata["n"].as_u64())
                    else {
                        continue;
                    };
                    samples.lock().unwrap().push(received.saturating_sub(sent));
                    seen.fetch_add(1, Ordering::SeqCst);
                    if n == changes {
                        return;
                    }
                }
            }
        }));
    }
    // Every reader waits on its live request.
    tokio::time::sleep(Duration::from_millis(500 + subscribers as u64)).await;
    let mut writer = Conn::open(addr).await;
    let path = format!("/api/v1/runs/{id}/metadata");
    let cpu = (server.cpu(), own_cpu());
    for n in 1..=changes {
        let body = json!({ "operations": [
            { "type": "set", "key": "sent", "value": now_micros() },
            { "type": "set", "key": "n", "value": n },
        ] });
        let reply = writer.send("PUT", &path, &body.to_string()).await;
        assert_eq!(reply.status, 200);
        tokio::time::sleep(pause).await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
    let server_cpu = server.cpu().saturating_sub(cpu.0).as_secs_f64() / changes as f64;
    let client_cpu = own_cpu().saturating_sub(cpu.1).as_secs_f64() / changes as f64;
    let mut samples = samples.lock().unwrap().clone();
    samples.sort_unstable();
    println!(
        "latency: change -> row in a live response, {subscribers} subscriber(s), {} rows of {changes} changes every {pause:?}: p50 {:.2} ms p99 {:.2} ms max {:.2} ms (CPU per change: server {:.2} ms, clients {:.2} ms)",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
        server_cpu * 1000.0,
        client_cpu * 1000.0,
    );
}

/// The handle of run `id`'s feed (the engine's epoch).
async fn handle_of(addr: SocketAddr, id: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /realtime/v1/runs/{id}?offset=-1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {SECRET}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw.lines()
        .find_map(|line| line.strip_prefix("electric-handle: "))
        .unwrap()
        .trim()
        .to_owned()
}

async fn held() {
    let server = Server::start();
    let addr = server.addr;
    let id = held_run(addr).await;
    let handle = handle_of(addr, &id).await;
    let offset = {
        let mut conn = Conn::open(addr).await;
        let first = conn
            .send("GET", &format!("/realtime/v1/runs/{id}?offset=-1"), "")
            .await;
        first.offset.unwrap()
    };
    // Let the server settle before its baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss();
    let mut conns = Vec::with_capacity(HELD);
    let path = format!("/realtime/v1/runs/{id}?handle={handle}&live=true&offset={offset}&cursor=");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {SECRET}\r\n\r\n");
    let opening = Instant::now();
    for _ in 0..HELD {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        conns.push(stream);
    }
    let opened = opening.elapsed();
    // Every request reaches the server and waits (the hold is 20 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held_rss = server.rss();
    let cpu_before = server.cpu();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu = server.cpu().saturating_sub(cpu_before);
    let per = (held_rss.saturating_sub(before)) as f64 / HELD as f64;
    println!(
        "held: {HELD} live requests opened in {opened:.2?}; server memory {:.1} MiB -> {:.1} MiB, {:.1} KiB per request ({:.0} per GiB); server CPU while they wait: {:.1}% of a core",
        before as f64 / (1 << 20) as f64,
        held_rss as f64 / (1 << 20) as f64,
        per / 1024.0,
        (1u64 << 30) as f64 / per,
        idle_cpu.as_secs_f64() / 5.0 * 100.0,
    );
    // One change answers them all.
    let mut writer = Conn::open(addr).await;
    let body = json!({ "operations": [{ "type": "set", "key": "n", "value": 1 }] });
    let cpu_before = server.cpu();
    let changed = Instant::now();
    writer
        .send(
            "PUT",
            &format!("/api/v1/runs/{id}/metadata"),
            &body.to_string(),
        )
        .await;
    let mut answered = 0;
    for mut stream in conns {
        let mut buf = [0u8; 512];
        if stream.read(&mut buf).await.unwrap() > 0 {
            answered += 1;
        }
    }
    println!(
        "held: one change answered {answered} of them in {:.2?} (server CPU {:.2?})",
        changed.elapsed(),
        server.cpu().saturating_sub(cpu_before)
    );
}

async fn trigger() {
    let server = Server::start();
    let addr = server.addr;
    let body = json!({ "payload": "{\"json\":1}", "options": { "payloadType": "application/super+json" } })
        .to_string();
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + SPAN;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (count, body) = (count.clone(), body.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            while Instant::now() < deadline {
                let reply = conn.send("POST", "/api/v1/tasks/noop/trigger", &body).await;
                assert_eq!(reply.status, 200);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let http = count.load(Ordering::Relaxed) as f64 / SPAN.as_secs_f64();
    drop(server);

    let engine = Engine::builder().task::<Noop>().build().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + SPAN;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (engine, count) = (engine.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                engine.trigger::<Noop>(1).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let direct = count.load(Ordering::Relaxed) as f64 / SPAN.as_secs_f64();
    println!(
        "trigger: {http:.0}/s through HTTP from {CLIENTS} connections, {direct:.0}/s with engine.trigger from {CLIENTS} tasks in one process: {:.2}x",
        http / direct
    );
}
