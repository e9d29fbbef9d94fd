//! The realtime run feeds, in Electric's shape protocol as the SDK's client (Electric 1.0.14)
//! reads it (`electric-shape-protocol.md`, `trigger-sdk-v4-wire.md` §6.2).
//!
//! A feed's offsets are runcast's cursors: `electric-handle` names the engine's history (its
//! epoch; for a tag feed, with the start of its `createdAt` window, `<epoch>-<unix ms>`) and
//! `electric-offset` is the position of the last change read (`<position>_0`). A
//! request from offset `-1` gets the current row of every run in scope, or, on one run's feed,
//! its first change, so that a client that subscribes to a run it just triggered sees every
//! state of it (as a run's handle does in Rust); a request from an offset gets the changes
//! after it, each as the run's whole row; a live request (`live=true`)
//! waits for the first of them, up to the configured hold. So a client that resumes after a
//! dropped connection, from the offset it last read, gets no gap and no duplicate, from any
//! server over the same history. An offset of another history (a restarted in-memory engine)
//! gets `409` must-refetch, and the client starts over from `-1`.
//!
//! A live request in Electric's SSE mode (`live_sse=true`, or `experimental_live_sse=true` as
//! its 1.0.14 client sends it) gets the changes as they come over one response, in batches
//! that each end with an `up-to-date` message naming their position
//! (`global_last_seen_lsn`, from which Electric's client takes its next offset), until
//! [`ServerConfig::sse_duration`](super::ServerConfig::sse_duration) ends it.
//!
//! A response (or an SSE batch) carries at most one change of each run: the SDK's reader shows
//! only the last row of each run in a response, so that is how a client that keeps up sees
//! every change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::api::{allow_read, duration, find};
use super::auth::Access;
use super::error::ApiError;
use super::{AppState, headers};
use crate::model::{AnyRun, BatchId, Cursor, RunId, Timestamp, Update};
use crate::support::lock;
use crate::wire::scope::Resource;
use crate::wire::{row, shape};
use crate::{FeedError, RunFeed, Scope, Subscription};

/// The most changes one response carries; a client asks again for the rest.
const MAX_CHANGES: usize = 1_000;

/// How far back a tag feed looks for runs unless its first request says (`createdAt`), as
/// Trigger.dev's.
const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3_600);

/// The query of a shape request. Electric's other parameters (`cursor`, `log`,
/// `expired_handle`) need nothing from runcast.
#[derive(Deserialize)]
pub(super) struct ShapeQuery {
    offset: Option<String>,
    handle: Option<String>,
    live: Option<String>,
    tags: Option<String>,
    /// A tag feed's window: only runs created within it (`1h`, `30m`, `2d`, `1w`; 24 hours
    /// by default), counted from its first request.
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
    #[serde(rename = "skipColumns")]
    skip_columns: Option<String>,
    /// Live changes as server-sent events (Electric's `live_sse`; its client 1.0.14 sends
    /// `experimental_live_sse`).
    live_sse: Option<String>,
    experimental_live_sse: Option<String>,
}

impl ShapeQuery {
    fn sse(&self) -> bool {
        [&self.live_sse, &self.experimental_live_sse]
            .iter()
            .any(|flag| flag.as_deref() == Some("true"))
    }
}

/// `GET /realtime/v1/runs/{run}`.
pub(super) async fn run(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    Query(query): Query<ShapeQuery>,
) -> Result<Response, ApiError> {
    let id = RunId::from(id);
    // The run is read only when its task or tags may be what grants the request: a feed
    // refuses a run it does not know by itself.
    if access
        .allow("read", &[Resource::one("runs", id.as_str())])
        .is_err()
    {
        allow_read(&state, &access, &find(&state, &id).await?)?;
    }
    serve(&state, Scope::Run(id), &query, None).await
}

/// `GET /realtime/v1/runs?tags=a,b`: the runs that carry all of the tags.
pub(super) async fn tags(
    State(state): State<AppState>,
    access: Access,
    Query(query): Query<ShapeQuery>,
) -> Result<Response, ApiError> {
    let tags = query
        .tags
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("the query parameter `tags` is required"))?;
    let tags: Vec<String> = tags.split(',').map(str::to_owned).collect();
    if let Some(bad) = tags.iter().find(|tag| {
        tag.is_empty()
            || tag
                .chars()
                .any(|c| c.is_control() || matches!(c, '\\' | '"'))
    }) {
        return Err(ApiError::bad_request(format!(
            "invalid tag {bad:?}: a tag is not empty and has no control character, `\\` or `\"`"
        )));
    }
    let mut resources = vec![Resource::every("runs"), Resource::every("tags")];
    resources.extend(tags.iter().map(|tag| Resource::one("tags", tag)));
    access.allow("read", &resources)?;
    // The window starts when the feed does, and is kept in its handle: later requests, live
    // or resumed, see the runs the first one did, and the ones created since.
    let floor = if query.offset.as_deref() == Some("-1") {
        let window = match query.created_at.as_deref() {
            None => DEFAULT_WINDOW,
            Some(text) => duration(text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid createdAt `{}`: expected a duration such as 30m, 1h, 2d or 1w",
                    text.chars().take(64).collect::<String>()
                ))
            })?,
        };
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Some(Timestamp::now().unix_millis().saturating_sub(window))
    } else {
        let parts = query.handle.as_deref().and_then(shape::handle_parts);
        parts.and_then(|(_, floor)| floor)
    };
    serve(&state, Scope::Tags(tags), &query, floor).await
}

/// `GET /realtime/v1/batches/{batch}`.
pub(super) async fn batch(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    Query(query): Query<ShapeQuery>,
) -> Result<Response, ApiError> {
    access.allow(
        "read",
        &[Resource::one("batch", &id), Resource::every("runs")],
    )?;
    serve(&state, Scope::Batch(BatchId::from(id)), &query, None).await
}

/// Answers one shape request on `scope`, showing only runs created after `floor` (in Unix
/// milliseconds), if given.
async fn serve(
    state: &AppState,
    scope: Scope,
    query: &ShapeQuery,
    floor: Option<i64>,
) -> Result<Response, ApiError> {
    let engine = &state.engine;
    let epoch = engine.epoch();
    // The engine's history, and the window it is seen through.
    let handle = shape::handle(epoch, floor);
    let offset = query
        .offset
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("the query parameter `offset` is required"))?;
    let live = query.live.as_deref() == Some("true");
    let sse = query.sse();
    if sse && !live {
        return Err(ApiError::bad_request(
            "live_sse can't be true unless live is also true",
        ));
    }
    let start = offset == "-1";
    let from = if start {
        match &scope {
            // As a run's handle does: a client that subscribes to a run it just triggered
            // sees every state of it, however fast it ran, and never misses the first.
            Scope::Run(id) => match engine.before_creation(id).await {
                Ok(cursor) => cursor,
                Err(FeedError::UnknownRun(_)) => {
                    return Err(ApiError::new(StatusCode::NOT_FOUND, "Not found"));
                }
                Err(error) => return Err(error.into()),
            },
            Scope::Tags(_) | Scope::Batch(_) => Cursor::START,
        }
    } else {
        match &query.handle {
            Some(asked) if *asked == handle => {}
            Some(_) => return Ok(must_refetch(&handle)),
            None => {
                return Err(ApiError::bad_request(
                    "the query parameter `handle` is required with an offset other than -1",
                ));
            }
        }
        match shape::position(offset) {
            Some(0) => Cursor::START,
            Some(position) => Cursor::new(epoch, position),
            None => {
                return Err(ApiError::bad_request(format!(
                    "invalid offset `{}`: expected -1 or an `electric-offset` this server sent",
                    offset.chars().take(64).collect::<String>()
                )));
            }
        }
    };
    let skip: Vec<String> = query
        .skip_columns
        .as_deref()
        .map(|columns| columns.split(',').map(|c| c.trim().to_owned()).collect())
        .unwrap_or_default();
    // Counted until the answer is written (or, in SSE mode, until its stream ends).
    let mut waiting = if live {
        Some(Waiting::enter(state)?)
    } else {
        None
    };
    let subscription = match engine.subscribe(scope, from).await {
        Ok(subscription) => subscription,
        Err(FeedError::UnknownCursor(_)) => return Ok(must_refetch(&handle)),
        Err(error) => return Err(error.into()),
    };
    let mut feed = Feed {
        state: Arc::clone(state),
        subscription,
        floor,
        position: from.position(),
        operation: if start { "insert" } else { "update" },
        skip,
        next: None,
    };
    let mut response_headers = HeaderMap::new();
    let mut set = |name, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            response_headers.insert(name, value);
        }
    };
    set(headers::HANDLE, handle);
    if sse && let Some(waiting) = waiting.take() {
        set(headers::OFFSET, shape::offset(feed.position));
        set(headers::CURSOR, feed.position.to_string());
        response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok((response_headers, feed.events(waiting)).into_response());
    }
    let mut changes = Vec::new();
    let mut ended = false;
    if live {
        // Until the hold ends, or the engine stops: a server that is shutting down answers
        // its waiting requests at once, so their clients ask again (another server).
        let hold = tokio::time::sleep(state.config.live_hold);
        let stopping = engine.stopping();
        tokio::pin!(hold, stopping);
        while changes.is_empty() && !ended {
            tokio::select! {
                next = feed.subscription.next() => match next {
                    Some(Ok(change)) => feed.take(change, &mut changes),
                    Some(Err(error)) => return Err(error.into()),
                    None => {
                        // The feed ended (a finished run's): nothing more will come, but a
                        // client asks again at once, so it waits out the hold.
                        tokio::select! {
                            () = &mut hold => {}
                            () = &mut stopping => {}
                        }
                        ended = true;
                    }
                },
                () = &mut hold => break,
                () = &mut stopping => break,
            }
        }
    }
    let ready = if ended {
        // Nothing more will come: the client is up to date.
        Ready {
            complete: true,
            failed: None,
        }
    } else {
        feed.ready(&mut changes)
    };
    if let Some(error) = ready.failed.filter(|_| changes.is_empty()) {
        return Err(error.into());
    }
    // Written by hand around each message, which the many requests waiting on one change
    // share (see `Messages`).
    let mut body = String::from("[");
    for change in &changes {
        if body.len() > 1 {
            body.push(',');
        }
        body.push_str(&feed.message(change));
    }
    if ready.complete {
        if body.len() > 1 {
            body.push(',');
        }
        body.push_str(r#"{"headers":{"control":"up-to-date"}}"#);
    }
    body.push(']');
    set(headers::OFFSET, shape::offset(feed.position));
    if live {
        set(headers::CURSOR, feed.position.to_string());
    }
    let fixed = [
        (header::CACHE_CONTROL, Some("no-store")),
        (header::CONTENT_TYPE, Some("application/json")),
        (headers::UP_TO_DATE, ready.complete.then_some("")),
        // Read by the client once, from a response that is not live (1.0.14 requires it only
        // there; Trigger.dev's own server sends it only there): live answers, the many, are
        // lighter without it.
        (headers::SCHEMA, (!live).then_some(row::SCHEMA)),
    ];
    for (name, value) in fixed {
        if let Some(value) = value {
            response_headers.insert(name, HeaderValue::from_static(value));
        }
    }
    Ok((response_headers, body).into_response())
}

/// A feed being answered: its subscription and where it stands.
struct Feed {
    state: AppState,
    subscription: Subscription,
    /// Only runs created after it (Unix ms) are shown, if given.
    floor: Option<i64>,
    /// The position of the last change read: sent, or passed over as outside the window.
    position: u64,
    /// `insert` from the start, `update` after it.
    operation: &'static str,
    /// Columns left out of the rows.
    skip: Vec<String>,
    /// A change read but not sent yet: the first of the next batch.
    next: Option<Update<AnyRun>>,
}

/// What [`Feed::ready`] found.
struct Ready {
    /// Everything ready was read: the answer ends with `up-to-date`.
    complete: bool,
    /// The feed failed after the changes read (the error comes again to the next request,
    /// which starts from the last change sent).
    failed: Option<FeedError>,
}

impl Feed {
    /// Whether `run` is in the feed's window.
    fn shown(&self, run: &AnyRun) -> bool {
        self.floor
            .is_none_or(|floor| run.created_at.unix_millis() > floor)
    }

    /// Counts `change` read, and adds it to `changes` if it is shown.
    fn take(&mut self, change: Update<AnyRun>, changes: &mut Vec<Update<AnyRun>>) {
        self.position = change.cursor.position();
        if self.shown(&change.run) {
            changes.push(change);
        }
    }

    /// Adds to `changes` every change ready now, up to a response's worth, and at most one
    /// change of each run: the SDK shows only the last row of each run in a response (or in
    /// an SSE batch), so a second change of a run is left for the next ([`Feed::next`]).
    fn ready(&mut self, changes: &mut Vec<Update<AnyRun>>) -> Ready {
        let mut runs: HashSet<RunId> = changes.iter().map(|c| c.run.id.clone()).collect();
        let mut read = changes.len();
        let mut failed = None;
        while read < MAX_CHANGES {
            let change = match self.subscription.next().now_or_never() {
                Some(Some(Ok(change))) => change,
                Some(Some(Err(error))) => {
                    failed = Some(error);
                    break;
                }
                Some(None) | None => break,
            };
            if self.shown(&change.run) && !runs.insert(change.run.id.clone()) {
                self.next = Some(change);
                break;
            }
            read += 1;
            self.take(change, changes);
        }
        Ready {
            complete: read < MAX_CHANGES,
            failed,
        }
    }

    /// The feed as server-sent events, Electric's live SSE mode: each batch of changes as
    /// `data:` events of their messages, then an `up-to-date` whose `global_last_seen_lsn` is
    /// the batch's position (Electric's client takes `<lsn>_0` as its next offset), as they
    /// come, until the configured duration ends, the engine stops, or the feed fails (the
    /// client asks again from its offset, and gets the error). A connection held open counts
    /// as a live request waiting ([`ServerConfig::max_live_requests`]).
    ///
    /// [`ServerConfig::max_live_requests`]: super::ServerConfig::max_live_requests
    fn events(self, waiting: Waiting) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
        let ends = tokio::time::Instant::now() + self.state.config.sse_duration;
        let stopping = Box::pin(self.state.engine.stopping());
        let state = (self, waiting, VecDeque::new(), Some(stopping));
        let events = futures_util::stream::unfold(state, move |state| async move {
            let (mut feed, waiting, mut pending, mut stopping) = state;
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((Ok(event), (feed, waiting, pending, stopping)));
                }
                let stop = stopping.as_mut()?;
                let first = match feed.next.take() {
                    Some(change) => Some(Ok(change)),
                    None => tokio::select! {
                        next = feed.subscription.next() => next,
                        () = tokio::time::sleep_until(ends) => return None,
                        () = stop.as_mut() => return None,
                    },
                };
                let mut changes = Vec::new();
                match first {
                    Some(Ok(change)) => feed.take(change, &mut changes),
                    // The client's next request, from its offset, gets the error.
                    Some(Err(_)) => return None,
                    None => {
                        // The feed ended (a finished run's): nothing more will come, but a
                        // client asks again at once, so the connection stays open.
                        tokio::select! {
                            () = tokio::time::sleep_until(ends) => {}
                            () = stop.as_mut() => {}
                        }
                        return None;
                    }
                }
                let ready = feed.ready(&mut changes);
                for change in &changes {
                    pending.push_back(Event::default().data(&*feed.message(change)));
                }
                let up_to_date = format!(
                    r#"{{"headers":{{"control":"up-to-date","global_last_seen_lsn":"{}"}}}}"#,
                    feed.position
                );
                pending.push_back(Event::default().data(up_to_date));
                if ready.failed.is_some() {
                    // Sent what was read before it; the stream ends after.
                    stopping = None;
                }
            }
        });
        Sse::new(events).keep_alive(KeepAlive::default())
    }

    /// The message of `change` in this feed.
    fn message(&self, change: &Update<AnyRun>) -> Arc<str> {
        if self.skip.is_empty() {
            self.state.messages.get(change, self.operation)
        } else {
            message(change, self.operation, &self.skip).into()
        }
    }
}

/// The message of one change: its row, keyed by its run, and its position in the history as
/// its `lsn` (so a client knows the cursor of each change; `electric-offset` names the last).
fn message(change: &Update<AnyRun>, operation: &str, skip: &[String]) -> String {
    json!({
        "key": row::key(&change.run.id),
        "value": row::value(&change.run, skip),
        "headers": { "operation": operation, "lsn": change.cursor.position().to_string() },
    })
    .to_string()
}

/// The messages of the latest changes, written once for every request that sends them: a
/// change that answers a thousand live requests is written as JSON once, not a thousand
/// times.
#[derive(Default)]
pub(super) struct Messages(Mutex<HashMap<(u64, bool), Arc<str>>>);

/// How many messages are kept; past it, the kept ones are dropped.
const KEPT_MESSAGES: usize = 4_096;

impl Messages {
    fn get(&self, change: &Update<AnyRun>, operation: &'static str) -> Arc<str> {
        // A position names one change in the engine's history.
        let key = (change.cursor.position(), operation == "insert");
        if let Some(message) = lock(&self.0).get(&key) {
            return Arc::clone(message);
        }
        let message: Arc<str> = message(change, operation, &[]).into();
        let mut kept = lock(&self.0);
        if kept.len() >= KEPT_MESSAGES {
            kept.clear();
        }
        kept.insert(key, Arc::clone(&message));
        message
    }
}

/// A live request counted among those waiting, until dropped.
struct Waiting(AppState);

impl Waiting {
    /// Counts one more, or refuses it (`429`) past the limit.
    fn enter(state: &AppState) -> Result<Self, ApiError> {
        let live = &state.live;
        if live.fetch_add(1, Ordering::SeqCst) >= state.config.max_live {
            live.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many concurrent requests",
            ));
        }
        Ok(Waiting(Arc::clone(state)))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `409`: the client's offset belongs to another history; it starts over with `handle`.
fn must_refetch(handle: &str) -> Response {
    let mut response_headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(handle) {
        response_headers.insert(headers::HANDLE, value);
    }
    let body = Json(json!([{ "headers": { "control": "must-refetch" } }]));
    (StatusCode::CONFLICT, response_headers, body).into_response()
}
