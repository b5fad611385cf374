//! The mall simulator delivering its webhooks to a real `serve`: every type arrives and is
//! queued once, however often it is delivered.

use crate::helpers::*;
use std::time::Duration;
use tagsync::sim::mall::{MallSim, MallSimConfig, NewMember};

/// The webhook secret registered by `tenant_body()`.
const SECRET: &str = "webhook-secret-value-3";

async fn mall_for(t: &TestApp) -> MallSim {
    MallSim::start(MallSimConfig {
        webhook_url: Some(t.url("/mall/webhook/acme")),
        webhook_secret: SECRET.into(),
        ..MallSimConfig::default()
    })
    .await
    .unwrap()
}

async fn received_types(t: &TestApp) -> Vec<String> {
    t.audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "event.received")
        .map(|e| e["after"]["event_type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_webhook_type_from_the_mall_simulator_is_queued_once() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let mall = mall_for(&t).await;
    let op = mall.operator();
    let vip = op.create_group("VIP", 10).unwrap(); // tag_group.created
    op.rename_group(&vip.id, "VIP+").unwrap(); // tag_group.updated
    let gold = op.create_tag(&vip.id, "Gold", 3).unwrap(); // tag.created
    op.rename_tag(&gold.id, "Gold+").unwrap(); // tag.updated
    let member = op.create_member(NewMember::unionid("u-1")).unwrap(); // member.bound
    op.tag_member(&member.id, &gold.id).unwrap(); // member.tags_changed
    op.delete_tag(&gold.id).unwrap(); // tag.deleted
    op.delete_group(&vip.id).unwrap(); // tag_group.deleted
    assert!(
        mall.webhooks_settled(Duration::from_secs(20)).await,
        "deliveries finished"
    );
    assert!(
        mall.deliveries().iter().all(|d| d.status == Some(202)),
        "tagsync accepted every delivery: {:?}",
        mall.deliveries()
    );

    let mut got = wait_for("8 events recorded", Duration::from_secs(20), || async {
        let r = received_types(&t).await;
        (r.len() >= 8).then_some(r)
    })
    .await;
    got.sort();
    let mut expected = vec![
        "member.bound",
        "member.tags_changed",
        "tag.created",
        "tag.deleted",
        "tag.updated",
        "tag_group.created",
        "tag_group.deleted",
        "tag_group.updated",
    ];
    expected.sort();
    assert_eq!(got, expected);
    mall.stop().await;
    t.shutdown().await;
}

#[tokio::test]
async fn a_webhook_delivered_three_times_is_queued_once() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let mall = mall_for(&t).await;
    // The simulator delivers the next webhook twice; a third copy is re-sent below, signed
    // afresh, as the mall's retry after a lost answer would be.
    mall.update_faults(|f| f.duplicate_webhooks_next = 1);
    let member = mall
        .operator()
        .create_member(NewMember::external("wmCustomer1"))
        .unwrap();
    assert!(mall.webhooks_settled(Duration::from_secs(20)).await);
    let deliveries = mall.deliveries();
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let body = serde_json::to_vec(&deliveries[0].body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let third = t
        .client
        .post(t.url("/mall/webhook/acme"))
        .header("x-mall-timestamp", ts.to_string())
        .header(
            "x-mall-signature",
            tagsync::mall::webhook::sign(SECRET.as_bytes(), ts, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 202);

    wait_for("the queue to drain", Duration::from_secs(10), || async {
        let c = t.app.queue.counts().await.unwrap();
        (c.pending == 0 && c.in_flight == 0 && !received_types(&t).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(received_types(&t).await, ["member.bound"]);
    let stored = mall.member(&member.id).unwrap();
    assert_eq!(
        stored.external_userid.as_ref().map(|e| e.as_str()),
        Some("wmCustomer1")
    );
    mall.stop().await;
    t.shutdown().await;
}
