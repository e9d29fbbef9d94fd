//! The typed adaptors over fixture streams: decoding, errors that do not end the stream,
//! ending after the final snapshot, accessors and stream traits.

mod common;

use common::{Media, ResizeImage, snapshot};
use futures::executor::block_on;
use futures::stream::{self, FusedStream, Stream, StreamExt};
use runcast::{AnyRun, DecodeError, RunStatus, RunStreamExt};

fn any(json: &str) -> Result<AnyRun, DecodeError> {
    serde_json::from_str(json).map_err(DecodeError::Malformed)
}

fn resize(status: &str) -> Result<AnyRun, DecodeError> {
    any(&snapshot(
        "run_1",
        "resize-image",
        status,
        r#"{"url":"u","width":1}"#,
        None,
    ))
}

/// A feed's error type, as a real subscription would have: decode errors and its own.
#[derive(Debug)]
enum FeedError {
    Decode(DecodeError),
    Disconnected,
}

impl From<DecodeError> for FeedError {
    fn from(e: DecodeError) -> Self {
        FeedError::Decode(e)
    }
}

#[test]
fn typed_decodes_each_item_and_bad_items_do_not_end_the_stream() {
    let feed = stream::iter(vec![
        resize("QUEUED"),
        any(&snapshot(
            "run_1",
            "resize-image",
            "EXECUTING",
            r#"{"width":"x"}"#,
            None,
        )),
        any(&snapshot(
            "run_2",
            "send-email",
            "QUEUED",
            r#"{"to":"x"}"#,
            None,
        )),
        any("not json"),
        resize("COMPLETED"),
    ]);
    let items: Vec<_> = block_on(feed.typed::<ResizeImage>().collect());
    assert_eq!(items.len(), 5);
    assert_eq!(items[0].as_ref().unwrap().status, RunStatus::Queued);
    assert!(matches!(items[1], Err(DecodeError::Field { .. })));
    assert!(matches!(items[2], Err(DecodeError::UnexpectedTask { .. })));
    assert!(matches!(items[3], Err(DecodeError::Malformed(_))));
    assert_eq!(items[4].as_ref().unwrap().status, RunStatus::Completed);
}

#[test]
fn union_decodes_each_item_as_its_variant_and_keeps_the_feeds_own_errors() {
    let feed = stream::iter(vec![
        resize("QUEUED").map_err(FeedError::from),
        Err(FeedError::Disconnected),
        any(&snapshot(
            "run_2",
            "send-email",
            "QUEUED",
            r#"{"to":"x"}"#,
            None,
        ))
        .map_err(FeedError::from),
        any(&snapshot("run_3", "other", "QUEUED", "{}", None)).map_err(FeedError::from),
    ]);
    let items: Vec<Result<Media, FeedError>> = block_on(feed.union::<Media>().collect());
    assert!(matches!(items[0], Ok(Media::ResizeImage(_))));
    assert!(matches!(items[1], Err(FeedError::Disconnected)));
    assert!(matches!(items[2], Ok(Media::SendEmail(_))));
    assert!(matches!(
        items[3],
        Err(FeedError::Decode(DecodeError::UnexpectedTask { .. }))
    ));
}

#[test]
fn until_finished_yields_the_final_snapshot_then_ends() {
    let feed = stream::iter(vec![
        resize("QUEUED"),
        resize("EXECUTING"),
        any("{"),
        resize("REATTEMPTING"),
        resize("FAILED"),
        resize("EXECUTING"),
    ]);
    let mut runs = feed.typed::<ResizeImage>().until_finished();
    let statuses: Vec<_> = block_on((&mut runs).map(|r| r.map(|run| run.status).ok()).collect());
    assert_eq!(
        statuses,
        [
            Some(RunStatus::Queued),
            Some(RunStatus::Executing),
            None,
            Some(RunStatus::Reattempting),
            Some(RunStatus::Failed)
        ]
    );
    assert!(runs.is_terminated());
    assert_eq!(runs.size_hint(), (0, Some(0)));
    assert!(
        block_on(runs.next()).is_none(),
        "stays ended when polled again"
    );
    // The rest of the feed is still in the inner stream.
    let rest: Vec<_> = block_on(runs.into_inner().collect());
    assert_eq!(rest.len(), 1);
}

#[test]
fn until_finished_follows_the_first_run_and_lets_others_pass() {
    let run = |id: &str, status: &str| {
        any(&snapshot(
            id,
            "resize-image",
            status,
            r#"{"url":"u","width":1}"#,
            None,
        ))
    };
    // A tag feed starts with the current state of every run: an older run already finished.
    let feed = stream::iter(vec![
        run("run_b", "QUEUED"),
        run("run_a", "COMPLETED"),
        run("run_b", "EXECUTING"),
        run("run_b", "COMPLETED"),
        run("run_c", "QUEUED"),
    ]);
    let ids: Vec<_> = block_on(
        feed.until_finished()
            .map(|r| r.map(|run| format!("{} {}", run.id, run.status)).unwrap())
            .collect(),
    );
    assert_eq!(
        ids,
        [
            "run_b QUEUED",
            "run_a COMPLETED",
            "run_b EXECUTING",
            "run_b COMPLETED"
        ]
    );
}

#[test]
fn until_finished_before_typed_ends_even_if_the_final_snapshot_does_not_decode() {
    let feed = stream::iter(vec![
        resize("EXECUTING"),
        any(&snapshot(
            "run_1",
            "resize-image",
            "COMPLETED",
            r#"{"url":"u","width":1}"#,
            Some("7"),
        )),
        resize("EXECUTING"),
    ]);
    let items: Vec<_> = block_on(feed.until_finished().typed::<ResizeImage>().collect());
    assert_eq!(items.len(), 2);
    assert!(matches!(items[1], Err(DecodeError::Field { .. })));
}

#[test]
fn until_finished_works_on_untyped_and_union_items() {
    let untyped = stream::iter(vec![resize("QUEUED"), resize("CANCELED"), resize("QUEUED")]);
    assert_eq!(block_on(untyped.until_finished().count()), 2);
    let union = stream::iter(vec![resize("EXPIRED"), resize("QUEUED")]).union::<Media>();
    assert_eq!(block_on(union.until_finished().count()), 1);
}

#[test]
fn until_finished_ends_with_the_inner_stream_if_no_run_finishes() {
    let feed = stream::iter(vec![resize("QUEUED"), resize("EXECUTING")]);
    let mut runs = feed.until_finished();
    assert_eq!(block_on((&mut runs).count()), 2);
    assert!(runs.is_terminated());
}

#[test]
fn adaptors_forward_size_hint_and_expose_the_inner_stream() {
    let feed = stream::iter(vec![
        resize("QUEUED"),
        resize("EXECUTING"),
        resize("COMPLETED"),
    ]);
    let mut typed = feed.typed::<ResizeImage>();
    assert_eq!(typed.size_hint(), (3, Some(3)));
    assert_eq!(typed.get_ref().size_hint(), (3, Some(3)));
    assert!(block_on(typed.next()).is_some());
    assert_eq!(typed.get_mut().size_hint(), (2, Some(2)));
    let mut union = typed.into_inner().union::<Media>();
    assert!(block_on(union.next()).is_some());
    let until = union.into_inner().until_finished();
    assert_eq!(until.size_hint(), (1, Some(1)));
    assert!(format!("{until:?}").starts_with("UntilFinished"));
}

#[test]
fn fused_inner_streams_stay_fused() {
    let mut typed = stream::iter(vec![resize("QUEUED")])
        .fuse()
        .typed::<ResizeImage>();
    assert!(!typed.is_terminated());
    assert_eq!(block_on((&mut typed).count()), 1);
    assert!(typed.is_terminated());
}

#[test]
fn adaptors_are_send_sync_and_unpin_when_the_inner_stream_is() {
    fn assert_traits<S: Send + Sync + Unpin>(_: &S) {}
    let feed = stream::iter(vec![resize("QUEUED")]);
    let adapted = feed.typed::<ResizeImage>().until_finished();
    assert_traits(&adapted);
    assert_traits(&stream::iter(vec![resize("QUEUED")]).union::<Media>());
}
