//! Group commit: changes made at the same time share one transaction and one commit.
//!
//! Every change commits under the change log's lock (see `changes`), and `NOTIFY` serializes
//! commits too, so changes commit one at a time, each waiting for its own flush to disk: a
//! transaction per change caps a database at about one change per flush. Under load, the
//! changes that arrive while a group commits form the next group instead. Each member locks its
//! run's row in the group's transaction, computes its change, and hands its writes over; once
//! every member has, the group writes them all, then commits once. A change made alone is a
//! group of one, with no added wait.
//!
//! A group never waits for a row: its members lock with `SKIP LOCKED`, and a member whose row
//! another transaction holds leaves, to make its change in a transaction of its own. So groups
//! (of this process or others) never wait for each other in a cycle, and two members of one
//! group never change one run. A failure fails the whole group: nothing of it is written, and
//! every member gets the error, as if each had failed alone.
//!
//! A group does not wait long for a member whose row is still being read: one whose future is
//! not polled (held, or on a blocked thread) would stall every change of the process. After
//! [`GRACE`], the group goes on without the members still reading, which then make their
//! changes alone.

use std::collections::{HashMap, HashSet};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{OnceCell, oneshot};
use tokio_postgres::Row;

use super::changes::{self, Entry};
use super::row::{self, RowWrite};
use super::tx::{self, Tx, Write};
use crate::engine::store::Record;
use crate::model::{BatchId, RunId, StoreError};
use crate::support::lock;

/// Forms the groups of one store.
pub(super) struct Groups {
    pool: Pool,
    epoch: u64,
    /// Where commits run.
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The group that gathers no more members: it commits once they are all done. At most one
    /// at a time, so that a group forms while another commits.
    sealed: Option<Arc<Group>>,
    /// The group that members join while the sealed one commits.
    open: Option<Arc<Group>>,
}

#[derive(Default)]
struct Group {
    /// The transaction's connection, `BEGIN` sent; opened by its first read.
    client: OnceCell<Object>,
    members: Mutex<Members>,
    reads: Mutex<Reads>,
    /// Whether its transaction committed: only then does its connection go back to the pool.
    committed: AtomicBool,
}

impl Drop for Group {
    fn drop(&mut self) {
        if !*self.committed.get_mut()
            && let Some(client) = self.client.take()
        {
            // Closing the connection rolls back what the group wrote.
            drop(Object::take(client));
        }
    }
}

/// How long a sealed group waits for members still reading their rows before it goes on
/// without them.
const GRACE: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Members {
    /// The runs the members lock.
    runs: HashSet<RunId>,
    /// The next member's number.
    next: usize,
    /// Members reading their rows.
    locking: HashSet<usize>,
    /// Members that have neither handed their writes over nor left.
    pending: usize,
    sealed: bool,
    /// Whether its commit has started.
    committing: bool,
    handed: Vec<Handed>,
}

/// The rows members asked for: read together, in one statement per round, by a task of the
/// group's (rows asked while a round reads wait for the next).
#[derive(Default)]
struct Reads {
    /// The runs whose rows the next round reads, and where each row goes.
    asked: Vec<(RunId, RowTo)>,
    /// Whether the group's task reads.
    reading: bool,
}

/// Where a member's row goes (`None`: not kept, or held by another transaction).
type RowTo = oneshot::Sender<Result<Option<Row>, StoreError>>;

/// One member's writes, and where their rows go.
struct Handed {
    /// Writes that take no lock but their rows'.
    rows: Vec<RowWrite>,
    /// Changes for the log: appended after every member's `rows`, all in one statement, so
    /// that the log's lock is held for it and the commit only.
    log: Vec<Entry>,
    /// Where the positions of `log` go.
    done: oneshot::Sender<Result<Vec<u64>, StoreError>>,
}

/// A member of a group, until it hands its writes over or leaves (dropped).
pub(super) struct Member {
    groups: Arc<Groups>,
    group: Arc<Group>,
    /// Its number in the group.
    id: usize,
    /// Whether it has neither handed its writes over nor left (the group no longer counts
    /// it as such once it went on without it).
    pending: bool,
    /// Whether it read its row in the group's transaction.
    locked: bool,
}

impl Groups {
    /// Groups on the current runtime.
    pub(super) fn new(pool: Pool, epoch: u64) -> Arc<Self> {
        Arc::new(Self {
            pool,
            epoch,
            runtime: tokio::runtime::Handle::current(),
            state: Mutex::default(),
        })
    }

    /// Joins a group to change `run`; `None` if the group forming changes it already.
    pub(super) fn join(self: &Arc<Self>, run: &RunId) -> Option<Member> {
        let mut state = lock(&self.state);
        let group = match &state.sealed {
            // Nothing commits: this change need not wait for company.
            None => {
                let group = Arc::new(Group::default());
                state.sealed = Some(Arc::clone(&group));
                self.seal(&group);
                group
            }
            Some(_) => Arc::clone(state.open.get_or_insert_default()),
        };
        let mut members = lock(&group.members);
        if !members.runs.insert(run.clone()) {
            return None;
        }
        members.pending += 1;
        let id = members.next;
        members.next += 1;
        members.locking.insert(id);
        drop(members);
        Some(Member {
            groups: Arc::clone(self),
            group,
            id,
            pending: true,
            locked: false,
        })
    }

    /// Seals `group`: it gathers no more members, and goes on without the ones still reading
    /// their rows after [`GRACE`].
    fn seal(self: &Arc<Self>, group: &Arc<Group>) {
        lock(&group.members).sealed = true;
        let (groups, group) = (Arc::clone(self), Arc::downgrade(group));
        self.runtime.spawn(async move {
            tokio::time::sleep(GRACE).await;
            let Some(group) = group.upgrade() else {
                return;
            };
            let mut members = lock(&group.members);
            if members.committing || members.locking.is_empty() {
                return;
            }
            // No longer counted: each learns so when it reads at last, or when it is dropped.
            members.pending -= members.locking.len();
            members.locking.clear();
            drop(members);
            groups.commit_if_ready(&group);
        });
    }

    /// Commits `group` if it is sealed and all its members are done.
    fn commit_if_ready(self: &Arc<Self>, group: &Arc<Group>) {
        let mut members = lock(&group.members);
        if members.sealed && members.pending == 0 && !members.committing {
            members.committing = true;
            drop(members);
            // A task of its own: a member's future, dropped, would abandon the others.
            (self.runtime).spawn(Arc::clone(self).commit(Arc::clone(group)));
        }
    }

    async fn commit(self: Arc<Self>, group: Arc<Group>) {
        let mut handed = std::mem::take(&mut lock(&group.members).handed);
        let committed = match group.client.get() {
            Some(client) => {
                let update = update(handed.iter_mut().flat_map(|h| std::mem::take(&mut h.rows)));
                let append = append(handed.iter().flat_map(|h| &h.log));
                let committed = tx::commit(client, &writes(update.as_ref(), append.as_ref()))
                    .await
                    .map(|written| positions(&written, append.is_some()));
                group.committed.store(committed.is_ok(), Ordering::Relaxed);
                committed
            }
            // No member read its row: there is no transaction. (A member the group went on
            // without may still open one; its connection is closed with the group.)
            None => Ok(Vec::new()),
        };
        match committed {
            Ok(positions) => {
                // Each member's positions, in the order of its entries.
                let mut positions = positions.into_iter();
                for member in handed {
                    let mine = positions.by_ref().take(member.log.len()).collect();
                    let _ = member.done.send(Ok(mine));
                }
            }
            Err(error) => {
                for member in handed {
                    let _ = member.done.send(Err(error.clone()));
                }
            }
        }
        drop(group);
        // The next group stops gathering: it commits once its members are done.
        let next = {
            let mut state = lock(&self.state);
            state.sealed = state.open.take();
            state.sealed.clone()
        };
        if let Some(next) = next {
            self.seal(&next);
            self.commit_if_ready(&next);
        }
    }
}

impl Group {
    /// Reads the rows asked for, round after round, until none is asked.
    async fn read_rows(self: Arc<Self>, pool: Pool) {
        loop {
            let asked = {
                let mut reads = lock(&self.reads);
                if reads.asked.is_empty() {
                    reads.reading = false;
                    return;
                }
                std::mem::take(&mut reads.asked)
            };
            let ids: Vec<&str> = asked.iter().map(|(id, _)| id.as_str()).collect();
            match self.lock_rows(&pool, &ids).await {
                Ok(rows) => {
                    let mut rows: HashMap<String, Row> =
                        rows.into_iter().map(|row| (row.get(0), row)).collect();
                    for (id, sender) in asked {
                        let _ = sender.send(Ok(rows.remove(id.as_str())));
                    }
                }
                Err(error) => {
                    for (_, sender) in asked {
                        let _ = sender.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Reads the rows of runs `ids`, locked, in the group's transaction (begun by the first).
    async fn lock_rows(&self, pool: &Pool, ids: &[&str]) -> Result<Vec<Row>, StoreError> {
        let client = (self.client)
            .get_or_try_init(|| async {
                let client = pool.get().await?;
                // Sent, not awaited: the statements sent after it are answered after it, in
                // its transaction. It fails only with the connection, and then so do they.
                {
                    let mut begin = pin!(client.batch_execute("BEGIN"));
                    let _ = poll_fn(|cx| Poll::Ready(begin.as_mut().poll(cx))).await;
                }
                Ok::<_, StoreError>(client)
            })
            .await?;
        let statement = client.prepare_cached(&LOCK_UNLESS_HELD).await?;
        Ok(client.query(&statement, &[&ids]).await?)
    }
}

impl Member {
    /// Locks the run's row in the group's transaction; returns its record and batch, or
    /// `None` if the run is not kept, another transaction holds its row, or the group went on
    /// without this member (then the change is for a transaction of its own).
    pub(super) async fn lock(
        &mut self,
        id: &RunId,
    ) -> Result<Option<(Record, Option<BatchId>)>, StoreError> {
        let found = self.read(id).await;
        let mut members = lock(&self.group.members);
        if !members.locking.remove(&self.id) {
            self.pending = false;
            return Ok(None);
        }
        drop(members);
        self.locked = true;
        let Some(found) = found? else {
            return Ok(None);
        };
        Ok(Some(row::record(&found, self.groups.epoch)?))
    }

    /// Reads the run's row, locked, in the group's transaction, with the rows other members
    /// ask for meanwhile.
    async fn read(&self, id: &RunId) -> Result<Option<Row>, StoreError> {
        let (sender, row) = oneshot::channel();
        let start = {
            let mut reads = lock(&self.group.reads);
            reads.asked.push((id.clone(), sender));
            !std::mem::replace(&mut reads.reading, true)
        };
        if start {
            // A task of its own: a member's future, dropped, would abandon the others.
            let (group, pool) = (Arc::clone(&self.group), self.groups.pool.clone());
            self.groups.runtime.spawn(group.read_rows(pool));
        }
        row.await
            .unwrap_or_else(|_| Err(StoreError::new("a group's read ended before it answered")))
    }

    /// Hands the member's writes over and waits for the group's commit; returns the positions
    /// of its `log` entries.
    pub(super) async fn commit(
        mut self,
        rows: Vec<RowWrite>,
        log: Vec<Entry>,
    ) -> Result<Vec<u64>, StoreError> {
        let (done, committed) = oneshot::channel();
        {
            let mut members = lock(&self.group.members);
            members.handed.push(Handed { rows, log, done });
            members.pending -= 1;
        }
        self.pending = false;
        self.groups.commit_if_ready(&self.group);
        drop(self);
        committed
            .await
            .unwrap_or_else(|_| Err(StoreError::new("a group's commit ended before it answered")))
    }
}

impl Drop for Member {
    /// Leaves the group, having written nothing (the row it locked stays locked until the
    /// group ends).
    fn drop(&mut self) {
        if self.pending {
            let mut members = lock(&self.group.members);
            // Not counted any more if the group went on without it while it read its row.
            if self.locked || members.locking.remove(&self.id) {
                members.pending -= 1;
            }
            drop(members);
            self.groups.commit_if_ready(&self.group);
        }
    }
}

/// Selects the rows of runs (`$1`, their ids), locked until the transaction ends, but those
/// another transaction holds.
static LOCK_UNLESS_HELD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM \"TaskRun\" WHERE id = ANY($1) FOR UPDATE SKIP LOCKED",
        row::COLUMNS
    )
});

/// A run's row, locked for a change: in a group, or in a transaction of its own.
pub(super) enum Locked {
    Member(Member),
    Alone(Box<Tx>),
}

impl Locked {
    /// Locks the run's row, in a group if one can take it; returns its record and batch
    /// (`None` if the run is not kept).
    pub(super) async fn run(
        groups: &Arc<Groups>,
        id: &RunId,
    ) -> Result<(Locked, Option<(Record, Option<BatchId>)>), StoreError> {
        if let Some(mut member) = groups.join(id)
            && let Some(found) = member.lock(id).await?
        {
            return Ok((Locked::Member(member), Some(found)));
        }
        // Out of the group by now: it does not wait for this transaction.
        let select = Write::new(&LOCK, vec![Box::new(id.as_str().to_owned())]);
        let (tx, rows) = Tx::begin_with(&groups.pool, &select).await?;
        let found = rows.first().map(|found| row::record(found, groups.epoch));
        Ok((Locked::Alone(Box::new(tx)), found.transpose()?))
    }

    /// Writes `rows`, then appends `log` (see [`Handed`]), and commits; returns the positions
    /// of the `log` entries.
    pub(super) async fn commit(
        self,
        rows: Vec<RowWrite>,
        log: Vec<Entry>,
    ) -> Result<Vec<u64>, StoreError> {
        match self {
            Locked::Member(member) => member.commit(rows, log).await,
            Locked::Alone(tx) => {
                let (update, append) = (update(rows), append(&log));
                let written = tx
                    .commit_with(&writes(update.as_ref(), append.as_ref()))
                    .await?;
                Ok(positions(&written, append.is_some()))
            }
        }
    }

    /// Ends it, having written nothing.
    pub(super) async fn release(self) -> Result<(), StoreError> {
        match self {
            // Leaving is enough: the group does not wait for it.
            Locked::Member(member) => drop(member),
            Locked::Alone(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// The statement that appends `log` to the change log, if it has any entry.
fn append<'e>(log: impl IntoIterator<Item = &'e Entry>) -> Option<Write<'static>> {
    let mut log = log.into_iter().peekable();
    log.peek().is_some().then(|| changes::append(log))
}

/// The statement that writes `rows`, if there is any.
fn update(rows: impl IntoIterator<Item = RowWrite>) -> Option<Write<'static>> {
    let mut rows = rows.into_iter().peekable();
    rows.peek().is_some().then(|| row::update(rows))
}

/// `update`, then `append`: what a change's transaction writes before it commits.
fn writes<'w>(
    update: Option<&'w Write<'static>>,
    append: Option<&'w Write<'static>>,
) -> Vec<&'w Write<'static>> {
    update.into_iter().chain(append).collect()
}

/// The positions of the appended entries, from what [`writes`] wrote.
fn positions(written: &[Vec<Row>], appended: bool) -> Vec<u64> {
    match written.last() {
        Some(appended_rows) if appended => changes::positions(appended_rows),
        _ => Vec::new(),
    }
}

/// Selects a run's row, locked until the transaction ends.
static LOCK: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *row::SELECT));
