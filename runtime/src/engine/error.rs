//! Why an engine operation was refused. Each says what happened and what to do; none leaves a
//! half-done change behind.

use crate::model::{MetadataError, RunId, RunStatus, StoreError};

use super::options::{MAX_BATCH, MAX_TAG_LEN, MAX_TAGS};

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The engine runs its workers on the Tokio runtime it is built in.
    #[error("Engine::build must be called within a Tokio runtime: {0}")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    /// Two registered tasks have one identifier, so a run could not tell which one to run.
    #[error(
        "two tasks are registered with the id `{id}`: `{first}` and `{second}`; give one of them another `#[task(id = \"...\")]`, or register each once"
    )]
    DuplicateTask {
        /// The identifier.
        id: &'static str,
        /// The type registered first.
        first: &'static str,
        /// The type registered second.
        second: &'static str,
    },
    /// A task is declared to run elsewhere ([`EngineBuilder::declare`]), but the engine keeps
    /// its runs in this process's memory, where no other process can run them.
    ///
    /// [`EngineBuilder::declare`]: crate::EngineBuilder::declare
    #[error(
        "task `{0}` is declared to run in another process, but this engine keeps its runs in memory, where none can: register its `async fn` with `Engine::builder().task::<T>()`, or share the runs through a store such as Postgres"
    )]
    DeclaredInMemory(&'static str),
}

/// Why a trigger was refused. Nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// The task is not registered with this engine (nor declared, nor published by a process
    /// that shares its store).
    #[error(
        "task `{0}` is unknown to this engine: register its `async fn` with `Engine::builder().task::<T>()`, or, over a shared store such as Postgres, declare it (`.declare::<T>()`) or start a worker that registers it (workers publish their tasks)"
    )]
    UnknownTask(String),
    /// The payload serializes to more JSON than the engine accepts.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size as JSON.
        size: usize,
        /// The engine's limit.
        limit: usize,
    },
    /// The payload cannot be written as JSON that reads back as the task's payload type (a
    /// float that is not finite, a map whose keys are not strings, nesting deeper than 128
    /// levels), so the task could never read it.
    #[error(
        "the payload of task `{task}` cannot be written as JSON that reads back as its type: {source}"
    )]
    Payload {
        /// The task.
        task: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The payload, given as JSON ([`BatchItem::from_json`](crate::BatchItem::from_json)),
    /// does not decode as the task's payload type.
    #[error("the payload does not match task `{task}` at `{path}`: {message}")]
    PayloadMismatch {
        /// The task.
        task: String,
        /// Where in the payload it does not match, as a path (`items[2].name`; `.` for the
        /// whole payload).
        path: String,
        /// What does not match there.
        message: String,
    },
    /// A tag breaks a rule.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag.
        tag: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// More tags than a run may carry.
    #[error("{count} tags given; a run carries at most {MAX_TAGS}")]
    TooManyTags {
        /// How many were given.
        count: usize,
    },
    /// `max_attempts` of zero.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// A delay that ends past the year 9999.
    #[error("a delay of {0:?} ends past the year 9999")]
    DelayTooLong(std::time::Duration),
    /// The initial metadata breaks a rule of metadata.
    #[error("initial metadata refused: {0}")]
    Metadata(#[source] MetadataError),
    /// The engine is shutting down.
    #[error("the engine is shutting down and accepts no more runs")]
    ShuttingDown,
    /// A batch with more items than allowed.
    #[error("a batch holds at most {MAX_BATCH} runs; more were given")]
    BatchTooLarge {
        /// How many were read before refusing: `MAX_BATCH + 1`.
        count: usize,
    },
    /// The store failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TriggerError {
    /// The error for a tag that breaks a rule, if one does.
    pub(crate) fn check_tag(tag: &str) -> Result<(), Self> {
        let reason = if tag.is_empty() {
            "a tag cannot be empty"
        } else if tag.chars().count() > MAX_TAG_LEN {
            "a tag has at most 128 characters"
        } else if tag.chars().any(char::is_control) {
            "a tag cannot contain control characters"
        } else {
            return Ok(());
        };
        Err(TriggerError::InvalidTag {
            tag: tag.to_owned(),
            reason,
        })
    }
}

/// Why a run's tags could not change. Nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// No unfinished run has this id.
    #[error("no unfinished run `{0}`")]
    NotLive(RunId),
    /// The tags would break a rule.
    #[error(transparent)]
    Invalid(TriggerError),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a run could not be canceled.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    /// No run has this id.
    #[error("no run `{0}`")]
    UnknownRun(RunId),
    /// The run already finished.
    #[error("run `{id}` already finished as {status}")]
    AlreadyFinished {
        /// The run.
        id: RunId,
        /// Its final status.
        status: RunStatus,
    },
    /// The store failed; the run was not canceled.
    #[error(transparent)]
    Store(#[from] StoreError),
}
