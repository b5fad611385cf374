//! The worker's heartbeat: while a worker holds deliveries (the one it runs and the rest of
//! its receive batch waiting their turn), it extends their visibility every third of the
//! timeout, so a job that runs longer than one visibility timeout — a members page or a bulk
//! chunk paced by the mall's 50 requests a second — is not delivered to a second worker while
//! it still runs. A job that truly hangs still ends: the worker stops it at its run cap
//! ([`crate::config::WorkerConfig::run_cap`]), and with nobody beating for it its visibility
//! then lapses like any unsettled job's.
//!
//! Why a heartbeat rather than a longer visibility: the visibility is also how fast a job
//! comes back after its process died (`--job-timeout`); the heartbeat keeps that short while
//! letting a live job take as long as its work needs.

use crate::ports::{Delivery, Queue, QueueError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Keeps deliveries invisible until each is released; stops beating when dropped.
pub struct Heartbeat {
    held: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// How often the heartbeat extends, as a fraction of the visibility: two beats may be
    /// late (a busy machine, a slow store) before a held job could lapse.
    pub const BEATS_PER_VISIBILITY: u32 = 3;

    /// Starts beating for `deliveries`, each extended by `visibility` from every beat.
    pub fn start(queue: Arc<dyn Queue>, deliveries: &[Delivery], visibility: Duration) -> Self {
        let held = Arc::new(Mutex::new(deliveries.to_vec()));
        let every = (visibility / Self::BEATS_PER_VISIBILITY).max(Duration::from_millis(50));
        let task = tokio::spawn({
            let held = held.clone();
            async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // Held across the extends: `release` waits for a beat in progress, so no
                    // extend lands after the job's own settlement (on SQS it would undo a
                    // retry's delay).
                    let mut held = held.lock().await;
                    if held.is_empty() {
                        continue;
                    }
                    let mut lost = Vec::new();
                    for d in held.iter() {
                        match queue.extend(d, visibility).await {
                            Ok(()) => {}
                            Err(QueueError::StaleReceipt(e)) => {
                                tracing::warn!(message_id = %d.message_id, error = e, "a held job's visibility lapsed before its heartbeat; another worker may run it too");
                                lost.push(d.receipt.clone());
                            }
                            Err(e) => {
                                tracing::warn!(message_id = %d.message_id, error = %e, "heartbeat could not extend a held job's visibility; trying again next beat");
                            }
                        }
                    }
                    held.retain(|d| !lost.contains(&d.receipt));
                }
            }
        });
        Self { held, task }
    }

    /// The delivery is about to be settled (or given back): stop extending it. Waits for a
    /// beat in progress.
    pub async fn release(&self, delivery: &Delivery) {
        self.held
            .lock()
            .await
            .retain(|d| d.receipt != delivery.receipt);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
