//! The live dashboard (`examples/dashboard/`, the official `@trigger.dev/react-hooks` in a
//! page) in headless Chromium, against its server (`runcast_examples::dashboard`): the page
//! triggers a run, shows it executing with part of its streamed text and progress, then
//! completed with all of it; the server restarts on the same port; the same page, not
//! reloaded, does it again. `examples/dashboard/test/dashboard.mjs` drives the browser
//! (Playwright); this test serves, restarts, and checks what the page showed.
//!
//! Needs Node.js and npm (the page's pinned packages are installed on the first run, and the
//! page is bundled on every run) and Chromium at `/usr/bin/chromium` (Debian's `chromium`;
//! `RUNCAST_CHROMIUM` names another). Screenshots: `<target dir>/tmp/dashboard/` (the
//! page before the restart, `before-restart.png`; at the end, `dashboard.png`; where it
//! failed, `failure.png`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runcast_examples::dashboard;
use serde_json::Value;

const SECRET: &str = "tr_dev_dashboard_test";

/// One life of the server: its own runtime, as a process of its own would have.
struct Server {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves the dashboard over a new engine on `addr`.
    fn start(addr: SocketAddr) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("could not listen on {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let engine = dashboard::engine().unwrap();
        let app = dashboard::app(engine.clone(), SECRET).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let served = runtime.spawn(dashboard::serve(listener, app, engine, stopped));
        Server {
            runtime,
            addr,
            stop,
            served,
        }
    }

    /// Stops it as Ctrl-C stops the example: it answers what it is answering, then ends.
    fn stop(self) {
        let _ = self.stop.send(());
        let served = (self.runtime)
            .block_on(async { tokio::time::timeout(Duration::from_secs(15), self.served).await })
            .expect("the server did not stop within 15 s of its stop signal");
        served.unwrap().unwrap();
    }
}

/// Chromium, or a failure that says how to get it.
fn chromium() -> PathBuf {
    let path =
        std::env::var_os("RUNCAST_CHROMIUM").map_or("/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        path.exists(),
        "Chromium is missing at {}: this test runs the dashboard in headless Chromium. \
         Install it (Debian: `apt-get install chromium`), or set RUNCAST_CHROMIUM to its path.",
        path.display()
    );
    path
}

#[test]
fn the_dashboard_shows_runs_completing_with_their_text_across_a_restart() {
    let started = Instant::now();
    let chromium = chromium();
    let page = dashboard::build_page().unwrap_or_else(|e| panic!("{e}"));
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    // Only this run's screenshots.
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut server = Some(Server::start("127.0.0.1:0".parse().unwrap()));
    let addr = server.as_ref().unwrap().addr;

    let mut node = Command::new("node")
        .arg("test/dashboard.mjs")
        .current_dir(&page)
        .env("DASHBOARD_URL", format!("http://{addr}/"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node could not start ({e}): install Node.js 20+"));
    let mut stderr = node.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        let _ = stderr.read_to_string(&mut logs);
        logs
    });
    let mut stdin = node.stdin.take().unwrap();
    let mut summary = None;
    let mut restarts = 0;
    for line in BufReader::new(node.stdout.take().unwrap()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        match event["event"].as_str() {
            Some("restart") => {
                server.take().unwrap().stop();
                server = Some(Server::start(addr));
                restarts += 1;
                // A script that failed meanwhile reports it as it ends.
                let _ = writeln!(stdin, "restarted");
            }
            Some("done") => summary = Some(event),
            _ => panic!("unexpected line from dashboard.mjs: {event}"),
        }
    }
    let status = node.wait().unwrap();
    let logs = logs.join().unwrap();
    server.take().unwrap().stop();
    eprintln!("dashboard screenshots: {}", screenshots.display());
    assert!(
        status.success(),
        "dashboard.mjs failed ({status}); screenshot of the failure in {}:\n{logs}",
        screenshots.display()
    );
    let summary = summary.unwrap_or_else(|| panic!("dashboard.mjs said nothing:\n{logs}"));
    assert_eq!(restarts, 1);

    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0]["id"], runs[1]["id"]);
    for run in runs {
        let prompt = run["prompt"].as_str().unwrap();
        let answer = dashboard::answer(prompt);
        let words = answer.split_inclusive(' ').count();
        // Part of the text arrived while the run executed...
        let partial = run["partialText"]["text"].as_str().unwrap();
        assert!(
            !partial.is_empty() && partial.len() < answer.len() && answer.starts_with(partial),
            "{run}"
        );
        let progress = run["partialProgress"]["progress"].as_str().unwrap();
        let (done, of) = progress.split_once('/').unwrap();
        assert_eq!(of, words.to_string(), "{run}");
        assert!((1..words).contains(&done.parse().unwrap()), "{run}");
        // ...then all of it, and the run completed with it as its output.
        let done = &run["done"];
        assert_eq!(done["status"], "COMPLETED", "{run}");
        assert_eq!(done["output"], answer.as_str(), "{run}");
        assert_eq!(done["text"], answer.as_str(), "{run}");
        assert_eq!(done["progress"], format!("{words}/{words}"), "{run}");
        // Every status the page showed, in order, each once.
        let timeline: Vec<&str> = (done["timeline"].as_array().unwrap())
            .iter()
            .map(|status| status.as_str().unwrap())
            .collect();
        let expected: &[&[&str]] = &[
            &["QUEUED", "EXECUTING", "COMPLETED"],
            &["EXECUTING", "COMPLETED"],
        ];
        assert!(expected.contains(&timeline.as_slice()), "{run}");
        // The trigger's own token followed the run too.
        assert_eq!(run["latest"], format!("{words}/{words}"), "{run}");
    }
    // The run shown before the restart stays as it ended.
    assert_eq!(summary["firstAfterRestart"], runs[0]["done"]);
    // The tag feed asked the restarted server from where it was, was told to start over (409
    // must-refetch: its history is new), and did.
    let feed = &summary["feed"];
    assert!(
        (feed["beforeRestart"].as_array().unwrap())
            .iter()
            .all(|status| status == 200),
        "{feed}"
    );
    assert!(
        (feed["afterRestart"].as_array().unwrap()).contains(&Value::from(409)),
        "{feed}"
    );
    eprintln!("tag feed responses: {feed}; took {:.1?}", started.elapsed());
}
