//! The [`Task`] trait that `#[task]` implements: a task's identifier and types.

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde::de::{DeserializeOwned, Deserializer};

use super::chunk::TaskChunk;
use crate::model::RunKind;
use crate::model::run::TaskIdentifier;
use std::borrow::Cow;

/// A kind of background task: its identifier and the types of its payload and output.
///
/// Implement it with [`#[task]`](crate::task), never by hand: the macro checks the identifier
/// and the types at compile time.
///
/// ```
/// use runcast::{Task, task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema)] pub struct Email { to: String }
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema)] pub struct Receipt { id: u64 }
///
/// #[task(id = "send-email", payload = Email, output = Receipt)]
/// pub struct SendEmail;
///
/// assert_eq!(SendEmail::ID, "send-email");
/// assert_eq!(<SendEmail as Task>::ID, "send-email");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a runcast task",
    label = "not a task",
    note = "declare it with `#[runcast::task(id = \"...\", ...)]`"
)]
pub trait Task: Sized + Send + Sync + 'static {
    /// The task identifier, as it appears in a run's `taskIdentifier`.
    ///
    /// ASCII letters, digits, `-`, `_`, `.` and `/`; 1 to 128 characters.
    const ID: &'static str;

    /// What a run of this task is triggered with.
    type Payload: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// What a successful run of this task returns.
    type Output: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// What subscribers decode the run's metadata as (`metadata = T` in `#[task]`): a
    /// [`JsonObject`](crate::JsonObject) unless the task declares a type.
    type Metadata: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// The chunks of the task's realtime streams (`streams(key = T, ...)` in `#[task]`): an
    /// enum with one variant per stream, or [`NoStreams`](crate::NoStreams).
    type Chunk: TaskChunk;

    /// The JSON Schema of [`Self::Payload`].
    fn payload_schema() -> Schema {
        schemars::schema_for!(Self::Payload)
    }

    /// The JSON Schema of [`Self::Output`].
    fn output_schema() -> Schema {
        schemars::schema_for!(Self::Output)
    }

    /// The JSON Schema of [`Self::Metadata`].
    fn metadata_schema() -> Schema {
        schemars::schema_for!(Self::Metadata)
    }
}

impl<T: Task> RunKind for T {
    type Payload = T::Payload;
    type Output = T::Output;
    type Metadata = T::Metadata;

    fn deserialize_task_identifier<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<TaskIdentifier, D::Error> {
        /// Reads the identifier without copying it: it must be `ID`.
        struct Identifier(&'static str);
        impl serde::de::Visitor<'_> for Identifier {
            type Value = TaskIdentifier;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "the task identifier `{}`", self.0)
            }
            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<TaskIdentifier, E> {
                if id == self.0 {
                    Ok(Cow::Borrowed(self.0))
                } else {
                    Err(E::custom(format_args!(
                        "this is a run of task `{id}`, not of task `{}`",
                        self.0
                    )))
                }
            }
        }
        d.deserialize_str(Identifier(T::ID))
    }
}
