//! The hub: current state then changes, coalescing for slow subscribers, gap-free resume from
//! any cursor, scopes by run, tags and batch, limits.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on bad fixtures.

mod common;

use std::collections::HashMap;
use std::str::FromStr;

use common::{Media, ResizeImage};
use futures::Stream;
use futures::executor::block_on;
use futures::stream::StreamExt;
use futures::task::noop_waker_ref;
use runcast::{
    AnyChunk, AnyRun, BatchId, Cursor, Realtime, RealtimeSubscription, RunHub, RunId, RunStatus,
    RunStreamExt, Scope, SubscribeError, Subscription, Update,
};

fn run(id: &str, status: &str, tags: &[&str]) -> AnyRun {
    let tags = serde_json::to_string(tags).unwrap();
    serde_json::from_str(&format!(
        r#"{{"id":"{id}","taskIdentifier":"resize-image","payload":{{"url":"u","width":1}},"status":"{status}","tags":{tags},"createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}}"#
    ))
    .unwrap()
}

/// Everything the subscription has ready now, without waiting.
fn ready(sub: &mut Subscription) -> Vec<Update<AnyRun>> {
    let mut cx = std::task::Context::from_waker(noop_waker_ref());
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(item)) = std::pin::Pin::new(&mut *sub).poll_next(&mut cx)
    {
        out.push(item.unwrap());
    }
    out
}

fn ids(updates: &[Update<AnyRun>]) -> Vec<(String, RunStatus)> {
    updates
        .iter()
        .map(|u| (u.run.id.to_string(), u.run.status))
        .collect()
}

#[test]
fn a_subscription_yields_the_current_state_then_every_change() {
    let hub = RunHub::new();
    hub.publish(run("run_1", "QUEUED", &["user:1"]), None);
    let mut sub = hub
        .subscribe(Scope::Run(RunId::from("run_1")), Cursor::START)
        .unwrap();
    assert_eq!(ids(&ready(&mut sub)), [("run_1".into(), RunStatus::Queued)]);
    assert!(ready(&mut sub).is_empty());
    for status in ["EXECUTING", "COMPLETED"] {
        hub.publish(run("run_1", status, &["user:1"]), None);
        let expected = RunStatus::from_str(status).unwrap();
        assert_eq!(ids(&ready(&mut sub)), [("run_1".into(), expected)]);
    }
}

#[test]
fn a_slow_subscriber_gets_the_latest_snapshot_of_each_run_and_never_loses_the_final_one() {
    let hub = RunHub::new();
    let mut sub = hub
        .subscribe(Scope::Tags(vec!["user:1".into()]), Cursor::START)
        .unwrap();
    for i in 0..5_000 {
        let status = if i == 4_999 { "COMPLETED" } else { "EXECUTING" };
        hub.publish(run(&format!("run_{}", i % 3), status, &["user:1"]), None);
    }
    let updates = ready(&mut sub);
    assert_eq!(updates.len(), 3, "one snapshot per run, not one per change");
    assert_eq!(updates.last().unwrap().run.status, RunStatus::Completed);
    assert_eq!(updates.last().unwrap().cursor, hub.cursor());
    assert!(updates.windows(2).all(|w| w[0].cursor < w[1].cursor));
}

#[test]
fn resuming_from_any_cursor_continues_with_no_gap_and_no_duplicate() {
    let hub = RunHub::new();
    let mut live = hub
        .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
        .unwrap();
    let mut recorded = Vec::new();
    for i in 0..60 {
        hub.publish(
            run(
                &format!("run_{}", i % 7),
                ["QUEUED", "EXECUTING"][i % 2],
                &["t"],
            ),
            None,
        );
        if i % 4 == 0 {
            recorded.extend(ready(&mut live));
        }
    }
    recorded.extend(ready(&mut live));
    for (i, item) in recorded.iter().enumerate() {
        let mut resumed = hub
            .subscribe(Scope::Tags(vec!["t".into()]), item.cursor)
            .unwrap();
        // What came after the item, each run at its latest snapshot, in cursor order.
        let mut latest: HashMap<RunId, &Update<AnyRun>> = HashMap::new();
        for later in &recorded[i + 1..] {
            latest.insert(later.run.id.clone(), later);
        }
        let mut expected: Vec<_> = latest.into_values().cloned().collect();
        expected.sort_by_key(|u| u.cursor);
        let key = |u: &Update<AnyRun>| (u.cursor, u.run.id.clone(), u.run.status);
        let got: Vec<_> = ready(&mut resumed).iter().map(key).collect();
        let expected: Vec<_> = expected.iter().map(key).collect();
        assert_eq!(got, expected, "resuming after item {i}");
    }
}

#[test]
fn tag_scopes_need_every_tag_and_see_a_tag_removed() {
    let hub = RunHub::new();
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
    assert_eq!(last[0].run.tags, ["b"]);
    hub.publish(run("run_1", "COMPLETED", &["b"]), None);
    assert!(ready(&mut both).is_empty(), "then the run is out of scope");
}

#[test]
fn batch_scopes_follow_the_batch_given_at_first_publish() {
    let hub = RunHub::new();
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
fn subscriptions_are_limited_and_dropping_one_frees_its_place() {
    let hub = RunHub::with_max_subscriptions(2);
    let a = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap();
    let _b = hub
        .subscribe(Scope::Batch("batch_1".into()), Cursor::START)
        .unwrap();
    let err = hub
        .subscribe(Scope::Tags(vec!["x".into()]), Cursor::START)
        .unwrap_err();
    assert_eq!(err, SubscribeError::TooManySubscriptions { limit: 2 });
    assert!(err.to_string().contains("the limit is 2"));
    drop(a);
    assert_eq!(hub.subscriptions(), 1);
    assert!(
        hub.subscribe(Scope::Run("run_1".into()), Cursor::START)
            .is_ok()
    );
    assert_eq!(
        hub.subscribe(Scope::Tags(vec![]), Cursor::START)
            .unwrap_err(),
        SubscribeError::NoTags
    );
}

#[test]
fn typed_adaptors_keep_each_updates_cursor() {
    let hub = RunHub::new();
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
        matches!(&first[0], Ok(Update { run: Media::ResizeImage(_), cursor }) if *cursor == c2)
    );
}

#[test]
fn a_waiting_subscriber_is_woken_by_a_publish_from_another_thread() {
    let hub = RunHub::new();
    let sub = hub
        .subscribe(Scope::Run("run_1".into()), Cursor::START)
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for status in ["QUEUED", "EXECUTING", "COMPLETED"] {
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
    assert_eq!(statuses.last(), Some(&RunStatus::Completed));
}

#[test]
fn a_forgotten_run_leaves_every_index_and_pending_changes_still_arrive() {
    let hub = RunHub::new();
    let batch = BatchId::from("batch_1");
    hub.publish(run("run_1", "QUEUED", &["user:1"]), Some(batch.clone()));
    let mut watching = hub
        .subscribe(Scope::Tags(vec!["user:1".into()]), Cursor::START)
        .unwrap();
    hub.publish(run("run_1", "COMPLETED", &["user:1"]), None);
    hub.forget(&RunId::from("run_1"));

    assert!(hub.get(&RunId::from("run_1")).is_none());
    // The subscriber that had not read yet still gets the run's last change.
    assert_eq!(
        ids(&ready(&mut watching)),
        [("run_1".into(), RunStatus::Completed)]
    );
    for scope in [
        Scope::Tags(vec!["user:1".into()]),
        Scope::Batch(batch),
        Scope::Run(RunId::from("run_1")),
    ] {
        let mut late = hub.subscribe(scope.clone(), Cursor::START).unwrap();
        assert!(ready(&mut late).is_empty(), "{scope:?}");
    }
    // Published again, it is a run like any other.
    hub.publish(run("run_1", "QUEUED", &["user:1"]), None);
    assert_eq!(
        ids(&ready(&mut watching)),
        [("run_1".into(), RunStatus::Queued)]
    );
}

/// Everything a subscription with streams has ready now, without waiting.
fn ready_items(sub: &mut RealtimeSubscription) -> Vec<Realtime<AnyRun, AnyChunk>> {
    let mut cx = std::task::Context::from_waker(noop_waker_ref());
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(item)) = std::pin::Pin::new(&mut *sub).poll_next(&mut cx)
    {
        out.push(item.unwrap());
    }
    out
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

#[test]
fn chunks_and_changes_of_several_runs_resume_from_every_cursor_without_gap_or_duplicate() {
    let hub = RunHub::new();
    let tagged = Scope::Tags(vec!["t".into()]);
    hub.publish(run("run_1", "EXECUTING", &["t"]), None);
    hub.publish(run("run_2", "EXECUTING", &["t"]), None);
    let mut live = hub
        .subscribe_with_streams(tagged.clone(), Cursor::START)
        .unwrap();
    let mut recorded = ready_items(&mut live);
    // 600 chunks, more than one read takes at once, interleaved with run changes, read at
    // uneven moments.
    for i in 0..600u32 {
        let id = RunId::from(if i % 3 == 0 { "run_2" } else { "run_1" });
        let data = serde_json::value::to_raw_value(&i).unwrap();
        hub.append_chunk(&id, "log", data.into()).unwrap();
        if i % 50 == 0 {
            hub.publish(run(id.as_str(), "EXECUTING", &["t"]), None);
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

    for from in cursors {
        let mut resumed = hub.subscribe_with_streams(tagged.clone(), from).unwrap();
        let items = ready_items(&mut resumed);
        assert!(items.iter().all(|item| item.cursor() > from));
        // In cursor order, across the reads of at most 256 chunks it takes.
        assert!(
            items.windows(2).all(|w| w[0].cursor() < w[1].cursor()),
            "from {from:?}"
        );
        let expected: Vec<_> = all.iter().filter(|(c, ..)| *c > from).cloned().collect();
        assert_eq!(chunk_values(&items), expected, "from {from:?}");
        // Each run changed after the cursor shows up once, as its latest snapshot.
        for id in ["run_1", "run_2"] {
            let latest = hub.get(&RunId::from(id)).unwrap();
            let shown: Vec<Cursor> = items
                .iter()
                .filter_map(|item| match item {
                    Realtime::Run(update) if update.run.id == id => Some(update.cursor),
                    _ => None,
                })
                .collect();
            let want: Vec<Cursor> = (latest.cursor > from)
                .then_some(latest.cursor)
                .into_iter()
                .collect();
            assert_eq!(shown, want, "{id} from {from:?}");
        }
    }
}

#[test]
fn a_subscription_turned_to_streams_continues_from_its_last_item() {
    let hub = RunHub::new();
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
    // Everything after the snapshot it had yielded (cursor 1): both chunks (2 and 3), then the
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
    let hub = RunHub::new();
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
fn a_subscription_turned_to_streams_keeps_the_snapshots_it_read_but_did_not_yield() {
    let hub = RunHub::new();
    hub.publish(run("run_1", "EXECUTING", &["t"]), None);
    hub.publish(run("run_2", "EXECUTING", &["t"]), None);
    let mut plain = hub
        .subscribe(Scope::Tags(vec!["t".into()]), Cursor::START)
        .unwrap();
    let mut cx = std::task::Context::from_waker(noop_waker_ref());
    // One item yielded; the other snapshot was read with it and waits.
    let one = std::pin::Pin::new(&mut plain).poll_next(&mut cx);
    assert!(matches!(one, std::task::Poll::Ready(Some(Ok(_)))));
    let mut with_streams = plain.with_streams();
    let items = ready_items(&mut with_streams);
    assert_eq!(items.len(), 1, "{items:?}");
}

#[test]
fn a_lagging_reader_still_reads_the_chunks_of_a_run_forgotten_meanwhile() {
    let hub = RunHub::new();
    let id = RunId::from("run_1");
    hub.publish(run("run_1", "EXECUTING", &[]), None);
    let mut lagging = hub
        .subscribe_with_streams(Scope::Run(id.clone()), Cursor::START)
        .unwrap();
    assert_eq!(ready_items(&mut lagging).len(), 1);
    for i in 0..600u32 {
        let data = serde_json::value::to_raw_value(&i).unwrap();
        hub.append_chunk(&id, "log", data.into()).unwrap();
    }
    hub.publish(run("run_1", "COMPLETED", &[]), None);
    hub.forget(&id);
    let items = ready_items(&mut lagging);
    let values: Vec<u32> = chunk_values(&items)
        .iter()
        .map(|(_, _, v)| v.parse().unwrap())
        .collect();
    assert_eq!(values, (0..600).collect::<Vec<_>>());
    assert!(matches!(items.last(), Some(Realtime::Run(u)) if u.run.status == RunStatus::Completed));
    // A new reader finds nothing of it.
    let mut late = hub
        .subscribe_with_streams(Scope::Run(id), Cursor::START)
        .unwrap();
    assert!(ready_items(&mut late).is_empty());
}

#[test]
fn a_resumed_tag_subscription_sees_a_run_leave_its_scope_as_a_live_one_does() {
    let hub = RunHub::new();
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
    let seen_live = ready(&mut live);
    assert_eq!(ids(&seen_live), [("run_1".into(), RunStatus::Executing)]);
    assert_eq!(seen_live[0].run.tags, ["b"]);

    // Resumed from before the change, it is shown too, as its latest snapshot.
    hub.publish(run("run_1", "COMPLETED", &["b"]), None);
    let mut resumed = hub.subscribe(scope.clone(), from).unwrap();
    assert_eq!(
        ids(&ready(&mut resumed)),
        [("run_1".into(), RunStatus::Completed)]
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
