//! Chunks of realtime streams, untyped ([`AnyChunk`]), and the item of a subscription that
//! carries run changes and chunks in one order ([`Realtime`]).

use std::sync::Arc;

use serde_json::value::RawValue;

use super::cursor::{Cursor, Update};
use super::ids::RunId;

/// A chunk of any task's stream, with its data left as raw JSON.
#[derive(Debug, Clone)]
pub struct AnyChunk {
    /// Where the chunk is in the history.
    pub cursor: Cursor,
    /// The run whose stream it belongs to.
    pub run_id: RunId,
    /// The run's task.
    pub task_identifier: Arc<str>,
    /// The stream's key.
    pub stream: Arc<str>,
    /// The chunk, as JSON.
    pub data: Arc<RawValue>,
}

/// What every chunk item has, whatever its types.
pub trait ChunkInfo {
    /// Where the chunk is in the history.
    fn cursor(&self) -> Cursor;
    /// The run whose stream it belongs to.
    fn run_id(&self) -> &RunId;
    /// The stream's key.
    fn stream(&self) -> &str;
}

impl ChunkInfo for AnyChunk {
    fn cursor(&self) -> Cursor {
        self.cursor
    }
    fn run_id(&self) -> &RunId {
        &self.run_id
    }
    fn stream(&self) -> &str {
        &self.stream
    }
}

/// An item of a subscription with streams: a run's snapshot, or a chunk of one of its streams,
/// in one cursor order.
///
/// `R` is the decoded run (`Run<T>`, a union, or [`AnyRun`](crate::AnyRun)) and `C` the
/// decoded chunk ([`Chunk<T>`](crate::Chunk), the union's chunk enum, or [`AnyChunk`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Realtime<R, C> {
    /// A change of a run: its whole new snapshot.
    Run(Update<R>),
    /// A chunk written to one of a run's streams.
    Chunk(C),
}

impl<R, C: ChunkInfo> Realtime<R, C> {
    /// Where the item is in the history: subscribe from it to continue after it.
    pub fn cursor(&self) -> Cursor {
        match self {
            Self::Run(update) => update.cursor,
            Self::Chunk(chunk) => chunk.cursor(),
        }
    }
}
