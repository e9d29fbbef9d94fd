//! `#[task]` without parentheses on a struct: its identifier, payload and output are
//! missing, which is one mistake and one error.

use runcast::prelude::*;
use runcast::Engine;

#[task]
pub struct SendEmail;

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<SendEmail>("ann@example.com".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", SendEmail::ID, done.output.map(|sent| !sent));
    Ok(())
}

fn main() {
    let _ = app;
}
