//! [`ReadStream`]: the chunks of one stream of one run, decoded.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::{FusedStream, Stream};
use serde::de::DeserializeOwned;

use super::error::FeedError;
use crate::model::{AnyChunk, AnyRun, Cursor, Realtime};
use crate::typed::chunk::{chunk_error, decode_chunk};
use crate::typed::stream::UntilFinished;

/// A chunk of one stream, decoded: what [`RunFeed::read_stream`](crate::RunFeed::read_stream)
/// yields.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChunk<C> {
    /// Where the chunk is in the history: read from it to continue after it.
    pub cursor: Cursor,
    /// The chunk.
    pub value: C,
}

pin_project_lite::pin_project! {
    /// The stream of [`RunFeed::read_stream`](crate::RunFeed::read_stream): the chunks of one
    /// stream of one run, decoded, ending once the run has finished.
    #[must_use = "streams do nothing unless polled"]
    pub struct ReadStream<S, C> {
        #[pin]
        items: UntilFinished<S>,
        key: &'static str,
        chunk: PhantomData<fn() -> C>,
    }
}

impl<S, C> ReadStream<S, C> {
    pub(crate) fn new(items: UntilFinished<S>, key: &'static str) -> Self {
        Self {
            items,
            key,
            chunk: PhantomData,
        }
    }

    /// The subscription it reads.
    pub fn get_ref(&self) -> &S {
        self.items.get_ref()
    }

    /// The subscription it reads, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.items.get_mut()
    }

    /// The subscription it reads, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().items.get_pin_mut()
    }

    /// The subscription it reads, where it left it.
    pub fn into_inner(self) -> S {
        self.items.into_inner()
    }
}

impl<S: fmt::Debug, C> fmt::Debug for ReadStream<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadStream")
            .field("items", &self.items)
            .field("key", &self.key)
            .finish()
    }
}

impl<S, C> Stream for ReadStream<S, C>
where
    S: Stream<Item = Result<Realtime<AnyRun, AnyChunk>, FeedError>>,
    C: DeserializeOwned,
{
    type Item = Result<StreamChunk<C>, FeedError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let chunk = match ready!(this.items.as_mut().poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                Some(Ok(Realtime::Run(_))) => continue,
                Some(Ok(Realtime::Chunk(chunk))) if &*chunk.stream != *this.key => continue,
                Some(Ok(Realtime::Chunk(chunk))) => chunk,
            };
            let item = match decode_chunk(&chunk.data) {
                Ok(value) => Ok(StreamChunk {
                    cursor: chunk.cursor,
                    value,
                }),
                Err(source) => Err(chunk_error(chunk, source).into()),
            };
            return Poll::Ready(Some(item));
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Every item may be skipped (a run change, a chunk of another stream).
        (0, self.items.size_hint().1)
    }
}

impl<S, C> FusedStream for ReadStream<S, C>
where
    S: Stream<Item = Result<Realtime<AnyRun, AnyChunk>, FeedError>>,
    C: DeserializeOwned,
{
    fn is_terminated(&self) -> bool {
        self.items.is_terminated()
    }
}
