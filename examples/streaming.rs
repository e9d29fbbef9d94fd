//! Realtime streams: a task streams generated text token by token and reports its progress in
//! typed metadata; the subscriber prints each token as it arrives, the progress, and the final
//! output, from one feed in one order.
//!
//! Run with `cargo run --example streaming`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use runcast::Engine;
use runcast::prelude::*;
use serde::{Deserialize, Serialize};

/// How far the generation is: the run's metadata, typed.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
struct Progress {
    tokens: u32,
    of: u32,
}

/// "Generates" an answer to a prompt: streams it word by word on `tokens`, updates
/// `Progress` as it goes, and returns the whole text.
#[task(id = "generate-text", metadata = Progress, streams(tokens = String))]
async fn generate_text(
    prompt: String,
    ctx: TaskContext,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let answer = format!("You asked: \"{prompt}\". Here is a short answer, one token at a time.");
    let words: Vec<&str> = answer.split_inclusive(' ').collect();
    let of = u32::try_from(words.len()).unwrap_or(u32::MAX);
    let tokens = ctx.stream(GenerateText::TOKENS);
    for (i, word) in (1..).zip(&words) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokens.append(&(*word).to_owned()).await?;
        // Typed: a write its subscribers could not decode does not compile.
        ctx.set_metadata(&Progress { tokens: i, of }).await?;
    }
    Ok(answer)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<GenerateText>().build()?;
    let run = engine
        .trigger::<GenerateText>("what are realtime streams?".into())
        .await?;

    // Run changes and chunks of the run's streams, typed, in one cursor order; it ends after
    // the run's final snapshot.
    let mut items = engine.subscribe_to_run(&run).await?.with_streams();
    let mut stdout = std::io::stdout();
    while let Some(item) = items.next().await {
        match item? {
            Realtime::Chunk(chunk) => match chunk.data {
                GenerateTextChunk::Tokens(token) => {
                    print!("{token}");
                    stdout.flush()?;
                }
            },
            Realtime::Run(update) => {
                let run = update.run;
                if let Some(Progress { tokens, of }) = run.metadata {
                    // Progress goes to stderr, so the text on stdout reads whole.
                    eprint!(" [{tokens}/{of}]");
                }
                if run.status.is_final() {
                    println!();
                    println!(
                        "{} after {} ms: {:?}",
                        run.status, run.duration_ms, run.output
                    );
                }
            }
        }
    }

    // A late reader gets the whole stream from its start.
    let tokens: Vec<String> = engine
        .read_stream(run.id(), GenerateText::TOKENS)
        .await?
        .map_ok(|chunk| chunk.value)
        .try_collect()
        .await?;
    println!("read back later: {} tokens", tokens.len());
    Ok(())
}
