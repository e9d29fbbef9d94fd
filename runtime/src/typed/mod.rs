//! The typed layer: tasks and their types ([`Task`]), decoding snapshots as a task's run or a
//! union's variant, typed chunks, and the stream adaptors ([`RunStreamExt`]). It imports only
//! the run model.

pub(crate) mod checks;
pub(crate) mod chunk;
pub(crate) mod decode;
pub mod stream;
pub(crate) mod task;
pub mod typescript;
pub(crate) mod union;

pub use self::chunk::{Chunk, ChunkError, FromAnyChunk, NoStreams, StreamKey, StreamOf, TaskChunk};
pub use self::decode::{DecodeError, FromAnyRun, RunField, Snapshot};
pub use self::stream::{RunStreamExt, WithStreams};
pub use self::task::Task;
pub use self::union::RunUnion;
