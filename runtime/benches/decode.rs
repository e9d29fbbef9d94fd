//! Decoding 100,000 realtime run rows of three tasks, three ways:
//!
//! - `union`: a `realtime_union!` enum (`RunUnion::from_json`): the envelope once, with payload,
//!   output and metadata kept raw, then the matching task's types;
//! - `serde_tagged`: a `#[serde(tag = "taskIdentifier")]` enum, what one would write without
//!   runcast (serde buffers the whole object before choosing the variant);
//! - `union_from_any_run`: the same enum from already parsed `AnyRun`s (payload and output kept
//!   as raw JSON), the work `.union::<U>()` does per item of a feed; the parse is not timed;
//! - `direct`: `serde_json::from_str::<Run<T>>` with the task of every row known in advance, the
//!   floor for any decoder of this format.
//!
//! Run with `cargo bench -p runcast --bench decode`.

use divan::counter::ItemsCount;
use runcast::{
    AnyRun, FromAnyRun, JsonObject, Run, RunStatus, RunUnion, SerializedError, Timestamp,
};
use serde::Deserialize;

mod common;

use common::{
    Charge, ChargeCard, Charged, Email, Receipt, Resize, ResizeImage, Resized, SendEmail, Union,
};

fn main() {
    divan::main();
}

const ROWS: usize = 100_000;

/// The run object without `taskIdentifier`, which the tagged enum consumes as its tag.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct TaggedRun<P, O> {
    id: String,
    payload: P,
    output: Option<O>,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(default)]
    number: u64,
    status: RunStatus,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    cost_in_cents: f64,
    #[serde(default)]
    base_cost_in_cents: f64,
    #[serde(default)]
    tags: Vec<String>,
    idempotency_key: Option<String>,
    expired_at: Option<Timestamp>,
    ttl: Option<String>,
    finished_at: Option<Timestamp>,
    started_at: Option<Timestamp>,
    delayed_until: Option<Timestamp>,
    queued_at: Option<Timestamp>,
    metadata: Option<JsonObject>,
    error: Option<SerializedError>,
    #[serde(default)]
    is_test: bool,
}

#[derive(Deserialize)]
#[serde(tag = "taskIdentifier")]
#[allow(dead_code, clippy::large_enum_variant)]
enum Tagged {
    #[serde(rename = "send-email")]
    SendEmail(TaggedRun<Email, Receipt>),
    #[serde(rename = "resize-image")]
    ResizeImage(TaggedRun<Resize, Resized>),
    #[serde(rename = "charge-card")]
    ChargeCard(TaggedRun<Charge, Charged>),
}

/// `ROWS` rows cycling through the three tasks, shaped like the SDK's run objects, with the
/// index of each row's task.
fn rows() -> Vec<(usize, String)> {
    (0..ROWS)
        .map(|i| {
            let kind = i % 3;
            let (task, payload, output) = match kind {
                0 => (
                    "send-email",
                    format!(r#"{{"to":"user{i}@example.com","subject":"Welcome, user {i}","body":"Hello and welcome to the service. Your account number is {i}.","attempts":{}}}"#, i % 5),
                    r#"{"message_id":"msg_01HZX3","accepted":true}"#.to_owned(),
                ),
                1 => (
                    "resize-image",
                    format!(r#"{{"url":"https://img.example/{i}.png","width":{},"height":{},"format":"webp"}}"#, 64 + i % 1000, 48 + i % 700),
                    format!(r#"{{"url":"https://img.example/{i}-small.webp","bytes":{}}}"#, i * 17),
                ),
                _ => (
                    "charge-card",
                    format!(r#"{{"customer":"cus_{i}","cents":{},"currency":"usd","lines":[{{"sku":"plan-pro","quantity":1}},{{"sku":"seat","quantity":{}}}]}}"#, 1999 + i % 100, 1 + i % 20),
                    format!(r#"{{"id":"ch_{i}","captured":true}}"#),
                ),
            };
            let status = ["QUEUED", "EXECUTING", "COMPLETED"][i % 3];
            let output = if status == "COMPLETED" { format!(r#","output":{output}"#) } else { String::new() };
            let row = format!(
                r#"{{"id":"run_{i:010}","taskIdentifier":"{task}","payload":{payload}{output},"createdAt":"2024-11-01T12:34:56.789Z","updatedAt":"2024-11-01T12:35:01.002Z","number":{i},"status":"{status}","durationMs":{},"costInCents":0.25,"baseCostInCents":0.5,"tags":["user:{}","org:acme"],"startedAt":"2024-11-01T12:34:57.000Z","queuedAt":"2024-11-01T12:34:56.790Z","metadata":{{"progress":0.5,"stage":"working"}},"isTest":false}}"#,
                i % 5000,
                i % 100,
            );
            (kind, row)
        })
        .collect()
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn union(bencher: divan::Bencher<'_, '_>) {
    let rows = rows();
    bencher.counter(ItemsCount::new(ROWS)).bench(|| {
        for (_, row) in &rows {
            let run = Union::from_json(row);
            assert!(run.is_ok());
            divan::black_box(run.ok());
        }
    });
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn serde_tagged(bencher: divan::Bencher<'_, '_>) {
    let rows = rows();
    bencher.counter(ItemsCount::new(ROWS)).bench(|| {
        for (_, row) in &rows {
            let run = serde_json::from_str::<Tagged>(row);
            assert!(run.is_ok());
            divan::black_box(run.ok());
        }
    });
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn direct(bencher: divan::Bencher<'_, '_>) {
    fn decode<T: runcast::Task>(row: &str) {
        let run = serde_json::from_str::<Run<T>>(row);
        assert!(run.is_ok());
        divan::black_box(run.ok());
    }
    let rows = rows();
    bencher.counter(ItemsCount::new(ROWS)).bench(|| {
        for (kind, row) in &rows {
            match kind {
                0 => decode::<SendEmail>(row),
                1 => decode::<ResizeImage>(row),
                _ => decode::<ChargeCard>(row),
            }
        }
    });
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn union_from_any_run(bencher: divan::Bencher<'_, '_>) {
    let rows = rows();
    bencher
        .counter(ItemsCount::new(ROWS))
        .with_inputs(|| {
            rows.iter()
                .map(|(_, row)| serde_json::from_str::<AnyRun>(row))
                .collect::<Result<Vec<_>, _>>()
        })
        .bench_local_values(|runs| {
            for run in runs.into_iter().flatten() {
                let run = Union::from_any_run(run);
                assert!(run.is_ok());
                divan::black_box(run.ok());
            }
        });
}
