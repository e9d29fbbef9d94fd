//! The vocabulary of subscriptions: what a feed watches ([`Scope`]), where it is in the
//! history of changes ([`Cursor`]), and the items it yields ([`Update`]).

use std::fmt;
use std::str::FromStr;

use crate::run::{BatchId, RunId, RunInfo};

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One run.
    Run(RunId),
    /// Every run that carries all of these tags.
    Tags(Vec<String>),
    /// Every run of a batch.
    Batch(BatchId),
}

/// A position in the history of changes: every change of a run gets a greater one.
///
/// Every [`Update`] carries the cursor of the change it shows. Subscribing from an update's
/// cursor continues with the changes after it: no gap and no duplicate. [`Cursor::START`]
/// precedes every change. On the wire a cursor is its decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor(u64);

impl Cursor {
    /// Before every change.
    pub const START: Cursor = Cursor(0);

    pub(crate) fn new(version: u64) -> Self {
        Cursor(version)
    }

    pub(crate) fn version(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The error of reading a [`Cursor`] that is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor `{0}`: expected the decimal number an update carried")]
pub struct ParseCursorError(String);

impl FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(Cursor)
            .map_err(|_| ParseCursorError(s.to_owned()))
    }
}

/// One item of a subscription: a run snapshot and the cursor of the change it shows.
///
/// The typed adaptors keep the cursor: a feed of `Update<AnyRun>` becomes a feed of
/// `Update<Run<T>>` or `Update<U>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update<R> {
    /// Where this change is in the history; subscribe from it to continue after it.
    pub cursor: Cursor,
    /// The whole run, as it is after the change.
    pub run: R,
}

impl<R: RunInfo> RunInfo for Update<R> {
    crate::run::forward_run_info!(|this| &this.run);
}
