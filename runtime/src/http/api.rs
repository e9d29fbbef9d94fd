//! The REST routes: trigger a run, read it, cancel it; the claims of public tokens, and tokens
//! minted by the server.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::auth::Access;
use super::error::{ApiError, json_body};
use super::{AppState, headers};
use crate::model::{AnyRun, BatchId, JsonObject, Timestamp, Update};
use crate::wire::packet;
use crate::wire::row::task_run_error;
use crate::wire::scope::Resource;
use crate::wire::status::api_name;
use crate::{BatchItem, CancelError, RunFeed, RunId, TriggerOptions};

/// How long the token a trigger answers with lasts, as Trigger.dev's.
const RUN_TOKEN_SECONDS: u64 = 60 * 60;

/// The body of a trigger, as the SDK sends it (and, with an index and a task, an item of a
/// batch). Options runcast has no use for (`queue`, `machine`, `priority`, `region`,
/// `concurrencyKey`, `lockToVersion`, ...) are accepted and ignored, as a server without
/// those features would.
#[derive(Deserialize)]
struct TriggerBody {
    /// A packet (a string, read by `payloadType`), or the payload itself as JSON.
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    options: TriggerBodyOptions,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerBodyOptions {
    pub(super) payload_type: Option<String>,
    tags: Option<OneOrMany>,
    metadata: Option<JsonObject>,
    metadata_type: Option<String>,
    idempotency_key: Option<String>,
    /// `"1h30m"`, or the time to start at (ISO 8601).
    delay: Option<String>,
    /// `"10m"`, or seconds.
    ttl: Option<Ttl>,
    max_attempts: Option<u32>,
    /// Seconds.
    max_duration: Option<u64>,
    test: Option<bool>,
}

/// A string or a list of them, as Trigger.dev takes tags.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Ttl {
    Seconds(u64),
    Text(String),
}

/// `POST /api/v1/tasks/{task}/trigger`.
pub(super) async fn trigger(
    State(state): State<AppState>,
    access: Access,
    Path(task): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    access.allow("trigger", &[Resource::one("tasks", &task)])?;
    let body: TriggerBody = json_body(&body)?;
    let options = body.options;
    let payload = trigger_payload(&state, body.payload, options.payload_type.as_deref()).await?;
    let trigger = trigger_options(options)?;
    let what = task.clone();
    let item = BatchItem::from_json(task, payload, trigger);
    let triggered = async { Ok(state.engine.trigger_one::<crate::Untyped>(item).await?) };
    let (run, cached) = access.trigger_once(&state.spent, &what, triggered).await?;
    let id = run.id().clone();
    let headers = token_headers(&state, format!("read:runs:{id}"));
    let body = Json(json!({ "id": id, "isCached": cached }));
    Ok((headers, body).into_response())
}

/// The headers that hand a public access token with `scope` to whoever triggered: the token
/// (`x-trigger-jwt`) and its claims, as Trigger.dev sends them.
pub(super) fn token_headers(state: &AppState, scope: String) -> HeaderMap {
    let config = &state.config;
    let token = config
        .keys
        .mint(&config.environment, vec![scope], RUN_TOKEN_SECONDS);
    let claims = json!({ "sub": config.environment, "pub": true }).to_string();
    let mut headers = HeaderMap::new();
    for (name, value) in [(headers::JWT, token), (headers::JWT_CLAIMS, claims)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    headers
}

/// The options of a trigger, from what the SDK sends.
pub(super) fn trigger_options(options: TriggerBodyOptions) -> Result<TriggerOptions, ApiError> {
    if let Some(kind) = options.metadata_type.filter(|kind| kind != packet::JSON) {
        return Err(ApiError::unprocessable(format!(
            "metadata of type `{kind}` is not supported; send it as application/json"
        )));
    }
    let ttl = match options.ttl {
        None => None,
        Some(Ttl::Seconds(s)) => Some(Duration::from_secs(s)),
        Some(Ttl::Text(text)) => Some(duration(&text).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "invalid ttl `{text}`: expected seconds or a duration such as `10m` or `1h30m`"
            ))
        })?),
    };
    Ok(TriggerOptions {
        tags: options.tags.map(OneOrMany::into_vec).unwrap_or_default(),
        max_attempts: options.max_attempts,
        metadata: options.metadata,
        is_test: options.test.unwrap_or(false),
        idempotency_key: options.idempotency_key,
        delay: options.delay.as_deref().map(delay).transpose()?,
        ttl,
        max_duration: options.max_duration.map(Duration::from_secs),
    })
}

/// The payload of a trigger: a packet read by its type, or JSON as it is.
pub(super) async fn trigger_payload(
    state: &AppState,
    payload: Option<Box<RawValue>>,
    kind: Option<&str>,
) -> Result<Box<RawValue>, ApiError> {
    let unprocessable = |e: packet::PacketError| ApiError::unprocessable(e.to_string());
    let Some(payload) = payload else {
        return packet::payload(None, kind).map_err(unprocessable);
    };
    match serde_json::from_str::<String>(payload.get()) {
        Ok(path) if kind == Some(packet::STORE) => {
            let packet = state.held.packet(&path).await?.ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "no packet was uploaded at `{path}` (or it was dropped, an hour after its upload)"
                ))
            })?;
            packet::payload(Some(&packet.data), Some(&packet.kind)).map_err(unprocessable)
        }
        Ok(data) => packet::payload(Some(&data), kind).map_err(unprocessable),
        Err(_) if kind.is_none_or(|kind| kind == packet::JSON) => Ok(payload),
        Err(_) => Err(ApiError::unprocessable(format!(
            "a payload of type `{}` must be a string",
            kind.unwrap_or_default()
        ))),
    }
}

/// A trigger's delay: a duration (`1h30m`), or the time to start at.
fn delay(text: &str) -> Result<Duration, ApiError> {
    if let Some(delay) = duration(text) {
        return Ok(delay);
    }
    let at: Timestamp = text.parse().map_err(|_| {
        ApiError::unprocessable(format!(
            "invalid delay `{text}`: expected a duration such as `30s` or `1h30m`, or a time (ISO 8601)"
        ))
    })?;
    Ok(at.saturating_duration_since(Timestamp::now()))
}

/// A duration in Trigger.dev's grammar: one or more `<number><unit>`, units `w`, `d`, `hr`,
/// `h`, `m`, `s` (`1h30m`, `2d`, `45s`).
pub(super) fn duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest.as_bytes() {
            [b'h', b'r', ..] => (3_600, 2),
            [b'w', ..] => (604_800, 1),
            [b'd', ..] => (86_400, 1),
            [b'h', ..] => (3_600, 1),
            [b'm', ..] => (60, 1),
            [b's', ..] => (1, 1),
            _ => return None,
        };
        rest = &rest[len..];
        total = total.checked_add(Duration::from_secs(n.checked_mul(unit)?))?;
    }
    Some(total)
}

/// The resources a read of `run` may be granted by: the run, its task, any of its tags, its
/// batch.
fn run_resources<'a>(run: &'a AnyRun, batch: Option<&'a BatchId>) -> Vec<Resource<'a>> {
    let mut resources = vec![
        Resource::one("runs", run.id.as_str()),
        Resource::one("tasks", &run.task_identifier),
    ];
    resources.extend(run.tags.iter().map(|tag| Resource::one("tags", tag)));
    resources.extend(batch.map(|batch| Resource::one("batch", batch.as_str())));
    resources
}

/// The latest snapshot of run `id`, or 404.
pub(super) async fn find(state: &AppState, id: &RunId) -> Result<AnyRun, ApiError> {
    Ok(find_latest(state, id).await?.run)
}

/// The latest snapshot of run `id` with the cursor of its change, or 404.
pub(super) async fn find_latest(state: &AppState, id: &RunId) -> Result<Update<AnyRun>, ApiError> {
    match state.engine.latest(id).await {
        Ok(update) => Ok(update),
        Err(crate::FeedError::UnknownRun(_)) => Err(ApiError::run_not_found()),
        Err(error) => Err(error.into()),
    }
}

/// Checks that `access` may read `run`.
pub(super) fn allow_read(state: &AppState, access: &Access, run: &AnyRun) -> Result<(), ApiError> {
    if let Access::Secret = access {
        return Ok(());
    }
    let batch = state.engine.batch_of(&run.id);
    access.allow("read", &run_resources(run, batch.as_ref()))
}

/// `GET /api/v3/runs/{run}`: the run object of Trigger.dev's REST API.
///
/// runcast also sends the cursor of the change the run shows (`x-runcast-cursor`), which its
/// client resumes a feed from.
pub(super) async fn retrieve(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let latest = find_latest(&state, &RunId::from(id)).await?;
    let run = latest.run;
    allow_read(&state, &access, &run)?;
    let mut object = rest_run(&run);
    if let (Some(batch), Some(fields)) = (state.engine.batch_of(&run.id), object.as_object_mut()) {
        fields.insert("batchId".into(), json!(batch));
    }
    let cursor = [(headers::RUN_CURSOR, latest.cursor.to_string())];
    Ok((cursor, Json(object)).into_response())
}

/// A run as `GET /api/v3/runs/{run}` answers it (`RetrieveRunResponse`).
pub(super) fn rest_run(run: &AnyRun) -> Value {
    let time = |t: Option<Timestamp>| t.map(|t| jiff::Timestamp::from(t).to_string());
    let raw =
        |raw: Option<&RawValue>| raw.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
    let status = run.status;
    let mut object = json!({
        "id": run.id,
        "taskIdentifier": run.task_identifier,
        "status": api_name(status),
        "isQueued": status.is_queued(),
        "isExecuting": status.is_executing(),
        "isWaiting": status.is_waiting(),
        "isCompleted": status.is_final(),
        "isSuccess": status.is_success(),
        "isFailed": status.is_failed(),
        "isCancelled": status.is_canceled(),
        "isTest": run.is_test,
        "createdAt": time(Some(run.created_at)),
        "updatedAt": time(Some(run.updated_at)),
        "startedAt": time(run.started_at),
        "finishedAt": time(run.finished_at),
        "delayedUntil": time(run.delayed_until),
        "expiredAt": time(run.expired_at),
        "ttl": run.ttl,
        "tags": run.tags,
        "costInCents": run.cost_in_cents,
        "baseCostInCents": run.base_cost_in_cents,
        "durationMs": run.duration_ms,
        "depth": 0,
        "triggerFunction": "trigger",
        "relatedRuns": {},
        "idempotencyKey": run.idempotency_key,
        "payload": raw(run.payload.as_deref()),
        "output": raw(run.output.as_deref()),
        "metadata": raw(run.metadata.as_deref()),
        "error": run.error.as_ref().map(|e| {
            let mut error = task_run_error(e);
            if let Some(object) = error.as_object_mut() {
                object.remove("type");
            }
            error
        }),
    });
    // Optional fields are left out rather than null, as the API does.
    if let Some(object) = object.as_object_mut() {
        object.retain(|_, value| !value.is_null());
    }
    object
}

/// `POST /api/v2/runs/{run}/cancel`. A run that already finished stays as it is, and the
/// answer is the same, as Trigger.dev's.
pub(super) async fn cancel(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = find(&state, &RunId::from(id)).await?;
    access.allow(
        "write",
        &[
            Resource::one("runs", run.id.as_str()),
            Resource::one("tasks", &run.task_identifier),
        ],
    )?;
    match state.engine.cancel(&run.id).await {
        Ok(()) | Err(CancelError::AlreadyFinished { .. }) => Ok(Json(json!({ "id": run.id }))),
        Err(error) => Err(error.into()),
    }
}

/// `POST /api/v1/auth/jwt/claims`: the claims the SDK puts in the public access tokens it
/// signs with the secret key.
pub(super) async fn claims(
    State(state): State<AppState>,
    access: Access,
) -> Result<Json<Value>, ApiError> {
    access.secret()?;
    Ok(Json(
        json!({ "sub": state.config.environment, "pub": true }),
    ))
}

/// The longest a minted token may last, as Trigger.dev's.
const MAX_TOKEN_SECONDS: u64 = 30 * 24 * 60 * 60;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewToken {
    scopes: Vec<String>,
    /// A token that triggers once.
    #[serde(default)]
    one_time_use: bool,
    /// A duration (`15m`), or the time it ends at (Unix seconds).
    expiration_time: Option<Ttl>,
}

/// `POST /api/v1/auth/public-tokens`: a public access token with the scopes asked, minted by
/// the server (as the SDK asks it for keys that cannot sign themselves); 15 minutes by default.
pub(super) async fn public_token(
    State(state): State<AppState>,
    access: Access,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    access.secret()?;
    let body: NewToken = json_body(&body)?;
    if body.scopes.is_empty() || body.scopes.iter().any(|s| s.trim().is_empty()) {
        return Err(ApiError::unprocessable(
            "a token needs at least one scope, none blank",
        ));
    }
    let seconds = match body.expiration_time {
        None => 15 * 60,
        Some(Ttl::Text(text)) => duration(&text).map(|d| d.as_secs()).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "invalid expirationTime `{text}`: expected a duration such as `15m`, or Unix seconds"
            ))
        })?,
        Some(Ttl::Seconds(at)) => at.saturating_sub(Timestamp::now().unix_millis().cast_unsigned() / 1000),
    };
    if seconds == 0 || seconds > MAX_TOKEN_SECONDS {
        return Err(ApiError::unprocessable(
            "expirationTime must end in the future, within 30 days",
        ));
    }
    let config = &state.config;
    let token =
        (config.keys).mint_once(&config.environment, body.scopes, seconds, body.one_time_use);
    Ok(Json(json!({ "token": token })))
}

/// `GET /healthcheck`: `200 OK` while the engine runs and its store answers (within 5 s);
/// `503` otherwise, so that a load balancer sends requests elsewhere. What failed is logged,
/// not answered: the route takes no credentials.
pub(super) async fn healthcheck(State(state): State<AppState>) -> Response {
    let health = tokio::time::timeout(Duration::from_secs(5), state.engine.health()).await;
    let failure = match health {
        Ok(Ok(())) => return (StatusCode::OK, "OK").into_response(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "the store did not answer within 5 s".to_owned(),
    };
    tracing::warn!(%failure, "unhealthy");
    (StatusCode::SERVICE_UNAVAILABLE, "Unavailable").into_response()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn durations_add_their_parts_and_nothing_else_panics(
            parts in prop::collection::vec((0u64..1_000, prop::sample::select(vec![("w", 604_800), ("d", 86_400), ("hr", 3_600), ("h", 3_600), ("m", 60), ("s", 1)])), 1..5),
            text in ".{0,40}",
        ) {
            let written: String = parts.iter().map(|(n, (unit, _))| format!("{n}{unit}")).collect();
            let seconds: u64 = parts.iter().map(|(n, (_, unit))| n * unit).sum();
            prop_assert_eq!(duration(&written), Some(Duration::from_secs(seconds)));
            let _ = duration(&text);
        }

        #[test]
        fn any_trigger_body_is_read_or_refused_without_panicking(body in prop::collection::vec(any::<u8>(), 0..200), text in ".{0,200}") {
            for bytes in [body.as_slice(), text.as_bytes()] {
                if let Ok(body) = serde_json::from_slice::<TriggerBody>(bytes) {
                    let options = body.options;
                    let _ = trigger_options(options);
                }
            }
        }
    }

    #[test]
    fn durations_follow_trigger_dev_s_grammar() {
        let secs = |text| duration(text).map(|d| d.as_secs());
        assert_eq!(secs("30s"), Some(30));
        assert_eq!(secs("1h30m"), Some(5_400));
        assert_eq!(secs("2hr"), Some(7_200));
        assert_eq!(secs("1w2d"), Some(777_600));
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "1h 30m",
            "-1s",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert_eq!(duration(bad), None, "{bad:?}");
        }
    }
}
