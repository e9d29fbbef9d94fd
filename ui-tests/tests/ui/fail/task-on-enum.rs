//! `#[task]` applies to an `async fn` or a unit struct, not to an enum.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "send-email", payload = String, output = bool)]
pub enum SendEmail {
    Now,
    Later,
}

realtime_union! {
    pub enum Feed {
        SendEmail,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<SendEmail>("ann@example.com".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", SendEmail::ID, done.output.map(|sent| !sent));
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::SendEmail(run) => println!("{:?}", run.payload),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
