//! The classifier drives what callers see: transient failures are retryable, a 45009 pauses
//! the API in the shared rate budget, permanent errors carry a reason (§2, §3).

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
async fn frequency_limit_45009_pauses_the_api_for_every_caller_until_the_window_ends() {
    // One second before a minute boundary, on both clocks.
    let clock = manual_clock();
    let now = clock.now().millis();
    let boundary = now - now.rem_euclid(60_000) + 60_000;
    clock.set(Timestamp::from_millis(boundary - 1_000));
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
    assert_eq!(e.verdict, Verdict::RateLimited(Duration::from_secs(1)));
    assert_eq!(e.rate_limited(), Some(Duration::from_secs(1)));
    assert_eq!(
        h.client
            .budget()
            .paused_until(&h.creds.corp_id, ApiOp::GetCorpTagList),
        Some(Timestamp::from_millis(boundary)),
        "the budget holds the API until WeCom's minute ends"
    );
    assert_eq!(
        h.client
            .budget()
            .paused_until(&h.creds.corp_id, ApiOp::MarkTag),
        None
    );
    // Another client on the same store (another process) is held too, without calling WeCom.
    let other = crate::helpers::client(&h.sim, h.store.clone(), Arc::new(clock.clone()));
    clock.advance_millis(400);
    let held = other
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(held.errcode, None, "refused by the budget, not by WeCom");
    assert_eq!(held.rate_limited(), Some(Duration::from_millis(600)));
    assert_eq!(h.sim.call_count(ApiOp::GetCorpTagList), 2);
    // WeCom's window turns over; the next call goes through at once.
    clock.set(Timestamp::from_millis(boundary));
    other.get_corp_tag_list(&h.creds, &[], &[]).await.unwrap();
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

/// A hold keeps a call from taking effect until the test releases it: what a person does in
/// the console meanwhile happens first (here, a tag put on the relation), and the held
/// `mark_tag` then adds its own tag next to it.
#[tokio::test]
async fn a_call_held_before_it_takes_effect_goes_on_only_when_released() {
    use tagsync::sim::hold::Phase;
    let h = harness().await;
    h.sim.silent().add_relation("alice", "wmC1", None).unwrap();
    let g = h
        .sim
        .silent()
        .create_group("G", 0, &[("t", 0), ("u", 0)])
        .unwrap();
    let user = tagsync::domain::WecomUserId::parse("alice").unwrap();
    let ext = tagsync::domain::ExternalUserId::parse("wmC1").unwrap();
    let t = tagsync::domain::WecomTagId::parse(g.tag_ids[0].clone()).unwrap();
    let mut hold = h.sim.hold(
        ApiOp::MarkTag,
        Phase::Before,
        serde_json::json!({"userid": "alice"}),
    );
    let call = h
        .client
        .mark_tag(&h.creds, &user, &ext, std::slice::from_ref(&t), &[]);
    let act = async {
        let held = hold.held(Duration::from_secs(10)).await.unwrap();
        assert_eq!(held.request["add_tag"], serde_json::json!([t.as_str()]));
        assert_eq!(
            h.sim.relation_tags("alice", "wmC1").unwrap(),
            Vec::<String>::new(),
            "not applied while held"
        );
        h.sim
            .console()
            .tag_relation("alice", "wmC1", &[g.tag_ids[1].as_str()], &[])
            .unwrap();
        held.release();
    };
    let (result, ()) = tokio::join!(call, act);
    result.unwrap();
    assert_eq!(
        h.sim.relation_tags("alice", "wmC1").unwrap(),
        vec![g.tag_ids[1].clone(), g.tag_ids[0].clone()]
    );
}

/// Held after it took effect, a call's answer waits: the side already shows the change.
#[tokio::test]
async fn a_call_held_after_it_took_effect_is_answered_when_released() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tagsync::sim::hold::Phase;
    let h = harness().await;
    let mut hold = h
        .sim
        .hold(ApiOp::AddCorpTag, Phase::After, serde_json::Value::Null);
    let answered = AtomicBool::new(false);
    let tags = [tagsync::wecom::client::NewTag {
        name: "t".into(),
        order: Some(1),
    }];
    let call = async {
        let target = tagsync::wecom::client::AddTarget::Named {
            name: "G",
            order: Some(2),
        };
        let r = h.client.add_corp_tag(&h.creds, target, &tags).await;
        answered.store(true, Ordering::SeqCst);
        r
    };
    let act = async {
        let held = hold.held(Duration::from_secs(10)).await.unwrap();
        assert!(
            h.sim.library().iter().any(|g| g.name == "G"),
            "applied before the answer"
        );
        assert!(
            !answered.load(Ordering::SeqCst),
            "the answer waits while held"
        );
        held.release();
    };
    let (created, ()) = tokio::join!(call, act);
    assert_eq!(created.unwrap().group_name, "G");
}

/// The same over the control surface: arm, wait until held, release.
#[tokio::test]
async fn holds_are_armed_waited_for_and_released_over_http() {
    let h = harness().await;
    let http = reqwest::Client::new();
    let ctl = h.sim.control_url();
    let post = |path: String, body: serde_json::Value| {
        let req = http.post(format!("{ctl}{path}")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (_, armed) = post(
        "/holds".into(),
        serde_json::json!({"op": "externalcontact/get_corp_tag_list"}),
    )
    .await;
    let id = armed["result"]["id"].as_u64().expect("a hold id");
    let (_, idle) = post(
        format!("/holds/{id}/wait"),
        serde_json::json!({"timeout_ms": 10}),
    )
    .await;
    assert_eq!(idle["result"]["held"], false);
    let call = h.client.get_corp_tag_list(&h.creds, &[], &[]);
    let act = async {
        let (_, held) = post(
            format!("/holds/{id}/wait"),
            serde_json::json!({"timeout_ms": 10000}),
        )
        .await;
        assert_eq!(held["result"]["held"], true, "{held}");
        let (status, _) = post(format!("/holds/{id}/release"), serde_json::Value::Null).await;
        assert_eq!(status, 200);
    };
    let (result, ()) = tokio::join!(call, act);
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_made_at_once_beyond_the_window_meet_at_most_one_45009_per_call_allowed_in_flight() {
    // Mid-minute on both clocks, WeCom allowing 2 calls of the API this minute.
    let clock = manual_clock();
    let now = clock.now().millis();
    clock.set(Timestamp::from_millis(
        now - now.rem_euclid(60_000) + 20_000,
    ));
    let config = SimConfig {
        clock: Arc::new(clock.clone()),
        rate_limits: [(ApiOp::GetCorpTagList, 2)].into(),
        ..SimConfig::default()
    };
    let h = harness_with(config, Arc::new(clock.clone())).await;
    let client = Arc::new(crate::helpers::client(
        &h.sim,
        h.store.clone(),
        Arc::new(clock.clone()),
    ));
    const IN_FLIGHT: usize = 3;
    client.limit_in_flight(IN_FLIGHT);
    // 30 callers at once (a job's members): tagsync's own budget has room for all of them.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (client, creds) = (client.clone(), h.creds.clone());
        calls.spawn(async move { client.get_corp_tag_list(&creds, &[], &[]).await });
    }
    let mut ok = 0;
    while let Some(r) = calls.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(e.rate_limited().is_some(), "only the window refuses: {e}"),
        }
    }
    let answered: Vec<_> = h
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.op == ApiOp::GetCorpTagList)
        .collect();
    let refused = answered.iter().filter(|c| c.errcode == Some(45009)).count();
    assert_eq!(ok, 2, "WeCom's two calls of the minute went through");
    assert!(refused >= 1, "the window was met (the test's premise)");
    assert!(
        refused <= IN_FLIGHT,
        "{refused} answers 45009: after the first, no further call reaches WeCom"
    );
    assert_eq!(
        answered.len(),
        ok + refused,
        "the rest were held by the budget"
    );
}
