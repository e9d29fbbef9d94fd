//! Tasks the load programs share.

#![allow(dead_code)] // Each load program uses some of it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runcast::{
    Engine, RunFeed, RunId, RunStatus, TaskContext, TriggerOptions, realtime_union, task,
};
use serde::{Deserialize, Serialize};

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

/// CPU time process `pid` (or `self`) has used so far, on all its threads (Linux; in clock
/// ticks of 10 ms): the work a section did, whatever else ran on the machine meanwhile.
pub(crate) fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime: the 12th and 13th fields after the command name in parentheses.
    let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = fields
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Resident memory of process `pid` (or `self`), in bytes (Linux).
pub(crate) fn rss_of(pid: &str) -> usize {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

// Three tasks of an online shop, and their union: the rows the decoding benchmarks read.

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Email {
    pub(crate) to: String,
    pub(crate) subject: String,
    pub(crate) body: String,
    pub(crate) attempts: u32,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Receipt {
    pub(crate) message_id: String,
    pub(crate) accepted: bool,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Resize {
    pub(crate) url: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) format: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Resized {
    pub(crate) url: String,
    pub(crate) bytes: u64,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Charge {
    pub(crate) customer: String,
    pub(crate) cents: i64,
    pub(crate) currency: String,
    pub(crate) lines: Vec<Line>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Line {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Charged {
    pub(crate) id: String,
    pub(crate) captured: bool,
}

#[task(id = "send-email", payload = Email, output = Receipt)]
pub(crate) struct SendEmail;

#[task(id = "resize-image", payload = Resize, output = Resized)]
pub(crate) struct ResizeImage;

#[task(id = "charge-card", payload = Charge, output = Charged)]
pub(crate) struct ChargeCard;

realtime_union! {
    pub(crate) enum Union {
        SendEmail,
        ResizeImage,
        ChargeCard,
    }
}
