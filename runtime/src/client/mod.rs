//! A client of Trigger.dev's HTTP API (feature `client`): runcast's server, or Trigger.dev's
//! own, reached over HTTP from any process, with the same typed layer as the engine.
//!
//! [`Client`] implements [`RunFeed`](crate::RunFeed), so everything built on it works on a remote server as on
//! an [`Engine`](crate::Engine): `subscribe_to_run`, `subscribe_to_runs_with_tag` with a
//! [`realtime_union!`](crate::realtime_union), `subscribe_to_batch`, `.typed()`,
//! `.until_finished()`, `with_streams()`, `read_stream`, `retrieve`, `wait`. It triggers
//! ([`trigger`](Client::trigger), [`batch_trigger`](Client::batch_trigger)), cancels, changes
//! metadata and tags, and mints public access tokens
//! ([`create_public_token`](Client::create_public_token)).
//!
//! ```no_run
//! use futures::StreamExt;
//! use runcast::client::Client;
//! use runcast::prelude::*;
//! # #[task(id = "hello-world", payload = String, output = String)] pub struct HelloWorld;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new("http://127.0.0.1:3030", "tr_dev_runcast_example")?;
//! let handle = client.trigger::<HelloWorld>("Ada".to_owned()).await?;
//! let mut run = client.subscribe_to_run(&handle).await?;
//! while let Some(update) = run.next().await {
//!     let update = update?;
//!     println!("{} {:?}", update.run.status, update.run.output);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! **Feeds** speak Electric's shape protocol as the official client does: the first request
//! from offset `-1`, then every change after the `electric-offset` it was given, live requests
//! (long polls) once up to date; a `409` starts over from `-1` with the new handle (the
//! following items are marked [`coalesced`](crate::Update::coalesced): changes may have been
//! missed); `429`, `5xx`, timeouts and network errors are retried from the same offset after a
//! growing pause (100 ms, ×1.3 each time, at most 10 s, at least a `Retry-After`), so a
//! dropped connection costs no change and repeats none; a server that stays away is logged
//! (`tracing`, a warning every tenth failure in a row), and tried as long as the subscription
//! is read. Subscribing to a server that cannot be reached at all (a wrong URL or port) fails
//! after about 4 s instead. Where the official SDK hangs silently
//! (a `401`, `403` or `404`, an answer without its `electric-*` headers, a body that is not
//! the protocol's), the subscription ends with a [`FeedError::Remote`](crate::FeedError::Remote) that says what
//! happened (a `404` on one run's feed is [`FeedError::UnknownRun`](crate::FeedError::UnknownRun)); a row that cannot be
//! read (a `null` where every run has a value, an unknown status) is one error item, and the
//! stream goes on.
//!
//! **Cursors.** A runcast server's feed offsets are its history's cursors, so the items of a
//! subscription to one carry the engine's cursors: subscribing from one resumes, from any
//! client of any server over the same history, with no gap and no duplicate. Another server's
//! offsets are its own: its items carry cursors that order them within their subscription,
//! and a new subscription from one is refused ([`FeedError::UnknownCursor`](crate::FeedError::UnknownCursor)).
//!
//! **Streams.** [`with_streams`](crate::WithStreams::with_streams) reads each stream of each
//! run (`GET /realtime/v1/streams/{run}/{key}`, v1 or v2 framing) beside the feed, and holds a
//! run's final snapshot until its streams have ended (at most 30 s), so every chunk comes
//! before it, as on the engine. Each run's changes come in order, and each stream's chunks;
//! chunks and changes of different connections are not interleaved by cursor.

mod feed;
mod rest;
mod streams;
mod subscription;
mod token;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

pub use self::subscription::{RemoteRealtimeSubscription, RemoteSubscription};
pub use self::token::PublicToken;

/// A client of a server that speaks Trigger.dev's API (runcast's `runcast-server`, an
/// application that mounts runcast's router, or Trigger.dev itself), with a
/// secret key or a public access token. Cheap to clone: clones share their connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The server's URL, without a trailing `/`.
    base: String,
    /// The secret key, or a public access token, sent as `Authorization: Bearer`.
    key: String,
    /// How long a live feed request may take before it is given up and made again.
    live_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("live_timeout", &self.inner.live_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a request of the remote client failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error: its status and its message.
    #[error("the server refused the request (HTTP {status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message (its `error` field).
        message: String,
    },
    /// The server could not be reached, or the connection broke before it answered.
    #[error("could not reach {url}: {source}")]
    Network {
        /// The URL asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered what the protocol does not allow.
    #[error("unexpected answer from {url}: {reason}")]
    Response {
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A payload or metadata could not be written as JSON.
    #[error("could not write the request as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The client was configured with a URL it cannot use.
    #[error("invalid server URL `{0}`: expected an absolute http:// or https:// URL")]
    Url(String),
    /// A setting the client needs is missing (from the environment, for
    /// [`Client::from_env`]).
    #[error("{0} is not set")]
    Missing(&'static str),
}

impl Client {
    /// A client of the server at `base_url` (`http://127.0.0.1:3030`,
    /// `https://api.trigger.dev`), authenticated with `key`: a secret key, or a public access
    /// token (which reaches only what its scopes grant).
    pub fn new(base_url: impl Into<String>, key: impl Into<String>) -> Result<Self, ClientError> {
        let base = base_url.into().trim_end_matches('/').to_owned();
        match Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => return Err(ClientError::Url(base)),
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Network {
                url: base.clone(),
                source,
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                key: key.into(),
                live_timeout: Duration::from_secs(60),
            }),
        })
    }

    /// A client configured as the official SDK is: the server at `TRIGGER_API_URL`
    /// (`https://api.trigger.dev` if unset), authenticated with `TRIGGER_SECRET_KEY` (or
    /// `TRIGGER_ACCESS_TOKEN`).
    pub fn from_env() -> Result<Self, ClientError> {
        let base = std::env::var("TRIGGER_API_URL")
            .unwrap_or_else(|_| "https://api.trigger.dev".to_owned());
        let key = std::env::var("TRIGGER_SECRET_KEY")
            .or_else(|_| std::env::var("TRIGGER_ACCESS_TOKEN"))
            .map_err(|_| ClientError::Missing("TRIGGER_SECRET_KEY (or TRIGGER_ACCESS_TOKEN)"))?;
        Self::new(base, key)
    }

    /// The same client with another key (a public access token it minted, say).
    pub fn with_key(&self, key: impl Into<String>) -> Self {
        self.rebuilt(key.into(), self.inner.live_timeout)
    }

    /// How long a live feed request may wait for an answer before it is made again; 60 s by
    /// default. Keep it above the server's live hold (20 s on runcast's and Trigger.dev's).
    pub fn live_timeout(self, timeout: Duration) -> Self {
        self.rebuilt(self.inner.key.clone(), timeout)
    }

    /// A client over the same connections with `key` and `live_timeout`.
    fn rebuilt(&self, key: String, live_timeout: Duration) -> Self {
        Client {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                key,
                live_timeout,
            }),
        }
    }

    /// The server's URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// A request to `path` (which starts with `/`), authenticated.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.url_request(method, &format!("{}{path}", self.inner.base))
    }

    fn url_request(&self, method: Method, url: &str) -> RequestBuilder {
        self.inner
            .http
            .request(method, url)
            .bearer_auth(&self.inner.key)
    }
}

/// Reads one row of a run feed as a run: a shape message's `value`, as runcast's and
/// Trigger.dev's servers send it (values as Postgres prints them, or as JSON values;
/// timestamps without a zone; payload, output and metadata as packets; statuses by their
/// database names). What each item of a remote subscription is read from; for rows read some
/// other way (an Electric client of your own, a recording).
///
/// ```
/// use runcast::RunStatus;
/// let run = runcast::client::read_row(r#"{"friendlyId":"run_1","taskIdentifier":"t",
///     "status":"COMPLETED_SUCCESSFULLY","createdAt":"2026-06-06 10:05:30.12",
///     "updatedAt":"2026-06-06T10:05:31","isTest":"f","runTags":"{a,b}",
///     "output":"{\"json\":42}","outputType":"application/super+json"}"#)?;
/// assert_eq!(run.status, RunStatus::Completed);
/// assert_eq!(run.output.as_deref().map(|o| o.get()), Some("42"));
/// assert_eq!(&*run.tags, ["a", "b"]);
/// # Ok::<(), runcast::FeedError>(())
/// ```
pub fn read_row(value: &str) -> Result<crate::AnyRun, crate::FeedError> {
    crate::wire::row::read(value).map_err(feed::unreadable)
}

/// The message of an error answer: its JSON `error` (or `message`) field, else its text.
async fn error_message(response: Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|body| {
            let field = body.get("error").or_else(|| body.get("message"))?;
            match field {
                serde_json::Value::String(text) => Some(text.clone()),
                serde_json::Value::Object(object) => object
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned),
                other => Some(other.to_string()),
            }
        });
    match message {
        Some(message) => message,
        None if text.trim().is_empty() => {
            status.canonical_reason().unwrap_or("no message").to_owned()
        }
        None => text.chars().take(200).collect(),
    }
}

/// Whether an answer with `status` may succeed if asked again, as the official client retries:
/// `408`, `429` and every `5xx`.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The growing pause between attempts: 100 ms, ×1.3 each time, at most 10 s, and at least what
/// the server asks (`Retry-After`, in seconds).
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// Waits before the next attempt.
    async fn wait(&mut self, retry_after: Option<Duration>) {
        let pause = retry_after.map_or(self.next, |floor| floor.max(self.next));
        self.next = self.next.mul_f64(1.3).min(Self::MAX);
        tokio::time::sleep(pause.min(Duration::from_secs(60))).await;
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The `Retry-After` of an answer, in seconds.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}
