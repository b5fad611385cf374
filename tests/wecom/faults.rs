//! The classifier drives what callers see: transient failures are retryable, a 45009 pauses
//! the limiter, permanent errors carry a reason (§2, §3).

use std::sync::Arc;
use std::time::Duration;

use tagsync::domain::Timestamp;
use tagsync::ports::Clock;
use tagsync::sim::wecom::{Fault, FaultKind, SimConfig};
use tagsync::wecom::classify::{ApiOp, Verdict};
use tagsync::wecom::client::WecomClient;

use crate::helpers::{harness, harness_with, manual_clock};

#[tokio::test]
async fn system_busy_then_success_succeeds_when_the_caller_retries() {
    let h = harness().await;
    h.sim.inject(
        ApiOp::GetCorpTagList,
        Fault::next(1, FaultKind::Errcode(-1)),
    );
    let e = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(-1));
    assert!(e.retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    // The job retries later; the fault was one call only.
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn http_500_is_retryable_and_carries_the_status() {
    let h = harness().await;
    h.sim
        .inject(ApiOp::MarkTag, Fault::next(1, FaultKind::HttpStatus(500)));
    h.sim.silent().add_relation("alice", "wmC1", None).unwrap();
    let g = h.sim.silent().create_group("G", 0, &[("t", 0)]).unwrap();
    let user = tagsync::domain::WecomUserId::parse("alice").unwrap();
    let ext = tagsync::domain::ExternalUserId::parse("wmC1").unwrap();
    let tag = tagsync::domain::WecomTagId::parse(g.tag_ids[0].clone()).unwrap();
    let e = h
        .client
        .mark_tag(&h.creds, &user, &ext, std::slice::from_ref(&tag), &[])
        .await
        .unwrap_err();
    assert_eq!((e.http_status, e.errcode), (Some(500), None));
    assert!(e.retryable());
    h.client
        .mark_tag(&h.creds, &user, &ext, &[tag], &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn slow_answers_time_out_as_retryable() {
    let h = harness().await;
    let client = WecomClient::new(
        reqwest::Client::new(),
        h.sim.base_url(),
        h.store.clone(),
        Arc::new(tagsync::ports::SystemClock),
        Default::default(),
    )
    .with_request_timeout(Duration::from_millis(200));
    h.sim.inject(
        ApiOp::GetFollowUserList,
        Fault::next(1, FaultKind::Delay(Duration::from_secs(2))),
    );
    let e = client.get_follow_user_list(&h.creds).await.unwrap_err();
    assert!(e.retryable(), "{e}");
    assert!(e.message.contains("timed out"), "{e}");
}

#[tokio::test]
async fn frequency_limit_45009_pauses_every_caller_until_the_window_ends() {
    // One second before a minute boundary, on both clocks.
    let clock = manual_clock();
    let now = clock.now().millis();
    clock.set(Timestamp::from_millis(
        now - now.rem_euclid(60_000) + 59_000,
    ));
    let config = SimConfig {
        clock: Arc::new(clock.clone()),
        rate_limits: [(ApiOp::GetCorpTagList, 1)].into(),
        ..SimConfig::default()
    };
    let h = harness_with(config, Arc::new(clock.clone())).await;
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    let e = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(45009));
    assert_eq!(e.verdict, Verdict::RetryAfter(Duration::from_secs(1)));
    let paused = h
        .client
        .limiter()
        .paused_until(&h.creds.corp_id, ApiOp::GetCorpTagList);
    assert!(paused.is_some(), "the limiter holds the API");
    assert_eq!(
        h.client
            .limiter()
            .paused_until(&h.creds.corp_id, ApiOp::MarkTag),
        None
    );
    // WeCom's window turns over; the next call waits out the pause, then goes through.
    clock.advance_millis(2_000);
    let start = tokio::time::Instant::now();
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert!(tokio::time::Instant::now() >= paused.unwrap());
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(h.sim.call_count(ApiOp::GetCorpTagList), 3);
}

#[tokio::test]
async fn permanent_errors_carry_their_reason() {
    let h = harness().await;
    for (code, needle) in [(48002, "forbidden"), (40126, "limit"), (60020, "IP")] {
        h.sim.inject(
            ApiOp::GetCorpTagList,
            Fault::next(1, FaultKind::Errcode(code)),
        );
        let e = h
            .client
            .get_corp_tag_list(&h.creds, &[], &[])
            .await
            .unwrap_err();
        assert!(!e.retryable());
        match &e.verdict {
            Verdict::Permanent(r) => {
                assert!(r.contains(needle) && r.contains(&code.to_string()), "{r}")
            }
            other => panic!("{code}: {other:?}"),
        }
        assert!(e.to_string().contains(needle));
    }
}

#[tokio::test]
async fn a_probabilistic_fault_of_one_always_fires() {
    let h = harness().await;
    h.sim.inject(
        ApiOp::GetFollowUserList,
        Fault::sometimes(1.0, FaultKind::Errcode(45033)),
    );
    for _ in 0..3 {
        let e = h.client.get_follow_user_list(&h.creds).await.unwrap_err();
        assert_eq!(e.errcode, Some(45033));
        assert!(e.retryable());
    }
    h.sim.clear_faults();
    h.client.get_follow_user_list(&h.creds).await.unwrap();
}
