//! The message feed refuses what it cannot trust or read, records nothing then, and skips
//! what it does not match.

use crate::steps::*;
use crate::support::*;
use serde_json::json;

/// A message refused before: posted properly now, it is new (nothing was recorded of it).
async fn still_new(w: &crate::harness::world::World, message: &serde_json::Value) {
    let (status, body) = w.feed().post(std::slice::from_ref(message)).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["queued"], 1,
        "the refused request recorded nothing: {body}"
    );
}

#[tokio::test]
async fn an_unsigned_or_stale_feed_request_is_401_with_nothing_recorded() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "on")).await;
    let feed = w.feed();
    let message = feed.text("wm_alice", "sales_li", "有优惠券吗");
    let body = serde_json::to_vec(&json!({"messages": [message]})).unwrap();
    settle(&w).await;
    let jobs_before = w.activity().jobs;
    let now = chrono::Utc::now().timestamp();

    let unsigned = feed.post_raw(&body, Some(now), None).await.unwrap();
    let wrong = feed
        .post_raw(&body, Some(now), Some("v1=00ff"))
        .await
        .unwrap();
    let stale_ts = now - 301;
    let stale = feed
        .post_raw(&body, Some(stale_ts), Some(&feed.sign(stale_ts, &body)))
        .await
        .unwrap();
    let other_key =
        tagsync::sim::feed::FeedConnector::new(&w.base, w.tenant.as_str(), "not-the-secret");
    let forged = other_key
        .post(std::slice::from_ref(&message))
        .await
        .unwrap();
    for (what, (status, answer)) in [
        ("unsigned", unsigned),
        ("wrong signature", wrong),
        ("stale", stale),
        ("another key", forged),
    ] {
        assert_eq!(status, 401, "{what}: {answer}");
    }
    settle(&w).await;
    assert_eq!(w.activity().jobs, jobs_before, "no job was queued");
    assert!(firings(&w, &rule).await.is_empty(), "nothing fired");
    tags_everywhere(&w, &member, &[]).await;
    still_new(&w, &message).await;
    w.stop().await;
}

#[tokio::test]
async fn a_malformed_feed_request_is_400_with_nothing_recorded() {
    let (w, _) = world_with_tags(&["促销敏感"]).await;
    settle(&w).await;
    let jobs_before = w.activity().jobs;
    let feed = w.feed();
    let good = feed.text("wm_alice", "sales_li", "你好");
    let mut no_msgid = good.clone();
    no_msgid.as_object_mut().unwrap().remove("msgid");
    let hundred_one: Vec<_> = (0..101).map(|_| feed.text("wm_a", "li", "x")).collect();
    let cases = [
        (json!({"messages": [good, no_msgid]}), "messages[1].msgid"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": hundred_one}), "101 given"),
        (json!({"msgs": [good]}), "messages"),
    ];
    for (body, field) in cases {
        let raw = serde_json::to_vec(&body).unwrap();
        let ts = chrono::Utc::now().timestamp();
        let (status, answer) = feed
            .post_raw(&raw, Some(ts), Some(&feed.sign(ts, &raw)))
            .await
            .unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }
    let raw = b"{not json".to_vec();
    let ts = chrono::Utc::now().timestamp();
    let (status, _) = feed
        .post_raw(&raw, Some(ts), Some(&feed.sign(ts, &raw)))
        .await
        .unwrap();
    assert_eq!(status, 400);
    settle(&w).await;
    assert_eq!(w.activity().jobs, jobs_before, "no job was queued");
    still_new(&w, &good).await;
    w.stop().await;
}

#[tokio::test]
async fn an_unknown_message_type_is_skipped_without_a_firing() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "on")).await;
    let feed = w.feed();
    let mut odd = feed.text("wm_alice", "sales_li", "优惠券");
    odd["msgtype"] = json!("mixed_hologram");
    let (status, body) = feed.post(&[odd]).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["skipped"], 1, "{body}");
    settle(&w).await;
    assert!(firings(&w, &rule).await.is_empty());
    tags_everywhere(&w, &member, &[]).await;
    w.stop().await;
}

#[tokio::test]
async fn a_message_about_a_customer_tagsync_does_not_know_fires_unknown_customer() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "on")).await;
    let feed = w.feed();
    feed.post(&[feed.text("wm_stranger", "sales_li", "优惠券")])
        .await
        .unwrap();
    settle(&w).await;
    let fired = firings(&w, &rule).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["outcome"], "unknown_customer");
    assert_eq!(fired[0]["member_id"], json!(null));
    w.stop().await;
}

#[tokio::test]
async fn a_staff_message_is_matched_only_by_rules_listening_to_staff() {
    let (w, tags) = world_with_tags(&["促销敏感", "推荐过"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "on")).await;
    let mut staff_rule = keyword_rule("优惠券", &[&tags["推荐过"]], "on");
    staff_rule["trigger"]["from"] = json!("staff");
    create_rule(&w, staff_rule).await;
    let feed = w.feed();
    feed.post(&[feed.text("sales_li", "wm_alice", "送您一张优惠券")])
        .await
        .unwrap();
    settle(&w).await;
    tags_everywhere(&w, &member, &["推荐过"]).await;
    w.stop().await;
}
