//! The backends an engine test runs on: the embedded engine's memory, and (with the feature
//! `postgres`) a fresh database of the tests' Postgres, a temporary cluster unless
//! `RUNCAST_TEST_DATABASE_URL` names a server (see `runtime/src/postgres/testing.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test without its backend fails.

use runcast::EngineBuilder;

#[cfg(feature = "postgres")]
#[path = "../../src/postgres/testing.rs"]
mod testing;

/// Where an engine keeps its runs.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Backend {
    /// A builder of an engine on this backend, with nothing else set.
    pub async fn builder(self) -> EngineBuilder {
        match self {
            Backend::Memory => runcast::Engine::builder(),
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let url = testing::database().await;
                let store = runcast::PostgresStore::connect(&url).await.unwrap();
                runcast::Engine::builder().postgres(store)
            }
        }
    }
}

/// Tests on every backend: each `async fn name(backend: Backend) { ... }` becomes a module
/// `name` with a test per backend (`name::memory`, `name::postgres`).
#[macro_export]
macro_rules! on_every_backend {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident: Backend) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::common::backend::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                run($crate::common::backend::Backend::Memory).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::common::backend::Backend::Postgres).await;
            }
        }
    )*};
}
