//! A task payload has a JSON Schema: it implements `schemars::JsonSchema`.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
}

#[task(id = "send-email", payload = Email, output = bool)]
pub struct SendEmail;

realtime_union! {
    pub enum Feed {
        SendEmail,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<SendEmail>(Email { to: "ann@example.com".into() }).await?;
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
