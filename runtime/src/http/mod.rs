//! Trigger.dev's HTTP API over an [`Engine`] (feature `server`): an axum [`Router`] that an
//! application mounts in its own server, so that the official TypeScript SDK
//! (`@trigger.dev/sdk`, pointed at it with `TRIGGER_API_URL` and `TRIGGER_SECRET_KEY`), its
//! React hooks and any HTTP client trigger, read and watch the engine's runs.
//!
//! ```no_run
//! # use runcast::{Engine, task};
//! use runcast::http::{self, ServerConfig};
//! # #[task(id = "hello")] async fn hello(name: String) -> Result<String, String> { Ok(name) }
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().task::<Hello>().build()?;
//! let app = http::router(engine, ServerConfig::new("tr_dev_my_secret_key")?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3030").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Routes (the paths and shapes of Trigger.dev's API, `trigger-sdk-v4-wire.md`):
//! - `POST /api/v1/tasks/{task}/trigger`: triggers a run; answers `{id, isCached}` and an
//!   `x-trigger-jwt` header, a public access token that reads the run;
//! - `PUT /api/v2/packets/{path}`: where to upload a payload of 128 KiB or more, which the SDK
//!   sends apart;
//! - `GET /api/v3/runs/{run}`: the run, as the REST API's run object;
//! - `GET /api/v1/runs`: a page of runs, newest first, filtered as Trigger.dev's listing;
//! - `POST /api/v2/runs/{run}/cancel`: cancels it;
//! - `GET` and `PUT /api/v1/runs/{run}/metadata`, `POST /api/v1/runs/{run}/tags`: its
//!   metadata and tags (changed with the secret key);
//! - `POST /api/v3/batches`, then `POST /api/v3/batches/{batch}/items`: a batch trigger in
//!   two phases, as the SDK's `batch.trigger` and `tasks.batchTrigger` send it;
//! - `POST /api/v1/auth/jwt/claims`: the claims the SDK signs its public access tokens with;
//!   `POST /api/v1/auth/public-tokens`: a token the server signs;
//! - `GET /realtime/v1/runs/{run}`, `GET /realtime/v1/runs?tags=a,b`,
//!   `GET /realtime/v1/batches/{batch}`: run feeds in Electric's shape protocol, as the SDK's
//!   `runs.subscribeToRun`, `subscribeToRunsWithTag` and `subscribeToBatch` read them;
//! - `GET /realtime/v1/streams/{run}/{key}`: a run's realtime stream, as server-sent events;
//! - `GET /healthcheck`: `200 OK` while the engine runs and its store answers, `503`
//!   otherwise (for a load balancer; no credentials).
//!
//! Every route takes the secret key as `Authorization: Bearer`, and the routes that read runs
//! or trigger them (as Trigger.dev's do) a public access token too: an HS256 JWT signed with
//! the secret key, which reaches only what its scopes grant (`read:runs:<id>`,
//! `read:tags:<tag>`, `read:batch:<id>`, `trigger:tasks:<id>`, ...; a run is read by its id,
//! its task, any of its tags or its batch).
//! Errors are Trigger.dev's JSON, `{"error": "..."}`, with its status codes. Responses allow
//! any origin (CORS), and expose their headers, so a web page can read them.

mod api;
mod auth;
mod batches;
mod error;
mod feed;
mod held;
mod packets;
mod runs;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method};
use axum::routing::{get, post, put};
use tower_http::cors::{AllowHeaders, Any, CorsLayer};

use self::auth::Keys;
use crate::Engine;

/// How a server built by [`router`] authenticates and answers.
#[derive(Clone)]
pub struct ServerConfig {
    keys: Arc<Keys>,
    environment: String,
    live_hold: Duration,
    sse_duration: Duration,
    max_live: usize,
    max_body_bytes: usize,
    max_packet_bytes: usize,
    public_url: Option<String>,
}

/// The error of configuring a server with an empty secret key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret key is empty; give the key that clients send as `Authorization: Bearer`")]
pub struct EmptySecretKey;

impl ServerConfig {
    /// A server whose secret key is `secret_key`: requests carrying it may do anything, and it
    /// signs (and checks) public access tokens. Refuses an empty key.
    pub fn new(secret_key: impl AsRef<str>) -> Result<Self, EmptySecretKey> {
        Ok(ServerConfig {
            keys: Arc::new(Keys::new(secret_key.as_ref()).ok_or(EmptySecretKey)?),
            environment: "runcast".to_owned(),
            live_hold: Duration::from_secs(20),
            sse_duration: Duration::from_secs(60),
            max_live: 100_000,
            max_body_bytes: 3 * 1024 * 1024,
            max_packet_bytes: 256 * 1024 * 1024,
            public_url: None,
        })
    }

    /// The environment id that tokens name as their subject (`sub`); `runcast` by default.
    pub fn environment(mut self, id: impl Into<String>) -> Self {
        self.environment = id.into();
        self
    }

    /// How long a live feed request waits for a change before it answers that nothing changed;
    /// 20 seconds by default, as Electric and Trigger.dev hold theirs.
    pub fn live_hold(mut self, hold: Duration) -> Self {
        self.live_hold = hold;
        self
    }

    /// How long a feed's live server-sent-events connection (Electric's `live_sse` mode, which
    /// sends changes as they come over one response) stays open before it ends and the client
    /// connects again; 60 seconds by default, as Electric's.
    pub fn sse_duration(mut self, duration: Duration) -> Self {
        self.sse_duration = duration;
        self
    }

    /// How many live feed requests may wait at once; one more is answered `429` (the SDK
    /// tries again). 100,000 by default, as a self-hosted Trigger.dev.
    pub fn max_live_requests(mut self, requests: usize) -> Self {
        self.max_live = requests;
        self
    }

    /// How many bytes of uploaded packets (payloads the SDK offloads, from 128 KiB) the server
    /// keeps at most; 256 MiB by default. An upload past it is refused until older ones go.
    pub fn max_packet_bytes(mut self, bytes: usize) -> Self {
        self.max_packet_bytes = bytes;
        self
    }

    /// The URL clients reach this server at (`https://runs.example.com`), for the upload URLs
    /// it hands out; by default, the request's `Host` (and `X-Forwarded-Proto`).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// The largest request body accepted; 3 MiB by default, as Trigger.dev's trigger route.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("environment", &self.environment)
            .field("live_hold", &self.live_hold)
            .field("sse_duration", &self.sse_duration)
            .field("max_live", &self.max_live)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("public_url", &self.public_url)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// What every handler reaches.
struct State {
    engine: Engine,
    config: ServerConfig,
    /// Packets uploaded apart, and batches receiving their items.
    held: held::Held,
    /// The latest feed messages, written once.
    messages: feed::Messages,
    /// One-time trigger tokens used.
    spent: auth::Spent,
    /// Live feed requests waiting now.
    live: std::sync::atomic::AtomicUsize,
}

type AppState = Arc<State>;

/// Trigger.dev's API over `engine`: the routes listed in the [module docs](self).
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let limit = config.max_body_bytes;
    let state = Arc::new(State {
        held: held::Held::of(&engine),
        engine,
        config,
        messages: feed::Messages::default(),
        spent: auth::Spent::default(),
        live: std::sync::atomic::AtomicUsize::new(0),
    });
    // Browsers read the feed's headers (`electric-offset`, ...) and the trigger's token only
    // if they are exposed; credentials are tokens, not cookies.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(Any)
        .max_age(Duration::from_secs(300));
    Router::new()
        .route("/api/v1/tasks/{task}/trigger", post(api::trigger))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v3/runs/{run}", get(api::retrieve))
        .route("/api/v2/runs/{run}/cancel", post(api::cancel))
        .route(
            "/api/v1/runs/{run}/metadata",
            get(runs::metadata).put(runs::update_metadata),
        )
        .route("/api/v1/runs/{run}/tags", post(runs::add_tags))
        .route("/api/v1/auth/jwt/claims", post(api::claims))
        .route("/api/v1/auth/public-tokens", post(api::public_token))
        .route("/api/v2/packets/{*path}", put(packets::upload_url))
        .route("/api/v1/packets/upload/{token}", put(packets::upload))
        .route("/api/v3/batches", post(batches::create))
        .route("/api/v3/batches/{batch}/items", post(batches::items))
        .route("/realtime/v1/runs/{run}", get(feed::run))
        .route("/realtime/v1/runs", get(feed::tags))
        .route("/realtime/v1/batches/{batch}", get(feed::batch))
        .route("/realtime/v1/streams/{run}/{key}", get(streams::read))
        .route("/healthcheck", get(api::healthcheck))
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(cors)
        .with_state(state)
}

/// Header names this module sends.
mod headers {
    use super::HeaderName;

    pub(super) const JWT: HeaderName = HeaderName::from_static("x-trigger-jwt");
    pub(super) const JWT_CLAIMS: HeaderName = HeaderName::from_static("x-trigger-jwt-claims");
    pub(super) const HANDLE: HeaderName = HeaderName::from_static("electric-handle");
    pub(super) const OFFSET: HeaderName = HeaderName::from_static("electric-offset");
    pub(super) const SCHEMA: HeaderName = HeaderName::from_static("electric-schema");
    pub(super) const CURSOR: HeaderName = HeaderName::from_static("electric-cursor");
    pub(super) const UP_TO_DATE: HeaderName = HeaderName::from_static("electric-up-to-date");
    pub(super) const RUN_CURSOR: HeaderName = HeaderName::from_static("x-runcast-cursor");
}
