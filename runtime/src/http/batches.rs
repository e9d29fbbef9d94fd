//! Batch triggers in two phases, as the current SDK sends them (`trigger-sdk-v4-wire.md` §2):
//! `POST /api/v3/batches` names a batch and its size, then `POST /api/v3/batches/{id}/items`
//! sends its items as NDJSON, one `{index, task, payload, options}` per line, in one request
//! or several.
//!
//! Each item is checked when it arrives (its task, payload and options), and an item whose
//! index arrived before is counted as a duplicate and dropped, so the SDK may send the whole
//! stream again. Once every index arrived, the batch is sealed: its runs are triggered
//! together, all or none, under the batch's id, and its feed shows them. A batch that is
//! still open lives in the server's memory: send its items to the process that named it
//! (they are dropped an hour after it was named, or when the process stops).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::AppState;
use super::api::{TriggerBodyOptions, token_headers, trigger_options, trigger_payload};
use super::auth::Access;
use super::error::{ApiError, json_body};
use crate::model::BatchId;
use crate::support::lock;
use crate::wire::scope::Resource;
use crate::{BatchItem, MAX_BATCH, TriggerOptions};

/// How long a batch may stay open.
const OPEN_FOR: Duration = Duration::from_secs(60 * 60);

/// The batches this server named, until sealed (and a while after).
#[derive(Default)]
pub(super) struct Batches(Mutex<HashMap<BatchId, Batch>>);

struct Batch {
    run_count: usize,
    named: Instant,
    state: Phase,
}

enum Phase {
    /// Items arrive.
    Open(BTreeMap<usize, Item>),
    /// Its runs are being triggered.
    Sealing,
    /// Its runs were triggered.
    Sealed,
}

/// An item checked on arrival.
struct Item {
    task: String,
    payload: Box<RawValue>,
    options: TriggerOptions,
}

impl Item {
    fn batch_item(&self) -> BatchItem {
        BatchItem::from_json(
            self.task.clone(),
            self.payload.clone(),
            self.options.clone(),
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewBatch {
    run_count: usize,
    #[serde(default)]
    task_identifiers: Vec<String>,
}

/// `POST /api/v3/batches`.
pub(super) async fn create(
    State(state): State<AppState>,
    access: Access,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: NewBatch = json_body(&body)?;
    for task in &body.task_identifiers {
        access.allow("batchTrigger", &[Resource::one("tasks", task)])?;
    }
    if body.run_count == 0 || body.run_count > MAX_BATCH {
        return Err(ApiError::unprocessable(format!(
            "a batch holds 1 to {MAX_BATCH} runs; {} asked",
            body.run_count
        )));
    }
    // A one-time token names one batch (its items may then come in several requests).
    let named = async {
        let id: BatchId = crate::model::ids::new_id("batch_");
        let mut batches = lock(&state.batches.0);
        batches.retain(|_, batch| batch.named.elapsed() < OPEN_FOR);
        let batch = Batch {
            run_count: body.run_count,
            named: Instant::now(),
            state: Phase::Open(BTreeMap::new()),
        };
        batches.insert(id.clone(), batch);
        Ok(id)
    };
    let id = access.trigger_once(&state.spent, "a batch", named).await?;
    let headers = token_headers(&state, format!("read:batch:{id}"));
    let body = json!({ "id": id, "runCount": body.run_count, "isCached": false });
    Ok((StatusCode::ACCEPTED, headers, Json(body)).into_response())
}

#[derive(Deserialize)]
struct Line {
    index: usize,
    task: String,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    options: TriggerBodyOptions,
}

/// `POST /api/v3/batches/{batch}/items`.
pub(super) async fn items(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = BatchId::from(id);
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the items are not UTF-8 text"))?;
    let run_count = match lock(&state.batches.0).get(&id) {
        Some(batch) => batch.run_count,
        None => return Err(ApiError::new(StatusCode::NOT_FOUND, "Batch not found")),
    };
    // Checked before any is kept: a request with a bad item keeps none of its items.
    let mut arrived = Vec::new();
    for (number, line) in (1..).zip(text.lines()) {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line)
            .map_err(|e| ApiError::bad_request(format!("Invalid item on line {number}: {e}")))?;
        access.allow("batchTrigger", &[Resource::one("tasks", &line.task)])?;
        let index = line.index;
        if index >= run_count {
            return Err(ApiError::unprocessable(format!(
                "item {index} is past the batch's {run_count} runs"
            )));
        }
        let refused = |e: ApiError| e.prefixed(&format!("item {index}: "));
        let payload = trigger_payload(&state, line.payload, line.options.payload_type.as_deref())
            .map_err(refused)?;
        let options = trigger_options(line.options).map_err(refused)?;
        let item = Item {
            task: line.task,
            payload,
            options,
        };
        state
            .engine
            .check_item(item.batch_item())
            .await
            .map_err(|e| refused(e.into()))?;
        arrived.push((index, item));
    }
    let (accepted, duplicates, ready) = {
        let mut batches = lock(&state.batches.0);
        let batch = batches
            .get_mut(&id)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Batch not found"))?;
        let Phase::Open(items) = &mut batch.state else {
            let duplicates = arrived.len();
            return Ok(answer(&id, run_count, 0, duplicates, true));
        };
        let (mut accepted, mut duplicates) = (0, 0);
        for (index, item) in arrived {
            match items.entry(index) {
                Entry::Occupied(_) => duplicates += 1,
                Entry::Vacant(slot) => {
                    slot.insert(item);
                    accepted += 1;
                }
            }
        }
        let ready =
            (items.len() == run_count).then(|| std::mem::replace(&mut batch.state, Phase::Sealing));
        (accepted, duplicates, ready)
    };
    let Some(Phase::Open(items)) = ready else {
        return Ok(answer(&id, run_count, accepted, duplicates, false));
    };
    let batch_items = items.values().map(Item::batch_item).collect();
    let sealed = state.engine.batch_trigger_as(id.clone(), batch_items).await;
    let mut batches = lock(&state.batches.0);
    let phase = match &sealed {
        Ok(_) => Phase::Sealed,
        // Open again, with its items: the SDK may send them again once the store is back.
        Err(_) => Phase::Open(items),
    };
    if let Some(batch) = batches.get_mut(&id) {
        batch.state = phase;
    }
    drop(batches);
    sealed?;
    Ok(answer(&id, run_count, accepted, duplicates, true))
}

fn answer(
    id: &BatchId,
    run_count: usize,
    accepted: usize,
    duplicates: usize,
    sealed: bool,
) -> Response {
    let mut body = json!({
        "id": id,
        "itemsAccepted": accepted,
        "itemsDeduplicated": duplicates,
        "sealed": sealed,
    });
    if sealed && let Some(object) = body.as_object_mut() {
        object.insert("enqueuedCount".into(), run_count.into());
        object.insert("expectedCount".into(), run_count.into());
    }
    Json(body).into_response()
}
