//! The durable SQLite queue of `tagsync serve`, in the same database file as the store.
//!
//! Semantics follow SQS so one worker loop serves both: a received job is invisible until
//! its visibility timeout; a job received `max_receives` times whose visibility lapses again
//! (e.g. the process died mid-job) is parked, like SQS's redrive policy does.

use crate::domain::{Job, TenantId, Timestamp};
use crate::ports::{Clock, DeadLetter, Delivery, Queue, QueueCounts, QueueError};
use crate::store::sqlite::SqliteDb;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;

pub struct SqliteQueue {
    db: SqliteDb,
    clock: Arc<dyn Clock>,
    max_receives: u32,
    /// Wakes a waiting `receive` when jobs are sent from this process.
    notify: Arc<tokio::sync::Notify>,
}

fn unavailable(op: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError {
    move |e| QueueError::Unavailable {
        op,
        message: e.to_string(),
    }
}

/// Longest pause between two looks at the table while a `receive` waits (a job may become
/// visible by time alone, or be sent by another process on the same file).
const POLL: Duration = Duration::from_millis(200);

impl SqliteQueue {
    pub fn new(db: SqliteDb, clock: Arc<dyn Clock>, max_receives: u32) -> Self {
        Self {
            db,
            clock,
            max_receives: max_receives.max(1),
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    async fn receive_now(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let now = self.clock.now().millis();
        let until = now + visibility.as_millis() as i64;
        let max_receives = self.max_receives as i64;
        self.db
            .write(move |c| -> rusqlite::Result<Vec<Delivery>> {
                // A job whose visibility lapsed after its last allowed receive is parked, not
                // delivered again (the worker never got to decide: it crashed or hung).
                c.execute(
                    "UPDATE jobs SET state = 'dead', receipt = NULL, parked_at = ?1,
                         last_error = COALESCE(last_error, 'not acknowledged within its visibility timeout') ||
                                      ' (received ' || receive_count || ' times)'
                     WHERE state = 'ready' AND receipt IS NOT NULL AND visible_at <= ?1 AND receive_count >= ?2",
                    params![now, max_receives],
                )?;
                let mut out = Vec::new();
                {
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, message_id, body, receive_count FROM jobs
                         WHERE state = 'ready' AND visible_at <= ?1 ORDER BY visible_at, seq LIMIT ?2",
                    )?;
                    let rows = stmt.query_map(params![now, max as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
                    })?;
                    for row in rows {
                        let (seq, message_id, body, count) = row?;
                        let receipt = uuid::Uuid::new_v4().simple().to_string();
                        out.push((seq, Delivery {
                            job: serde_json::from_str::<Job>(&body).map_err(|_| body.clone()),
                            message_id,
                            receipt,
                            receive_count: (count + 1) as u32,
                        }));
                    }
                }
                for (seq, d) in &out {
                    c.execute(
                        "UPDATE jobs SET receipt = ?1, visible_at = ?2, receive_count = receive_count + 1 WHERE seq = ?3",
                        params![d.receipt, until, seq],
                    )?;
                }
                Ok(out.into_iter().map(|(_, d)| d).collect())
            })
            .await
            .map_err(unavailable("receive"))
    }

    /// Counts the jobs of `tenant`, or of everyone.
    async fn count_where(&self, tenant: Option<String>) -> Result<QueueCounts, QueueError> {
        let now = self.clock.now().millis();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT
                        COALESCE(SUM(state = 'ready' AND (receipt IS NULL OR visible_at <= ?1)), 0),
                        COALESCE(SUM(state = 'ready' AND receipt IS NOT NULL AND visible_at > ?1), 0),
                        COALESCE(SUM(state = 'dead'), 0)
                     FROM jobs WHERE ?2 IS NULL OR tenant = ?2",
                    params![now, tenant],
                    |r| Ok(QueueCounts { pending: r.get::<_, i64>(0)? as u64, in_flight: r.get::<_, i64>(1)? as u64, dead: r.get::<_, i64>(2)? as u64 }),
                )
            })
            .await
            .map_err(unavailable("counts"))
    }

    /// Runs `update` against the in-flight row of `delivery` (it gets the receipt); no row
    /// changed means the receipt is stale: the job timed out and was received again.
    async fn settle(
        &self,
        op: &'static str,
        delivery: &Delivery,
        update: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<(), QueueError> {
        let receipt = delivery.receipt.clone();
        let changed = self
            .db
            .write(move |c| update(c, &receipt))
            .await
            .map_err(unavailable(op))?;
        if changed == 0 {
            return Err(QueueError::StaleReceipt(format!(
                "{op}: message {} is no longer held by this receipt",
                delivery.message_id
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let rows = jobs
            .iter()
            .map(|j| {
                serde_json::to_string(j)
                    .map(|body| (j.id.to_string(), j.tenant.to_string(), body))
                    .map_err(|e| {
                        QueueError::Invalid(format!("job {} does not serialise: {e}", j.id))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.clock.now().millis();
        self.db
            .write(move |c| -> rusqlite::Result<()> {
                {
                    // Re-sending a job id already queued is a no-op (its first copy is there).
                    let mut stmt = c.prepare_cached(
                        "INSERT OR IGNORE INTO jobs (message_id, tenant, body, state, visible_at) VALUES (?1, ?2, ?3, 'ready', ?4)",
                    )?;
                    for (id, tenant, body) in &rows {
                        stmt.execute(params![id, tenant, body, now])?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(unavailable("send"))?;
        self.notify.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let got = self.receive_now(max.max(1), visibility).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout(POLL.min(deadline - now), notified).await;
        }
    }

    async fn extend(&self, delivery: &Delivery, visibility: Duration) -> Result<(), QueueError> {
        let now = self.clock.now().millis();
        let visible_at = now + visibility.as_millis() as i64;
        self.settle("extend", delivery, move |c, receipt| {
            // Only while it is still invisible: once it lapsed anyone may receive it again,
            // so the holder has lost it (and the next receive may park it).
            c.execute(
                "UPDATE jobs SET visible_at = ?2 WHERE receipt = ?1 AND state = 'ready' AND visible_at > ?3",
                params![receipt, visible_at, now],
            )
        })
        .await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.settle("ack", delivery, |c, receipt| {
            c.execute(
                "DELETE FROM jobs WHERE receipt = ?1 AND state = 'ready'",
                params![receipt],
            )
        })
        .await
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError> {
        let visible_at = self.clock.now().millis() + delay.as_millis() as i64;
        let error = error.to_string();
        self.settle("retry", delivery, move |c, receipt| {
            c.execute(
                "UPDATE jobs SET receipt = NULL, last_error = ?2, visible_at = ?3 WHERE receipt = ?1 AND state = 'ready'",
                params![receipt, error, visible_at],
            )
        })
        .await
    }

    async fn reschedule(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        let visible_at = self.clock.now().millis() + delay.as_millis() as i64;
        let reason = reason.to_string();
        self.settle("reschedule", delivery, move |c, receipt| {
            c.execute(
                "UPDATE jobs SET receipt = NULL, last_error = ?2, visible_at = ?3,
                        receive_count = MAX(receive_count - 1, 0)
                 WHERE receipt = ?1 AND state = 'ready'",
                params![receipt, reason, visible_at],
            )
        })
        .await
    }

    async fn park(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let now = self.clock.now().millis();
        let reason = reason.to_string();
        self.settle("park", delivery, move |c, receipt| {
            c.execute(
                "UPDATE jobs SET state = 'dead', receipt = NULL, last_error = ?2, parked_at = ?3 WHERE receipt = ?1 AND state = 'ready'",
                params![receipt, reason, now],
            )
        })
        .await
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.count_where(None).await
    }

    async fn tenant_counts(&self, tenant: &TenantId) -> Result<Option<QueueCounts>, QueueError> {
        self.count_where(Some(tenant.to_string())).await.map(Some)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.db
            .read(move |c| -> rusqlite::Result<Vec<DeadLetter>> {
                let mut stmt = c.prepare_cached(
                    "SELECT message_id, body, COALESCE(last_error, ''), receive_count, parked_at FROM jobs
                     WHERE state = 'dead' ORDER BY parked_at DESC, seq DESC LIMIT ?1",
                )?;
                let rows = stmt.query_map(params![limit.max(1) as i64], |r| {
                    let body: String = r.get(1)?;
                    Ok(DeadLetter {
                        message_id: r.get(0)?,
                        job: serde_json::from_str(&body).ok(),
                        body,
                        reason: r.get(2)?,
                        receive_count: r.get::<_, i64>(3)? as u32,
                        parked_at: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
                    })
                })?;
                rows.collect()
            })
            .await
            .map_err(unavailable("dead_letters"))
    }

    async fn redrive(&self, message_ids: Option<&[String]>) -> Result<usize, QueueError> {
        let ids = message_ids.map(|ids| ids.to_vec());
        let now = self.clock.now().millis();
        let moved = self
            .db
            .write(move |c| -> rusqlite::Result<usize> {
                const RESET: &str = "UPDATE jobs SET state = 'ready', receipt = NULL, receive_count = 0, visible_at = ?1, parked_at = NULL
                                     WHERE state = 'dead'";
                match ids {
                    None => c.execute(RESET, params![now]),
                    Some(ids) => {
                        let mut n = 0;
                        for id in &ids {
                            n += c.execute(&format!("{RESET} AND message_id = ?2"), params![now, id])?;
                        }
                                Ok(n)
                    }
                }
            })
            .await
            .map_err(unavailable("redrive"))?;
        self.notify.notify_waiters();
        Ok(moved)
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}

/// Reads one job's stored state (diagnostics and tests).
pub async fn job_state(db: &SqliteDb, message_id: &str) -> Option<(String, u32)> {
    let id = message_id.to_string();
    db.read(move |c| {
        c.query_row(
            "SELECT state, receive_count FROM jobs WHERE message_id = ?1",
            params![id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u32)),
        )
        .optional()
    })
    .await
    .ok()
    .flatten()
}
