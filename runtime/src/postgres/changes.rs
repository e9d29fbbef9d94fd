//! The change log in commit order, and the one reader per process that feeds it to the
//! process's hub.
//!
//! **Commit order.** A plain sequence gives positions in the order transactions *ask* for them,
//! not the order they commit: a reader that saw position 8 committed may later see 7 commit,
//! and skip it. So a transaction takes its positions only under an advisory lock that it holds
//! until it commits (`pg_advisory_xact_lock`), as its last statements: the next transaction to
//! take a position does so after this one's commit is visible. A reader that sees a position
//! therefore sees every smaller one that will ever exist (a rolled-back transaction leaves a
//! gap, never a late row). Writers hold the lock only from their last statements to their
//! commit; `NOTIFY`, which they send too, serializes commits in the same way already.
//!
//! **Reading.** `LISTEN/NOTIFY` only wakes the reader (the notification carries nothing); it
//! then reads the rows after the last position it read, in order, and publishes them to the
//! hub at their positions. A notification lost while the connection was down costs nothing:
//! after reconnecting the reader reads from its position again, so it neither skips nor
//! repeats a change.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Statement};

use super::row;
use super::tx::{Param, Write};
use crate::feed::Scope;
use crate::hub::{Replayed, RunHub, in_scope};
use crate::model::{AnyRun, BatchId, RunId, StoreError};

/// The channel the reader listens on (see [`LOCKED`]).
const CHANNEL: &str = "runcast_changes";

/// The position of the latest change committed (0 if none ever was): every change at or
/// before it is visible to the statement, and every later one commits after it.
pub(super) const LATEST_POSITION: &str = "SELECT greatest((SELECT max(position) FROM runcast_changes), pruned_through) FROM runcast_meta";

/// How many rows the reader reads at once.
const PAGE: i64 = 1_000;

/// How long the reader waits for a notification before it reads anyway: a backstop, not the
/// way changes are found. Longer than any test in this crate's tests, so that they find a
/// lost wake-up (a feed would stall) rather than hide it.
const BACKSTOP: Duration = if cfg!(test) {
    Duration::from_secs(3_600)
} else {
    Duration::from_secs(5)
};

/// How long the reader waits before reconnecting after an error.
const RECONNECT: Duration = Duration::from_secs(1);

/// The start of a statement that writes changes: `WITH` this, as `l`, then the writes, which
/// take their positions (`nextval('runcast_position')`) from a query that reads `l`. It takes
/// the change log's lock (held until the transaction commits; taken again by a transaction
/// that holds it, at no cost) before the positions are taken, and asks for a notification at
/// commit. The lock's key is `0x7275_6e63_6173_7402` (the migrations' and the retention's are
/// `...01` and `...03`).
pub(super) const LOCKED: &str = "WITH l AS (
        SELECT pg_advisory_xact_lock(8247619665714705410), pg_notify('runcast_changes', ''))";

/// A change to append to the log.
pub(super) struct Entry {
    kind: &'static str,
    run: String,
    batch: Option<String>,
    stream: Option<String>,
    data: Option<String>,
}

impl Entry {
    /// A run's snapshot after a change.
    pub(super) fn run(run: &AnyRun, batch: Option<&BatchId>) -> Result<Self, StoreError> {
        Ok(Self {
            kind: "run",
            run: run.id.as_str().to_owned(),
            batch: batch.map(|b| b.as_str().to_owned()),
            stream: None,
            data: Some(serde_json::to_string(run).map_err(StoreError::new)?),
        })
    }

    /// A chunk of stream `stream`.
    pub(super) fn chunk(run: &RunId, stream: &str, data: &RawValue) -> Self {
        Self {
            kind: "chunk",
            run: run.as_str().to_owned(),
            batch: None,
            stream: Some(stream.to_owned()),
            data: Some(data.get().to_owned()),
        }
    }

    /// That a run was forgotten.
    pub(super) fn forgotten(run: &str) -> Self {
        Self {
            kind: "forgotten",
            run: run.to_owned(),
            batch: None,
            stream: None,
            data: None,
        }
    }
}

/// The statement that appends `entries` to the log, in their order, in one go; it returns
/// their positions, in the same order (read them with [`positions`]).
pub(super) fn append<'e>(entries: impl IntoIterator<Item = &'e Entry>) -> Write<'static> {
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        columns.0.push(entry.kind);
        columns.1.push(entry.run.clone());
        columns.2.push(entry.batch.clone());
        columns.3.push(entry.stream.clone());
        columns.4.push(entry.data.clone());
    }
    let params: Vec<Param> = vec![
        Box::new(columns.0),
        Box::new(columns.1),
        Box::new(columns.2),
        Box::new(columns.3),
        Box::new(columns.4),
    ];
    Write::new(&APPEND, params)
}

/// Appends entries to the log (see [`append`]). Its positions are taken in the entries' order
/// (`n` is read once, so `nextval` runs once per entry, after the sort).
static APPEND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{LOCKED}, n AS (
             SELECT u.o, nextval('runcast_position') AS position, u.kind, u.run_id, u.batch_id,
                    u.stream, u.data
             FROM l, unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                 WITH ORDINALITY AS u(kind, run_id, batch_id, stream, data, o)
             ORDER BY u.o),
         i AS (INSERT INTO runcast_changes (position, kind, run_id, batch_id, stream, data)
               SELECT position, kind, run_id, batch_id, stream, data FROM n)
         SELECT position FROM n ORDER BY o"
    )
});

/// The positions that [`append`] returns, in the order of its entries.
pub(super) fn positions(rows: &[tokio_postgres::Row]) -> Vec<u64> {
    rows.iter()
        .map(|row| row.get::<_, i64>(0).cast_unsigned())
        .collect()
}

/// A read-only transaction whose statements all see one snapshot of the database.
async fn snapshot_tx(client: &mut Client) -> Result<tokio_postgres::Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Loads the hub with every run the database keeps, as of one snapshot; returns the position
/// the log is read after from then on.
pub(super) async fn load(client: &mut Client, hub: &RunHub, epoch: u64) -> Result<u64, StoreError> {
    let tx = snapshot_tx(client).await?;
    // The latest position committed: every change at or before it is in this snapshot, and
    // every later one commits after it (commit order).
    let through: i64 = tx.query_one(LATEST_POSITION, &[]).await?.get(0);
    // Each run kept, at its latest change (the log keeps it whatever its age).
    let query = format!(
        "SELECT l.position, {} FROM \"TaskRun\" r
         JOIN LATERAL (SELECT max(position) AS position FROM runcast_changes
                       WHERE run_id = r.id AND kind = 'run') l ON true
         ORDER BY l.position",
        row::COLUMNS
    );
    for row in tx.query(&query, &[]).await? {
        let position: Option<i64> = row.get(0);
        let (record, batch) = row::record_after(&row, 1, epoch)?;
        let position = position.map_or(record.created.position() + 1, i64::cast_unsigned);
        hub.load_run(position, record.snapshot, batch);
    }
    // The latest changes, for subscriptions resumed from a cursor of another process.
    let keep = i64::try_from(hub.history_changes()).unwrap_or(i64::MAX);
    let changes = tx
        .query(
            "SELECT position, batch_id, data FROM (
                 SELECT position, batch_id, data FROM runcast_changes WHERE kind = 'run'
                 ORDER BY position DESC LIMIT $1) latest
             ORDER BY position",
            &[&keep],
        )
        .await?;
    let kept_after = match changes.first() {
        Some(first) if changes.len() as i64 == keep => first.get::<_, i64>(0) - 1,
        _ => tx
            .query_one("SELECT pruned_through FROM runcast_meta", &[])
            .await?
            .get(0),
    };
    let changes = changes.iter().map(|row| {
        let position = row.get::<_, i64>(0).cast_unsigned();
        let run = snapshot(position, row.get(2))?;
        let batch = row.get::<_, Option<&str>>(1).map(BatchId::from);
        Ok((position, Arc::new(run), batch))
    });
    let changes: Vec<_> = changes.collect::<Result<_, StoreError>>()?;
    hub.load_history(kept_after.cast_unsigned(), changes);
    // The chunks of the runs kept, for subscriptions with streams.
    let chunks = tx
        .query(
            "SELECT c.position, c.run_id, c.stream, c.data FROM runcast_changes c
             JOIN \"TaskRun\" r ON r.id = c.run_id
             WHERE c.kind = 'chunk' ORDER BY c.position",
            &[],
        )
        .await?;
    for row in chunks {
        let position = row.get::<_, i64>(0).cast_unsigned();
        let run = RunId::from(row.get::<_, &str>(1));
        let data = chunk(position, row.get(3))?;
        hub.append_chunk_at(
            position,
            &run,
            row.get::<_, Option<&str>>(2).unwrap_or(""),
            data,
        );
    }
    tx.commit().await?;
    let through = through.cast_unsigned();
    hub.advance_to(through);
    Ok(through)
}

/// The most changes a subscription resumed from before its process's history reads back from
/// the log: from further back, it gets the latest snapshot of each run, marked coalesced.
const REPLAY: u64 = 100_000;

/// The changes of runs in `scope` after `after` through `through`, in order, as the log holds
/// them; `None` if it no longer holds them all (the retention pruned some), or they are more
/// than [`REPLAY`]. Changes out of scope are left out as they are read (by the database, for
/// a run or a batch), so only those in scope are held.
pub(super) async fn replay(
    client: &mut Client,
    scope: &Scope,
    after: u64,
    through: u64,
) -> Result<Option<Replayed>, StoreError> {
    if through.saturating_sub(after) > REPLAY {
        return Ok(None);
    }
    // One snapshot: the changes read and what the retention pruned agree.
    let tx = snapshot_tx(client).await?;
    let pruned: i64 = (tx.query_one("SELECT pruned_through FROM runcast_meta", &[]))
        .await?
        .get(0);
    if after < pruned.cast_unsigned() {
        return Ok(None);
    }
    let (filter, key) = match scope {
        Scope::Run(id) => ("AND run_id = $4", Some(id.as_str())),
        Scope::Batch(id) => ("AND batch_id = $4", Some(id.as_str())),
        Scope::Tags(_) => ("", None),
    };
    let statement = tx
        .prepare(&format!(
            "SELECT position, batch_id, data FROM runcast_changes
             WHERE kind = 'run' AND position > $1 AND position <= $2 {filter}
             ORDER BY position LIMIT $3"
        ))
        .await?;
    // A change that takes a run out of a tag scope shows too (as the hub shows it): its run
    // was in scope before it, by its previous change in the range or, for its first, by its
    // latest change at or before `after`, looked up once per run. (A run's or a batch's
    // runs never leave their scope.)
    let previous = match scope {
        Scope::Tags(_) => Some(
            tx.prepare(
                "SELECT r.id, p.position, p.data FROM unnest($1::text[]) AS r(id)
                 LEFT JOIN LATERAL (SELECT position, data FROM runcast_changes
                                    WHERE run_id = r.id AND kind = 'run' AND position <= $2
                                    ORDER BY position DESC LIMIT 1) p ON true",
            )
            .await?,
        ),
        Scope::Run(_) | Scope::Batch(_) => None,
    };
    let mut changes = Vec::new();
    let mut was_in: HashMap<RunId, bool> = HashMap::new();
    let (mut last, through) = (after.cast_signed(), through.cast_signed());
    let after = after.cast_signed();
    loop {
        let rows = match key {
            Some(key) => {
                tx.query(&statement, &[&last, &through, &PAGE, &key])
                    .await?
            }
            None => tx.query(&statement, &[&last, &through, &PAGE]).await?,
        };
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let position = row.get::<_, i64>(0).cast_unsigned();
            let run = snapshot(position, row.get(2))?;
            let batch = row.get::<_, Option<&str>>(1).map(BatchId::from);
            page.push((position, run, batch));
        }
        if let Some(previous) = &previous {
            let new: HashSet<&str> = (page.iter())
                .map(|(_, run, _)| run.id.as_str())
                .filter(|id| !was_in.contains_key(*id))
                .collect();
            let new: Vec<&str> = new.into_iter().collect();
            for row in tx.query(previous, &[&new, &after]).await? {
                let before = match row.get::<_, Option<i64>>(1) {
                    Some(position) => {
                        let run = snapshot(position.cast_unsigned(), row.get(2))?;
                        in_scope(scope, &run, None)
                    }
                    None => false,
                };
                was_in.insert(RunId::from(row.get::<_, &str>(0)), before);
            }
        }
        for (position, run, batch) in page {
            let now_in = in_scope(scope, &run, batch.as_ref());
            let before = was_in.insert(run.id.clone(), now_in).unwrap_or(false);
            if now_in || before {
                changes.push((position, Arc::new(run)));
            }
        }
        match rows.last() {
            Some(row) if rows.len() as i64 == PAGE => last = row.get(0),
            _ => break,
        }
    }
    tx.commit().await?;
    Ok(Some(Replayed {
        changes,
        through: through.cast_unsigned(),
    }))
}

/// The run snapshot of the change at `position`.
fn snapshot(position: u64, data: Option<&str>) -> Result<AnyRun, StoreError> {
    serde_json::from_str(data.unwrap_or_default())
        .map_err(|e| StoreError::new(format!("change {position} holds no run snapshot: {e}")))
}

/// The chunk of the change at `position`.
fn chunk(position: u64, data: Option<&str>) -> Result<Arc<RawValue>, StoreError> {
    let data = data.unwrap_or_default().to_owned();
    RawValue::from_string(data)
        .map(Arc::from)
        .map_err(|e| StoreError::new(format!("change {position} holds no chunk: {e}")))
}

/// Reads the rows after `after` (at most a page), publishes each to the hub, and returns the
/// position of the last one read (`after` if none), and whether the page was full.
async fn read_page(
    client: &Client,
    statement: &Statement,
    hub: &RunHub,
    after: u64,
    observe: &(impl Fn(&AnyRun) + Sync),
) -> Result<(u64, bool), StoreError> {
    let rows = client
        .query(statement, &[&after.cast_signed(), &PAGE])
        .await?;
    let full = rows.len() as i64 == PAGE;
    let mut last = after;
    for row in rows {
        let position = row.get::<_, i64>(0).cast_unsigned();
        let kind: &str = row.get(1);
        let run = RunId::from(row.get::<_, &str>(2));
        let data: Option<&str> = row.get(5);
        match kind {
            "run" => {
                let snapshot = snapshot(position, data)?;
                let batch = row.get::<_, Option<&str>>(3).map(BatchId::from);
                observe(&snapshot);
                hub.publish_at(position, Arc::new(snapshot), batch);
            }
            "chunk" => {
                let stream: String = row.get::<_, Option<String>>(4).unwrap_or_default();
                hub.append_chunk_at(position, &run, &stream, chunk(position, data)?);
            }
            _ => {
                hub.advance_to(position);
                drop(hub.remove(&run));
            }
        }
        last = position;
    }
    Ok((last, full))
}

/// Reads the log after `after` into `hub`, for as long as the task runs (its store aborts it
/// when dropped): woken by notifications, reconnecting after errors, never skipping or
/// repeating a change. `observe` sees each run snapshot before the hub publishes it.
pub(super) async fn read(
    config: Config,
    hub: RunHub,
    mut after: u64,
    progress: watch::Sender<Option<u64>>,
    observe: impl Fn(&AnyRun) + Sync,
) {
    loop {
        if let Err(error) = follow(&config, &hub, &mut after, &progress, &observe).await {
            tracing::warn!(
                %error, retry_in = ?RECONNECT, after,
                "the change reader lost Postgres; it will reconnect"
            );
            tokio::time::sleep(RECONNECT).await;
        }
    }
}

/// One connection's worth of [`read`], until the connection fails.
async fn follow(
    config: &Config,
    hub: &RunHub,
    after: &mut u64,
    progress: &watch::Sender<Option<u64>>,
    observe: &(impl Fn(&AnyRun) + Sync),
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let woken = Arc::new(Notify::new());
    // Drives the connection, and turns its notifications into wake-ups; ends with it (when
    // the client is dropped, or the server goes away), waking the reader a last time.
    tokio::spawn({
        let woken = Arc::clone(&woken);
        async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => woken.notify_one(),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "the change reader's connection failed");
                        break;
                    }
                }
            }
            woken.notify_one();
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let page = client
        .prepare(
            "SELECT position, kind, run_id, batch_id, stream, data FROM runcast_changes
             WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .await?;
    loop {
        let (last, full) = read_page(&client, &page, hub, *after, observe).await?;
        if last != *after {
            *after = last;
            progress.send_replace(Some(last));
        }
        if full {
            continue;
        }
        // Every change committed after this read began wakes the reader again: its
        // notification comes after its commit, and a wake-up that finds the reader busy is
        // kept for its next wait.
        if client.is_closed() {
            return Err(StoreError::new("the change reader's connection closed"));
        }
        let _ = tokio::time::timeout(BACKSTOP, woken.notified()).await;
    }
}
