use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;

use crate::model::{Realtime, RunId, RunInfo};

/// An item [`until_finished`](super::RunStreamExt::until_finished) looks into: a run snapshot
/// (anything [`RunInfo`]), or a [`Realtime`] item, whose chunks pass through.
pub trait FeedItem {
    /// The run snapshot the item is, if it is one.
    fn as_run(&self) -> Option<&dyn RunInfo>;
}

impl<R: RunInfo> FeedItem for R {
    fn as_run(&self) -> Option<&dyn RunInfo> {
        Some(self)
    }
}

impl<R: RunInfo, C> FeedItem for Realtime<R, C> {
    fn as_run(&self) -> Option<&dyn RunInfo> {
        match self {
            Realtime::Run(update) => Some(&update.run),
            Realtime::Chunk(_) => None,
        }
    }
}

pin_project! {
    /// Stream for [`RunStreamExt::until_finished`](super::RunStreamExt::until_finished).
    #[must_use = "streams do nothing unless polled"]
    pub struct UntilFinished<St> {
        #[pin]
        stream: St,
        // The run being followed: the first one the stream yields.
        run: Option<RunId>,
        finished: bool,
    }
}

impl<St> UntilFinished<St> {
    /// The same adaptor over another stream, in the same state.
    pub(super) fn map_inner<St2>(self, f: impl FnOnce(St) -> St2) -> UntilFinished<St2> {
        UntilFinished {
            stream: f(self.stream),
            run: self.run,
            finished: self.finished,
        }
    }

    pub(super) fn new(stream: St) -> Self {
        Self {
            stream,
            run: None,
            finished: false,
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

    /// The underlying stream, where this adaptor left it: after the final snapshot, if it was
    /// reached, with any later items still in it.
    pub fn into_inner(self) -> St {
        self.stream
    }
}

impl<St: fmt::Debug> fmt::Debug for UntilFinished<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilFinished")
            .field("stream", &self.stream)
            .field("run", &self.run)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<St, R, E> Stream for UntilFinished<St>
where
    St: Stream<Item = Result<R, E>>,
    R: FeedItem,
{
    type Item = Result<R, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        let item = ready!(this.stream.poll_next(cx));
        match &item {
            Some(Ok(item)) => {
                if let Some(run) = item.as_run() {
                    let followed = this.run.get_or_insert_with(|| run.id().clone());
                    *this.finished = run.id() == followed && run.status().is_final();
                }
            }
            Some(Err(_)) => {}
            None => *this.finished = true,
        }
        Poll::Ready(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            (0, Some(0))
        } else {
            // Any item may be the final one.
            let (lower, upper) = self.stream.size_hint();
            (lower.min(1), upper)
        }
    }
}

impl<St, R, E> FusedStream for UntilFinished<St>
where
    St: Stream<Item = Result<R, E>>,
    R: FeedItem,
{
    fn is_terminated(&self) -> bool {
        self.finished
    }
}
