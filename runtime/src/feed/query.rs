//! Listing runs: which runs ([`RunQuery`]) and one page of them ([`RunPage`]).

use crate::model::{AnyRun, BatchId, Cursor, RunInfo, RunStatus};
use crate::typed::Task;

/// The most runs one page holds.
pub const MAX_PAGE_SIZE: usize = 100;

/// Which runs to list: those that match every filter given, newest first, a page at a time.
///
/// ```
/// use runcast::{RunQuery, RunStatus};
/// # #[runcast::task(id = "resize", payload = u32, output = u32)] pub struct Resize;
///
/// let query = RunQuery::new()
///     .task::<Resize>()
///     .status(RunStatus::Failed)
///     .tag("user:42")
///     .limit(50);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunQuery {
    /// Runs of this task only.
    pub task: Option<String>,
    /// Runs in one of these statuses only (any status when empty).
    pub statuses: Vec<RunStatus>,
    /// Runs that carry every one of these tags.
    pub tags: Vec<String>,
    /// Runs of this batch only.
    pub batch: Option<BatchId>,
    /// How many runs a page holds: 1 to [`MAX_PAGE_SIZE`] (25 by default).
    pub limit: usize,
    /// Runs created before this cursor only: a page's [`next`](RunPage::next), to read the
    /// page after it. Backends clamp `limit` to 1..=[`MAX_PAGE_SIZE`] too.
    pub before: Option<Cursor>,
}

impl Default for RunQuery {
    fn default() -> Self {
        Self {
            task: None,
            statuses: Vec::new(),
            tags: Vec::new(),
            batch: None,
            limit: 25,
            before: None,
        }
    }
}

impl RunQuery {
    /// Every run, newest first, 25 a page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs of `T` only.
    pub fn task<T: Task>(mut self) -> Self {
        self.task = Some(T::ID.to_owned());
        self
    }

    /// Runs in `status` (or in any status added this way).
    pub fn status(mut self, status: RunStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Runs that carry `tag` (and every tag added this way).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Runs of `batch` only.
    pub fn batch(mut self, batch: BatchId) -> Self {
        self.batch = Some(batch);
        self
    }

    /// Pages of `limit` runs, within 1 and [`MAX_PAGE_SIZE`].
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The page after the one that gave `next`.
    pub fn before(mut self, next: Cursor) -> Self {
        self.before = Some(next);
        self
    }

    /// Whether `run`, of batch `batch`, passes every filter but the page's bounds.
    pub(crate) fn matches(&self, run: &AnyRun, batch: Option<&BatchId>) -> bool {
        self.task
            .as_deref()
            .is_none_or(|task| run.task_identifier() == task)
            && (self.statuses.is_empty() || self.statuses.contains(&run.status()))
            && self.tags.iter().all(|tag| run.tags().contains(tag))
            && self
                .batch
                .as_ref()
                .is_none_or(|wanted| batch == Some(wanted))
    }
}

/// One page of a listing: runs, newest first, and where the next page starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<AnyRun>,
    /// Give it to [`RunQuery::before`] for the next page; `None` on the last page.
    pub next: Option<Cursor>,
}

impl RunPage {
    /// A page of `runs` with the next page at `next`.
    pub fn new(runs: Vec<AnyRun>, next: Option<Cursor>) -> Self {
        Self { runs, next }
    }
}
