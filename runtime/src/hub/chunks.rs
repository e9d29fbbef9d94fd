//! The chunks of a run's realtime streams, kept with the run in the hub.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::model::{AnyChunk, Cursor, RunId};

/// The chunks of a run's streams, in the order they were written: kept as long as the run, so
/// that a subscriber that arrives late or lags reads them all.
#[derive(Clone)]
pub(super) struct Streams {
    pub(super) task: Arc<str>,
    pub(super) keys: Vec<Arc<str>>,
    pub(super) chunks: Vec<StoredChunk>,
    /// What keeping the chunks costs: their JSON and their records.
    pub(super) bytes: usize,
}

#[derive(Clone)]
pub(super) struct StoredChunk {
    pub(super) position: u64,
    /// Index in [`Streams::keys`].
    pub(super) key: usize,
    pub(super) data: Arc<RawValue>,
}

impl Streams {
    pub(super) fn new(task: &str) -> Self {
        Self {
            task: Arc::from(task),
            keys: Vec::new(),
            chunks: Vec::new(),
            bytes: 0,
        }
    }

    /// Appends a chunk of stream `stream` at `position`.
    pub(super) fn push(&mut self, position: u64, stream: &str, data: Arc<RawValue>) {
        let key = match self.keys.iter().position(|key| **key == *stream) {
            Some(key) => key,
            None => {
                self.keys.push(Arc::from(stream));
                self.keys.len() - 1
            }
        };
        self.bytes += data.get().len() + std::mem::size_of::<StoredChunk>();
        self.chunks.push(StoredChunk {
            position,
            key,
            data,
        });
    }

    /// The index of the first chunk written after `position`.
    pub(super) fn first_after(&self, position: u64) -> usize {
        self.chunks
            .partition_point(|chunk| chunk.position <= position)
    }

    /// Whether a chunk was written after `position`.
    pub(super) fn has_after(&self, position: u64) -> bool {
        self.chunks.last().is_some_and(|c| c.position > position)
    }

    pub(super) fn item(&self, epoch: u64, run: &RunId, chunk: &StoredChunk) -> AnyChunk {
        AnyChunk {
            cursor: Cursor::new(epoch, chunk.position),
            run_id: run.clone(),
            task_identifier: Arc::clone(&self.task),
            stream: Arc::clone(&self.keys[chunk.key]),
            data: Arc::clone(&chunk.data),
        }
    }
}
