//! Where a change is in the history of changes ([`Cursor`]), and the item that carries a run
//! snapshot with its cursor ([`Update`]).

use std::fmt;
use std::str::FromStr;

use super::run::RunInfo;

/// A position in one history of changes: every change of a run, and every chunk of its
/// streams, gets a greater one.
///
/// Every item of a subscription carries the cursor of the change it shows; subscribing from it
/// continues with the changes after it, with no gap and no duplicate. A cursor names the
/// history it belongs to (its epoch: one engine, or one database), so that a cursor of another
/// engine, or of an engine that was restarted with its history lost, is refused instead of
/// silently skipping changes. [`Cursor::START`] precedes every change of every history.
///
/// Its text form is `<epoch>-<position>` (hexadecimal, then decimal), and it parses back:
///
/// ```
/// use runcast::Cursor;
///
/// assert_eq!(Cursor::START.to_string(), "0-0");
/// let cursor: Cursor = "5f3a9c-42".parse()?;
/// assert_eq!(cursor.to_string(), "5f3a9c-42");
/// assert!(cursor > Cursor::START);
/// # Ok::<(), runcast::ParseCursorError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    // Ordered by position first: cursors of one history compare by position.
    position: u64,
    epoch: u64,
}

impl Cursor {
    /// Before every change, in every history.
    pub const START: Cursor = Cursor {
        position: 0,
        epoch: 0,
    };

    pub(crate) const fn new(epoch: u64, position: u64) -> Self {
        Cursor { position, epoch }
    }

    /// The position within its history.
    pub(crate) const fn position(self) -> u64 {
        self.position
    }

    /// The history it belongs to; 0 for [`Cursor::START`].
    pub(crate) const fn epoch(self) -> u64 {
        self.epoch
    }

    /// The cursor just before this one: subscribing from it yields this change first.
    pub(crate) const fn before(self) -> Self {
        Cursor {
            position: self.position.saturating_sub(1),
            epoch: self.epoch,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch, self.position)
    }
}

/// The error of reading a [`Cursor`] from text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor `{0}`: expected `<epoch>-<position>` as an item's cursor is written")]
pub struct ParseCursorError(String);

impl FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseCursorError(s.chars().take(64).collect());
        let (epoch, position) = s.split_once('-').ok_or_else(invalid)?;
        // `from_str_radix` and `parse` accept a leading `+`; a cursor's text never has one.
        if epoch.starts_with('+') || position.starts_with('+') {
            return Err(invalid());
        }
        let epoch = u64::from_str_radix(epoch, 16).map_err(|_| invalid())?;
        let position = position.parse().map_err(|_| invalid())?;
        Ok(Cursor { position, epoch })
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
    /// Whether changes of this run before this one were skipped: the subscriber fell behind its
    /// window, or resumed from a cursor older than the history kept, so it gets the run's
    /// latest snapshot instead of every change. `false` for a subscriber that keeps up.
    pub coalesced: bool,
}

impl<R: RunInfo> RunInfo for Update<R> {
    super::run::forward_run_info!(|this| &this.run);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_write_and_refuse_anything_else() {
        for cursor in [
            Cursor::START,
            Cursor::new(1, 2),
            Cursor::new(u64::MAX, u64::MAX),
        ] {
            assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        }
        for bad in [
            "", "-", "1", "1-", "-1", "g-1", "1--1", "+1-1", "1-+1", "1-1-1", " 1-1",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }
}
