//! The access-token cache against the simulator's `gettoken` (§2, §9 P6, P7).

use std::sync::Arc;

use tagsync::domain::{CorpId, Secret};
use tagsync::ports::{Clock, SystemClock};
use tagsync::sim::wecom::{SimConfig, WecomSim};
use tagsync::wecom::classify::{ApiOp, Verdict};
use tagsync::wecom::client::WecomCredentials;

use crate::helpers::{client, harness, harness_with, manual_clock, store_in};

fn errcodes(sim: &WecomSim, code: i64) -> usize {
    sim.calls()
        .iter()
        .filter(|c| c.errcode == Some(code))
        .count()
}

#[tokio::test]
async fn fifty_concurrent_callers_cause_one_gettoken() {
    let h = Arc::new(harness().await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.client.get_corp_tag_list(&h.creds, &[], &[]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 1);
    assert_eq!(h.sim.call_count(ApiOp::GetCorpTagList), 50);
}

#[tokio::test]
async fn an_invalidated_token_is_refreshed_once_and_the_calls_succeed() {
    let h = Arc::new(harness().await);
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    let old = h.sim.current_token().unwrap();
    h.sim.invalidate_tokens();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.client.get_corp_tag_list(&h.creds, &[], &[]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        h.sim.call_count(ApiOp::GetToken),
        2,
        "one refresh for all ten"
    );
    assert!(errcodes(&h.sim, 40014) >= 1);
    assert_ne!(h.sim.current_token().unwrap(), old);
}

#[tokio::test]
async fn a_token_expired_early_at_wecom_is_refreshed_after_42001() {
    // WeCom's clock runs ahead of the client's: the token expires before the client expects.
    let wecom_clock = manual_clock();
    let config = SimConfig {
        clock: Arc::new(wecom_clock.clone()),
        ..SimConfig::default()
    };
    let h = harness_with(config, Arc::new(SystemClock)).await;
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    wecom_clock.advance_millis(7_201_000);
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert_eq!(errcodes(&h.sim, 42001), 1);
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 2);
}

#[tokio::test]
async fn a_token_refused_again_after_the_refresh_is_not_retried_twice() {
    let h = harness().await;
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    // Every answer is 40014 from now on: one refresh, one retry, then the error.
    h.sim.inject(
        ApiOp::GetCorpTagList,
        tagsync::sim::wecom::Fault::next(10, tagsync::sim::wecom::FaultKind::Errcode(40014)),
    );
    let e = h
        .client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(e.verdict, Verdict::RefreshToken);
    assert!(e.retryable());
    assert_eq!(h.sim.call_count(ApiOp::GetCorpTagList), 3);
}

#[tokio::test]
async fn two_processes_sharing_a_store_refresh_once() {
    let h = harness().await;
    // A second "process": its own client and in-process cache, the same SQLite file.
    let other = Arc::new(client(
        &h.sim,
        store_in(h.dir.path()),
        Arc::new(SystemClock),
    ));
    let first = Arc::new(h.client);
    let creds = h.creds.clone();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 {
            first.clone()
        } else {
            other.clone()
        };
        let creds = creds.clone();
        tasks.push(tokio::spawn(async move {
            c.get_corp_tag_list(&creds, &[], &[]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 1);
    // After an invalidation seen by one process, the other picks up the new token too.
    h.sim.invalidate_tokens();
    first.get_corp_tag_list(&creds, &[], &[]).await.unwrap();
    other.get_corp_tag_list(&creds, &[], &[]).await.unwrap();
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 2);
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_of_expiry_and_never_used_expired() {
    let clock = manual_clock();
    let config = SimConfig {
        clock: Arc::new(clock.clone()),
        ..SimConfig::default()
    };
    let h = harness_with(config, Arc::new(clock.clone())).await;
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    let first = h.sim.current_token().unwrap();

    // Inside the last 5 minutes: one early refresh. WeCom repeats a still-valid token (§2).
    clock.advance_millis(7_000_000);
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 2);
    assert_eq!(h.sim.current_token().unwrap(), first);
    // …and not again on every call (§9 P7).
    for _ in 0..5 {
        h.client
            .get_corp_tag_list(&h.creds, &[], &[])
            .await
            .unwrap();
    }
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 2);

    // Past the expiry the client fetches before calling: WeCom never sees an expired token.
    clock.advance_millis(201_000);
    h.client
        .get_corp_tag_list(&h.creds, &[], &[])
        .await
        .unwrap();
    assert_eq!(h.sim.call_count(ApiOp::GetToken), 3);
    assert_ne!(h.sim.current_token().unwrap(), first);
    assert_eq!(errcodes(&h.sim, 42001), 0);
    assert_eq!(errcodes(&h.sim, 40014), 0);
    assert!(clock.now().millis() > 0);
}

#[tokio::test]
async fn a_wrong_secret_is_permanent_and_never_printed() {
    let h = harness().await;
    let secret = "definitely-the-wrong-secret";
    let creds = WecomCredentials {
        corp_id: h.creds.corp_id.clone(),
        secret: Secret::new(secret),
    };
    let e = h
        .client
        .get_corp_tag_list(&creds, &[], &[])
        .await
        .unwrap_err();
    assert_eq!((e.op, e.errcode), (ApiOp::GetToken, Some(40001)));
    assert!(!e.retryable());
    assert!(!e.to_string().contains(secret) && !format!("{e:?}").contains(secret));
    assert!(!format!("{creds:?}").contains(secret));
    let wrong_corp = WecomCredentials {
        corp_id: CorpId::parse("wwother").unwrap(),
        secret: h.creds.secret.clone(),
    };
    let e = h
        .client
        .get_corp_tag_list(&wrong_corp, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40013));
}

#[tokio::test]
async fn transport_errors_are_retryable_and_carry_no_secret() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let client = tagsync::wecom::client::WecomClient::new(
        reqwest::Client::new(),
        format!("http://{addr}/cgi-bin"),
        store_in(dir.path()),
        Arc::new(SystemClock),
        Default::default(),
    );
    let secret = "s3cret-value-in-the-url";
    let creds = WecomCredentials {
        corp_id: CorpId::parse("wwcorp").unwrap(),
        secret: Secret::new(secret),
    };
    let e = client
        .get_corp_tag_list(&creds, &[], &[])
        .await
        .unwrap_err();
    assert!(e.retryable(), "{e}");
    assert!(!e.to_string().contains(secret) && !format!("{e:?}").contains(secret));
}
