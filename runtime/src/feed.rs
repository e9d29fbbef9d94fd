//! The vocabulary of subscriptions: what a feed watches ([`Scope`]), where it is in the
//! history of changes ([`Cursor`]), the items it yields ([`Update`]), and the seam every
//! backend implements ([`RunFeed`]).

use std::fmt;
use std::str::FromStr;

use futures_core::Stream;

use crate::decode::DecodeError;
use crate::hub::SubscribeError;
use crate::run::{AnyRun, BatchId, RunId, RunInfo};
use crate::stream::{Decoded, RunStreamExt};
use crate::union::RunUnion;

/// The one seam between a backend and the typed layer: subscriptions to the runs in a
/// [`Scope`], from a [`Cursor`], as streams of untyped [`Update`]s in change order.
///
/// [`RunHub`](crate::RunHub) and [`Engine`](crate::Engine) implement it; everything above it
/// (the typed adaptors, unions, the typed subscriptions below) works the same whichever
/// backend produced the runs.
pub trait RunFeed {
    /// The error items of a subscription. It holds a [`DecodeError`], so that the typed
    /// adaptors can add theirs.
    type Error: From<DecodeError>;
    /// One subscription's stream. It never ends on its own; dropping it unsubscribes.
    type Subscription: Stream<Item = Result<Update<AnyRun>, Self::Error>>;

    /// Subscribes to the runs in `scope`: first the latest snapshot of every run in scope that
    /// changed after `from` ([`Cursor::START`]: all of them), then every later change, in
    /// cursor order. Resuming from an item's cursor continues with no gap and no duplicate.
    fn subscribe(&self, scope: Scope, from: Cursor) -> Result<Self::Subscription, SubscribeError>;

    /// Subscribes to the runs that carry all of `tags`, as variants of the union `U`, from
    /// the start. Never ends on its own.
    fn subscribe_to_runs_with_tag<U: RunUnion>(
        &self,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Decoded<Self::Subscription, U>, SubscribeError> {
        let tags = tags.into_iter().map(Into::into).collect();
        Ok(self
            .subscribe(Scope::Tags(tags), Cursor::START)?
            .union::<U>())
    }

    /// Subscribes to the runs of a batch, as variants of the union `U`, from the start.
    /// Never ends on its own.
    fn subscribe_to_batch<U: RunUnion>(
        &self,
        batch: &BatchId,
    ) -> Result<Decoded<Self::Subscription, U>, SubscribeError> {
        Ok(self
            .subscribe(Scope::Batch(batch.clone()), Cursor::START)?
            .union::<U>())
    }
}

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

    /// The cursor just before this one: subscribing from it yields this change first.
    pub(crate) fn before(self) -> Self {
        Cursor(self.0.saturating_sub(1))
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
