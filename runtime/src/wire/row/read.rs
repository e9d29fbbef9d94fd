//! Reading a row of a run feed as a run, as the official SDK reads it
//! (`transformRunShape`, `trigger-sdk-v4-wire.md` §6.2), from any server that speaks the
//! protocol: runcast's, Trigger.dev's native feed, or Electric.
//!
//! Each value is read in every form those servers send it: text as Postgres prints it (what
//! Electric sends), or the JSON value the schema would parse it into. Timestamps come without
//! a zone (UTC), booleans as `t`/`true`, arrays as Postgres array literals, payload and output
//! as packets with their types, statuses by their database names (or the public ones).
//! Columns it does not know are ignored.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::model::{AnyRun, RunId, RunStatus, SerializedError, Timestamp};
use crate::wire::packet::{self, PacketError};
use crate::wire::status::from_database_name;

/// Why a row cannot be read as a run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowError {
    #[error("a row is not a JSON object of columns: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("run `{run}`: the column `{column}` is null or missing, and every run has one")]
    Missing { run: String, column: &'static str },
    #[error("run `{run}`: the column `{column}` holds `{value}`, which is not {expected}")]
    Invalid {
        run: String,
        column: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("run `{run}`: its {column} cannot be read: {source}")]
    Packet {
        run: String,
        column: &'static str,
        #[source]
        source: PacketError,
    },
}

/// The columns of a row that make a run; others are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Columns<'a> {
    #[serde(borrow)]
    id: Option<Cell<'a>>,
    #[serde(borrow)]
    friendly_id: Option<Cell<'a>>,
    #[serde(borrow)]
    task_identifier: Option<Cell<'a>>,
    #[serde(borrow)]
    status: Option<Cell<'a>>,
    #[serde(borrow)]
    created_at: Option<Cell<'a>>,
    #[serde(borrow)]
    updated_at: Option<Cell<'a>>,
    #[serde(borrow)]
    started_at: Option<Cell<'a>>,
    #[serde(borrow)]
    delay_until: Option<Cell<'a>>,
    #[serde(borrow)]
    queued_at: Option<Cell<'a>>,
    #[serde(borrow)]
    expired_at: Option<Cell<'a>>,
    #[serde(borrow)]
    completed_at: Option<Cell<'a>>,
    #[serde(borrow)]
    number: Option<Cell<'a>>,
    #[serde(borrow)]
    is_test: Option<Cell<'a>>,
    #[serde(borrow)]
    usage_duration_ms: Option<Cell<'a>>,
    #[serde(borrow)]
    cost_in_cents: Option<Cell<'a>>,
    #[serde(borrow)]
    base_cost_in_cents: Option<Cell<'a>>,
    #[serde(borrow)]
    ttl: Option<Cell<'a>>,
    #[serde(borrow)]
    idempotency_key: Option<Cell<'a>>,
    #[serde(borrow)]
    payload: Option<Cell<'a>>,
    #[serde(borrow)]
    payload_type: Option<Cell<'a>>,
    #[serde(borrow)]
    output: Option<Cell<'a>>,
    #[serde(borrow)]
    output_type: Option<Cell<'a>>,
    #[serde(borrow)]
    metadata: Option<Cell<'a>>,
    #[serde(borrow)]
    metadata_type: Option<Cell<'a>>,
    #[serde(borrow)]
    run_tags: Option<Cell<'a>>,
    #[serde(borrow)]
    realtime_streams: Option<Cell<'a>>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// One value of a row: text (as Postgres prints it), or a JSON number, boolean or array (as a
/// schema-aware server may send it).
enum Cell<'a> {
    Text(Cow<'a, str>),
    Number(f64),
    Bool(bool),
    List(Vec<String>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CellVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for CellVisitor<'a> {
            type Value = Cell<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column value: text, a number, a boolean or an array of text")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cell<'a>, E> {
                Ok(Cell::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell<'a>, E> {
                Ok(Cell::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Cell<'a>, E> {
                Ok(Cell::Text(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell<'a>, E> {
                Ok(Cell::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell<'a>, E> {
                #[allow(clippy::cast_precision_loss)]
                Ok(Cell::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell<'a>, E> {
                #[allow(clippy::cast_precision_loss)]
                Ok(Cell::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell<'a>, E> {
                Ok(Cell::Number(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'a>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<Option<String>>()? {
                    items.push(item.unwrap_or_else(|| "NULL".to_owned()));
                }
                Ok(Cell::List(items))
            }
        }
        d.deserialize_any(CellVisitor(std::marker::PhantomData))
    }
}

impl Cell<'_> {
    /// The value as it was sent, for an error message.
    fn shown(&self) -> String {
        let text = match self {
            Cell::Text(text) => text.to_string(),
            Cell::Number(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::List(items) => format!("{items:?}"),
        };
        text.chars().take(64).collect()
    }

    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// Reads the row `json` (a message's `value`) as a run.
pub(crate) fn read(json: &str) -> Result<AnyRun, RowError> {
    let columns: Columns<'_> = serde_json::from_str(json).map_err(RowError::Malformed)?;
    columns.run()
}

impl Columns<'_> {
    fn run(self) -> Result<AnyRun, RowError> {
        // The public id is the friendly one (Trigger.dev's `id` column is internal).
        let id = match (self.friendly_id.as_ref(), self.id.as_ref()) {
            (Some(Cell::Text(id)), _) | (None, Some(Cell::Text(id))) => id.to_string(),
            _ => {
                return Err(RowError::Missing {
                    run: "?".to_owned(),
                    column: "friendlyId",
                });
            }
        };
        let reader = Reader { run: &id };
        let task_identifier = reader.text("taskIdentifier", self.task_identifier)?;
        let status = reader.required("status", self.status)?;
        let status = match status.text() {
            Some(name) => from_database_name(name).or_else(|| name.parse::<RunStatus>().ok()),
            None => None,
        }
        .ok_or_else(|| reader.invalid("status", &status, "a status Trigger.dev defines"))?;
        let created_at = reader.time("createdAt", self.created_at)?;
        let updated_at = reader.time("updatedAt", self.updated_at)?;
        let packet = |column, data: Option<Cell<'_>>, kind: Option<Cell<'_>>| {
            reader.packet(column, data, kind)
        };
        let metadata = match (&self.metadata, &self.metadata_type) {
            (Some(Cell::Text(_)), Some(Cell::Text(_))) => {
                packet("metadata", self.metadata, self.metadata_type)?
            }
            _ => None,
        };
        let run = AnyRun {
            id: RunId::from(id.clone()),
            task_identifier: Cow::Owned(task_identifier),
            payload: packet("payload", self.payload, self.payload_type)?,
            output: packet("output", self.output, self.output_type)?,
            created_at: created_at.ok_or_else(|| reader.missing("createdAt"))?,
            updated_at: updated_at.ok_or_else(|| reader.missing("updatedAt"))?,
            number: reader.count("number", self.number)?,
            status,
            duration_ms: reader.count("usageDurationMs", self.usage_duration_ms)?,
            cost_in_cents: reader.number("costInCents", self.cost_in_cents)?,
            base_cost_in_cents: reader.number("baseCostInCents", self.base_cost_in_cents)?,
            tags: reader.list("runTags", self.run_tags)?.into(),
            idempotency_key: reader.optional_text("idempotencyKey", self.idempotency_key)?,
            expired_at: reader.time("expiredAt", self.expired_at)?,
            ttl: reader.optional_text("ttl", self.ttl)?,
            finished_at: reader.time("completedAt", self.completed_at)?,
            started_at: reader.time("startedAt", self.started_at)?,
            delayed_until: reader.time("delayUntil", self.delay_until)?,
            queued_at: reader.time("queuedAt", self.queued_at)?,
            metadata,
            error: self.error.map(|raw| reader.error(raw)).transpose()?,
            is_test: reader.flag("isTest", self.is_test)?,
            realtime_streams: reader.list("realtimeStreams", self.realtime_streams)?,
        };
        Ok(run)
    }
}

/// Reads the columns of one run, naming it in its errors.
struct Reader<'r> {
    run: &'r str,
}

impl Reader<'_> {
    fn missing(&self, column: &'static str) -> RowError {
        RowError::Missing {
            run: self.run.to_owned(),
            column,
        }
    }

    fn invalid(&self, column: &'static str, cell: &Cell<'_>, expected: &'static str) -> RowError {
        RowError::Invalid {
            run: self.run.to_owned(),
            column,
            value: cell.shown(),
            expected,
        }
    }

    fn required<'a>(
        &self,
        column: &'static str,
        cell: Option<Cell<'a>>,
    ) -> Result<Cell<'a>, RowError> {
        cell.ok_or_else(|| self.missing(column))
    }

    fn text(&self, column: &'static str, cell: Option<Cell<'_>>) -> Result<String, RowError> {
        self.optional_text(column, cell)?
            .ok_or_else(|| self.missing(column))
    }

    fn optional_text(
        &self,
        column: &'static str,
        cell: Option<Cell<'_>>,
    ) -> Result<Option<String>, RowError> {
        match cell {
            None => Ok(None),
            Some(Cell::Text(text)) => Ok(Some(text.into_owned())),
            Some(other) => Err(self.invalid(column, &other, "text")),
        }
    }

    fn time(
        &self,
        column: &'static str,
        cell: Option<Cell<'_>>,
    ) -> Result<Option<Timestamp>, RowError> {
        match cell {
            None => Ok(None),
            Some(cell) => match cell.text().map(str::parse::<Timestamp>) {
                Some(Ok(time)) => Ok(Some(time)),
                _ => Err(self.invalid(column, &cell, "a timestamp")),
            },
        }
    }

    /// A number, 0 when null (as the SDK reads costs).
    fn number(&self, column: &'static str, cell: Option<Cell<'_>>) -> Result<f64, RowError> {
        match cell {
            None => Ok(0.0),
            Some(Cell::Number(n)) if n.is_finite() => Ok(n),
            Some(cell) => match cell.text().map(str::parse::<f64>) {
                Some(Ok(n)) if n.is_finite() => Ok(n),
                _ => Err(self.invalid(column, &cell, "a number")),
            },
        }
    }

    /// A whole number of at least 0, 0 when null.
    fn count(&self, column: &'static str, cell: Option<Cell<'_>>) -> Result<u64, RowError> {
        match cell {
            None => Ok(0),
            Some(Cell::Number(n)) if n >= 0.0 && n.fract() == 0.0 && n < 2f64.powi(64) =>
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(n as u64)
            }
            Some(cell) => match cell.text().map(str::parse::<u64>) {
                Some(Ok(n)) => Ok(n),
                _ => Err(self.invalid(column, &cell, "a whole number of at least 0")),
            },
        }
    }

    /// A boolean, false when null.
    fn flag(&self, column: &'static str, cell: Option<Cell<'_>>) -> Result<bool, RowError> {
        match cell {
            None => Ok(false),
            Some(Cell::Bool(b)) => Ok(b),
            Some(cell) => match cell.text() {
                Some("t" | "true") => Ok(true),
                Some("f" | "false") => Ok(false),
                _ => Err(self.invalid(column, &cell, "a boolean (`t` or `f`)")),
            },
        }
    }

    /// An array of text, empty when null.
    fn list(&self, column: &'static str, cell: Option<Cell<'_>>) -> Result<Vec<String>, RowError> {
        match cell {
            None => Ok(Vec::new()),
            Some(Cell::List(items)) => Ok(items),
            Some(cell) => match cell.text().and_then(array) {
                Some(items) => Ok(items),
                None => Err(self.invalid(column, &cell, "an array of text")),
            },
        }
    }

    /// A packet's JSON, `None` when its type is null (as the SDK reads payload and output).
    fn packet(
        &self,
        column: &'static str,
        data: Option<Cell<'_>>,
        kind: Option<Cell<'_>>,
    ) -> Result<Option<Arc<RawValue>>, RowError> {
        let Some(kind) = kind else {
            return Ok(None);
        };
        let kind = match kind {
            Cell::Text(kind) => kind,
            other => return Err(self.invalid(column, &other, "text")),
        };
        let data = match data {
            None => None,
            Some(Cell::Text(data)) => Some(data),
            Some(other) => return Err(self.invalid(column, &other, "text")),
        };
        let raw = packet::payload_of(data, Some(&kind)).map_err(|source| RowError::Packet {
            run: self.run.to_owned(),
            column,
            source,
        })?;
        Ok(Some(Arc::from(raw)))
    }

    /// The `error` column: a `TaskRunError`, as JSON or as its text, read as the SDK's
    /// `createJsonErrorObject` reads it.
    fn error(&self, raw: &RawValue) -> Result<SerializedError, RowError> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
        #[allow(clippy::enum_variant_names)] // Trigger.dev's names.
        enum TaskRunError {
            #[serde(rename_all = "camelCase")]
            BuiltInError {
                name: Option<String>,
                message: Option<String>,
                stack_trace: Option<String>,
            },
            StringError {
                raw: String,
            },
            CustomError {
                raw: String,
            },
            InternalError {
                code: String,
            },
        }
        let text: Cow<'_, str> = match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
            Ok(text) => text,
            Err(_) => Cow::Borrowed(raw.get()),
        };
        let error: TaskRunError = serde_json::from_str(&text).map_err(|_| RowError::Invalid {
            run: self.run.to_owned(),
            column: "error",
            value: text.chars().take(64).collect(),
            expected: "a TaskRunError",
        })?;
        Ok(match error {
            TaskRunError::BuiltInError {
                name,
                message,
                stack_trace,
            } => SerializedError {
                message: message.unwrap_or_default(),
                name,
                stack_trace: stack_trace.filter(|s| !s.is_empty()),
            },
            TaskRunError::StringError { raw } | TaskRunError::CustomError { raw } => {
                SerializedError {
                    message: raw,
                    name: None,
                    stack_trace: None,
                }
            }
            TaskRunError::InternalError { code } => SerializedError {
                message: format!("trigger.dev internal error ({code})"),
                name: None,
                stack_trace: None,
            },
        })
    }
}

/// The elements of a one-dimensional Postgres array literal (`{a,"b c",NULL}`); `None` if it
/// is not one. An unquoted `NULL` element is kept as the text `NULL`.
fn array(literal: &str) -> Option<Vec<String>> {
    let inner = literal.strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if matches!(c, '"' | '{' | '}' | '\\') {
                    return None;
                }
                item.push(c);
                chars.next();
            }
            if item.is_empty() {
                return None;
            }
        }
        items.push(item);
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panicking(json in ".{0,200}") {
            let _ = read(&json);
        }

        #[test]
        fn any_array_literal_is_read_or_refused_without_panicking(literal in r#"\{[a-z",\\ {}]{0,30}\}"#) {
            let _ = array(&literal);
        }
    }

    #[test]
    fn arrays_read_quoted_unquoted_and_escaped_elements() {
        assert_eq!(array("{}"), Some(vec![]));
        assert_eq!(
            array(r#"{a,"b c","q\"\\",NULL}"#),
            Some(vec![
                "a".into(),
                "b c".into(),
                r#"q"\"#.into(),
                "NULL".into()
            ])
        );
        for bad in ["", "a", "{", "{a,}", r#"{"a}"#, "{a b\"}", "{,}"] {
            assert_eq!(array(bad), None, "{bad:?}");
        }
    }
}
