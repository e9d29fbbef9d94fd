//! A task's payload is stored and sent between processes, so it is an owned type: `String`,
//! not `&str`.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "greet")]
async fn greet(name: &str, _ctx: TaskContext) -> Result<String, String> {
    Ok(format!("hello {name}"))
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Greet>().build()?;
    let run = engine.trigger::<Greet>("ann".to_owned()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Greet::ID, done.output.map(|greeting| greeting.len()));
    Ok(())
}

fn main() {
    let _ = app;
}
