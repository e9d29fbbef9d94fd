//! The routes that change a run from outside: its metadata and its tags, as a task's SDK
//! writes them (`trigger-wire.md` §3.5–3.6). They take the secret key.

use axum::Json;
use axum::body::Bytes;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{OneOrMany, allow_read, find, rest_run};
use super::auth::Access;
use super::error::{ApiError, json_body};
use crate::TagError;
use crate::model::{BatchId, JsonObject, MetadataError, MetadataOp, RunId};
use crate::wire::scope::Resource;
use crate::wire::status::from_api_name;
use crate::{RunFeed, RunQuery};

/// The body of `PUT /api/v1/runs/{run}/metadata`: a whole new object, operations, or both
/// (the object first). A run has no parent or root run in runcast, so the operations meant
/// for them change nothing.
#[derive(Deserialize)]
struct MetadataBody {
    #[serde(default)]
    metadata: Option<JsonObject>,
    #[serde(default)]
    operations: Vec<Operation>,
}

/// One operation, as Trigger.dev's SDK sends it. Keys starting with `$.` are paths (see
/// [`MetadataOp`]); `update` replaces the whole object, as `metadata.replace` means.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Operation {
    Set { key: String, value: Value },
    Delete { key: String },
    Append { key: String, value: Value },
    Remove { key: String, value: Value },
    Increment { key: String, value: f64 },
    Update { value: JsonObject },
}

impl From<Operation> for MetadataOp {
    fn from(op: Operation) -> Self {
        match op {
            Operation::Set { key, value } => MetadataOp::Set(key, value),
            Operation::Delete { key } => MetadataOp::Delete(key),
            Operation::Append { key, value } => MetadataOp::Append(key, value),
            Operation::Remove { key, value } => MetadataOp::Remove(key, value),
            Operation::Increment { key, value } => MetadataOp::Increment(key, value),
            Operation::Update { value } => MetadataOp::Replace(value),
        }
    }
}

/// `PUT /api/v1/runs/{run}/metadata`: answers the metadata written.
pub(super) async fn update_metadata(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    access.secret()?;
    let body: MetadataBody = json_body(&body)?;
    let ops = body.metadata.map(MetadataOp::Replace).into_iter();
    let ops = ops.chain(body.operations.into_iter().map(MetadataOp::from));
    let id = RunId::from(id);
    let written = state
        .engine
        .write_metadata(&id, ops.collect())
        .await
        .map_err(|error| match error {
            MetadataError::UnknownRun(_) => ApiError::run_not_found(),
            MetadataError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            MetadataError::Store(ref store) => ApiError::internal(store),
            _ => ApiError::unprocessable(error.to_string()),
        })?;
    let metadata: Value = serde_json::from_str(written.get()).unwrap_or_default();
    Ok(Json(json!({ "metadata": metadata })))
}

/// `GET /api/v1/runs/{run}/metadata`.
pub(super) async fn metadata(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = find(&state, &RunId::from(id)).await?;
    allow_read(&state, &access, &run)?;
    let metadata = run
        .metadata
        .as_deref()
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .unwrap_or_else(|| json!({}));
    Ok(Json(json!({ "metadata": metadata })))
}

#[derive(Deserialize)]
struct TagsBody {
    tags: OneOrMany,
}

/// `POST /api/v1/runs/{run}/tags`: adds tags to a run that has not finished.
pub(super) async fn add_tags(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    access.secret()?;
    let body: TagsBody = json_body(&body)?;
    let tags = body.tags.into_vec();
    let run = find(&state, &RunId::from(id)).await?;
    let mut new: Vec<&String> = tags.iter().filter(|t| !run.tags.contains(t)).collect();
    new.sort_unstable();
    new.dedup();
    let added = new.len();
    state
        .engine
        .add_tags(&run.id, &tags)
        .await
        .map_err(|error| match error {
            TagError::NotLive(_) => {
                ApiError::unprocessable("Cannot add tags to a run that has finished")
            }
            TagError::Store(ref store) => ApiError::internal(store),
            _ => ApiError::unprocessable(error.to_string()),
        })?;
    let message = match added {
        0 => "No new tags to add".to_owned(),
        n => format!("Successfully set {n} new tags."),
    };
    Ok(Json(json!({ "message": message })))
}

/// `GET /api/v1/runs`: a page of runs, newest first, as Trigger.dev lists them
/// (`filter[taskIdentifier]`, `filter[status]` (comma-separated), `filter[tag]` (every one
/// of them), `filter[batch]`, `page[size]` (25 by default, 1 to 100), `page[after]` (the
/// `pagination.next` of the page before)). Takes the secret key, or a token that reads every
/// run.
pub(super) async fn list(
    State(state): State<AppState>,
    access: Access,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    access.allow("read", &[Resource::every("runs")])?;
    let mut runs = RunQuery::new();
    if let Some(size) = query.get("page[size]") {
        let size: usize = size.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid page[size] `{size}`: expected 1 to 100"))
        })?;
        runs = runs.limit(size);
    }
    if let Some(task) = query.get("filter[taskIdentifier]") {
        runs.task = Some(task.clone());
    }
    for name in query
        .get("filter[status]")
        .into_iter()
        .flat_map(|s| s.split(','))
    {
        let status = from_api_name(name).ok_or_else(|| {
            ApiError::bad_request(format!("invalid filter[status] `{name}`: not a run status"))
        })?;
        runs = runs.status(status);
    }
    for tag in query
        .get("filter[tag]")
        .into_iter()
        .flat_map(|s| s.split(','))
    {
        runs = runs.tag(tag);
    }
    if let Some(batch) = query.get("filter[batch]") {
        runs = runs.batch(BatchId::from(batch.as_str()));
    }
    if let Some(after) = query.get("page[after]") {
        let cursor = after.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid page[after] `{after}`: expected the pagination.next of a page"
            ))
        })?;
        runs = runs.before(cursor);
    }
    let page = state.engine.list_runs(&runs).await?;
    let environment = json!({ "id": state.config.environment, "name": state.config.environment });
    let data: Vec<Value> = page
        .runs
        .iter()
        .map(|run| {
            let mut item = rest_run(run);
            if let Some(object) = item.as_object_mut() {
                object.insert("env".into(), environment.clone());
            }
            item
        })
        .collect();
    let mut pagination = json!({});
    if let (Some(next), Some(object)) = (page.next, pagination.as_object_mut()) {
        object.insert("next".into(), json!(next.to_string()));
    }
    Ok(Json(json!({ "data": data, "pagination": pagination })))
}
