//! What a trigger returns ([`RunHandle`], [`BatchHandle`]), and what a subscription to one run
//! or one batch may start from ([`RunRef`], [`BatchRef`]).

use std::fmt;
use std::marker::PhantomData;

use crate::model::{BatchId, Cursor, RunId, Untyped};
use crate::typed::Task;

/// A run just triggered: its id, and a cursor that precedes its creation.
///
/// Subscribing with the handle (`feed.subscribe_to_run(&handle)`) starts from that cursor, so it
/// shows every state of the run, however fast the task finishes, as long as the feed's history
/// still holds the changes since (the embedded engine's latest 4,096 by default, see
/// [`EngineBuilder::change_history`](crate::EngineBuilder::change_history)); past it, the
/// subscription starts at the run's latest snapshot, marked
/// [`coalesced`](crate::Update::coalesced).
pub struct RunHandle<T> {
    id: RunId,
    cursor: Cursor,
    task: PhantomData<fn() -> T>,
}

impl<T> Clone for RunHandle<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            cursor: self.cursor,
            task: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RunHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl<T> RunHandle<T> {
    /// The handle of run `id`, created just after `cursor`.
    pub fn new(id: RunId, cursor: Cursor) -> Self {
        Self {
            id,
            cursor,
            task: PhantomData,
        }
    }

    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// A cursor before the run's creation: subscribing from it cannot miss the first event.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }
}

/// Runs triggered together: the batch's id, a cursor before the first run's creation, and a
/// handle of each run, in order.
pub struct BatchHandle<T> {
    /// The batch's id.
    pub id: BatchId,
    /// A cursor before the batch's first run was created: subscribing with the handle starts
    /// there.
    pub cursor: Cursor,
    /// The runs, in the order of the items.
    pub runs: Vec<RunHandle<T>>,
}

impl<T> fmt::Debug for BatchHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchHandle")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .field("runs", &self.runs)
            .finish()
    }
}

/// One run to follow, and where to start: a [`RunHandle`] starts before the run's creation
/// (every state of the run), a [`RunId`] at the run's current state.
pub trait RunRef<T> {
    /// The run.
    fn run_id(&self) -> &RunId;
    /// Where to start.
    fn from(&self) -> Cursor;
}

impl<T: Task> RunRef<T> for &RunHandle<T> {
    fn run_id(&self) -> &RunId {
        &self.id
    }
    fn from(&self) -> Cursor {
        self.cursor
    }
}

/// The handle of a run of a mixed batch, followed as the task it belongs to.
impl<T: Task> RunRef<T> for &RunHandle<Untyped> {
    fn run_id(&self) -> &RunId {
        &self.id
    }
    fn from(&self) -> Cursor {
        self.cursor
    }
}

impl<T: Task> RunRef<T> for &RunId {
    fn run_id(&self) -> &RunId {
        self
    }
    fn from(&self) -> Cursor {
        Cursor::START
    }
}

/// One batch to follow, and where to start: a [`BatchHandle`] starts before the batch's
/// creation (every state of each run), a [`BatchId`] at the runs' current states.
pub trait BatchRef {
    /// The batch.
    fn batch_id(&self) -> &BatchId;
    /// Where to start.
    fn from(&self) -> Cursor;
}

impl<T> BatchRef for &BatchHandle<T> {
    fn batch_id(&self) -> &BatchId {
        &self.id
    }
    fn from(&self) -> Cursor {
        self.cursor
    }
}

impl BatchRef for &BatchId {
    fn batch_id(&self) -> &BatchId {
        self
    }
    fn from(&self) -> Cursor {
        Cursor::START
    }
}
