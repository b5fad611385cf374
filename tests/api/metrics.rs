//! What tagsync did, counted: `GET /metrics` (Prometheus text, admin token required) shows
//! inbound events by outcome, jobs by outcome, and WeCom and mall calls by verdict.

use crate::helpers::*;
use std::sync::Arc;
use std::time::Duration;
use tagsync::metrics::{JOBS, MALL_CALLS, WECOM_CALLS};
use tagsync::sim::mall::{MallSim, MallSimConfig};
use tagsync::sim::wecom::{SimConfig, WecomSim};

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
async fn the_apps_clients_count_their_calls_by_verdict() {
    let wecom = WecomSim::start(SimConfig::default()).await;
    let mall = MallSim::start(MallSimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.wecom_api_base = wecom.base_url();
    let key = tagsync::store::sealing::SecretKey::generate();
    let app = tagsync::app::App::sqlite(
        dir.path(),
        config,
        Arc::new(tagsync::ports::SystemClock),
        key,
    )
    .await
    .unwrap()
    .0;

    app.wecom
        .get_follow_user_list(&wecom.credentials())
        .await
        .unwrap();
    assert_eq!(
        app.metrics
            .get(WECOM_CALLS, &[("api", "gettoken"), ("outcome", "success")]),
        1
    );
    assert_eq!(
        app.metrics.get(
            WECOM_CALLS,
            &[
                ("api", "externalcontact/get_follow_user_list"),
                ("outcome", "success")
            ]
        ),
        1
    );

    app.mall.list_groups(&mall.endpoint()).await.unwrap();
    let mut wrong = mall.endpoint();
    wrong.token = tagsync::domain::Secret::new("not-the-token");
    assert!(app.mall.list_groups(&wrong).await.is_err());
    assert_eq!(
        app.metrics
            .get(MALL_CALLS, &[("op", "list_groups"), ("outcome", "success")]),
        1
    );
    assert_eq!(
        app.metrics.get(
            MALL_CALLS,
            &[("op", "list_groups"), ("outcome", "permanent")]
        ),
        1
    );
    wecom.stop().await;
    mall.stop().await;
}
