//! What the server holds, in the engine's Postgres database (migration 5): every server over
//! the database sees it.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::{BATCH_OPEN_FOR, Filled, PACKET_KEPT_FOR, Packet};
use crate::model::{BatchId, StoreError};

/// A batch left `sealing` this long was abandoned by its server (stopped while it triggered
/// the runs): it is sealed if its runs exist, open again otherwise.
const SEALING_FOR: Duration = Duration::from_secs(60);

/// Serializes the uploads, which check the packets' total size.
const PACKETS_LOCK: i64 = 0x7275_6e63_6173_7402;

pub(in crate::http) struct Held(Pool);

/// `duration` as a Postgres interval parameter, in seconds.
fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl Held {
    pub(super) fn new(pool: Pool) -> Self {
        Held(pool)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.0.get().await.map_err(StoreError::from)
    }

    pub(super) async fn put_packet(
        &self,
        path: &str,
        packet: Packet,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let kept_for = seconds(PACKET_KEPT_FOR);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let size = i64::try_from(packet.data.len()).unwrap_or(i64::MAX);
        let steps = async {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PACKETS_LOCK])
                .await?;
            tx.execute(
                "DELETE FROM runcast_packets
                 WHERE path = $1 OR stored_at < now() - make_interval(secs => $2)",
                &[&path, &kept_for],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT coalesce(sum(octet_length(data)), 0)::bigint FROM runcast_packets",
                    &[],
                )
                .await?;
            if row.get::<_, i64>(0).saturating_add(size) > limit {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO runcast_packets (path, kind, data) VALUES ($1, $2, $3)",
                &[&path, &packet.kind, &packet.data],
            )
            .await?;
            Ok::<_, tokio_postgres::Error>(true)
        };
        let kept = steps.await.map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(kept)
    }

    pub(super) async fn packet(&self, path: &str) -> Result<Option<Packet>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT data, kind FROM runcast_packets
                 WHERE path = $1 AND stored_at >= now() - make_interval(secs => $2)",
                &[&path, &seconds(PACKET_KEPT_FOR)],
            )
            .await
            .map_err(StoreError::from)?;
        Ok(row.map(|row| Packet {
            data: row.get(0),
            kind: row.get(1),
        }))
    }

    pub(super) async fn open_batch(
        &self,
        id: &BatchId,
        run_count: usize,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let run_count = i32::try_from(run_count).map_err(StoreError::new)?;
        client
            .execute(
                "DELETE FROM runcast_open_batches
                 WHERE named_at < now() - make_interval(secs => $1) AND phase <> 'sealing'",
                &[&seconds(BATCH_OPEN_FOR)],
            )
            .await
            .map_err(StoreError::from)?;
        client
            .execute(
                "INSERT INTO runcast_open_batches (id, run_count) VALUES ($1, $2)",
                &[&id.as_str(), &run_count],
            )
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    pub(super) async fn batch_size(&self, id: &BatchId) -> Result<Option<usize>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT run_count FROM runcast_open_batches WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(StoreError::from)?;
        Ok(row.and_then(|row| usize::try_from(row.get::<_, i32>(0)).ok()))
    }

    pub(super) async fn add_items(
        &self,
        id: &BatchId,
        arrived: Vec<(usize, String)>,
    ) -> Result<Filled, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let id = id.as_str();
        let steps = async {
            // Locked: two servers receiving the last items at once seal it once.
            let Some(batch) = tx
                .query_opt(
                    "SELECT run_count, phase,
                            phase = 'sealing' AND named_at < now() - make_interval(secs => $2)
                     FROM runcast_open_batches WHERE id = $1 FOR UPDATE",
                    &[&id, &seconds(SEALING_FOR)],
                )
                .await?
            else {
                return Ok(Filled::Unknown);
            };
            let run_count: i32 = batch.get(0);
            let phase: &str = batch.get(1);
            let abandoned: bool = batch.get(2);
            if abandoned {
                // Its server stopped while it triggered the runs: were they stored?
                let stored = tx
                    .query_one(
                        r#"SELECT EXISTS (SELECT 1 FROM "TaskRun" WHERE "batchId" = $1)"#,
                        &[&id],
                    )
                    .await?;
                let phase = if stored.get(0) { "sealed" } else { "open" };
                tx.execute(
                    "UPDATE runcast_open_batches SET phase = $2 WHERE id = $1",
                    &[&id, &phase],
                )
                .await?;
                if phase == "sealed" {
                    return Ok(Filled::Closed);
                }
            } else if phase != "open" {
                return Ok(Filled::Closed);
            }
            let (indexes, lines): (Vec<i32>, Vec<String>) = arrived
                .into_iter()
                .filter_map(|(index, line)| Some((i32::try_from(index).ok()?, line)))
                .unzip();
            let count = indexes.len();
            let accepted = tx
                .execute(
                    "INSERT INTO runcast_batch_items (batch_id, item, line)
                     SELECT $1, item, line FROM unnest($2::integer[], $3::text[]) AS i (item, line)
                     ON CONFLICT DO NOTHING",
                    &[&id, &indexes, &lines],
                )
                .await?;
            let accepted = usize::try_from(accepted).unwrap_or(count);
            let kept = tx
                .query_one(
                    "SELECT count(*) FROM runcast_batch_items WHERE batch_id = $1",
                    &[&id],
                )
                .await?;
            let seal = if kept.get::<_, i64>(0) == i64::from(run_count) {
                tx.execute(
                    "UPDATE runcast_open_batches SET phase = 'sealing', named_at = now()
                     WHERE id = $1",
                    &[&id],
                )
                .await?;
                let rows = tx
                    .query(
                        "SELECT line FROM runcast_batch_items WHERE batch_id = $1 ORDER BY item",
                        &[&id],
                    )
                    .await?;
                Some(rows.iter().map(|row| row.get(0)).collect())
            } else {
                None
            };
            Ok::<_, tokio_postgres::Error>(Filled::Open {
                accepted,
                duplicates: count - accepted,
                seal,
            })
        };
        let filled = steps.await.map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(filled)
    }

    pub(super) async fn sealed(&self, id: &BatchId, triggered: bool) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = if triggered {
            // Kept, without its items, to answer items sent again.
            "WITH sealed AS (
                 UPDATE runcast_open_batches SET phase = 'sealed' WHERE id = $1 RETURNING id)
             DELETE FROM runcast_batch_items WHERE batch_id IN (SELECT id FROM sealed)"
        } else {
            "UPDATE runcast_open_batches SET phase = 'open' WHERE id = $1"
        };
        client
            .execute(statement, &[&id.as_str()])
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}
