//! A task's output is stored and sent between processes, so it is an owned type: `String`,
//! not `&'static str`.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "greeting")]
async fn greeting(hour: u8) -> Result<&'static str, String> {
    Ok(if hour < 12 { "good morning" } else { "good evening" })
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Greeting>().build()?;
    let run = engine.trigger::<Greeting>(9).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Greeting::ID, done.output.map(|greeting| greeting.len()));
    Ok(())
}

fn main() {
    let _ = app;
}
