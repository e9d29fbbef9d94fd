//! Typed decoding of run snapshots: parse the envelope once, keep payload, output and metadata
//! raw, then decode them as the types of the task named by `taskIdentifier`.

use std::fmt;
use std::sync::{Arc, LazyLock};

use memchr::memmem::Finder;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::chunk::{Chunk, ChunkError, FromAnyChunk};
use super::task::Task;
use crate::model::{AnyRun, Run, RunId, RunKind, Untyped, Update};

/// The part of a run snapshot that failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunField {
    /// `payload`, decoded as the task's `Payload`.
    Payload,
    /// `output`, decoded as the task's `Output`.
    Output,
    /// `metadata`, decoded as the task's `Metadata` (a JSON object unless it declares a type).
    Metadata,
}

impl fmt::Display for RunField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Payload => "payload",
            Self::Output => "output",
            Self::Metadata => "metadata",
        })
    }
}

/// A run snapshot that could not be decoded as the type asked for.
///
/// It is an item of a stream, never the end of one: the next snapshot may decode fine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A payload, output or metadata value does not match the task's declared type.
    #[error(
        "run `{run_id}` of task `{task_identifier}`: {field} does not match its declared type: {source} (position within the {field})"
    )]
    Field {
        /// The task the run belongs to.
        task_identifier: String,
        /// The run.
        run_id: RunId,
        /// Which value failed.
        field: RunField,
        /// serde's message, with the line and column within the field's JSON.
        #[source]
        source: serde_json::Error,
    },
    /// The run belongs to a task that is not the one (or not one of those) expected.
    #[error(
        "run `{run_id}` is a run of task `{task_identifier}`, which is not {}",
        ExpectedTasks(expected)
    )]
    UnexpectedTask {
        /// The run.
        run_id: RunId,
        /// The task it belongs to.
        task_identifier: String,
        /// The identifiers that would have been accepted.
        expected: &'static [&'static str],
    },
    /// A chunk does not match its stream's declared type, or its task declares no such stream.
    #[error("run `{run_id}` of task `{task_identifier}`: a chunk of stream `{stream}`: {source}")]
    Chunk {
        /// The task the run belongs to.
        task_identifier: String,
        /// The run.
        run_id: RunId,
        /// The stream's key.
        stream: String,
        /// Why it did not decode.
        #[source]
        source: ChunkError,
    },
    /// The snapshot is not a run object at all (malformed JSON, a missing or mistyped field).
    #[error("malformed run snapshot: {0}")]
    Malformed(#[source] serde_json::Error),
}

struct ExpectedTasks<'a>(&'a [&'a str]);

impl fmt::Display for ExpectedTasks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("expected by an empty union"),
            [one] => write!(f, "the expected task `{one}`"),
            many => {
                f.write_str("one of the expected tasks ")?;
                for (i, id) in many.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}`{id}`")?;
                }
                Ok(())
            }
        }
    }
}

/// The [`RunKind`] of a snapshot parsed in place: payload, output and metadata borrowed raw.
#[derive(Debug)]
#[doc(hidden)]
pub(crate) struct Raw<'a>(std::convert::Infallible, std::marker::PhantomData<&'a ()>);

impl<'a> RunKind for Raw<'a> {
    type Payload = Option<&'a RawValue>;
    type Output = &'a RawValue;
    type Metadata = &'a RawValue;
}

/// A run kind whose payload, output and metadata are still raw JSON: what can be decoded.
///
/// Each of the three is the same raw value type (the payload may be absent).
#[doc(hidden)]
pub trait RawKind:
    RunKind<Payload = Option<<Self as RunKind>::Output>, Metadata = <Self as RunKind>::Output>
{
    #[doc(hidden)]
    fn raw(value: &Self::Output) -> &RawValue;
    #[doc(hidden)]
    fn shared(value: Self::Output) -> Arc<RawValue>;
}

impl RawKind for Untyped {
    fn raw(value: &Self::Output) -> &RawValue {
        value
    }
    fn shared(value: Self::Output) -> Arc<RawValue> {
        value
    }
}

impl<'a> RawKind for Raw<'a> {
    fn raw(value: &Self::Output) -> &RawValue {
        value
    }
    fn shared(value: Self::Output) -> Arc<RawValue> {
        RawValue::to_owned(value).into()
    }
}

fn decode_value<V: DeserializeOwned>(raw: Option<&RawValue>) -> Result<V, serde_json::Error> {
    serde_json::from_str(raw.map_or("null", RawValue::get))
}

fn field_error(
    task: &str,
    run: &RunId,
    field: RunField,
) -> impl FnOnce(serde_json::Error) -> DecodeError {
    move |source| DecodeError::Field {
        task_identifier: task.to_owned(),
        run_id: run.clone(),
        field,
        source,
    }
}

impl<K: RawKind> Run<K> {
    /// Decodes as a run of `T`, or fails if it is a run of another task.
    pub(crate) fn decode_as<T: Task>(self) -> Result<Run<T>, DecodeError> {
        if self.task_identifier == T::ID {
            self.decode()
        } else {
            Err(self.unexpected(const { &[T::ID] }))
        }
    }
}

/// Where a union decodes a run from: a parsed envelope, or JSON text decoded speculatively.
///
/// `realtime_union!` generates one `match` on [`RunSource::task_identifier`] over it.
#[doc(hidden)]
pub trait RunSource: Sized {
    /// The run's `taskIdentifier`.
    fn task_identifier(&self) -> &str;
    /// Decodes as a run of `T`, whose identifier the caller matched.
    fn decode<T: Task>(self) -> Result<Run<T>, DecodeError>;
    /// Keeps the run untyped, as the catch-all variant of a union does.
    fn into_any(self) -> Result<AnyRun, DecodeError>;
    /// The error for a run that none of `expected` accepts.
    fn unexpected(self, expected: &'static [&'static str]) -> DecodeError;
}

impl<K: RawKind> RunSource for Run<K> {
    fn task_identifier(&self) -> &str {
        &self.task_identifier
    }

    fn decode<T: Task>(self) -> Result<Run<T>, DecodeError> {
        self.try_map(|task, run, payload, output, metadata| {
            let payload = decode_value(payload.as_ref().map(K::raw)).map_err(field_error(
                task,
                run,
                RunField::Payload,
            ))?;
            let output = output
                .map(|raw| decode_value(Some(K::raw(&raw))))
                .transpose()
                .map_err(field_error(task, run, RunField::Output))?;
            let metadata = metadata
                .map(|raw| decode_value(Some(K::raw(&raw))))
                .transpose()
                .map_err(field_error(task, run, RunField::Metadata))?;
            Ok((payload, output, metadata))
        })
    }

    fn into_any(self) -> Result<AnyRun, DecodeError> {
        self.try_map(|_, _, payload, output, metadata| {
            Ok::<_, DecodeError>((
                payload.map(K::shared),
                output.map(K::shared),
                metadata.map(K::shared),
            ))
        })
    }

    fn unexpected(self, expected: &'static [&'static str]) -> DecodeError {
        DecodeError::UnexpectedTask {
            run_id: self.id,
            task_identifier: self.task_identifier.into_owned(),
            expected,
        }
    }
}

/// JSON text whose `taskIdentifier` was found by a byte search, decoded in one pass as the
/// task it names.
///
/// The search may be fooled (a payload may have a `taskIdentifier` key of its own), so the tag
/// is only a guess: the caller keeps a result only if the decoded run's own `taskIdentifier` is
/// the guessed one, and otherwise (or on any error) decodes again in two passes
/// ([`parse_raw`], then [`RunSource`] on the envelope), which is always right and gives errors
/// their task, run, field and position. The common case reads the text once.
pub(crate) struct Speculative<'a> {
    tag: &'a str,
    json: &'a str,
}

impl<'a> Speculative<'a> {
    /// Finds `"taskIdentifier":"<tag>"` without escapes in `json`.
    pub(crate) fn new(json: &'a str) -> Option<Self> {
        const KEY: &[u8] = b"\"taskIdentifier\":\"";
        // Built once: building a searcher costs more than a search of a run's first bytes.
        static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(KEY));
        let start = FINDER.find(json.as_bytes())? + KEY.len();
        let rest = json.get(start..)?;
        let tag = &rest[..rest.find('"')?];
        (!tag.contains('\\')).then_some(Self { tag, json })
    }

    /// The identifier found.
    pub(crate) fn tag(&self) -> &'a str {
        self.tag
    }
}

impl RunSource for Speculative<'_> {
    fn task_identifier(&self) -> &str {
        self.tag
    }

    fn decode<T: Task>(self) -> Result<Run<T>, DecodeError> {
        serde_json::from_str(self.json).map_err(DecodeError::Malformed)
    }

    fn into_any(self) -> Result<AnyRun, DecodeError> {
        serde_json::from_str(self.json).map_err(DecodeError::Malformed)
    }

    /// Only says which tag was found: the caller decodes the envelope again for the run id,
    /// since the tag it matched may not be the run's.
    fn unexpected(self, expected: &'static [&'static str]) -> DecodeError {
        DecodeError::UnexpectedTask {
            run_id: RunId::from(String::new()),
            task_identifier: self.tag.to_owned(),
            expected,
        }
    }
}

/// What run snapshots decode into: a [`Run<T>`] of one task, or a
/// [`RunUnion`](crate::RunUnion) of several.
pub trait FromAnyRun: Sized {
    /// What the chunks of the same runs' streams decode into.
    type Chunk: FromAnyChunk;

    /// Decodes an untyped snapshot.
    fn from_any_run(run: AnyRun) -> Result<Self, DecodeError>;
}

impl<T: Task> FromAnyRun for Run<T> {
    type Chunk = Chunk<T>;

    fn from_any_run(run: AnyRun) -> Result<Self, DecodeError> {
        run.decode_as()
    }
}

impl<U: super::union::RunUnion> FromAnyRun for U {
    type Chunk = U::Chunk;

    fn from_any_run(run: AnyRun) -> Result<Self, DecodeError> {
        U::dispatch(run)
    }
}

/// An item of a run feed that the typed adaptors decode: an [`AnyRun`], or an
/// [`Update`] of one, whose cursor the decoded item keeps.
pub trait Snapshot {
    /// The item once its run is decoded as `D`: `D`, or `Update<D>`.
    type Decoded<D: FromAnyRun>;

    /// Decodes the item's run as `D`.
    fn decode_into<D: FromAnyRun>(self) -> Result<Self::Decoded<D>, DecodeError>;
}

impl Snapshot for AnyRun {
    type Decoded<D: FromAnyRun> = D;

    fn decode_into<D: FromAnyRun>(self) -> Result<D, DecodeError> {
        D::from_any_run(self)
    }
}

impl Snapshot for Update<AnyRun> {
    type Decoded<D: FromAnyRun> = Update<D>;

    fn decode_into<D: FromAnyRun>(self) -> Result<Update<D>, DecodeError> {
        Ok(Update {
            cursor: self.cursor,
            run: D::from_any_run(self.run)?,
            coalesced: self.coalesced,
        })
    }
}

/// Parses a run snapshot in place, borrowing payload, output and metadata.
pub(crate) fn parse_raw(json: &str) -> Result<Run<Raw<'_>>, DecodeError> {
    serde_json::from_str(json).map_err(DecodeError::Malformed)
}

impl AnyRun {
    /// The run's metadata decoded as `M`; a [`JsonObject`](crate::JsonObject) reads it
    /// untyped.
    ///
    /// ```
    /// # let run: runcast::AnyRun = serde_json::from_str(r#"{"id":"run_1","taskIdentifier":"t","status":"QUEUED",
    /// #     "metadata":{"progress":0.5},"createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#)?;
    /// let metadata = run.metadata_as::<runcast::JsonObject>()?.unwrap();
    /// assert_eq!(metadata["progress"], 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metadata_as<M: DeserializeOwned>(&self) -> Result<Option<M>, DecodeError> {
        self.metadata
            .as_deref()
            .map(|raw| decode_value(Some(raw)))
            .transpose()
            .map_err(field_error(
                &self.task_identifier,
                &self.id,
                RunField::Metadata,
            ))
    }

    /// Decodes this snapshot as a run of `T`.
    ///
    /// Fails with [`DecodeError::UnexpectedTask`] if the run belongs to another task, and with
    /// [`DecodeError::Field`] if its payload, output or metadata does not match `T`'s types.
    pub fn decode<T: Task>(self) -> Result<Run<T>, DecodeError> {
        self.decode_as()
    }
}

impl<T: Task> Run<T> {
    /// Decodes a run snapshot of `T` from JSON text: the envelope once, then payload, output and
    /// metadata as `T`'s types, with errors that name the task, the run and the field.
    ///
    /// ```
    /// use runcast::{DecodeError, Run, task};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)] pub struct Resize { width: u32 }
    /// #[task(id = "resize-image", payload = Resize, output = String)]
    /// pub struct ResizeImage;
    ///
    /// let json = r#"{"id":"run_1","taskIdentifier":"resize-image","payload":{"width":"wide"},
    ///   "status":"QUEUED","createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
    /// let err = Run::<ResizeImage>::from_json(json).unwrap_err();
    /// assert!(matches!(err, DecodeError::Field { .. }));
    /// assert!(err.to_string().starts_with("run `run_1` of task `resize-image`: payload"));
    /// ```
    pub fn from_json(json: &str) -> Result<Self, DecodeError> {
        // One pass when all is well; the envelope pass for a precise error when not.
        serde_json::from_str(json).or_else(|_| parse_raw(json)?.decode_as())
    }
}
