//! A `realtime_union!` enum cannot be generic: its variants are fixed tasks.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

realtime_union! {
    pub enum Feed<T> {
        A,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::A(run) => println!("{}", run.payload),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
