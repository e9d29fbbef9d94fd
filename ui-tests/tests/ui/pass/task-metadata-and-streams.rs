//! A task function writing its typed metadata (set, changed in place, read back) and its own
//! streams, run in a test through a context of its own.

use runcast::{StreamWriter, TaskContext, task};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub done: u32,
    pub of: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    pub n: u32,
}

#[task(id = "import", metadata = Progress, streams(log = String, rows = Row))]
async fn import(
    rows: u32,
    ctx: TaskContext,
) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    ctx.set_metadata(&Progress { done: 0, of: rows }).await?;
    let log: StreamWriter<String> = ctx.stream(Import::LOG);
    for n in 0..rows {
        ctx.stream(Import::ROWS).append(&Row { n }).await?;
        ctx.update_metadata_with(|progress| progress.done += 1).await?;
    }
    log.append(&format!("imported {rows} rows")).await?;
    let progress: Option<Progress> = ctx.metadata().await?;
    Ok(progress.map_or(0, |progress| progress.done))
}

fn main() {
    futures::executor::block_on(async {
        let ctx = TaskContext::<Import>::new("run_1".into());
        assert_eq!(import(3, ctx.clone()).await.unwrap(), 3);
        let progress = ctx.metadata().await.unwrap();
        assert_eq!(progress, Some(Progress { done: 3, of: 3 }));
    });
}
