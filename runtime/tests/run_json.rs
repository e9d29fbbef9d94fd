//! The run object's JSON: every field of the public run object, camelCase, ISO-8601 times,
//! round-tripping what the TypeScript SDK produces.

mod common;

use common::{ResizeImage, SendEmail};
use runcast::{AnyRun, BatchId, Run, RunId, RunStatus, SerializedError, Timestamp};
use serde_json::{Value, json};

/// Every field of the public run object, as `JSON.stringify` writes a run from the SDK.
fn full_fixture() -> Value {
    json!({
        "id": "run_cm3xk2b1a0001",
        "taskIdentifier": "resize-image",
        "payload": { "url": "https://img.example/cat.png", "width": 640 },
        "output": { "url": "https://img.example/cat-640.png", "bytes": 6400 },
        "createdAt": "2024-11-01T12:34:56.789Z",
        "updatedAt": "2024-11-01T12:35:01.002Z",
        "number": 42,
        "status": "COMPLETED",
        "durationMs": 4213,
        "costInCents": 0.25,
        "baseCostInCents": 0.5,
        "tags": ["user:1", "org:acme"],
        "idempotencyKey": "resize-cat-640",
        "expiredAt": "2024-11-01T13:34:56.789Z",
        "ttl": "1h",
        "finishedAt": "2024-11-01T12:35:01.002Z",
        "startedAt": "2024-11-01T12:34:56.900Z",
        "delayedUntil": "2024-11-01T12:34:56.800Z",
        "queuedAt": "2024-11-01T12:34:56.790Z",
        "metadata": { "progress": 1.0, "stage": "done", "steps": [1, 2, 3] },
        "error": { "message": "first attempt failed", "name": "Error", "stackTrace": "at resize (resize.ts:1)" },
        "isTest": true,
        "realtimeStreams": ["progress", "log"]
    })
}

/// Only the fields the SDK always sets; every optional one missing.
fn minimal_fixture() -> Value {
    json!({
        "id": "run_min",
        "taskIdentifier": "send-email",
        "payload": { "to": "a@example.com" },
        "createdAt": "2024-11-01T12:34:56.000Z",
        "updatedAt": "2024-11-01T12:34:56.000Z",
        "number": 1,
        "status": "QUEUED",
        "durationMs": 0,
        "costInCents": 0,
        "baseCostInCents": 0,
        "tags": [],
        "isTest": false,
        "realtimeStreams": []
    })
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(
    fixture: &Value,
) -> serde_json::Result<Value> {
    let run: T = serde_json::from_str(&fixture.to_string())?;
    serde_json::to_value(&run)
}

#[test]
fn full_run_round_trips_unchanged_untyped_and_typed() {
    let fixture = full_fixture();
    assert_eq!(round_trip::<AnyRun>(&fixture).unwrap(), fixture);
    assert_eq!(round_trip::<Run<ResizeImage>>(&fixture).unwrap(), fixture);
}

#[test]
fn minimal_run_round_trips_unchanged_untyped_and_typed() {
    let fixture = minimal_fixture();
    assert_eq!(round_trip::<AnyRun>(&fixture).unwrap(), fixture);
    assert_eq!(round_trip::<Run<SendEmail>>(&fixture).unwrap(), fixture);
}

#[test]
fn typed_fields_hold_what_the_json_says() {
    let run = Run::<ResizeImage>::from_json(&full_fixture().to_string()).unwrap();
    assert_eq!(run.id, RunId::from("run_cm3xk2b1a0001"));
    assert_eq!(run.task_identifier, "resize-image");
    assert_eq!(run.payload.width, 640);
    assert_eq!(run.output.as_ref().map(|o| o.bytes), Some(6400));
    assert_eq!(
        run.created_at,
        "2024-11-01T12:34:56.789Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(run.created_at.unix_millis(), 1_730_464_496_789);
    assert_eq!(run.number, 42);
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.duration_ms, 4213);
    assert_eq!(run.cost_in_cents, 0.25);
    assert_eq!(run.base_cost_in_cents, 0.5);
    assert_eq!(*run.tags, ["user:1", "org:acme"]);
    assert_eq!(run.idempotency_key.as_deref(), Some("resize-cat-640"));
    assert_eq!(run.ttl.as_deref(), Some("1h"));
    assert!(run.expired_at.is_some() && run.finished_at.is_some());
    assert!(run.started_at.is_some() && run.delayed_until.is_some() && run.queued_at.is_some());
    assert_eq!(run.metadata.as_ref().unwrap()["stage"], "done");
    assert_eq!(
        run.error,
        Some(SerializedError {
            message: "first attempt failed".into(),
            name: Some("Error".into()),
            stack_trace: Some("at resize (resize.ts:1)".into()),
        })
    );
    assert!(run.is_test);
}

#[test]
fn nulls_read_as_missing_and_are_written_as_missing() {
    let mut with_nulls = minimal_fixture();
    for key in [
        "output",
        "idempotencyKey",
        "expiredAt",
        "ttl",
        "finishedAt",
        "startedAt",
        "delayedUntil",
        "queuedAt",
        "metadata",
        "error",
    ] {
        with_nulls[key] = Value::Null;
    }
    let run: AnyRun = serde_json::from_value(with_nulls.clone()).unwrap();
    assert!(run.output.is_none() && run.metadata.is_none() && run.error.is_none());
    assert!(run.expired_at.is_none() && run.finished_at.is_none() && run.ttl.is_none());
    // The SDK never writes `null` for these: it leaves them out, and so does runcast.
    assert_eq!(serde_json::to_value(&run).unwrap(), minimal_fixture());
    let typed = Run::<SendEmail>::from_json(&with_nulls.to_string()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), minimal_fixture());
}

#[test]
fn defaulted_fields_may_be_missing() {
    let mut sparse = minimal_fixture();
    let object = sparse.as_object_mut().unwrap();
    for key in [
        "number",
        "durationMs",
        "costInCents",
        "baseCostInCents",
        "tags",
        "isTest",
    ] {
        object.remove(key);
    }
    let run: AnyRun = serde_json::from_value(sparse).unwrap();
    assert_eq!((run.number, run.duration_ms, run.is_test), (0, 0, false));
    assert!(run.tags.is_empty());
}

#[test]
fn fields_the_model_does_not_know_are_ignored() {
    // The SDK's boolean helpers, and fields a newer producer may add.
    let mut fixture = minimal_fixture();
    fixture["isQueued"] = json!(true);
    fixture["isCompleted"] = json!(false);
    fixture["someFutureField"] = json!({"a": 1});
    let run: AnyRun = serde_json::from_value(fixture).unwrap();
    assert_eq!(serde_json::to_value(&run).unwrap(), minimal_fixture());
}

#[test]
fn untyped_payload_keeps_its_exact_text() {
    let text = r#"{"id":"run_1","taskIdentifier":"x","payload":{"big":12345678901234567890123,"f":1.0},"status":"QUEUED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
    let run: AnyRun = serde_json::from_str(text).unwrap();
    assert_eq!(
        run.payload.as_ref().unwrap().get(),
        r#"{"big":12345678901234567890123,"f":1.0}"#
    );
    assert!(
        serde_json::to_string(&run)
            .unwrap()
            .contains(r#""payload":{"big":12345678901234567890123,"f":1.0}"#)
    );
}

#[test]
fn serde_deserialize_of_a_typed_run_rejects_another_task() {
    // Payload and output fit `SendEmail`'s types: only the identifier tells them apart.
    let mut fixture = minimal_fixture();
    fixture["taskIdentifier"] = json!("send-sms");
    let err = serde_json::from_value::<Run<SendEmail>>(fixture).unwrap_err();
    assert!(
        err.to_string()
            .contains("this is a run of task `send-sms`, not of task `send-email`"),
        "{err}"
    );
}

#[test]
fn malformed_timestamps_and_statuses_are_rejected_with_the_value() {
    let mut bad_time = minimal_fixture();
    bad_time["createdAt"] = json!("2024-13-01T00:00:00Z");
    let err = serde_json::from_value::<AnyRun>(bad_time).unwrap_err();
    assert!(err.to_string().contains("2024-13-01T00:00:00Z"), "{err}");

    let mut bad_status = minimal_fixture();
    bad_status["status"] = json!("DEQUEUED");
    let err = serde_json::from_value::<AnyRun>(bad_status).unwrap_err();
    assert!(err.to_string().contains("DEQUEUED"), "{err}");
}

#[test]
fn postgres_style_timestamps_are_read_as_utc_and_written_as_iso() {
    let mut fixture = minimal_fixture();
    fixture["createdAt"] = json!("2024-11-01 12:34:56.78");
    let run: AnyRun = serde_json::from_value(fixture).unwrap();
    assert_eq!(run.created_at.to_string(), "2024-11-01T12:34:56.780Z");
}

#[test]
fn ids_are_newtypes_that_serialize_as_strings() {
    let run = RunId::from("run_1");
    let batch = BatchId::from("batch_1".to_owned());
    assert_eq!(serde_json::to_string(&run).unwrap(), r#""run_1""#);
    assert_eq!(
        serde_json::from_str::<BatchId>(r#""batch_1""#).unwrap(),
        batch
    );
    assert_eq!(run, "run_1");
    assert_eq!(format!("{run} {batch:?}"), r#"run_1 BatchId("batch_1")"#);
}

#[test]
fn an_untyped_run_without_payload_is_written_without_payload() {
    let mut fixture = minimal_fixture();
    fixture.as_object_mut().unwrap().remove("payload");
    assert_eq!(round_trip::<AnyRun>(&fixture).unwrap(), fixture);
}
