//! Writing a run as a row of the run feed, as Trigger.dev's server sends it.

use serde_json::{Map, Value};

use super::super::status::database_name;
use crate::model::{AnyRun, RunId, SerializedError, Timestamp};

/// The `electric-schema` of a run row: each column's Postgres type, as Trigger.dev's native
/// feed advertises them.
pub(crate) const SCHEMA: &str = concat!(
    r#"{"id":{"type":"text"},"taskIdentifier":{"type":"text"},"#,
    r#""createdAt":{"type":"timestamp"},"updatedAt":{"type":"timestamp"},"#,
    r#""startedAt":{"type":"timestamp"},"delayUntil":{"type":"timestamp"},"#,
    r#""queuedAt":{"type":"timestamp"},"expiredAt":{"type":"timestamp"},"#,
    r#""completedAt":{"type":"timestamp"},"friendlyId":{"type":"text"},"#,
    r#""number":{"type":"int4"},"isTest":{"type":"bool"},"status":{"type":"text"},"#,
    r#""usageDurationMs":{"type":"int4"},"costInCents":{"type":"float8"},"#,
    r#""baseCostInCents":{"type":"float8"},"ttl":{"type":"text"},"payload":{"type":"text"},"#,
    r#""payloadType":{"type":"text"},"metadata":{"type":"text"},"metadataType":{"type":"text"},"#,
    r#""output":{"type":"text"},"outputType":{"type":"text"},"runTags":{"type":"text","dims":1},"#,
    r#""error":{"type":"jsonb"},"realtimeStreams":{"type":"text","dims":1}}"#
);

/// Columns a client may not leave out (`skipColumns`): the SDK needs them to read a row.
pub(crate) const RESERVED: [&str; 5] =
    ["id", "taskIdentifier", "friendlyId", "status", "createdAt"];

/// The packet type of the JSON runcast keeps.
const JSON: &str = "application/json";

/// The key of a run's row, the same in every message about it.
pub(crate) fn key(id: &RunId) -> String {
    format!(r#""public"."TaskRun"/"{id}""#)
}

/// The row of `run`, without the columns in `skip` (reserved columns are always sent).
pub(crate) fn value(run: &AnyRun, skip: &[String]) -> Map<String, Value> {
    let text = |s: &str| Value::String(s.to_owned());
    let time = |t: Option<Timestamp>| t.map_or(Value::Null, |t| Value::String(timestamp(t)));
    let json = |raw: Option<&str>| raw.map_or(Value::Null, text);
    let packet_type = |present: bool| if present { text(JSON) } else { Value::Null };
    let payload = run.payload.as_deref().map(|raw| raw.get());
    let output = run.output.as_deref().map(|raw| raw.get());
    let metadata = run.metadata.as_deref().map(|raw| raw.get());
    let columns = [
        ("id", text(run.id.as_str())),
        ("taskIdentifier", text(&run.task_identifier)),
        ("createdAt", time(Some(run.created_at))),
        ("updatedAt", time(Some(run.updated_at))),
        ("startedAt", time(run.started_at)),
        ("delayUntil", time(run.delayed_until)),
        ("queuedAt", time(run.queued_at)),
        ("expiredAt", time(run.expired_at)),
        ("completedAt", time(run.finished_at)),
        ("friendlyId", text(run.id.as_str())),
        ("number", Value::String(run.number.to_string())),
        ("isTest", text(if run.is_test { "t" } else { "f" })),
        ("status", text(database_name(run.status))),
        (
            "usageDurationMs",
            Value::String(run.duration_ms.to_string()),
        ),
        ("costInCents", Value::String(run.cost_in_cents.to_string())),
        (
            "baseCostInCents",
            Value::String(run.base_cost_in_cents.to_string()),
        ),
        ("ttl", run.ttl.as_deref().map_or(Value::Null, text)),
        ("payload", json(payload)),
        ("payloadType", text(JSON)),
        ("metadata", json(metadata)),
        ("metadataType", packet_type(metadata.is_some())),
        ("output", json(output)),
        ("outputType", packet_type(output.is_some())),
        // Postgres has no default for `runTags`: a run without tags has none (null).
        (
            "runTags",
            if run.tags.is_empty() {
                Value::Null
            } else {
                text(&array(&run.tags))
            },
        ),
        (
            "error",
            run.error
                .as_ref()
                .map_or(Value::Null, |e| text(&task_run_error(e).to_string())),
        ),
        ("realtimeStreams", text(&array(&run.realtime_streams))),
    ];
    columns
        .into_iter()
        .filter(|(name, _)| RESERVED.contains(name) || !skip.iter().any(|s| s == name))
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// A timestamp as a `timestamp` column prints it: UTC, milliseconds, no zone.
pub(crate) fn timestamp(t: Timestamp) -> String {
    jiff::Timestamp::from(t)
        .strftime("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string()
}

/// A Postgres array literal of text: every element quoted, `"` and `\` escaped.
fn array(items: &[String]) -> String {
    let mut literal = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if matches!(c, '"' | '\\') {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

/// An error as Trigger.dev's `TaskRunError` (a built-in error), the only shape the SDK reads
/// from a row's `error` column.
pub(crate) fn task_run_error(error: &SerializedError) -> Value {
    serde_json::json!({
        "type": "BUILT_IN_ERROR",
        "name": error.name.as_deref().unwrap_or("Error"),
        "message": error.message,
        "stackTrace": error.stack_trace.as_deref().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_quote_and_escape_every_element() {
        assert_eq!(array(&[]), "{}");
        let tags = [
            "a".to_owned(),
            "b c".to_owned(),
            r#"q"\"#.to_owned(),
            "NULL".to_owned(),
        ];
        assert_eq!(array(&tags), r#"{"a","b c","q\"\\","NULL"}"#);
    }

    #[test]
    fn timestamps_have_milliseconds_and_no_zone() {
        let t = Timestamp::from_unix_millis(1_780_740_330_120).unwrap();
        assert_eq!(timestamp(t), "2026-06-06T10:05:30.120");
    }

    #[test]
    fn the_schema_names_every_column_a_row_sends() {
        let schema: Map<String, Value> = serde_json::from_str(SCHEMA).unwrap();
        let run: AnyRun = serde_json::from_value(serde_json::json!({
            "id": "run_1", "taskIdentifier": "t", "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z", "number": 1, "status": "QUEUED",
            "durationMs": 0, "costInCents": 0, "baseCostInCents": 0, "tags": [],
            "isTest": false
        }))
        .unwrap();
        let row = value(&run, &[]);
        let mut sent: Vec<&String> = row.keys().collect();
        let mut named: Vec<&String> = schema.keys().collect();
        sent.sort();
        named.sort();
        assert_eq!(sent, named);
        let skipped = value(&run, &["payload".into(), "id".into()]);
        assert!(!skipped.contains_key("payload"));
        assert!(
            skipped.contains_key("id"),
            "a reserved column is always sent"
        );
    }
}
