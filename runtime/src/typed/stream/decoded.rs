use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;

use crate::typed::decode::{DecodeError, FromAnyRun, Snapshot};

pin_project! {
    /// Stream for [`RunStreamExt::typed`](super::RunStreamExt::typed) and
    /// [`RunStreamExt::union`](super::RunStreamExt::union): decodes each snapshot as a `D`.
    #[must_use = "streams do nothing unless polled"]
    pub struct Decoded<St, D> {
        #[pin]
        stream: St,
        into: PhantomData<fn() -> D>,
    }
}

impl<St, D> Decoded<St, D> {
    /// The same adaptor over another stream.
    pub(super) fn map_inner<St2>(self, f: impl FnOnce(St) -> St2) -> Decoded<St2, D> {
        Decoded::new(f(self.stream))
    }

    pub(super) fn new(stream: St) -> Self {
        Self {
            stream,
            into: PhantomData,
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &St {
        &self.stream
    }

    /// The underlying stream, mutably.
    pub fn get_mut(&mut self) -> &mut St {
        &mut self.stream
    }

    /// The underlying stream, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut St> {
        self.project().stream
    }

    /// The underlying stream, where this adaptor left it.
    pub fn into_inner(self) -> St {
        self.stream
    }
}

impl<St: fmt::Debug, D> fmt::Debug for Decoded<St, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("stream", &self.stream)
            .field("into", &std::any::type_name::<D>())
            .finish()
    }
}

impl<St, S, D, E> Stream for Decoded<St, D>
where
    St: Stream<Item = Result<S, E>>,
    S: Snapshot,
    D: FromAnyRun,
    E: From<DecodeError>,
{
    type Item = Result<S::Decoded<D>, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = ready!(self.project().stream.poll_next(cx));
        Poll::Ready(item.map(|run| Ok(run?.decode_into::<D>()?)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<St, S, D, E> FusedStream for Decoded<St, D>
where
    St: FusedStream<Item = Result<S, E>>,
    S: Snapshot,
    D: FromAnyRun,
    E: From<DecodeError>,
{
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}
