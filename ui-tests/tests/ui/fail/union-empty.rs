//! A `realtime_union!` lists at least one task.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

realtime_union! {
    pub enum Feed {}
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {}
    }
    Ok(())
}

fn main() {
    let _ = app;
}
