//! The catch-all `_ => Variant` of a `realtime_union!` comes last, as in a `match`.

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
        _ => Other,
        B,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::A(run) => println!("{}", run.payload),
            Feed::B(run) => println!("{}", run.payload),
            Feed::Other(run) => println!("{}", run.task_identifier),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
