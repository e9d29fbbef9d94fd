//! Load program: run feed rows into typed union values with runcast's remote client, beside
//! the official SDK's own row-to-run transform in Node (`RunSubscription.transformRunShape`),
//! on the same rows, in the same run. Prints figures; asserts nothing about speed.
//!
//! ```sh
//! cargo bench -p runcast --features client --bench rows
//! ```
//!
//! 30,000 rows of three tasks (each row another run; payloads as JSON or superjson packets,
//! metadata, outputs on two rows of three), written twice: as the wire carries them (every
//! value as Postgres prints it, what runcast reads: `client::read_row`, then
//! `RunUnion::from_any_run`), and as the SDK holds them once Electric's client parsed them by
//! the schema (numbers, booleans and arrays typed; what `transformRunShape` takes). The SDK's
//! side is `conformance/transform-bench.mjs` (needs `npm ci --prefix conformance`). Each side
//! reads every row once per round; the best of 5 rounds, after one to warm up, is printed.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use runcast::{FromAnyRun, RunInfo};
use serde_json::{Value, json};

mod common;

use common::Union;

const ROWS: usize = 30_000;
const ROUNDS: usize = 5;

/// Row `i`, as the wire carries it and as the SDK holds it after Electric's parser.
fn row(i: usize) -> (Value, Value) {
    let (task, payload, output) = match i % 3 {
        0 => (
            "send-email",
            json!({ "to": format!("user{i}@example.com"), "subject": "Your receipt", "body": "Thanks for your order.", "attempts": 1 }),
            json!({ "message_id": format!("msg_{i}"), "accepted": true }),
        ),
        1 => (
            "resize-image",
            json!({ "url": format!("https://img.example/{i}.png"), "width": 800, "height": 600, "format": "webp" }),
            json!({ "url": format!("https://img.example/{i}-800.webp"), "bytes": 48_213 }),
        ),
        _ => (
            "charge-card",
            json!({ "customer": format!("cus_{i}"), "cents": 12_999, "currency": "eur", "lines": [{ "sku": "A-1", "quantity": 2 }, { "sku": "B-7", "quantity": 1 }] }),
            json!({ "id": format!("ch_{i}"), "captured": true }),
        ),
    };
    let done = i % 3 != 2;
    let (payload, payload_type) = if i.is_multiple_of(2) {
        (payload.to_string(), "application/json")
    } else {
        (
            json!({ "json": payload, "meta": { "values": {} } }).to_string(),
            "application/super+json",
        )
    };
    let output = done.then(|| output.to_string());
    let metadata = json!({ "progress": i % 100, "step": "working" }).to_string();
    let number = i + 1;
    let wire = json!({
        "id": format!("cm{i:020}"), "friendlyId": format!("run_{i:020}"), "taskIdentifier": task,
        "createdAt": "2026-06-06T10:05:30.120", "updatedAt": "2026-06-06T10:05:31.500",
        "startedAt": "2026-06-06T10:05:30.200", "delayUntil": null, "queuedAt": "2026-06-06T10:05:30.120",
        "expiredAt": null, "completedAt": if done { json!("2026-06-06T10:05:31.500") } else { Value::Null },
        "number": number.to_string(), "isTest": "f",
        "status": if done { "COMPLETED_SUCCESSFULLY" } else { "EXECUTING" },
        "usageDurationMs": "1300", "costInCents": "0.0255", "baseCostInCents": "0", "ttl": "10m",
        "payload": payload, "payloadType": payload_type,
        "metadata": metadata, "metadataType": "application/json",
        "output": output, "outputType": if done { json!("application/json") } else { Value::Null },
        "runTags": "{\"user:42\",\"order:7\"}", "error": null, "realtimeStreams": "{}",
    });
    let mut sdk = wire.clone();
    let fields = [
        ("number", json!(number)),
        ("isTest", json!(false)),
        ("usageDurationMs", json!(1300)),
        ("costInCents", json!(0.0255)),
        ("baseCostInCents", json!(0)),
        ("runTags", json!(["user:42", "order:7"])),
        ("realtimeStreams", json!([])),
    ];
    for (name, value) in fields {
        sdk[name] = value;
    }
    (wire, sdk)
}

fn main() {
    let rows: Vec<(Value, Value)> = (0..ROWS).map(row).collect();
    let wire: Vec<String> = rows.iter().map(|(wire, _)| wire.to_string()).collect();

    let decode_all = || {
        let start = Instant::now();
        let mut completed = 0;
        for row in &wire {
            let run = runcast::client::read_row(row).expect("a run");
            let run = Union::from_any_run(run).expect("a union value");
            completed += usize::from(run.status().is_final());
        }
        assert!(completed > 0);
        ROWS as f64 / start.elapsed().as_secs_f64()
    };
    decode_all();
    let runcast = (0..ROUNDS).map(|_| decode_all()).fold(0.0, f64::max);
    // The two steps apart: rows into untyped runs, and untyped runs into union values.
    let read_all = || {
        let start = Instant::now();
        let runs: Vec<_> = wire
            .iter()
            .map(|row| runcast::client::read_row(row).expect("a run"))
            .collect();
        (ROWS as f64 / start.elapsed().as_secs_f64(), runs)
    };
    let read = (0..ROUNDS).map(|_| read_all().0).fold(0.0, f64::max);
    let typed = (0..ROUNDS)
        .map(|_| {
            let (_, runs) = read_all();
            let start = Instant::now();
            for run in runs {
                std::hint::black_box(Union::from_any_run(run).expect("a union value"));
            }
            ROWS as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max);

    let conformance = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance");
    let file = std::env::temp_dir().join(format!("runcast-rows-{}.jsonl", std::process::id()));
    let sdk_rows: Vec<String> = rows.iter().map(|(_, sdk)| sdk.to_string()).collect();
    std::fs::write(&file, sdk_rows.join("\n")).unwrap();
    let output = Command::new("node")
        .arg(conformance.join("transform-bench.mjs"))
        .arg(&file)
        .arg(ROUNDS.to_string())
        .current_dir(&conformance)
        .output()
        .expect("node runs (and `npm ci --prefix conformance` was run)");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "the SDK's side failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sdk: Value = serde_json::from_slice(&output.stdout).unwrap();
    let sdk = sdk["best_rows_per_sec"].as_f64().unwrap();

    println!("rows into typed values, {ROWS} rows, best of {ROUNDS} rounds:");
    println!(
        "  runcast (wire text -> read_row -> Union::from_any_run): {:>12.0} rows/s",
        runcast
    );
    println!(
        "  SDK transformRunShape (parsed rows -> run objects):      {:>12.0} rows/s",
        sdk
    );
    println!("  ratio: {:.1}x", runcast / sdk);
    println!(
        "  (runcast's steps apart: read_row {read:.0} rows/s, from_any_run {typed:.0} rows/s)"
    );
}
