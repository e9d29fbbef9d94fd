//! The run object and what it is made of: ids, statuses, timestamps, errors, metadata, the
//! cursor of a change, and untyped chunks. It imports nothing else of runcast.

pub(crate) mod chunk;
pub(crate) mod cursor;
pub(crate) mod error;
pub(crate) mod ids;
pub(crate) mod metadata;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod timestamp;

pub use self::chunk::{AnyChunk, ChunkInfo, Realtime};
pub use self::cursor::{Cursor, ParseCursorError, Update};
pub use self::error::StoreError;
pub use self::ids::{BatchId, RunId};
pub use self::metadata::{MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MetadataError, MetadataOp};
pub use self::run::{
    AnyRun, JsonObject, Run, RunInfo, RunKind, SerializedError, TaskIdentifier, Untyped,
};
pub use self::status::{RunStatus, UnknownStatus};
pub use self::timestamp::{ParseTimestampError, Timestamp};
