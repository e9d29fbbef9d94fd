//! A run as a row of `"TaskRun"`: the columns runcast reads and writes, and the conversions
//! between them and a store's [`Record`].

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio_postgres::Row;

use super::tx::Param;
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

/// The columns a change writes (every one a change may touch), as `SET` assignments from
/// `$2` on (`$1` is the run's id), in the order of [`Written::params`].
pub(super) const SET_COLUMNS: &str = r#"status = $2, "updatedAt" = $3, "startedAt" = $4,
    "delayUntil" = $5, "queuedAt" = $6, "expiredAt" = $7, "completedAt" = $8,
    "usageDurationMs" = $9, "costInCents" = $10, "baseCostInCents" = $11, output = $12,
    metadata = $13, "runTags" = $14, error = $15, "realtimeStreams" = $16,
    runcast_attempts = $17, runcast_stream_bytes = $18, runcast_attempt_started_at = $19,
    runcast_retry_at = $20"#;

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

/// What a change writes of a record, as the parameters of [`SET_COLUMNS`], or serialized
/// under its columns' names.
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

    /// `$1` (the id) and the parameters of [`SET_COLUMNS`], in order.
    pub(super) fn params(self) -> Vec<Param> {
        vec![
            Box::new(self.id),
            Box::new(self.status),
            Box::new(self.updated_at),
            Box::new(self.started_at),
            Box::new(self.delayed_until),
            Box::new(self.queued_at),
            Box::new(self.expired_at),
            Box::new(self.finished_at),
            Box::new(self.duration_ms),
            Box::new(self.cost_in_cents),
            Box::new(self.base_cost_in_cents),
            Box::new(self.output),
            Box::new(self.metadata),
            Box::new(self.tags),
            Box::new(self.error),
            Box::new(self.realtime_streams),
            Box::new(self.attempts),
            Box::new(self.stream_bytes),
            Box::new(self.attempt_started),
            Box::new(self.retry_at),
        ]
    }
}
