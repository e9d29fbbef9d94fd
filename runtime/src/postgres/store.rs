//! [`RunStore`] over Postgres: each operation one transaction (the changes of runs, in groups:
//! see `group`), each change written to the run table and the change log, and reaching this
//! process's hub through its change reader.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Mutex;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::PostgresStore;
use super::changes::{self, Entry};
use super::group::{Groups, Locked};
use super::row::{self, RowWrite, Written, to_column};
use super::tx::{self, Tx, Write};
use crate::engine::StreamError;
use crate::engine::catalog::Published;
use crate::engine::store::{
    Created, IdempotencyKey, Record, RunStore, Stop, Visible, admit_chunk, apply,
};
use crate::engine::timers::Timer;
use crate::feed::Scope;
use crate::hub::{HubConfig, Replayed, RunHub};
use crate::model::{AnyRun, BatchId, Cursor, RunId, RunStatus, StoreError, Timestamp};

/// The advisory lock of forgetting finished runs: one process at a time does it.
const FORGET_LOCK: i64 = 0x7275_6e63_6173_7403;

/// A [`PostgresStore`] serving an engine: its hub, fed by the change reader it started.
pub(crate) struct Started {
    store: PostgresStore,
    hub: RunHub,
    retention: Duration,
    /// Names this process in the leases it holds.
    owner: Owner,
    /// The position the reader has published through; `None` until the hub is loaded.
    progress: watch::Receiver<Option<u64>>,
    /// Woken when a run is queued, here or elsewhere (see [`RunStore::work`]).
    work: Arc<Notify>,
    /// The groups its changes commit in.
    groups: Arc<Groups>,
    /// Attempts to stop, until the engine takes them.
    canceled: Mutex<Option<mpsc::UnboundedReceiver<Stop>>>,
    /// The change reader and the lease renewer.
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Started {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How long a claimed run is held for the process that claimed it before it starts: a process
/// claims runs ahead of its free slots (see `engine::claims`), and those that wait longer
/// than this may be claimed by another process (the first to start one attempts it).
const CLAIM_HOLD: Duration = Duration::from_secs(5);

/// The shortest time between two rounds of the retention in a process: a finished run is
/// forgotten at most this late.
const FORGET_EVERY: Duration = Duration::from_secs(1);

/// How often a process looks for work and due timers when nothing woke it.
const POLL: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Starts serving an engine on the current runtime: a hub for the database's history,
    /// loaded with the runs it keeps, then fed by a change reader.
    pub(crate) fn start(self, config: HubConfig, retention: Duration) -> Started {
        let hub = RunHub::with_epoch(config, self.inner.epoch);
        let owner = Owner::default();
        let (sender, progress) = watch::channel(None);
        let work = Arc::new(Notify::new());
        let (cancel, canceled) = mpsc::unbounded_channel();
        let lost = cancel.clone();
        let observe = {
            let work = Arc::clone(&work);
            move |run: &AnyRun| match run.status {
                RunStatus::Queued | RunStatus::Reattempting => work.notify_one(),
                RunStatus::Canceled => drop(cancel.send(Stop::Canceled(run.id.clone()))),
                _ => {}
            }
        };
        let reader = tokio::spawn({
            let (store, hub) = (self.clone(), hub.clone());
            async move { store.read_changes(hub, sender, observe).await }
        });
        let renewer = tokio::spawn(self.clone().renew_leases(owner.clone(), lost));
        let groups = Groups::new(self.inner.pool.clone(), self.inner.epoch);
        Started {
            store: self,
            hub,
            retention,
            owner,
            progress,
            work,
            groups,
            canceled: Mutex::new(Some(canceled)),
            tasks: [reader, renewer],
        }
    }

    /// When a lease taken or renewed now runs out.
    fn lease_until(&self) -> jiff::civil::DateTime {
        row::column_after(Timestamp::now(), self.lease)
    }

    /// Renews the leases of the attempts this process executes, three times a lease. Once
    /// two thirds of a lease passed since the last renewal, with the database unreachable or
    /// failing, the attempts here are stopped (`lost`, at every failure from then on): their
    /// leases may run out before the next renewal, and another process then attempts their
    /// runs again.
    async fn renew_leases(self, owner: Owner, lost: mpsc::UnboundedSender<Stop>) {
        let every = self.lease / 3;
        // When the leases renewed last were asked for.
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let asked = tokio::time::Instant::now();
            let until = self.lease_until();
            let renew = Write::new(
                "UPDATE \"TaskRun\" SET runcast_lease_until = $2
                 WHERE runcast_lease_owner = $1 AND status = 'EXECUTING'",
                vec![Box::new(owner.name()), Box::new(until)],
            );
            let renewing = async { renew.run(&*self.inner.pool.get().await?).await };
            // A server that does not answer fails too, in time to stop the attempts.
            let wait = (renewed + every * 2)
                .saturating_duration_since(asked)
                .max(every / 2);
            match tokio::time::timeout(wait, renewing).await {
                Ok(Ok(_)) => renewed = asked,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not renew this process's leases; trying again");
                }
                Err(_) => {
                    tracing::warn!("could not renew this process's leases in time; trying again")
                }
            }
            if renewed.elapsed() >= every * 2 {
                // The leases held so far are never renewed again: they run out, and their
                // runs are attempted again (here too), while their attempts here stop.
                owner.rename();
                if lost.send(Stop::LeaseLost).is_err() {
                    return;
                }
            }
        }
    }

    /// Loads the hub (retrying until the database answers), then follows the change log.
    async fn read_changes(
        self,
        hub: RunHub,
        progress: watch::Sender<Option<u64>>,
        observe: impl Fn(&AnyRun) + Send + Sync + 'static,
    ) {
        let through = loop {
            match self.load(&hub).await {
                Ok(through) => break through,
                Err(error) => {
                    tracing::warn!(%error, "could not load the runs from Postgres; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        progress.send_replace(Some(through));
        let config = self.inner.config.clone();
        changes::read(config, hub, through, progress, observe).await;
    }

    async fn load(&self, hub: &RunHub) -> Result<u64, StoreError> {
        let (mut client, connection) = self.inner.config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let loaded = changes::load(&mut client, hub, self.inner.epoch).await;
        drop(client);
        let _ = driver.await;
        loaded
    }
}

impl Started {
    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.store.inner.pool.get().await?)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.store.inner.pool
    }

    fn cursor(&self, position: u64) -> Cursor {
        Cursor::new(self.store.inner.epoch, position)
    }

    /// Waits until the hub holds the change at `position` (and every one before it).
    async fn published(&self, position: u64) {
        let mut progress = self.progress.clone();
        // The reader ends only with the store.
        let _ = progress
            .wait_for(|p| p.is_some_and(|p| p >= position))
            .await;
    }

    /// The writes of a changed record: to its row (what subscribers see, and the rest), and the
    /// log entry of its snapshot (written after the row). A run that starts
    /// executing (`started`) is leased to this process; a run that stops executing is leased
    /// to none.
    fn change(
        &self,
        record: &Record,
        batch: Option<&BatchId>,
        (finished, started): (bool, bool),
    ) -> Result<(RowWrite, Entry), StoreError> {
        let forget_at = finished
            .then(|| Timestamp::now().checked_add(self.retention).map(to_column))
            .flatten();
        let lease = started.then(|| (self.owner.name(), self.lease_until()));
        let row = RowWrite::visible(record, forget_at, lease)?;
        Ok((row, Entry::run(&record.snapshot, batch)?))
    }

    fn lease_until(&self) -> jiff::civil::DateTime {
        self.store.lease_until()
    }

    /// When a claim taken now runs out, unless the run starts: then its lease is set.
    fn claim_until(&self) -> jiff::civil::DateTime {
        row::column_after(Timestamp::now(), CLAIM_HOLD.min(self.store.lease))
    }

    /// Numbers new runs per task (1, 2, 3... in the order given). Each task's counter row
    /// stays locked until the transaction ends: they are taken in the tasks' order, and before
    /// the change log's lock, so that writers never wait for each other in a cycle.
    async fn number(&self, tx: &Tx, records: &mut [&mut Record]) -> Result<(), StoreError> {
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for record in records.iter() {
            *counts
                .entry(record.snapshot.task_identifier.to_string())
                .or_default() += 1;
        }
        let mut next: BTreeMap<String, i32> = BTreeMap::new();
        for (task, count) in counts {
            let reserve = Write::new(
                "INSERT INTO runcast_task_numbers (task, last) VALUES ($1, $2)
                 ON CONFLICT (task) DO UPDATE SET last = runcast_task_numbers.last + $2
                 RETURNING last",
                vec![Box::new(task.clone()), Box::new(count)],
            );
            let rows = tx.run(&reserve).await?;
            let last: i32 = rows.first().map_or(count, |row| row.get(0));
            next.insert(task, last - count + 1);
        }
        for record in records.iter_mut() {
            let number = next.get_mut(&*record.snapshot.task_identifier);
            let number = number.map_or(0, |n| std::mem::replace(n, *n + 1));
            record.run().number = u64::try_from(number).unwrap_or_default();
        }
        Ok(())
    }

    /// The write that stores new runs, numbered, in one statement; it returns their
    /// positions, in order.
    fn insert(
        records: &[(usize, Record)],
        batch: Option<&BatchId>,
    ) -> Result<Write<'static>, StoreError> {
        let mut rows = Vec::with_capacity(records.len());
        let mut snapshots = Vec::with_capacity(records.len());
        for (_, record) in records {
            let run = &*record.snapshot;
            rows.push(NewRun {
                written: Written::of(record)?,
                friendly_id: run.id.as_str(),
                task: &run.task_identifier,
                number: i32::try_from(run.number).unwrap_or(i32::MAX),
                created_at: to_column(run.created_at),
                is_test: run.is_test,
                ttl: run.ttl.as_deref(),
                payload: run.payload.as_deref().map(RawValue::get),
                idempotency_key: run.idempotency_key.as_deref(),
                batch: batch.map(BatchId::as_str),
                max_attempts: i32::try_from(record.max_attempts).unwrap_or(i32::MAX),
                max_duration_ms: (record.max_duration)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                expire_at: record.expire_at.map(to_column),
            });
            snapshots.push(serde_json::to_string(run).map_err(StoreError::new)?);
        }
        let rows = serde_json::to_string(&rows).map_err(StoreError::new)?;
        Ok(Write::new(
            &INSERT,
            vec![Box::new(rows), Box::new(snapshots)],
        ))
    }

    /// The run an idempotency key started and still holds, with its creation; or `None`,
    /// having made the key `record`'s.
    async fn claim_key(
        &self,
        tx: &Tx,
        record: &Record,
        ttl: Duration,
    ) -> Result<Option<Created>, StoreError> {
        let Some((task, key)) = &record.idempotency else {
            return Ok(None);
        };
        let now = record.snapshot.created_at;
        let expires = row::column_after(now, ttl);
        let id = record.snapshot.id.as_str().to_owned();
        let claim = Write::new(
            "INSERT INTO runcast_idempotency (task, key, run_id, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (task, key) DO UPDATE
                 SET run_id = excluded.run_id, expires_at = excluded.expires_at
                 WHERE runcast_idempotency.expires_at <= $5
             RETURNING run_id",
            vec![
                Box::new(task.clone()),
                Box::new(key.clone()),
                Box::new(id.clone()),
                Box::new(expires),
                Box::new(to_column(now)),
            ],
        );
        if !tx.run(&claim).await?.is_empty() {
            return Ok(None);
        }
        // A new statement, so a new snapshot: it sees the run of a key that a concurrent
        // transaction claimed and committed while this one waited for it.
        let existing = Write::new(
            "SELECT r.id, r.runcast_created FROM runcast_idempotency k
             JOIN \"TaskRun\" r ON r.id = k.run_id WHERE k.task = $1 AND k.key = $2",
            vec![Box::new(task.clone()), Box::new(key.clone())],
        );
        let Some(existing) = tx.run(&existing).await?.into_iter().next() else {
            // The key's run is no longer kept: the key is this run's now.
            let take = Write::new(
                "UPDATE runcast_idempotency SET run_id = $3, expires_at = $4
                 WHERE task = $1 AND key = $2",
                vec![
                    Box::new(task.clone()),
                    Box::new(key.clone()),
                    Box::new(id),
                    Box::new(expires),
                ],
            );
            tx.run(&take).await?;
            return Ok(None);
        };
        let id = RunId::from(existing.get::<_, String>(0));
        let created = self.cursor(existing.get::<_, i64>(1).cast_unsigned());
        Ok(Some(Created::Existing(id, created.before())))
    }
}

/// A new run's row, under its columns' names (see [`INSERT`]).
#[derive(Serialize)]
struct NewRun<'r> {
    #[serde(flatten)]
    written: Written,
    #[serde(rename = "friendlyId")]
    friendly_id: &'r str,
    #[serde(rename = "taskIdentifier")]
    task: &'r str,
    number: i32,
    #[serde(rename = "createdAt")]
    created_at: jiff::civil::DateTime,
    #[serde(rename = "isTest")]
    is_test: bool,
    ttl: Option<&'r str>,
    payload: Option<&'r str>,
    #[serde(rename = "idempotencyKey")]
    idempotency_key: Option<&'r str>,
    #[serde(rename = "batchId")]
    batch: Option<&'r str>,
    #[serde(rename = "runcast_max_attempts")]
    max_attempts: i32,
    #[serde(rename = "runcast_max_duration_ms")]
    max_duration_ms: Option<i64>,
    #[serde(rename = "runcast_expire_at")]
    expire_at: Option<jiff::civil::DateTime>,
}

/// The columns [`INSERT`] writes from a [`NewRun`], besides `runcast_created`.
const NEW_COLUMNS: &str = r#"id, "friendlyId", status, "updatedAt", "startedAt", "delayUntil",
    "queuedAt", "expiredAt", "completedAt", "usageDurationMs", "costInCents",
    "baseCostInCents", output, metadata, "runTags", error, "realtimeStreams", runcast_attempts,
    runcast_stream_bytes, runcast_attempt_started_at, runcast_retry_at, "taskIdentifier",
    number, "createdAt", "isTest", ttl, payload, "idempotencyKey", "batchId",
    runcast_max_attempts, runcast_max_duration_ms, runcast_expire_at"#;

/// Stores new runs: `$1`, their rows as a JSON array of [`NewRun`]s, read by column name;
/// `$2`, their snapshots, in the same order. Each run's creation takes the next position, in
/// their order (`n` is read once, so `nextval` runs once per run, after the sort), which is
/// also its `runcast_created`. Returns the positions, in order.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}, n AS (
             SELECT r.*, nextval('runcast_position') AS at
             FROM l, jsonb_populate_recordset(NULL::\"TaskRun\", $1::text::jsonb)
                 WITH ORDINALITY AS r
             ORDER BY r.ordinality),
         i AS (INSERT INTO \"TaskRun\" ({NEW_COLUMNS}, runcast_created)
               SELECT {NEW_COLUMNS}, at FROM n),
         c AS (INSERT INTO runcast_changes (position, kind, run_id, batch_id, data)
               SELECT n.at, 'run', n.id, n.\"batchId\", s.data
               FROM n JOIN unnest($2::text[]) WITH ORDINALITY AS s(data, o)
                   ON s.o = n.ordinality)
         SELECT at FROM n ORDER BY ordinality",
        changes::LOCKED
    )
});

impl RunStore for Started {
    fn hub(&self) -> &RunHub {
        &self.hub
    }

    async fn caught_up(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(changes::LATEST_POSITION).await?;
        let row = client.query_one(&statement, &[]).await?;
        drop(client);
        self.published(row.get::<_, i64>(0).cast_unsigned()).await;
        Ok(())
    }

    async fn create(
        &self,
        runs: Vec<Record>,
        batch: Option<BatchId>,
        idempotency_ttl: Duration,
    ) -> Result<Vec<Created>, StoreError> {
        let tx = Tx::begin(self.pool()).await?;
        let ids: Vec<RunId> = runs.iter().map(|r| r.snapshot.id.clone()).collect();
        // Keys used earlier in this call: two runs with one key are one run.
        let mut first_of: HashMap<IdempotencyKey, usize> = HashMap::new();
        let mut same_as = vec![None; runs.len()];
        for (index, record) in runs.iter().enumerate() {
            if let Some(key) = &record.idempotency {
                match first_of.get(key) {
                    Some(&earlier) => same_as[index] = Some(earlier),
                    None => drop(first_of.insert(key.clone(), index)),
                }
            }
        }
        // Keys are claimed in one order, (task, key), whatever the order of the runs: two calls
        // claiming the same keys never wait for each other in a cycle.
        let mut keyed: Vec<(IdempotencyKey, usize)> = first_of.into_iter().collect();
        keyed.sort_unstable();
        let mut existing = HashMap::new();
        for (_, index) in keyed {
            if let Some(created) = self.claim_key(&tx, &runs[index], idempotency_ttl).await? {
                existing.insert(index, created);
            }
        }
        let mut slots = Vec::with_capacity(runs.len());
        let mut new = Vec::new();
        for (index, record) in runs.into_iter().enumerate() {
            if let Some(earlier) = same_as[index] {
                slots.push(Slot::SameAs(earlier));
            } else if let Some(created) = existing.remove(&index) {
                slots.push(Slot::Done(created));
            } else {
                new.push((index, record));
                // Replaced once the run is stored.
                slots.push(Slot::Done(Created::New(Cursor::START)));
            }
        }
        let mut records: Vec<&mut Record> = new.iter_mut().map(|(_, r)| r).collect();
        self.number(&tx, &mut records).await?;
        // Sent at once with the commit: the change log's lock, which it takes, is held for
        // one statement and the commit. (Only runs that exist already: nothing to write.)
        let insert = (!new.is_empty())
            .then(|| Self::insert(&new, batch.as_ref()))
            .transpose()?;
        let positions =
            changes::positions(&tx.commit_with(&Vec::from_iter(&insert)).await?.concat());
        if positions.len() != new.len() {
            return Err(StoreError::new(
                "new runs were stored without their positions",
            ));
        }
        for ((index, _), position) in new.iter().zip(positions) {
            slots[*index] = Slot::Done(Created::New(self.cursor(position).before()));
        }
        Ok(slots
            .iter()
            .map(|slot| slot.created(&slots, &ids))
            .collect())
    }

    async fn change_if<R: Send, E: From<StoreError> + Send>(
        &self,
        id: &RunId,
        when: impl FnOnce(RunStatus) -> bool + Send,
        change: impl FnOnce(&mut Record) -> Result<R, E> + Send,
    ) -> Result<Option<R>, E> {
        let (locked, found) = Locked::run(&self.groups, id).await?;
        let Some((mut record, batch)) = found.filter(|(r, _)| when(r.snapshot.status)) else {
            locked.release().await?;
            return Ok(None);
        };
        let hidden = (record.attempts, record.stream_bytes, record.attempt_started);
        let was_executing = record.snapshot.status == RunStatus::Executing;
        let (result, visible) = match apply(&mut record, change) {
            Ok(applied) => applied,
            Err(error) => {
                // Nothing was written.
                locked.release().await?;
                return Err(error);
            }
        };
        let started = !was_executing && record.snapshot.status == RunStatus::Executing;
        // Published by the change reader; reads through the hub wait for it (`caught_up`).
        match visible {
            Visible::Yes { finished } => {
                let (row, log) = self.change(&record, batch.as_ref(), (finished, started))?;
                locked.commit(vec![row], vec![log]).await?;
            }
            Visible::No
                if hidden != (record.attempts, record.stream_bytes, record.attempt_started) =>
            {
                locked
                    .commit(vec![RowWrite::hidden(&record)?], Vec::new())
                    .await?;
            }
            Visible::No => locked.release().await?,
        }
        Ok(Some(result))
    }

    async fn snapshot(&self, id: &RunId) -> Result<Option<Arc<AnyRun>>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&row::SELECT).await?;
        let Some(found) = client.query_opt(&statement, &[&id.as_str()]).await? else {
            return Ok(None);
        };
        let (record, _) = row::record(&found, self.store.inner.epoch)?;
        Ok(Some(record.snapshot))
    }

    async fn append_chunk(
        &self,
        id: &RunId,
        attempt: u32,
        (_, key): (&'static str, &'static str),
        data: Arc<RawValue>,
        limit: usize,
    ) -> Result<Cursor, StreamError> {
        let (locked, found) = Locked::run(&self.groups, id).await?;
        let Some((mut record, batch)) = found else {
            locked.release().await?;
            return Err(StreamError::NotRunning(id.clone()));
        };
        let first = match admit_chunk(&mut record, attempt, key, data.get().len(), limit) {
            Ok(first) => first,
            Err(error) => {
                locked.release().await?;
                return Err(error);
            }
        };
        let chunk = Entry::chunk(id, key, &data);
        let positions = if first {
            // The run's new stream is published before its first chunk.
            let (row, log) = self.change(&record, batch.as_ref(), (false, false))?;
            locked.commit(vec![row], vec![log, chunk]).await?
        } else {
            locked
                .commit(vec![RowWrite::hidden(&record)?], vec![chunk])
                .await?
        };
        let chunk = positions.last().copied();
        let chunk =
            chunk.ok_or_else(|| StoreError::new("a chunk was written without a position"))?;
        Ok(self.cursor(chunk))
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn replay(
        &self,
        scope: &Scope,
        after: u64,
        through: u64,
    ) -> Result<Option<Replayed>, StoreError> {
        let mut client = self.client().await?;
        changes::replay(&mut client, scope, after, through).await
    }

    async fn claim(&self, tasks: &[&'static str], max: usize) -> Result<Vec<RunId>, StoreError> {
        // Each task's waiting runs are read in the index's order, so a claim reads the runs it
        // takes (and the ones other claims hold), not every run that waits. Their ids come as
        // an array, which the primary key finds: with `id IN (...)`, Postgres planned a hash
        // join over every row of the table.
        //
        // Read in that order however few runs the planner's statistics say wait (a table
        // analyzed while its queue was short): with a bitmap scan, which it then picked,
        // every claim read and sorted every waiting run, 12,665 per claim in the bench.
        //
        // One statement, its own transaction. A claim publishes nothing and only holds runs
        // for a while: its commit need not wait for the disk. Lost in a crash, it is as if it
        // never happened (the runs are claimed again); the attempt's start, which is durable,
        // makes it durable too.
        let claim = Write::new(
            "UPDATE \"TaskRun\" SET runcast_lease_owner = $3, runcast_lease_until = $4
             WHERE id = ANY(ARRAY(
                 SELECT w.id FROM unnest($1::text[]) t(task), LATERAL (
                     SELECT id, runcast_created FROM \"TaskRun\"
                     WHERE \"taskIdentifier\" = t.task
                       AND status IN ('PENDING', 'RETRYING_AFTER_FAILURE')
                       AND (status = 'PENDING' OR coalesce(runcast_retry_at <= $2, true))
                       AND coalesce(runcast_lease_until <= $2, true)
                     ORDER BY runcast_created LIMIT $5
                     FOR UPDATE SKIP LOCKED) w
                 ORDER BY w.runcast_created LIMIT $5))
             RETURNING id, runcast_created",
            vec![
                Box::new(tasks.to_vec()),
                Box::new(to_column(Timestamp::now())),
                Box::new(self.owner.name()),
                Box::new(self.claim_until()),
                Box::new(i64::try_from(max).unwrap_or(i64::MAX)),
            ],
        );
        let settings = "SET LOCAL enable_bitmapscan = off; SET LOCAL synchronous_commit = off";
        let rows = tx::run_with(self.pool(), settings, &claim).await?;
        let mut claimed: Vec<(i64, String)> =
            rows.iter().map(|row| (row.get(1), row.get(0))).collect();
        // In the order they were created.
        claimed.sort_unstable();
        Ok(claimed.into_iter().map(|(_, id)| RunId::from(id)).collect())
    }

    async fn due(&self, max: usize) -> Result<Vec<(RunId, Timer)>, StoreError> {
        // One query per timer, each through its index: with the three `OR`ed, Postgres read
        // the whole table. A delayed run found due for both its delay and its TTL fires its
        // delay.
        let due = Write::new(
            "(SELECT id, 'delay' FROM \"TaskRun\"
              WHERE status = 'DELAYED' AND \"delayUntil\" <= $1 LIMIT $2)
             UNION ALL
             (SELECT id, 'ttl' FROM \"TaskRun\"
              WHERE status IN ('PENDING', 'DELAYED') AND runcast_expire_at <= $1
                AND NOT (status = 'DELAYED' AND coalesce(\"delayUntil\" <= $1, false))
              LIMIT $2)
             UNION ALL
             (SELECT id, 'lease' FROM \"TaskRun\"
              WHERE status = 'EXECUTING' AND runcast_lease_until <= $1 LIMIT $2)
             LIMIT $2",
            vec![
                Box::new(to_column(Timestamp::now())),
                Box::new(i64::try_from(max).unwrap_or(i64::MAX)),
            ],
        );
        // Through plain index scans, which mark an index entry whose row version no
        // transaction sees any more (a run that executed and moved on) so that later scans
        // skip it: the planner picked bitmap scans, which never do, and read every run that
        // executed since the last vacuum, at every call (3,203 pages per call in the bench).
        let settings = "SET LOCAL enable_bitmapscan = off";
        let rows = tx::run_with(self.pool(), settings, &due).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let timer = match row.get::<_, &str>(1) {
                    "lease" => Timer::LeaseLost,
                    "delay" => Timer::Delay,
                    _ => Timer::Ttl,
                };
                (RunId::from(row.get::<_, &str>(0)), timer)
            })
            .collect())
    }

    fn work(&self) -> impl Future<Output = ()> + Send + 'static {
        let work = Arc::clone(&self.work);
        async move {
            let _ = tokio::time::timeout(POLL, work.notified()).await;
        }
    }

    fn nudge(&self) {
        self.work.notify_one();
    }

    fn cancellations(&self) -> Option<mpsc::UnboundedReceiver<Stop>> {
        crate::support::lock(&self.canceled).take()
    }

    async fn publish(&self, tasks: &[Published]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let upsert = tx
            .prepare(
                "INSERT INTO runcast_tasks
                     (id, payload_schema, output_schema, metadata_schema, published_at)
                 VALUES ($1, $2, $3, $4, now() AT TIME ZONE 'UTC')
                 ON CONFLICT (id) DO UPDATE SET
                     payload_schema = excluded.payload_schema,
                     output_schema = excluded.output_schema,
                     metadata_schema = excluded.metadata_schema,
                     published_at = excluded.published_at",
            )
            .await?;
        for task in tasks {
            let row: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&task.id, &task.payload, &task.output, &task.metadata];
            tx.execute(&upsert, &row).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn published(&self, id: &str) -> Result<Option<Published>, StoreError> {
        let client = self.client().await?;
        let select = client
            .prepare_cached(
                "SELECT payload_schema, output_schema, metadata_schema
                 FROM runcast_tasks WHERE id = $1",
            )
            .await?;
        let found = client.query_opt(&select, &[&id]).await?;
        Ok(found.map(|row| Published {
            id: id.to_owned(),
            payload: row.get(0),
            output: row.get(1),
            metadata: row.get(2),
        }))
    }

    async fn forget_finished(&self) -> Result<Option<Duration>, StoreError> {
        let lock = Write::new(
            "SELECT pg_try_advisory_xact_lock($1)",
            vec![Box::new(FORGET_LOCK)],
        );
        let (tx, locked) = Tx::begin_with(self.pool(), &lock).await?;
        let mut forgotten = Vec::new();
        if locked.first().is_some_and(|row| row.get::<_, bool>(0)) {
            let forget = Write::new(
                "DELETE FROM \"TaskRun\" WHERE runcast_forget_at <= $1 RETURNING id",
                vec![Box::new(to_column(Timestamp::now()))],
            );
            let ids: Vec<String> = (tx.run(&forget).await?.iter())
                .map(|row| row.get(0))
                .collect();
            if !ids.is_empty() {
                let keys = Write::new(
                    "DELETE FROM runcast_idempotency WHERE run_id = ANY($1)",
                    vec![Box::new(ids.clone())],
                );
                tx.run(&keys).await?;
            }
            // Changes older than the retention go, but for the chunks and the latest change
            // of runs still kept (found by the log's time index); the changes of forgotten
            // runs go with them (by the run index). Neither reads the whole log.
            let prune = Write::new(
                "WITH old AS (
                     DELETE FROM runcast_changes c
                     WHERE c.committed_at < now() - make_interval(secs => $1)
                       AND (c.kind = 'forgotten'
                            OR (c.kind = 'run'
                                AND c.position < (SELECT max(l.position) FROM runcast_changes l
                                                  WHERE l.run_id = c.run_id AND l.kind = 'run')))
                     RETURNING position),
                 gone AS (
                     DELETE FROM runcast_changes
                     WHERE run_id = ANY($2) AND kind <> 'forgotten'
                     RETURNING position),
                 pruned AS (SELECT position FROM old UNION ALL SELECT position FROM gone)
                 UPDATE runcast_meta
                 SET pruned_through = greatest(pruned_through, (SELECT max(position) FROM pruned))
                 WHERE EXISTS (SELECT 1 FROM pruned)",
                vec![
                    Box::new(self.retention.as_secs_f64()),
                    Box::new(ids.clone()),
                ],
            );
            tx.run(&prune).await?;
            forgotten = ids;
        }
        let next = Write::new("SELECT min(runcast_forget_at) FROM \"TaskRun\"", Vec::new());
        let next: Option<jiff::civil::DateTime> =
            tx.run(&next).await?.first().and_then(|row| row.get(0));
        // Announced last: the change log's lock, which the first takes, is held for the
        // announcements and the commit only.
        if forgotten.is_empty() {
            tx.commit().await?;
        } else {
            let announce = forgotten
                .iter()
                .map(|id| Entry::forgotten(id))
                .collect::<Vec<_>>();
            tx.commit_with(&[&changes::append(&announce)]).await?;
        }
        let now = Timestamp::now();
        // Not more often than every `FORGET_EVERY`: under load a run is due every moment,
        // and each round costs a transaction and the retention's reads.
        Ok(next
            .map(|next| (row::from_column(next).saturating_duration_since(now)).max(FORGET_EVERY)))
    }
}

/// The name a process's leases carry: a new one once the process may have lost its leases,
/// so that the ones it held are no longer renewed.
#[derive(Clone)]
struct Owner(Arc<Mutex<String>>);

impl Default for Owner {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Self::new_name())))
    }
}

impl Owner {
    fn new_name() -> String {
        format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
    }

    fn name(&self) -> String {
        crate::support::lock(&self.0).clone()
    }

    fn rename(&self) {
        *crate::support::lock(&self.0) = Self::new_name();
    }
}

/// What `create` does with one of its runs.
enum Slot {
    Done(Created),
    /// A run whose idempotency key the run at this index of the same call has: that run.
    SameAs(usize),
}

impl Slot {
    fn created(&self, slots: &[Slot], ids: &[RunId]) -> Created {
        match self {
            Slot::Done(created) => created.clone(),
            Slot::SameAs(earlier) => match &slots[*earlier] {
                Slot::Done(Created::New(cursor)) => {
                    Created::Existing(ids[*earlier].clone(), *cursor)
                }
                other => other.created(slots, ids),
            },
        }
    }
}
