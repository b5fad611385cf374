//! Starting reconciliation runs through the admin API and reading their reports; shared by
//! `tests/reconcile/` and `tests/cloud/` (which includes it with `#[path]`).

use crate::steps::*;
use crate::support::world::World;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Starts a run of `scope` through the admin API and waits for its report to say done.
pub async fn run_sync(w: &World, scope: &str) -> Value {
    let (status, body) = w
        .admin(
            Method::POST,
            "/sync",
            Some(serde_json::json!({ "scope": scope })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run = s(&body["run_id"]);
    wait_run(w, &run).await
}

/// Polls `GET …/sync/{run}` until the run is no longer running, then lets the queue settle.
pub async fn wait_run(w: &World, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, report) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
        assert_eq!(status, 200, "{report}");
        if report["status"] != "running" {
            assert_eq!(report["status"], "done", "{report:#}");
            settle(w).await;
            return report;
        }
        assert!(Instant::now() < deadline, "run still going: {report:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The report's counters of `map` (`drift`, `repaired`, `skipped`) as `(name, n)` pairs.
pub fn counts(report: &Value, map: &str) -> Vec<(String, u64)> {
    report[map]
        .as_object()
        .unwrap_or_else(|| panic!("report without {map}: {report:#}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect()
}

pub fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = list.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
    v.sort();
    v
}
