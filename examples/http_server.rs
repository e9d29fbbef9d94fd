//! Trigger.dev's API over an embedded engine: point the official TypeScript SDK at it.
//!
//! Run with `cargo run --example http_server` (`PORT` and `TRIGGER_SECRET_KEY` change its
//! port and key), then, from a project with `@trigger.dev/sdk` installed:
//!
//! ```sh
//! TRIGGER_API_URL=http://127.0.0.1:3030 TRIGGER_SECRET_KEY=tr_dev_runcast_example node app.mjs
//! ```
//!
//! where `app.mjs` triggers `hello-world` and follows it:
//!
//! ```js
//! import { runs, tasks } from "@trigger.dev/sdk";
//! const handle = await tasks.trigger("hello-world", { name: "Ada" });
//! for await (const run of runs.subscribeToRun(handle.id)) console.log(run.status, run.metadata, run.output);
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use runcast::Engine;
use runcast::http::{self, ServerConfig};
use runcast::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Greeting {
    name: String,
}

/// Greets, reporting its progress in its metadata on the way.
#[task(id = "hello-world")]
async fn hello_world(greeting: Greeting, ctx: TaskContext) -> Result<String, String> {
    for step in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let progress = runcast::MetadataOp::Set("step".into(), step.into());
        ctx.update_metadata([progress])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(format!("Hello, {}!", greeting.name))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3030".into());
    let key =
        std::env::var("TRIGGER_SECRET_KEY").unwrap_or_else(|_| "tr_dev_runcast_example".into());
    let engine = Engine::builder().task::<HelloWorld>().build()?;
    let app = http::router(engine.clone(), ServerConfig::new(&key)?);
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("Trigger.dev's API on http://{}", listener.local_addr()?);
    println!(
        "  TRIGGER_API_URL=http://{} TRIGGER_SECRET_KEY={key}",
        listener.local_addr()?
    );
    println!("Ctrl-C stops it.");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Runs still executing get a moment to finish.
    engine.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
