//! Typed metadata and exact values through the engine: what a task writes, typed or not, always
//! decodes for its subscribers; what would not is refused and changes nothing; numbers come
//! back bit for bit; deep metadata is refused where it enters, never wiped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail the test on bad fixtures.

use futures::TryStreamExt;
use runcast::prelude::*;
use runcast::{
    Engine, JsonObject, MAX_METADATA_DEPTH, MetadataError, MetadataOp, TriggerError, TriggerOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

mod common;
use common::backend::Backend;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Progress {
    done: u32,
    total: u32,
}

/// Reports progress typed, then tries writes whose result would not decode as `Progress`, and
/// returns what each of those gave.
#[task(id = "import", metadata = Progress)]
async fn import(total: u32, ctx: TaskContext) -> Result<Vec<String>, MetadataError> {
    ctx.set_metadata(&Progress { done: 0, total }).await?;
    for _ in 0..total {
        ctx.update_metadata_with(|p| p.done += 1).await?;
    }
    let mut refused = Vec::new();
    // One key of the two, and a key of the wrong type: neither decodes as `Progress`.
    let remove_total = [MetadataOp::Delete("total".into())];
    let wrong_type = [MetadataOp::Set("done".into(), "all".into())];
    for ops in [remove_total.to_vec(), wrong_type.to_vec()] {
        refused.push(ctx.update_metadata(ops).await.unwrap_err().to_string());
    }
    // Its own metadata reads back whole.
    assert_eq!(ctx.metadata().await?, Some(Progress { done: total, total }));
    Ok(refused)
}

#[task(id = "measure")]
async fn measure(value: f64) -> Result<f64, String> {
    Ok(value * 3.0)
}

async fn engine(backend: Backend) -> Engine {
    backend
        .builder()
        .await
        .task::<Import>()
        .task::<Measure>()
        .cost_per_ms_cents(0.1)
        .build()
        .unwrap()
}

on_every_backend! {
    async fn every_snapshot_a_subscriber_gets_decodes_as_the_declared_metadata(backend: Backend) {
        let engine = engine(backend).await;
        let run = engine.trigger::<Import>(50).await.unwrap();
        let updates = engine.subscribe_to_run(&run).await.unwrap();
        // Every item decodes: one failing would make this `Err`.
        let updates: Vec<_> = updates.try_collect().await.unwrap();
        let done: Vec<u32> = updates
            .iter()
            .filter_map(|u| u.run.metadata.as_ref().map(|p| p.done))
            .collect();
        // The initial write, each of 50 steps, and the final snapshot; the refused writes show
        // nothing.
        assert_eq!(done.len(), 1 + 50 + 1);
        assert!(done.windows(2).all(|w| w[0] <= w[1]));
        let last = updates.last().unwrap();
        assert_eq!(last.run.status, RunStatus::Completed);
        assert_eq!(
            last.run.metadata,
            Some(Progress {
                done: 50,
                total: 50
            })
        );
        let refused = last.run.output.as_ref().unwrap();
        assert_eq!(refused.len(), 2);
        for message in refused {
            assert!(
                message.contains("would not decode as the task's declared type"),
                "{message}"
            );
        }
        assert!(
            refused[0].contains("missing field `total`"),
            "{}",
            refused[0]
        );
    }
}

on_every_backend! {
    async fn writes_from_outside_or_at_trigger_that_would_not_decode_are_refused(backend: Backend) {
        let engine = engine(backend).await;
        let object =
            |value: serde_json::Value| -> JsonObject { serde_json::from_value(value).unwrap() };
        let err = engine
            .trigger_with::<Import>(
                1,
                TriggerOptions::default().metadata(object(json!({"done": 1}))),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TriggerError::Metadata(MetadataError::DoesNotMatch { .. })
            ),
            "{err}"
        );
        assert!(
            engine
                .list_runs(&runcast::RunQuery::new())
                .await
                .unwrap()
                .runs
                .is_empty()
        );

        let run = engine.trigger::<Import>(2).await.unwrap();
        let finished = engine.wait(&run).await.unwrap();
        let err = engine
            .update_metadata(run.id(), [MetadataOp::Increment("done".into(), 0.5)])
            .await
            .unwrap_err();
        assert!(matches!(err, MetadataError::DoesNotMatch { .. }), "{err}");
        assert_eq!(engine.retrieve::<Import>(run.id()).await.unwrap(), finished);
        engine
            .update_metadata(run.id(), [MetadataOp::Increment("done".into(), 1.0)])
            .await
            .unwrap();
        let changed = engine.retrieve::<Import>(run.id()).await.unwrap();
        assert_eq!(changed.metadata, Some(Progress { done: 3, total: 2 }));
    }
}

on_every_backend! {
    async fn floats_come_back_bit_for_bit_through_payload_output_metadata_and_cost(backend: Backend) {
        let engine = engine(backend).await;
        // JavaScript writes these; without exact float parsing some came back one unit off.
        let values = [
            9925.123456789473,
            0.1 + 0.2,
            1e-300,
            123456789.12345679,
            f64::MAX / 4.0,
        ];
        for value in values {
            let metadata: JsonObject = serde_json::from_value(json!({"value": value})).unwrap();
            let options = TriggerOptions::default().metadata(metadata);
            let run = engine
                .trigger_with::<Measure>(value, options)
                .await
                .unwrap();
            let done = engine.wait(&run).await.unwrap();
            assert_eq!(done.payload.to_bits(), value.to_bits());
            let output = done.output.unwrap();
            assert_eq!(output.to_bits(), (value * 3.0).to_bits(), "{value}");
            let stored = done.metadata.unwrap()["value"].as_f64().unwrap();
            assert_eq!(stored.to_bits(), value.to_bits());
            // The cost's text reads back as the same number.
            let text = serde_json::to_string(&engine.latest(run.id()).await.unwrap().run).unwrap();
            let again: runcast::AnyRun = serde_json::from_str(&text).unwrap();
            assert_eq!(again.cost_in_cents.to_bits(), done.cost_in_cents.to_bits());
        }
        let raw = r#"{"id":"run_1","taskIdentifier":"measure","payload":1,"status":"COMPLETED","costInCents":9925.123456789473,"createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
        let run: runcast::AnyRun = serde_json::from_str(raw).unwrap();
        assert_eq!(run.cost_in_cents.to_bits(), 9925.123456789473f64.to_bits());
        assert!(
            serde_json::to_string(&run)
                .unwrap()
                .contains("9925.123456789473")
        );
    }
}

on_every_backend! {
    async fn metadata_too_deep_is_refused_where_it_enters_and_what_was_there_stays(backend: Backend) {
        let engine = engine(backend).await;
        let nested = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!({ "a": value });
            }
            value
        };
        let deep: JsonObject = serde_json::from_value(json!({ "a": nested(200) })).unwrap();
        let err = engine
            .trigger_with::<Measure>(1.0, TriggerOptions::default().metadata(deep))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TriggerError::Metadata(MetadataError::TooDeep {
                    limit: MAX_METADATA_DEPTH
                })
            ),
            "{err}"
        );

        let kept: JsonObject = serde_json::from_value(json!({ "kept": nested(10) })).unwrap();
        let run = engine
            .trigger_with::<Measure>(1.0, TriggerOptions::default().metadata(kept.clone()))
            .await
            .unwrap();
        engine.wait(&run).await.unwrap();
        for depth in [MAX_METADATA_DEPTH, 127, 500] {
            let err = engine
                .update_metadata(run.id(), [MetadataOp::Set("deep".into(), nested(depth))])
                .await
                .unwrap_err();
            assert!(
                matches!(err, MetadataError::TooDeep { .. }),
                "{depth}: {err}"
            );
        }
        // The next update sees what was there, not "no metadata".
        engine
            .update_metadata(run.id(), [MetadataOp::Set("more".into(), 1.into())])
            .await
            .unwrap();
        let metadata = engine
            .retrieve::<Measure>(run.id())
            .await
            .unwrap()
            .metadata
            .unwrap();
        assert_eq!(metadata["kept"], kept["kept"]);
        assert_eq!(metadata["more"], 1);
        // The deepest accepted: the limit itself.
        engine
            .update_metadata(
                run.id(),
                [MetadataOp::Set(
                    "deep".into(),
                    nested(MAX_METADATA_DEPTH - 2),
                )],
            )
            .await
            .unwrap();
    }
}
