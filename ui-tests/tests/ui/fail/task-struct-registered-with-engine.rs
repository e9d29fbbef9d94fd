//! A task declared on a struct runs in another process: an engine can trigger it and
//! subscribe to its runs, but not register it to run it.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "send-email", payload = String, output = bool)]
pub struct SendEmail;

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<SendEmail>().build()?;
    let run = engine.trigger::<SendEmail>("ann@example.com".to_owned()).await?;
    println!("{:?}", engine.wait(&run).await?.output);
    Ok(())
}

fn main() {
    let _ = app;
}
