//! `realtime_union!` reports every bad member in one compile, one error each: here a task
//! listed twice, two variants with one name and a type that is not a task.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

mod other {
    #[runcast::task(id = "other-a", payload = u8, output = u8)]
    pub struct A;
}

pub struct NotATask;

realtime_union! {
    pub enum Feed {
        A,
        A,
        other::A,
        NotATask,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::A(run) => println!("{}", run.payload),
            Feed::NotATask(run) => println!("{}", run.id),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
