//! A `realtime_union!` lists task types: the struct `#[task]` declares for a task function,
//! not the function itself.

use futures::StreamExt;
use runcast::prelude::*;
use runcast::Engine;

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> Result<u32, String> {
    Ok(width)
}

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail;

realtime_union! {
    pub enum Media {
        resize_image,
        SendEmail,
    }
}

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let mut media = engine.subscribe_to_runs_with_tag::<Media>(["media"]).await?;
    while let Some(update) = media.next().await {
        match update?.run {
            Media::resize_image(run) => println!("{}", run.payload),
            Media::SendEmail(run) => println!("{}", run.payload),
        }
    }
    Ok(())
}

fn main() {
    let _ = app;
}
