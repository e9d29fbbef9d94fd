//! A task is listed at most once in a `realtime_union!`: each task gets one variant.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

#[task(id = "b", payload = u8, output = u8)]
pub struct B;

realtime_union! {
    pub enum Feed {
        A,
        B,
        Again(A),
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::A(run) => println!("{}", run.payload),
            Feed::B(run) => println!("{}", run.payload),
            Feed::Again(run) => println!("{}", run.payload),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
