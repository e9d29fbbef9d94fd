//! What the server holds, in its memory: for a server over an embedded engine, whose runs
//! live in the same memory.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::{BATCH_OPEN_FOR, Filled, PACKET_KEPT_FOR, Packet};
use crate::model::{BatchId, StoreError};
use crate::support::lock;

#[derive(Default)]
pub(in crate::http) struct Held {
    packets: Mutex<Packets>,
    batches: Mutex<HashMap<BatchId, Batch>>,
}

#[derive(Default)]
struct Packets {
    kept: HashMap<String, (Packet, Instant)>,
    /// The bytes of their data.
    bytes: usize,
}

struct Batch {
    run_count: usize,
    named: Instant,
    phase: Phase,
}

enum Phase {
    /// Items arrive, by index.
    Open(BTreeMap<usize, String>),
    /// Its runs are being triggered.
    Sealing(BTreeMap<usize, String>),
    Sealed,
}

impl Held {
    pub(super) async fn put_packet(
        &self,
        path: &str,
        packet: Packet,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let mut packets = lock(&self.packets);
        let Packets { kept, bytes } = &mut *packets;
        kept.retain(|_, (packet, stored)| {
            let keep = stored.elapsed() < PACKET_KEPT_FOR;
            if !keep {
                *bytes -= packet.data.len();
            }
            keep
        });
        if let Some((old, _)) = kept.remove(path) {
            *bytes -= old.data.len();
        }
        if *bytes + packet.data.len() > limit {
            return Ok(false);
        }
        *bytes += packet.data.len();
        kept.insert(path.to_owned(), (packet, Instant::now()));
        Ok(true)
    }

    pub(super) async fn packet(&self, path: &str) -> Result<Option<Packet>, StoreError> {
        let packets = lock(&self.packets);
        let found = packets.kept.get(path);
        let fresh = found.filter(|(_, stored)| stored.elapsed() < PACKET_KEPT_FOR);
        Ok(fresh.map(|(packet, _)| Packet {
            data: packet.data.clone(),
            kind: packet.kind.clone(),
        }))
    }

    pub(super) async fn open_batch(
        &self,
        id: &BatchId,
        run_count: usize,
    ) -> Result<(), StoreError> {
        let mut batches = lock(&self.batches);
        batches.retain(|_, batch| batch.named.elapsed() < BATCH_OPEN_FOR);
        let batch = Batch {
            run_count,
            named: Instant::now(),
            phase: Phase::Open(BTreeMap::new()),
        };
        batches.insert(id.clone(), batch);
        Ok(())
    }

    pub(super) async fn batch_size(&self, id: &BatchId) -> Result<Option<usize>, StoreError> {
        Ok(lock(&self.batches).get(id).map(|batch| batch.run_count))
    }

    pub(super) async fn add_items(
        &self,
        id: &BatchId,
        arrived: Vec<(usize, String)>,
    ) -> Result<Filled, StoreError> {
        let mut batches = lock(&self.batches);
        let Some(batch) = batches.get_mut(id) else {
            return Ok(Filled::Unknown);
        };
        let Phase::Open(items) = &mut batch.phase else {
            return Ok(Filled::Closed);
        };
        let (mut accepted, mut duplicates) = (0, 0);
        for (index, line) in arrived {
            match items.entry(index) {
                Entry::Occupied(_) => duplicates += 1,
                Entry::Vacant(slot) => {
                    slot.insert(line);
                    accepted += 1;
                }
            }
        }
        let mut seal = None;
        if items.len() == batch.run_count {
            let items = std::mem::take(items);
            seal = Some(items.values().cloned().collect());
            batch.phase = Phase::Sealing(items);
        }
        Ok(Filled::Open {
            accepted,
            duplicates,
            seal,
        })
    }

    pub(super) async fn sealed(&self, id: &BatchId, triggered: bool) -> Result<(), StoreError> {
        let mut batches = lock(&self.batches);
        if let Some(batch) = batches.get_mut(id)
            && let Phase::Sealing(items) = &mut batch.phase
        {
            batch.phase = if triggered {
                Phase::Sealed
            } else {
                Phase::Open(std::mem::take(items))
            };
        }
        Ok(())
    }
}
