//! Statements and transactions as the store runs them: a [`Write`] owns its statement's
//! parameters, so that it can be built before it is known whether it runs inside the
//! transaction or travels with its `COMMIT`; a [`Tx`] sends its first statement with its
//! `BEGIN` and its last with its `COMMIT` (pipelined: sent together, answered in order), so a
//! change costs two round trips, and the change log's lock, taken by its last statement, is
//! held only for the commit itself, not for a round trip to the client and back.

use deadpool_postgres::{ClientWrapper, Object, Pool};
use futures_util::future::join_all;
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

    /// Runs `writes` as the last statements, and commits: all sent at once (pipelined), so
    /// that each starts as soon as the one before is done, with no round trip to the client
    /// between them. Returns each write's rows; if any fails, the transaction is rolled back
    /// (a `COMMIT` after an error rolls back) and the first error returned.
    pub(super) async fn commit_with(
        mut self,
        writes: &[&Write<'_>],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let rows = commit(self.client(), writes).await;
        if rows.is_ok() {
            // Ended: the connection goes back to the pool.
            drop(self.client.take());
        }
        rows
    }

    /// Commits (or, after a failed statement, rolls back).
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.commit_with(&[]).await.map(drop)
    }
}

/// Runs `write` in a transaction of its own, with `settings` for it (`SET LOCAL` statements,
/// which, unlike a setting changed by the statement itself, apply to its plan too): `BEGIN`,
/// the settings, the statement and `COMMIT` sent at once.
pub(super) async fn run_with(
    pool: &Pool,
    settings: &str,
    write: &Write<'_>,
) -> Result<Vec<Row>, StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(write.query).await?;
    let params = write.params();
    let begin = format!("BEGIN; {settings}");
    // Polled in order the first time, so sent in order.
    let (begun, rows, committed) = tokio::join!(
        client.batch_execute(&begin),
        client.query(&statement, &params),
        client.batch_execute("COMMIT")
    );
    begun?;
    let rows = rows?;
    committed?;
    Ok(rows)
}

/// Runs `writes`, then `COMMIT`, on a connection in a transaction: all sent at once. Returns
/// each write's rows, or the first error (the transaction then rolled back).
pub(super) async fn commit(
    client: &ClientWrapper,
    writes: &[&Write<'_>],
) -> Result<Vec<Vec<Row>>, StoreError> {
    let mut statements = Vec::with_capacity(writes.len());
    for write in writes {
        statements.push(client.prepare_cached(write.query).await?);
    }
    let params: Vec<_> = writes.iter().map(|write| write.params()).collect();
    // Polled in order the first time, so sent in order.
    let queries = join_all(
        (statements.iter().zip(&params)).map(|(statement, params)| client.query(statement, params)),
    );
    let (rows, committed) = tokio::join!(queries, client.batch_execute("COMMIT"));
    // A statement's error comes first: after one, the `COMMIT` rolls back without an error.
    let rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
    committed?;
    Ok(rows)
}
