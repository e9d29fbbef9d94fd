//! A run's metadata: the operations that change it, and the limits of what it may hold.

mod path;

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::error::StoreError;
use super::ids::RunId;
use super::run::JsonObject;
use path::Place;
#[cfg(feature = "client")]
pub(crate) use path::path_of;

/// The largest metadata object a run may hold, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 256 * 1024;

/// The deepest a run's metadata may nest: an object holding an array holding an object is 3
/// levels deep. Deeper metadata is refused where it enters (a trigger, an update), so that every
/// reader (serde's parsers stop at 128 levels) reads back what was written.
pub const MAX_METADATA_DEPTH: usize = 64;

/// One change of a run's metadata object; [`apply`](MetadataOp::apply) describes each.
///
/// A key is a top-level key of the object, unless it starts with `$.`: then it is a path to a
/// value inside it, as in Trigger.dev's SDK. After `$.` come segments separated by `.`; each
/// names a key of an object, or an element of an array when it is a whole number (`0`, `12`);
/// `\.` is a dot within a segment and `\\` a backslash. `$.order.lines.0.done` is the `done`
/// key of the first element of the `lines` array of the `order` object. The containers on the
/// way must exist (a change that needs one that does not is refused with
/// [`MetadataError::PathNotFound`]; a [`Delete`](MetadataOp::Delete) or
/// [`Remove`](MetadataOp::Remove) then changes nothing); the last segment may name a new key,
/// or the element one past an array's end, which appends. Wildcards (`*`) and slices are
/// refused ([`MetadataError::BadPath`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetadataOp {
    /// Sets `key` to `value`.
    Set(String, Value),
    /// Removes `key` (an element of an array: the later ones move up).
    Delete(String),
    /// Appends `value` to the array at `key` (an absent key becomes `[value]`; another value
    /// becomes `[old, value]`).
    Append(String, Value),
    /// Removes every element equal to `value` from the array at `key`.
    Remove(String, Value),
    /// Adds a number to the number at `key` (absent or `null` counts as 0); a negative one
    /// decrements.
    Increment(String, f64),
    /// Sets every key of the object, keeping the others (a shallow merge; the keys are
    /// top-level keys, never paths).
    Update(JsonObject),
    /// Replaces the whole object (Trigger.dev's `metadata.replace`, its wire operation
    /// `update`).
    Replace(JsonObject),
}

/// Why metadata could not be changed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The metadata would exceed [`MAX_METADATA_BYTES`].
    #[error("metadata of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size as JSON after the change.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The metadata would nest deeper than [`MAX_METADATA_DEPTH`].
    #[error("metadata nests deeper than the limit of {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A value given as a run's whole metadata is not a JSON object.
    #[error("a run's metadata is a JSON object; this value is {found}")]
    NotAnObject {
        /// What it is: `an array`, `a string`, ...
        found: &'static str,
    },
    /// `increment` of a key that holds something other than a number or `null`.
    #[error("cannot increment `{key}`: it holds {found}, not a number")]
    NotANumber {
        /// The key.
        key: String,
        /// What it holds, as JSON.
        found: String,
    },
    /// A `$.` key that is not a path runcast can follow (see [`MetadataOp`]).
    #[error("metadata key `{key}` is not a path runcast can follow: {reason}")]
    BadPath {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A `$.` key whose way leads through a value that is missing, or that is neither an
    /// object nor an array.
    #[error("metadata key `{key}`: there is no object or array at `{at}` to hold it")]
    PathNotFound {
        /// The key.
        key: String,
        /// The part of the path that leads to nothing that can hold the rest.
        at: String,
    },
    /// A `$.` key whose last segment is an index more than one past the end of an array.
    #[error(
        "metadata key `{key}`: the array at `{at}` holds {len}, so an index there may be at most {len} (which appends)"
    )]
    PastTheEnd {
        /// The key.
        key: String,
        /// The path of the array.
        at: String,
        /// How many elements the array holds.
        len: usize,
    },
    /// An increment that leaves a number JSON cannot hold (infinite or NaN).
    #[error("cannot increment `{key}`: the result is not a finite number")]
    NotFinite {
        /// The key.
        key: String,
    },
    /// The result would not decode as the metadata type the run's task declares
    /// (`#[task(metadata = M)]`), so its subscribers could not read it.
    #[error(
        "the metadata of a run of task `{task}` would not decode as the task's declared type: {source}"
    )]
    DoesNotMatch {
        /// The run's task.
        task: String,
        /// Why it would not decode.
        #[source]
        source: serde_json::Error,
    },
    /// The metadata the run holds is not a JSON object runcast can read (written by another
    /// program): operations cannot apply to it.
    #[error("the run's metadata is not a JSON object runcast can read: {0}")]
    Unreadable(#[source] serde_json::Error),
    /// The metadata could not be serialized as JSON.
    #[error("the metadata could not be serialized as JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// No run has this id.
    #[error("no run `{0}`")]
    UnknownRun(RunId),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MetadataError {
    /// The error for metadata of a run of `task` that would not decode as its declared type.
    pub(crate) fn does_not_match(task: &str, source: serde_json::Error) -> Self {
        MetadataError::DoesNotMatch {
            task: task.to_owned(),
            source,
        }
    }
}

impl MetadataOp {
    /// Subtracts a number from the number at `key` (absent or `null` counts as 0).
    pub fn decrement(key: impl Into<String>, by: f64) -> Self {
        MetadataOp::Increment(key.into(), -by)
    }

    /// Applies the change to `metadata`.
    pub fn apply(self, metadata: &mut JsonObject) -> Result<(), MetadataError> {
        match self {
            MetadataOp::Set(key, value) => Place::of(metadata, &key)?.put(value),
            MetadataOp::Delete(key) => match Place::of(metadata, &key) {
                Ok(place) => place.remove(),
                Err(MetadataError::PathNotFound { .. } | MetadataError::PastTheEnd { .. }) => {}
                Err(error) => return Err(error),
            },
            MetadataOp::Append(key, value) => {
                let mut place = Place::of(metadata, &key)?;
                match place.get_mut() {
                    Some(Value::Array(items)) => items.push(value),
                    Some(old) => *old = Value::Array(vec![old.take(), value]),
                    None => place.put(Value::Array(vec![value])),
                }
            }
            MetadataOp::Remove(key, value) => match Place::of(metadata, &key) {
                Ok(mut place) => {
                    if let Some(Value::Array(items)) = place.get_mut() {
                        items.retain(|item| *item != value);
                    }
                }
                Err(MetadataError::PathNotFound { .. } | MetadataError::PastTheEnd { .. }) => {}
                Err(error) => return Err(error),
            },
            MetadataOp::Increment(key, by) => {
                let mut place = Place::of(metadata, &key)?;
                let current = match place.get_mut() {
                    None | Some(Value::Null) => 0.0,
                    Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                    Some(other) => {
                        return Err(MetadataError::NotANumber {
                            key: key.clone(),
                            found: other.to_string(),
                        });
                    }
                };
                let sum = current + by;
                let number = whole_number(sum)
                    .or_else(|| Number::from_f64(sum))
                    .ok_or_else(|| MetadataError::NotFinite { key: key.clone() })?;
                place.put(Value::Number(number));
            }
            MetadataOp::Update(object) => metadata.extend(object),
            MetadataOp::Replace(object) => *metadata = object,
        }
        Ok(())
    }
}

/// `n` as an integer when it is one, so `1 + 1` is `2`, not `2.0`, as in JavaScript.
fn whole_number(n: f64) -> Option<Number> {
    super::run::js_integer(n).map(Number::from)
}

/// Applies `ops` to a copy of `metadata`, within the limits: the new metadata and its JSON, or
/// an error and no change at all.
pub(crate) fn apply(
    metadata: Option<&JsonObject>,
    ops: Vec<MetadataOp>,
) -> Result<(JsonObject, Arc<RawValue>), MetadataError> {
    let mut next = metadata.cloned().unwrap_or_else(Map::new);
    for op in ops {
        op.apply(&mut next)?;
    }
    let raw = to_raw(&next)?;
    Ok((next, raw))
}

/// Applies `ops` to a run's raw metadata: the new raw metadata, or an error and no change.
pub(crate) fn apply_raw(
    metadata: Option<&RawValue>,
    ops: Vec<MetadataOp>,
) -> Result<Arc<RawValue>, MetadataError> {
    let (_, raw) = apply(read(metadata)?.as_ref(), ops)?;
    Ok(raw)
}

/// The metadata as the raw JSON a run holds, within the size and depth limits.
pub(crate) fn to_raw(metadata: &JsonObject) -> Result<Arc<RawValue>, MetadataError> {
    if object_depth(metadata) > MAX_METADATA_DEPTH {
        return Err(MetadataError::TooDeep {
            limit: MAX_METADATA_DEPTH,
        });
    }
    let raw = serde_json::value::to_raw_value(metadata).map_err(MetadataError::Serialize)?;
    let size = raw.get().len();
    if size > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge {
            size,
            limit: MAX_METADATA_BYTES,
        });
    }
    Ok(Arc::from(raw))
}

/// A typed value as a run's whole metadata: a JSON object within the limits.
pub(crate) fn typed_to_raw<M: Serialize>(metadata: &M) -> Result<Arc<RawValue>, MetadataError> {
    match serde_json::to_value(metadata).map_err(MetadataError::Serialize)? {
        Value::Object(object) => to_raw(&object),
        other => Err(MetadataError::NotAnObject {
            found: kind(&other),
        }),
    }
}

/// A run's raw metadata as an object: `None` if it has none, an error (never `None`) if it
/// holds something else.
pub(crate) fn read(metadata: Option<&RawValue>) -> Result<Option<JsonObject>, MetadataError> {
    metadata
        .map(|raw| serde_json::from_str(raw.get()).map_err(MetadataError::Unreadable))
        .transpose()
}

/// How deep an object nests: 1 for `{}` or `{"a": 1}`, 2 for `{"a": []}`, ...
fn object_depth(object: &JsonObject) -> usize {
    // Iterative: the values checked here may nest deeper than the stack allows recursion. Only
    // containers are kept to visit, so a flat object allocates nothing.
    fn nested<'a>(
        values: impl Iterator<Item = &'a Value>,
        depth: usize,
        into: &mut Vec<(&'a Value, usize)>,
    ) {
        into.extend(
            values
                .filter(|v| matches!(v, Value::Object(_) | Value::Array(_)))
                .map(|v| (v, depth)),
        );
    }
    let mut deepest = 1;
    let mut pending = Vec::new();
    nested(object.values(), 2, &mut pending);
    while let Some((value, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Object(object) => nested(object.values(), depth + 1, &mut pending),
            Value::Array(items) => nested(items.iter(), depth + 1, &mut pending),
            _ => {}
        }
    }
    deepest
}

/// What a JSON value is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(ops: Vec<MetadataOp>) -> Result<Value, MetadataError> {
        let start = json!({"progress": 0.5, "log": ["a"], "n": 1, "s": "x"});
        let Value::Object(start) = start else {
            unreachable!()
        };
        apply(Some(&start), ops).map(|(next, _)| Value::Object(next))
    }

    #[test]
    fn each_operation_changes_what_it_says() {
        use MetadataOp::*;
        assert_eq!(
            run(vec![Set("progress".into(), json!(1))]).unwrap()["progress"],
            1
        );
        assert!(run(vec![Delete("s".into())]).unwrap().get("s").is_none());
        assert_eq!(
            run(vec![Append("log".into(), json!("b"))]).unwrap()["log"],
            json!(["a", "b"])
        );
        assert_eq!(
            run(vec![Append("new".into(), json!(1))]).unwrap()["new"],
            json!([1])
        );
        assert_eq!(
            run(vec![Append("s".into(), json!("y"))]).unwrap()["s"],
            json!(["x", "y"])
        );
        assert_eq!(
            run(vec![Remove("log".into(), json!("a"))]).unwrap()["log"],
            json!([])
        );
        assert_eq!(
            run(vec![Increment("n".into(), 2.0)]).unwrap()["n"],
            json!(3)
        );
        assert_eq!(
            run(vec![Increment("m".into(), -1.5)]).unwrap()["m"],
            json!(-1.5)
        );
        let merged = run(vec![Update(
            json!({"s": "z", "t": true}).as_object().unwrap().clone(),
        )]);
        assert_eq!(
            merged.unwrap(),
            json!({"progress": 0.5, "log": ["a"], "n": 1, "s": "z", "t": true})
        );
    }

    /// `ops` applied to `start`: the result, or the error's message.
    fn applied(start: Value, ops: Vec<MetadataOp>) -> Result<Value, String> {
        let Value::Object(start) = start else {
            unreachable!()
        };
        apply(Some(&start), ops)
            .map(|(next, _)| Value::Object(next))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn keys_starting_with_a_dollar_and_a_dot_reach_inside_objects_and_arrays() {
        use MetadataOp::*;
        let start = json!({"order": {"lines": [{"done": false}, {"done": false}], "n": 1}});
        let key = |k: &str| k.to_owned();
        let cases = [
            (
                Set(key("$.order.lines.1.done"), json!(true)),
                "/order/lines/1/done",
                json!(true),
            ),
            (
                Set(key("$.order.note"), json!("x")),
                "/order/note",
                json!("x"),
            ),
            (
                Set(key("$.order.lines.2"), json!(3)),
                "/order/lines/2",
                json!(3),
            ),
            (Increment(key("$.order.n"), 2.0), "/order/n", json!(3)),
            (Increment(key("$.order.m"), 1.5), "/order/m", json!(1.5)),
            (
                Append(key("$.order.log"), json!("a")),
                "/order/log",
                json!(["a"]),
            ),
            (
                Append(key("$.order.lines"), json!(9)),
                "/order/lines/2",
                json!(9),
            ),
            (
                Append(key("$.order.n"), json!(2)),
                "/order/n",
                json!([1, 2]),
            ),
            (
                Remove(key("$.order.lines"), json!({"done": false})),
                "/order/lines",
                json!([]),
            ),
            (
                Delete(key("$.order.lines.0")),
                "/order/lines",
                json!([{"done": false}]),
            ),
            (Delete(key("$.order")), "/order", Value::Null),
            // A top-level key that starts with `$.` itself, escaped.
            (Set(key(r"$.$\.order"), json!(1)), "/$.order", json!(1)),
            (Set(key(r"$.a\\b"), json!(1)), "/a\\b", json!(1)),
            // A number is an object's key where the container is an object.
            (Set(key("$.order.0"), json!(1)), "/order/0", json!(1)),
            // A top-level key that is not a path.
            (Set(key("$order.x"), json!(1)), "/$order.x", json!(1)),
        ];
        for (op, pointer, expected) in cases {
            let described = format!("{op:?}");
            let next = applied(start.clone(), vec![op]).unwrap();
            let found = next.pointer(pointer).cloned().unwrap_or(Value::Null);
            assert_eq!(found, expected, "{described}: {next}");
        }
        // Whatever reaches nothing to remove changes nothing.
        for op in [
            Delete(key("$.nothing.here")),
            Remove(key("$.order.n.x"), json!(1)),
            Delete(key("$.order.lines.7")),
        ] {
            assert_eq!(applied(start.clone(), vec![op]).unwrap(), start);
        }
    }

    #[test]
    fn a_path_that_leads_nowhere_or_cannot_be_read_is_refused_with_where_and_why() {
        use MetadataOp::*;
        let start = json!({"order": {"lines": [1, 2], "n": 1}});
        let refused = |op| applied(start.clone(), vec![Set("ok".into(), json!(1)), op]);
        let cases = [
            (
                Set("$.missing.x".into(), json!(1)),
                "metadata key `$.missing.x`: there is no object or array at `$.missing` to hold it",
            ),
            (
                Increment("$.order.n.x".into(), 1.0),
                "metadata key `$.order.n.x`: there is no object or array at `$.order.n` to hold it",
            ),
            (
                Set("$.order.lines.3".into(), json!(1)),
                "metadata key `$.order.lines.3`: the array at `$.order.lines` holds 2, so an \
                 index there may be at most 2 (which appends)",
            ),
            (
                Set("$.order.lines.01".into(), json!(1)),
                "metadata key `$.order.lines.01` is not a path runcast can follow: `01` is not \
                 an index of the array at `$.order.lines`",
            ),
            (
                Set("$.order..n".into(), json!(1)),
                "metadata key `$.order..n` is not a path runcast can follow: it has an empty \
                 segment",
            ),
            (
                Set("$.".into(), json!(1)),
                "metadata key `$.` is not a path runcast can follow: it has an empty segment",
            ),
            (
                Set("$.order.lines.*".into(), json!(1)),
                "metadata key `$.order.lines.*` is not a path runcast can follow: wildcards and \
                 slices are not supported",
            ),
            (
                Delete("$.order.lines.[0:1]".into()),
                "metadata key `$.order.lines.[0:1]` is not a path runcast can follow: wildcards \
                 and slices are not supported",
            ),
        ];
        for (op, message) in cases {
            assert_eq!(refused(op).unwrap_err(), message);
        }
    }

    #[test]
    fn replace_puts_a_whole_new_object_and_update_merges() {
        let start = json!({"a": 1, "b": 2});
        let object = |v: Value| v.as_object().unwrap().clone();
        let replaced = applied(
            start.clone(),
            vec![MetadataOp::Replace(object(json!({"c": 3})))],
        );
        assert_eq!(replaced.unwrap(), json!({"c": 3}));
        let merged = applied(start, vec![MetadataOp::Update(object(json!({"c": 3})))]);
        assert_eq!(merged.unwrap(), json!({"a": 1, "b": 2, "c": 3}));
    }

    proptest::proptest! {
        #[test]
        fn a_path_written_from_any_segments_reaches_the_value_at_those_keys(
            segments in proptest::collection::vec("[a-z.\\\\$*]{1,6}", 1..5),
            text in ".{0,40}",
        ) {
            proptest::prop_assume!(segments.iter().all(|s| s != "*"));
            let mut expected = json!("v");
            for segment in segments.iter().rev() {
                expected = json!({ segment.as_str(): expected });
            }
            let Value::Object(mut nested) = expected.clone() else { unreachable!() };
            // Emptied at the innermost object, then set again through the path.
            let mut inner = &mut nested;
            for segment in &segments[..segments.len() - 1] {
                inner = inner.get_mut(segment.as_str()).and_then(Value::as_object_mut).unwrap();
            }
            inner.clear();
            let op = MetadataOp::Set(path::path_of(&segments), json!("v"));
            op.apply(&mut nested).unwrap();
            proptest::prop_assert_eq!(Value::Object(nested), expected);
            // No key panics.
            let _ = MetadataOp::Set(format!("$.{text}"), json!(1)).apply(&mut Map::new());
        }
    }

    #[test]
    fn a_failing_operation_changes_nothing_and_says_why() {
        let err = run(vec![
            MetadataOp::Set("n".into(), json!(5)),
            MetadataOp::Increment("s".into(), 1.0),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot increment `s`: it holds "x", not a number"#
        );
        let big = MetadataOp::Set("big".into(), json!("x".repeat(MAX_METADATA_BYTES)));
        assert!(matches!(
            run(vec![big]),
            Err(MetadataError::TooLarge { .. })
        ));
        let inf = MetadataOp::Increment("n".into(), f64::INFINITY);
        assert!(matches!(
            run(vec![inf]),
            Err(MetadataError::NotFinite { .. })
        ));
    }

    #[test]
    fn metadata_deeper_than_the_limit_is_refused_and_the_limit_itself_is_accepted() {
        let nested = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!({ "a": value });
            }
            value
        };
        let at_limit = MetadataOp::Set("a".into(), nested(MAX_METADATA_DEPTH - 1));
        let (object, raw) = apply(None, vec![at_limit]).unwrap();
        assert_eq!(object_depth(&object), MAX_METADATA_DEPTH);
        assert_eq!(read(Some(&raw)).unwrap().unwrap(), object);
        let over = MetadataOp::Set("a".into(), nested(MAX_METADATA_DEPTH));
        assert!(matches!(
            apply(None, vec![over]),
            Err(MetadataError::TooDeep { .. })
        ));
        // Far deeper than any parser reads back, built without recursion.
        let mut deep = json!([]);
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        let deep = MetadataOp::Set("a".into(), deep);
        assert!(matches!(
            apply(None, vec![deep]),
            Err(MetadataError::TooDeep { .. })
        ));
    }

    #[test]
    fn unreadable_metadata_is_an_error_never_none() {
        let not_an_object = RawValue::from_string("[1]".into()).unwrap();
        assert!(matches!(
            read(Some(&not_an_object)),
            Err(MetadataError::Unreadable(_))
        ));
        assert!(read(None).unwrap().is_none());
        let op = MetadataOp::Set("a".into(), json!(1));
        assert!(apply_raw(Some(&not_an_object), vec![op]).is_err());
    }

    #[test]
    fn typed_metadata_must_be_an_object() {
        assert!(matches!(
            typed_to_raw(&5),
            Err(MetadataError::NotAnObject { found: "a number" })
        ));
        assert_eq!(typed_to_raw(&json!({"a": 1})).unwrap().get(), r#"{"a":1}"#);
    }
}
