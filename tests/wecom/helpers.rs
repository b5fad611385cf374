//! A simulator, a store in a temp dir and a client pointed at the simulator, per test.

use std::sync::Arc;
use std::time::Duration;

use tagsync::domain::Timestamp;
use tagsync::ports::{Clock, ManualClock, Store, SystemClock};
use tagsync::sim::wecom::{SimConfig, WecomSim};
use tagsync::store::sqlite::{SqliteDb, open_store};
use tagsync::wecom::budget::BudgetConfig;
use tagsync::wecom::client::{WecomClient, WecomCredentials};

pub struct Harness {
    pub sim: WecomSim,
    pub client: WecomClient,
    pub creds: WecomCredentials,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

pub async fn harness() -> Harness {
    harness_with(SimConfig::default(), Arc::new(SystemClock)).await
}

/// `client_clock` is the client's "now" (token expiry, 45009 windows); the simulator's is
/// `config.clock`.
pub async fn harness_with(config: SimConfig, client_clock: Arc<dyn Clock>) -> Harness {
    let sim = WecomSim::start(config).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let client = client(&sim, store.clone(), client_clock);
    let creds = sim.credentials();
    Harness {
        sim,
        client,
        creds,
        store,
        dir,
    }
}

/// A store on the SQLite file of `dir`; each call opens its own connection, like a process.
pub fn store_in(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(open_store(&SqliteDb::open_in_dir(dir).unwrap()))
}

pub fn client(sim: &WecomSim, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> WecomClient {
    WecomClient::new(
        reqwest::Client::new(),
        sim.base_url(),
        store,
        clock,
        BudgetConfig::default(),
    )
}

/// A manual clock starting at the wall clock's now (store leases and TTLs stay sensible).
pub fn manual_clock() -> ManualClock {
    ManualClock::starting_at(Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    ))
}

/// Polls `cond` until it holds; panics with `what` after 5 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
