//! Metadata keys that name a value inside the object: `$.` then segments separated by `.`, as
//! Trigger.dev's SDK writes them (`metadata.set("$.steps.0.done", true)`). A segment names an
//! object's key, or an array's element when it is a whole number written without a leading
//! zero; `\.` is a dot inside a segment and `\\` a backslash. Any other key is a top-level key.

use std::borrow::Cow;

use serde_json::Value;

use super::MetadataError;
use crate::model::JsonObject;

/// Where a key points: a key of an object, or an element of an array (the last segment of a
/// path, in the container the segments before it lead to).
pub(super) enum Place<'m, 'k> {
    /// A key of an object (the metadata itself for a top-level key, borrowed: copied only
    /// when it is inserted).
    Key(&'m mut JsonObject, Cow<'k, str>),
    /// An element of an array, possibly one past its end (where a value can be appended).
    Index(&'m mut Vec<Value>, usize),
}

impl<'m, 'k> Place<'m, 'k> {
    /// Where `key` points in `metadata`. [`MetadataError::PathNotFound`] when a segment before
    /// the last leads to nothing, or to something other than an object or array;
    /// [`MetadataError::PastTheEnd`] when the last is an index more than one past an array's
    /// end; [`MetadataError::BadPath`] when the path cannot be read.
    pub(super) fn of(metadata: &'m mut JsonObject, key: &'k str) -> Result<Self, MetadataError> {
        let Some(path) = key.strip_prefix("$.") else {
            return Ok(Place::Key(metadata, Cow::Borrowed(key)));
        };
        let mut segments = segments(key, path)?;
        let last = segments.pop().unwrap_or_default();
        let mut here = Container::Object(metadata);
        for (walked, segment) in segments.iter().enumerate() {
            let next = match here {
                Container::Object(object) => object.get_mut(segment),
                Container::Array(items) => index(segment).and_then(|i| items.get_mut(i)),
            };
            here = match next {
                Some(Value::Object(object)) => Container::Object(object),
                Some(Value::Array(items)) => Container::Array(items),
                _ => {
                    return Err(MetadataError::PathNotFound {
                        key: key.to_owned(),
                        at: path_of(&segments[..=walked]),
                    });
                }
            };
        }
        match here {
            Container::Object(object) => Ok(Place::Key(object, Cow::Owned(last))),
            Container::Array(items) => match index(&last) {
                Some(i) if i <= items.len() => Ok(Place::Index(items, i)),
                Some(_) => Err(MetadataError::PastTheEnd {
                    key: key.to_owned(),
                    at: path_of(&segments),
                    len: items.len(),
                }),
                None => Err(MetadataError::BadPath {
                    key: key.to_owned(),
                    reason: format!(
                        "`{last}` is not an index of the array at `{}`",
                        path_of(&segments)
                    ),
                }),
            },
        }
    }

    /// The value at this place, if there is one.
    pub(super) fn get_mut(&mut self) -> Option<&mut Value> {
        match self {
            Place::Key(object, key) => object.get_mut(key.as_ref()),
            Place::Index(items, i) => items.get_mut(*i),
        }
    }

    /// Puts `value` at this place, replacing what was there (one past an array's end appends).
    pub(super) fn put(self, value: Value) {
        match self {
            Place::Key(object, key) => match object.get_mut(key.as_ref()) {
                Some(old) => *old = value,
                None => {
                    object.insert(key.into_owned(), value);
                }
            },
            Place::Index(items, i) if i < items.len() => items[i] = value,
            Place::Index(items, _) => items.push(value),
        }
    }

    /// Removes the value at this place (an array's later elements move up).
    pub(super) fn remove(self) {
        match self {
            Place::Key(object, key) => {
                object.remove(key.as_ref());
            }
            Place::Index(items, i) if i < items.len() => {
                items.remove(i);
            }
            Place::Index(..) => {}
        }
    }
}

/// A container a path walks through.
enum Container<'m> {
    Object(&'m mut JsonObject),
    Array(&'m mut Vec<Value>),
}

/// The segments of a path (what follows `$.`), unescaped.
fn segments(key: &str, path: &str) -> Result<Vec<String>, MetadataError> {
    let bad = |reason: &str| MetadataError::BadPath {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let mut segments = Vec::new();
    let mut segment = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(escaped @ ('.' | '\\'))) => {
                segment.push(escaped);
                chars.next();
            }
            ('.', _) => segments.push(std::mem::take(&mut segment)),
            (c, _) => segment.push(c),
        }
    }
    segments.push(segment);
    for segment in &segments {
        if segment.is_empty() {
            return Err(bad("it has an empty segment"));
        }
        if segment == "*" || (segment.starts_with('[') && segment.ends_with(']')) {
            return Err(bad("wildcards and slices are not supported"));
        }
    }
    Ok(segments)
}

/// A segment as an array index: a whole number without a leading zero (as JavaScript reads an
/// array's keys).
fn index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    canonical.then(|| segment.parse().ok()).flatten()
}

/// The path made of `segments` (escaped): `$` when there are none.
pub(crate) fn path_of(segments: &[impl AsRef<str>]) -> String {
    let mut path = String::from("$");
    for segment in segments {
        path.push('.');
        path.push_str(&segment.as_ref().replace('\\', "\\\\").replace('.', "\\."));
    }
    path
}
