//! Batch triggers in two phases, as the current SDK sends them (`trigger-sdk-v4-wire.md` §2):
//! `POST /api/v3/batches` names a batch and its size, then `POST /api/v3/batches/{id}/items`
//! sends its items as NDJSON, one `{index, task, payload, options}` per line, in one request
//! or several.
//!
//! Each item is checked when it arrives (its task, payload and options), and an item whose
//! index arrived before is counted as a duplicate and dropped, so the SDK may send the whole
//! stream again. Once every index arrived, the batch is sealed: its runs are triggered
//! together, all or none, under the batch's id, and its feed shows them. A batch still open is
//! held (see `held`) in the server's memory, or in the database where every server over it
//! sees it; it is dropped an hour after it was named.

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
use super::held::Filled;
use crate::model::BatchId;
use crate::wire::scope::Resource;
use crate::{BatchItem, MAX_BATCH};

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
        state.held.open_batch(&id, body.run_count).await?;
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

impl Line {
    /// The item the line stands for, checked as a trigger would be (its task, payload and
    /// options); stores nothing.
    async fn item(self, state: &AppState) -> Result<BatchItem, ApiError> {
        let refused = |e: ApiError| e.prefixed(&format!("item {}: ", self.index));
        let kind = self.options.payload_type.as_deref();
        let payload = trigger_payload(state, self.payload, kind)
            .await
            .map_err(refused)?;
        let options = trigger_options(self.options).map_err(refused)?;
        let item = BatchItem::from_json(self.task, payload, options);
        Ok(item)
    }
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
    let Some(run_count) = state.held.batch_size(&id).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Batch not found"));
    };
    // Checked before any is kept: a request with a bad item keeps none of its items.
    let mut arrived = Vec::new();
    for (number, text) in (1..).zip(text.lines()) {
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("Invalid item on line {number}: {e}")))?;
        access.allow("batchTrigger", &[Resource::one("tasks", &line.task)])?;
        let index = line.index;
        if index >= run_count {
            return Err(ApiError::unprocessable(format!(
                "item {index} is past the batch's {run_count} runs"
            )));
        }
        let item = line.item(&state).await?;
        state
            .engine
            .check_item(item)
            .await
            .map_err(|e| ApiError::from(e).prefixed(&format!("item {index}: ")))?;
        arrived.push((index, text.to_owned()));
    }
    let count = arrived.len();
    let (accepted, duplicates, lines) = match state.held.add_items(&id, arrived).await? {
        Filled::Unknown => return Err(ApiError::new(StatusCode::NOT_FOUND, "Batch not found")),
        Filled::Closed => return Ok(Json(answer(&id, run_count, 0, count, true)).into_response()),
        Filled::Open {
            accepted,
            duplicates,
            seal: None,
        } => {
            let answer = answer(&id, run_count, accepted, duplicates, false);
            return Ok(Json(answer).into_response());
        }
        Filled::Open {
            accepted,
            duplicates,
            seal: Some(lines),
        } => (accepted, duplicates, lines),
    };
    // Every item arrived: the batch's runs, all or none. Read again as they were checked.
    let triggered = async {
        let mut items = Vec::with_capacity(lines.len());
        for line in &lines {
            let line: Line = serde_json::from_str(line)
                .map_err(|e| ApiError::bad_request(format!("Invalid item: {e}")))?;
            items.push(line.item(&state).await?);
        }
        let batch = state.engine.batch_trigger_as(id.clone(), items).await?;
        Ok::<_, ApiError>(
            batch
                .runs
                .iter()
                .map(|run| run.id().clone())
                .collect::<Vec<_>>(),
        )
    };
    let triggered = triggered.await;
    // Open again if not, with its items: the SDK may send them again once the store is back.
    if let Err(error) = state.held.sealed(&id, triggered.is_ok()).await {
        tracing::error!(batch = %id, %error, "could not record how a batch's sealing went");
    }
    let runs = triggered?;
    let mut response = answer(&id, run_count, accepted, duplicates, true);
    // The runs' ids, in the order of the items: runcast's clients read them (Trigger.dev's
    // answer has none; the SDK ignores what it does not know).
    if let Some(object) = response.as_object_mut() {
        object.insert("runs".into(), json!(runs));
    }
    Ok(Json(response).into_response())
}

fn answer(
    id: &BatchId,
    run_count: usize,
    accepted: usize,
    duplicates: usize,
    sealed: bool,
) -> serde_json::Value {
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
    body
}
