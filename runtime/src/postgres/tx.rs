//! Statements and transactions as the store runs them: a [`Write`] owns its statement's
//! parameters, so that it can be built before it is known whether it runs inside the
//! transaction or travels with its `COMMIT`; a [`Tx`] sends its first statement with its
//! `BEGIN` and its last with its `COMMIT` (pipelined: sent together, answered in order), so a
//! change costs two round trips, and the change log's lock, taken by its last statement, is
//! held only for the commit itself, not for a round trip to the client and back.

use deadpool_postgres::{ClientWrapper, Object, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::model::StoreError;

/// A statement's parameter, owned.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// A statement and its parameters.
pub(super) struct Write<'q> {
    query: &'q str,
    params: Vec<Param>,
}

impl<'q> Write<'q> {
    pub(super) fn new(query: &'q str, params: Vec<Param>) -> Self {
        Self { query, params }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }

    /// Runs it on its own, outside any transaction.
    pub(super) async fn run(&self, client: &ClientWrapper) -> Result<Vec<Row>, StoreError> {
        let statement = client.prepare_cached(self.query).await?;
        Ok(client.query(&statement, &self.params()).await?)
    }
}

/// An open transaction. Dropped before it ended (an error, or its future dropped), its
/// connection is closed rather than returned to the pool, which rolls the transaction back.
pub(super) struct Tx {
    client: Option<Object>,
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

impl Tx {
    /// Begins a transaction, with `first` as its first statement.
    pub(super) async fn begin_with(
        pool: &Pool,
        first: &Write<'_>,
    ) -> Result<(Tx, Vec<Row>), StoreError> {
        let client = pool.get().await?;
        let statement = client.prepare_cached(first.query).await?;
        let params = first.params();
        let (begun, rows) = tokio::join!(
            client.batch_execute("BEGIN"),
            client.query(&statement, &params)
        );
        let tx = Tx {
            client: Some(client),
        };
        begun?;
        Ok((tx, rows?))
    }

    /// Begins a transaction.
    pub(super) async fn begin(pool: &Pool) -> Result<Tx, StoreError> {
        let client = pool.get().await?;
        client.batch_execute("BEGIN").await?;
        Ok(Tx {
            client: Some(client),
        })
    }

    /// The connection, to run the transaction's statements on.
    pub(super) fn client(&self) -> &ClientWrapper {
        match &self.client {
            Some(client) => client,
            // Taken only by `Drop` and by the methods that end the transaction, which take
            // `self`.
            None => unreachable!("a transaction is used after it ended"),
        }
    }

    /// Runs a statement inside the transaction.
    pub(super) async fn run(&self, write: &Write<'_>) -> Result<Vec<Row>, StoreError> {
        write.run(self.client()).await
    }

    /// Runs `last` as the last statement, and commits: both sent at once. If the statement
    /// fails, the transaction is rolled back (a `COMMIT` after an error rolls back) and its
    /// error returned.
    pub(super) async fn commit_with(mut self, last: &Write<'_>) -> Result<Vec<Row>, StoreError> {
        let client = self.client();
        let statement = client.prepare_cached(last.query).await?;
        let params = last.params();
        let (rows, committed) = tokio::join!(
            client.query(&statement, &params),
            client.batch_execute("COMMIT")
        );
        committed?;
        // Ended either way: the connection goes back to the pool.
        drop(self.client.take());
        Ok(rows?)
    }

    /// Runs `first` and `last` as the last two statements, and commits: the three sent at
    /// once, so that `last` starts as soon as `first` is done, with no round trip to the
    /// client between them. Returns the rows of `last`; rolled back if either fails.
    pub(super) async fn commit_after(
        mut self,
        first: &Write<'_>,
        last: &Write<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client();
        let statements = (
            client.prepare_cached(first.query).await?,
            client.prepare_cached(last.query).await?,
        );
        let params = (first.params(), last.params());
        let (done, rows, committed) = tokio::join!(
            client.query(&statements.0, &params.0),
            client.query(&statements.1, &params.1),
            client.batch_execute("COMMIT")
        );
        committed?;
        drop(self.client.take());
        done?;
        Ok(rows?)
    }

    /// Commits (or, after a failed statement, rolls back).
    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        self.client().batch_execute("COMMIT").await?;
        drop(self.client.take());
        Ok(())
    }
}
