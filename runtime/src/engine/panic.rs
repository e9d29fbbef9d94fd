//! Panics inside tasks: caught where the task is polled, reported through `tracing` (in the
//! attempt's span) instead of the default hook's message on stderr, and turned into the
//! attempt's failure.
//!
//! The engine installs a panic hook once per process. It handles only the panics of task code
//! that runcast polls; every other panic goes to the hook that was installed before it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// Whether this thread is polling a task's code.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic of a task's code on this thread happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook, once per process.
pub(super) fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if IN_TASK.get() {
                // Reported by `CatchPanic` if it reaches it (the task may catch it itself).
                LOCATION.set(info.location().map(ToString::to_string));
            } else {
                previous(info);
            }
        }));
    });
}

/// A panic of a task's code: its message and where it happened.
#[derive(Debug)]
pub(super) struct Panic {
    pub(super) message: String,
    pub(super) location: Option<String>,
}

pin_project_lite::pin_project! {
    /// A future that returns a panic of the future it wraps as an `Err`: a panicking task
    /// fails its attempt, not the worker, and no task is spawned to catch it.
    pub(super) struct CatchPanic<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchPanic<F> {
    pub(super) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        let was = IN_TASK.replace(true);
        // A location left by a panic the task caught itself is not this poll's.
        LOCATION.take();
        // Unwind safe: after a panic the future is dropped, never polled again.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx)));
        IN_TASK.set(was);
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => {
                let panic = Panic {
                    message: message(&*payload),
                    location: LOCATION.take(),
                };
                tracing::error!(
                    panic = %panic.message,
                    location = panic.location.as_deref().unwrap_or("unknown"),
                    "a task panicked"
                );
                Poll::Ready(Err(panic))
            }
        }
    }
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}
