//! `realtime_union!` declares an enum, not a struct. The enum is still declared, so its uses
//! add no errors.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

realtime_union! {
    pub struct Feed {
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
