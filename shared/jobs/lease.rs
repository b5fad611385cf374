//! A lock's store lease follows its holder's liveness: it is taken for a short term and renewed
//! by the holding process while the job runs, so a lock whose process died lapses within one
//! term, while a job that holds it long (a member repair paced by the mall's 50 requests a
//! second, a library job waiting on WeCom) keeps it.
//!
//! Why renewal rather than one long term: the term is how long a killed process's locks
//! block the jobs that come after it (a restarted `tagsync serve`, another Lambda instance).
//! With one fixed term it had to outlast the longest job (it was 2 minutes); renewed, it only
//! has to outlast a late beat. The term is the worker's visibility timeout (`--job-timeout`:
//! how fast a dead process's jobs come back), at least [`MIN_TERM`].

use crate::ports::{Clock, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The shortest term of a lease, whatever the visibility: a busy machine may run a beat late.
pub const MIN_TERM: Duration = Duration::from_secs(5);
/// Beats per term: two may be late before the lease lapses under its holder.
const BEATS_PER_TERM: u32 = 3;

/// The term of a lock's lease for a worker whose jobs come back after `visibility`.
pub fn term(visibility: Duration) -> Duration {
    visibility.max(MIN_TERM)
}

/// Renews the lease `name` of `holder` every third of its term until stopped.
pub struct Renewal {
    /// Held while a beat renews; `true` once stopped, so no renewal lands after the release.
    stopped: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Renewal {
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        name: String,
        holder: String,
        term: Duration,
    ) -> Self {
        let stopped = Arc::new(Mutex::new(false));
        let every = term / BEATS_PER_TERM;
        let term_ms = i64::try_from(term.as_millis()).unwrap_or(i64::MAX);
        let task = tokio::spawn({
            let stopped = stopped.clone();
            async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let stopped = stopped.lock().await;
                    if *stopped {
                        return;
                    }
                    let now = clock.now();
                    match store
                        .acquire_lease(&name, &holder, now, now.plus_millis(term_ms))
                        .await
                    {
                        Ok(true) => {}
                        // Lapsed (beats too late) and taken by another worker: the job goes on
                        // without it; the store's conditional writes still refuse a lost race.
                        Ok(false) => {
                            tracing::warn!(lock = %name, "a held lock's lease lapsed and was taken over");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lock = %name, error = %e, "a held lock's lease could not be renewed; trying again next beat");
                        }
                    }
                }
            }
        });
        Self { stopped, task }
    }

    /// No renewal after this returns (waits for a beat in progress).
    pub async fn stop(&self) {
        *self.stopped.lock().await = true;
        self.task.abort();
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SystemClock;
    use crate::store::sqlite::{SqliteDb, open_store};
    use std::time::Instant;

    const TERM: Duration = Duration::from_secs(1);

    async fn take(store: &Arc<dyn Store>, holder: &str) -> bool {
        let now = SystemClock.now();
        let until = now.plus_millis(TERM.as_millis() as i64);
        store.acquire_lease("L", holder, now, until).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewed_lease_outlives_its_term_and_lapses_once_its_holder_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(open_store(&SqliteDb::open_in_dir(dir.path()).unwrap()));
        assert!(take(&store, "a").await);
        let renewal = Renewal::start(
            store.clone(),
            Arc::new(SystemClock),
            "L".into(),
            "a".into(),
            TERM,
        );
        // Three terms on, the holder still has it: nobody else could take it meanwhile.
        let held_since = Instant::now();
        while held_since.elapsed() < TERM * 3 {
            assert!(!take(&store, "b").await, "taken from a live holder");
            tokio::time::sleep(TERM / 10).await;
        }
        // The holder's process is gone (its task dropped, nothing released): the lease lapses
        // one term after its last renewal and another worker takes it (two allowed: a busy
        // machine).
        drop(renewal);
        let gone = Instant::now();
        while !take(&store, "b").await {
            assert!(
                gone.elapsed() < TERM * 3,
                "the dead holder's lease never lapsed"
            );
            tokio::time::sleep(TERM / 10).await;
        }
        assert!(gone.elapsed() <= TERM * 2, "{:?}", gone.elapsed());
    }
}
