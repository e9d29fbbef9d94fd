//! The hub's promises: the current state then every change; every change within the window,
//! the latest of each run beyond it, marked; exact resume from any cursor; explicit fallback
//! past the history; scopes by run, tags and batch; chunks in the same order; subscriptions
//! that end when the hub closes.
#![allow(clippy::unwrap_used)] // Test helpers fail the test on bad fixtures.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::stream::StreamExt;
use futures::task::noop_waker_ref;
use futures_core::Stream;

use super::*;
use crate::model::{AnyChunk, Realtime, RunStatus, Update};
use crate::typed::RunStreamExt;

fn hub() -> RunHub {
    RunHub::new(HubConfig::default())
}

fn hub_with(window: usize, history_changes: usize) -> RunHub {
    RunHub::new(HubConfig {
        window,
        history_changes,
        ..HubConfig::default()
    })
}

fn run(id: &str, status: &str, tags: &[&str]) -> Arc<AnyRun> {
    let tags = serde_json::to_string(tags).unwrap();
    Arc::new(
        serde_json::from_str(&format!(
            r#"{{"id":"{id}","taskIdentifier":"resize-image","payload":{{"url":"u","width":1}},"status":"{status}","tags":{tags},"createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}}"#
        ))
        .unwrap(),
    )
}

impl RunHub {
    /// The cursor of the latest change.
    fn cursor(&self) -> Cursor {
        let inner = self.lock();
        Cursor::new(inner.epoch, inner.position)
    }
}

/// Everything a stream has ready now, without waiting.
fn ready_all<S: Stream + Unpin>(sub: &mut S) -> Vec<S::Item> {
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut out = Vec::new();
    while let Poll::Ready(Some(item)) = Pin::new(&mut *sub).poll_next(&mut cx) {
        out.push(item);
    }
    out
}

fn ready(sub: &mut Subscription) -> Vec<Update<AnyRun>> {
    ready_all(sub).into_iter().map(Result::unwrap).collect()
}

fn ready_items(sub: &mut RealtimeSubscription) -> Vec<Realtime<AnyRun, AnyChunk>> {
    ready_all(sub).into_iter().map(Result::unwrap).collect()
}

fn ids(updates: &[Update<AnyRun>]) -> Vec<(String, RunStatus)> {
    updates
        .iter()
        .map(|u| (u.run.id.to_string(), u.run.status))
        .collect()
}

fn key(u: &Update<AnyRun>) -> (Cursor, RunId, RunStatus, Vec<String>, bool) {
    (
        u.cursor,
        u.run.id.clone(),
        u.run.status,
        u.run.tags.to_vec(),
        u.coalesced,
    )
}

#[test]
fn a_subscription_yields_the_current_state_then_every_change() {
    let hub = hub();
    hub.publish(run("run_1", "QUEUED", &["user:1"]), None);
    let mut sub = hub
        .subscribe(Scope::Run(RunId::from("run_1")), Cursor::START)
        .unwrap();
    assert_eq!(ids(&ready(&mut sub)), [("run_1".into(), RunStatus::Queued)]);
    assert!(ready(&mut sub).is_empty());
    for status in ["EXECUTING", "REATTEMPTING", "EXECUTING", "COMPLETED"] {
        hub.publish(run("run_1", status, &["user:1"]), None);
    }
    // Read late, still every change, none marked coalesced.
    let updates = ready(&mut sub);
    let statuses: Vec<_> = updates.iter().map(|u| u.run.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["EXECUTING", "REATTEMPTING", "EXECUTING", "COMPLETED"]
    );
    assert!(updates.iter().all(|u| !u.coalesced));
}

#[test]
fn a_subscriber_within_its_window_gets_every_change_and_beyond_it_the_latest_marked() {
    let hub = hub_with(100, 65_536);
    let mut within = hub
        .subscribe(Scope::Tags(vec!["user:1".into()]), Cursor::START)
        .unwrap();
    let mut stalled = hub
        .subscribe(Scope::Tags(vec!["user:1".into()]), Cursor::START)
        .unwrap();
    let mut read = Vec::new();
    for i in 0..5_000 {
        let status = if i == 4_999 { "COMPLETED" } else { "EXECUTING" };
        hub.publish(run(&format!("run_{}", i % 3), status, &["user:1"]), None);
        if i % 50 == 0 {
            read.extend(ready(&mut within));
        }
    }
    read.extend(ready(&mut within));
    assert_eq!(read.len(), 5_000, "every change, read 50 at a time");
    assert!(read.iter().all(|u| !u.coalesced));
    assert!(read.windows(2).all(|w| w[0].cursor < w[1].cursor));

    // Its mailbox held at most the 3 runs in scope, not 5,000 changes.
    let inner = hub.lock();
    let held = inner.subscriptions.values().map(|w| lock(&w.mailbox).len());
    assert_eq!(held.max(), Some(3));
    drop(inner);
    let updates = ready(&mut stalled);
    assert_eq!(updates.len(), 3, "one snapshot per run, not one per change");
    assert!(
        updates.iter().all(|u| u.coalesced),
        "each says changes were skipped"
    );
    assert_eq!(updates.last().unwrap().run.status, RunStatus::Completed);
    assert_eq!(updates.last().unwrap().cursor, hub.cursor());
    assert!(updates.windows(2).all(|w| w[0].cursor < w[1].cursor));
    // Caught up, it gets every change again.
    hub.publish(run("run_0", "EXECUTING", &["user:1"]), None);
    hub.publish(run("run_0", "COMPLETED", &["user:1"]), None);
    let after = ready(&mut stalled);
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|u| !u.coalesced));
}

#[test]
fn a_run_that_changed_once_beyond_the_window_is_not_marked() {
    let hub = hub_with(4, 65_536);
    let mut sub = hub
        .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
        .unwrap();
    for i in 0..6 {
        hub.publish(run(&format!("run_{i}"), "QUEUED", &["t"]), None);
    }
    hub.publish(run("run_0", "EXECUTING", &["t"]), None);
    let updates = ready(&mut sub);
    let marked: Vec<_> = updates
        .iter()
        .map(|u| (u.run.id.to_string(), u.coalesced))
        .collect();
    assert_eq!(
        marked,
        [
            ("run_1".into(), false),
            ("run_2".into(), false),
            ("run_3".into(), false),
            ("run_4".into(), false),
            ("run_5".into(), false),
            ("run_0".into(), true),
        ]
    );
}

#[test]
fn resuming_from_every_cursor_of_a_recorded_feed_gives_exactly_the_rest() {
    let hub = hub();
    let scope = Scope::Tags(vec!["t".into()]);
    let mut live = hub.subscribe(scope.clone(), Cursor::START).unwrap();
    let mut recorded = Vec::new();
    for i in 0..300usize {
        // Runs enter, change and leave the scope; one run never is in it.
        let tags: &[&str] = match i % 11 {
            3 => &["u"],
            7 => &["t", "u"],
            _ => &["t"],
        };
        let id = if i % 13 == 0 {
            "run_out".to_owned()
        } else {
            format!("run_{}", i % 7)
        };
        let tags = if id == "run_out" { &["u"][..] } else { tags };
        hub.publish(run(&id, ["QUEUED", "EXECUTING"][i % 2], tags), None);
        if i % 4 == 0 {
            recorded.extend(ready(&mut live));
        }
    }
    recorded.extend(ready(&mut live));
    assert!(
        recorded
            .iter()
            .all(|u| !u.coalesced && u.run.id != "run_out")
    );
    for (i, item) in recorded.iter().enumerate() {
        let mut resumed = hub.subscribe(scope.clone(), item.cursor).unwrap();
        let got: Vec<_> = ready(&mut resumed).iter().map(key).collect();
        let expected: Vec<_> = recorded[i + 1..].iter().map(key).collect();
        assert_eq!(got, expected, "resuming after item {i}");
    }
}

#[test]
fn a_replay_or_a_first_state_longer_than_the_window_is_never_coalesced() {
    let hub = hub_with(4, 1024);
    let scope = Scope::Tags(vec!["t".into()]);
    let mut published = Vec::new();
    for i in 0..100 {
        let id = format!("run_{}", i % 10);
        published.push(hub.publish(run(&id, ["QUEUED", "EXECUTING"][i % 2], &["t"]), None));
    }
    let mut resumed = hub.subscribe(scope.clone(), published[0]).unwrap();
    let mut fresh = hub.subscribe(scope, Cursor::START).unwrap();
    // Live changes past the window, published before either subscriber reads.
    for i in 0..10 {
        hub.publish(run(&format!("run_{i}"), "COMPLETED", &["t"]), None);
        hub.publish(run(&format!("run_{i}"), "COMPLETED", &["t", "u"]), None);
    }
    let replay = ready(&mut resumed);
    assert_eq!(replay.len(), 99 + 10);
    assert!(replay[..99].iter().all(|u| !u.coalesced));
    assert_eq!(
        replay[..99].iter().map(|u| u.cursor).collect::<Vec<_>>(),
        published[1..]
    );
    assert!(
        replay[99..]
            .iter()
            .all(|u| u.coalesced && u.run.tags.len() == 2)
    );
    let first = ready(&mut fresh);
    assert_eq!(first.len(), 10 + 10);
    assert!(first[..10].iter().all(|u| !u.coalesced));
    assert!(first[10..].iter().all(|u| u.coalesced));
}

/// Changes replayed from another log join the hub's only where its log still holds every
/// change after them; otherwise they are given back, to read the rest.
#[test]
fn replayed_changes_join_the_log_only_where_it_holds_every_change_after_them() {
    let hub = hub_with(1024, 4);
    let scope = Scope::Tags(vec!["t".into()]);
    let from = hub.publish(run("run_1", "QUEUED", &["t"]), None);
    let mut published = Vec::new();
    for i in 0..10 {
        published.push(hub.publish(run(&format!("run_{}", i % 2), "EXECUTING", &["t"]), None));
    }
    // The log holds the latest 4: the 6 before them are missing, read through the latest.
    assert_eq!(hub.missing_after(from), Some(published[9].position()));
    assert_eq!(hub.missing_after(published[5]), None);
    let replayed = |through: Cursor| Replayed {
        changes: (published.iter())
            .filter(|c| c.position() <= through.position())
            .map(|c| (c.position(), run("run_0", "EXECUTING", &["t"])))
            .collect(),
        through: through.position(),
    };
    let Ok(Err(back)) = hub.subscribe_replayed(scope.clone(), from, replayed(published[4])) else {
        panic!("replayed changes that end before the log's start were taken");
    };
    assert_eq!(back.changes.len(), 5);
    let Ok(Ok(mut resumed)) = hub.subscribe_replayed(scope, from, replayed(published[7])) else {
        panic!("replayed changes that reach the log were refused");
    };
    let cursors: Vec<_> = ready(&mut resumed).iter().map(|u| u.cursor).collect();
    assert_eq!(cursors, published);
}

#[test]
fn a_cursor_before_the_first_change_of_a_history_replays_it_from_its_start() {
    let hub = hub();
    let first = hub.publish(run("run_1", "QUEUED", &["t"]), None);
    hub.publish(run("run_1", "EXECUTING", &["t"]), None);
    let mut resumed = hub
        .subscribe(Scope::Tags(vec!["t".into()]), first.before())
        .unwrap();
    let statuses: Vec<_> = ready(&mut resumed)
        .iter()
        .map(|u| (u.run.status, u.coalesced))
        .collect();
    assert_eq!(
        statuses,
        [(RunStatus::Queued, false), (RunStatus::Executing, false)]
    );
}

#[test]
fn resuming_past_the_history_gives_the_latest_snapshots_marked_coalesced() {
    let hub = hub_with(1024, 10);
    let scope = Scope::Tags(vec!["t".into()]);
    let from = hub.publish(run("run_1", "QUEUED", &["t"]), None);
    for i in 0..30 {
        hub.publish(run(&format!("run_{}", i % 3), "EXECUTING", &["t"]), None);
    }
    hub.publish(run("run_2", "COMPLETED", &["t"]), None);
    let mut resumed = hub.subscribe(scope.clone(), from).unwrap();
    let updates = ready(&mut resumed);
    assert_eq!(
        updates
            .iter()
            .map(|u| (u.run.id.to_string(), u.coalesced))
            .collect::<Vec<_>>(),
        [
            ("run_0".into(), true),
            ("run_1".into(), true),
            ("run_2".into(), true)
        ]
    );
    assert_eq!(updates[2].run.status, RunStatus::Completed);
    // From a cursor still within the history, exact again.
    let recent = hub.cursor().before().before();
    let mut exact = hub.subscribe(scope, recent).unwrap();
    let updates = ready(&mut exact);
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().all(|u| !u.coalesced));
    // The log keeps what it may, not more.
    assert_eq!(hub.lock().history.len(), 10);
}

#[test]
fn a_cursor_of_another_history_or_from_the_future_is_refused() {
    let (a, b) = (hub(), hub());
    let cursor = a.publish(run("run_1", "QUEUED", &[]), None);
    b.publish(run("run_1", "QUEUED", &[]), None);
    for (hub, cursor) in [
        (&b, cursor),
        (&a, Cursor::new(cursor.epoch(), cursor.position() + 1)),
        (&a, Cursor::new(0, 1)),
    ] {
        let err = hub
            .subscribe(Scope::Run("run_1".into()), cursor)
            .unwrap_err();
        assert!(
            matches!(err, FeedError::UnknownCursor(c) if c == cursor),
            "{err}"
        );
        assert!(err.to_string().contains("not from this engine's history"));
    }
    assert!(a.subscribe(Scope::Run("run_1".into()), cursor).is_ok());
}

#[test]
fn tag_scopes_need_every_tag_and_see_a_tag_removed() {
    let hub = hub();
    let mut both = hub
        .subscribe(Scope::Tags(vec!["a".into(), "b".into()]), Cursor::START)
        .unwrap();
    hub.publish(run("run_1", "QUEUED", &["a"]), None);
    assert!(ready(&mut both).is_empty());
    hub.publish(run("run_1", "QUEUED", &["b", "a"]), None);
    assert_eq!(ready(&mut both).len(), 1);
    hub.publish(run("run_1", "EXECUTING", &["b"]), None);
    let last = ready(&mut both);
    assert_eq!(last.len(), 1, "the change that removed a tag is shown");
    assert_eq!(*last[0].run.tags, ["b"]);
    hub.publish(run("run_1", "COMPLETED", &["b"]), None);
    assert!(ready(&mut both).is_empty(), "then the run is out of scope");
}

#[test]
fn a_run_whose_tags_repeat_is_delivered_once_per_change() {
    let hub = hub();
    let mut sub = hub
        .subscribe(Scope::Tags(vec!["a".into()]), Cursor::START)
        .unwrap();
    hub.publish(run("run_1", "QUEUED", &["a", "a"]), None);
    hub.publish(run("run_1", "EXECUTING", &["a", "b", "a"]), None);
    hub.append_chunk(
        &RunId::from("run_1"),
        "log",
        serde_json::value::to_raw_value(&1).unwrap().into(),
    );
    // It loses its repeated tag: once more, without it.
    hub.publish(run("run_1", "EXECUTING", &["b"]), None);
    assert_eq!(ready(&mut sub).len(), 3);
}

#[test]
fn batch_scopes_follow_the_batch_given_at_first_publish() {
    let hub = hub();
    let batch = BatchId::from("batch_1");
    hub.publish(run("run_1", "QUEUED", &[]), Some(batch.clone()));
    hub.publish(run("run_2", "QUEUED", &[]), None);
    let mut sub = hub.subscribe(Scope::Batch(batch), Cursor::START).unwrap();
    assert_eq!(ids(&ready(&mut sub)), [("run_1".into(), RunStatus::Queued)]);
    hub.publish(run("run_1", "COMPLETED", &[]), None);
    hub.publish(run("run_2", "COMPLETED", &[]), None);
    assert_eq!(
        ids(&ready(&mut sub)),
        [("run_1".into(), RunStatus::Completed)]
    );
}

#[test]
fn a_change_reaches_only_the_subscriptions_of_its_run_tags_and_batch() {
    let hub = hub();
    let batch = BatchId::from("batch_mine");
    hub.publish(run("run_mine", "QUEUED", &["a", "b"]), Some(batch.clone()));
    let mut mine = vec![
        hub.subscribe(Scope::Run("run_mine".into()), Cursor::START),
        hub.subscribe(Scope::Tags(vec!["a".into()]), Cursor::START),
        hub.subscribe(Scope::Tags(vec!["b".into(), "a".into()]), Cursor::START),
        hub.subscribe(Scope::Batch(batch), Cursor::START),
    ];
    // Indexed by the run's tag `a`, but the run lacks `zz`: found, and given nothing.
    let mut near = hub
        .subscribe(Scope::Tags(vec!["a".into(), "zz".into()]), Cursor::START)
        .unwrap();
    // 3,000 others: other runs, other tags, other batches.
    let mut others = Vec::new();
    for i in 0..1_000 {
        let other = format!("run_{i}");
        hub.publish(
            run(&other, "QUEUED", &[]),
            Some(BatchId::from(format!("batch_{i}"))),
        );
        others.push(hub.subscribe(Scope::Run(other.as_str().into()), Cursor::START));
        others.push(hub.subscribe(Scope::Tags(vec![format!("t{i}")]), Cursor::START));
        let batch = BatchId::from(format!("batch_{i}"));
        others.push(hub.subscribe(Scope::Batch(batch), Cursor::START));
    }
    let mine: Vec<Subscription> = mine.drain(..).map(Result::unwrap).collect();
    let mut others: Vec<Subscription> = others.into_iter().map(Result::unwrap).collect();
    for sub in &mut others {
        ready(sub);
    }
    // Subscriptions are numbered in the order they were made: these four first, then `near`.
    let mine_ids: Set<u64> = (0..5).collect();

    // The index finds exactly those five, without looking at the others.
    let inner = hub.lock();
    let entry = &inner.runs[&RunId::from("run_mine")];
    let found: Set<u64> = inner
        .watch
        .of(
            &entry.run.id,
            distinct(&entry.run.tags),
            entry.batch.as_ref(),
        )
        .collect();
    assert_eq!(found, mine_ids);
    drop(inner);
    hub.publish(run("run_mine", "EXECUTING", &["a", "b"]), None);
    let mut mine = mine;
    for sub in &mut mine {
        let statuses: Vec<_> = ready(sub).iter().map(|u| u.run.status).collect();
        assert_eq!(statuses, [RunStatus::Queued, RunStatus::Executing]);
    }
    assert!(others.iter_mut().all(|sub| ready(sub).is_empty()));
    assert!(ready(&mut near).is_empty());
}

#[test]
fn subscriptions_are_limited_and_dropping_one_frees_its_place() {
    let hub = RunHub::new(HubConfig {
        max_subscriptions: Some(2),
        ..HubConfig::default()
    });
    hub.publish(run("run_1", "QUEUED", &[]), None);
    let a = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap();
    let _b = hub
        .subscribe(Scope::Batch("batch_1".into()), Cursor::START)
        .unwrap();
    let err = hub
        .subscribe(Scope::Tags(vec!["x".into()]), Cursor::START)
        .unwrap_err();
    assert!(matches!(err, FeedError::TooManySubscriptions { limit: 2 }));
    assert!(err.to_string().contains("the limit is 2"));
    drop(a);
    assert_eq!(hub.subscriptions(), 1);
    assert!(
        hub.subscribe(Scope::Run("run_1".into()), Cursor::START)
            .is_ok()
    );
    let err = hub
        .subscribe(Scope::Tags(vec![]), Cursor::START)
        .unwrap_err();
    assert!(matches!(err, FeedError::NoTags));
}

#[test]
fn typed_adaptors_keep_each_updates_cursor() {
    use crate::test_tasks::{Media, ResizeImage};
    let hub = hub();
    let c1 = hub.publish(run("run_1", "QUEUED", &["t"]), None);
    let c2 = hub.publish(run("run_1", "COMPLETED", &["t"]), None);
    let sub = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap();
    let typed: Vec<_> = block_on(sub.until_finished().typed::<ResizeImage>().collect());
    assert_eq!(typed.len(), 1);
    let update = typed[0].as_ref().unwrap();
    assert_eq!((update.cursor, update.run.payload.width), (c2, 1));
    assert!(c1 < c2);
    let union = hub
        .subscribe(Scope::Tags(vec!["t".into()]), c1)
        .unwrap()
        .union::<Media>();
    let first = block_on(union.take(1).collect::<Vec<_>>());
    assert!(
        matches!(&first[0], Ok(Update { run: Media::ResizeImage(_), cursor, .. }) if *cursor == c2)
    );
}

#[test]
fn a_waiting_subscriber_is_woken_by_a_publish_from_another_thread() {
    let hub = hub();
    hub.publish(run("run_1", "QUEUED", &[]), None);
    let sub = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for status in ["EXECUTING", "COMPLETED"] {
                std::thread::sleep(std::time::Duration::from_millis(5));
                hub.publish(run("run_1", status, &[]), None);
            }
        })
    };
    let statuses: Vec<_> = block_on(
        sub.until_finished()
            .map(|u| u.unwrap().run.status)
            .collect(),
    );
    publisher.join().unwrap();
    assert_eq!(
        statuses,
        [
            RunStatus::Queued,
            RunStatus::Executing,
            RunStatus::Completed
        ]
    );
}

#[test]
fn closing_ends_every_subscription_after_what_was_published_with_one_stopped_item() {
    let hub = hub();
    hub.publish(run("run_1", "QUEUED", &["t"]), None);
    let mut plain = hub
        .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
        .unwrap();
    let mut realtime = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap()
        .with_streams();
    let waiting = {
        let sub = hub
            .subscribe(Scope::Batch("batch_1".into()), Cursor::START)
            .unwrap();
        std::thread::spawn(move || block_on(sub.collect::<Vec<_>>()))
    };
    hub.publish(run("run_1", "EXECUTING", &["t"]), None);
    hub.close();
    let items = ready_all(&mut plain);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(items[2], Err(FeedError::Stopped)));
    assert!(block_on(plain.next()).is_none());
    let items = ready_all(&mut realtime);
    assert!(matches!(items.last(), Some(Err(FeedError::Stopped))));
    assert_eq!(items.len(), 3);
    let waited = waiting.join().unwrap();
    assert!(matches!(waited[..], [Err(FeedError::Stopped)]));
    let err = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap_err();
    assert!(matches!(err, FeedError::Stopped));
}

#[test]
fn a_forgotten_run_leaves_every_index_and_pending_changes_still_arrive() {
    let hub = hub();
    let batch = BatchId::from("batch_1");
    hub.publish(run("run_1", "QUEUED", &["user:1"]), Some(batch.clone()));
    let mut watching = hub
        .subscribe(Scope::Tags(vec!["user:1".into()]), Cursor::START)
        .unwrap();
    hub.publish(run("run_1", "EXECUTING", &["other"]), None);
    hub.publish(run("run_1", "COMPLETED", &["user:1"]), None);
    drop(hub.remove(&RunId::from("run_1")));

    assert!(hub.latest(&RunId::from("run_1")).is_none());
    // The subscriber that had not read yet still gets the run's changes.
    assert_eq!(
        ids(&ready(&mut watching)),
        [
            ("run_1".into(), RunStatus::Queued),
            ("run_1".into(), RunStatus::Executing),
            ("run_1".into(), RunStatus::Completed)
        ]
    );
    for scope in [Scope::Tags(vec!["user:1".into()]), Scope::Batch(batch)] {
        let mut late = hub.subscribe(scope.clone(), Cursor::START).unwrap();
        assert!(ready(&mut late).is_empty(), "{scope:?}");
    }
    let unknown = hub.subscribe(Scope::Run(RunId::from("run_1")), Cursor::START);
    assert!(matches!(unknown, Err(FeedError::UnknownRun(id)) if id == "run_1"));
    let inner = hub.lock();
    assert!(inner.index.by_tag.is_empty() && inner.index.by_batch.is_empty());
    assert!(
        inner
            .created
            .iter()
            .all(|(_, id)| !inner.runs.contains_key(id))
    );
    drop(inner);
    // Published again, it is a run like any other.
    hub.publish(run("run_1", "QUEUED", &["user:1"]), None);
    assert_eq!(
        ids(&ready(&mut watching)),
        [("run_1".into(), RunStatus::Queued)]
    );
}

#[test]
fn the_history_stays_within_its_bounds() {
    let hub = RunHub::new(HubConfig {
        history_changes: 100,
        history_bytes: 64 * 1024,
        ..HubConfig::default()
    });
    for i in 0..10_000 {
        hub.publish(run(&format!("run_{}", i % 50), "EXECUTING", &["a"]), None);
    }
    assert_eq!(hub.lock().history.len(), 100);
    // Big snapshots: the bytes bound keeps fewer of them.
    let big = |i: usize| {
        let mut run = AnyRun::clone(&run(&format!("big_{i}"), "QUEUED", &[]));
        run.output = Some(
            serde_json::value::to_raw_value(&"x".repeat(8 * 1024))
                .unwrap()
                .into(),
        );
        Arc::new(run)
    };
    for i in 0..100 {
        hub.publish(big(i), None);
    }
    let kept = hub.lock().history.len();
    assert!((5..=8).contains(&kept), "{kept}");
}

#[test]
fn runs_are_listed_newest_first_a_page_at_a_time() {
    let hub = hub();
    for i in 0..30 {
        let status = if i % 3 == 0 { "FAILED" } else { "COMPLETED" };
        let tags: &[&str] = if i % 2 == 0 { &["even"] } else { &[] };
        hub.publish(run(&format!("run_{i:02}"), status, tags), None);
    }
    let query = RunQuery::new().status(RunStatus::Failed).limit(3);
    let mut pages = Vec::new();
    let mut next = Some(query.clone());
    while let Some(query) = next {
        let page = hub.list(&query).unwrap();
        next = page.next.map(|cursor| query.clone().before(cursor));
        pages.push(
            page.runs
                .iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        pages,
        [
            vec!["run_27", "run_24", "run_21"],
            vec!["run_18", "run_15", "run_12"],
            vec!["run_09", "run_06", "run_03"],
            vec!["run_00"],
        ]
    );
    let even_failed = hub
        .list(&RunQuery::new().status(RunStatus::Failed).tag("even"))
        .unwrap();
    assert_eq!(even_failed.runs.len(), 5);
    assert!(even_failed.next.is_none());
    let other = RunHub::new(HubConfig::default()).cursor();
    let foreign = Cursor::new(other.epoch(), 1);
    assert!(matches!(
        hub.list(&RunQuery::new().before(foreign)),
        Err(FeedError::UnknownCursor(_))
    ));
}

fn chunk_values(items: &[Realtime<AnyRun, AnyChunk>]) -> Vec<(Cursor, String, String)> {
    items
        .iter()
        .filter_map(|item| match item {
            Realtime::Chunk(c) => Some((c.cursor, c.run_id.to_string(), c.data.get().to_owned())),
            Realtime::Run(_) => None,
        })
        .collect()
}

fn with_streams(hub: &RunHub, scope: Scope, from: Cursor) -> RealtimeSubscription {
    hub.subscribe(scope, from).unwrap().with_streams()
}

#[test]
fn chunks_and_changes_of_several_runs_resume_from_every_cursor_without_gap_or_duplicate() {
    let hub = hub();
    let tagged = Scope::Tags(vec!["t".into()]);
    hub.publish(run("run_1", "EXECUTING", &["t"]), None);
    hub.publish(run("run_2", "EXECUTING", &["t"]), None);
    let mut live = with_streams(&hub, tagged.clone(), Cursor::START);
    let mut recorded = ready_items(&mut live);
    // 600 chunks, more than one read takes at once, interleaved with run changes, read at
    // uneven moments.
    for i in 0..600u32 {
        let id = RunId::from(if i % 3 == 0 { "run_2" } else { "run_1" });
        let data = serde_json::value::to_raw_value(&i).unwrap();
        hub.append_chunk(&id, "log", data.into()).unwrap();
        if i % 50 == 0 {
            hub.publish(
                run(
                    id.as_str(),
                    if i % 100 == 0 {
                        "EXECUTING"
                    } else {
                        "REATTEMPTING"
                    },
                    &["t"],
                ),
                None,
            );
        }
        if i % 7 == 0 || i % 11 == 0 {
            recorded.extend(ready_items(&mut live));
        }
    }
    hub.publish(run("run_1", "COMPLETED", &["t"]), None);
    recorded.extend(ready_items(&mut live));

    let cursors: Vec<Cursor> = recorded.iter().map(Realtime::cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    let all = chunk_values(&recorded);
    let values: Vec<u32> = all.iter().map(|(_, _, v)| v.parse().unwrap()).collect();
    assert_eq!(
        values,
        (0..600).collect::<Vec<_>>(),
        "every chunk once, in order"
    );
    let changes = |items: &[Realtime<AnyRun, AnyChunk>]| -> Vec<_> {
        items
            .iter()
            .filter_map(|item| match item {
                Realtime::Run(update) => Some(key(update)),
                Realtime::Chunk(_) => None,
            })
            .collect()
    };
    let every_change = changes(&recorded);
    assert_eq!(every_change.len(), 2 + 12 + 1);

    for from in cursors.into_iter().skip(1) {
        let mut resumed = with_streams(&hub, tagged.clone(), from);
        let items = ready_items(&mut resumed);
        assert!(items.iter().all(|item| item.cursor() > from));
        // In cursor order, across the reads of at most 256 chunks it takes.
        assert!(
            items.windows(2).all(|w| w[0].cursor() < w[1].cursor()),
            "from {from:?}"
        );
        let expected: Vec<_> = all.iter().filter(|(c, ..)| *c > from).cloned().collect();
        assert_eq!(chunk_values(&items), expected, "from {from:?}");
        let expected: Vec<_> = every_change
            .iter()
            .filter(|k| k.0 > from)
            .cloned()
            .collect();
        assert_eq!(changes(&items), expected, "from {from:?}");
    }
}

#[test]
fn a_subscription_turned_to_streams_continues_from_its_last_item() {
    let hub = hub();
    hub.publish(run("run_1", "EXECUTING", &[]), None);
    let data = |n: u32| serde_json::value::to_raw_value(&n).unwrap().into();
    hub.append_chunk(&RunId::from("run_1"), "log", data(1))
        .unwrap();
    let mut plain = hub
        .subscribe(Scope::Run(RunId::from("run_1")), Cursor::START)
        .unwrap();
    let first = ready(&mut plain);
    assert_eq!(first.len(), 1);
    hub.append_chunk(&RunId::from("run_1"), "log", data(2))
        .unwrap();
    hub.publish(run("run_1", "COMPLETED", &[]), None);
    let mut with_streams = plain.with_streams();
    let items = ready_items(&mut with_streams);
    // The snapshot it yielded is the run's first change (cursor 1): both chunks, then the
    // final snapshot; nothing before it again.
    let cursors: Vec<Cursor> = items.iter().map(Realtime::cursor).collect();
    assert!(cursors.iter().all(|c| *c > first[0].cursor), "{items:?}");
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(&items[0], Realtime::Chunk(c) if c.data.get() == "1"));
    assert!(matches!(&items[1], Realtime::Chunk(c) if c.data.get() == "2"));
    assert!(matches!(&items[2], Realtime::Run(u) if u.run.status == RunStatus::Completed));
}

#[test]
fn a_subscription_turned_to_streams_skips_chunks_before_its_last_item() {
    let hub = hub();
    let id = RunId::from("run_2");
    let data = |n: u32| serde_json::value::to_raw_value(&n).unwrap().into();
    hub.publish(run("run_2", "EXECUTING", &[]), None);
    hub.append_chunk(&id, "log", data(1)).unwrap();
    // A change after the chunk: the plain subscription yields it, past the chunk.
    hub.publish(run("run_2", "EXECUTING", &["x"]), None);
    let mut plain = hub
        .subscribe(Scope::Run(id.clone()), Cursor::START)
        .unwrap();
    let first = ready(&mut plain);
    assert_eq!(first.len(), 1);
    hub.append_chunk(&id, "log", data(2)).unwrap();
    let mut with_streams = plain.with_streams();
    let items = ready_items(&mut with_streams);
    assert!(
        items.iter().all(|i| i.cursor() > first[0].cursor),
        "{items:?}"
    );
    let values: Vec<_> = chunk_values(&items)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(values, ["2"]);
}

#[test]
fn a_subscription_turned_to_streams_keeps_the_changes_it_read_but_did_not_yield() {
    let hub = hub();
    hub.publish(run("run_1", "EXECUTING", &["t"]), None);
    hub.publish(run("run_2", "EXECUTING", &["t"]), None);
    let mut plain = hub
        .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
        .unwrap();
    let mut cx = Context::from_waker(noop_waker_ref());
    // One item yielded; the other change was read with it and waits.
    let one = Pin::new(&mut plain).poll_next(&mut cx);
    assert!(matches!(one, Poll::Ready(Some(Ok(_)))));
    hub.publish(run("run_2", "COMPLETED", &["t"]), None);
    let mut with_streams = plain.with_streams();
    let items = ready_items(&mut with_streams);
    let statuses: Vec<_> = items
        .iter()
        .map(|i| match i {
            Realtime::Run(u) => (u.run.id.to_string(), u.run.status),
            Realtime::Chunk(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("run_2".into(), RunStatus::Executing),
            ("run_2".into(), RunStatus::Completed)
        ]
    );
}

#[test]
fn a_lagging_reader_still_reads_the_chunks_of_a_run_forgotten_meanwhile() {
    let hub = hub();
    let id = RunId::from("run_1");
    hub.publish(run("run_1", "EXECUTING", &[]), None);
    let mut lagging = with_streams(&hub, Scope::Run(id.clone()), Cursor::START);
    assert_eq!(ready_items(&mut lagging).len(), 1);
    for i in 0..600u32 {
        let data = serde_json::value::to_raw_value(&i).unwrap();
        hub.append_chunk(&id, "log", data.into()).unwrap();
    }
    hub.publish(run("run_1", "COMPLETED", &[]), None);
    drop(hub.remove(&id));
    let items = ready_items(&mut lagging);
    let values: Vec<u32> = chunk_values(&items)
        .iter()
        .map(|(_, _, v)| v.parse().unwrap())
        .collect();
    assert_eq!(values, (0..600).collect::<Vec<_>>());
    assert!(matches!(items.last(), Some(Realtime::Run(u)) if u.run.status == RunStatus::Completed));
    // A new reader finds nothing of it.
    let late = hub.subscribe(Scope::Run(id), Cursor::START);
    assert!(matches!(late, Err(FeedError::UnknownRun(_))));
}

#[test]
fn a_resumed_tag_subscription_sees_a_run_leave_its_scope_as_a_live_one_does() {
    let hub = hub();
    let scope = Scope::Tags(vec!["a".into()]);
    hub.publish(run("run_1", "EXECUTING", &["a", "b"]), None);
    hub.publish(run("run_2", "EXECUTING", &["b"]), None);
    let mut live = hub.subscribe(scope.clone(), Cursor::START).unwrap();
    let before = ready(&mut live);
    assert_eq!(ids(&before), [("run_1".into(), RunStatus::Executing)]);
    let from = before[0].cursor;

    // run_1 leaves the scope; run_2, never in it, loses a tag too.
    hub.publish(run("run_1", "EXECUTING", &["b"]), None);
    hub.publish(run("run_2", "EXECUTING", &[]), None);
    hub.publish(run("run_1", "COMPLETED", &["b"]), None);
    let seen_live: Vec<_> = ready(&mut live).iter().map(key).collect();
    assert_eq!(seen_live.len(), 1);
    assert_eq!(seen_live[0].3, ["b"]);

    // Resumed from before the change, it is shown the same.
    let mut resumed = hub.subscribe(scope.clone(), from).unwrap();
    assert_eq!(
        ready(&mut resumed).iter().map(key).collect::<Vec<_>>(),
        seen_live
    );
    // Not from after it, and not for a fresh subscription.
    let mut after = hub.subscribe(scope.clone(), hub.cursor()).unwrap();
    assert!(ready(&mut after).is_empty());
    let mut fresh = hub.subscribe(scope, Cursor::START).unwrap();
    assert!(ready(&mut fresh).is_empty());
    // A scope the run was never in does not show it.
    let both = Scope::Tags(vec!["a".into(), "c".into()]);
    let mut never = hub.subscribe(both, from).unwrap();
    assert!(ready(&mut never).is_empty());
}

#[test]
fn a_mailbox_yields_its_backlog_whole_then_live_changes_within_the_window() {
    use super::mailbox::{Mailbox, Pending};
    let pending = |position: u64, id: &str| Pending::new(position, run(id, "QUEUED", &[]), false);
    let positions = |items: &[Pending]| items.iter().map(|p| p.position).collect::<Vec<_>>();
    // A backlog of three, more than the window of two: never coalesced.
    let mut mailbox = Mailbox::new(vec![pending(1, "a"), pending(2, "a"), pending(3, "b")]);
    mailbox.push(pending(4, "a"), 2);
    mailbox.push(pending(5, "b"), 2);
    // Past the window: the live changes coalesce, the backlog stays.
    mailbox.push(pending(6, "a"), 2);
    let mut ready = VecDeque::new();
    mailbox.take(&mut ready);
    assert_eq!(positions(ready.make_contiguous()), [1, 2, 3]);
    // Read but not yielded: put back before the coalesced changes, still whole.
    mailbox.unread(std::mem::take(&mut ready));
    let mut due = Vec::new();
    mailbox.take_through(2, &mut due);
    assert_eq!(positions(&due), [1, 2]);
    due.clear();
    mailbox.take_through(u64::MAX, &mut due);
    // In cursor order as they come, coalesced or not.
    assert_eq!(positions(&due), [3, 5, 6]);
    // The backlog's change is whole, b changed once live, a's latest replaced an earlier one.
    let coalesced: Vec<bool> = due.iter().map(|p| p.coalesced).collect();
    assert_eq!(coalesced, [false, false, true]);
    assert!(mailbox.is_empty());
    // Empty again, the window counts from the start.
    mailbox.push(pending(7, "a"), 2);
    mailbox.push(pending(8, "a"), 2);
    mailbox.take(&mut ready);
    assert_eq!(positions(ready.make_contiguous()), [7, 8]);
}

#[test]
fn a_coalesced_mailbox_keeps_the_latest_change_of_each_run_in_cursor_order_within_bounded_memory() {
    use super::mailbox::{Mailbox, Pending};
    let ids: Vec<String> = (0..10).map(|n| format!("run_{n}")).collect();
    let runs: Vec<_> = ids.iter().map(|id| run(id, "EXECUTING", &[])).collect();
    let mut mailbox = Mailbox::new(Vec::new());
    // 100,000 changes of 10 runs, in a pseudo-random order, never read, with a window of 4.
    let mut latest = std::collections::HashMap::new();
    let mut seed = 7u64;
    for position in 1..=100_000u64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let which = (seed >> 33) as usize % runs.len();
        let pending = Pending::new(position, Arc::clone(&runs[which]), false);
        mailbox.push(pending, 4);
        latest.insert(which, position);
        // What it holds stays bounded by the runs, whatever it was given.
        assert!(mailbox.held() <= 2 * runs.len() + 64 + 1);
    }
    let mut expected: Vec<u64> = latest.into_values().collect();
    expected.sort_unstable();
    // Read half, then the rest: each run's latest change, in cursor order, marked coalesced.
    let middle = expected[expected.len() / 2];
    let mut due = Vec::new();
    mailbox.take_through(middle, &mut due);
    let mut ready = VecDeque::new();
    mailbox.take(&mut ready);
    let read: Vec<u64> = due.iter().chain(&ready).map(|p| p.position).collect();
    assert_eq!(read, expected);
    assert!(due.iter().chain(&ready).all(|p| p.coalesced));
    assert!(mailbox.is_empty());
}

/// The notices of what a lagging reader lost that begin `items`, as "chunks of run_1" and
/// "changes of run_1".
fn leading_notices<T>(items: &[Result<T, FeedError>]) -> Vec<String> {
    items
        .iter()
        .map_while(|item| match item {
            Err(FeedError::ChunksDropped(run)) => Some(format!("chunks of {run}")),
            Err(FeedError::ChangesDropped(run)) => Some(format!("changes of {run}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reader_lagging_past_the_retention_keeps_forgotten_chunks_within_a_limit_and_is_told_of_the_rest()
 {
    let data = |i: u32| Arc::from(serde_json::value::to_raw_value(&i).unwrap());
    // What keeping one run's 100 chunks costs.
    let mut one_run = chunks::Streams::new("resize-image");
    for i in 0..100u32 {
        one_run.push(u64::from(i), "log", data(i));
    }
    // Room for one forgotten run's chunks and a half.
    let hub = RunHub::new(HubConfig {
        orphan_bytes: one_run.bytes * 3 / 2,
        ..HubConfig::default()
    });
    let ids = ["run_1", "run_2", "run_3"];
    for id in ids {
        hub.publish(run(id, "EXECUTING", &["t"]), None);
    }
    let mut lagging = with_streams(&hub, Scope::Tags(vec!["t".into()]), Cursor::START);
    assert_eq!(ready_items(&mut lagging).len(), 3);
    for id in ids {
        for i in 0..100u32 {
            hub.append_chunk(&RunId::from(id), "log", data(i)).unwrap();
        }
    }
    // The runs finish and are forgotten before the reader reads on.
    for id in ids {
        hub.publish(run(id, "COMPLETED", &["t"]), None);
        drop(hub.remove(&RunId::from(id)));
    }
    let items = ready_all(&mut lagging);
    // First, one notice for each run whose chunks found no room.
    let dropped = leading_notices(&items);
    assert_eq!(dropped, ["chunks of run_2", "chunks of run_3"]);
    // Then every chunk of the run kept, and each run's final snapshot.
    let rest: Vec<_> = items[dropped.len()..]
        .iter()
        .map(|item| item.as_ref().unwrap().clone())
        .collect();
    let chunks = chunk_values(&rest);
    let values: Vec<(String, String)> = chunks.into_iter().map(|(_, run, v)| (run, v)).collect();
    let whole: Vec<(String, String)> = (0..100).map(|i| ("run_1".into(), i.to_string())).collect();
    assert_eq!(values, whole);
    let finals = rest.iter().filter_map(|item| match item {
        Realtime::Run(u) if u.run.status == RunStatus::Completed => Some(u.run.id.to_string()),
        _ => None,
    });
    assert_eq!(finals.collect::<Vec<_>>(), ids);
    // Read to their end, the kept chunks leave room again: one more run forgotten unread is
    // kept whole.
    hub.publish(run("run_4", "EXECUTING", &["t"]), None);
    assert_eq!(ready_items(&mut lagging).len(), 1);
    for i in 0..100u32 {
        hub.append_chunk(&RunId::from("run_4"), "log", data(i))
            .unwrap();
    }
    drop(hub.remove(&RunId::from("run_4")));
    let items = ready_items(&mut lagging);
    assert_eq!(chunk_values(&items).len(), 100);
}

#[test]
fn a_reader_lagging_past_the_retention_keeps_forgotten_runs_latest_changes_within_a_limit() {
    // Room for the latest changes of two forgotten runs and a half.
    let one_run = history::cost(&run("run_0", "COMPLETED", &["t"]), None);
    let hub = RunHub::new(HubConfig {
        window: 1,
        orphan_bytes: one_run * 5 / 2,
        ..HubConfig::default()
    });
    let mut lagging = hub
        .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
        .unwrap();
    // Five runs change past the window of one, then finish and are forgotten, unread.
    let ids = ["run_1", "run_2", "run_3", "run_4", "run_5"];
    for id in ids {
        hub.publish(run(id, "EXECUTING", &["t"]), None);
    }
    for id in ids {
        hub.publish(run(id, "COMPLETED", &["t"]), None);
        drop(hub.remove(&RunId::from(id)));
    }
    let items = ready_all(&mut lagging);
    let dropped = leading_notices(&items);
    // The first two were kept, the others dropped and said so; then the kept ones' final
    // snapshots, coalesced.
    assert_eq!(
        dropped,
        ["changes of run_3", "changes of run_4", "changes of run_5"]
    );
    let rest: Vec<_> = items[dropped.len()..]
        .iter()
        .map(|item| item.as_ref().unwrap())
        .collect();
    let finals: Vec<_> = rest
        .iter()
        .map(|u| (u.run.id.to_string(), u.run.status, u.coalesced))
        .collect();
    assert_eq!(
        finals,
        [
            ("run_1".into(), RunStatus::Completed, true),
            ("run_2".into(), RunStatus::Completed, true)
        ]
    );
    // Read, the kept changes leave room again: two more runs forgotten unread are kept.
    for id in ["run_6", "run_7", "run_8"] {
        hub.publish(run(id, "EXECUTING", &["t"]), None);
    }
    for id in ["run_6", "run_7"] {
        hub.publish(run(id, "COMPLETED", &["t"]), None);
        drop(hub.remove(&RunId::from(id)));
    }
    let items = ready(&mut lagging);
    let statuses: Vec<_> = items
        .iter()
        .map(|u| (u.run.id.to_string(), u.run.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("run_8".into(), RunStatus::Executing),
            ("run_6".into(), RunStatus::Completed),
            ("run_7".into(), RunStatus::Completed)
        ]
    );
}
