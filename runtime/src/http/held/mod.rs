//! What the server holds between requests: payloads the SDK uploads apart, until the trigger
//! that names them, and batches receiving their items, until sealed. Over an embedded engine,
//! in the server's memory; over Postgres, in the database, where every server over it sees
//! them, so that a batch's requests, or a packet's upload and its trigger, may reach
//! different servers (behind a load balancer).

mod memory;
#[cfg(feature = "postgres")]
mod postgres;

use std::time::Duration;

use super::error::ApiError;
use crate::Engine;
use crate::model::{BatchId, StoreError};

/// How long an uploaded packet is kept.
const PACKET_KEPT_FOR: Duration = Duration::from_secs(60 * 60);
/// How long a batch may stay open.
const BATCH_OPEN_FOR: Duration = Duration::from_secs(60 * 60);

/// Where the server holds them.
pub(super) enum Held {
    Memory(memory::Held),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Held),
}

/// An uploaded packet.
pub(super) struct Packet {
    pub(super) data: String,
    /// Its content type.
    pub(super) kind: String,
}

/// What became of a batch when items arrived.
pub(super) enum Filled {
    /// No open batch has this id (never named, or named over an hour ago).
    Unknown,
    /// It is sealed, or being sealed: the items arrived before.
    Closed,
    /// The new items are kept. Once every index arrived, `seal` holds each item's line, in
    /// index order: the caller triggers them, then says how that went ([`Held::sealed`]).
    Open {
        accepted: usize,
        duplicates: usize,
        seal: Option<Vec<String>>,
    },
}

/// `$body` with `$held` bound to the store inside `$self`.
macro_rules! each_held {
    ($self:expr, $held:ident => $body:expr) => {
        match $self {
            Held::Memory($held) => $body,
            #[cfg(feature = "postgres")]
            Held::Postgres($held) => $body,
        }
    };
}

impl Held {
    /// Where a server over `engine` holds them: the engine's database, if it has one.
    pub(super) fn of(engine: &Engine) -> Self {
        #[cfg(feature = "postgres")]
        if let Some(pool) = engine.postgres_pool() {
            return Held::Postgres(postgres::Held::new(pool));
        }
        let _ = engine;
        Held::Memory(memory::Held::default())
    }

    /// Keeps a packet uploaded at `path` (replacing one uploaded there before), unless the
    /// packets kept would then exceed `limit` bytes (`507`, try later).
    pub(super) async fn put_packet(
        &self,
        path: &str,
        packet: Packet,
        limit: usize,
    ) -> Result<(), ApiError> {
        let kept = each_held!(self, held => held.put_packet(path, packet, limit).await);
        match kept.map_err(|error| ApiError::internal(&error))? {
            true => Ok(()),
            false => Err(ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                "the server keeps no more uploaded packets now; try again later",
            )),
        }
    }

    /// The packet uploaded at `path`, if it is kept.
    pub(super) async fn packet(&self, path: &str) -> Result<Option<Packet>, ApiError> {
        let found = each_held!(self, held => held.packet(path).await);
        found.map_err(|error| ApiError::internal(&error))
    }

    /// Names a batch of `run_count` runs, open for its items.
    pub(super) async fn open_batch(&self, id: &BatchId, run_count: usize) -> Result<(), ApiError> {
        let opened = each_held!(self, held => held.open_batch(id, run_count).await);
        opened.map_err(|error| ApiError::internal(&error))
    }

    /// How many runs batch `id` holds, if it is known.
    pub(super) async fn batch_size(&self, id: &BatchId) -> Result<Option<usize>, ApiError> {
        let size = each_held!(self, held => held.batch_size(id).await);
        size.map_err(|error| ApiError::internal(&error))
    }

    /// Keeps the items that arrived (`(index, line)`, each checked), but for the indexes that
    /// arrived before.
    pub(super) async fn add_items(
        &self,
        id: &BatchId,
        items: Vec<(usize, String)>,
    ) -> Result<Filled, ApiError> {
        let filled = each_held!(self, held => held.add_items(id, items).await);
        filled.map_err(|error| ApiError::internal(&error))
    }

    /// Marks a batch whose runs were triggered sealed, or, if they were not (`triggered` is
    /// false), open again with its items, for the SDK to send again.
    pub(super) async fn sealed(&self, id: &BatchId, triggered: bool) -> Result<(), StoreError> {
        each_held!(self, held => held.sealed(id, triggered).await)
    }
}
