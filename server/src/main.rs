//! `runcast-server`: Trigger.dev's HTTP API over a runcast Postgres database.
//!
//! Workers (processes that build an `Engine` over the same database and register tasks) run
//! the tasks and publish them; this server runs none. It triggers runs of the tasks the
//! workers published (checking payloads against their schemas), reads, cancels and tags
//! them, and streams their changes, in the protocol of Trigger.dev's API, so that the official
//! TypeScript SDK and React hooks work against it. `runcast-server --help` lists the settings;
//! the README's "HTTP" section shows it next to a worker.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use runcast::http::{self, ServerConfig};
use runcast::{Engine, PostgresStore};
use tracing_subscriber::EnvFilter;

/// Trigger.dev's API over a runcast Postgres database: point the official SDK at it
/// (`TRIGGER_API_URL=http://<listen>`, `TRIGGER_SECRET_KEY=<secret key>`) while runcast
/// workers over the same database run the tasks.
///
/// Logs go to stderr, filtered by RUST_LOG (`info` by default; `runcast=debug` shows every
/// trigger and batch).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The Postgres database the workers share, as a URL
    /// (`postgres://user:password@host/dbname`) or key=value settings (`host=/run/postgresql
    /// dbname=runcast`). runcast creates or migrates its tables there.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// The secret key that clients send (the SDK's TRIGGER_SECRET_KEY); it also signs the
    /// public access tokens the server hands out and checks.
    #[arg(long, env = "RUNCAST_SECRET_KEY", hide_env_values = true)]
    secret_key: String,

    /// The address and port to listen on.
    #[arg(long, env = "RUNCAST_LISTEN", default_value = "127.0.0.1:3030")]
    listen: SocketAddr,

    /// The URL clients reach the server at (`https://runs.example.com`), for the upload URLs
    /// it hands out [default: the request's Host header].
    #[arg(long, env = "RUNCAST_PUBLIC_URL")]
    public_url: Option<String>,

    /// The environment id that public access tokens name as their subject.
    #[arg(long, env = "RUNCAST_ENVIRONMENT", default_value = "runcast")]
    environment: String,

    /// The largest payload a trigger may carry, in bytes of JSON [default: 10 MiB].
    #[arg(long, env = "RUNCAST_MAX_PAYLOAD_BYTES")]
    max_payload_bytes: Option<usize>,

    /// The largest request body accepted, in bytes [default: 3 MiB]. The SDK sends payloads
    /// of 128 KiB or more apart, as uploaded packets.
    #[arg(long, env = "RUNCAST_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,

    /// How many bytes of uploaded packets the server keeps at most [default: 256 MiB].
    #[arg(long, env = "RUNCAST_MAX_PACKET_BYTES")]
    max_packet_bytes: Option<usize>,

    /// How long, in seconds, a live feed request waits for a change before it answers that
    /// nothing changed [default: 20].
    #[arg(long, env = "RUNCAST_LIVE_HOLD_SECS")]
    live_hold_secs: Option<u64>,

    /// How long, in seconds, a feed's live server-sent-events connection (Electric's
    /// `live_sse` mode) stays open before the client connects again [default: 60].
    #[arg(long, env = "RUNCAST_SSE_SECS")]
    sse_secs: Option<u64>,

    /// How many live feed requests may wait at once; one more is answered 429
    /// [default: 100000].
    #[arg(long, env = "RUNCAST_MAX_LIVE_REQUESTS")]
    max_live_requests: Option<usize>,
}

impl Args {
    /// The router's settings.
    fn config(&self) -> Result<ServerConfig, Box<dyn std::error::Error>> {
        let mut config = ServerConfig::new(&self.secret_key)?.environment(&self.environment);
        if let Some(url) = &self.public_url {
            config = config.public_url(url);
        }
        if let Some(bytes) = self.max_body_bytes {
            config = config.max_body_bytes(bytes);
        }
        if let Some(bytes) = self.max_packet_bytes {
            config = config.max_packet_bytes(bytes);
        }
        if let Some(secs) = self.live_hold_secs {
            config = config.live_hold(Duration::from_secs(secs));
        }
        if let Some(secs) = self.sse_secs {
            config = config.sse_duration(Duration::from_secs(secs));
        }
        if let Some(requests) = self.max_live_requests {
            config = config.max_live_requests(requests);
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "could not start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGINT or SIGTERM, then lets requests and the engine finish.
async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.config()?;
    let store = PostgresStore::connect(&args.database_url)
        .await
        .map_err(|error| format!("could not open the database: {error}"))?;
    let mut engine = Engine::builder().postgres(store);
    if let Some(bytes) = args.max_payload_bytes {
        engine = engine.max_payload_bytes(bytes);
    }
    let engine = engine.build()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("could not listen on {}: {error}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!("serving Trigger.dev's API on http://{address}");
    let stopping = engine.clone();
    let signaled = async move {
        stopped().await;
        tracing::info!("stopping");
        // The engine stops beside the server's draining: feed requests that wait for a change
        // answer at once, so that their clients ask again (of another server), and the
        // server does not wait out their hold; triggers are refused from now on (503).
        tokio::spawn(async move { stopping.shutdown(Duration::from_secs(5)).await });
    };
    axum::serve(listener, http::router(engine.clone(), config))
        .with_graceful_shutdown(signaled)
        .await?;
    engine.shutdown(Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => drop(interrupt.await),
        }
    }
    #[cfg(not(unix))]
    drop(interrupt.await);
}
