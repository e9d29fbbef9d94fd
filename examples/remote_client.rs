//! runcast's remote client: trigger and follow runs of a server in another process, typed.
//!
//! Run with `cargo run --example remote_client`: it starts a runcast server on a loopback port
//! (an embedded engine running `summarize`), then uses it only through HTTP, as a service on
//! another host would. With `TRIGGER_API_URL` and `TRIGGER_SECRET_KEY` set, it uses that
//! server instead (one whose workers run `summarize`).
#![allow(clippy::print_stdout)]

use std::time::Duration;

use futures::StreamExt;
use runcast::client::{Client, PublicToken};
use runcast::http::{self, ServerConfig};
use runcast::prelude::*;
use runcast::{Engine, MetadataOp, TriggerOptions};

/// Summarizes a text: reports its progress in its metadata and streams the summary's words.
#[task(id = "summarize", streams(words = String))]
async fn summarize(text: String, ctx: TaskContext) -> Result<usize, String> {
    let words = ctx.stream(Summarize::WORDS);
    let summary: Vec<&str> = text.split_whitespace().step_by(2).collect();
    for (done, word) in summary.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        words
            .append(&word.to_string())
            .await
            .map_err(|e| e.to_string())?;
        let progress = MetadataOp::Set("done".into(), (done + 1).into());
        ctx.update_metadata([progress])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(summary.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = match std::env::var("TRIGGER_API_URL") {
        Ok(_) => Client::from_env()?,
        Err(_) => {
            let key = "tr_dev_remote_client_example";
            let engine = Engine::builder().task::<Summarize>().build()?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            let app = http::router(engine, ServerConfig::new(key)?);
            tokio::spawn(async move { axum::serve(listener, app).await });
            println!("a runcast server on {url}");
            Client::new(url, key)?
        }
    };

    // Trigger, then follow every state of the run, typed as the task declares.
    let options = TriggerOptions::default().tag("example:remote");
    let text = "the quick brown fox jumps over the lazy dog".to_owned();
    let handle = client.trigger_with::<Summarize>(text, options).await?;
    let mut run = client.subscribe_to_run(&handle).await?.with_streams();
    while let Some(item) = run.next().await {
        match item? {
            Realtime::Run(update) => {
                let run = update.run;
                let done = run.metadata.as_ref().and_then(|m| m.get("done")?.as_u64());
                let done = done.map_or("-".to_owned(), |n| n.to_string());
                println!(
                    "{} (words done: {done}, output: {:?})",
                    run.status, run.output
                );
            }
            Realtime::Chunk(chunk) => match chunk.data {
                SummarizeChunk::Words(word) => println!("  streamed: {word}"),
            },
        }
    }

    // A public access token that reads this run only: what a browser would be given.
    let token = PublicToken::new()
        .read_run(handle.id())
        .expires_in(Duration::from_secs(600));
    let token = client.create_public_token(&token).await?;
    let reader = client.with_key(token);
    let finished = reader.retrieve::<Summarize>(handle.id()).await?;
    println!(
        "read with a public token: {} words",
        finished.output.unwrap_or_default()
    );
    Ok(())
}
