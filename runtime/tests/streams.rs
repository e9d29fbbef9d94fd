//! Realtime streams through the engine: typed chunks and run changes in one cursor order,
//! resume from any cursor, late and lagging subscribers, limits, runs that end badly, union
//! feeds, and typed metadata.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail the test on bad fixtures.

use std::sync::Mutex;
use std::time::Duration;

mod common;
use common::backend::Backend;

use futures::{StreamExt, TryStreamExt};
use runcast::{
    AnyChunk, AnyRun, Cursor, DecodeError, Engine, FeedError, MetadataOp, Realtime, RunFeed,
    RunField, RunId, RunInfo, RunStatus, RunStreamExt, Scope, StreamError, TaskContext,
    TriggerOptions, WithStreams, realtime_union, task,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
}

/// Streams each word as a token and reports progress in typed metadata: typed writes for odd
/// words, operations on the JSON object for even ones.
#[task(id = "chat", metadata = Progress, streams(tokens = String))]
async fn chat(words: Vec<String>, ctx: TaskContext) -> Result<String, StreamError> {
    let tokens = ctx.stream(Chat::TOKENS);
    let total = u32::try_from(words.len()).unwrap();
    for (i, word) in words.iter().enumerate() {
        tokens.append(word).await?;
        let done = u32::try_from(i).unwrap() + 1;
        if i % 2 == 0 {
            ctx.set_metadata(&Progress { done, total }).await.unwrap();
        } else {
            let progress = serde_json::json!({"done": done, "total": total});
            ctx.update_metadata([MetadataOp::Update(progress.as_object().unwrap().clone())])
                .await
                .unwrap();
        }
        tokio::task::yield_now().await;
    }
    Ok(words.join(" "))
}

/// Writes `0..n` to `numbers`, as fast as it can.
#[task(id = "count", streams(numbers = u64))]
async fn count(n: u64, ctx: TaskContext) -> Result<u64, StreamError> {
    let numbers = ctx.stream(Count::NUMBERS);
    numbers.pipe(futures::stream::iter(0..n)).await?;
    Ok(n)
}

/// Writes three numbers, then fails.
#[task(id = "fail-midway", streams(numbers = u64))]
async fn fail_midway(_: (), ctx: TaskContext) -> Result<(), String> {
    for n in 0..3 {
        ctx.stream(FailMidway::NUMBERS)
            .append(&n)
            .await
            .map_err(|e| e.to_string())?;
    }
    Err("gave up".into())
}

/// Writes one number, then waits to be canceled.
#[task(id = "wait", streams(numbers = u64))]
async fn wait(_: (), ctx: TaskContext) -> Result<(), StreamError> {
    ctx.stream(Wait::NUMBERS).append(&7).await?;
    ctx.canceled().await;
    Ok(())
}

/// Writes chunks of `size` bytes of JSON until refused; reports how many were written and
/// why it stopped.
#[task(id = "fill", streams(blobs = String))]
async fn fill(size: usize, ctx: TaskContext) -> Result<(u32, String), String> {
    let blob = "x".repeat(size.saturating_sub(2));
    let mut written = 0;
    loop {
        match ctx.stream(Fill::BLOBS).append(&blob).await {
            Ok(_) => written += 1,
            Err(error) => return Ok((written, error.to_string())),
        }
    }
}

/// Keeps its context, to write after the run finished.
static KEPT: Mutex<Option<TaskContext<Keep>>> = Mutex::new(None);

#[task(id = "keep", streams(numbers = u64))]
async fn keep(_: (), ctx: TaskContext) -> Result<(), String> {
    *KEPT.lock().unwrap() = Some(ctx);
    Ok(())
}

/// The first attempt's context, kept to write from after that attempt failed.
static FIRST_ATTEMPT: Mutex<Option<TaskContext<RetryOnce>>> = Mutex::new(None);

/// Fails its first attempt; the second tries to write with the first attempt's context.
#[task(id = "retry-once", streams(numbers = u64))]
async fn retry_once(_: (), ctx: TaskContext) -> Result<String, String> {
    if ctx.attempt() == 1 {
        *FIRST_ATTEMPT.lock().unwrap() = Some(ctx);
        return Err("first attempt fails".into());
    }
    let first = FIRST_ATTEMPT.lock().unwrap().take().unwrap();
    let refused = first
        .stream(RetryOnce::NUMBERS)
        .append(&1)
        .await
        .unwrap_err();
    ctx.stream(RetryOnce::NUMBERS)
        .append(&2)
        .await
        .map_err(|e| e.to_string())?;
    Ok(refused.to_string())
}

realtime_union! {
    enum Feed {
        Chat,
        Count,
    }
}

realtime_union! {
    enum Anything {
        Chat,
        _ => Other,
    }
}

async fn engine(backend: Backend) -> Engine {
    backend
        .builder()
        .await
        .task::<Chat>()
        .task::<Count>()
        .task::<FailMidway>()
        .task::<Wait>()
        .task::<Keep>()
        .task::<RetryOnce>()
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap()
}

fn words(text: &str) -> Vec<String> {
    text.split(' ').map(str::to_owned).collect()
}

/// Waits for a run to finish. A read over Postgres is a query: it looks every 20 ms, and gives
/// up after 3 minutes (the lagging-subscriber test writes 35,003 chunks, one commit each).
async fn finished(engine: &Engine, id: &RunId) -> AnyRun {
    let finished = async {
        loop {
            let run = engine.latest(id).await.unwrap().run;
            if run.status.is_final() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(180), finished)
        .await
        .expect("the run finishes within 3 minutes")
}

/// Every untyped item of a run's subscription with streams from `from`, until it finishes.
async fn record(engine: &Engine, id: &RunId, from: Cursor) -> Vec<Realtime<AnyRun, AnyChunk>> {
    let items = engine
        .subscribe(Scope::Run(id.clone()), from)
        .await
        .unwrap();
    items
        .with_streams()
        .until_finished()
        .try_collect()
        .await
        .unwrap()
}

fn cursor(item: &Realtime<AnyRun, AnyChunk>) -> Cursor {
    item.cursor()
}

on_every_backend! {
    async fn chunks_and_run_changes_arrive_typed_in_one_cursor_order(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine
            .trigger::<Chat>(words("the quick brown fox"))
            .await
            .unwrap();
        let items = engine
            .subscribe_to_run::<Chat>(handle.id())
            .await
            .unwrap()
            .with_streams();
        let items: Vec<_> = items.try_collect().await.unwrap();

        let cursors: Vec<Cursor> = items.iter().map(Realtime::cursor).collect();
        assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
        let mut tokens = Vec::new();
        let mut last_progress = None;
        for item in &items {
            match item {
                Realtime::Chunk(chunk) => {
                    let ChatChunk::Tokens(token) = &chunk.data;
                    // Chunk types need not be `Debug`: their enum shows them as JSON.
                    assert_eq!(format!("{:?}", chunk.data), format!("Tokens({token:?})"));
                    assert_eq!(&chunk.run_id, handle.id());
                    assert_eq!(&*chunk.stream, "tokens");
                    tokens.push(token.clone());
                }
                Realtime::Run(update) => {
                    // Progress never runs ahead of the tokens before it in the feed.
                    if let Some(progress) = &update.run.metadata {
                        assert!(progress.done as usize <= tokens.len(), "{progress:?}");
                        last_progress = Some(progress.clone());
                    }
                    if !tokens.is_empty() {
                        assert_eq!(update.run.realtime_streams, ["tokens"]);
                    }
                }
            }
        }
        assert_eq!(tokens, words("the quick brown fox"));
        assert_eq!(last_progress, Some(Progress { done: 4, total: 4 }));
        let Some(Realtime::Run(last)) = items.last() else {
            panic!("the feed ends with the final snapshot")
        };
        assert_eq!(last.run.status, RunStatus::Completed);
        assert_eq!(last.run.output.as_deref(), Some("the quick brown fox"));
    }
}

on_every_backend! {
    async fn resuming_from_every_cursor_continues_with_no_gap_and_no_duplicate(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine
            .trigger::<Chat>(words("a b c d e f g h"))
            .await
            .unwrap();
        let recorded = record(&engine, handle.id(), handle.cursor()).await;
        let chunks = |items: &[Realtime<AnyRun, AnyChunk>]| -> Vec<(Cursor, String)> {
            items
                .iter()
                .filter_map(|item| match item {
                    Realtime::Chunk(chunk) => Some((chunk.cursor, chunk.data.get().to_owned())),
                    Realtime::Run(_) => None,
                })
                .collect()
        };
        assert_eq!(chunks(&recorded).len(), 8);
        let (last, before_last) = recorded.split_last().unwrap();
        for item in before_last {
            let from = cursor(item);
            let resumed = record(&engine, handle.id(), from).await;
            // Nothing at or before the cursor; every chunk after it, once, in order.
            assert!(
                resumed.iter().all(|item| cursor(item) > from),
                "from {from:?}"
            );
            let expected: Vec<_> = chunks(&recorded)
                .into_iter()
                .filter(|(c, _)| *c > from)
                .collect();
            assert_eq!(chunks(&resumed), expected, "from {from:?}");
            // Every run change after it too: the resumed feed is the rest of the recorded one.
            let keys = |items: &[Realtime<AnyRun, AnyChunk>]| -> Vec<(Cursor, bool)> {
                items
                    .iter()
                    .map(|i| (i.cursor(), matches!(i, Realtime::Run(_))))
                    .collect()
            };
            let rest: Vec<_> = recorded
                .iter()
                .filter(|i| cursor(i) > from)
                .cloned()
                .collect();
            assert_eq!(keys(&resumed), keys(&rest), "from {from:?}");
            let Some(Realtime::Run(last)) = resumed.last() else {
                panic!("from {from:?}: no final snapshot")
            };
            assert_eq!(last.run.status, RunStatus::Completed);
        }
        // After the last item, nothing: the subscription waits for a change that never comes.
        let mut after_last = engine
            .subscribe(Scope::Run(handle.id().clone()), cursor(last))
            .await
            .unwrap()
            .with_streams();
        let nothing = tokio::time::timeout(Duration::from_millis(50), after_last.next()).await;
        assert!(nothing.is_err(), "{nothing:?}");
    }
}

on_every_backend! {
    async fn a_late_subscriber_reads_the_streams_from_their_start(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Count>(1_000).await.unwrap();
        finished(&engine, handle.id()).await;

        let numbers: Vec<u64> = engine
            .read_stream(handle.id(), Count::NUMBERS)
            .await
            .unwrap()
            .map_ok(|chunk| chunk.value)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(numbers, (0..1_000).collect::<Vec<_>>());

        let items: Vec<_> = engine
            .subscribe_to_run::<Count>(handle.id())
            .await
            .unwrap()
            .with_streams()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(items.len(), 1_001, "every chunk, then the final snapshot");

        // Reading on from a chunk's cursor, and from past the end, of a finished run.
        let from = numbers_cursor(&engine, handle.id(), 499).await;
        let rest: Vec<u64> = engine
            .read_stream_from(handle.id(), Count::NUMBERS, from)
            .await
            .unwrap()
            .map_ok(|chunk| chunk.value)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(rest, (500..1_000).collect::<Vec<_>>());
        let end = engine.latest(handle.id()).await.unwrap().cursor;
        let none = engine
            .read_stream_from(handle.id(), Count::NUMBERS, end)
            .await
            .unwrap();
        let none = tokio::time::timeout(Duration::from_secs(10), none.count()).await;
        assert_eq!(none.expect("a read from past the end ends"), 0);
        // A cursor of another history, even one that looks past the end, is refused.
        let foreign: Cursor = "1-999999999".parse().unwrap();
        let refused = engine
            .read_stream_from(handle.id(), Count::NUMBERS, foreign)
            .await;
        assert!(matches!(refused, Err(FeedError::UnknownCursor(c)) if c == foreign));
    }
}

/// The cursor of chunk `n` of a `Count` run.
async fn numbers_cursor(engine: &Engine, id: &RunId, n: u64) -> Cursor {
    let chunks = engine.read_stream(id, Count::NUMBERS).await.unwrap();
    let chunk = chunks
        .try_filter(|chunk| std::future::ready(chunk.value == n))
        .next()
        .await;
    chunk.unwrap().unwrap().cursor
}

on_every_backend! {
    async fn a_lagging_subscriber_loses_no_chunk_while_snapshots_coalesce(backend: Backend) {
        let engine = engine(backend).await;
        let tagged = TriggerOptions::default().tag("lag");
        let counts = [
            engine
                .trigger_with::<Count>(20_000, tagged.clone())
                .await
                .unwrap(),
            engine
                .trigger_with::<Count>(15_000, tagged.clone())
                .await
                .unwrap(),
        ];
        let chat = engine
            .trigger_with::<Chat>(words("one two three"), tagged)
            .await
            .unwrap();
        let mut feed = engine
            .subscribe_to_runs_with_tag::<Feed>(["lag"])
            .await
            .unwrap()
            .with_streams();
        let first = feed.next().await.unwrap().unwrap();
        // The subscriber reads nothing while the runs write 35,003 chunks.
        for handle in &counts {
            finished(&engine, handle.id()).await;
        }
        finished(&engine, chat.id()).await;

        let mut numbers: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        let mut tokens = Vec::new();
        let mut snapshots = 0;
        let mut completed = 0;
        let mut coalesced = 0;
        let mut last = first.cursor();
        if let Realtime::Chunk(FeedChunk::Count(chunk)) = &first {
            let CountChunk::Numbers(n) = chunk.data;
            numbers[usize::from(chunk.run_id != *counts[0].id())].push(n);
        }
        while completed < 3 {
            let item = feed.next().await.unwrap().unwrap();
            assert!(item.cursor() > last);
            last = item.cursor();
            match item {
                Realtime::Chunk(FeedChunk::Count(chunk)) => {
                    let CountChunk::Numbers(n) = chunk.data;
                    numbers[usize::from(chunk.run_id != *counts[0].id())].push(n);
                }
                Realtime::Chunk(FeedChunk::Chat(chunk)) => {
                    let ChatChunk::Tokens(token) = chunk.data;
                    tokens.push(token);
                }
                Realtime::Run(update) => {
                    snapshots += 1;
                    coalesced += usize::from(update.coalesced);
                    let status = match &update.run {
                        Feed::Chat(run) => run.status,
                        Feed::Count(run) => run.status,
                    };
                    completed += usize::from(status == RunStatus::Completed);
                }
            }
        }
        assert_eq!(numbers[0], (0..20_000).collect::<Vec<_>>());
        assert_eq!(numbers[1], (0..15_000).collect::<Vec<_>>());
        assert_eq!(tokens, words("one two three"));
        // Chunks do not count against the window: the few run changes all arrive, none coalesced.
        assert!(snapshots >= 3, "{snapshots} snapshots");
        assert_eq!(coalesced, 0);
    }
}

on_every_backend! {
    async fn limits_refuse_a_chunk_and_write_nothing_of_it(backend: Backend) {
        let engine = backend.builder().await
            .task::<Fill>()
            .max_chunk_bytes(100)
            .max_stream_bytes(1_000)
            .build()
            .unwrap();
        let too_big = engine.trigger::<Fill>(101).await.unwrap();
        let fits = engine.trigger::<Fill>(100).await.unwrap();
        for handle in [&too_big, &fits] {
            finished(&engine, handle.id()).await;
        }
        let run = engine.retrieve::<Fill>(too_big.id()).await.unwrap();
        let (written, why) = run.output.unwrap();
        assert_eq!(written, 0);
        assert_eq!(
            why,
            "a chunk of 101 bytes of JSON is over the limit of 100 bytes"
        );
        assert!(run.realtime_streams.is_empty());

        let run = engine.retrieve::<Fill>(fits.id()).await.unwrap();
        let (written, why) = run.output.unwrap();
        // Each chunk counts its 100 bytes and 64 more: six fit in 1,000, a seventh would not.
        assert_eq!(written, 6);
        assert!(
            why.contains("would hold 1148 bytes of stream chunks (their JSON and 64 bytes each to keep them), over the limit of 1000"),
            "{why}"
        );
        let blobs = engine.read_stream(fits.id(), Fill::BLOBS).await.unwrap();
        assert_eq!(blobs.count().await, 6);
    }
}

on_every_backend! {
    async fn chunks_for_a_finished_run_or_reads_of_another_tasks_stream_are_refused(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<Keep>(()).await.unwrap();
        finished(&engine, handle.id()).await;
        let ctx = KEPT.lock().unwrap().take().unwrap();
        let error = ctx.stream(Keep::NUMBERS).append(&1).await.unwrap_err();
        assert!(matches!(error, StreamError::NotRunning(_)), "{error}");

        assert!(matches!(
            engine.read_stream(handle.id(), Count::NUMBERS).await,
            Err(FeedError::UnexpectedTask { .. })
        ));
        assert!(matches!(
            engine
                .read_stream(&RunId::from("run_nope"), Count::NUMBERS)
                .await,
            Err(FeedError::UnknownRun(_))
        ));
    }
}

on_every_backend! {
    async fn only_the_executing_attempt_writes_to_the_streams(backend: Backend) {
        let engine = engine(backend).await;
        let handle = engine.trigger::<RetryOnce>(()).await.unwrap();
        let numbers: Vec<u64> = engine
            .read_stream(handle.id(), RetryOnce::NUMBERS)
            .await
            .unwrap()
            .map_ok(|chunk| chunk.value)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(numbers, [2]);
        let run = engine.retrieve::<RetryOnce>(handle.id()).await.unwrap();
        let refused = run.output.unwrap();
        assert!(
            refused.contains("is not executing this attempt"),
            "{refused}"
        );
    }
}

on_every_backend! {
    async fn the_stream_of_a_failed_or_canceled_run_ends_cleanly(backend: Backend) {
        let engine = engine(backend).await;
        let failed = engine
            .trigger_with::<FailMidway>((), TriggerOptions::default().max_attempts(1))
            .await
            .unwrap();
        let numbers: Vec<u64> = engine
            .read_stream(failed.id(), FailMidway::NUMBERS)
            .await
            .unwrap()
            .map_ok(|chunk| chunk.value)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(numbers, [0, 1, 2]);
        let items: Vec<_> = engine
            .subscribe_to_run::<FailMidway>(failed.id())
            .await
            .unwrap()
            .with_streams()
            .try_collect()
            .await
            .unwrap();
        let Some(Realtime::Run(last)) = items.last() else {
            panic!("ends with the final snapshot")
        };
        assert_eq!(last.run.status, RunStatus::Failed);

        let waiting = engine.trigger::<Wait>(()).await.unwrap();
        let mut reader = engine
            .read_stream(waiting.id(), Wait::NUMBERS)
            .await
            .unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().value, 7);
        engine.cancel(waiting.id()).await.unwrap();
        let rest = tokio::time::timeout(Duration::from_secs(10), reader.next()).await;
        assert!(
            rest.unwrap().is_none(),
            "the stream ends after the cancellation"
        );
    }
}

on_every_backend! {
    async fn a_union_feed_types_chunks_per_task_and_never_as_another(backend: Backend) {
        let engine = engine(backend).await;
        let tagged = TriggerOptions::default().tag("mixed");
        let count = engine
            .trigger_with::<Count>(2, tagged.clone())
            .await
            .unwrap();
        let chat = engine
            .trigger_with::<Chat>(words("hi"), tagged.clone())
            .await
            .unwrap();
        for handle in [count.id(), chat.id()] {
            finished(&engine, handle).await;
        }
        // `Anything` lists only `Chat`: `Count`'s chunks and runs are its catch-all.
        let mut feed = engine
            .subscribe_to_runs_with_tag::<Anything>(["mixed"])
            .await
            .unwrap()
            .with_streams();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            match feed.next().await.unwrap().unwrap() {
                Realtime::Chunk(AnythingChunk::Chat(chunk)) => {
                    let ChatChunk::Tokens(token) = chunk.data;
                    seen.push(format!("chat {token}"));
                }
                Realtime::Chunk(AnythingChunk::Other(chunk)) => {
                    seen.push(format!("other {}", chunk.data.get()));
                }
                Realtime::Run(update) => {
                    seen.push(format!("run {}", RunInfo::task_identifier(&update.run)));
                }
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            ["chat hi", "other 0", "other 1", "run chat", "run count"]
        );

        // Without a catch-all, a chunk of an unlisted task is an error item; the feed goes on.
        let untyped = engine
            .subscribe(Scope::Run(count.id().clone()), Cursor::START)
            .await
            .unwrap()
            .with_streams()
            .union::<Chatty>();
        let items: Vec<_> = untyped.take(3).collect().await;
        for item in items {
            assert!(matches!(
                item,
                Err(FeedError::Decode(DecodeError::UnexpectedTask { .. }))
            ));
        }
    }
}

realtime_union! {
    enum Chatty {
        Chat,
    }
}

fn chat_snapshot(metadata: &str) -> AnyRun {
    serde_json::from_str(&format!(
        r#"{{"id":"run_1","taskIdentifier":"chat","payload":["w"],"status":"EXECUTING","metadata":{metadata},"createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}}"#
    ))
    .unwrap()
}

#[test]
fn metadata_written_by_another_program_that_does_not_match_is_an_error_item_naming_the_field() {
    // As a feed of another producer would deliver them.
    let snapshots = [r#"{"done":"half","total":2}"#, r#"{"done":1,"total":2}"#];
    let mut feed = futures::stream::iter(snapshots.map(|m| Ok::<_, DecodeError>(chat_snapshot(m))))
        .typed::<Chat>();
    let error = futures::executor::block_on(feed.next())
        .unwrap()
        .unwrap_err();
    let DecodeError::Field { field, source, .. } = &error else {
        panic!("expected a field error, got {error:?}")
    };
    assert_eq!(*field, RunField::Metadata);
    assert!(
        error
            .to_string()
            .starts_with("run `run_1` of task `chat`: metadata does not match"),
        "{error}"
    );
    assert!(
        source.to_string().contains("invalid type: string \"half\""),
        "{source}"
    );
    // The feed goes on: the next snapshot decodes.
    let run = futures::executor::block_on(feed.next()).unwrap().unwrap();
    assert_eq!(run.metadata, Some(Progress { done: 1, total: 2 }));
}

on_every_backend! {
    async fn a_batch_feed_with_streams_types_each_runs_chunks(backend: Backend) {
        let engine = engine(backend).await;
        let batch = engine
            .batch_trigger_mixed([
                runcast::BatchItem::new::<Count>(3, TriggerOptions::default()),
                runcast::BatchItem::new::<Chat>(words("x y"), TriggerOptions::default()),
            ])
            .await
            .unwrap();
        let mut feed = engine
            .subscribe_to_batch::<Feed>(&batch.id)
            .await
            .unwrap()
            .with_streams();
        let (mut numbers, mut tokens, mut completed) = (Vec::new(), Vec::new(), 0);
        while completed < 2 {
            match feed.next().await.unwrap().unwrap() {
                Realtime::Chunk(FeedChunk::Count(chunk)) => {
                    let CountChunk::Numbers(n) = chunk.data;
                    numbers.push(n);
                }
                Realtime::Chunk(FeedChunk::Chat(chunk)) => {
                    let ChatChunk::Tokens(token) = chunk.data;
                    tokens.push(token);
                }
                Realtime::Run(update) => {
                    completed += usize::from(update.run.status() == RunStatus::Completed);
                }
            }
        }
        assert_eq!(numbers, [0, 1, 2]);
        assert_eq!(tokens, words("x y"));
    }
}

#[tokio::test]
async fn a_chunk_that_its_readers_would_not_decode_as_the_tasks_stream_is_refused() {
    // Keys `#[task]` would never make: only its private constructor can.
    let ctx = TaskContext::<Chat>::new("run_1".into());
    let wrong_type = runcast::__private::stream_key::<Chat, u64>("tokens");
    let err = ctx.stream(wrong_type).append(&7).await.unwrap_err();
    assert!(matches!(err, StreamError::Serialize(_)), "{err}");
    let undeclared = runcast::__private::stream_key::<Chat, String>("rows");
    let err = ctx
        .stream(undeclared)
        .append(&"x".into())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "task `chat` declares no stream `rows`");
    ctx.stream(Chat::TOKENS).append(&"ok".into()).await.unwrap();
}

on_every_backend! {
    async fn stream_readers_and_feeds_with_streams_end_with_stopped_when_the_engine_shuts_down(backend: Backend) {
        let engine = engine(backend).await;
        let tagged = TriggerOptions::default().tag("live");
        // Executing when the engine shuts down: canceled, its stream ends cleanly.
        let waiting = engine
            .trigger_with::<Wait>((), tagged.clone())
            .await
            .unwrap();
        let mut reader = engine
            .read_stream(waiting.id(), Wait::NUMBERS)
            .await
            .unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().value, 7);
        // Never started: its stream ends early, and says so.
        let later = tagged.delay(Duration::from_secs(3600));
        let delayed = engine.trigger_with::<Wait>((), later).await.unwrap();
        let unstarted = engine
            .read_stream(delayed.id(), Wait::NUMBERS)
            .await
            .unwrap();
        let by_tag = engine
            .subscribe(Scope::Tags(vec!["live".into()]), Cursor::START)
            .await
            .unwrap()
            .with_streams();
        engine.shutdown(Duration::from_millis(10)).await;
        let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(10), reader.collect())
            .await
            .expect("the canceled run's stream ends");
        assert!(rest.is_empty(), "{rest:?}");
        let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(10), unstarted.collect())
            .await
            .expect("the unstarted run's stream ends");
        assert!(matches!(rest[..], [Err(FeedError::Stopped)]), "{rest:?}");
        let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), by_tag.collect())
            .await
            .expect("the tag feed ends");
        let (last, before) = items.split_last().unwrap();
        assert!(matches!(last, Err(FeedError::Stopped)), "{last:?}");
        let latest: Vec<_> = before
            .iter()
            .filter_map(|item| match item {
                Ok(Realtime::Run(update)) => Some((update.run.id.clone(), update.run.status)),
                _ => None,
            })
            .collect();
        // Each run's last change before the end: one cancel, and a delay that never ended.
        let last_of = |id: &RunId| latest.iter().rev().find(|(run, _)| run == id).map(|r| r.1);
        assert_eq!(
            last_of(waiting.id()),
            Some(RunStatus::Canceled),
            "{latest:?}"
        );
        assert_eq!(
            last_of(delayed.id()),
            Some(RunStatus::Delayed),
            "{latest:?}"
        );
        let canceled = latest
            .iter()
            .filter(|(_, status)| *status == RunStatus::Canceled);
        assert_eq!(canceled.count(), 1, "{latest:?}");
    }
}

on_every_backend! {
    async fn a_reader_stalled_past_the_retention_keeps_a_bounded_amount_of_chunks_and_is_told_of_the_rest(backend: Backend) {
        // Each run writes 1,000 numbers: about 40 KB kept. Room for about two runs' chunks once
        // their runs are forgotten, which happens 50 ms after they finish.
        let engine = backend.builder().await
            .task::<Count>()
            .retention(Duration::from_millis(50))
            .lagging_reader_bytes(100_000)
            .build()
            .unwrap();
        let tagged = TriggerOptions::default().tag("stalled");
        let first = engine
            .trigger_with::<Count>(1_000, tagged.clone())
            .await
            .unwrap();
        let mut stalled = engine
            .subscribe(Scope::Tags(vec!["stalled".into()]), first.cursor())
            .await
            .unwrap()
            .with_streams();
        let mut runs = vec![first];
        for _ in 1..10 {
            runs.push(
                engine
                    .trigger_with::<Count>(1_000, tagged.clone())
                    .await
                    .unwrap(),
            );
        }
        // Every run finishes and is forgotten before the reader reads anything. (Not `wait`
        // for each: a run forgotten before `wait` subscribes is unknown to it.)
        let forgotten = async {
            for run in &runs {
                while engine.latest(run.id()).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), forgotten)
            .await
            .expect("every run is forgotten after its retention");
        engine.shutdown(Duration::from_secs(10)).await;
        let items: Vec<_> = tokio::time::timeout(Duration::from_secs(30), stalled.by_ref().collect())
            .await
            .expect("the feed ends once the engine stopped");
        let dropped: Vec<RunId> = items
            .iter()
            .filter_map(|item| match item {
                Err(FeedError::ChunksDropped(run)) => Some(run.clone()),
                _ => None,
            })
            .collect();
        let mut chunks_of = std::collections::HashMap::<RunId, Vec<u64>>::new();
        for item in &items {
            if let Ok(Realtime::Chunk(chunk)) = item {
                let value = serde_json::from_str(chunk.data.get()).unwrap();
                chunks_of
                    .entry(chunk.run_id.clone())
                    .or_default()
                    .push(value);
            }
        }
        // Some runs' chunks were kept whole and in order, the others' were dropped and said so:
        // none in part.
        assert!(!dropped.is_empty() && !chunks_of.is_empty(), "{dropped:?}");
        let whole: Vec<u64> = (0..1_000).collect();
        for run in &runs {
            match chunks_of.get(run.id()) {
                Some(kept) => {
                    assert!(!dropped.contains(run.id()), "run {}", run.id());
                    assert_eq!(kept, &whole, "run {}", run.id());
                }
                None => assert!(dropped.contains(run.id()), "run {}", run.id()),
            }
        }
        // Every run's final snapshot still came, and the feed ended as the engine stopped.
        let completed = items.iter().filter(
            |item| matches!(item, Ok(Realtime::Run(u)) if u.run.status == RunStatus::Completed),
        );
        assert_eq!(completed.count(), runs.len());
        assert!(matches!(items.last(), Some(Err(FeedError::Stopped))));
    }
}
