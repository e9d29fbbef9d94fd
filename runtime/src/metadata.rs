//! Metadata operations: how a run's metadata object changes, from inside a task or outside.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::run::JsonObject;

/// The largest metadata object a run may hold, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 256 * 1024;

/// One change of a run's metadata object; [`apply`](MetadataOp::apply) describes each.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetadataOp {
    /// Sets `key` to `value`.
    Set(String, Value),
    /// Removes `key`.
    Delete(String),
    /// Appends `value` to the array at `key` (an absent key becomes `[value]`; another value
    /// becomes `[old, value]`).
    Append(String, Value),
    /// Removes every element equal to `value` from the array at `key`.
    Remove(String, Value),
    /// Adds a number to the number at `key` (absent counts as 0); a negative one decrements.
    Increment(String, f64),
    /// Sets every key of the object, keeping the others (a shallow merge).
    Update(JsonObject),
}

/// Why metadata could not be changed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    /// `increment` of a key that holds something other than a number.
    #[error("cannot increment `{key}`: it holds {found}, not a number")]
    NotANumber {
        /// The key.
        key: String,
        /// What it holds, as JSON.
        found: String,
    },
    /// An increment that leaves a number JSON cannot hold (infinite or NaN).
    #[error("cannot increment `{key}`: the result is not a finite number")]
    NotFinite {
        /// The key.
        key: String,
    },
    /// No run has this id.
    #[error("no run `{0}`")]
    UnknownRun(String),
}

impl MetadataOp {
    /// Subtracts a number from the number at `key` (absent counts as 0).
    pub fn decrement(key: impl Into<String>, by: f64) -> Self {
        MetadataOp::Increment(key.into(), -by)
    }

    /// Applies the change to `metadata`.
    pub fn apply(self, metadata: &mut JsonObject) -> Result<(), MetadataError> {
        match self {
            MetadataOp::Set(key, value) => {
                metadata.insert(key, value);
            }
            MetadataOp::Delete(key) => {
                metadata.remove(&key);
            }
            MetadataOp::Append(key, value) => match metadata.remove(&key) {
                Some(Value::Array(mut items)) => {
                    items.push(value);
                    metadata.insert(key, Value::Array(items));
                }
                Some(old) => {
                    metadata.insert(key, Value::Array(vec![old, value]));
                }
                None => {
                    metadata.insert(key, Value::Array(vec![value]));
                }
            },
            MetadataOp::Remove(key, value) => {
                if let Some(Value::Array(items)) = metadata.get_mut(&key) {
                    items.retain(|item| *item != value);
                }
            }
            MetadataOp::Increment(key, by) => {
                let current = match metadata.get(&key) {
                    None | Some(Value::Null) => 0.0,
                    Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                    Some(other) => {
                        return Err(MetadataError::NotANumber {
                            key,
                            found: other.to_string(),
                        });
                    }
                };
                let sum = current + by;
                let number = whole_number(sum)
                    .or_else(|| Number::from_f64(sum))
                    .ok_or_else(|| MetadataError::NotFinite { key: key.clone() })?;
                metadata.insert(key, Value::Number(number));
            }
            MetadataOp::Update(object) => metadata.extend(object),
        }
        Ok(())
    }
}

/// `n` as an integer when it is one, so `1 + 1` is `2`, not `2.0`, as in JavaScript.
fn whole_number(n: f64) -> Option<Number> {
    crate::run::js_integer(n).map(Number::from)
}

/// Applies `ops` to a copy of `metadata` and returns it, or an error and no change at all.
pub(crate) fn apply_all(
    metadata: Option<&JsonObject>,
    ops: Vec<MetadataOp>,
) -> Result<JsonObject, MetadataError> {
    let next = apply_ops(metadata, ops)?;
    to_raw(&next)?;
    Ok(next)
}

fn apply_ops(
    metadata: Option<&JsonObject>,
    ops: Vec<MetadataOp>,
) -> Result<JsonObject, MetadataError> {
    let mut next = metadata.cloned().unwrap_or_else(Map::new);
    for op in ops {
        op.apply(&mut next)?;
    }
    Ok(next)
}

/// The metadata as the raw JSON a run holds, within the size limit.
pub(crate) fn to_raw(metadata: &JsonObject) -> Result<Arc<RawValue>, MetadataError> {
    let raw = serde_json::value::to_raw_value(metadata).map_err(|_| MetadataError::TooLarge {
        size: usize::MAX,
        limit: MAX_METADATA_BYTES,
    })?;
    let size = raw.get().len();
    if size > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge {
            size,
            limit: MAX_METADATA_BYTES,
        });
    }
    Ok(Arc::from(raw))
}

/// A run's raw metadata as an object; anything else (never written by the engine) as none.
pub(crate) fn from_raw(metadata: Option<&RawValue>) -> Option<JsonObject> {
    metadata.and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// Applies `ops` to a run's raw metadata: the new raw metadata, or an error and no change.
pub(crate) fn apply_raw(
    metadata: Option<&RawValue>,
    ops: Vec<MetadataOp>,
) -> Result<Arc<RawValue>, MetadataError> {
    to_raw(&apply_ops(from_raw(metadata).as_ref(), ops)?)
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
        apply_all(Some(&start), ops).map(Value::Object)
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
}
