//! The store over Postgres (feature `postgres`): runs, their changes and their chunks kept in
//! a database that many processes share.
//!
//! An engine built over it ([`EngineBuilder::postgres`](crate::EngineBuilder::postgres)) runs
//! the same lifecycle as the embedded engine; each store operation is one transaction, which
//! changes made at the same time share (`group`). Every change is written to a change log in commit order (`changes`), and each process has one
//! reader of that log that publishes its rows, at their positions, to the process's hub, which
//! its subscriptions read: a cursor is a position in the database's history, so it resumes in
//! any process that shares the database. The schema is created and migrated by runcast itself
//! (`schema`).

mod changes;
mod group;
#[cfg(test)]
mod process_tests;
mod row;
mod schema;
mod store;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod tx;

pub(crate) use self::store::Started;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::model::StoreError;

/// A connection to the Postgres database that keeps an engine's runs. Pass it to
/// [`EngineBuilder::postgres`](crate::EngineBuilder::postgres).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use runcast::{Engine, PostgresStore};
///
/// let store = PostgresStore::connect("postgres://runcast@localhost/runcast").await?;
/// let engine = Engine::builder().postgres(store).build()?;
/// # Ok(()) }
/// ```
///
/// Connecting creates runcast's tables, or migrates them to this version of runcast, in a
/// transaction that processes starting at once take in turn.
///
/// Its connections run with Postgres's JIT compilation off, unless the connection's `options`
/// turn it on (`-c jit=on`): runcast's statements are short, and the planner's estimates for
/// some of them (the retention's, the load's) made Postgres compile them at every call, for
/// about 300 ms of CPU each time.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Connection>,
    /// How long a process holds a run it executes without renewing its lease.
    lease: Duration,
}

/// The lease of a run a process executes, unless set with [`PostgresStore::lease`].
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

struct Connection {
    config: tokio_postgres::Config,
    pool: deadpool_postgres::Pool,
    /// Names the database's history in cursors.
    epoch: u64,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("hosts", &self.inner.config.get_hosts())
            .field("dbname", &self.inner.config.get_dbname())
            .field("epoch", &self.inner.epoch)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Why [`PostgresStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection string is not one (see tokio-postgres's `Config` for the forms: a URL
    /// `postgres://user:password@host:port/dbname?options`, or `key=value` pairs).
    #[error("invalid Postgres connection string: {}", said(.0))]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The database was migrated by a newer runcast, whose schema this one does not know.
    #[error(
        "the database's runcast schema is at version {found}, newer than this runcast knows ({known}): upgrade runcast"
    )]
    NewerSchema {
        /// The database's schema version.
        found: i32,
        /// The newest this runcast knows.
        known: i32,
    },
    /// Postgres could not be reached, or refused a statement.
    #[error("Postgres failed: {}", said(.0))]
    Database(#[from] tokio_postgres::Error),
    /// The connection pool could not be built.
    #[error("could not build the connection pool: {0}")]
    Pool(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::new(Said(error))
    }
}

/// A tokio-postgres error with what the server said (such as `database "x" does not exist`):
/// tokio-postgres shows only its kind ("db error") and keeps the rest in its source.
fn said(error: &tokio_postgres::Error) -> String {
    let mut said = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        said.push_str(": ");
        said.push_str(&cause.to_string());
        source = cause.source();
    }
    said
}

/// A tokio-postgres error shown as [`said`].
#[derive(Debug)]
struct Said(tokio_postgres::Error);

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&said(&self.0))
    }
}

/// Its message holds the whole chain already: no source, so that nothing shows it twice.
impl std::error::Error for Said {}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            // What the connection's failure was, not only "db error".
            deadpool_postgres::PoolError::Backend(error) => StoreError::new(Said(error)),
            error => StoreError::new(error),
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (such as `postgres://user:password@host/dbname`, or
    /// `host=/run/postgresql dbname=runcast` for a Unix socket), without TLS, and creates or
    /// migrates runcast's tables.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        let config = url.parse().map_err(PostgresError::InvalidUrl)?;
        Self::connect_with(config).await
    }

    /// [`connect`](Self::connect) with a configuration built in code.
    pub async fn connect_with(mut config: tokio_postgres::Config) -> Result<Self, PostgresError> {
        // First, so that the caller's own options win.
        let options = match config.get_options() {
            Some(theirs) => format!("-c jit=off {theirs}"),
            None => "-c jit=off".to_owned(),
        };
        config.options(&options);
        let (mut client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let epoch = schema::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        let epoch = epoch?;
        let manager = deadpool_postgres::Manager::new(config.clone(), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| PostgresError::Pool(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Connection {
                config,
                pool,
                epoch,
            }),
            lease: DEFAULT_LEASE,
        })
    }

    /// How long a process holds a run whose attempt it executes without renewing its hold
    /// (default 30 s; at least 100 ms). It renews it three times as often while the attempt
    /// runs; when a process stops (killed, cut off from the database), another process takes
    /// the run over once the lease ran out: the attempt counts as failed, and the run is
    /// retried (`REATTEMPTING`) or, after its last attempt, ends `CRASHED`.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }
}
