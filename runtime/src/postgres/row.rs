//! A run as a row of `"TaskRun"`: the columns runcast reads and writes, and the conversions
//! between them and a store's [`Record`].

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio_postgres::Row;

use super::tx::{Param, Write};
use crate::engine::store::Record;
use crate::model::{AnyRun, BatchId, Cursor, RunId, SerializedError, StoreError, Timestamp};
use crate::wire::status::{database_name, from_database_name};

/// The columns [`record`] reads, in its order.
pub(super) const COLUMNS: &str = r#"id, "taskIdentifier", number, status, "createdAt",
    "updatedAt", "startedAt", "delayUntil", "queuedAt", "expiredAt", "completedAt", "isTest",
    "usageDurationMs", "costInCents", "baseCostInCents", ttl, payload, output, metadata,
    "runTags", error, "realtimeStreams", "idempotencyKey", "batchId", runcast_created, runcast_attempts, runcast_max_attempts, runcast_max_duration_ms,
    runcast_stream_bytes, runcast_attempt_started_at, runcast_expire_at, runcast_retry_at,
    runcast_lease_until"#;

/// Selects a run's row (`$1`, its id) with [`COLUMNS`]; a statement that locks it adds to it.
pub(super) static SELECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM \"TaskRun\" WHERE id = $1"));

/// A timestamp as the run table keeps it: UTC wall-clock time, without a zone.
pub(super) fn to_column(t: Timestamp) -> DateTime {
    jiff::Timestamp::from(t).to_zoned(TimeZone::UTC).datetime()
}

/// `d` after `t`, as the run table keeps it (`t` itself past the timestamps' range).
pub(super) fn column_after(t: Timestamp, d: Duration) -> DateTime {
    to_column(t.checked_add(d).unwrap_or(t))
}

pub(super) fn from_column(t: DateTime) -> Timestamp {
    t.to_zoned(TimeZone::UTC)
        .map_or(Timestamp::from(jiff::Timestamp::UNIX_EPOCH), |t| {
            Timestamp::from(t.timestamp())
        })
}

fn raw(text: Option<String>, column: &str) -> Result<Option<Arc<RawValue>>, StoreError> {
    text.map(|text| {
        RawValue::from_string(text)
            .map(Arc::from)
            .map_err(|e| StoreError::new(format!("column {column} holds invalid JSON: {e}")))
    })
    .transpose()
}

/// A run's record and its batch, from a row read with
/// [`COLUMNS`] in the database of `epoch`.
pub(super) fn record(row: &Row, epoch: u64) -> Result<(Record, Option<BatchId>), StoreError> {
    record_after(row, 0, epoch)
}

/// [`record`] from a row whose [`COLUMNS`] start at column `at`.
pub(super) fn record_after(
    row: &Row,
    at: usize,
    epoch: u64,
) -> Result<(Record, Option<BatchId>), StoreError> {
    let status: String = row.try_get(at + 3)?;
    let status = from_database_name(&status).ok_or_else(|| {
        StoreError::new(format!("unknown run status `{status}` in the run table"))
    })?;
    let error = row
        .try_get::<_, Option<serde_json::Value>>(at + 20)?
        .map(serde_json::from_value::<SerializedError>)
        .transpose()
        .map_err(|e| StoreError::new(format!("column error holds no error object: {e}")))?;
    let created: i64 = row.try_get(at + 24)?;
    let run = AnyRun {
        id: RunId::from(row.try_get::<_, String>(at)?),
        task_identifier: row.try_get::<_, String>(at + 1)?.into(),
        number: u64::try_from(row.try_get::<_, i32>(at + 2)?).unwrap_or_default(),
        status,
        created_at: from_column(row.try_get(at + 4)?),
        updated_at: from_column(row.try_get(at + 5)?),
        started_at: row.try_get::<_, Option<DateTime>>(at + 6)?.map(from_column),
        delayed_until: row.try_get::<_, Option<DateTime>>(at + 7)?.map(from_column),
        queued_at: row.try_get::<_, Option<DateTime>>(at + 8)?.map(from_column),
        expired_at: row.try_get::<_, Option<DateTime>>(at + 9)?.map(from_column),
        finished_at: row
            .try_get::<_, Option<DateTime>>(at + 10)?
            .map(from_column),
        is_test: row.try_get(at + 11)?,
        duration_ms: u64::try_from(row.try_get::<_, i32>(at + 12)?).unwrap_or_default(),
        cost_in_cents: row.try_get(at + 13)?,
        base_cost_in_cents: row.try_get(at + 14)?,
        ttl: row.try_get(at + 15)?,
        payload: raw(row.try_get(at + 16)?, "payload")?,
        output: raw(row.try_get(at + 17)?, "output")?,
        metadata: raw(row.try_get(at + 18)?, "metadata")?,
        tags: row
            .try_get::<_, Option<Vec<String>>>(at + 19)?
            .unwrap_or_default()
            .into(),
        error,
        realtime_streams: row.try_get(at + 21)?,
        idempotency_key: row.try_get(at + 22)?,
    };
    let batch = row
        .try_get::<_, Option<String>>(at + 23)?
        .map(BatchId::from);
    let record = Record {
        snapshot: Arc::new(run),
        created: Cursor::new(epoch, created.cast_unsigned()).before(),
        attempts: u32::try_from(row.try_get::<_, i32>(at + 25)?).unwrap_or_default(),
        max_attempts: u32::try_from(row.try_get::<_, i32>(at + 26)?).unwrap_or_default(),
        max_duration: row
            .try_get::<_, Option<i64>>(at + 27)?
            .map(|ms| Duration::from_millis(ms.cast_unsigned())),
        // Keys live in their own table: a change never needs them.
        idempotency: None,
        stream_bytes: usize::try_from(row.try_get::<_, i64>(at + 28)?).unwrap_or_default(),
        attempt_started: row
            .try_get::<_, Option<DateTime>>(at + 29)?
            .map(from_column),
        expire_at: row
            .try_get::<_, Option<DateTime>>(at + 30)?
            .map(from_column),
        retry_at: row
            .try_get::<_, Option<DateTime>>(at + 31)?
            .map(from_column),
        lease_until: row
            .try_get::<_, Option<DateTime>>(at + 32)?
            .map(from_column),
    };
    Ok((record, batch))
}

/// What a change writes of a record: to its row ([`RowWrite`]), or serialized under its
/// columns' names (a new run's).
#[derive(Serialize)]
pub(super) struct Written {
    id: String,
    status: &'static str,
    #[serde(rename = "updatedAt")]
    updated_at: DateTime,
    #[serde(rename = "startedAt")]
    started_at: Option<DateTime>,
    #[serde(rename = "delayUntil")]
    delayed_until: Option<DateTime>,
    #[serde(rename = "queuedAt")]
    queued_at: Option<DateTime>,
    #[serde(rename = "expiredAt")]
    expired_at: Option<DateTime>,
    #[serde(rename = "completedAt")]
    finished_at: Option<DateTime>,
    #[serde(rename = "usageDurationMs")]
    duration_ms: i32,
    #[serde(rename = "costInCents")]
    cost_in_cents: f64,
    #[serde(rename = "baseCostInCents")]
    base_cost_in_cents: f64,
    output: Option<String>,
    metadata: Option<String>,
    #[serde(rename = "runTags")]
    tags: Vec<String>,
    error: Option<serde_json::Value>,
    #[serde(rename = "realtimeStreams")]
    realtime_streams: Vec<String>,
    #[serde(rename = "runcast_attempts")]
    attempts: i32,
    #[serde(rename = "runcast_stream_bytes")]
    stream_bytes: i64,
    #[serde(rename = "runcast_attempt_started_at")]
    attempt_started: Option<DateTime>,
    #[serde(rename = "runcast_retry_at")]
    retry_at: Option<DateTime>,
}

impl Written {
    pub(super) fn of(record: &Record) -> Result<Self, StoreError> {
        let run = &record.snapshot;
        let error = (run.error.as_ref())
            .map(serde_json::to_value)
            .transpose()
            .map_err(StoreError::new)?;
        Ok(Self {
            id: run.id.as_str().to_owned(),
            status: database_name(run.status),
            updated_at: to_column(run.updated_at),
            started_at: run.started_at.map(to_column),
            delayed_until: run.delayed_until.map(to_column),
            queued_at: run.queued_at.map(to_column),
            expired_at: run.expired_at.map(to_column),
            finished_at: run.finished_at.map(to_column),
            duration_ms: i32::try_from(run.duration_ms).unwrap_or(i32::MAX),
            cost_in_cents: run.cost_in_cents,
            base_cost_in_cents: run.base_cost_in_cents,
            output: run.output.as_ref().map(|raw| raw.get().to_owned()),
            metadata: run.metadata.as_ref().map(|raw| raw.get().to_owned()),
            tags: run.tags.to_vec(),
            error,
            realtime_streams: run.realtime_streams.clone(),
            attempts: i32::try_from(record.attempts).unwrap_or(i32::MAX),
            stream_bytes: i64::try_from(record.stream_bytes).unwrap_or(i64::MAX),
            attempt_started: record.attempt_started.map(to_column),
            retry_at: record.retry_at.map(to_column),
        })
    }
}

/// A change's write to its run's row: what it wrote of the record, and of runcast's columns.
pub(super) struct RowWrite {
    written: Written,
    /// Whether subscribers see the change: only such a change moves the lease and the time
    /// the run is forgotten.
    visible: bool,
    /// When the run is forgotten, once it finished.
    forget_at: Option<DateTime>,
    /// The process that leases the run from now, and until when, if it starts executing.
    lease: Option<(String, DateTime)>,
}

impl RowWrite {
    /// The write of a change subscribers see. A run that starts executing is leased (`lease`);
    /// a run that is not executing after it is leased to none.
    pub(super) fn visible(
        record: &Record,
        forget_at: Option<DateTime>,
        lease: Option<(String, DateTime)>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            written: Written::of(record)?,
            visible: true,
            forget_at,
            lease,
        })
    }

    /// The write of what a change did to fields no subscriber sees.
    pub(super) fn hidden(record: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            written: Written::of(record)?,
            visible: false,
            forget_at: None,
            lease: None,
        })
    }
}

/// The statement that writes `rows` (of distinct runs), all in one.
pub(super) fn update(rows: impl IntoIterator<Item = RowWrite>) -> Write<'static> {
    /// One array per column, of the rows' values in order.
    #[derive(Default)]
    struct Columns {
        id: Vec<String>,
        status: Vec<&'static str>,
        updated_at: Vec<DateTime>,
        started_at: Vec<Option<DateTime>>,
        delayed_until: Vec<Option<DateTime>>,
        queued_at: Vec<Option<DateTime>>,
        expired_at: Vec<Option<DateTime>>,
        finished_at: Vec<Option<DateTime>>,
        duration_ms: Vec<i32>,
        cost_in_cents: Vec<f64>,
        base_cost_in_cents: Vec<f64>,
        output: Vec<Option<String>>,
        metadata: Vec<Option<String>>,
        /// As JSON arrays: Postgres's arrays of arrays must all have one length.
        tags: Vec<String>,
        error: Vec<Option<String>>,
        realtime_streams: Vec<String>,
        attempts: Vec<i32>,
        stream_bytes: Vec<i64>,
        attempt_started: Vec<Option<DateTime>>,
        retry_at: Vec<Option<DateTime>>,
        visible: Vec<bool>,
        forget_at: Vec<Option<DateTime>>,
        lease_owner: Vec<Option<String>>,
        lease_until: Vec<Option<DateTime>>,
    }
    let mut c = Columns::default();
    for row in rows {
        let w = row.written;
        c.id.push(w.id);
        c.status.push(w.status);
        c.updated_at.push(w.updated_at);
        c.started_at.push(w.started_at);
        c.delayed_until.push(w.delayed_until);
        c.queued_at.push(w.queued_at);
        c.expired_at.push(w.expired_at);
        c.finished_at.push(w.finished_at);
        c.duration_ms.push(w.duration_ms);
        c.cost_in_cents.push(w.cost_in_cents);
        c.base_cost_in_cents.push(w.base_cost_in_cents);
        c.output.push(w.output);
        c.metadata.push(w.metadata);
        c.tags.push(json_array(&w.tags));
        c.error.push(w.error.as_ref().map(ToString::to_string));
        c.realtime_streams.push(json_array(&w.realtime_streams));
        c.attempts.push(w.attempts);
        c.stream_bytes.push(w.stream_bytes);
        c.attempt_started.push(w.attempt_started);
        c.retry_at.push(w.retry_at);
        c.visible.push(row.visible);
        c.forget_at.push(row.forget_at);
        let (owner, until) = row.lease.unzip();
        c.lease_owner.push(owner);
        c.lease_until.push(until);
    }
    let params: Vec<Param> = vec![
        Box::new(c.id),
        Box::new(c.status),
        Box::new(c.updated_at),
        Box::new(c.started_at),
        Box::new(c.delayed_until),
        Box::new(c.queued_at),
        Box::new(c.expired_at),
        Box::new(c.finished_at),
        Box::new(c.duration_ms),
        Box::new(c.cost_in_cents),
        Box::new(c.base_cost_in_cents),
        Box::new(c.output),
        Box::new(c.metadata),
        Box::new(c.tags),
        Box::new(c.error),
        Box::new(c.realtime_streams),
        Box::new(c.attempts),
        Box::new(c.stream_bytes),
        Box::new(c.attempt_started),
        Box::new(c.retry_at),
        Box::new(c.visible),
        Box::new(c.forget_at),
        Box::new(c.lease_owner),
        Box::new(c.lease_until),
    ];
    Write::new(UPDATE, params)
}

/// `values` as a JSON array of strings.
fn json_array(values: &[String]) -> String {
    serde_json::Value::from(values).to_string()
}

/// Writes rows (see [`update`]). The rows are found by the primary key (`id = ANY($1)`),
/// whatever the planner's statistics. A change subscribers see moves the lease: a run
/// executing after it keeps its lease, or takes the one given, and any other is leased to
/// none.
const UPDATE: &str = r#"UPDATE "TaskRun" r SET status = u.status, "updatedAt" = u.updated_at,
        "startedAt" = u.started_at, "delayUntil" = u.delayed_until, "queuedAt" = u.queued_at,
        "expiredAt" = u.expired_at, "completedAt" = u.finished_at,
        "usageDurationMs" = u.duration_ms, "costInCents" = u.cost_in_cents,
        "baseCostInCents" = u.base_cost_in_cents, output = u.output, metadata = u.metadata,
        "runTags" = ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)),
        error = u.error::jsonb,
        "realtimeStreams" = ARRAY(SELECT jsonb_array_elements_text(u.realtime_streams::jsonb)),
        runcast_attempts = u.attempts, runcast_stream_bytes = u.stream_bytes,
        runcast_attempt_started_at = u.attempt_started, runcast_retry_at = u.retry_at,
        runcast_forget_at = coalesce(u.forget_at, r.runcast_forget_at),
        runcast_lease_owner = CASE WHEN NOT u.visible THEN r.runcast_lease_owner
            WHEN u.status = 'EXECUTING' THEN coalesce(u.lease_owner, r.runcast_lease_owner) END,
        runcast_lease_until = CASE WHEN NOT u.visible THEN r.runcast_lease_until
            WHEN u.status = 'EXECUTING' THEN coalesce(u.lease_until, r.runcast_lease_until) END
    FROM unnest($1::text[], $2::text[], $3::timestamp[], $4::timestamp[], $5::timestamp[],
                $6::timestamp[], $7::timestamp[], $8::timestamp[], $9::integer[],
                $10::double precision[], $11::double precision[], $12::text[], $13::text[],
                $14::text[], $15::text[], $16::text[], $17::integer[], $18::bigint[],
                $19::timestamp[], $20::timestamp[], $21::boolean[], $22::timestamp[],
                $23::text[], $24::timestamp[])
        AS u(id, status, updated_at, started_at, delayed_until, queued_at, expired_at,
             finished_at, duration_ms, cost_in_cents, base_cost_in_cents, output, metadata,
             tags, error, realtime_streams, attempts, stream_bytes, attempt_started, retry_at,
             visible, forget_at, lease_owner, lease_until)
    WHERE r.id = ANY($1) AND r.id = u.id"#;
