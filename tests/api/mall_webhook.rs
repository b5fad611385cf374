//! `POST /mall/webhook/{tenant}` against a real `serve`, with deliveries signed as the mall
//! signs them (mall-connector.md §2).

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tagsync::mall::webhook::sign;

const SECRET: &str = "webhook-secret-value-3";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(event_id: &str, kind: &str, data: Value) -> Value {
    json!({"event_id": event_id, "type": kind, "occurred_at": "2026-11-21T08:15:30.123Z", "origin_request_id": null, "data": data})
}

/// One event of every type of the contract.
fn every_event() -> Vec<Value> {
    let group = json!({"id": "g1", "name": "VIP", "order": 10});
    let tag = json!({"id": "t1", "group_id": "g1", "name": "Gold", "order": 3});
    vec![
        event("e1", "tag_group.created", json!({"group": group})),
        event("e2", "tag_group.updated", json!({"group": group})),
        event("e3", "tag_group.deleted", json!({"group_id": "g1"})),
        event("e4", "tag.created", json!({"tag": tag})),
        event("e5", "tag.updated", json!({"tag": tag})),
        event(
            "e6",
            "tag.deleted",
            json!({"tag_id": "t1", "group_id": "g1"}),
        ),
        event(
            "e7",
            "member.tags_changed",
            json!({"member_id": "m1", "added": ["t1"], "removed": []}),
        ),
        event(
            "e8",
            "member.bound",
            json!({"member_id": "m1", "unionid": "u1", "external_userid": "wmEXT1", "mobile": null}),
        ),
    ]
}

async fn deliver(
    t: &TestApp,
    tenant: &str,
    body: &[u8],
    ts: i64,
    signature: Option<String>,
) -> u16 {
    let mut req = t
        .client
        .post(t.url(&format!("/mall/webhook/{tenant}")))
        .header("content-type", "application/json")
        .header("x-mall-timestamp", ts.to_string())
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("x-mall-signature", sig);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn deliver_signed(t: &TestApp, body: &Value) -> u16 {
    let bytes = serde_json::to_vec(body).unwrap();
    let ts = now();
    deliver(
        t,
        "acme",
        &bytes,
        ts,
        Some(sign(SECRET.as_bytes(), ts, &bytes)),
    )
    .await
}

#[tokio::test]
async fn every_webhook_type_becomes_one_queued_job() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let events = every_event();
    for e in &events {
        assert_eq!(deliver_signed(&t, e).await, 202, "{e}");
    }
    let got = wait_for("every event recorded", Duration::from_secs(20), || async {
        let r = received(&t).await;
        (r.len() >= events.len()).then_some(r)
    })
    .await;
    let mut types: Vec<_> = got
        .iter()
        .map(|e| e["after"]["event_type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    let mut expected: Vec<_> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(types, expected);
    t.shutdown().await;
}

#[tokio::test]
async fn the_same_event_delivered_three_times_is_one_job() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let e = &every_event()[4];
    for _ in 0..3 {
        assert_eq!(deliver_signed(&t, e).await, 202);
    }
    wait_for("the queue to drain", Duration::from_secs(10), || async {
        let c = t.app.queue.counts().await.unwrap();
        (c.pending == 0 && c.in_flight == 0 && !received(&t).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(received(&t).await.len(), 1);
    t.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_signatures_are_401_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let body = serde_json::to_vec(&every_event()[0]).unwrap();
    let ts = now();
    assert_eq!(deliver(&t, "acme", &body, ts, None).await, 401);
    assert_eq!(
        deliver(
            &t,
            "acme",
            &body,
            ts,
            Some(sign(b"another-secret", ts, &body))
        )
        .await,
        401
    );
    assert_eq!(
        deliver(&t, "acme", &body, ts, Some("v1=deadbeef".into())).await,
        401
    );
    // Signed for a different body.
    assert_eq!(
        deliver(
            &t,
            "acme",
            &body,
            ts,
            Some(sign(SECRET.as_bytes(), ts, b"{}"))
        )
        .await,
        401
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn stale_or_future_timestamps_are_401_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let body = serde_json::to_vec(&every_event()[0]).unwrap();
    for ts in [now() - 301, now() + 301] {
        assert_eq!(
            deliver(
                &t,
                "acme",
                &body,
                ts,
                Some(sign(SECRET.as_bytes(), ts, &body))
            )
            .await,
            401,
            "ts {ts}"
        );
    }
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn an_oversize_body_is_413_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let mut e = every_event()[0].clone();
    e["padding"] = json!("x".repeat(tagsync::mall::webhook::MAX_BODY_BYTES));
    let body = serde_json::to_vec(&e).unwrap();
    let ts = now();
    assert_eq!(
        deliver(
            &t,
            "acme",
            &body,
            ts,
            Some(sign(SECRET.as_bytes(), ts, &body))
        )
        .await,
        413
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn invalid_json_and_missing_fields_are_400_naming_the_field() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let ts = now();
    let raw = b"{\"event_id\": \"e1\", ";
    assert_eq!(
        deliver(&t, "acme", raw, ts, Some(sign(SECRET.as_bytes(), ts, raw))).await,
        400
    );
    let mut missing = every_event()[3].clone();
    missing["data"]["tag"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let body = serde_json::to_vec(&missing).unwrap();
    let resp = t
        .client
        .post(t.url("/mall/webhook/acme"))
        .header("x-mall-timestamp", ts.to_string())
        .header("x-mall-signature", sign(SECRET.as_bytes(), ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data.tag.name"),
        "{err}"
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn an_unknown_tenant_is_404_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let body = serde_json::to_vec(&every_event()[0]).unwrap();
    let ts = now();
    assert_eq!(
        deliver(
            &t,
            "nobody",
            &body,
            ts,
            Some(sign(SECRET.as_bytes(), ts, &body))
        )
        .await,
        404
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_types_and_a_disabled_tenant_are_acknowledged_but_not_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    assert_eq!(
        deliver_signed(&t, &event("u1", "coupon.issued", json!({"anything": 1}))).await,
        202
    );
    t.admin(
        Method::PATCH,
        "/admin/v1/tenants/acme/settings",
        Some(json!({"tags_enabled": false})),
    )
    .await;
    assert_eq!(deliver_signed(&t, &every_event()[0]).await, 202);
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

/// A webhook the mall sent because of tagsync's own write carries tagsync's key as
/// `origin_request_id`: it is acknowledged and neither recorded nor queued (no echo loop),
/// while the same event caused by someone else is queued.
#[tokio::test]
async fn an_echo_of_tagsyncs_own_write_is_acknowledged_and_not_queued() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let mut echo = every_event()[4].clone();
    echo["event_id"] = json!("echo1");
    echo["origin_request_id"] = json!("tagsync:01a1fd10bcd97075b5398ac7d494a051:update-tag:x:0");
    assert_eq!(deliver_signed(&t, &echo).await, 202);
    assert_nothing_recorded(&t).await;

    let mut other = every_event()[4].clone();
    other["event_id"] = json!("other1");
    other["origin_request_id"] = json!("someone-elses-key-1");
    assert_eq!(deliver_signed(&t, &other).await, 202);
    let queued = wait_for(
        "the foreign event to be recorded",
        Duration::from_secs(10),
        || async {
            let r = received(&t).await;
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["after"]["event_id"], "other1");
    t.shutdown().await;
}
