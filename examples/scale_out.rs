//! Scale-out over Postgres: this program triggers runs and watches every change of them,
//! while workers in other processes execute them, all through one database.
//!
//! ```sh
//! DATABASE_URL=postgres://user:password@localhost/dbname cargo run --example scale_out
//! ```
//!
//! starts two worker processes (this program again, as `scale_out worker`), triggers a dozen
//! runs from this one, which only declares the task, prints each change as the workers report
//! it, and stops the workers. `cargo run --example scale_out -- worker` starts one more worker
//! by hand: start as many as you like, on as many hosts as reach the database.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::{Child, Command};
use std::time::Duration;

use futures::StreamExt;
use runcast::prelude::*;
use runcast::{Engine, MetadataOp, PostgresStore, TriggerOptions};

/// Makes a thumbnail `width` pixels wide (here: waits a little), and tells which process did.
#[task(id = "thumbnail")]
async fn thumbnail(width: u32, ctx: TaskContext) -> Result<u64, String> {
    let worker = MetadataOp::Set("worker".into(), std::process::id().into());
    ctx.update_metadata([worker])
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(u64::from(width) * 100)
}

realtime_union! {
    enum Demo {
        Thumbnail,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("set DATABASE_URL to a Postgres database (see the README's Postgres section)");
        std::process::exit(2);
    };
    let store = PostgresStore::connect(&url).await?;
    match std::env::args().nth(1).as_deref() {
        Some("worker") => work(store).await,
        None => produce(store).await,
        Some(other) => Err(format!("unknown mode `{other}`: nothing, or `worker`").into()),
    }
}

/// A worker: runs `thumbnail` attempts until it is stopped.
async fn work(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    let _engine = Engine::builder()
        .postgres(store)
        .task::<Thumbnail>()
        .concurrency(4)
        .build()?;
    println!("worker {} ready", std::process::id());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The producer: starts two workers, triggers runs, and follows them to the end.
async fn produce(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    let workers: Vec<Child> = (0..2)
        .map(|_| Command::new(std::env::current_exe()?).arg("worker").spawn())
        .collect::<Result<_, _>>()?;
    // This process runs no task: it declares `thumbnail` to trigger and decode its runs.
    let engine = Engine::builder()
        .postgres(store)
        .declare::<Thumbnail>()
        .build()?;
    let mut feed = engine
        .subscribe_to_runs_with_tag::<Demo>(["scale-out"])
        .await?;
    const RUNS: u32 = 12;
    let tagged = TriggerOptions::default().tag("scale-out");
    let runs = (1..=RUNS).map(|n| (n * 64, tagged.clone()));
    engine.batch_trigger::<Thumbnail>(runs).await?;
    let mut completed = 0;
    while completed < RUNS {
        let Some(update) = feed.next().await else {
            break;
        };
        let Demo::Thumbnail(run) = update?.run;
        let worker = (run.metadata.as_ref())
            .and_then(|metadata| metadata.get("worker"))
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        println!(
            "{} {:<10} width {:>4} worker {worker:>7} output {:?}",
            run.id, run.status, run.payload, run.output
        );
        completed += u32::from(run.status == RunStatus::Completed);
    }
    for mut worker in workers {
        worker.kill()?;
        worker.wait()?;
    }
    Ok(())
}
