//! The in-process worker pool: jobs run once, failures retry with backoff and park, dead
//! letters are listed and redriven through the admin API.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tagsync::domain::{Job, JobKind, TenantId};
use tagsync::ports::QueueCounts;

fn probe(tenant: &str, fail: bool) -> Job {
    Job::new(
        TenantId::parse(tenant).unwrap(),
        JobKind::Probe {
            note: "test".into(),
            fail,
            work_ms: 0,
            panic: false,
        },
        tagsync::domain::Timestamp::from_millis(0),
    )
}

/// A probe that panics on every try.
fn panicking_probe(tenant: &str) -> Job {
    Job::new(
        TenantId::parse(tenant).unwrap(),
        JobKind::Probe {
            note: "panic".into(),
            fail: false,
            work_ms: 0,
            panic: true,
        },
        tagsync::domain::Timestamp::from_millis(0),
    )
}

async fn settled(t: &TestApp) -> QueueCounts {
    wait_for("the queue to settle", Duration::from_secs(20), || async {
        let c = t.app.queue.counts().await.unwrap();
        (c.pending == 0 && c.in_flight == 0).then_some(c)
    })
    .await
}

#[tokio::test]
async fn queued_probe_jobs_each_run_exactly_once() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let jobs: Vec<Job> = (0..40).map(|_| probe("acme", false)).collect();
    t.app.queue.send(&jobs).await.unwrap();
    let counts = settled(&t).await;
    assert_eq!(counts.dead, 0);
    let processed: Vec<_> = t
        .audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "probe.processed")
        .collect();
    assert_eq!(processed.len(), 40);
    let mut ids: Vec<_> = processed
        .iter()
        .map(|e| e["entity"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every job recorded once");
    t.shutdown().await;
}

#[tokio::test]
async fn a_job_run_twice_has_one_effect() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let job = probe("acme", false);
    assert_eq!(
        tagsync::jobs::worker::run_job(&t.app, &job).await,
        tagsync::jobs::worker::Outcome::Done
    );
    assert_eq!(
        tagsync::jobs::worker::run_job(&t.app, &job).await,
        tagsync::jobs::worker::Outcome::Done
    );
    let processed = t
        .audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "probe.processed")
        .count();
    assert_eq!(processed, 1);
    t.shutdown().await;
}

#[tokio::test]
async fn a_failing_job_is_retried_then_parked_with_its_reason() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let job = probe("acme", true);
    t.app.queue.send(std::slice::from_ref(&job)).await.unwrap();
    let counts = settled(&t).await;
    assert_eq!(counts.dead, 1);
    let (status, body) = t
        .admin(Method::GET, "/admin/v1/tenants/acme/dead-letters", None)
        .await;
    assert_eq!(status, 200);
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["job_id"], job.id.to_string());
    assert_eq!(letters[0]["receive_count"], 5, "parked after max receives");
    let error = letters[0]["error"].as_str().unwrap();
    assert!(
        error.contains("probe asked to fail") && error.contains("5 tries"),
        "{error}"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn a_parked_job_succeeds_when_redriven_after_its_cause_is_fixed() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    // A job for a tenant that is not registered yet is parked at once: retrying cannot help.
    let job = probe("late", false);
    t.app.queue.send(std::slice::from_ref(&job)).await.unwrap();
    assert_eq!(settled(&t).await.dead, 1);
    let letters = t.app.queue.dead_letters(10).await.unwrap();
    assert!(
        letters[0].reason.contains("unknown tenant"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        letters[0].receive_count, 1,
        "a permanent failure is not retried"
    );

    // The operator fixes the cause, sees the dead letter and redrives it.
    t.put_tenant("late").await;
    let (_, listed) = t
        .admin(Method::GET, "/admin/v1/tenants/late/dead-letters", None)
        .await;
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 1);
    let (_, other) = t
        .admin(Method::GET, "/admin/v1/tenants/acme/dead-letters", None)
        .await;
    assert_eq!(
        other["dead_letters"].as_array().unwrap().len(),
        0,
        "another tenant's dead letters are not shown"
    );
    let (status, r) = t
        .admin(
            Method::POST,
            "/admin/v1/tenants/late/dead-letters:redrive",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["redriven"], 1);
    let counts = settled(&t).await;
    assert_eq!(counts.dead, 0);
    let processed = t
        .audit("late")
        .await
        .into_iter()
        .filter(|e| e["action"] == "probe.processed")
        .count();
    assert_eq!(processed, 1);
    t.shutdown().await;
}

/// Jobs that panic, on every try, more often than the pool has workers: each panic ends only
/// its job (retried, then parked with the panic's message), never a worker — the jobs sent
/// afterwards are all done by the same two workers.
#[tokio::test]
async fn a_panicking_job_is_parked_with_its_message_and_the_pool_keeps_processing() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    // 3 jobs × 5 tries = 15 panics on a pool of 2 workers.
    let panicking: Vec<Job> = (0..3).map(|_| panicking_probe("acme")).collect();
    t.app.queue.send(&panicking).await.unwrap();
    let counts = settled(&t).await;
    assert_eq!(counts.dead, 3);

    let later: Vec<Job> = (0..10).map(|_| probe("acme", false)).collect();
    t.app.queue.send(&later).await.unwrap();
    let counts = settled(&t).await;
    assert_eq!(counts.dead, 3, "the later jobs are done, not parked");
    let processed = t
        .audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "probe.processed")
        .count();
    assert_eq!(processed, 10, "every later job ran");

    let (status, body) = t
        .admin(Method::GET, "/admin/v1/tenants/acme/dead-letters", None)
        .await;
    assert_eq!(status, 200);
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3, "{body}");
    for letter in letters {
        assert_eq!(
            letter["receive_count"], 5,
            "retried before parking: {letter}"
        );
        let error = letter["error"].as_str().unwrap();
        assert!(
            error.contains("the job panicked: probe asked to panic")
                && error.contains("gave up after 5 tries"),
            "{error}"
        );
    }
    let parked = tagsync::metrics::JOBS;
    assert_eq!(
        t.app
            .metrics
            .get(parked, &[("kind", "probe"), ("outcome", "parked")]),
        3
    );
    t.shutdown().await;
}

/// Two tenants with work queued on one SQLite queue: each tenant's status counts only its own
/// jobs — waiting, running and parked — and says so (`scope: tenant`).
#[tokio::test]
async fn status_counts_only_the_asked_tenants_jobs_when_two_tenants_are_busy() {
    let dir = tempfile::tempdir().unwrap();
    let app = sqlite_app(dir.path()).await;
    for tenant in ["acme", "beta"] {
        let mut t = tagsync_tenant(tenant);
        app.store.put_tenant(&mut t).await.unwrap();
    }
    let acme: Vec<Job> = (0..3).map(|_| probe("acme", false)).collect();
    let beta: Vec<Job> = (0..2).map(|_| probe("beta", false)).collect();
    app.queue.send(&acme).await.unwrap();
    app.queue.send(&beta).await.unwrap();
    // Two of acme's jobs are received (the oldest first); one of them is parked.
    let received = app
        .queue
        .receive(2, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
    for d in &received {
        assert_eq!(d.job.as_ref().unwrap().tenant.as_str(), "acme");
    }
    app.queue.park(&received[0], "test").await.unwrap();

    let acme = status_of(&app, "acme").await;
    assert_eq!(
        acme["queue"],
        json!({"pending": 1, "in_flight": 1, "dead": 1, "scope": "tenant"}),
        "{acme}"
    );
    let beta = status_of(&app, "beta").await;
    assert_eq!(
        beta["queue"],
        json!({"pending": 2, "in_flight": 0, "dead": 0, "scope": "tenant"}),
        "{beta}"
    );
    let all = app.queue.counts().await.unwrap();
    assert_eq!((all.pending, all.in_flight, all.dead), (3, 1, 1));
}
