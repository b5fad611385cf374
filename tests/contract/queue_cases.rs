//! Queue cases: written once against `dyn Queue`, run on every backend (see `main.rs`).
//!
//! Time-dependent outcomes are awaited by polling with a deadline, never by a bare sleep:
//! SQS works in whole seconds and moto's clock is not ours.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tagsync::domain::*;
use tagsync::ports::{Clock, Delivery, Queue, QueueCounts, SystemClock};
use tokio::time::Instant;

/// Long enough that a delivery does not reappear during a case that does not want it to.
const HOLD: Duration = Duration::from_secs(60);
/// The visibility timeout / retry delay the timing cases wait out.
const SHORT: Duration = Duration::from_secs(2);
/// How long a case waits for something that should happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(20);

fn job(note: &str) -> Job {
    Job::new(
        TenantId::parse("t1").expect("tenant id"),
        JobKind::Probe {
            note: note.into(),
            fail: false,
            work_ms: 0,
            panic: false,
        },
        SystemClock.now(),
    )
}

fn counts(pending: u64, in_flight: u64, dead: u64) -> QueueCounts {
    QueueCounts {
        pending,
        in_flight,
        dead,
    }
}

/// Receives until `n` deliveries arrived (a receive may return fewer than asked for).
async fn receive_n(queue: &dyn Queue, n: usize, visibility: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "received {} of {n} jobs within {PATIENCE:?}",
            got.len()
        );
        let batch = queue
            .receive(n - got.len(), visibility, Duration::from_secs(1))
            .await
            .expect("receive");
        got.extend(batch);
    }
    got
}

async fn receive_one(queue: &dyn Queue, visibility: Duration) -> Delivery {
    receive_n(queue, 1, visibility).await.remove(0)
}

/// Nothing is deliverable right now.
async fn assert_nothing_deliverable(queue: &dyn Queue, why: &str) {
    let got = queue
        .receive(10, HOLD, Duration::ZERO)
        .await
        .expect("receive");
    assert!(got.is_empty(), "{why}: received {got:?}");
}

/// Polls `counts` until `expected` holds (the AWS counts are approximate and may lag).
async fn expect_counts(queue: &dyn Queue, expected: QueueCounts, step: &str) {
    expect_counts_where(queue, step, &format!("{expected:?}"), |c| c == expected).await;
}

async fn expect_counts_where(
    queue: &dyn Queue,
    step: &str,
    expected: &str,
    holds: impl Fn(QueueCounts) -> bool,
) -> QueueCounts {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = queue.counts().await.expect("counts");
        if holds(c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "after {step}: counts are {c:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn received_job_is_invisible_until_its_visibility_timeout_then_redelivered(
    queue: Arc<dyn Queue>,
) {
    let queue = &*queue;
    let sent = job("visibility");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    expect_counts(queue, counts(1, 0, 0), "send").await;

    let first = receive_one(queue, SHORT).await;
    let received_at = Instant::now();
    assert_eq!(first.job.as_ref().ok(), Some(&sent));
    assert_eq!(first.receive_count, 1);
    expect_counts(queue, counts(0, 1, 0), "receive").await;
    assert_nothing_deliverable(queue, "a received job is invisible to other receivers").await;

    let again = receive_one(queue, HOLD).await;
    assert!(
        received_at.elapsed() >= SHORT / 2,
        "redelivered after {:?}, before its {SHORT:?} visibility timeout",
        received_at.elapsed()
    );
    assert_eq!(
        again.message_id, first.message_id,
        "the same message comes back"
    );
    assert_eq!(again.job.as_ref().ok(), Some(&sent));
    assert_eq!(again.receive_count, 2);
    expect_counts(queue, counts(0, 1, 0), "redelivery").await;

    queue.ack(&again).await.expect("ack");
    expect_counts(queue, counts(0, 0, 0), "ack").await;
    assert_nothing_deliverable(queue, "an acked job is gone").await;
}

pub async fn extended_job_stays_invisible_for_three_visibility_timeouts_then_comes_back_once_the_extends_stop(
    queue: Arc<dyn Queue>,
) {
    let queue = &*queue;
    let sent = job("heartbeat");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    let held = receive_one(queue, SHORT).await;
    // A heartbeat: extended every third of the visibility for three visibilities.
    let until = Instant::now() + SHORT * 3;
    while Instant::now() < until {
        tokio::time::sleep(SHORT / 3).await;
        queue.extend(&held, SHORT).await.expect("extend a held job");
        assert_nothing_deliverable(queue, "an extended job is invisible to other receivers").await;
    }
    expect_counts(queue, counts(0, 1, 0), "extends").await;

    let stopped = Instant::now();
    let again = receive_one(queue, HOLD).await;
    assert!(
        stopped.elapsed() >= SHORT / 2,
        "redelivered {:?} after the last extend, before its {SHORT:?} visibility",
        stopped.elapsed()
    );
    assert_eq!(again.message_id, held.message_id);
    assert_eq!(
        again.receive_count, 2,
        "received once while it was extended"
    );
    queue.ack(&again).await.expect("ack");
    expect_counts(queue, counts(0, 0, 0), "ack").await;
}

pub async fn retried_job_is_delivered_again_after_its_delay(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let sent = job("retry");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    let first = receive_one(queue, HOLD).await;

    queue
        .retry(&first, SHORT, "wecom errcode 45009: api freq out of limit")
        .await
        .expect("retry");
    let retried_at = Instant::now();
    assert_nothing_deliverable(queue, "a retried job waits out its delay").await;
    // Still queued, not dead. SQS cannot tell a backoff from an in-flight delivery (a retry
    // only moves the visibility timeout), so either bucket is accepted here.
    expect_counts_where(
        queue,
        "retry",
        "one job pending or in flight, none dead",
        |c| c.pending + c.in_flight == 1 && c.dead == 0,
    )
    .await;

    let again = receive_one(queue, HOLD).await;
    assert!(
        retried_at.elapsed() >= SHORT / 2,
        "redelivered after {:?}, before its {SHORT:?} delay",
        retried_at.elapsed()
    );
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.job.as_ref().ok(), Some(&sent));
    assert_eq!(again.receive_count, 2, "a retry counts as another receive");
    queue.ack(&again).await.expect("ack");
    expect_counts(queue, counts(0, 0, 0), "ack").await;
}

/// A job waiting for a rate window is not failing: after its delay it comes back with the
/// receive count it had, so waits never bring it nearer to the dead letters.
pub async fn rescheduled_job_comes_back_after_its_delay_without_counting_the_receive(
    queue: Arc<dyn Queue>,
) {
    let queue = &*queue;
    let sent = job("reschedule");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    let first = receive_one(queue, HOLD).await;
    assert_eq!(first.receive_count, 1);
    let mut latest = first;
    for round in 1..=(queue.max_receives() + 1) {
        queue
            .reschedule(
                &latest,
                SHORT,
                "the mark_tag budget is spent until the minute ends",
            )
            .await
            .expect("reschedule");
        let at = Instant::now();
        assert_nothing_deliverable(queue, "a rescheduled job waits out its delay").await;
        let again = receive_one(queue, HOLD).await;
        assert!(
            at.elapsed() >= SHORT / 2,
            "round {round}: delivered after {:?}, before its {SHORT:?} delay",
            at.elapsed()
        );
        assert_eq!(again.job.as_ref().ok(), Some(&sent));
        assert_eq!(
            again.receive_count, 1,
            "round {round}: a rescheduled receive does not count"
        );
        latest = again;
    }
    queue.ack(&latest).await.expect("ack");
    expect_counts(queue, counts(0, 0, 0), "ack").await;
    assert!(
        queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .is_empty(),
        "never parked"
    );
}

pub async fn parked_job_is_counted_listed_with_its_reason_and_redriven(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let (a, b) = (job("parked a"), job("parked b"));
    queue.send(&[a.clone(), b.clone()]).await.expect("send");
    let deliveries = receive_n(queue, 2, HOLD).await;
    let find = |j: &Job| {
        deliveries
            .iter()
            .find(|d| d.job.as_ref().ok() == Some(j))
            .expect("both jobs received")
            .clone()
    };
    let (da, db) = (find(&a), find(&b));

    queue
        .park(&da, "mall answered 400: tag name too long")
        .await
        .expect("park a");
    queue.park(&db, "unknown job kind").await.expect("park b");
    expect_counts(queue, counts(0, 0, 2), "park").await;

    let listed = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let dead_a = listed
        .iter()
        .find(|d| d.message_id == da.message_id)
        .unwrap_or_else(|| panic!("{} listed by its message id: {listed:?}", da.message_id));
    assert_eq!(dead_a.reason, "mall answered 400: tag name too long");
    assert_eq!(dead_a.job.as_ref(), Some(&a));
    assert_eq!(
        serde_json::from_str::<Job>(&dead_a.body).ok(),
        Some(a.clone())
    );

    // Listing does not take dead letters away.
    let relisted = queue.dead_letters(10).await.expect("dead letters again");
    let ids = |l: &[tagsync::ports::DeadLetter]| {
        l.iter()
            .map(|d| d.message_id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&relisted), ids(&listed));
    expect_counts(queue, counts(0, 0, 2), "listing").await;

    let moved = queue
        .redrive(Some(std::slice::from_ref(&da.message_id)))
        .await
        .expect("redrive a");
    assert_eq!(moved, 1, "only the named dead letter moves");
    expect_counts(queue, counts(1, 0, 1), "redrive of a").await;
    let remaining = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(
        remaining.iter().map(|d| d.job.clone()).collect::<Vec<_>>(),
        [Some(b.clone())]
    );

    let back = receive_one(queue, HOLD).await;
    assert_eq!(
        back.job.as_ref().ok(),
        Some(&a),
        "the redriven job is received again"
    );
    assert_eq!(
        back.receive_count, 1,
        "a redriven job starts counting afresh"
    );

    assert_eq!(queue.redrive(None).await.expect("redrive all"), 1);
    expect_counts(queue, counts(1, 1, 0), "redrive of the rest").await;
    let back_b = receive_one(queue, HOLD).await;
    assert_eq!(back_b.job.as_ref().ok(), Some(&b));
    queue.ack(&back).await.expect("ack a");
    queue.ack(&back_b).await.expect("ack b");
    expect_counts(queue, counts(0, 0, 0), "ack").await;
}

pub async fn counts_track_pending_in_flight_and_dead(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    expect_counts(queue, counts(0, 0, 0), "start").await;
    queue
        .send(&[job("one"), job("two"), job("three")])
        .await
        .expect("send");
    expect_counts(queue, counts(3, 0, 0), "send of 3").await;

    let two = receive_n(queue, 2, HOLD).await;
    expect_counts(queue, counts(1, 2, 0), "receive of 2").await;
    queue.ack(&two[0]).await.expect("ack");
    expect_counts(queue, counts(1, 1, 0), "ack of 1").await;
    queue
        .park(&two[1], "permanent failure")
        .await
        .expect("park");
    expect_counts(queue, counts(1, 0, 1), "park of 1").await;

    let last = receive_one(queue, HOLD).await;
    expect_counts(queue, counts(0, 1, 1), "receive of the last").await;
    queue.ack(&last).await.expect("ack");
    expect_counts(queue, counts(0, 0, 1), "ack of the last").await;
}

pub async fn send_of_25_jobs_in_one_call_delivers_all(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let jobs: Vec<Job> = (0..25).map(|i| job(&format!("bulk {i}"))).collect();
    queue.send(&jobs).await.expect("send 25");
    expect_counts(queue, counts(25, 0, 0), "send of 25").await;

    let deliveries = receive_n(queue, 25, HOLD).await;
    let received: BTreeSet<String> = deliveries
        .iter()
        .map(|d| d.job.as_ref().expect("decodes").id.to_string())
        .collect();
    let expected: BTreeSet<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    assert_eq!(received, expected, "every job delivered, each once");
    for d in &deliveries {
        queue.ack(d).await.expect("ack");
    }
    expect_counts(queue, counts(0, 0, 0), "ack of all").await;
}

/// A job received `max_receives` times without ever being acked (a worker that crashes or
/// hangs on it every time) is parked by the queue itself — the SQLite queue on the next
/// receive, SQS by the queue's redrive policy — and can be redriven.
pub async fn job_never_acked_is_parked_after_max_receives(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let sent = job("poison");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    let max = queue.max_receives();
    for n in 1..=max {
        let d = receive_one(queue, Duration::from_secs(1)).await;
        assert_eq!(d.job.as_ref().ok(), Some(&sent));
        assert_eq!(d.receive_count, n, "receive {n}");
    }
    // Its last visibility lapses: it is not delivered a sixth time but parked.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = queue
            .receive(10, HOLD, Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(
            got.is_empty(),
            "delivered again after {max} receives: {got:?}"
        );
        if queue.counts().await.expect("counts").dead == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not parked within {PATIENCE:?}");
    }
    expect_counts(queue, counts(0, 0, 1), "parking").await;
    let letters = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].job.as_ref(), Some(&sent));
    assert_eq!(queue.redrive(None).await.expect("redrive"), 1);
    let back = receive_one(queue, HOLD).await;
    assert_eq!(back.job.as_ref().ok(), Some(&sent));
    queue.ack(&back).await.expect("ack");
    expect_counts(queue, counts(0, 0, 0), "ack after redrive").await;
}

fn job_of(tenant: &str, note: &str) -> Job {
    Job::new(
        TenantId::parse(tenant).expect("tenant id"),
        JobKind::Probe {
            note: note.into(),
            fail: false,
            work_ms: 0,
            panic: false,
        },
        SystemClock.now(),
    )
}

/// Polls one tenant's counts until `expected` holds.
async fn expect_tenant_counts(queue: &dyn Queue, tenant: &str, expected: QueueCounts, step: &str) {
    let tenant = TenantId::parse(tenant).expect("tenant id");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = queue
            .tenant_counts(&tenant)
            .await
            .expect("tenant counts")
            .expect("this queue counts per tenant");
        if c == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {step}: {tenant}'s counts are {c:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two tenants' jobs on one queue: each tenant's counts follow its own jobs through every
/// step — sent, received, done, retried, parked, redriven — and never the other's.
pub async fn tenant_counts_follow_each_tenants_jobs_only(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let a: Vec<Job> = (0..3).map(|i| job_of("ta", &format!("a{i}"))).collect();
    let b: Vec<Job> = (0..2).map(|i| job_of("tb", &format!("b{i}"))).collect();
    queue.send(&a).await.expect("send a");
    queue.send(&b).await.expect("send b");
    expect_tenant_counts(queue, "ta", counts(3, 0, 0), "send").await;
    expect_tenant_counts(queue, "tb", counts(2, 0, 0), "send").await;

    let all = receive_n(queue, 5, HOLD).await;
    expect_tenant_counts(queue, "ta", counts(0, 3, 0), "receive").await;
    expect_tenant_counts(queue, "tb", counts(0, 2, 0), "receive").await;

    let of_a: Vec<&Delivery> = all
        .iter()
        .filter(|d| d.job.as_ref().is_ok_and(|j| j.tenant.as_str() == "ta"))
        .collect();
    assert_eq!(of_a.len(), 3);
    queue.ack(of_a[0]).await.expect("ack");
    queue
        .retry(of_a[1], HOLD, "transient")
        .await
        .expect("retry");
    queue.park(of_a[2], "permanent").await.expect("park");
    expect_tenant_counts(queue, "ta", counts(1, 0, 1), "ack, retry and park").await;
    expect_tenant_counts(queue, "tb", counts(0, 2, 0), "the other tenant's steps").await;

    assert_eq!(queue.redrive(None).await.expect("redrive"), 1);
    expect_tenant_counts(queue, "ta", counts(2, 0, 0), "redrive").await;
    expect_tenant_counts(queue, "tb", counts(0, 2, 0), "the other tenant's redrive").await;
}

/// A job received for the last allowed time and never settled (its worker died) is parked by
/// the queue itself; its tenant's counts show it dead, not pending for ever.
pub async fn tenant_counts_show_a_job_the_queue_parked_itself_as_dead(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let sent = job_of("tc", "poison");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    for _ in 0..queue.max_receives() {
        receive_one(queue, Duration::from_secs(1)).await;
    }
    let tenant = TenantId::parse("tc").expect("tenant id");
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The SQLite queue parks it on a receive after its visibility lapsed; SQS on its own.
        let got = queue
            .receive(10, HOLD, Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(got.is_empty(), "delivered again: {got:?}");
        let c = queue
            .tenant_counts(&tenant)
            .await
            .expect("tenant counts")
            .expect("this queue counts per tenant");
        if c == counts(0, 0, 1) {
            break;
        }
        assert!(Instant::now() < deadline, "counts are {c:?}");
    }
}

/// A reschedule further off than the queue can delay a message (SQS: 15 minutes, and a
/// transfer waits 24 hours for WeCom's takeover) is cut to what the queue can hold rather
/// than refused: the job waits, counted pending, not deliverable now; when it comes back it
/// finds its wait not over and is rescheduled again (a hop per 15 minutes).
pub async fn reschedule_beyond_the_longest_delay_is_cut_to_it_not_refused(queue: Arc<dyn Queue>) {
    let queue = &*queue;
    let sent = job("long wait");
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    let first = receive_one(queue, HOLD).await;
    queue
        .reschedule(
            &first,
            Duration::from_secs(24 * 3600),
            "WeCom takes the customer over in 24 h",
        )
        .await
        .expect("a 24-hour reschedule is accepted");
    assert_nothing_deliverable(queue, "rescheduled a day ahead").await;
    expect_counts(queue, counts(1, 0, 0), "waiting out the delay").await;
}
