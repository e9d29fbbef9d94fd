//! Two tasks tagged for one user, one typed feed of that tag, and an exhaustive `match`.
//!
//! Run with `cargo run --example tag_feed`.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use futures::StreamExt;
use runcast::prelude::*;
use runcast::{Engine, TriggerOptions};
use serde::{Deserialize, Serialize};

/// A welcome email.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Welcome {
    to: String,
}

#[task(id = "send-welcome")]
async fn send_welcome(payload: Welcome, _ctx: TaskContext) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(format!("msg_{}", payload.to.len()))
}

/// A report over some days.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Report {
    days: u32,
}

/// What a report produced.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct ReportFile {
    rows: u64,
    url: String,
}

#[task(id = "build-report")]
async fn build_report(payload: Report, _ctx: TaskContext) -> Result<ReportFile, String> {
    tokio::time::sleep(Duration::from_millis(40)).await;
    Ok(ReportFile {
        rows: u64::from(payload.days) * 1_000,
        url: "https://reports.example/r1.csv".into(),
    })
}

realtime_union! {
    /// Everything that happens for one user.
    enum UserRun {
        SendWelcome,
        BuildReport,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .task::<SendWelcome>()
        .task::<BuildReport>()
        .build()?;
    let mut feed = engine
        .subscribe_to_runs_with_tag::<UserRun>(["user:42"])
        .await?;

    let user = TriggerOptions::default().tag("user:42");
    engine
        .trigger_with::<SendWelcome>(
            Welcome {
                to: "ada@example.com".into(),
            },
            user.clone(),
        )
        .await?;
    engine
        .trigger_with::<BuildReport>(Report { days: 7 }, user)
        .await?;

    // A tag feed never ends on its own: stop reading once both runs finished.
    let mut finished = 0;
    while finished < 2 {
        let Some(update) = feed.next().await else {
            break;
        };
        let update = update?;
        // Exhaustive: adding a task to `UserRun` makes this `match` fail to compile until
        // it handles the new variant.
        match &update.run {
            UserRun::SendWelcome(run) => {
                println!(
                    "welcome to {} {}: {:?}",
                    run.payload.to, run.status, run.output
                );
            }
            UserRun::BuildReport(run) => match &run.output {
                Some(file) => println!("report {}: {} rows at {}", run.status, file.rows, file.url),
                None => println!("report over {} days {}", run.payload.days, run.status),
            },
        }
        if update.run.status().is_final() {
            finished += 1;
        }
    }
    Ok(())
}
