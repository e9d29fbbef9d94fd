//! `#[task]` arguments are given with `=`, not with a struct field's `:`; one error for the
//! mistake, however many arguments repeat it.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "send-email", payload: String, output: bool)]
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
