//! The official Trigger.dev SDK (`@trigger.dev/sdk` 4.8.3, pinned in
//! `conformance/package-lock.json`) against a runcast server over loopback: it triggers,
//! retrieves, cancels and subscribes as a TypeScript application would
//! (`conformance/sdk.mjs`), and this test checks what it saw. Needs Node.js and npm; the
//! packages are installed (`npm ci`) on the first run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use common::http::{Count, Echo, SECRET, Write, serve};
use common::sdk;
use runcast::http::ServerConfig;
use serde_json::{Value, json};

/// What `sdk.mjs` sees of a run of `count` to `to`, from its first state: queued, executing,
/// each count once, completed.
fn every_state(to: u64) -> Value {
    let mut seen = vec![
        json!({ "status": "QUEUED", "count": null, "finished": false }),
        json!({ "status": "EXECUTING", "count": null, "finished": false }),
    ];
    seen.extend((1..=to).map(|n| json!({ "status": "EXECUTING", "count": n, "finished": false })));
    seen.push(json!({ "status": "COMPLETED", "count": to, "finished": true }));
    Value::Array(seen)
}

/// A TCP proxy to `upstream` that cuts each connection it accepts after a moment (100 to
/// 400 ms), whatever it carries then; counts the connections it cut.
async fn flaky_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&cuts);
    tokio::spawn(async move {
        for n in 0u64.. {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let cuts = Arc::clone(&counted);
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let life = Duration::from_millis(100 + (n * 97) % 300);
                let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                if tokio::time::timeout(life, copy).await.is_err() {
                    cuts.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, cuts)
}

on_every_backend! {
    async fn the_official_sdk_triggers_reads_cancels_and_follows_runs(backend: Backend) {
        let engine = backend
            .builder()
            .await
            .task::<Count>()
            .task::<Echo>()
            .task::<Write>()
            .build()
            .unwrap();
        let config = ServerConfig::new(SECRET)
            .unwrap()
            .live_hold(Duration::from_secs(2));
        let addr = serve(engine, config).await;
        let (flaky, cuts) = flaky_proxy(addr).await;
        let report = tokio::task::spawn_blocking(move || {
            sdk::run(
                "sdk.mjs",
                &[
                    ("TRIGGER_API_URL", format!("http://{addr}")),
                    ("FLAKY_URL", format!("http://{flaky}")),
                    ("TRIGGER_SECRET_KEY", SECRET.to_owned()),
                ],
            )
        })
        .await
        .unwrap();
        eprintln!("{report:#}");

        assert_eq!(report["trigger"]["hasToken"], true);
        assert!(
            report["trigger"]["id"]
                .as_str()
                .unwrap()
                .starts_with("run_")
        );

        // Every state from the first, each count once, read with the run's own token.
        assert_eq!(report["follow"], every_state(5));
        // However fast the task: subscribed to after it finished, it still shows each state.
        assert_eq!(report["instant"], json!(["QUEUED", "EXECUTING", "COMPLETED"]));

        assert_eq!(
            report["retrieve"],
            json!({
                "status": "COMPLETED", "isCompleted": true, "output": 5,
                "payload": { "to": 5, "pause": 20 }, "metadata": { "count": 5 },
                "tags": ["conformance"],
            })
        );
        // superjson: the Date as its ISO string, the BigInt as its digits, `undefined` as null.
        assert_eq!(
            report["superjson"]["output"],
            json!({ "at": "2026-01-02T03:04:05.006Z", "big": "12345678901234567890", "nothing": null })
        );
        assert_eq!(report["unknownTask"]["failed"]["status"], 404);
        assert!(
            report["unknownTask"]["failed"]["message"]
                .as_str()
                .unwrap()
                .contains("no-such-task")
        );
        assert_eq!(report["wrongPayload"]["failed"]["status"], 422);
        assert!(
            report["wrongPayload"]["failed"]["message"]
                .as_str()
                .unwrap()
                .contains("at `to`")
        );
        assert_eq!(report["cancel"]["canceled"], true);
        assert_eq!(report["cancel"]["last"]["status"], "CANCELED");
        assert_eq!(
            report["tagFeed"],
            json!({ "all": true, "tasks": ["count", "echo"] })
        );
        assert_eq!(report["invalidKey"]["failed"]["status"], 401);
        assert_eq!(report["missingRun"]["failed"]["status"], 404);
        assert_eq!(report["scopedToken"]["own"], report["trigger"]["id"]);
        assert_eq!(report["scopedToken"]["other"]["status"], 403);

        assert_eq!(
            report["batch"],
            json!({ "runCount": 3, "tasks": ["count", "count", "echo"] })
        );

        // `createTriggerPublicToken` makes a one-time token unless asked for many uses.
        let tokens = &report["triggerTokens"];
        assert_eq!(tokens["once"][0], true, "{tokens}");
        assert_eq!(tokens["once"][1]["status"], 422, "{tokens}");
        assert_eq!(tokens["many"], json!([true, true]), "{tokens}");

        let mib = 1 << 20;
        assert_eq!(
            report["large"],
            json!({ "payload": mib, "output": mib, "feedOutput": mib })
        );

        // Connections cut mid-feed: the SDK reconnects from its offset and misses nothing, and
        // shows nothing twice.
        assert!(
            cuts.load(Ordering::SeqCst) > 0,
            "the proxy cut no connection"
        );
        assert_eq!(report["dropped"], every_state(30));

        let words: Vec<String> = (0..20).map(|n| format!("word{n}")).collect();
        assert_eq!(
            report["withStreams"],
            json!({ "chunks": words, "status": "COMPLETED", "output": 20 })
        );
        assert_eq!(
            report["streamsRead"],
            json!({ "chunks": ["alpha", "beta", "gamma"] })
        );

        // Electric's client in live SSE mode: every change, each once, in order, over one
        // live connection (a long poll per change would take 22 requests).
        let sse = &report["sse"];
        let mut rows = vec![
            json!({ "status": "PENDING", "count": null }),
            json!({ "status": "EXECUTING", "count": null }),
        ];
        rows.extend((1..=20).map(|n| json!({ "status": "EXECUTING", "count": n })));
        rows.push(json!({ "status": "COMPLETED_SUCCESSFULLY", "count": 20 }));
        assert_eq!(sse["seen"], Value::Array(rows), "{sse}");
        assert!(sse["sse"].as_u64().unwrap() >= 1, "{sse}");
        assert!(sse["requests"].as_u64().unwrap() < 10, "{sse}");
    }
}
