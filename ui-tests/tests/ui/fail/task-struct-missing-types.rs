//! `#[task(id = "...")]` on a struct needs its payload and output types too.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "send-email")]
pub struct SendEmail;

realtime_union! {
    pub enum Mail {
        SendEmail,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<SendEmail>("ann@example.com".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", SendEmail::ID, done.output.map(|sent| !sent));
    let mut mail = engine.subscribe_to_runs_with_tag::<Mail>(["mail"]).await?;
    while let Some(update) = mail.next().await {
        match update?.run {
            Mail::SendEmail(run) => println!("{}", run.payload.len()),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
