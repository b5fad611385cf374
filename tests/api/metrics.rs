//! What tagsync did, counted: `GET /metrics` (Prometheus text, admin token required) shows
//! inbound events by outcome, jobs by outcome, and WeCom and mall calls by verdict.

use crate::helpers::*;
use std::sync::Arc;
use std::time::Duration;
use tagsync::mall::client::MallClient;
use tagsync::metrics::{JOBS, MALL_CALLS, WECOM_CALLS};
use tagsync::sim::mall::{MallSim, MallSimConfig};
use tagsync::sim::wecom::{SimConfig, WecomSim};
use tagsync::wecom::client::WecomClient;

#[tokio::test]
async fn metrics_count_events_jobs_and_refusals_and_need_the_admin_token() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let body = br#"{"event_id":"evt_m1","type":"tag_group.created","occurred_at":"2026-11-21T08:15:30.123Z","origin_request_id":null,"data":{"group":{"id":"g1","name":"VIP","order":1}}}"#;
    let ts = chrono::Utc::now().timestamp();
    for signature in [
        tagsync::mall::webhook::sign(b"webhook-secret-value-3", ts, body),
        "v1=00".into(),
    ] {
        t.client
            .post(t.url("/mall/webhook/acme"))
            .header("x-mall-timestamp", ts.to_string())
            .header("x-mall-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
    }
    wait_for("the job to be done", Duration::from_secs(10), || async {
        (t.app
            .metrics
            .get(JOBS, &[("kind", "inbound_mall"), ("outcome", "done")])
            == 1)
            .then_some(())
    })
    .await;

    assert_eq!(
        t.client
            .get(t.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let text = t
        .client
        .get(t.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tagsync_events_total{source=\"mall\",outcome=\"queued\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tagsync_events_total{source=\"mall\",outcome=\"refused_401\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tagsync_jobs_total{kind=\"inbound_mall\",outcome=\"done\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE tagsync_jobs_total counter"));
    t.shutdown().await;
}

#[tokio::test]
async fn clients_count_their_calls_by_verdict() {
    let metrics = Arc::new(tagsync::metrics::Metrics::default());
    let dir = tempfile::tempdir().unwrap();
    let app = sqlite_app(dir.path());

    let wecom = WecomSim::start(SimConfig::default()).await;
    let client = WecomClient::new(
        reqwest::Client::new(),
        wecom.base_url(),
        app.store.clone(),
        app.clock.clone(),
        Default::default(),
    )
    .with_metrics(metrics.clone());
    client
        .get_follow_user_list(&wecom.credentials())
        .await
        .unwrap();
    assert_eq!(
        metrics.get(WECOM_CALLS, &[("api", "gettoken"), ("outcome", "success")]),
        1
    );
    assert_eq!(
        metrics.get(
            WECOM_CALLS,
            &[
                ("api", "externalcontact/get_follow_user_list"),
                ("outcome", "success")
            ]
        ),
        1
    );

    let mall = MallSim::start(MallSimConfig::default()).await.unwrap();
    let client = MallClient::new(reqwest::Client::new()).with_metrics(metrics.clone());
    client.list_groups(&mall.endpoint()).await.unwrap();
    let mut wrong = mall.endpoint();
    wrong.token = tagsync::domain::Secret::new("not-the-token");
    assert!(client.list_groups(&wrong).await.is_err());
    assert_eq!(
        metrics.get(MALL_CALLS, &[("op", "list_groups"), ("outcome", "success")]),
        1
    );
    assert_eq!(
        metrics.get(
            MALL_CALLS,
            &[("op", "list_groups"), ("outcome", "permanent")]
        ),
        1
    );
    wecom.stop().await;
    mall.stop().await;
}
