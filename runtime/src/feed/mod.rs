//! The seam between backends and the typed layer: what a subscription watches ([`Scope`]),
//! what reading runs can fail with ([`FeedError`]), and the trait every backend implements
//! ([`RunFeed`]), with the typed subscriptions built on it.

mod error;
mod handle;
mod query;
mod read_stream;

pub use self::error::FeedError;
pub use self::handle::{BatchHandle, BatchRef, RunHandle, RunRef};
pub use self::query::{MAX_PAGE_SIZE, RunPage, RunQuery};
pub use self::read_stream::{ReadStream, StreamChunk};

use futures_core::Stream;
use serde::de::DeserializeOwned;

use crate::model::{AnyChunk, AnyRun, BatchId, Cursor, Realtime, Run, RunId, RunInfo, Update};
use crate::typed::stream::{Decoded, UntilFinished};
use crate::typed::{RunStreamExt, RunUnion, StreamKey, Task, WithStreams};

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

/// The read side of a backend: subscriptions to the runs in a [`Scope`] from a [`Cursor`], and
/// reads of runs. The embedded [`Engine`](crate::Engine) implements it; so will the Postgres
/// store and the remote client. Everything above it (the typed subscriptions below, the
/// adaptors, unions) works the same whichever backend produced the runs.
///
/// Every subscription keeps these promises:
/// - it first yields the current state of every run in scope (from [`Cursor::START`]), or every
///   retained change after its cursor, then every later change, in cursor order;
/// - a subscriber that keeps up receives every change; one that falls behind a bounded window
///   gets the latest snapshot of each run that changed, marked
///   [`coalesced`](Update::coalesced), and never loses a run's final snapshot;
/// - resuming from an item's cursor continues with no gap and no duplicate; a cursor older than
///   the history kept gives the latest snapshots, marked coalesced; a cursor of another
///   history is refused ([`FeedError::UnknownCursor`]);
/// - it ends, with [`FeedError::Stopped`] as its last item, when its source stops.
pub trait RunFeed: Send + Sync {
    /// One subscription's stream of untyped changes. Dropping it unsubscribes.
    type Subscription: Stream<Item = Result<Update<AnyRun>, FeedError>>
        + WithStreams<WithStreams = Self::RealtimeSubscription>
        + Send
        + Unpin
        + 'static;
    /// A subscription that yields the chunks of its runs' streams too, in one cursor order.
    type RealtimeSubscription: Stream<Item = Result<Realtime<AnyRun, AnyChunk>, FeedError>>
        + Send
        + Unpin
        + 'static;

    /// Subscribes to the runs in `scope`: from [`Cursor::START`], the current state of each,
    /// then every change; from an item's cursor, every change after it. A run scope of a run
    /// the source does not know is refused ([`FeedError::UnknownRun`]).
    fn subscribe(
        &self,
        scope: Scope,
        from: Cursor,
    ) -> impl Future<Output = Result<Self::Subscription, FeedError>> + Send;

    /// The latest snapshot of a run, with the cursor of the change it shows.
    fn latest(&self, id: &RunId) -> impl Future<Output = Result<Update<AnyRun>, FeedError>> + Send;

    /// One page of the runs that match `query`, newest first.
    fn list_runs(
        &self,
        query: &RunQuery,
    ) -> impl Future<Output = Result<RunPage, FeedError>> + Send;

    /// The latest snapshot of a run of `T`, typed.
    ///
    /// Fails with [`FeedError::UnexpectedTask`] for a run of another task, and
    /// [`FeedError::Decode`] if its payload, output or metadata does not match `T`'s types.
    fn retrieve<T: Task>(
        &self,
        id: &RunId,
    ) -> impl Future<Output = Result<Run<T>, FeedError>> + Send {
        async move {
            let latest = self.latest(id).await?;
            check_task::<T>(&latest.run)?;
            Ok(latest.run.decode::<T>()?)
        }
    }

    /// Subscribes to one run of `T`, ending after its final status. With the run's
    /// [`RunHandle`] it starts before the run's creation and shows every state; with a
    /// [`RunId`] (and the task named, `subscribe_to_run::<T>(&id)`) it starts at the current
    /// state.
    ///
    /// A run of another task is refused at once ([`FeedError::UnexpectedTask`]).
    fn subscribe_to_run<T: Task>(
        &self,
        run: impl RunRef<T>,
    ) -> impl Future<Output = Result<Decoded<UntilFinished<Self::Subscription>, Run<T>>, FeedError>> + Send
    {
        let (id, from) = (run.run_id().clone(), run.from());
        async move {
            let items = subscribe_to_run_of::<T, _>(self, id, from).await?;
            Ok(items.until_finished().typed::<T>())
        }
    }

    /// Subscribes to one run of `T` like [`subscribe_to_run`](Self::subscribe_to_run), but does
    /// not end after its final status: changes made after it finished (metadata written from
    /// outside) still arrive. Trigger.dev calls this `stopOnCompletion: false`.
    fn subscribe_to_run_forever<T: Task>(
        &self,
        run: impl RunRef<T>,
    ) -> impl Future<Output = Result<Decoded<Self::Subscription, Run<T>>, FeedError>> + Send {
        let (id, from) = (run.run_id().clone(), run.from());
        async move {
            Ok(subscribe_to_run_of::<T, _>(self, id, from)
                .await?
                .typed::<T>())
        }
    }

    /// Waits for a run of `T` to finish, and returns its final snapshot (completed, failed,
    /// canceled, ...): its `output` or `error` says how it ended.
    fn wait<T: Task>(
        &self,
        run: impl RunRef<T>,
    ) -> impl Future<Output = Result<Run<T>, FeedError>> + Send {
        // Only the final snapshot matters: from the run's current state, and the only one
        // decoded.
        let id = run.run_id().clone();
        async move {
            let items = subscribe_to_run_of::<T, _>(self, id, Cursor::START).await?;
            let mut items = items.until_finished();
            let mut last = Err(FeedError::Stopped);
            while let Some(item) =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut items).poll_next(cx)).await
            {
                last = item.map(|update| update.run);
            }
            match last {
                Ok(run) if run.status.is_final() => Ok(run.decode::<T>()?),
                Ok(_) => Err(FeedError::Stopped),
                Err(error) => Err(error),
            }
        }
    }

    /// Subscribes to the runs that carry all of `tags`, as variants of the union `U`, from
    /// their current states. It never ends on its own: stop reading (`break`, or
    /// `take_while`) when done, and drop it.
    fn subscribe_to_runs_with_tag<U: RunUnion>(
        &self,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> impl Future<Output = Result<Decoded<Self::Subscription, U>, FeedError>> + Send {
        let tags = tags.into_iter().map(Into::into).collect();
        async move {
            let items = self.subscribe(Scope::Tags(tags), Cursor::START).await?;
            Ok(items.union::<U>())
        }
    }

    /// Subscribes to the runs of a batch, as variants of the union `U`: with the batch's
    /// [`BatchHandle`], every state of every run; with a [`BatchId`], from their current
    /// states. It never ends on its own.
    fn subscribe_to_batch<U: RunUnion>(
        &self,
        batch: impl BatchRef,
    ) -> impl Future<Output = Result<Decoded<Self::Subscription, U>, FeedError>> + Send {
        let (id, from) = (batch.batch_id().clone(), batch.from());
        async move {
            let items = self.subscribe(Scope::Batch(id), from).await?;
            Ok(items.union::<U>())
        }
    }

    /// Reads one stream of a run from its start: its chunks, typed as declared, ending once the
    /// run has finished (a finished run's stream is read whole, then ends).
    fn read_stream<T: Task, C: DeserializeOwned>(
        &self,
        id: &RunId,
        key: StreamKey<T, C>,
    ) -> impl Future<Output = Result<ReadStream<Self::RealtimeSubscription, C>, FeedError>> + Send
    {
        self.read_stream_from(id, key, Cursor::START)
    }

    /// Reads one stream of a run like [`read_stream`](Self::read_stream), from after `from`
    /// (the cursor of a chunk read before, to continue after it).
    fn read_stream_from<T: Task, C: DeserializeOwned>(
        &self,
        id: &RunId,
        key: StreamKey<T, C>,
        from: Cursor,
    ) -> impl Future<Output = Result<ReadStream<Self::RealtimeSubscription, C>, FeedError>> + Send
    {
        let id = id.clone();
        async move {
            let latest = self.latest(&id).await?;
            check_task::<T>(&latest.run)?;
            // A finished run writes no more chunks: from past its latest change, read that
            // change only, which ends the stream. (A cursor of another history is left for
            // `subscribe` to refuse.)
            let past = from.epoch() == latest.cursor.epoch() && from > latest.cursor.before();
            let from = if latest.run.status.is_final() && past {
                latest.cursor.before()
            } else {
                from
            };
            let items = self.subscribe(Scope::Run(id), from).await?.with_streams();
            Ok(ReadStream::new(items.until_finished(), key.key()))
        }
    }
}

/// Refuses a run of another task than `T`.
/// Subscribes to run `id` from `from`, refusing at once a run of another task than `T`.
async fn subscribe_to_run_of<T: Task, F: RunFeed + ?Sized>(
    feed: &F,
    id: RunId,
    from: Cursor,
) -> Result<F::Subscription, FeedError> {
    check_task::<T>(&feed.latest(&id).await?.run)?;
    feed.subscribe(Scope::Run(id), from).await
}

fn check_task<T: Task>(run: &AnyRun) -> Result<(), FeedError> {
    if run.task_identifier() == T::ID {
        Ok(())
    } else {
        Err(FeedError::UnexpectedTask {
            run: run.id.clone(),
            task_identifier: run.task_identifier.to_string(),
            expected: T::ID,
        })
    }
}
