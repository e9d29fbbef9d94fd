//! The remote subscriptions: a task that reads the feed (and, with streams, each run's
//! streams) and hands the items over a bounded channel, so a subscriber that does not read
//! holds the requests back instead of piling items up.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use tokio::sync::mpsc;

use super::Client;
use super::feed::{Changes, History, Shape};
use super::streams::{self, StreamEvent};
use crate::FeedError;
use crate::model::{AnyChunk, AnyRun, Cursor, Realtime, RunId, Update};
use crate::typed::WithStreams;

/// How many items wait for the subscriber before the feed stops asking for more.
const BUFFER: usize = 256;

/// How long a run's final snapshot waits for its streams to end, as the SDK keeps reading
/// them after a run finished.
const STREAMS_END_WAIT: Duration = Duration::from_secs(30);

type Item = Result<Realtime<AnyRun, AnyChunk>, FeedError>;

/// A subscription of the remote [`Client`]: its runs' changes, in the order the server sent
/// them. Dropping it ends its requests.
pub struct RemoteSubscription {
    items: Items,
}

/// A [`RemoteSubscription`] that also reads its runs' streams
/// ([`with_streams`](WithStreams::with_streams)).
pub struct RemoteRealtimeSubscription {
    items: Items,
}

impl std::fmt::Debug for RemoteSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSubscription").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RemoteRealtimeSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRealtimeSubscription")
            .finish_non_exhaustive()
    }
}

impl RemoteSubscription {
    pub(super) fn new(client: Client, shape: Shape, first: Changes, from: Cursor) -> Self {
        RemoteSubscription {
            items: Items::Ready(Box::new(Start {
                client,
                shape,
                first,
                from,
                streams: Arc::new(AtomicBool::new(false)),
            })),
        }
    }
}

impl WithStreams for RemoteSubscription {
    type WithStreams = RemoteRealtimeSubscription;

    fn with_streams(self) -> RemoteRealtimeSubscription {
        self.items.streams().store(true, Ordering::SeqCst);
        RemoteRealtimeSubscription { items: self.items }
    }
}

impl Stream for RemoteSubscription {
    type Item = Result<Update<AnyRun>, FeedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.items.poll_next(cx) {
                Poll::Ready(Some(Ok(Realtime::Run(update)))) => Poll::Ready(Some(Ok(update))),
                // Only read with streams; none come otherwise.
                Poll::Ready(Some(Ok(Realtime::Chunk(_)))) => continue,
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Stream for RemoteRealtimeSubscription {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.items.poll_next(cx)
    }
}

/// The items of a subscription: not read yet (the task starts at the first read, in the
/// runtime that reads), being read, or ended.
enum Items {
    Ready(Box<Start>),
    Running {
        items: mpsc::Receiver<Item>,
        streams: Arc<AtomicBool>,
        _task: AbortOnDrop,
    },
    Ended,
}

struct Start {
    client: Client,
    shape: Shape,
    first: Changes,
    from: Cursor,
    streams: Arc<AtomicBool>,
}

impl Items {
    fn streams(&self) -> Arc<AtomicBool> {
        match self {
            Items::Ready(start) => Arc::clone(&start.streams),
            Items::Running { streams, .. } => Arc::clone(streams),
            Items::Ended => Arc::new(AtomicBool::new(false)),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if let Items::Ready(_) = self {
            let Items::Ready(start) = std::mem::replace(self, Items::Ended) else {
                unreachable!("matched above");
            };
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return Poll::Ready(Some(Err(FeedError::Remote {
                    status: None,
                    message: "a remote subscription is read within a Tokio runtime".to_owned(),
                })));
            };
            let (sender, items) = mpsc::channel(BUFFER);
            let streams = Arc::clone(&start.streams);
            let task = runtime.spawn(drive(*start, sender));
            *self = Items::Running {
                items,
                streams,
                _task: AbortOnDrop(task),
            };
        }
        match self {
            Items::Running { items, .. } => match items.poll_recv(cx) {
                Poll::Ready(None) => {
                    *self = Items::Ended;
                    Poll::Ready(None)
                }
                other => other,
            },
            Items::Ready(_) | Items::Ended => Poll::Ready(None),
        }
    }
}

/// Ends the task when the subscription is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One stream being read, for its run.
type StreamReader = Pin<Box<dyn Stream<Item = (RunId, StreamEvent)> + Send>>;

/// The streams being read.
struct Readers {
    client: Client,
    events: SelectAll<StreamReader>,
    /// Each run's streams opened, and how many of them are still being read.
    runs: HashMap<RunId, RunStreams>,
    /// The first streams start after this chunk (a runcast cursor subscribed from).
    after: Option<u64>,
    history: History,
}

#[derive(Default)]
struct RunStreams {
    keys: Vec<String>,
    reading: usize,
}

impl Readers {
    /// Opens the streams `run` lists that are not read yet.
    fn open(&mut self, run: &AnyRun) {
        // Trigger.dev's older runs list their streams in their metadata.
        let listed = run
            .metadata
            .as_deref()
            .filter(|m| m.get().contains("$$streams"))
            .and_then(|m| serde_json::from_str::<MetadataStreams>(m.get()).ok());
        let listed = listed.as_ref().map_or(&[][..], |l| &l.streams[..]);
        let keys = run.realtime_streams.iter().chain(listed);
        let after = match self.history {
            History::Runcast { .. } => self.after,
            History::Other { .. } => None,
        };
        for key in keys {
            let streams = match self.runs.get_mut(&run.id) {
                Some(streams) => streams,
                None => self.runs.entry(run.id.clone()).or_default(),
            };
            if streams.keys.contains(key) {
                continue;
            }
            streams.keys.push(key.clone());
            streams.reading += 1;
            let reader = streams::read(
                self.client.clone(),
                run.id.clone(),
                Arc::from(run.task_identifier.as_ref()),
                Arc::from(key.as_str()),
                after,
                self.history.epoch(),
            );
            self.events.push(Box::pin(reader));
        }
    }

    fn reading(&self, run: &RunId) -> bool {
        self.runs
            .get(run)
            .is_some_and(|streams| streams.reading > 0)
    }

    /// Counts a stream's event; the item to hand over, if any.
    fn counted(&mut self, (run, event): (RunId, StreamEvent)) -> Option<Item> {
        match event {
            StreamEvent::Chunk(chunk) => Some(Ok(Realtime::Chunk(chunk))),
            StreamEvent::Failed(error) => Some(Err(error)),
            StreamEvent::Ended => {
                if let Some(streams) = self.runs.get_mut(&run) {
                    streams.reading = streams.reading.saturating_sub(1);
                }
                None
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct MetadataStreams {
    #[serde(rename = "$$streams", default)]
    streams: Vec<String>,
}

/// Reads the feed, and its runs' streams once asked, into `sender`, until the subscriber
/// goes or the feed ends.
async fn drive(start: Start, sender: mpsc::Sender<Item>) {
    let Start {
        client,
        mut shape,
        first,
        from,
        streams,
    } = start;
    let mut readers = Readers {
        client,
        events: SelectAll::new(),
        runs: HashMap::new(),
        after: (from != Cursor::START).then(|| from.position()),
        history: shape.history(),
    };
    let mut changes: VecDeque<_> = first.into();
    loop {
        while let Some(change) = changes.pop_front() {
            let update = match change {
                Ok(update) => update,
                Err(error) => {
                    if sender.send(Err(error)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if streams.load(Ordering::SeqCst) {
                readers.history = shape.history();
                readers.open(&update.run);
            }
            // Every chunk of a run comes before its final snapshot, as on the engine.
            if update.run.status.is_final() && readers.reading(&update.run.id) {
                let id = update.run.id.clone();
                let waited = tokio::time::timeout(STREAMS_END_WAIT, async {
                    while readers.reading(&id) {
                        let Some(event) = readers.events.next().await else {
                            break;
                        };
                        if let Some(item) = readers.counted(event)
                            && sender.send(item).await.is_err()
                        {
                            return false;
                        }
                    }
                    true
                })
                .await;
                if waited == Ok(false) {
                    return;
                }
            }
            if sender.send(Ok(Realtime::Run(update))).await.is_err() {
                return;
            }
        }
        // The next answer, while the streams' chunks go on arriving.
        let next = {
            let next = shape.next();
            tokio::pin!(next);
            loop {
                tokio::select! {
                    next = &mut next => break next,
                    Some(event) = readers.events.next(), if !readers.events.is_empty() => {
                        if let Some(item) = readers.counted(event)
                            && sender.send(item).await.is_err()
                        {
                            return;
                        }
                    }
                    () = sender.closed() => return,
                }
            }
        };
        match next {
            Ok(next) => changes.extend(next),
            Err(error) => {
                // The feed ends; its last item says why.
                let _ = sender.send(Err(error)).await;
                return;
            }
        }
    }
}
