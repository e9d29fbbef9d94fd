//! Typed decoding: the right type for the right task, and errors that say where and why.

mod common;

use common::{Media, MediaOrOther, ResizeImage, SendEmail, snapshot};
use runcast::{AnyRun, DecodeError, FromAnyRun, Run, RunField, RunInfo, RunStatus, RunUnion};

#[test]
fn union_decodes_each_run_as_its_own_task() {
    let resize = snapshot(
        "run_1",
        "resize-image",
        "COMPLETED",
        r#"{"url":"u","width":3}"#,
        Some(r#"{"url":"v","bytes":30}"#),
    );
    let email = snapshot("run_2", "send-email", "EXECUTING", r#"{"to":"a@b"}"#, None);
    match Media::from_json(&resize).unwrap() {
        Media::ResizeImage(run) => {
            assert_eq!(run.payload.width, 3);
            assert_eq!(run.output.unwrap().bytes, 30);
        }
        other => panic!("wrong variant: {other:?}"),
    }
    match Media::from_json(&email).unwrap() {
        Media::SendEmail(run) => {
            assert_eq!(run.payload.to, "a@b");
            assert_eq!(run.output, None);
        }
        other => panic!("wrong variant: {other:?}"),
    }
}

#[test]
fn union_from_json_and_from_any_agree() {
    let json = snapshot(
        "run_1",
        "send-email",
        "COMPLETED",
        r#"{"to":"x"}"#,
        Some("true"),
    );
    let any: AnyRun = serde_json::from_str(&json).unwrap();
    assert_eq!(
        Media::from_json(&json).unwrap(),
        Media::from_any_run(any).unwrap()
    );
}

#[test]
fn union_accessors_read_the_shared_fields() {
    let json = snapshot("run_7", "send-email", "CANCELED", r#"{"to":"x"}"#, None);
    let run = Media::from_json(&json).unwrap();
    assert_eq!(run.id().as_str(), "run_7");
    assert_eq!(run.task_identifier(), "send-email");
    assert_eq!(run.status(), RunStatus::Canceled);
    assert_eq!(run.tags(), ["user:1"]);
    assert_eq!(run.number(), 1);
    assert_eq!(run.updated_at().to_string(), "2024-11-01T12:00:01.500Z");
    assert!(run.error().is_none() && !run.is_test());
}

#[test]
fn a_run_of_an_unlisted_task_is_an_error_naming_it_and_the_expected_ones() {
    // Its payload would fit `SendEmail`: it must still not be decoded as one.
    let json = snapshot("run_3", "send-sms", "QUEUED", r#"{"to":"+1"}"#, None);
    let err = Media::from_json(&json).unwrap_err();
    match &err {
        DecodeError::UnexpectedTask {
            run_id,
            task_identifier,
            expected,
        } => {
            assert_eq!(run_id.as_str(), "run_3");
            assert_eq!(task_identifier, "send-sms");
            assert_eq!(*expected, ["resize-image", "send-email"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "run `run_3` is a run of task `send-sms`, which is not one of the expected tasks `resize-image`, `send-email`"
    );
}

#[test]
fn a_union_with_a_catch_all_keeps_unlisted_runs_untyped() {
    let json = snapshot("run_4", "send-email", "QUEUED", r#"{"to":"x"}"#, None);
    match MediaOrOther::from_json(&json).unwrap() {
        MediaOrOther::Other(run) => {
            assert_eq!(run.task_identifier, "send-email");
            assert_eq!(run.payload.unwrap().get(), r#"{"to":"x"}"#);
        }
        other => panic!("{other:?}"),
    }
    // A listed task still decodes typed, and a bad payload is still an error, not `Other`.
    let bad = snapshot("run_5", "resize-image", "QUEUED", r#"{"url":1}"#, None);
    assert!(matches!(
        MediaOrOther::from_json(&bad),
        Err(DecodeError::Field { .. })
    ));
}

#[test]
fn a_payload_of_the_wrong_shape_names_task_run_field_and_position() {
    let json = snapshot(
        "run_6",
        "resize-image",
        "QUEUED",
        r#"{"url":"u","width":"wide"}"#,
        None,
    );
    for err in [
        Media::from_json(&json).unwrap_err(),
        Run::<ResizeImage>::from_json(&json).unwrap_err(),
        serde_json::from_str::<AnyRun>(&json)
            .unwrap()
            .decode::<ResizeImage>()
            .unwrap_err(),
    ] {
        let DecodeError::Field {
            task_identifier,
            run_id,
            field,
            source,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            (task_identifier.as_str(), run_id.as_str(), *field),
            ("resize-image", "run_6", RunField::Payload)
        );
        assert_eq!((source.line(), source.column()), (1, 25));
        assert_eq!(
            err.to_string(),
            "run `run_6` of task `resize-image`: payload does not match its declared type: \
             invalid type: string \"wide\", expected u32 at line 1 column 25 (position within the payload)"
        );
    }
}

#[test]
fn an_output_or_metadata_of_the_wrong_shape_names_its_field() {
    let json = snapshot(
        "run_8",
        "send-email",
        "COMPLETED",
        r#"{"to":"x"}"#,
        Some(r#""yes""#),
    );
    let err = Run::<SendEmail>::from_json(&json).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Field {
                field: RunField::Output,
                ..
            }
        ),
        "{err}"
    );

    let json = snapshot("run_9", "send-email", "QUEUED", r#"{"to":"x"}"#, None)
        .replace(r#""number":1"#, r#""metadata":[1,2],"number":1"#);
    for err in [
        Run::<SendEmail>::from_json(&json).unwrap_err(),
        Media::from_json(&json).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                DecodeError::Field {
                    field: RunField::Metadata,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("metadata does not match"), "{err}");
    }
}

#[test]
fn a_missing_payload_decodes_only_into_a_type_that_accepts_null() {
    let json = r#"{"id":"run_1","taskIdentifier":"send-email","status":"QUEUED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
    let err = Run::<SendEmail>::from_json(json).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid type: null, expected struct Email"),
        "{err}"
    );
    let any: AnyRun = serde_json::from_str(json).unwrap();
    assert!(any.payload.is_none());
}

#[test]
fn typed_decode_rejects_a_run_of_another_task() {
    let json = snapshot("run_1", "send-email", "QUEUED", r#"{"to":"x"}"#, None);
    let err = Run::<ResizeImage>::from_json(&json).unwrap_err();
    assert!(
        matches!(
            &err,
            DecodeError::UnexpectedTask {
                expected: ["resize-image"],
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "run `run_1` is a run of task `send-email`, which is not the expected task `resize-image`"
    );
}

#[test]
fn malformed_envelopes_are_errors_not_panics() {
    for bad in [
        "",
        "{",
        "[]",
        r#"{"id":"run_1"}"#,
        r#"{"id":"run_1","taskIdentifier":7,"status":"QUEUED","createdAt":"2024-11-01T12:00:00Z","updatedAt":"2024-11-01T12:00:00Z"}"#,
        &snapshot("run_1", "send-email", "NOPE", "{}", None),
        &snapshot("run_1", "send-email", "QUEUED", "{", None),
    ] {
        assert!(
            matches!(Media::from_json(bad), Err(DecodeError::Malformed(_))),
            "{bad}"
        );
        assert!(
            matches!(
                Run::<SendEmail>::from_json(bad),
                Err(DecodeError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn an_escaped_task_identifier_still_dispatches() {
    let json = snapshot("run_1", "send-email", "QUEUED", r#"{"to":"x"}"#, None)
        .replace("send-email", r"send\u002demail");
    assert!(matches!(Media::from_json(&json), Ok(Media::SendEmail(_))));
}

#[test]
fn a_payload_with_its_own_task_identifier_key_does_not_fool_dispatch() {
    // The payload's key comes first in the text and names another task of the union...
    let json = r#"{"id":"run_1","payload":{"url":"u","width":2,"taskIdentifier":"send-email"},"taskIdentifier":"resize-image","status":"QUEUED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
    assert!(
        matches!(Media::from_json(json), Ok(Media::ResizeImage(run)) if run.payload.width == 2)
    );
    assert!(Run::<ResizeImage>::from_json(json).is_ok());
    // ...or a task outside it, which must not turn a listed task's run into the catch-all.
    let json = json.replace(
        r#""taskIdentifier":"send-email""#,
        r#""taskIdentifier":"nope""#,
    );
    assert!(matches!(
        MediaOrOther::from_json(&json),
        Ok(MediaOrOther::ResizeImage(_))
    ));
    // And the other way round: a listed name inside the payload of an unlisted task.
    let json = json
        .replace(
            r#""taskIdentifier":"nope""#,
            r#""taskIdentifier":"resize-image""#,
        )
        .replacen(
            r#""taskIdentifier":"resize-image","status""#,
            r#""taskIdentifier":"other","status""#,
            1,
        );
    assert!(
        matches!(MediaOrOther::from_json(&json), Ok(MediaOrOther::Other(run)) if run.task_identifier == "other")
    );
    let err = Media::from_json(&json).unwrap_err();
    assert!(
        matches!(&err, DecodeError::UnexpectedTask { run_id, task_identifier, .. } if run_id.as_str() == "run_1" && task_identifier == "other"),
        "{err:?}"
    );
}
