//! A metadata type needs a JSON Schema, like payloads and outputs: serde alone, as it was
//! once enough, is refused with the derive to add.

use runcast::prelude::*;
use runcast::{Engine, MetadataError};

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub done: u32,
}

#[task(id = "import", metadata = Progress)]
async fn import(rows: u32, ctx: TaskContext) -> Result<u32, MetadataError> {
    ctx.set_metadata(&Progress { done: 0 }).await?;
    ctx.update_metadata_with(|progress| progress.done += 1).await?;
    Ok(rows)
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<Import>().build()?;
    let run = engine.trigger::<Import>(3).await?;
    let done = engine.wait(&run).await?;
    println!("{:?}", done.metadata.map(|progress| progress.done));
    Ok(())
}

fn main() {
    let _ = app;
}
