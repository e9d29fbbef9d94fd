//! The lifecycle through `tracing`: a trigger, each attempt (a span with the run, its task and
//! the attempt), a retry, a final status; a panic inside a task is an error event in its
//! attempt's span, and never reaches the process's panic hook (which prints to stderr); a
//! panic the task catches itself is not reported.
//! Its own test binary: it installs the process's `tracing` subscriber and panic hook.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail the test on bad fixtures.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runcast::prelude::*;
use runcast::{Engine, TriggerOptions};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event with its fields and those of the spans it happened in.
#[derive(Default)]
struct Recorder {
    next_span: AtomicU64,
    spans: Mutex<HashMap<u64, String>>,
    events: Mutex<Vec<String>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

thread_local! {
    static CURRENT: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_span.fetch_add(1, Ordering::Relaxed) + 1;
        let mut text = span.metadata().name().to_owned();
        span.record(&mut Fields(&mut text));
        self.spans.lock().unwrap().insert(id, text);
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = format!("{}", event.metadata().level());
        event.record(&mut Fields(&mut text));
        let spans = self.spans.lock().unwrap();
        CURRENT.with(|current| {
            for id in current.borrow().iter() {
                let _ = write!(text, " in [{}]", spans.get(id).map_or("?", String::as_str));
            }
        });
        self.events.lock().unwrap().push(text);
    }
    fn enter(&self, span: &Id) {
        CURRENT.with(|current| current.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, span: &Id) {
        CURRENT.with(|current| current.borrow_mut().retain(|id| *id != span.into_u64()));
    }
}

#[task(id = "crashes")]
async fn crashes(_: ()) -> Result<(), String> {
    panic!("the disk is on fire")
}

/// Works, after catching a panic of its own: not a failure, nothing to report.
#[task(id = "works")]
async fn works(n: u32) -> Result<u32, String> {
    let caught = std::panic::catch_unwind(|| panic!("caught by the task"));
    assert!(caught.is_err());
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_and_a_tasks_panic_go_to_tracing_not_to_stderr() {
    let recorder = Arc::new(Recorder::default());
    tracing::subscriber::set_global_default(Arc::clone(&recorder)).unwrap();
    // The hook before runcast's: it sees every panic that is not a task's.
    static OUTSIDE: AtomicUsize = AtomicUsize::new(0);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        OUTSIDE.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));

    let engine = Engine::builder()
        .task::<Crashes>()
        .task::<Works>()
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    let crashed = engine
        .trigger_with::<Crashes>((), TriggerOptions::default().max_attempts(2))
        .await
        .unwrap();
    let run = engine.wait(&crashed).await.unwrap();
    assert_eq!(run.status, RunStatus::Crashed);
    let worked = engine.trigger::<Works>(7).await.unwrap();
    engine.wait(&worked).await.unwrap();
    assert_eq!(
        OUTSIDE.load(Ordering::SeqCst),
        0,
        "a task's panic reached the hook"
    );
    // A panic outside any task still does.
    let _ = std::panic::catch_unwind(|| panic!("not a task"));
    assert_eq!(OUTSIDE.load(Ordering::SeqCst), 1);

    // Events logged after a run's final change was published are in before shutdown returns.
    engine.shutdown(Duration::from_secs(5)).await;
    let events = recorder.events.lock().unwrap().clone();
    let find = |needle: &[&str]| {
        events
            .iter()
            .filter(|e| needle.iter().all(|n| e.contains(n)))
            .count()
    };
    let crashed_id = crashed.id().to_string();
    let in_attempt = |n: u32| format!("[attempt run={crashed_id} task=\"crashes\" attempt={n}]");
    assert_eq!(find(&["DEBUG", "triggered", &crashed_id]), 1, "{events:#?}");
    for attempt in [1, 2] {
        assert_eq!(
            find(&[
                "ERROR",
                "a task panicked",
                "the disk is on fire",
                &in_attempt(attempt)
            ]),
            1,
            "{events:#?}"
        );
    }
    assert_eq!(
        find(&["WARN", "will be retried", &in_attempt(1)]),
        1,
        "{events:#?}"
    );
    assert_eq!(
        find(&["INFO", "run finished", "CRASHED", &in_attempt(2)]),
        1,
        "{events:#?}"
    );
    assert_eq!(
        find(&["INFO", "run finished", "COMPLETED", worked.id().as_ref()]),
        1,
        "{events:#?}"
    );
    assert_eq!(find(&["caught by the task"]), 0, "{events:#?}");
}
