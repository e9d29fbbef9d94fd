//! What a running task reaches: [`TaskFn`] (a task whose code runs here), its
//! [`TaskContext`] (its run's id, attempt, cancellation, typed metadata and streams) and the
//! [`StreamWriter`] of each of its streams.

use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::store::CHUNK_OVERHEAD;
use crate::model::metadata::{self, MetadataError, MetadataOp};
use crate::model::{Cursor, JsonObject, RunId, StoreError};
use crate::support::lock;
use crate::typed::{ChunkError, StreamOf, Task, TaskChunk};

/// A [`Task`] whose code runs in this process: what `#[task]` on an `async fn` implements, and
/// what [`EngineBuilder::task`](crate::EngineBuilder::task) registers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no function for this engine to run",
    label = "not declared with `#[task]` on an `async fn`",
    note = "an engine runs the tasks declared with `#[task]` on an `async fn`; a task declared on a struct only names the types of a task that another process runs, and the embedded engine cannot run it: declare it on an `async fn` to run it here, or `declare::<T>()` it to trigger runs that another process sharing the store (Postgres) runs"
)]
pub trait TaskFn: Task {
    /// The error the function returns; its `Display` becomes the run's error message.
    type Error: Display + Debug + Send + 'static;

    /// Runs the task function once.
    fn run(
        payload: Self::Payload,
        ctx: TaskContext<Self>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// What a running task of `T` knows and reaches of its run: its id, attempt and tags, whether
/// it was canceled, its metadata typed as `T` declares it, and `T`'s streams (only `T`'s:
/// another task's stream key does not compile).
///
/// The engine gives one to every attempt. In a `#[task]` function the parameter is written
/// `ctx: TaskContext` and the macro names the task. Tests of a task function build one with
/// [`TaskContext::new`].
pub struct TaskContext<T> {
    run_id: RunId,
    attempt: u32,
    tags: Arc<[String]>,
    cancel: CancelSignal,
    run: Arc<dyn RunAccess>,
    task: PhantomData<fn() -> T>,
}

impl<T> Clone for TaskContext<T> {
    fn clone(&self) -> Self {
        Self {
            run_id: self.run_id.clone(),
            attempt: self.attempt,
            tags: Arc::clone(&self.tags),
            cancel: self.cancel.clone(),
            run: Arc::clone(&self.run),
            task: PhantomData,
        }
    }
}

impl<T> fmt::Debug for TaskContext<T> {
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

/// Everything of a context but its task: what the engine hands a registered task's executor.
pub(crate) struct Attempt {
    pub(crate) run_id: RunId,
    pub(crate) attempt: u32,
    pub(crate) tags: Arc<[String]>,
    pub(crate) cancel: CancelSignal,
    pub(crate) run: Arc<dyn RunAccess>,
}

impl<T: Task> TaskContext<T> {
    /// A context for the first attempt of the run `run_id`, for tests of a task function.
    ///
    /// ```
    /// # #[runcast::task(id = "count", payload = u32, output = u32)] pub struct Count;
    /// let ctx = runcast::TaskContext::<Count>::new("run_1234".into());
    /// assert_eq!(ctx.run_id().as_str(), "run_1234");
    /// assert_eq!(ctx.attempt(), 1);
    /// ```
    ///
    /// Its metadata lives in the context, under the same rules as a run's (typed as `T`
    /// declares it, within the size and depth limits); chunks written to its streams are
    /// checked and dropped.
    pub fn new(run_id: RunId) -> Self {
        let local = LocalRun {
            metadata: std::sync::Mutex::new(None),
            chunks: AtomicU64::new(0),
            check: check_metadata::<T>,
        };
        Self::for_attempt(Attempt {
            run_id,
            attempt: 1,
            tags: Arc::new([]),
            cancel: CancelSignal::default(),
            run: Arc::new(local),
        })
    }

    /// The context of one attempt of a run of `T`.
    pub(crate) fn for_attempt(attempt: Attempt) -> Self {
        Self {
            run_id: attempt.run_id,
            attempt: attempt.attempt,
            tags: attempt.tags,
            cancel: attempt.cancel,
            run: attempt.run,
            task: PhantomData,
        }
    }

    /// The same context with these tags, for tests.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The id of the run being executed.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Which attempt this is, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's tags when this attempt started.
    pub fn tags(&self) -> &[String] {
        &self.tags
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

    /// The run's metadata now, typed as `T` declares it; `None` if it has none.
    ///
    /// An error, never `None`, if the run holds metadata that does not decode as `T::Metadata`
    /// (written by another program).
    pub async fn metadata(&self) -> Result<Option<T::Metadata>, MetadataError> {
        let raw = self.run.metadata().await?;
        raw.map(|raw| decode_metadata::<T::Metadata>(T::ID, &raw))
            .transpose()
    }

    /// Replaces the run's metadata; subscribers see the new snapshot.
    ///
    /// ```
    /// use runcast::{TaskContext, task};
    /// # use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Default, Serialize, Deserialize, schemars::JsonSchema)]
    /// struct Progress { done: u32, of: u32 }
    ///
    /// #[task(id = "import", metadata = Progress)]
    /// async fn import(rows: u32, ctx: TaskContext) -> Result<u32, runcast::MetadataError> {
    ///     ctx.set_metadata(&Progress { done: 0, of: rows }).await?;
    ///     for _ in 0..rows {
    ///         ctx.update_metadata_with(|progress| progress.done += 1).await?;
    ///     }
    ///     Ok(rows)
    /// }
    /// # futures::executor::block_on(async {
    /// let ctx = TaskContext::<Import>::new("run_1".into());
    /// assert_eq!(import(3, ctx.clone()).await?, 3);
    /// assert_eq!(ctx.metadata().await?.map(|p| p.done), Some(3));
    /// # Ok::<(), runcast::MetadataError>(())
    /// # })?;
    /// # Ok::<(), runcast::MetadataError>(())
    /// ```
    pub async fn set_metadata(&self, metadata: &T::Metadata) -> Result<(), MetadataError> {
        let raw = metadata::typed_to_raw(metadata)?;
        self.run.change_metadata(Box::new(move |_| Ok(raw))).await
    }

    /// Changes the run's metadata in place, typed: `change` gets the metadata (its default if
    /// the run has none) and the result replaces it, in one atomic change of the run.
    pub async fn update_metadata_with<F>(&self, change: F) -> Result<(), MetadataError>
    where
        F: FnOnce(&mut T::Metadata) + Send,
        T::Metadata: Default,
    {
        let task = T::ID;
        self.run
            .change_metadata(Box::new(move |raw| {
                let mut metadata = match raw {
                    Some(raw) => decode_metadata::<T::Metadata>(task, raw)?,
                    None => T::Metadata::default(),
                };
                change(&mut metadata);
                metadata::typed_to_raw(&metadata)
            }))
            .await
    }

    /// Changes the run's metadata by operations on its JSON object, as Trigger.dev's
    /// `metadata.set`, `increment`, `append`... do; all or nothing. A result that would not
    /// decode as `T::Metadata` is refused ([`MetadataError::DoesNotMatch`]).
    ///
    /// ```
    /// use runcast::{MetadataOp, TaskContext, task};
    ///
    /// #[task(id = "count", payload = u32, output = u32)]
    /// pub struct Count;
    ///
    /// # futures::executor::block_on(async {
    /// let ctx = TaskContext::<Count>::new("run_1".into());
    /// ctx.update_metadata([MetadataOp::Set("progress".into(), 0.5.into())]).await?;
    /// ctx.update_metadata([MetadataOp::Increment("steps".into(), 1.0)]).await?;
    /// let metadata = serde_json::Value::Object(ctx.metadata().await?.unwrap());
    /// assert_eq!(metadata, serde_json::json!({"progress": 0.5, "steps": 1}));
    /// # Ok::<(), runcast::MetadataError>(())
    /// # })?;
    /// # Ok::<(), runcast::MetadataError>(())
    /// ```
    pub async fn update_metadata(
        &self,
        ops: impl IntoIterator<Item = MetadataOp>,
    ) -> Result<(), MetadataError> {
        let ops: Vec<MetadataOp> = ops.into_iter().collect();
        self.run
            .change_metadata(Box::new(move |raw| metadata::apply_raw(raw, ops)))
            .await
    }

    /// A writer of one of `T`'s realtime streams: `ctx.stream(Chat::TOKENS)` writes `Chat`'s
    /// `tokens` chunks, typed as declared in `#[task(streams(tokens = String))]`. A key of
    /// another task does not compile.
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
    pub fn stream<K: StreamOf<T>>(&self, key: K) -> StreamWriter<K::Chunk> {
        StreamWriter {
            run_id: self.run_id.clone(),
            attempt: self.attempt,
            run: Arc::clone(&self.run),
            stream: (T::ID, key.key()),
            check: |stream, raw| T::Chunk::decode(stream, raw).map(drop),
            chunk: PhantomData,
        }
    }
}

/// Decodes a run's raw metadata as `M`, or says why it does not.
fn decode_metadata<M: DeserializeOwned>(task: &str, raw: &RawValue) -> Result<M, MetadataError> {
    serde_json::from_str(raw.get()).map_err(|source| MetadataError::does_not_match(task, source))
}

/// Whether raw JSON decodes as `M`: what every write of a run's metadata, and every chunk, is
/// checked with, so that readers never get what runcast wrote in a shape they cannot decode.
pub(crate) fn reads_back<M: DeserializeOwned>(raw: &RawValue) -> Result<(), serde_json::Error> {
    serde_json::from_str::<M>(raw.get()).map(drop)
}

/// Whether raw metadata decodes as the metadata type of task `T`, which every write of a run's
/// metadata is checked with. Every write gives a JSON object, so for a task that declares no
/// metadata type (a [`JsonObject`]) there is nothing more to check.
pub(crate) fn check_metadata<T: Task>(raw: &RawValue) -> Result<(), MetadataError> {
    if std::any::TypeId::of::<T::Metadata>() == std::any::TypeId::of::<JsonObject>() {
        return Ok(());
    }
    reads_back::<T::Metadata>(raw).map_err(|source| MetadataError::does_not_match(T::ID, source))
}

/// A change of a run's metadata: its raw metadata (if any) in, the new raw metadata out.
pub(crate) type MetadataChange<'a> =
    Box<dyn FnOnce(Option<&RawValue>) -> Result<Arc<RawValue>, MetadataError> + Send + 'a>;

/// A boxed future: what a [`RunAccess`] method returns.
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a running task reaches of its run: the engine's store, or a local record in tests.
pub(crate) trait RunAccess: Send + Sync {
    /// Changes the run's metadata, if the result decodes as the task's metadata type.
    fn change_metadata<'a>(
        &'a self,
        change: MetadataChange<'a>,
    ) -> BoxFuture<'a, Result<(), MetadataError>>;
    /// The run's raw metadata.
    fn metadata(&self) -> BoxFuture<'_, Result<Option<Arc<RawValue>>, MetadataError>>;
    /// Appends a chunk to stream `(task, key)` of the run, from attempt `attempt`.
    fn append_chunk(
        &self,
        attempt: u32,
        stream: (&'static str, &'static str),
        data: Arc<RawValue>,
    ) -> BoxFuture<'_, Result<Cursor, StreamError>>;
}

/// The run of a [`TaskContext::new`]: metadata kept in the context; chunks counted only.
struct LocalRun {
    metadata: std::sync::Mutex<Option<Arc<RawValue>>>,
    chunks: AtomicU64,
    /// The task's [`check_metadata`].
    check: fn(&RawValue) -> Result<(), MetadataError>,
}

impl RunAccess for LocalRun {
    fn change_metadata<'a>(
        &'a self,
        change: MetadataChange<'a>,
    ) -> BoxFuture<'a, Result<(), MetadataError>> {
        let mut metadata = lock(&self.metadata);
        let changed = change(metadata.as_deref()).and_then(|next| {
            (self.check)(&next)?;
            *metadata = Some(next);
            Ok(())
        });
        Box::pin(std::future::ready(changed))
    }

    fn metadata(&self) -> BoxFuture<'_, Result<Option<Arc<RawValue>>, MetadataError>> {
        Box::pin(std::future::ready(Ok(lock(&self.metadata).clone())))
    }

    fn append_chunk(
        &self,
        _attempt: u32,
        _stream: (&'static str, &'static str),
        _data: Arc<RawValue>,
    ) -> BoxFuture<'_, Result<Cursor, StreamError>> {
        let written = self.chunks.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(std::future::ready(Ok(Cursor::new(0, written))))
    }
}

/// Why a chunk could not be written. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// One chunk is larger than the engine accepts.
    #[error("a chunk of {size} bytes of JSON is over the limit of {limit} bytes")]
    ChunkTooLarge {
        /// The chunk's size as JSON.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The run's streams would hold more than the engine accepts.
    #[error(
        "run `{run}` would hold {size} bytes of stream chunks (their JSON and {CHUNK_OVERHEAD} bytes each to keep them), over the limit of {limit}"
    )]
    RunStreamsTooLarge {
        /// The run.
        run: RunId,
        /// Its streams' size with this chunk.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The run is not executing the attempt that writes (it finished, or this attempt is
    /// over), or is unknown: its streams take no chunk from it.
    #[error("run `{0}` is not executing this attempt: its streams take no more chunks from it")]
    NotRunning(RunId),
    /// The chunk could not be serialized, or its JSON does not read back as its type (a float
    /// that is not finite, nesting deeper than 128 levels): its readers could not decode it.
    #[error("the chunk cannot be written as JSON that reads back as its type: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The task declares no such stream (a key not made by `#[task]`).
    #[error("task `{task}` declares no stream `{stream}`")]
    UnknownStream {
        /// The task.
        task: &'static str,
        /// The stream's key.
        stream: &'static str,
    },
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes chunks of one stream of the running task's run. Made by [`TaskContext::stream`].
pub struct StreamWriter<C> {
    run_id: RunId,
    attempt: u32,
    run: Arc<dyn RunAccess>,
    /// The task and the stream's key.
    stream: (&'static str, &'static str),
    /// Whether a chunk decodes as the task's chunk of this stream, as its readers decode it.
    check: fn(&str, &RawValue) -> Result<(), ChunkError>,
    chunk: PhantomData<fn(C)>,
}

impl<C> fmt::Debug for StreamWriter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("run", &self.run_id)
            .field("stream", &self.stream.1)
            .finish()
    }
}

impl<C: Serialize + DeserializeOwned> StreamWriter<C> {
    /// Appends one chunk; subscribers with streams receive it, in order with the run's other
    /// changes. Returns the chunk's cursor once the chunk is stored.
    ///
    /// The chunk is serialized at once, and checked to read back as the task's chunk of this
    /// stream: the future does not borrow it.
    pub fn append<'a>(
        &'a self,
        chunk: &C,
    ) -> impl Future<Output = Result<Cursor, StreamError>> + Send + use<'a, C> {
        let (task, stream) = self.stream;
        let data = serde_json::value::to_raw_value(chunk)
            .map_err(StreamError::Serialize)
            .and_then(|raw| match (self.check)(stream, &raw) {
                Ok(()) => Ok(raw),
                Err(ChunkError::Json(error)) => Err(StreamError::Serialize(error)),
                Err(ChunkError::UnknownStream(_)) => {
                    Err(StreamError::UnknownStream { task, stream })
                }
            });
        async move {
            let data = Arc::from(data?);
            self.run.append_chunk(self.attempt, self.stream, data).await
        }
    }

    /// Appends every chunk of `chunks`, in order, until it ends; stops at the first chunk that
    /// cannot be written. Returns how many were written.
    pub async fn pipe<S: futures_core::Stream<Item = C>>(
        &self,
        chunks: S,
    ) -> Result<u64, StreamError> {
        let mut chunks = std::pin::pin!(chunks);
        let mut written = 0;
        while let Some(chunk) = std::future::poll_fn(|cx| chunks.as_mut().poll_next(cx)).await {
            self.append(&chunk).await?;
            written += 1;
        }
        Ok(written)
    }
}

/// The return type of a task function: `Result<Output, Error>` (or an alias of it), whose
/// error's `Display` becomes the run's error message. `#[task]` checks a function's return
/// type before it names this trait (`runcast::__private::TaskFnReturn` and `TaskFnError`), so
/// a wrong one is reported there, once.
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

/// The second parameter of a task function of `T`: `TaskContext<T>`.
#[diagnostic::on_unimplemented(
    message = "the second parameter of a task function is its context, `TaskContext`, taken by value: not `{Self}`",
    label = "expected `TaskContext`, which the macro makes `TaskContext<{T}>`",
    note = "write `ctx: TaskContext`: the macro names the task, whose context reaches only its own metadata and streams (the parameter is optional)"
)]
pub trait IsTaskContext<T> {
    /// The context the engine gives, as the parameter's type: what `TaskFn::run` passes.
    fn from_context(ctx: TaskContext<T>) -> Self;
}

impl<T> IsTaskContext<T> for TaskContext<T> {
    fn from_context(ctx: TaskContext<T>) -> Self {
        ctx
    }
}
