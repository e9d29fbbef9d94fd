//! The [`Task`] trait that `#[task]` implements, and what an executable task needs.

use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;

use serde_json::value::RawValue;

use crate::feed::Cursor;
use crate::hub::lock;
use crate::metadata::{MetadataError, MetadataOp, apply_all};
use crate::run::{JsonObject, RunId};
use crate::streams::{StreamError, StreamKey, StreamWriter, TaskChunk};

/// A kind of background task: its identifier and the types of its payload and output.
///
/// Implement it with [`#[task]`](crate::task), never by hand: the macro checks the identifier
/// and the types at compile time.
///
/// ```
/// use runcast::{Task, task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema)] pub struct Email { to: String }
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema)] pub struct Receipt { id: u64 }
///
/// #[task(id = "send-email", payload = Email, output = Receipt)]
/// pub struct SendEmail;
///
/// assert_eq!(SendEmail::ID, "send-email");
/// assert_eq!(<SendEmail as Task>::ID, "send-email");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a runcast task",
    label = "not a task",
    note = "declare it with `#[runcast::task(id = \"...\", ...)]`"
)]
pub trait Task: Send + Sync + 'static {
    /// The task identifier, as it appears in a run's `taskIdentifier`.
    ///
    /// ASCII letters, digits, `-`, `_`, `.` and `/`; 1 to 128 characters.
    const ID: &'static str;

    /// What a run of this task is triggered with.
    type Payload: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// What a successful run of this task returns.
    type Output: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// What subscribers decode the run's metadata as (`metadata = T` in `#[task]`): a
    /// [`JsonObject`] unless the task declares a type.
    type Metadata: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The chunks of the task's realtime streams (`streams(key = T, ...)` in `#[task]`): an
    /// enum with one variant per stream, or [`NoStreams`](crate::NoStreams).
    type Chunk: TaskChunk;

    /// The JSON Schema of [`Self::Payload`].
    fn payload_schema() -> Schema {
        schemars::schema_for!(Self::Payload)
    }

    /// The JSON Schema of [`Self::Output`].
    fn output_schema() -> Schema {
        schemars::schema_for!(Self::Output)
    }
}

/// A [`Task`] whose code runs in this process: what `#[task]` on an `async fn` implements.
pub trait TaskFn: Task {
    /// The error the function returns; its `Display` becomes the run's error message.
    type Error: Display + Debug + Send + 'static;

    /// Runs the task function once.
    fn run(
        payload: Self::Payload,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// What a running task knows about its run.
///
/// The engine gives one to every attempt. Tests of a task function build one with
/// [`TaskContext::new`].
#[derive(Clone)]
pub struct TaskContext {
    run_id: RunId,
    attempt: u32,
    tags: Vec<String>,
    cancel: CancelSignal,
    run: Arc<dyn RunAccess>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .field("canceled", &self.cancel.is_canceled())
            .finish()
    }
}

/// Set once when a run is canceled; tasks wait on it or poll it through their context.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelSignal(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    canceled: AtomicBool,
    notify: Notify,
}

impl CancelSignal {
    /// Whether `other` is this signal, not only a signal in the same state.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn cancel(&self) {
        self.0.canceled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub(crate) fn is_canceled(&self) -> bool {
        self.0.canceled.load(Ordering::SeqCst)
    }

    pub(crate) async fn canceled(&self) {
        let notified = self.0.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is read, so a `cancel` in between is not missed.
        notified.as_mut().enable();
        if !self.is_canceled() {
            notified.await;
        }
    }
}

impl TaskContext {
    /// A context for the first attempt of the run `run_id`, for tests and custom executors.
    ///
    /// ```
    /// let ctx = runcast::TaskContext::new("run_1234".into());
    /// assert_eq!(ctx.run_id().as_str(), "run_1234");
    /// assert_eq!(ctx.attempt(), 1);
    /// ```
    ///
    /// Its metadata operations apply to an object of its own, read with
    /// [`metadata`](Self::metadata); chunks written to its streams are accepted and dropped.
    pub fn new(run_id: RunId) -> Self {
        let local = Arc::new(LocalRun::default());
        Self::for_attempt(run_id, 1, Vec::new(), CancelSignal::default(), local)
    }

    /// The same context with these tags, for tests.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The run's tags when this attempt started.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The context of attempt `attempt` (from 1) of a run.
    pub(crate) fn for_attempt(
        run_id: RunId,
        attempt: u32,
        tags: Vec<String>,
        cancel: CancelSignal,
        run: Arc<dyn RunAccess>,
    ) -> Self {
        Self {
            run_id,
            attempt,
            tags,
            cancel,
            run,
        }
    }

    /// Changes the run's metadata; subscribers see the new snapshot. All or nothing: on an
    /// error (such as metadata over 256 KiB) nothing changes.
    ///
    /// ```
    /// use runcast::{MetadataOp, TaskContext};
    ///
    /// # futures::executor::block_on(async {
    /// let ctx = TaskContext::new("run_1".into());
    /// ctx.update_metadata([MetadataOp::Set("progress".into(), 0.5.into())]).await?;
    /// ctx.update_metadata([MetadataOp::Increment("steps".into(), 1.0)]).await?;
    /// let metadata = serde_json::Value::Object(ctx.metadata().await.unwrap());
    /// assert_eq!(metadata, serde_json::json!({"progress": 0.5, "steps": 1}));
    /// # Ok::<(), runcast::MetadataError>(())
    /// # })?;
    /// # Ok::<(), runcast::MetadataError>(())
    /// ```
    pub async fn update_metadata(
        &self,
        ops: impl IntoIterator<Item = MetadataOp>,
    ) -> Result<(), MetadataError> {
        self.run.update_metadata(ops.into_iter().collect()).await
    }

    /// The run's metadata now.
    pub async fn metadata(&self) -> Option<JsonObject> {
        self.run.metadata().await
    }

    /// A writer of one of the task's realtime streams: `ctx.stream(Chat::TOKENS)` writes
    /// `Chat`'s `tokens` chunks, typed as declared in `#[task(streams(tokens = String))]`.
    ///
    /// ```
    /// use runcast::{TaskContext, task};
    ///
    /// #[task(id = "chat", streams(tokens = String))]
    /// async fn chat(prompt: String, ctx: TaskContext) -> Result<(), runcast::StreamError> {
    ///     let tokens = ctx.stream(Chat::TOKENS);
    ///     for word in prompt.split(' ') {
    ///         tokens.append(&word.to_owned()).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    ///
    /// Writing to a run of another task is an error ([`StreamError::WrongTask`]).
    pub fn stream<T: Task, C: Serialize>(&self, key: StreamKey<T, C>) -> StreamWriter<C> {
        StreamWriter::new(self.clone(), key)
    }

    pub(crate) fn append_chunk(
        &self,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
    ) -> BoxFuture<'_, Result<Cursor, StreamError>> {
        self.run.append_chunk(self.attempt, stream, data)
    }

    /// The id of the run being executed.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Which attempt this is, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the run was canceled. The engine also stops awaiting the task when it is, so a
    /// task needs this only to stop work between two `.await`s.
    pub fn is_canceled(&self) -> bool {
        self.cancel.is_canceled()
    }

    /// Completes when the run is canceled.
    pub async fn canceled(&self) {
        self.cancel.canceled().await;
    }
}

/// A boxed future: what a [`RunAccess`] method returns.
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a running task reaches of its run: the engine's store, or a local record in tests.
pub(crate) trait RunAccess: Send + Sync {
    fn update_metadata(&self, ops: Vec<MetadataOp>) -> BoxFuture<'_, Result<(), MetadataError>>;
    fn metadata(&self) -> BoxFuture<'_, Option<JsonObject>>;
    /// Appends a chunk to stream `(task, key)` of the run, from attempt `attempt`.
    fn append_chunk(
        &self,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
    ) -> BoxFuture<'_, Result<Cursor, StreamError>>;
}

/// The run of a [`TaskContext::new`]: metadata kept in the context; chunks counted only.
#[derive(Default)]
struct LocalRun {
    metadata: std::sync::Mutex<Option<JsonObject>>,
    chunks: std::sync::atomic::AtomicU64,
}

impl RunAccess for LocalRun {
    fn update_metadata(&self, ops: Vec<MetadataOp>) -> BoxFuture<'_, Result<(), MetadataError>> {
        let mut metadata = lock(&self.metadata);
        let updated = apply_all(metadata.as_ref(), ops).map(|updated| {
            *metadata = Some(updated);
        });
        Box::pin(std::future::ready(updated))
    }

    fn metadata(&self) -> BoxFuture<'_, Option<JsonObject>> {
        Box::pin(std::future::ready(lock(&self.metadata).clone()))
    }

    fn append_chunk(
        &self,
        _attempt: u32,
        _stream: (&'static str, &'static str),
        _data: Arc<RawValue>,
    ) -> BoxFuture<'_, Result<Cursor, StreamError>> {
        let written = self.chunks.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(std::future::ready(Ok(Cursor::new(written))))
    }
}

/// The return type of a task function: `Result<Output, Error>` (or an alias of it), whose
/// error's `Display` becomes the run's error message.
#[diagnostic::on_unimplemented(
    message = "a task function must return `Result<Output, Error>`, not `{Self}`",
    label = "not a `Result`",
    note = "the `Ok` type is the task's output; the error's `Display` becomes the run's error message"
)]
pub trait TaskReturn {
    /// The task's output.
    type Ok;
    /// The task's error.
    type Err: Display + Debug + Send + 'static;

    /// The value as a `Result`: what `TaskFn::run` returns.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E: Display + Debug + Send + 'static> TaskReturn for Result<T, E> {
    type Ok = T;
    type Err = E;

    fn into_result(self) -> Self {
        self
    }
}

/// The second parameter of a task function: [`TaskContext`].
#[diagnostic::on_unimplemented(
    message = "the second parameter of a task function must be `runcast::TaskContext`, not `{Self}`",
    label = "expected `TaskContext`",
    note = "the context parameter is optional: a task function may take its payload only"
)]
pub trait IsTaskContext {
    /// The context the engine gives, as the parameter's type: what `TaskFn::run` passes.
    fn from_context(ctx: TaskContext) -> Self;
}

impl IsTaskContext for TaskContext {
    fn from_context(ctx: TaskContext) -> Self {
        ctx
    }
}
