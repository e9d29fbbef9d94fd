//! The schema runcast keeps in Postgres, created and migrated by runcast itself.
//!
//! Migrations are numbered and applied in order, each once, in one transaction that first
//! takes an advisory lock: processes that start at once wait for each other, and the first
//! migrates while the others find the work done. A database migrated by a newer runcast is
//! refused rather than written in a shape this one does not know.
//!
//! The run table, `"TaskRun"`, keeps the columns of Trigger.dev's run feed under their names
//! and types (quoted camelCase, timestamps without a zone in UTC, `status` in Trigger.dev's
//! database names), so that an Electric deployment could serve it as Trigger.dev's does.
//! runcast's own columns come beside them, named `runcast_*`.

use tokio_postgres::Client;

use super::PostgresError;

/// The advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x7275_6e63_6173_7401;

/// Each migration: its version, what it does, and its SQL.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "runs, the change log, task numbers and idempotency keys",
        r#"
-- Names this database's history in cursors (their epoch): random, never 0.
CREATE TABLE runcast_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch bigint NOT NULL CHECK (epoch <> 0),
    -- The latest position of a change deleted from the log: a reader resumed from before it
    -- may have missed changes.
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO runcast_meta (epoch)
    VALUES ((floor(random() * 4503599627370495))::bigint + 1);

-- Positions of changes. Taken only under the change log's advisory lock, held until commit,
-- so that positions are in commit order (see changes.rs).
CREATE SEQUENCE runcast_position AS bigint;

CREATE TABLE "TaskRun" (
    -- Trigger.dev's columns. `id` and `friendlyId` are both the public run id.
    "id" text PRIMARY KEY,
    "friendlyId" text NOT NULL,
    "taskIdentifier" text NOT NULL,
    "number" integer NOT NULL,
    "status" text NOT NULL,
    "createdAt" timestamp(3) NOT NULL,
    "updatedAt" timestamp(3) NOT NULL,
    "startedAt" timestamp(3),
    "delayUntil" timestamp(3),
    "queuedAt" timestamp(3),
    "expiredAt" timestamp(3),
    "completedAt" timestamp(3),
    "isTest" boolean NOT NULL DEFAULT false,
    "usageDurationMs" integer NOT NULL DEFAULT 0,
    "costInCents" double precision NOT NULL DEFAULT 0,
    "baseCostInCents" double precision NOT NULL DEFAULT 0,
    "ttl" text,
    "payload" text,
    "payloadType" text NOT NULL DEFAULT 'application/json',
    "output" text,
    "outputType" text NOT NULL DEFAULT 'application/json',
    "metadata" text,
    "metadataType" text NOT NULL DEFAULT 'application/json',
    -- No default, as in Trigger.dev's table: a feed sends `null` for a run without tags.
    "runTags" text[],
    "error" jsonb,
    "realtimeStreams" text[] NOT NULL DEFAULT '{}',
    "idempotencyKey" text,
    "batchId" text,
    -- runcast's columns.
    -- The position of the run's creation (that of its latest change is in the log).
    runcast_created bigint NOT NULL,
    runcast_attempts integer NOT NULL DEFAULT 0,
    runcast_max_attempts integer NOT NULL,
    runcast_max_duration_ms bigint,
    -- Bytes of chunks written to the run's streams.
    runcast_stream_bytes bigint NOT NULL DEFAULT 0,
    runcast_attempt_started_at timestamp(3),
    -- When a run that has not started expires (its TTL), and when a run waiting for a retry
    -- may be attempted again.
    runcast_expire_at timestamp(3),
    runcast_retry_at timestamp(3),
    -- The process holding the run (claimed to attempt, or executing it), and until when: past
    -- it, another process takes the run over.
    runcast_lease_owner text,
    runcast_lease_until timestamp(3),
    -- When a finished run is forgotten.
    runcast_forget_at timestamp(3)
)
-- Room on each page for a row's next version: a change that moves no indexed column (most
-- metadata and output changes) is then a heap-only update, which touches no index.
WITH (fillfactor = 70);
-- Runs waiting for an attempt, by task, in the order they were created.
CREATE INDEX "TaskRun_waiting" ON "TaskRun" ("taskIdentifier", runcast_created)
    WHERE status IN ('PENDING', 'RETRYING_AFTER_FAILURE');
-- Runs with a timer: a delay, a TTL, a lease.
CREATE INDEX "TaskRun_delayed" ON "TaskRun" ("delayUntil") WHERE status = 'DELAYED';
CREATE INDEX "TaskRun_expiring" ON "TaskRun" (runcast_expire_at)
    WHERE status IN ('PENDING', 'DELAYED') AND runcast_expire_at IS NOT NULL;
CREATE INDEX "TaskRun_executing" ON "TaskRun" (runcast_lease_until) WHERE status = 'EXECUTING';
-- Only the indexes runcast's own queries use: feeds by tag and batch are served from each
-- process's memory, so runcast keeps no index on "runTags" or "batchId" (an Electric
-- deployment serving this table adds what its shapes need).
CREATE INDEX "TaskRun_forget" ON "TaskRun" (runcast_forget_at)
    WHERE runcast_forget_at IS NOT NULL;

-- The change log: every change of a run (its whole snapshot), every chunk, every run
-- forgotten, in commit order. Readers read the rows after their position. The retention
-- deletes old changes, but never the latest change of a run still kept.
CREATE TABLE runcast_changes (
    position bigint PRIMARY KEY,
    -- 'run': `data` is the run's snapshot; 'chunk': `data` is the chunk of stream `stream`;
    -- 'forgotten': the run was deleted.
    kind text NOT NULL CHECK (kind IN ('run', 'chunk', 'forgotten')),
    run_id text NOT NULL,
    batch_id text,
    stream text,
    data text,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runcast_changes_run ON runcast_changes (run_id);

-- The last number given to a run of each task.
CREATE TABLE runcast_task_numbers (
    task text PRIMARY KEY,
    last integer NOT NULL
);

-- The run each idempotency key started, until it expires.
CREATE TABLE runcast_idempotency (
    task text NOT NULL,
    key text NOT NULL,
    run_id text NOT NULL,
    expires_at timestamp(3) NOT NULL,
    PRIMARY KEY (task, key)
);
"#,
    ),
    (
        2,
        "runs executing indexed by id rather than lease; the change log indexed by time",
        r#"
-- An index on a run's lease made every claim and every lease renewal write new entries in
-- every index of the run (an update that moves an indexed column cannot be heap-only). Runs
-- executing are few (the workers' slots), so the timer that looks for lost leases reads them
-- all, through an index on a column no update moves.
DROP INDEX "TaskRun_executing";
CREATE INDEX "TaskRun_executing" ON "TaskRun" (id) WHERE status = 'EXECUTING';
-- The retention finds the changes older than it without reading the whole log. The log is
-- appended in time order, so a block range index is small and cheap to keep.
CREATE INDEX runcast_changes_committed ON runcast_changes USING brin (committed_at);
"#,
    ),
    (
        3,
        "the change log indexed by run and position",
        r#"
-- A run's latest change at or before a position (a replay's look back, a load's latest) is
-- one step down this index, where an index on the run alone read every change of the run.
DROP INDEX runcast_changes_run;
CREATE INDEX runcast_changes_run ON runcast_changes (run_id, position);
"#,
    ),
    (
        4,
        "the tasks that workers run, with their JSON Schemas",
        r#"
-- Each task a worker registers, published when the worker starts (the latest worker's
-- schemas win), so that a process that does not register it (a server) can trigger it.
CREATE TABLE runcast_tasks (
    id text PRIMARY KEY,
    payload_schema jsonb NOT NULL,
    output_schema jsonb NOT NULL,
    metadata_schema jsonb NOT NULL,
    published_at timestamp(3) NOT NULL
);
"#,
    ),
    (
        5,
        "what HTTP servers hold between requests: uploaded packets, batches filling",
        r#"
-- Payloads the SDK uploads apart, until the trigger that names them (an hour at most), so
-- that any server over the database serves the trigger.
CREATE TABLE runcast_packets (
    path text PRIMARY KEY,
    kind text NOT NULL,
    data text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
-- Batches named and receiving their items (from any server), until sealed.
CREATE TABLE runcast_open_batches (
    id text PRIMARY KEY,
    run_count integer NOT NULL,
    -- 'open', 'sealing' (its runs are being triggered) or 'sealed'.
    phase text NOT NULL DEFAULT 'open',
    named_at timestamptz NOT NULL DEFAULT now()
);
-- Each item as it arrived, an NDJSON line, checked then.
CREATE TABLE runcast_batch_items (
    batch_id text NOT NULL REFERENCES runcast_open_batches (id) ON DELETE CASCADE,
    item integer NOT NULL,
    line text NOT NULL,
    PRIMARY KEY (batch_id, item)
);
"#,
    ),
];

/// The newest schema version this runcast knows.
pub(super) const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the schema to [`LATEST`]; returns the database's epoch.
pub(super) async fn migrate(client: &mut Client) -> Result<u64, PostgresError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS runcast_migrations (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let row = tx
        .query_one("SELECT max(version) FROM runcast_migrations", &[])
        .await?;
    let applied: i32 = row.get::<_, Option<i32>>(0).unwrap_or(0);
    if applied > LATEST {
        return Err(PostgresError::NewerSchema {
            found: applied,
            known: LATEST,
        });
    }
    for &(version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO runcast_migrations (version, description) VALUES ($1, $2)",
            &[&version, &description],
        )
        .await?;
        tracing::info!(version, description, "migrated the runcast schema");
    }
    let epoch: i64 = tx
        .query_one("SELECT epoch FROM runcast_meta", &[])
        .await?
        .get(0);
    tx.commit().await?;
    // Stored as the bits of a `bigint`; never 0.
    Ok(epoch.cast_unsigned())
}
