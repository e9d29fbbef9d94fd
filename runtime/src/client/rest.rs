//! Trigger.dev's REST routes, typed: triggers, batches, a run, cancel, metadata, tags; and
//! [`RunFeed`] over the realtime routes.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::feed::{Shape, encode};
use super::{Backoff, Client, ClientError, RemoteRealtimeSubscription, RemoteSubscription};
use super::{error_message, retry_after, retryable};
use crate::model::metadata;
use crate::model::{
    AnyRun, BatchId, Cursor, JsonObject, MetadataOp, RunId, SerializedError, Timestamp, Update,
};
use crate::typed::Task;
use crate::wire::packet;
use crate::wire::status::from_api_name;
use crate::{
    BatchHandle, FeedError, MAX_PAGE_SIZE, RunFeed, RunHandle, RunPage, RunQuery, Scope,
    TriggerOptions,
};

/// How many times a request that may succeed later is made, at most.
const ATTEMPTS: u32 = 5;

impl Client {
    /// Triggers a run of `T` (`POST /api/v1/tasks/{id}/trigger`). Subscribing with the handle
    /// shows every state of the run the server keeps (on runcast's, from its creation).
    pub async fn trigger<T: Task>(&self, payload: T::Payload) -> Result<RunHandle<T>, ClientError> {
        self.trigger_with::<T>(payload, TriggerOptions::default())
            .await
    }

    /// Triggers a run of `T` with options. A delay, TTL or maximum duration is sent in whole
    /// seconds, rounded up.
    pub async fn trigger_with<T: Task>(
        &self,
        payload: T::Payload,
        options: TriggerOptions,
    ) -> Result<RunHandle<T>, ClientError> {
        let body = json!({ "payload": packet_of(&payload)?, "options": options_of(&options) });
        let path = format!("/api/v1/tasks/{}/trigger", encode(T::ID));
        #[derive(Deserialize)]
        struct Triggered {
            id: String,
        }
        // Made again only with an idempotency key: otherwise a trigger that reached the
        // server before its answer was lost would start a second run.
        let again = options.idempotency_key.is_some();
        let triggered: Triggered = self.call(Method::POST, &path, Some(body), again).await?;
        Ok(RunHandle::new(RunId::from(triggered.id), Cursor::START))
    }

    /// Triggers one run of `T` per item, as one batch (`POST /api/v3/batches`, then its items
    /// as NDJSON), all or none. The handle lists the runs when the server names them
    /// (runcast's does; Trigger.dev's answers only the batch: subscribe to it to see them).
    pub async fn batch_trigger<T: Task>(
        &self,
        items: impl IntoIterator<Item = (T::Payload, TriggerOptions)>,
    ) -> Result<BatchHandle<T>, ClientError> {
        let mut lines = String::new();
        let mut count = 0;
        for (index, (payload, options)) in items.into_iter().enumerate() {
            let line = json!({
                "index": index,
                "task": T::ID,
                "payload": packet_of(&payload)?,
                "options": options_of(&options),
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
            count += 1;
        }
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let body = json!({ "runCount": count, "taskIdentifiers": [T::ID] });
        let created: Created = self
            .call(Method::POST, "/api/v3/batches", Some(body), false)
            .await?;
        #[derive(Deserialize)]
        struct Sealed {
            #[serde(default)]
            sealed: bool,
            #[serde(default)]
            runs: Vec<String>,
        }
        let path = format!("/api/v3/batches/{}/items", encode(&created.id));
        let request = self
            .request(Method::POST, &path)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(lines);
        let sealed: Sealed = self.send(request, &path, false).await?;
        if !sealed.sealed {
            return Err(ClientError::Response {
                url: path,
                reason: "the server took the items but did not seal the batch".to_owned(),
            });
        }
        Ok(BatchHandle {
            id: BatchId::from(created.id),
            cursor: Cursor::START,
            runs: sealed
                .runs
                .into_iter()
                .map(|id| RunHandle::new(RunId::from(id), Cursor::START))
                .collect(),
        })
    }

    /// Cancels a run (`POST /api/v2/runs/{id}/cancel`); a run that already finished stays as
    /// it is.
    pub async fn cancel(&self, id: &RunId) -> Result<(), ClientError> {
        let path = format!("/api/v2/runs/{}/cancel", encode(id.as_str()));
        let _: Value = self.call(Method::POST, &path, None, true).await?;
        Ok(())
    }

    /// Changes a run's metadata, all or nothing (`PUT /api/v1/runs/{id}/metadata`); returns
    /// the metadata written.
    pub async fn update_metadata(
        &self,
        id: &RunId,
        ops: impl IntoIterator<Item = MetadataOp>,
    ) -> Result<JsonObject, ClientError> {
        let mut operations = Vec::new();
        for op in ops {
            operation(op, &mut operations);
        }
        let path = format!("/api/v1/runs/{}/metadata", encode(id.as_str()));
        #[derive(Deserialize)]
        struct Written {
            metadata: JsonObject,
        }
        let body = json!({ "operations": operations });
        let written: Written = self.call(Method::PUT, &path, Some(body), false).await?;
        Ok(written.metadata)
    }

    /// Adds tags to a run that has not finished (`POST /api/v1/runs/{id}/tags`).
    pub async fn add_tags(
        &self,
        id: &RunId,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), ClientError> {
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        let path = format!("/api/v1/runs/{}/tags", encode(id.as_str()));
        let _: Value = self
            .call(Method::POST, &path, Some(json!({ "tags": tags })), true)
            .await?;
        Ok(())
    }

    /// Calls a route with a JSON body, and reads its JSON answer.
    pub(super) async fn call<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        again: bool,
    ) -> Result<R, ClientError> {
        let mut request = self.request(method, path);
        request = match body {
            Some(body) => request.json_body(&body),
            None => request.header(reqwest::header::CONTENT_LENGTH, 0),
        };
        self.send(request, path, again).await
    }

    /// Sends `request`, and reads its JSON answer.
    async fn send<R: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        path: &str,
        again: bool,
    ) -> Result<R, ClientError> {
        let answer = self.answer(request, path, again).await?;
        serde_json::from_str(&answer.body).map_err(|e| ClientError::Response {
            url: path.to_owned(),
            reason: format!("{e}: {}", answer.body.chars().take(200).collect::<String>()),
        })
    }

    /// The first successful answer to `request`, made again after a pause while it may
    /// succeed later (`429` always, as the server did nothing; `408`, `5xx`, network errors
    /// and answers that broke off if `again`), up to 5 times.
    async fn answer(
        &self,
        request: RequestBuilder,
        path: &str,
        again: bool,
    ) -> Result<Answer, ClientError> {
        let mut backoff = Backoff {
            next: Duration::from_secs(1),
        };
        let mut attempt = 1;
        loop {
            let Some(this) = request.try_clone() else {
                return Err(ClientError::Response {
                    url: path.to_owned(),
                    reason: "the request cannot be made twice".to_owned(),
                });
            };
            let last = attempt >= ATTEMPTS;
            attempt += 1;
            let failed = match this.timeout(Duration::from_secs(60)).send().await {
                Ok(response) if response.status().is_success() => {
                    let headers = response.headers().clone();
                    match response.text().await {
                        Ok(body) => return Ok(Answer { headers, body }),
                        Err(source) => source,
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let may =
                        status == StatusCode::TOO_MANY_REQUESTS || (again && retryable(status));
                    if last || !may {
                        return Err(ClientError::Api {
                            status: status.as_u16(),
                            message: error_message(response).await,
                        });
                    }
                    backoff.wait(retry_after(&response)).await;
                    continue;
                }
                Err(source) => source,
            };
            if last || !again {
                return Err(network(path, failed));
            }
            backoff.wait(None).await;
        }
    }
}

/// A successful answer: its headers and body.
struct Answer {
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// A JSON body, written with serde_json (reqwest's `json` feature is not needed for it).
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }
}

fn network(path: &str, source: reqwest::Error) -> ClientError {
    ClientError::Network {
        url: path.to_owned(),
        source,
    }
}

/// A payload as the SDK sends it: a JSON packet (the JSON text).
fn packet_of<P: serde::Serialize>(payload: &P) -> Result<String, ClientError> {
    serde_json::to_string(payload).map_err(ClientError::Json)
}

/// A trigger's options as the trigger route reads them.
fn options_of(options: &TriggerOptions) -> Value {
    let seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let mut object = json!({ "payloadType": packet::JSON });
    let fields = [
        (
            "tags",
            (!options.tags.is_empty()).then(|| json!(options.tags)),
        ),
        ("maxAttempts", options.max_attempts.map(|n| json!(n))),
        ("metadata", options.metadata.as_ref().map(|m| json!(m))),
        ("test", options.is_test.then_some(json!(true))),
        (
            "idempotencyKey",
            options.idempotency_key.as_ref().map(|k| json!(k)),
        ),
        (
            "delay",
            options.delay.map(|d| json!(format!("{}s", seconds(d)))),
        ),
        ("ttl", options.ttl.map(|d| json!(seconds(d)))),
        (
            "maxDuration",
            options.max_duration.map(|d| json!(seconds(d))),
        ),
    ];
    if let Some(object) = object.as_object_mut() {
        for (name, value) in fields {
            if let Some(value) = value {
                object.insert(name.to_owned(), value);
            }
        }
    }
    object
}

/// A metadata operation as the SDK sends it. The wire has no merge: an
/// [`Update`](MetadataOp::Update) is a `set` of each of its keys (escaped when one starts with
/// `$.`, so that it stays a top-level key); a [`Replace`](MetadataOp::Replace) is the wire's
/// `update`.
fn operation(op: MetadataOp, into: &mut Vec<Value>) {
    into.push(match op {
        MetadataOp::Set(key, value) => json!({ "type": "set", "key": key, "value": value }),
        MetadataOp::Delete(key) => json!({ "type": "delete", "key": key }),
        MetadataOp::Append(key, value) => json!({ "type": "append", "key": key, "value": value }),
        MetadataOp::Remove(key, value) => json!({ "type": "remove", "key": key, "value": value }),
        MetadataOp::Increment(key, by) => json!({ "type": "increment", "key": key, "value": by }),
        MetadataOp::Replace(object) => json!({ "type": "update", "value": object }),
        MetadataOp::Update(object) => {
            for (key, value) in object {
                let key = if key.starts_with("$.") {
                    metadata::path_of(&[&key])
                } else {
                    key
                };
                operation(MetadataOp::Set(key, value), into);
            }
            return;
        }
    });
}

/// The run object of `GET /api/v3/runs/{id}` (`RetrieveRunResponse`): the fields a snapshot
/// has.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestRun {
    id: String,
    task_identifier: String,
    status: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(default)]
    started_at: Option<Timestamp>,
    #[serde(default)]
    finished_at: Option<Timestamp>,
    #[serde(default)]
    delayed_until: Option<Timestamp>,
    #[serde(default)]
    expired_at: Option<Timestamp>,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    cost_in_cents: f64,
    #[serde(default)]
    base_cost_in_cents: f64,
    #[serde(default)]
    duration_ms: f64,
    #[serde(default)]
    is_test: bool,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    payload_presigned_url: Option<String>,
    #[serde(default)]
    output: Option<Box<RawValue>>,
    #[serde(default)]
    output_presigned_url: Option<String>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<SerializedError>,
}

impl RestRun {
    /// The snapshot this run object shows, with its payload and output read apart (from the
    /// URLs it names) if given.
    fn run(
        self,
        payload: Option<Box<RawValue>>,
        output: Option<Box<RawValue>>,
    ) -> Result<AnyRun, FeedError> {
        let status = from_api_name(&self.status).ok_or_else(|| FeedError::Remote {
            status: None,
            message: format!(
                "the server's run object of `{}` has an unknown status `{}`",
                self.id, self.status
            ),
        })?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let duration_ms = self.duration_ms.max(0.0) as u64;
        Ok(AnyRun {
            id: RunId::from(self.id),
            task_identifier: self.task_identifier.into(),
            payload: payload.or(self.payload).map(Into::into),
            output: output.or(self.output).map(Into::into),
            created_at: self.created_at,
            updated_at: self.updated_at,
            // The REST object has no number; the feed's rows do.
            number: 0,
            status,
            duration_ms,
            cost_in_cents: self.cost_in_cents,
            base_cost_in_cents: self.base_cost_in_cents,
            tags: self.tags.into(),
            idempotency_key: self.idempotency_key,
            expired_at: self.expired_at,
            ttl: self.ttl,
            finished_at: self.finished_at,
            started_at: self.started_at,
            delayed_until: self.delayed_until,
            queued_at: None,
            metadata: self.metadata.map(Into::into),
            error: self.error,
            is_test: self.is_test,
            realtime_streams: Vec::new(),
        })
    }
}

impl Client {
    /// A packet the server uploaded apart, read from its URL (without credentials, as the SDK
    /// reads it), by the type the answer names.
    async fn presigned(&self, url: &str) -> Result<Box<RawValue>, FeedError> {
        let failed = |message: String| FeedError::Remote {
            status: None,
            message,
        };
        let response = self
            .inner
            .http
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| failed(format!("could not read a packet at {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "could not read a packet at {url}: HTTP {}",
                response.status()
            )));
        }
        let kind = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let text = response
            .text()
            .await
            .map_err(|e| failed(format!("could not read a packet at {url}: {e}")))?;
        packet::payload(Some(&text), kind.as_deref())
            .map_err(|e| failed(format!("the packet at {url} cannot be read: {e}")))
    }

    /// The run object of `id`, and the cursor of the change it shows (runcast's servers name
    /// it; others do not, and it is [`Cursor::START`]).
    async fn run(&self, id: &RunId) -> Result<Update<AnyRun>, FeedError> {
        let path = format!("/api/v3/runs/{}", encode(id.as_str()));
        let request = self.request(Method::GET, &path);
        let answer = match self.answer(request, &path, true).await {
            Ok(answer) => answer,
            Err(ClientError::Api { status: 404, .. }) => {
                return Err(FeedError::UnknownRun(id.clone()));
            }
            Err(ClientError::Api { status, message }) => {
                return Err(FeedError::Remote {
                    status: Some(status),
                    message: format!("the server refused run `{id}` (HTTP {status}): {message}"),
                });
            }
            Err(error) => {
                return Err(FeedError::Remote {
                    status: None,
                    message: error.to_string(),
                });
            }
        };
        let cursor = answer
            .headers
            .get("x-runcast-cursor")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Cursor>().ok())
            .unwrap_or(Cursor::START);
        let text = answer.body;
        let rest: RestRun = serde_json::from_str(&text).map_err(|e| FeedError::Remote {
            status: None,
            message: format!("the server's run object of `{id}` cannot be read: {e}"),
        })?;
        let payload = match rest.payload_presigned_url.as_deref() {
            Some(url) => Some(self.presigned(url).await?),
            None => None,
        };
        let output = match rest.output_presigned_url.as_deref() {
            Some(url) => Some(self.presigned(url).await?),
            None => None,
        };
        let run = rest.run(payload, output)?;
        Ok(Update {
            cursor,
            run,
            coalesced: false,
        })
    }
}

impl RunFeed for Client {
    type Subscription = RemoteSubscription;
    type RealtimeSubscription = RemoteRealtimeSubscription;

    /// Subscribes over the server's realtime feed: the first answer comes before this
    /// returns, so a refusal is this call's error (a `404` on one run's feed is
    /// [`FeedError::UnknownRun`], a cursor the server does not know
    /// [`FeedError::UnknownCursor`]).
    async fn subscribe(&self, scope: Scope, from: Cursor) -> Result<RemoteSubscription, FeedError> {
        let mut shape = Shape::new(self.clone(), scope, from)?;
        let first = shape.first(from).await?;
        Ok(RemoteSubscription::new(self.clone(), shape, first, from))
    }

    /// The run from `GET /api/v3/runs/{id}`: the REST object has no `number`, `queuedAt` or
    /// streams, which are 0, `None` and empty; the feed's items have them.
    async fn latest(&self, id: &RunId) -> Result<Update<AnyRun>, FeedError> {
        self.run(id).await
    }

    /// A page of runs from `GET /api/v1/runs` (Trigger.dev's listing: `filter[...]`,
    /// `page[size]`, `page[after]`). Its run objects have no `number`, `queuedAt` or streams;
    /// Trigger.dev's have no payload or output either. A page of a server whose next page is
    /// not named by a cursor (Trigger.dev's) is the last this client reads.
    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, FeedError> {
        let mut url =
            reqwest::Url::parse(&format!("{}/api/v1/runs", self.inner.base)).map_err(|e| {
                FeedError::Remote {
                    status: None,
                    message: format!("bad URL: {e}"),
                }
            })?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair(
                "page[size]",
                &query.limit.clamp(1, MAX_PAGE_SIZE).to_string(),
            );
            if let Some(task) = &query.task {
                pairs.append_pair("filter[taskIdentifier]", task);
            }
            if !query.statuses.is_empty() {
                let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
                pairs.append_pair("filter[status]", &statuses.join(","));
            }
            if !query.tags.is_empty() {
                pairs.append_pair("filter[tag]", &query.tags.join(","));
            }
            if let Some(batch) = &query.batch {
                pairs.append_pair("filter[batch]", batch.as_str());
            }
            if let Some(before) = query.before {
                pairs.append_pair("page[after]", &before.to_string());
            }
        }
        #[derive(Deserialize)]
        struct Listed {
            data: Vec<RestRun>,
            #[serde(default)]
            pagination: Pagination,
        }
        #[derive(Deserialize, Default)]
        struct Pagination {
            next: Option<String>,
        }
        let request = self.url_request(Method::GET, url.as_str());
        let listed: Listed = self
            .send(request, "/api/v1/runs", true)
            .await
            .map_err(|error| match error {
                ClientError::Api { status, message } => FeedError::Remote {
                    status: Some(status),
                    message: format!("the server refused the listing (HTTP {status}): {message}"),
                },
                other => FeedError::Remote {
                    status: None,
                    message: other.to_string(),
                },
            })?;
        let runs = listed
            .data
            .into_iter()
            .map(|rest| rest.run(None, None))
            .collect::<Result<Vec<_>, _>>()?;
        let next = listed.pagination.next.and_then(|next| next.parse().ok());
        Ok(RunPage::new(runs, next))
    }
}
