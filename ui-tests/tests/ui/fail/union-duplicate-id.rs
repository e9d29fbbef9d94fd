//! Two tasks of a `realtime_union!` cannot share an identifier: a run could not tell them
//! apart.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail;

mod legacy {
    #[runcast::task(id = "send-email", payload = String, output = ())]
    pub struct SendEmail;
}

realtime_union! {
    pub enum Feed {
        SendEmail,
        Legacy(legacy::SendEmail),
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut feed = engine.subscribe_to_runs_with_tag::<Feed>(["feed"]).await?;
    while let Some(update) = feed.next().await {
        match update?.run {
            Feed::SendEmail(run) => println!("{:?}", run.output),
            Feed::Legacy(run) => println!("{:?}", run.output),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
