//! A task output crosses the wire: it implements `Serialize` and `Deserialize`.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[derive(Debug, schemars::JsonSchema)]
pub struct Receipt {
    pub message_id: String,
}

#[task(id = "send-email", payload = String, output = Receipt)]
pub struct SendEmail;

realtime_union! {
    pub enum Feed {
        SendEmail,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<SendEmail>("ann@example.com".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", SendEmail::ID, done.output.map(|receipt| receipt.message_id));
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
