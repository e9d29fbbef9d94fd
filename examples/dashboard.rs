//! A live dashboard in the browser: a page built on the official `@trigger.dev/react-hooks`
//! (`examples/dashboard/`) triggers runs of a task that streams text, and shows each run's
//! status, progress and streamed text as they change, served with Trigger.dev's API over an
//! embedded engine (`runcast_examples::dashboard`).
//!
//! Run with `cargo run --example dashboard` (Node.js and npm build the page first), then open
//! the URL it prints. `PORT` and `TRIGGER_SECRET_KEY` change its port and key. Stop it with
//! Ctrl-C and start it again: the open page keeps working (its runs so far stay on the page as
//! they ended; the new server has none of them, as its engine keeps runs in memory).
#![allow(clippy::print_stdout)]

use runcast_examples::dashboard;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3030".into());
    let key =
        std::env::var("TRIGGER_SECRET_KEY").unwrap_or_else(|_| "tr_dev_runcast_dashboard".into());
    println!("Building the page (npm ci on the first run, then esbuild)...");
    dashboard::build_page()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let engine = dashboard::engine()?;
        let app = dashboard::app(engine.clone(), &key)?;
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        println!("The dashboard is on http://{}/", listener.local_addr()?);
        println!("Ctrl-C stops it.");
        let interrupted = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        dashboard::serve(listener, app, engine, interrupted).await?;
        Ok(())
    })
}
