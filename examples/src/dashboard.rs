//! The server of the live dashboard (`cargo run --example dashboard`): Trigger.dev's API over an
//! embedded engine, and a web page (`examples/dashboard/`) that follows its runs with the
//! official React hooks (`@trigger.dev/react-hooks`).
//!
//! The page triggers [`GenerateText`] runs tagged [`TAG`], and shows each run's status, the
//! progress in its metadata, and the text it streams, as they change. It gets its public
//! access tokens from `GET /config.json`: the server signs them (through its own
//! `POST /api/v1/auth/public-tokens`), one that triggers the task and one that reads the runs
//! with the tag, each for an hour; the secret key stays on the server. Tokens are signed with
//! the secret key, so a page keeps working across a restart of a server with the same key
//! (its feeds start over, as the server's history did).
//!
//! `examples/tests/dashboard.rs` runs the page in headless Chromium against [`serve`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runcast::http::{self, EmptySecretKey, ServerConfig};
use runcast::prelude::*;
use runcast::{BuildError, Engine};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The tag of every run the page triggers, and the tag its feed follows.
pub const TAG: &str = "dashboard";

/// How long the page's tokens last.
const TOKEN_LIFETIME: &str = "1h";

/// The pause between two streamed words: slow enough to watch them arrive.
const WORD_PAUSE: Duration = Duration::from_millis(150);

/// What the page sends: a prompt to answer.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Prompt {
    /// The question.
    pub prompt: String,
}

/// How far a [`GenerateText`] run is: its metadata, which the page shows as a progress bar.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    /// Words streamed so far.
    pub tokens: u32,
    /// Words in the whole answer.
    pub of: u32,
}

/// "Generates" the answer to a prompt: streams it word by word on its `text` stream, updates
/// its [`Progress`] after each word, and returns the whole text ([`answer`]).
#[task(id = "generate-text", metadata = Progress, streams(text = String))]
pub async fn generate_text(
    request: Prompt,
    ctx: TaskContext,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let answer = answer(&request.prompt);
    let words: Vec<&str> = answer.split_inclusive(' ').collect();
    let of = u32::try_from(words.len()).unwrap_or(u32::MAX);
    ctx.set_metadata(&Progress { tokens: 0, of }).await?;
    let text = ctx.stream(GenerateText::TEXT);
    for (tokens, word) in (1..).zip(&words) {
        tokio::time::sleep(WORD_PAUSE).await;
        text.append(&(*word).to_owned()).await?;
        ctx.set_metadata(&Progress { tokens, of }).await?;
    }
    Ok(answer)
}

/// The text a [`GenerateText`] run streams and returns for `prompt`.
pub fn answer(prompt: &str) -> String {
    format!("You asked: \"{prompt}\". Here is a short answer, streamed one word at a time.")
}

/// An embedded engine that runs [`GenerateText`].
pub fn engine() -> Result<Engine, BuildError> {
    Engine::builder().task::<GenerateText>().build()
}

/// Trigger.dev's API over `engine`, with the page: `/` and `/app.js` (from
/// [`page_dir`], built by [`build_page`]), and `/config.json`, what the page needs to
/// trigger and read runs.
pub fn app(engine: Engine, secret_key: &str) -> Result<Router, EmptySecretKey> {
    let api = http::router(engine, ServerConfig::new(secret_key)?);
    let page = Page {
        api: api.clone(),
        secret_key: Arc::from(secret_key),
        dir: Arc::from(page_dir()),
    };
    let routes = Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/config.json", get(config))
        .with_state(page);
    Ok(routes.merge(api))
}

/// Serves `app` (over `engine`) on `listener` until `stop` completes, then lets the requests
/// being answered finish. Feed requests waiting for a change answer at once (the engine
/// stops beside the server's draining), so that their clients ask again, and a restarted
/// server answers them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    engine: Engine,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = engine.clone();
    let stopped = async move {
        stop.await;
        tokio::spawn(async move { stopping.shutdown(Duration::from_secs(5)).await });
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await?;
    engine.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// The page's folder: its npm package (`package.json`, `package-lock.json`), `index.html`,
/// `src/`, and `dist/` once built.
pub fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard")
}

/// Builds the page: installs its pinned npm packages (`npm ci`) unless they are installed from
/// the current lockfile, then bundles it (esbuild, into `dist/`). Needs Node.js and npm;
/// blocks. Returns the page's folder.
pub fn build_page() -> Result<PathBuf, String> {
    let dir = page_dir();
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    // npm writes `node_modules/.package-lock.json` as it installs.
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if installed.is_none_or(|at| Some(at) < modified(&dir.join("package-lock.json"))) {
        run(&dir, "npm", &["ci", "--no-audit", "--no-fund"])?;
    }
    run(&dir, "node", &["build.mjs"])?;
    Ok(dir)
}

/// Runs `program` with `args` in `dir`; its output is in the error if it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let command = format!("`{program} {}` in {}", args.join(" "), dir.display());
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|error| format!("{command} could not start ({error}): install Node.js and npm"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// What the page's routes reach.
#[derive(Clone)]
struct Page {
    /// The API, asked for tokens as any client with the secret key would.
    api: Router,
    secret_key: Arc<str>,
    dir: Arc<Path>,
}

async fn index(State(page): State<Page>) -> Response {
    file(&page.dir.join("index.html"), "text/html; charset=utf-8").await
}

async fn script(State(page): State<Page>) -> Response {
    file(
        &page.dir.join("dist/app.js"),
        "text/javascript; charset=utf-8",
    )
    .await
}

async fn file(path: &Path, kind: &'static str) -> Response {
    match tokio::fs::read(path).await {
        Ok(bytes) => ([(CONTENT_TYPE, kind), (CACHE_CONTROL, "no-cache")], bytes).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{}: {error}. Build the page: npm ci --prefix examples/dashboard && \
                 npm run build --prefix examples/dashboard",
                path.display()
            ),
        )
            .into_response(),
    }
}

/// `GET /config.json`: the task, the tag, and fresh tokens that trigger the task and read the
/// runs with the tag.
async fn config(State(page): State<Page>) -> Response {
    let tokens = async {
        let trigger = page
            .token(&format!("trigger:tasks:{}", GenerateText::ID))
            .await?;
        let read = page.token(&format!("read:tags:{TAG}")).await?;
        Ok::<_, String>((trigger, read))
    };
    match tokens.await {
        Ok((trigger, read)) => {
            let config = json!({
                "task": GenerateText::ID,
                "tag": TAG,
                "triggerToken": trigger,
                "readToken": read,
            });
            ([(CACHE_CONTROL, "no-store")], axum::Json(config)).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

impl Page {
    /// A public access token with `scope` (for many uses), from the API's
    /// `POST /api/v1/auth/public-tokens`.
    async fn token(&self, scope: &str) -> Result<String, String> {
        let body = json!({ "scopes": [scope], "expirationTime": TOKEN_LIFETIME });
        let request = Request::post("/api/v1/auth/public-tokens")
            .header(AUTHORIZATION, format!("Bearer {}", self.secret_key))
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .map_err(|error| error.to_string())?;
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .map_err(|error| error.to_string())?;
        let token = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|body| body.get("token")?.as_str().map(str::to_owned));
        match token {
            Some(token) if status.is_success() => Ok(token),
            _ => Err(format!(
                "the server minted no token for `{scope}` ({status}): {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }
}
