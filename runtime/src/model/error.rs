//! [`StoreError`]: a backend's failure, carried by the errors of every layer above.

use std::fmt;
use std::sync::Arc;

/// The store that keeps the runs (in memory, a database) failed to do an operation. Nothing
/// of the operation took effect.
///
/// The embedded engine's memory store never fails; a database store does when the database is
/// unreachable or refuses the operation, and the operation may be tried again.
#[derive(Clone, thiserror::Error)]
#[error("the run store failed: {source}")]
pub struct StoreError {
    source: Arc<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// A failure of the store, caused by `source`.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: Arc::from(source.into()),
        }
    }

    /// What caused it.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreError").field(&self.source).finish()
    }
}
