//! The remote client (feature `client`) against a runcast server over real HTTP on loopback:
//! the typed layer on remote feeds, REST calls, tokens, dropped connections; and against
//! canned answers in the exact form Trigger.dev's servers send them (rows, statuses, errors,
//! broken protocol).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::http::{Count, Counting, Echo, SECRET, Write, serve};
use futures::StreamExt;
use runcast::client::{Client, PublicToken};
use runcast::http::ServerConfig;
use runcast::prelude::*;
use runcast::{
    Cursor, Engine, FeedError, MetadataOp, Realtime, RunId, RunQuery, Scope, TriggerOptions,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

realtime_union! {
    pub enum Work { Count, Write }
}

async fn server() -> SocketAddr {
    let engine = Engine::builder()
        .task::<Count>()
        .task::<Write>()
        .task::<Echo>()
        .build()
        .unwrap();
    let config = ServerConfig::new(SECRET)
        .unwrap()
        .live_hold(Duration::from_millis(500));
    serve(engine, config).await
}

fn client(addr: SocketAddr) -> Client {
    Client::new(format!("http://{addr}"), SECRET).unwrap()
}

fn counting(to: u32) -> Counting {
    Counting { to, pause: 1 }
}

/// Reads a stream to its end, within 20 s.
async fn all<S: futures::Stream + Unpin>(stream: S) -> Vec<S::Item> {
    tokio::time::timeout(Duration::from_secs(20), stream.collect())
        .await
        .expect("the stream ends")
}

#[tokio::test]
async fn a_triggered_run_is_followed_typed_through_every_state() {
    let client = client(server().await);
    let handle = client.trigger::<Count>(counting(3)).await.unwrap();
    let updates = all(client.subscribe_to_run(&handle).await.unwrap()).await;
    let updates: Vec<_> = updates.into_iter().map(Result::unwrap).collect();
    let statuses: Vec<RunStatus> = updates.iter().map(|u| u.run.status).collect();
    assert_eq!(statuses.first(), Some(&RunStatus::Queued), "{statuses:?}");
    assert!(statuses.contains(&RunStatus::Executing), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&RunStatus::Completed));
    let finals = statuses.iter().filter(|s| s.is_final()).count();
    assert_eq!(finals, 1, "one final snapshot: {statuses:?}");
    let mut counts: Vec<i64> = updates
        .iter()
        .filter_map(|u| u.run.metadata.as_ref()?.get("count")?.as_i64())
        .collect();
    counts.dedup();
    assert_eq!(counts, [1, 2, 3], "every metadata change, in order");
    let last = updates.last().unwrap();
    assert_eq!(last.run.output, Some(3));
    assert_eq!(last.run.payload.to, 3);
    assert!(updates.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(updates.iter().all(|u| !u.coalesced));

    // The REST side agrees.
    let run = client.retrieve::<Count>(handle.id()).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(3));
    assert_eq!(client.wait(&handle).await.unwrap().output, Some(3));
    // A run of another task is refused at once.
    let wrong = client.subscribe_to_run::<Write>(handle.id()).await;
    assert!(
        matches!(wrong, Err(FeedError::UnexpectedTask { .. })),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn a_tag_feed_yields_union_variants_and_an_unlisted_task_as_an_error_item() {
    let client = client(server().await);
    let tagged = || TriggerOptions::default().tag("client-union");
    let count = client
        .trigger_with::<Count>(counting(1), tagged())
        .await
        .unwrap();
    let write = client
        .trigger_with::<Write>(vec!["a".into()], tagged())
        .await
        .unwrap();
    let echo = client
        .trigger_with::<Echo>(json!({ "x": 1 }), tagged())
        .await
        .unwrap();
    let mut feed = client
        .subscribe_to_runs_with_tag::<Work>(["client-union"])
        .await
        .unwrap();
    let (mut counted, mut written, mut unlisted) = (false, false, false);
    while !(counted && written && unlisted) {
        let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .expect("an item")
            .expect("the feed goes on");
        match item {
            Ok(update) => match update.run {
                Work::Count(run) => {
                    assert_eq!(run.id, *count.id());
                    counted |= run.status == RunStatus::Completed && run.output == Some(1);
                }
                Work::Write(run) => {
                    assert_eq!(run.id, *write.id());
                    written |= run.status == RunStatus::Completed && run.output == Some(1);
                }
            },
            Err(FeedError::Decode(error)) => {
                assert!(error.to_string().contains("echo"), "{error}");
                assert!(error.to_string().contains(echo.id().as_str()), "{error}");
                unlisted = true;
            }
            Err(other) => panic!("unexpected error item: {other}"),
        }
    }
}

#[tokio::test]
async fn a_batch_is_triggered_and_followed() {
    let client = client(server().await);
    let batch = client
        .batch_trigger::<Count>((1..=3).map(|to| (counting(to), TriggerOptions::default())))
        .await
        .unwrap();
    assert_eq!(batch.runs.len(), 3);
    let mut feed = client.subscribe_to_batch::<Work>(&batch.id).await.unwrap();
    let mut done = std::collections::HashMap::new();
    while done.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Work::Count(run) = item.run
            && run.status == RunStatus::Completed
        {
            done.insert(run.id.clone(), run.output.unwrap());
        }
    }
    for (to, handle) in (1..=3).zip(&batch.runs) {
        assert_eq!(done[handle.id()], to);
    }
}

#[tokio::test]
async fn streams_arrive_in_order_and_before_the_final_snapshot() {
    let client = client(server().await);
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let handle = client.trigger::<Write>(words.clone()).await.unwrap();
    let read = all(client.read_stream(handle.id(), Write::WORDS).await.unwrap()).await;
    let read: Vec<String> = read.into_iter().map(|c| c.unwrap().value).collect();
    assert_eq!(read, words);

    let items = all(client
        .subscribe_to_run(&handle)
        .await
        .unwrap()
        .with_streams())
    .await;
    let mut chunks = Vec::new();
    let mut finished = false;
    for item in items {
        match item.unwrap() {
            Realtime::Run(update) => finished = update.run.status.is_final(),
            Realtime::Chunk(chunk) => {
                assert!(!finished, "a chunk after the final snapshot");
                chunks.push(chunk.data);
            }
        }
    }
    assert!(finished);
    assert_eq!(chunks.len(), words.len());
}

#[tokio::test]
async fn cancel_metadata_and_tags_change_the_run() {
    let client = client(server().await);
    let handle = client
        .trigger::<Count>(Counting {
            to: 1_000,
            pause: 20,
        })
        .await
        .unwrap();
    client.add_tags(handle.id(), ["added"]).await.unwrap();
    let written = client
        .update_metadata(handle.id(), [MetadataOp::Set("note".into(), json!("hi"))])
        .await
        .unwrap();
    assert_eq!(written["note"], "hi");
    // The wire has no merge: an update goes as a set of each key, a key that looks like a
    // path included; a replace is the wire's `update`.
    let object = |value: serde_json::Value| value.as_object().unwrap().clone();
    let merge = MetadataOp::Update(object(json!({ "steps": [1], "$.odd": true })));
    let mut written = client
        .update_metadata(
            handle.id(),
            [merge, MetadataOp::Append("$.steps".into(), json!(2))],
        )
        .await
        .unwrap();
    written.remove("count"); // the task's own
    assert_eq!(
        serde_json::Value::Object(written),
        json!({ "note": "hi", "steps": [1, 2], "$.odd": true })
    );
    let replace = MetadataOp::Replace(object(json!({ "only": 1 })));
    let written = client
        .update_metadata(handle.id(), [replace])
        .await
        .unwrap();
    assert_eq!(serde_json::Value::Object(written), json!({ "only": 1 }));
    client.cancel(handle.id()).await.unwrap();
    let run = client.wait(&handle).await.unwrap();
    assert_eq!(run.status, RunStatus::Canceled);
    assert!(run.tags.contains(&"added".to_owned()));
    // The server's refusals come back with their status and message.
    let refused = client
        .update_metadata(&RunId::from("run_missing"), [])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("404"), "{refused}");
}

#[tokio::test]
async fn runs_are_listed_a_page_at_a_time() {
    let client = client(server().await);
    let tagged = || TriggerOptions::default().tag("listed");
    let mut triggered = Vec::new();
    for to in 1..=3 {
        let handle = client
            .trigger_with::<Count>(counting(to), tagged())
            .await
            .unwrap();
        client.wait(&handle).await.unwrap();
        triggered.push(handle.id().clone());
    }
    client.trigger::<Count>(counting(1)).await.unwrap();
    let query = RunQuery::new().task::<Count>().tag("listed").limit(2);
    let first = client.list_runs(&query).await.unwrap();
    let ids: Vec<&RunId> = first.runs.iter().map(|r| &r.id).collect();
    assert_eq!(ids, [&triggered[2], &triggered[1]], "newest first");
    assert_eq!(first.runs[0].status, RunStatus::Completed);
    let next = first.next.expect("a second page");
    let second = client.list_runs(&query.clone().before(next)).await.unwrap();
    let ids: Vec<&RunId> = second.runs.iter().map(|r| &r.id).collect();
    assert_eq!(ids, [&triggered[0]]);
    assert!(second.next.is_none());
    let none = RunQuery::new().tag("listed").status(RunStatus::Failed);
    assert!(client.list_runs(&none).await.unwrap().runs.is_empty());
}

#[tokio::test]
async fn public_tokens_reach_only_their_scopes() {
    let client = client(server().await);
    let mine = client.trigger::<Count>(counting(1)).await.unwrap();
    let other = client.trigger::<Count>(counting(1)).await.unwrap();
    let token = client
        .create_public_token(&PublicToken::new().read_run(mine.id()))
        .await
        .unwrap();
    let scoped = client.with_key(token);
    assert_eq!(scoped.wait(&mine).await.unwrap().output, Some(1));
    let refused = scoped
        .subscribe(Scope::Run(other.id().clone()), Cursor::START)
        .await;
    match refused {
        Err(FeedError::Remote { status, message }) => {
            assert_eq!(status, Some(403), "{message}");
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    let bad_key = client.with_key("tr_dev_not_the_key");
    match bad_key
        .subscribe(Scope::Run(mine.id().clone()), Cursor::START)
        .await
    {
        Err(FeedError::Remote { status, .. }) => assert_eq!(status, Some(401)),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(matches!(
        client
            .subscribe(Scope::Run(RunId::from("run_nope")), Cursor::START)
            .await,
        Err(FeedError::UnknownRun(_))
    ));
    assert!(
        client
            .create_public_token(&PublicToken::new())
            .await
            .is_err(),
        "a token without scope"
    );
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_an_error_not_a_wait() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client(closed);
    let subscribed = tokio::time::timeout(
        Duration::from_secs(20),
        client.subscribe(Scope::Run(RunId::from("run_1")), Cursor::START),
    )
    .await
    .expect("it gives up within seconds");
    let error = subscribed.unwrap_err().to_string();
    assert!(error.contains("could not reach"), "{error}");
    let triggered = client.trigger::<Count>(counting(1)).await.unwrap_err();
    assert!(
        triggered.to_string().contains("could not reach"),
        "{triggered}"
    );
}

#[tokio::test]
async fn resuming_from_any_item_gives_exactly_the_rest() {
    let client = client(server().await);
    let handle = client.trigger::<Count>(counting(8)).await.unwrap();
    let items: Vec<_> = all(client.subscribe_to_run(&handle).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // From the last, nothing more comes: every earlier one.
    for (i, item) in items.iter().enumerate().take(items.len() - 1) {
        let rest = client
            .subscribe(Scope::Run(handle.id().clone()), item.cursor)
            .await
            .unwrap()
            .until_finished();
        let rest: Vec<Cursor> = all(rest)
            .await
            .into_iter()
            .map(|u| u.unwrap().cursor)
            .collect();
        let expected: Vec<Cursor> = items[i + 1..].iter().map(|u| u.cursor).collect();
        assert_eq!(rest, expected, "from item {i}");
    }
    // A cursor of another history is refused.
    let foreign: Cursor = "abc-3".parse().unwrap();
    assert!(matches!(
        client
            .subscribe(Scope::Run(handle.id().clone()), foreign)
            .await,
        Err(FeedError::UnknownCursor(_))
    ));
}

/// A proxy to `upstream` that cuts each connection after 400 to 6,400 bytes from the server:
/// mid-headers, mid-body, or between answers.
async fn cutting_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&cuts);
    tokio::spawn(async move {
        let mut n = 0_usize;
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            n += 1;
            let limit = 400 + (n * 7919) % 6_000;
            let cuts = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.unwrap();
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut sent = 0;
                    let mut buffer = [0_u8; 256];
                    loop {
                        let read = server_read.read(&mut buffer).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        let read = read.min(limit - sent);
                        if client_write.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                        sent += read;
                        if sent >= limit {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                };
                tokio::select! { _ = up => {}, () = down => {} }
            });
        }
    });
    (addr, cuts)
}

#[tokio::test]
async fn connections_cut_mid_answer_cost_no_change_and_repeat_none() {
    let addr = server().await;
    let (proxy, cuts) = cutting_proxy(addr).await;
    let direct = client(addr);
    let through = client(proxy);
    let handle = direct
        .trigger::<Count>(Counting { to: 30, pause: 5 })
        .await
        .unwrap();
    let items: Vec<_> = all(through.subscribe_to_run(&handle).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut counts: Vec<i64> = items
        .iter()
        .filter_map(|u| u.run.metadata.as_ref()?.get("count")?.as_i64())
        .collect();
    counts.dedup();
    assert_eq!(counts, (1..=30).collect::<Vec<_>>());
    assert!(items.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert_eq!(items.last().unwrap().run.status, RunStatus::Completed);
    assert!(cuts.load(Ordering::SeqCst) > 5, "the proxy cut connections");
}

// ---- Canned answers, as Trigger.dev's servers send them -------------------------------------

/// A row of Trigger.dev's native feed as the official SDK receives it (values as Postgres
/// prints them; internal `id`, public `friendlyId`).
fn trigger_row(status: &str) -> Value {
    json!({
        "id": "cm5abc", "friendlyId": "run_native1", "taskIdentifier": "count",
        "createdAt": "2026-06-06T10:05:30.120", "updatedAt": "2026-06-06 10:05:31.5",
        "startedAt": null, "delayUntil": null, "queuedAt": "2026-06-06T10:05:30.120",
        "expiredAt": null, "completedAt": null, "number": "7", "isTest": "f",
        "status": status, "usageDurationMs": "0", "costInCents": "0", "baseCostInCents": "0",
        "ttl": "10m",
        "payload": r#"{"json":{"to":2,"pause":1},"meta":{"values":{}}}"#,
        "payloadType": "application/super+json",
        "metadata": r#"{"count":1}"#, "metadataType": "application/json",
        "output": null, "outputType": null,
        "runTags": r#"{"user:1","a \"b\""}"#, "error": null, "realtimeStreams": "{}",
        "someNewColumn": "ignored"
    })
}

/// A canned answer: its status, headers and body.
type Canned = (u16, Vec<(&'static str, String)>, String);

/// Serves canned feed answers: `answers` in turn, one per request; the requests' queries are
/// kept.
async fn canned(answers: Vec<Canned>) -> (Client, Arc<std::sync::Mutex<Vec<String>>>) {
    let answers = Arc::new(std::sync::Mutex::new(answers.into_iter()));
    let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&queries);
    let app = Router::new().route(
        "/realtime/v1/runs/{run}",
        get(move |uri: axum::http::Uri| {
            let answers = Arc::clone(&answers);
            let seen = Arc::clone(&seen);
            async move {
                seen.lock()
                    .unwrap()
                    .push(uri.query().unwrap_or("").to_owned());
                let next = answers.lock().unwrap().next();
                let Some((status, headers, body)) = next else {
                    // Nothing more: hold, as a live request with no change.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return StatusCode::GATEWAY_TIMEOUT.into_response();
                };
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    map.insert(name, value.parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), map, body).into_response()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (client(addr), queries)
}

fn shape_headers(handle: &str, offset: &str) -> Vec<(&'static str, String)> {
    vec![
        ("electric-handle", handle.to_owned()),
        ("electric-offset", offset.to_owned()),
        ("electric-schema", "{}".to_owned()),
        ("electric-cursor", "1".to_owned()),
    ]
}

fn body(messages: &[Value]) -> String {
    Value::Array(messages.to_vec()).to_string()
}

fn insert(row: Value) -> Value {
    json!({ "key": "\"public\".\"TaskRun\"/\"cm5abc\"", "value": row, "headers": { "operation": "insert", "relation": ["public", "TaskRun"] } })
}

fn up_to_date() -> Value {
    json!({ "headers": { "control": "up-to-date", "global_last_seen_lsn": "27263216" } })
}

async fn next_item(
    feed: &mut runcast::client::RemoteSubscription,
) -> Result<runcast::Update<runcast::AnyRun>, FeedError> {
    tokio::time::timeout(Duration::from_secs(20), feed.next())
        .await
        .expect("an item in time")
        .expect("the feed goes on")
}

#[tokio::test]
async fn trigger_dev_rows_are_read_as_the_sdk_reads_them() {
    let mut partial = trigger_row("DEQUEUED");
    partial = json!({ "id": partial["id"], "status": "WAITING_TO_RESUME", "updatedAt": "2026-06-06T10:05:33", "isTest": "t" });
    let mut failed = trigger_row("COMPLETED_WITH_ERRORS");
    failed["error"] = json!(
        r#"{"type":"BUILT_IN_ERROR","name":"TypeError","message":"boom","stackTrace":"at x"}"#
    );
    failed["completedAt"] = json!("2026-06-06 10:05:40.001");
    let (client, queries) = canned(vec![
        (200, shape_headers("run-cm5abc", "0_0"), body(&[insert(trigger_row("DEQUEUED")), up_to_date()])),
        (200, shape_headers("run-cm5abc", "1780740331500_0"), body(&[json!({ "key": "\"public\".\"TaskRun\"/\"cm5abc\"", "value": partial, "headers": { "operation": "update" } }), up_to_date()])),
        (200, shape_headers("run-cm5abc", "1780740340001_0"), body(&[json!({ "key": "\"public\".\"TaskRun\"/\"cm5abc\"", "value": failed, "headers": { "operation": "update" } }), up_to_date()])),
    ])
    .await;
    let mut feed = client
        .subscribe(Scope::Run(RunId::from("run_native1")), Cursor::START)
        .await
        .unwrap();
    let first = next_item(&mut feed).await.unwrap().run;
    assert_eq!(
        first.id.as_str(),
        "run_native1",
        "the public id is the friendly one"
    );
    assert_eq!(
        first.status,
        RunStatus::Executing,
        "DEQUEUED shows as executing"
    );
    assert_eq!(first.number, 7);
    assert!(!first.is_test);
    assert_eq!(first.tags.as_ref(), ["user:1", "a \"b\""]);
    assert_eq!(
        first.payload.as_deref().unwrap().get(),
        r#"{"to":2,"pause":1}"#
    );
    assert_eq!(first.metadata.as_deref().unwrap().get(), r#"{"count":1}"#);
    assert_eq!(first.created_at.to_string(), "2026-06-06T10:05:30.120Z");
    assert_eq!(first.ttl.as_deref(), Some("10m"));
    let typed = first.decode::<Count>().unwrap();
    assert_eq!(typed.payload.to, 2);

    // An update with only the columns that changed completes the row seen before.
    let second = next_item(&mut feed).await.unwrap().run;
    assert_eq!(
        second.status,
        RunStatus::Frozen,
        "WAITING_TO_RESUME shows as waiting"
    );
    assert!(second.is_test);
    assert_eq!(second.task_identifier(), "count");
    assert_eq!(second.updated_at.to_string(), "2026-06-06T10:05:33.000Z");

    let third = next_item(&mut feed).await.unwrap();
    assert_eq!(third.run.status, RunStatus::Failed);
    let error = third.run.error.unwrap();
    assert_eq!(
        (error.name.as_deref(), error.message.as_str()),
        (Some("TypeError"), "boom")
    );
    assert!(third.cursor > Cursor::START);

    let queries = queries.lock().unwrap().clone();
    assert!(
        queries[0].contains("offset=-1") && !queries[0].contains("live"),
        "{queries:?}"
    );
    assert!(
        queries[1].contains("handle=run-cm5abc")
            && queries[1].contains("offset=0_0")
            && queries[1].contains("live=true"),
        "{queries:?}"
    );
    assert!(queries[2].contains("cursor=1"), "{queries:?}");
}

#[tokio::test]
async fn what_the_sdk_hangs_on_ends_the_feed_with_an_error_that_says_why() {
    // A row whose required column is null is one error item; the feed goes on.
    let mut nameless = trigger_row("PENDING");
    nameless["taskIdentifier"] = Value::Null;
    let (client, _) = canned(vec![
        (
            200,
            shape_headers("h", "0_0"),
            body(&[
                insert(nameless),
                insert(trigger_row("PENDING")),
                up_to_date(),
            ]),
        ),
        // Then an answer without its offset header.
        (
            200,
            vec![("electric-handle", "h".to_owned())],
            body(&[up_to_date()]),
        ),
    ])
    .await;
    let mut feed = client
        .subscribe(Scope::Run(RunId::from("run_native1")), Cursor::START)
        .await
        .unwrap();
    let bad = next_item(&mut feed).await.unwrap_err().to_string();
    assert!(
        bad.contains("taskIdentifier") && bad.contains("run_native1"),
        "{bad}"
    );
    assert_eq!(
        next_item(&mut feed).await.unwrap().run.status,
        RunStatus::Queued
    );
    let missing = next_item(&mut feed).await.unwrap_err().to_string();
    assert!(missing.contains("electric-offset"), "{missing}");
    assert!(
        feed.next().await.is_none(),
        "the feed ends after a broken answer"
    );

    // A body that is not the protocol's ends it too, saying so.
    let (client, _) = canned(vec![(
        200,
        shape_headers("h", "0_0"),
        "<html>proxy error</html>".to_owned(),
    )])
    .await;
    let refused = client
        .subscribe(Scope::Run(RunId::from("run_x")), Cursor::START)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not an array of shape messages"),
        "{refused}"
    );

    // A 403 on a feed already read ends it with the server's message.
    let (client, _) = canned(vec![
        (
            200,
            shape_headers("h", "0_0"),
            body(&[insert(trigger_row("PENDING")), up_to_date()]),
        ),
        (
            403,
            vec![],
            json!({ "error": "Unauthorized: token expired" }).to_string(),
        ),
    ])
    .await;
    let mut feed = client
        .subscribe(Scope::Run(RunId::from("run_native1")), Cursor::START)
        .await
        .unwrap();
    next_item(&mut feed).await.unwrap();
    match next_item(&mut feed).await {
        Err(FeedError::Remote {
            status: Some(403),
            message,
        }) => {
            assert!(message.contains("token expired"), "{message}");
        }
        other => panic!("expected the 403, got {other:?}"),
    }
    assert!(feed.next().await.is_none());
}

#[tokio::test]
async fn dropping_a_subscription_ends_its_requests() {
    // A server whose live requests answer at once that nothing changed: a subscription asks
    // again and again while it lives.
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let app = Router::new().route(
        "/realtime/v1/runs/{run}",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let headers = shape_headers("h", "0_0");
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    map.insert(name, value.parse().unwrap());
                }
                (map, body(&[up_to_date()]))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut feed = client(addr)
        .subscribe(Scope::Run(RunId::from("run_1")), Cursor::START)
        .await
        .unwrap();
    let polled = tokio::time::timeout(Duration::from_millis(300), feed.next()).await;
    assert!(polled.is_err(), "no change comes");
    assert!(
        asked.load(Ordering::SeqCst) > 2,
        "it asked again while read"
    );
    drop(feed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = asked.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        asked.load(Ordering::SeqCst),
        after_drop,
        "no request after the drop"
    );
}

#[tokio::test]
async fn refusals_for_now_are_waited_out_and_a_must_refetch_starts_over() {
    let (client, queries) = canned(vec![
        (
            200,
            shape_headers("h1", "0_0"),
            body(&[insert(trigger_row("PENDING")), up_to_date()]),
        ),
        (
            429,
            vec![("retry-after", "1".to_owned())],
            json!({ "error": "Too many concurrent requests" }).to_string(),
        ),
        (503, vec![], String::new()),
        (
            409,
            vec![("electric-handle", "h2".to_owned())],
            json!([{ "headers": { "control": "must-refetch" } }]).to_string(),
        ),
        (
            200,
            shape_headers("h2", "0_0"),
            body(&[insert(trigger_row("EXECUTING")), up_to_date()]),
        ),
    ])
    .await;
    let mut feed = client
        .subscribe(Scope::Run(RunId::from("run_native1")), Cursor::START)
        .await
        .unwrap();
    let first = next_item(&mut feed).await.unwrap();
    assert!(!first.coalesced);
    let started = std::time::Instant::now();
    let again = next_item(&mut feed).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After is a floor"
    );
    assert_eq!(again.run.status, RunStatus::Executing);
    assert!(
        again.coalesced,
        "after a must-refetch, changes may have been missed"
    );
    let queries = queries.lock().unwrap().clone();
    assert!(
        queries[4].contains("offset=-1") && queries[4].contains("handle=h2"),
        "{queries:?}"
    );
}
