//! Tasks the load programs share.

#![allow(dead_code)] // Each load program uses some of it.

use std::time::Duration;

use runcast::{Engine, RunFeed, RunId, RunStatus, TaskContext, TriggerOptions, task};

#[task(id = "noop")]
pub(crate) async fn noop(n: u64, _ctx: TaskContext) -> Result<u64, String> {
    Ok(n)
}

/// Stays executing until canceled: a live run whose metadata the benchmarks change.
#[task(id = "hold")]
pub(crate) async fn hold(_: (), ctx: TaskContext) -> Result<(), String> {
    ctx.canceled().await;
    Ok(())
}

/// `runs` live runs of `hold`, tagged `tag`, executing.
pub(crate) async fn held_runs(engine: &Engine, tag: &str, runs: usize) -> Vec<RunId> {
    let tagged = TriggerOptions::default().tag(tag);
    let mut ids = Vec::new();
    for _ in 0..runs {
        let handle = engine
            .trigger_with::<Hold>((), tagged.clone())
            .await
            .unwrap();
        ids.push(handle.id().clone());
    }
    for id in &ids {
        while engine.latest(id).await.unwrap().run.status != RunStatus::Executing {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    ids
}
