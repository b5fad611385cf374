//! Jobs that outlive their visibility timeout: the worker's heartbeat keeps a running job (and
//! the rest of its receive batch) invisible, so it runs once; a job that hangs still ends at
//! its run cap, retried and then parked with that reason.

use crate::helpers::*;
use std::time::Duration;
use tagsync::domain::{Job, JobKind, TenantId, Timestamp};
use tagsync::metrics::JOBS;
use tagsync::ports::QueueCounts;

fn slow_probe(work_ms: u64) -> Job {
    Job::new(
        TenantId::parse("acme").unwrap(),
        JobKind::Probe {
            note: "slow".into(),
            fail: false,
            work_ms,
            panic: false,
        },
        Timestamp::from_millis(0),
    )
}

async fn settled(t: &TestApp, within: Duration) -> QueueCounts {
    wait_for("the queue to settle", within, || async {
        let c = t.app.queue.counts().await.unwrap();
        (c.pending == 0 && c.in_flight == 0).then_some(c)
    })
    .await
}

fn settled_as(t: &TestApp, outcome: &str) -> u64 {
    t.app
        .metrics
        .get(JOBS, &[("kind", "probe"), ("outcome", outcome)])
}

/// Two workers, a 1-second visibility timeout, jobs of 3 seconds: without the heartbeat the
/// idle worker receives each one again after a second and runs it a second time.
#[tokio::test]
async fn a_job_running_three_times_its_visibility_timeout_runs_once_not_twice() {
    let t = spawn_app_with(|c| c.worker.visibility = Duration::from_secs(1)).await;
    t.put_tenant("acme").await;
    // Three: one worker takes a batch of them, so two wait behind the first while it runs.
    let jobs: Vec<Job> = (0..3).map(|_| slow_probe(3_000)).collect();
    t.app.queue.send(&jobs).await.unwrap();
    let counts = settled(&t, Duration::from_secs(30)).await;
    assert_eq!(counts.dead, 0);
    assert_eq!(settled_as(&t, "done"), 3, "each job ran (and settled) once");
    assert_eq!(settled_as(&t, "retried"), 0);
    let processed = t
        .audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "probe.processed")
        .count();
    assert_eq!(processed, 3);
    t.shutdown().await;
}

#[tokio::test]
async fn a_job_that_hangs_is_stopped_at_its_run_cap_and_parked_with_that_reason() {
    let t = spawn_app_with(|c| {
        c.worker.visibility = Duration::from_secs(1);
        c.worker.max_run = Duration::from_millis(1_500);
    })
    .await;
    t.put_tenant("acme").await;
    let job = slow_probe(600_000);
    t.app.queue.send(std::slice::from_ref(&job)).await.unwrap();
    // 5 tries of 1.5 s each, with the test's short backoff.
    let counts = settled(&t, Duration::from_secs(40)).await;
    assert_eq!(counts.dead, 1);
    let letters = t.app.queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].receive_count, 5, "every try ran to the cap");
    assert!(
        letters[0].reason.contains("longer than its cap of 1.5 s")
            && letters[0].reason.contains("5 tries"),
        "{}",
        letters[0].reason
    );
    assert_eq!(settled_as(&t, "retried"), 4);
    assert_eq!(settled_as(&t, "parked"), 1);
    t.shutdown().await;
}
