//! Realtime streams over server-sent events: `GET /realtime/v1/streams/{run}/{key}`, as the
//! SDK's `withStreams()` and `streams.read()` read them (`trigger-sdk-v4-wire.md` §7).
//!
//! The server speaks the v2 framing (`X-Stream-Version: v2`): each chunk is an `event: batch`
//! whose record carries the chunk as `{"data": <chunk>, "id": "<cursor>"}`, and whose
//! `seq_num` is the chunk's position in the engine's history. A reader that reconnects with
//! `Last-Event-ID: <seq_num>` continues after that chunk, with no gap and no duplicate. The
//! response ends once the run has finished and every chunk of the stream was sent: the SDK
//! takes that end as the stream's.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, future};
use serde_json::json;

use super::AppState;
use super::api::{allow_read, find_latest};
use super::auth::Access;
use super::error::ApiError;
use crate::model::{AnyChunk, Cursor, Realtime, RunId};
use crate::{RunFeed, RunStreamExt, Scope};

const STREAM_VERSION: HeaderName = HeaderName::from_static("x-stream-version");
const STREAM_START: &str = "x-trigger-stream-start";

/// `GET /realtime/v1/streams/{run}/{key}`.
pub(super) async fn read(
    State(state): State<AppState>,
    access: Access,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let latest = find_latest(&state, &RunId::from(id)).await?;
    allow_read(&state, &access, &latest.run)?;
    let engine = &state.engine;
    let last_event = headers.get("last-event-id").map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("invalid Last-Event-ID: expected the seq_num of a record")
            })
    });
    let from_latest = headers
        .get(STREAM_START)
        .is_some_and(|value| value.as_bytes() == b"latest");
    let from = match last_event.transpose()? {
        Some(position) => Cursor::new(latest.cursor.epoch(), position),
        None if from_latest => latest.cursor,
        None => Cursor::START,
    };
    // A finished run writes no more chunks: from past its latest change, read that change
    // only, which ends the response.
    let from = if latest.run.status.is_final() && from > latest.cursor.before() {
        latest.cursor.before()
    } else {
        from
    };
    let items = engine
        .subscribe(Scope::Run(latest.run.id), from)
        .await?
        .with_streams()
        .until_finished();
    let events = items
        .scan(false, move |failed, item| {
            let event = match item {
                _ if *failed => None,
                Ok(Realtime::Chunk(chunk)) if *chunk.stream == *key => Some(Some(batch(&chunk))),
                Ok(_) => Some(None),
                Err(error) => {
                    // The SDK throws "Stream read failed" on it: the response ends.
                    *failed = true;
                    Some(Some(
                        Event::default().event("error").data(error.to_string()),
                    ))
                }
            };
            future::ready(event)
        })
        .filter_map(|event| future::ready(event.map(Ok::<_, Infallible>)));
    let sse = Sse::new(events).keep_alive(KeepAlive::default());
    Ok(([(STREAM_VERSION, "v2")], sse).into_response())
}

/// A chunk as a v2 `batch` event of one record.
fn batch(chunk: &AnyChunk) -> Event {
    let position = chunk.cursor.position();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let body = json!({ "data": chunk.data, "id": chunk.cursor.to_string() }).to_string();
    let records = json!({
        "records": [{ "seq_num": position, "timestamp": timestamp, "headers": [], "body": body }],
    });
    Event::default()
        .event("batch")
        .id(position.to_string())
        .data(records.to_string())
}
