//! The HTTP server (feature `server`) over real HTTP on loopback: Trigger.dev's routes, its
//! errors, and the shape protocol of its run feeds, as a client sees them on the wire. The
//! official SDK's view of the same server is `conformance.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::backend::Backend;
use common::http::{Count, Reply, SECRET, Write, call, events, serve};
use runcast::Engine;
use runcast::http::ServerConfig;
use serde_json::{Value, json};

async fn server(backend: Backend) -> SocketAddr {
    let engine = backend
        .builder()
        .await
        .task::<Count>()
        .task::<Write>()
        .build()
        .unwrap();
    let config = ServerConfig::new(SECRET)
        .unwrap()
        .live_hold(Duration::from_millis(300));
    serve(engine, config).await
}

fn trigger_body(payload: &Value) -> String {
    // As the SDK sends it: the payload as a superjson packet.
    json!({
        "payload": json!({ "json": payload }).to_string(),
        "options": { "payloadType": "application/super+json", "tags": ["http-test"] },
    })
    .to_string()
}

async fn trigger(addr: SocketAddr, payload: &Value) -> Reply {
    let path = "/api/v1/tasks/count/trigger";
    call(
        addr,
        "POST",
        path,
        Some(SECRET),
        Some(&trigger_body(payload)),
    )
    .await
}

/// The first answer of the feed at `path` (with a query or not), from `-1`: the answer, and
/// its handle, offset and rows.
async fn first_page(
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> (Reply, String, String, Vec<Value>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let first = call(
        addr,
        "GET",
        &format!("{path}{sep}offset=-1&log=full"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let handle = first.header("electric-handle").unwrap().to_owned();
    let offset = first.header("electric-offset").unwrap().to_owned();
    let rows = rows_of(&first.json());
    (first, handle, offset, rows)
}

/// Reads the feed at `path` from `-1`, then live, until a row has `completedAt`; returns every
/// row read, in order, and the last offset.
async fn follow(addr: SocketAddr, path: &str, token: &str) -> (Vec<Value>, String) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (first, handle, mut offset, mut rows) = first_page(addr, path, token).await;
    for header in [
        "electric-handle",
        "electric-offset",
        "electric-schema",
        "electric-up-to-date",
    ] {
        assert!(first.header(header).is_some(), "no {header} header");
    }
    let mut polls = 0;
    while !rows.iter().any(|row| !row["completedAt"].is_null()) {
        polls += 1;
        assert!(polls < 200, "the run never finished on the feed: {rows:?}");
        let live = format!("{path}{sep}handle={handle}&live=true&log=full&offset={offset}&cursor=");
        let reply = call(addr, "GET", &live, Some(token), None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            reply.header("electric-cursor").is_some(),
            "a live answer has a cursor"
        );
        let body = reply.json();
        let last = body.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last, json!({ "headers": { "control": "up-to-date" } }));
        rows.extend(rows_of(&body));
        offset = reply.header("electric-offset").unwrap().to_owned();
    }
    (rows, offset)
}

/// Follows the feed at `path` (with a query or not) from `-1`, live, until `count` of its
/// runs finished successfully; their ids, sorted.
async fn finished_runs(addr: SocketAddr, path: &str, token: &str, count: usize) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (_, handle, mut offset, mut rows) = first_page(addr, path, token).await;
    let mut finished = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let done = rows
            .iter()
            .filter(|r| r["status"] == "COMPLETED_SUCCESSFULLY");
        finished.extend(done.map(|r| r["id"].as_str().unwrap().to_owned()));
        if finished.len() == count {
            break;
        }
        let url = format!("{path}{sep}handle={handle}&live=true&offset={offset}");
        let reply = call(addr, "GET", &url, Some(token), None).await;
        offset = reply.header("electric-offset").unwrap().to_owned();
        rows = rows_of(&reply.json());
    }
    finished.into_iter().collect()
}

/// The metadata counts of `rows`, in order.
fn counts_of(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .filter_map(|row| row["metadata"].as_str())
        .map(|m| {
            serde_json::from_str::<Value>(m).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The rows of a feed response; one response never carries two rows of one run (the SDK
/// would show only the last).
fn rows_of(body: &Value) -> Vec<Value> {
    let rows: Vec<Value> = body
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message.get("key").is_some())
        .map(|message| message["value"].clone())
        .collect();
    let mut ids: Vec<&str> = rows.iter().map(|row| row["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(
        ids.len(),
        count,
        "two rows of one run in a response: {body}"
    );
    rows
}

on_every_backend! {
    async fn a_triggered_run_is_read_and_followed_change_by_change_with_its_token(backend: Backend) {
        let addr = server(backend).await;
        let reply = trigger(addr, &json!({ "to": 20, "pause": 5 })).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        let id = body["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("run_"));
        assert_eq!(body["isCached"], false);
        let token = reply
            .header("x-trigger-jwt")
            .expect("a run token")
            .to_owned();

        let (rows, _) = follow(addr, &format!("/realtime/v1/runs/{id}"), &token).await;
        // Every change, in order, whatever moment the feed started at: each count once.
        let counts = counts_of(&rows);
        // From the run's first state, which its feed starts at.
        assert_eq!(rows[0]["status"], "PENDING");
        let first = counts[0];
        assert_eq!(first, 1);
        let expected: Vec<u64> = (first..=20).collect();
        let mut seen = counts.clone();
        seen.dedup();
        assert_eq!(seen, expected, "counts seen: {counts:?}");
        let last = rows.last().unwrap();
        assert_eq!(last["status"], "COMPLETED_SUCCESSFULLY");
        assert_eq!(last["output"], "20");
        assert_eq!(last["outputType"], "application/json");
        let payload: Value = serde_json::from_str(last["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload, json!({ "to": 20, "pause": 5 }));
        assert_eq!(last["runTags"], r#"{"http-test"}"#);
        assert_eq!(last["isTest"], "f");
        assert!(!last["createdAt"].as_str().unwrap().ends_with('Z'));

        let run = call(
            addr,
            "GET",
            &format!("/api/v3/runs/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(run.status, 200, "{}", run.body);
        let run = run.json();
        assert_eq!(run["status"], "COMPLETED");
        assert_eq!(run["isSuccess"], true);
        assert_eq!(run["output"], 20);
        assert_eq!(run["payload"], json!({ "to": 20, "pause": 5 }));
        assert_eq!(run["metadata"], json!({ "count": 20 }));
        assert_eq!(run["tags"], json!(["http-test"]));
    }
}

/// Reads the feed at `path` from `offset`, without waiting, until an answer has no rows.
async fn read_rest(addr: SocketAddr, path: &str, handle: &str, mut offset: String) -> Vec<Value> {
    let mut rows = Vec::new();
    loop {
        let url = format!("{path}?handle={handle}&log=full&offset={offset}");
        let reply = call(addr, "GET", &url, Some(SECRET), None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let more = rows_of(&reply.json());
        if more.is_empty() {
            return rows;
        }
        rows.extend(more);
        offset = reply.header("electric-offset").unwrap().to_owned();
    }
}

on_every_backend! {
    async fn a_feed_resumed_from_any_offset_it_sent_continues_with_no_gap_and_no_duplicate(backend: Backend) {
        let addr = server(backend).await;
        let reply = trigger(addr, &json!({ "to": 30, "pause": 2 })).await;
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let path = format!("/realtime/v1/runs/{id}");
        // A client that follows the run live, and every offset it was given on the way.
        let (_, handle, mut offset, mut rows) = first_page(addr, &path, SECRET).await;
        let mut given = vec![(offset.clone(), rows.len())];
        while !rows.iter().any(|row| !row["completedAt"].is_null()) {
            let url = format!("{path}?handle={handle}&live=true&offset={offset}&cursor=");
            let reply = call(addr, "GET", &url, Some(SECRET), None).await;
            rows.extend(rows_of(&reply.json()));
            offset = reply.header("electric-offset").unwrap().to_owned();
            given.push((offset.clone(), rows.len()));
        }
        // Each change once, in order: the counts go up by one, from wherever the feed started.
        let counts = counts_of(&rows);
        let mut distinct = counts.clone();
        distinct.dedup();
        assert_eq!(distinct, (counts[0]..=30).collect::<Vec<_>>(), "{counts:?}");
        // A client that dropped its connection after any answer, and resumes from the offset of
        // that answer, reads exactly the rest.
        for (offset, read) in given {
            let rest = read_rest(addr, &path, &handle, offset.clone()).await;
            assert_eq!(rest, rows[read..], "resumed from {offset}");
        }
    }
}

/// The messages of an SSE answer's `data:` events, in order.
fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

/// The rows of SSE `messages`, each batch (up to an `up-to-date`) checked to hold at most one
/// row of each run, with the position the batch ends at.
fn sse_batches(messages: &[Value]) -> Vec<(Vec<Value>, u64)> {
    let mut batches = Vec::new();
    let mut rows: Vec<Value> = Vec::new();
    for message in messages {
        match message["headers"]["control"].as_str() {
            Some("up-to-date") => {
                let lsn = message["headers"]["global_last_seen_lsn"].as_str().unwrap();
                let ids: std::collections::HashSet<&Value> =
                    rows.iter().map(|r| &r["id"]).collect();
                assert_eq!(ids.len(), rows.len(), "a run twice in one batch: {rows:?}");
                batches.push((std::mem::take(&mut rows), lsn.parse().unwrap()));
            }
            _ => rows.push(message["value"].clone()),
        }
    }
    assert!(rows.is_empty(), "rows after the last up-to-date: {rows:?}");
    batches
}

on_every_backend! {
    async fn a_live_sse_request_streams_every_change_in_batches_that_name_their_position(backend: Backend) {
        let engine = backend.builder().await.task::<Count>().build().unwrap();
        let config = ServerConfig::new(SECRET)
            .unwrap()
            .sse_duration(Duration::from_millis(1_500))
            .live_hold(Duration::from_millis(300));
        let addr = serve(engine, config).await;
        let reply = trigger(addr, &json!({ "to": 20, "pause": 5 })).await;
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let path = format!("/realtime/v1/runs/{id}");
        let (_, handle, offset, first) = first_page(addr, &path, SECRET).await;
        let sse = |offset: String| {
            let url = format!("{path}?handle={handle}&live=true&experimental_live_sse=true&offset={offset}&cursor=");
            async move { call(addr, "GET", &url, Some(SECRET), None).await }
        };
        // Open until its duration ends, though the run finished long before.
        let started = std::time::Instant::now();
        let reply = sse(offset.clone()).await;
        assert!(started.elapsed() >= Duration::from_millis(1_400));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some("text/event-stream"));
        assert_eq!(reply.header("electric-handle"), Some(handle.as_str()));
        assert_eq!(reply.header("electric-offset"), Some(offset.as_str()));
        assert!(reply.header("electric-cursor").is_some());
        let batches = sse_batches(&sse_messages(&reply.body));
        let rows: Vec<Value> = batches.iter().flat_map(|(rows, _)| rows.clone()).collect();
        // Every change after the first page, once, in order, to the final one.
        let mut all = first.clone();
        all.extend(rows.iter().cloned());
        let mut counts = counts_of(&all);
        counts.dedup();
        assert_eq!(counts, (1..=20).collect::<Vec<_>>());
        // PENDING, EXECUTING, a change per count, COMPLETED_SUCCESSFULLY.
        let statuses: Vec<&Value> = all.iter().map(|row| &row["status"]).collect();
        assert_eq!(statuses.len(), 23, "{statuses:?}");
        assert_eq!(rows.last().unwrap()["status"], "COMPLETED_SUCCESSFULLY");
        let positions: Vec<u64> = batches.iter().map(|(_, lsn)| *lsn).collect();
        assert!(positions.is_sorted() && positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        // Resumed from the position of any batch (Electric's client takes `<lsn>_0`), it
        // gets exactly the rest.
        let resumed = batches.iter().map(|(_, lsn)| sse(format!("{lsn}_0")));
        let resumed = futures::future::join_all(resumed).await;
        let mut read = 0;
        for ((batch, lsn), rest) in batches.iter().zip(resumed) {
            read += batch.len();
            let rest: Vec<Value> = sse_batches(&sse_messages(&rest.body))
                .into_iter()
                .flat_map(|(rows, _)| rows)
                .collect();
            assert_eq!(rest, rows[read..], "resumed from {lsn}");
        }
        // Past the run's last change, a long poll waits out its hold and says it is up to date.
        let last = batches.last().unwrap().1;
        let url = format!("{path}?handle={handle}&live=true&offset={last}_0&cursor=");
        let after = call(addr, "GET", &url, Some(SECRET), None).await;
        assert_eq!(after.json(), json!([{ "headers": { "control": "up-to-date" } }]));
        let not_live = call(addr, "GET", &format!("{path}?handle={handle}&live_sse=true&offset={offset}"), Some(SECRET), None).await;
        assert_eq!(not_live.status, 400, "{}", not_live.body);
    }
}

#[tokio::test]
async fn a_live_sse_response_ends_when_its_engine_stops() {
    let engine = Engine::builder().task::<Count>().build().unwrap();
    let config = ServerConfig::new(SECRET).unwrap();
    let addr = serve(engine.clone(), config).await;
    let reply = trigger(addr, &json!({ "to": 1, "pause": 0 })).await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/realtime/v1/runs/{id}");
    let (_, handle, offset, _) = first_page(addr, &path, SECRET).await;
    let url = format!("{path}?handle={handle}&live=true&live_sse=true&offset={offset}&cursor=");
    // Held open for 60 s unless the engine stops.
    let open = tokio::spawn(async move { call(addr, "GET", &url, Some(SECRET), None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.shutdown(Duration::from_secs(1)).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), open).await;
    let reply = ended
        .expect("the SSE response outlived its engine")
        .unwrap();
    assert_eq!(reply.status, 200);
    // What it sent before: the run's changes, the last of them its final one.
    let batches = sse_batches(&sse_messages(&reply.body));
    let last = batches.iter().flat_map(|(rows, _)| rows).last().unwrap();
    assert_eq!(last["status"], "COMPLETED_SUCCESSFULLY");
}

#[tokio::test]
async fn requests_without_the_right_credentials_are_refused_as_trigger_dev_refuses_them() {
    let addr = server(Backend::Memory).await;
    let reply = trigger(addr, &json!({ "to": 1, "pause": 0 })).await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let token = reply.header("x-trigger-jwt").unwrap().to_owned();
    let other = trigger(addr, &json!({ "to": 1, "pause": 0 })).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let run = format!("/api/v3/runs/{id}");
    let missing = call(addr, "GET", &run, None, None).await;
    assert_eq!(
        (missing.status, missing.json()["error"].as_str()),
        (401, Some("Invalid or Missing API key"))
    );
    let wrong = call(addr, "GET", &run, Some("tr_dev_wrong"), None).await;
    assert_eq!(wrong.status, 401);
    // A token signed with another key.
    let foreign = {
        let engine = Engine::builder().task::<Count>().build().unwrap();
        let config = ServerConfig::new("tr_dev_another_key").unwrap();
        let there = serve(engine, config).await;
        let path = "/api/v1/tasks/count/trigger";
        let body = trigger_body(&json!({ "to": 1, "pause": 0 }));
        let reply = call(there, "POST", path, Some("tr_dev_another_key"), Some(&body)).await;
        reply.header("x-trigger-jwt").unwrap().to_owned()
    };
    let forged = call(addr, "GET", &run, Some(&foreign), None).await;
    assert_eq!(forged.status, 401);
    assert!(
        forged.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Public Access Token is invalid")
    );
    // The run's token reads its run, not another, and triggers nothing.
    assert_eq!(
        call(addr, "GET", &run, Some(&token), None).await.status,
        200
    );
    let out_of_scope = call(
        addr,
        "GET",
        &format!("/api/v3/runs/{other}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(out_of_scope.status, 403);
    assert_eq!(out_of_scope.json()["code"], "unauthorized");
    let feed = call(
        addr,
        "GET",
        &format!("/realtime/v1/runs/{other}?offset=-1"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(feed.status, 403);
    let body = trigger_body(&json!({ "to": 1, "pause": 0 }));
    let triggered = call(
        addr,
        "POST",
        "/api/v1/tasks/count/trigger",
        Some(&token),
        Some(&body),
    )
    .await;
    assert_eq!(triggered.status, 403);
    let tags = call(
        addr,
        "GET",
        "/realtime/v1/runs?tags=http-test&offset=-1",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(tags.status, 403);
    let claims = call(addr, "POST", "/api/v1/auth/jwt/claims", Some(&token), None).await;
    assert_eq!(claims.status, 401);
    let claims = call(addr, "POST", "/api/v1/auth/jwt/claims", Some(SECRET), None).await;
    assert_eq!(claims.json(), json!({ "sub": "runcast", "pub": true }));
}

#[tokio::test]
async fn bad_triggers_get_clear_errors_and_store_nothing() {
    let addr = server(Backend::Memory).await;
    let post = |path: &'static str, body: String| async move {
        call(addr, "POST", path, Some(SECRET), Some(&body)).await
    };
    let unknown = post("/api/v1/tasks/nope/trigger", trigger_body(&json!({}))).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(unknown.json()["error"].as_str().unwrap().contains("`nope`"));

    let mismatch = post(
        "/api/v1/tasks/count/trigger",
        trigger_body(&json!({ "to": "ten", "pause": 1 })),
    )
    .await;
    assert_eq!(mismatch.status, 422, "{}", mismatch.body);
    let error = mismatch.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("at `to`"), "{error}");

    let malformed = post("/api/v1/tasks/count/trigger", "{\"payload\": ".to_owned()).await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body")
    );

    let bad_packet = json!({ "payload": "{", "options": { "payloadType": "application/json" } });
    let bad_packet = post("/api/v1/tasks/count/trigger", bad_packet.to_string()).await;
    assert_eq!(bad_packet.status, 422);

    let tags: Vec<String> = (0..11).map(|n| format!("t{n}")).collect();
    let too_many = json!({ "payload": { "to": 1, "pause": 0 }, "options": { "tags": tags } });
    let too_many = post("/api/v1/tasks/count/trigger", too_many.to_string()).await;
    assert_eq!(too_many.status, 422, "{}", too_many.body);

    let delay = json!({ "payload": { "to": 1, "pause": 0 }, "options": { "delay": "soon" } });
    let delay = post("/api/v1/tasks/count/trigger", delay.to_string()).await;
    assert_eq!(delay.status, 422);
    assert!(
        delay.json()["error"]
            .as_str()
            .unwrap()
            .contains("invalid delay `soon`")
    );

    let huge = json!({ "payload": { "to": 1, "pause": 0, "pad": "x".repeat(4 << 20) } });
    let huge = post("/api/v1/tasks/count/trigger", huge.to_string()).await;
    assert_eq!(huge.status, 413);

    // None of them made a run.
    let feed = call(
        addr,
        "GET",
        "/realtime/v1/runs?tags=http-test&offset=-1",
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(rows_of(&feed.json()), Vec::<Value>::new());
    let feed = call(
        addr,
        "GET",
        "/realtime/v1/runs?tags=t0&offset=-1",
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(rows_of(&feed.json()), Vec::<Value>::new());
}

#[tokio::test]
async fn bad_feed_requests_get_clear_errors_and_another_history_must_refetch() {
    let addr = server(Backend::Memory).await;
    let reply = trigger(addr, &json!({ "to": 1, "pause": 0 })).await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let get = |path: String| async move { call(addr, "GET", &path, Some(SECRET), None).await };
    assert_eq!(
        get("/realtime/v1/runs/run_nope?offset=-1".into())
            .await
            .status,
        404
    );
    assert_eq!(get("/api/v3/runs/run_nope".into()).await.status, 404);
    assert_eq!(get(format!("/realtime/v1/runs/{id}")).await.status, 400);
    let first = get(format!("/realtime/v1/runs/{id}?offset=-1")).await;
    let handle = first.header("electric-handle").unwrap().to_owned();
    let garbage = get(format!("/realtime/v1/runs/{id}?handle={handle}&offset=x")).await;
    assert_eq!(garbage.status, 400);
    assert!(
        garbage.json()["error"]
            .as_str()
            .unwrap()
            .contains("invalid offset")
    );
    assert_eq!(
        get(format!("/realtime/v1/runs/{id}?offset=3_0"))
            .await
            .status,
        400
    );
    assert_eq!(
        get("/realtime/v1/runs?tags=a,,b&offset=-1".into())
            .await
            .status,
        400
    );
    assert_eq!(get("/realtime/v1/runs?offset=-1".into()).await.status, 400);

    // An offset of another history (an engine restarted in memory): start over.
    let stale = get(format!("/realtime/v1/runs/{id}?handle=1234abcd&offset=5_0")).await;
    assert_eq!(stale.status, 409);
    assert_eq!(
        stale.json(),
        json!([{ "headers": { "control": "must-refetch" } }])
    );
    assert_eq!(stale.header("electric-handle"), Some(handle.as_str()));
}

on_every_backend! {
    async fn cancel_ends_a_run_once_and_answers_the_same_after(backend: Backend) {
        let addr = server(backend).await;
        let reply = trigger(addr, &json!({ "to": 1_000, "pause": 50 })).await;
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v2/runs/{id}/cancel");
        let canceled = call(addr, "POST", &path, Some(SECRET), None).await;
        assert_eq!(
            (canceled.status, canceled.json()),
            (200, json!({ "id": id }))
        );
        let again = call(addr, "POST", &path, Some(SECRET), None).await;
        assert_eq!((again.status, again.json()), (200, json!({ "id": id })));
        let (rows, _) = follow(addr, &format!("/realtime/v1/runs/{id}"), SECRET).await;
        let finals: Vec<&Value> = rows
            .iter()
            .filter(|row| !row["completedAt"].is_null())
            .collect();
        assert_eq!(finals.len(), 1);
        assert_eq!(finals[0]["status"], "CANCELED");
        let unknown = call(
            addr,
            "POST",
            "/api/v2/runs/run_nope/cancel",
            Some(SECRET),
            None,
        )
        .await;
        assert_eq!(unknown.status, 404);
    }
}

on_every_backend! {
    async fn tag_and_batch_feeds_show_their_runs(backend: Backend) {
        let addr = server(backend).await;
        let ids: Vec<String> = futures::future::join_all((0..3).map(|_| async {
            trigger(addr, &json!({ "to": 2, "pause": 1 })).await.json()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }))
        .await;
        // Until every run shows finished.
        let finished = finished_runs(addr, "/realtime/v1/runs?tags=http-test", SECRET, ids.len()).await;
        let mut expected: Vec<String> = ids.clone();
        expected.sort();
        assert_eq!(finished, expected);

        // An unknown batch's feed is empty, not an error: a client may subscribe before it fills.
        let batch = call(
            addr,
            "GET",
            "/realtime/v1/batches/batch_nope?offset=-1",
            Some(SECRET),
            None,
        )
        .await;
        assert_eq!(batch.status, 200);
        assert_eq!(rows_of(&batch.json()), Vec::<Value>::new());
    }
}

#[tokio::test]
async fn an_idle_live_request_waits_its_hold_then_answers_up_to_date_at_the_same_offset() {
    let addr = server(Backend::Memory).await;
    let reply = trigger(addr, &json!({ "to": 1, "pause": 0 })).await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/realtime/v1/runs/{id}");
    let (_, offset) = follow(addr, &path, SECRET).await;
    let (_, handle, _, _) = first_page(addr, &path, SECRET).await;
    let url = format!("{path}?handle={handle}&live=true&offset={offset}");
    let idle = call(addr, "GET", &url, Some(SECRET), None).await;
    assert_eq!(idle.status, 200);
    assert_eq!(
        idle.json(),
        json!([{ "headers": { "control": "up-to-date" } }])
    );
    assert_eq!(idle.header("electric-offset"), Some(offset.as_str()));
}

/// The chunks of a v2 stream response, with their `seq_num`s.
fn chunks_of(reply: &Reply) -> Vec<(u64, Value)> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-stream-version"), Some("v2"));
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    events(&reply.body)
        .into_iter()
        .map(|fields| {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(f, _)| f == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(field("event").as_deref(), Some("batch"), "{fields:?}");
            let data: Value = serde_json::from_str(&field("data").unwrap()).unwrap();
            let record = &data["records"][0];
            let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
            (record["seq_num"].as_u64().unwrap(), body["data"].clone())
        })
        .collect()
}

on_every_backend! {
    async fn a_stream_is_read_whole_in_order_and_resumed_after_any_chunk(backend: Backend) {
        let addr = server(backend).await;
        let words: Vec<String> = (0..25).map(|n| format!("w{n}")).collect();
        let body = json!({ "payload": words, "options": {} }).to_string();
        let reply = call(
            addr,
            "POST",
            "/api/v1/tasks/write/trigger",
            Some(SECRET),
            Some(&body),
        )
        .await;
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let token = reply.header("x-trigger-jwt").unwrap().to_owned();
        let path = format!("/realtime/v1/streams/{id}/words");
        // Read while the run writes: the response ends once the run has finished.
        let whole = chunks_of(&call(addr, "GET", &path, Some(&token), None).await);
        let read: Vec<Value> = whole.iter().map(|(_, chunk)| chunk.clone()).collect();
        assert_eq!(read, words.iter().map(|w| json!(w)).collect::<Vec<_>>());
        assert!(whole.windows(2).all(|w| w[0].0 < w[1].0), "seq_nums go up");
        // A reader that reconnects after any chunk gets exactly the rest.
        for (i, (seq, _)) in whole.iter().enumerate() {
            let rest = call_with(addr, &path, &[("Last-Event-ID", &seq.to_string())]).await;
            assert_eq!(chunks_of(&rest), whole[i + 1..], "after {seq}");
        }
        // Another key's stream of the run is empty; a stream of an unknown run is 404.
        assert_eq!(
            chunks_of(
                &call(
                    addr,
                    "GET",
                    &format!("/realtime/v1/streams/{id}/other"),
                    Some(SECRET),
                    None
                )
                .await
            ),
            []
        );
        let unknown = call(
            addr,
            "GET",
            "/realtime/v1/streams/run_nope/words",
            Some(SECRET),
            None,
        )
        .await;
        assert_eq!(unknown.status, 404);
        let bad = call_with(addr, &path, &[("Last-Event-ID", "seven")]).await;
        assert_eq!(bad.status, 400);
    }
}

/// A GET with the secret key and more headers.
async fn call_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    common::http::call_headers(addr, "GET", path, Some(SECRET), headers, None).await
}

on_every_backend! {
    async fn a_batch_named_then_sent_in_parts_is_sealed_once_whole_and_feeds_its_runs(backend: Backend) {
        let addr = server(backend).await;
        let post = |path: String, body: String| async move {
            call(addr, "POST", &path, Some(SECRET), Some(&body)).await
        };
        let named = post(
            "/api/v3/batches".into(),
            json!({ "runCount": 3, "taskIdentifiers": ["count"] }).to_string(),
        )
        .await;
        assert_eq!(named.status, 202, "{}", named.body);
        let body = named.json();
        assert_eq!(
            (body["runCount"].clone(), body["isCached"].clone()),
            (json!(3), json!(false))
        );
        let id = body["id"].as_str().unwrap().to_owned();
        let token = named.header("x-trigger-jwt").unwrap().to_owned();
        let items_path = format!("/api/v3/batches/{id}/items");
        let line = |index: usize| {
            let payload = json!({ "json": { "to": 2, "pause": 1 } }).to_string();
            json!({ "index": index, "task": "count", "payload": payload, "options": { "payloadType": "application/super+json" } }).to_string()
        };
        let ndjson = |indexes: &[usize]| {
            indexes
                .iter()
                .map(|&i| line(i))
                .collect::<Vec<_>>()
                .join("\n")
        };

        // A request with a bad item keeps none of its items.
        let bad = format!(
            "{}\n{}",
            line(0),
            line(0).replace("\"to\\\":2", "\"to\\\":\\\"two\\\"")
        );
        let refused = post(items_path.clone(), bad).await;
        assert_eq!(refused.status, 422, "{}", refused.body);
        assert!(
            refused.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("item 0: the payload does not match")
        );
        let malformed = post(items_path.clone(), format!("{}\n{{\"index\":", line(0))).await;
        assert_eq!(malformed.status, 400);
        assert!(
            malformed.json()["error"]
                .as_str()
                .unwrap()
                .contains("line 2")
        );
        let past = post(items_path.clone(), line(3)).await;
        assert_eq!(past.status, 422);

        let part = post(items_path.clone(), ndjson(&[1])).await.json();
        assert_eq!(
            (part["itemsAccepted"].clone(), part["sealed"].clone()),
            (json!(1), json!(false))
        );
        // The SDK sends the whole stream again when a batch is not sealed: duplicates are dropped.
        let mut whole = post(items_path.clone(), ndjson(&[0, 1, 2])).await.json();
        // The runs' ids, in the order of the items (runcast's own addition, for its client).
        let runs = whole.as_object_mut().unwrap().remove("runs").unwrap();
        let runs: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(|r| r.starts_with("run_")));
        assert_eq!(
            whole,
            json!({ "id": id, "itemsAccepted": 2, "itemsDeduplicated": 1, "sealed": true, "enqueuedCount": 3, "expectedCount": 3 })
        );
        let again = post(items_path.clone(), ndjson(&[0, 1, 2])).await.json();
        assert_eq!(
            (again["itemsDeduplicated"].clone(), again["sealed"].clone()),
            (json!(3), json!(true))
        );

        // Its feed, read with its token, shows its three runs finish.
        let path = format!("/realtime/v1/batches/{id}");
        let finished = finished_runs(addr, &path, &token, 3).await;
        assert_eq!(finished.len(), 3);
        // The batch's token reads each of its runs (as a page that follows a batch reads their
        // streams), and no other run.
        for run in &finished {
            let read = call(addr, "GET", &format!("/api/v3/runs/{run}"), Some(&token), None).await;
            assert_eq!(read.status, 200, "{}", read.body);
            assert_eq!(read.json()["batchId"], id.as_str());
            let stream = format!("/realtime/v1/streams/{run}/words");
            assert_eq!(call(addr, "GET", &stream, Some(&token), None).await.status, 200);
            let feed = format!("/realtime/v1/runs/{run}?offset=-1");
            assert_eq!(call(addr, "GET", &feed, Some(&token), None).await.status, 200);
        }
        let other = trigger(addr, &json!({ "to": 1, "pause": 0 })).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let outside = call(addr, "GET", &format!("/api/v3/runs/{other}"), Some(&token), None).await;
        assert_eq!(outside.status, 403);

        assert_eq!(
            post("/api/v3/batches/batch_nope/items".into(), line(0))
                .await
                .status,
            404
        );
        for count in [0, 1_001] {
            let refused = post(
                "/api/v3/batches".into(),
                json!({ "runCount": count }).to_string(),
            )
            .await;
            assert_eq!(refused.status, 422);
        }
    }
}

on_every_backend! {
    async fn metadata_and_tags_change_through_their_routes_with_the_secret_key_only(backend: Backend) {
        let addr = server(backend).await;
        // Delayed, so that only these requests change it.
        let body = json!({ "payload": { "to": 1, "pause": 0 }, "options": { "delay": "1h", "tags": "http-test" } });
        let path = "/api/v1/tasks/count/trigger";
        let reply = call(addr, "POST", path, Some(SECRET), Some(&body.to_string())).await;
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let token = reply.header("x-trigger-jwt").unwrap().to_owned();
        let path = format!("/api/v1/runs/{id}/metadata");
        let put = |body: Value, key: String| {
            let path = path.clone();
            async move { call(addr, "PUT", &path, Some(&key), Some(&body.to_string())).await }
        };
        let body = json!({
            "metadata": { "stage": "start", "tmp": 1 },
            "operations": [
                // `update` is `metadata.replace`: "stage" goes.
                { "type": "update", "value": { "extra": true, "tmp": 1, "order": { "lines": [{ "done": false }] } } },
                { "type": "set", "key": "stage", "value": "upload" },
                { "type": "delete", "key": "tmp" },
                { "type": "append", "key": "log", "value": "a" },
                { "type": "increment", "key": "n", "value": 2 },
                // Keys that start with `$.` are paths.
                { "type": "set", "key": "$.order.lines.0.done", "value": true },
                { "type": "append", "key": "$.order.lines", "value": { "done": false } },
                { "type": "increment", "key": "$.order.count", "value": 1 },
            ],
        });
        let written = put(body, SECRET.into()).await;
        assert_eq!(written.status, 200, "{}", written.body);
        let order = json!({ "lines": [{ "done": true }, { "done": false }], "count": 1 });
        let expected = json!({ "stage": "upload", "log": ["a"], "n": 2, "extra": true, "order": order });
        assert_eq!(written.json()["metadata"], expected);
        let read = call(addr, "GET", &path, Some(&token), None).await;
        assert_eq!(read.json()["metadata"], expected);
        assert_eq!(
            put(json!({ "metadata": {} }), token.clone()).await.status,
            401
        );
        let path_key = put(
            json!({ "operations": [{ "type": "set", "key": "$.missing.b", "value": 1 }] }),
            SECRET.into(),
        )
        .await;
        assert_eq!(path_key.status, 422);
        assert!(
            path_key.body.contains("there is no object or array at `$.missing`"),
            "{}",
            path_key.body
        );
        let unknown_op = put(
            json!({ "operations": [{ "type": "explode", "key": "a" }] }),
            SECRET.into(),
        )
        .await;
        assert_eq!(unknown_op.status, 400);
        let huge = put(
            json!({ "metadata": { "big": "x".repeat(300 * 1024) } }),
            SECRET.into(),
        )
        .await;
        assert_eq!(huge.status, 413);
        assert_eq!(
            call(addr, "GET", &path, Some(SECRET), None).await.json()["metadata"],
            expected,
            "refused writes changed nothing"
        );
        let missing = call(
            addr,
            "PUT",
            "/api/v1/runs/run_nope/metadata",
            Some(SECRET),
            Some("{}"),
        )
        .await;
        assert_eq!(missing.status, 404);

        let tags = format!("/api/v1/runs/{id}/tags");
        let add = |body: Value| {
            let tags = tags.clone();
            async move { call(addr, "POST", &tags, Some(SECRET), Some(&body.to_string())).await }
        };
        assert_eq!(
            add(json!({ "tags": ["a", "b"] })).await.json()["message"],
            "Successfully set 2 new tags."
        );
        assert_eq!(
            add(json!({ "tags": "a" })).await.json()["message"],
            "No new tags to add"
        );
        let many: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
        assert_eq!(add(json!({ "tags": many })).await.status, 422);
        let run = call(
            addr,
            "GET",
            &format!("/api/v3/runs/{id}"),
            Some(SECRET),
            None,
        )
        .await
        .json();
        assert_eq!(run["tags"], json!(["http-test", "a", "b"]));
        call(
            addr,
            "POST",
            &format!("/api/v2/runs/{id}/cancel"),
            Some(SECRET),
            None,
        )
        .await;
        let finished = add(json!({ "tags": ["late"] })).await;
        assert_eq!(finished.status, 422);
        assert!(
            finished.json()["error"]
                .as_str()
                .unwrap()
                .contains("finished")
        );
    }
}

#[tokio::test]
async fn tokens_minted_by_the_server_reach_their_scopes_until_they_expire() {
    let addr = server(Backend::Memory).await;
    let id = trigger(addr, &json!({ "to": 1, "pause": 0 })).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mint = |body: Value| async move {
        call(
            addr,
            "POST",
            "/api/v1/auth/public-tokens",
            Some(SECRET),
            Some(&body.to_string()),
        )
        .await
    };
    let minted =
        mint(json!({ "scopes": [format!("read:runs:{id}")], "expirationTime": "1h" })).await;
    assert_eq!(minted.status, 200, "{}", minted.body);
    let token = minted.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            addr,
            "GET",
            &format!("/api/v3/runs/{id}"),
            Some(&token),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(mint(json!({ "scopes": [] })).await.status, 422);
    assert_eq!(
        mint(json!({ "scopes": ["read:runs"], "expirationTime": 1_000 }))
            .await
            .status,
        422
    );
    assert_eq!(
        mint(json!({ "scopes": ["read:runs"], "expirationTime": "45d" }))
            .await
            .status,
        422
    );
    let by_token = call(
        addr,
        "POST",
        "/api/v1/auth/public-tokens",
        Some(&token),
        Some("{\"scopes\":[\"admin\"]}"),
    )
    .await;
    assert_eq!(by_token.status, 401, "a token mints no token");
}

#[tokio::test]
async fn live_requests_past_the_limit_are_told_to_come_back() {
    let engine = Engine::builder().task::<Count>().build().unwrap();
    let config = ServerConfig::new(SECRET)
        .unwrap()
        .live_hold(Duration::from_secs(2))
        .max_live_requests(1);
    let addr = serve(engine, config).await;
    let id = trigger(addr, &json!({ "to": 1, "pause": 0 })).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/realtime/v1/runs/{id}");
    let (_, offset) = follow(addr, &path, SECRET).await;
    let (_, handle, _, _) = first_page(addr, &path, SECRET).await;
    let live = format!("{path}?handle={handle}&live=true&offset={offset}");
    let waiting = tokio::spawn({
        let live = live.clone();
        async move { call(addr, "GET", &live, Some(SECRET), None).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = call(addr, "GET", &live, Some(SECRET), None).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(waiting.await.unwrap().status, 200);
    // The one waiting is done: the next one waits again.
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        call(addr, "GET", &live, Some(SECRET), None),
    )
    .await;
    assert_eq!(again.unwrap().status, 200);
}

on_every_backend! {
    async fn a_payload_uploaded_apart_is_triggered_by_its_path(backend: Backend) {
        let addr = server(backend).await;
        let path = "trigger/packet_abc/payload.json";
        let encoded = path.replace('/', "%2F");
        let url = call(
            addr,
            "PUT",
            &format!("/api/v2/packets/{encoded}"),
            Some(SECRET),
            None,
        )
        .await;
        assert_eq!(url.status, 200, "{}", url.body);
        let url = url.json();
        assert_eq!(url["storagePath"], path);
        let presigned = url["presignedUrl"].as_str().unwrap();
        let upload_path = presigned.strip_prefix(&format!("http://{addr}")).unwrap();
        let packet = json!({ "json": { "to": 3, "pause": 1 } }).to_string();
        let headers = [("Content-Type", "application/super+json")];
        let uploaded =
            common::http::call_headers(addr, "PUT", upload_path, None, &headers, Some(&packet)).await;
        assert_eq!(uploaded.status, 200, "{}", uploaded.body);
        let forged = call(
            addr,
            "PUT",
            "/api/v1/packets/upload/not.a.token",
            None,
            Some(&packet),
        )
        .await;
        assert_eq!(forged.status, 401);

        let body = json!({ "payload": path, "options": { "payloadType": "application/store" } });
        let reply = call(
            addr,
            "POST",
            "/api/v1/tasks/count/trigger",
            Some(SECRET),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let run = call(
            addr,
            "GET",
            &format!("/api/v3/runs/{id}"),
            Some(SECRET),
            None,
        )
        .await
        .json();
        assert_eq!(run["payload"], json!({ "to": 3, "pause": 1 }));
        let missing = json!({ "payload": "trigger/nope/payload.json", "options": { "payloadType": "application/store" } });
        let missing = call(
            addr,
            "POST",
            "/api/v1/tasks/count/trigger",
            Some(SECRET),
            Some(&missing.to_string()),
        )
        .await;
        assert_eq!(missing.status, 422);
        assert!(
            missing.json()["error"]
                .as_str()
                .unwrap()
                .contains("no packet was uploaded")
        );
    }
}

/// One server for the property test's cases, on a runtime that outlives each.
static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
    std::sync::LazyLock::new(|| tokio::runtime::Runtime::new().unwrap());
static FUZZED: tokio::sync::OnceCell<(SocketAddr, String)> = tokio::sync::OnceCell::const_new();

/// An answer to any request: a status the API uses, and a JSON body (an error's names it).
fn check_answer(reply: &Reply) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prop_assert;
    let allowed = [200, 202, 400, 401, 403, 404, 409, 413, 422];
    prop_assert!(
        allowed.contains(&reply.status),
        "{} {}",
        reply.status,
        reply.body
    );
    let body: Value = serde_json::from_str(&reply.body)
        .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}: {}", reply.body)))?;
    if reply.status >= 400 && reply.status != 409 {
        prop_assert!(body["error"].is_string(), "{}", reply.body);
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn any_query_body_or_token_gets_a_clear_answer_and_breaks_nothing(
        query in "[A-Za-z0-9=&_%.,+-]{0,60}",
        body in ".{0,200}",
        token in "[A-Za-z0-9._-]{1,60}",
    ) {
        RUNTIME.block_on(async {
            let (addr, id) = FUZZED
                .get_or_init(|| async {
                    let addr = server(Backend::Memory).await;
                    let reply = trigger(addr, &json!({ "to": 1, "pause": 0 })).await;
                    (addr, reply.json()["id"].as_str().unwrap().to_owned())
                })
                .await
                .clone();
            let feed = format!("/realtime/v1/runs/{id}?{query}");
            check_answer(&call(addr, "GET", &feed, Some(SECRET), None).await)?;
            let tags = format!("/realtime/v1/runs?{query}");
            check_answer(&call(addr, "GET", &tags, Some(SECRET), None).await)?;
            for path in ["/api/v1/tasks/count/trigger", "/api/v3/batches", "/api/v1/auth/public-tokens"] {
                check_answer(&call(addr, "POST", path, Some(SECRET), Some(&body)).await)?;
            }
            let metadata = format!("/api/v1/runs/{id}/metadata");
            check_answer(&call(addr, "PUT", &metadata, Some(SECRET), Some(&body)).await)?;
            let run = format!("/api/v3/runs/{id}");
            let refused = call(addr, "GET", &run, Some(&token), None).await;
            proptest::prop_assert_eq!(refused.status, 401);
            check_answer(&refused)?;
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_one_time_token_triggers_once_and_a_refused_trigger_does_not_use_it_up() {
    let addr = server(Backend::Memory).await;
    let mint = |once: bool| async move {
        let body = json!({ "scopes": ["trigger:tasks:count"], "oneTimeUse": once }).to_string();
        let reply = call(
            addr,
            "POST",
            "/api/v1/auth/public-tokens",
            Some(SECRET),
            Some(&body),
        )
        .await;
        reply.json()["token"].as_str().unwrap().to_owned()
    };
    let path = "/api/v1/tasks/count/trigger";
    let good = json!({ "payload": { "to": 1, "pause": 0 } }).to_string();
    let bad = json!({ "payload": { "to": "one", "pause": 0 } }).to_string();
    let once = mint(true).await;
    assert_eq!(
        call(addr, "POST", path, Some(&once), Some(&bad))
            .await
            .status,
        422
    );
    assert_eq!(
        call(addr, "POST", path, Some(&once), Some(&good))
            .await
            .status,
        200
    );
    let again = call(addr, "POST", path, Some(&once), Some(&good)).await;
    assert_eq!(again.status, 422);
    assert_eq!(
        again.json()["error"],
        "Cannot trigger count with a one-time use token as it has already been used."
    );
    let many = mint(false).await;
    for _ in 0..2 {
        assert_eq!(
            call(addr, "POST", path, Some(&many), Some(&good))
                .await
                .status,
            200
        );
    }
}

/// `createdAt` on a tag feed's first request: only runs created within the window are shown,
/// then and on every later request (the window is kept in the handle), whatever changes the
/// older runs make; 24 hours by default, as Trigger.dev's.
#[tokio::test]
async fn a_tag_feed_shows_the_runs_created_within_the_window_its_first_request_names() {
    let addr = server(Backend::Memory).await;
    // Delayed runs: only these requests change them.
    let delayed = |tag: &str| {
        let body = json!({ "payload": { "to": 1, "pause": 0 }, "options": { "delay": "1h", "tags": tag } });
        async move {
            let path = "/api/v1/tasks/count/trigger";
            let reply = call(addr, "POST", path, Some(SECRET), Some(&body.to_string())).await;
            reply.json()["id"].as_str().unwrap().to_owned()
        }
    };
    let old = delayed("window").await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let new = delayed("window").await;
    let touch = |id: &str| {
        let path = format!("/api/v1/runs/{id}/metadata");
        let body = json!({ "operations": [{ "type": "increment", "key": "n", "value": 1 }] });
        async move {
            let reply = call(addr, "PUT", &path, Some(SECRET), Some(&body.to_string())).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    };
    let ids = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|row| row["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, handle, mut offset, rows) =
        first_page(addr, "/realtime/v1/runs?tags=window&createdAt=1s", SECRET).await;
    assert_eq!(ids(&rows), [new.as_str()]);
    // Changes of both runs: a live request wakes for the new run's only, and a later one
    // finds nothing more, however many changes of the old run it passes over.
    for _ in 0..3 {
        touch(&old).await;
    }
    touch(&new).await;
    let live = |offset: &str| {
        let path =
            format!("/realtime/v1/runs?tags=window&handle={handle}&offset={offset}&live=true");
        async move {
            let reply = call(addr, "GET", &path, Some(SECRET), None).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let offset = reply.header("electric-offset").unwrap().to_owned();
            (ids(&rows_of(&reply.json())), offset)
        }
    };
    let mut seen = Vec::new();
    loop {
        let (rows, next) = live(&offset).await;
        if rows.is_empty() {
            break;
        }
        seen.extend(rows);
        offset = next;
    }
    assert_eq!(seen, [new.as_str()]);
    // A change of the old run alone: the live request passes over it, and its offset moves
    // past it, so the client does not read it again.
    touch(&old).await;
    let (rows, next) = live(&offset).await;
    assert!(rows.is_empty(), "{rows:?}");
    let position = |offset: &str| offset.split('_').next().unwrap().parse::<u64>().unwrap();
    assert!(position(&next) > position(&offset), "{next} after {offset}");

    // Without `createdAt`, the last 24 hours: both.
    let (_, _, _, rows) = first_page(addr, "/realtime/v1/runs?tags=window", SECRET).await;
    let mut both = ids(&rows);
    both.sort();
    let mut expected = vec![old, new];
    expected.sort();
    assert_eq!(both, expected);
    // A window that is not a duration.
    let path = "/realtime/v1/runs?tags=window&createdAt=yesterday&offset=-1";
    let bad = call(addr, "GET", path, Some(SECRET), None).await;
    assert_eq!(bad.status, 400);
    let error = bad.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("invalid createdAt `yesterday`"), "{error}");
}
