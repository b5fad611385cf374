//! Bulk tagging by filter: preview, a run over its snapshot through the member-tag path, its
//! counts, cancel, failures shown, bad input refused with nothing started.

use crate::steps::*;
use crate::support::world::World;
use crate::{customers, hub_tag_id};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tagsync::domain::MemberId;
use tagsync::sim::hold::Phase;
use tagsync::sim::wecom::{Fault, FaultKind};
use tagsync::wecom::classify::ApiOp;

/// `n` bound customers `{prefix}{i:03}` who came through contact way `state`, followed by
/// sales_li, and every third one by sales_wang too. Answers (customer, member) pairs.
async fn bound_customers(
    w: &World,
    prefix: &str,
    n: usize,
    state: &str,
) -> Vec<(String, MemberId)> {
    let console = w.wecom.console();
    let mut out = Vec::new();
    for i in 0..n {
        let c = format!("{prefix}{i:03}");
        console.add_relation("sales_li", &c, Some(state)).unwrap();
        if i % 3 == 0 {
            console.add_relation("sales_wang", &c, Some(state)).unwrap();
        }
        let m = w
            .mall
            .operator()
            .create_member(tagsync::sim::mall::NewMember::external(&c))
            .unwrap();
        out.push((c, m.id));
    }
    settle(w).await;
    out
}

async fn post_bulk(w: &World, body: Value) -> (u16, Value) {
    w.admin(reqwest::Method::POST, "/customers:bulk-tags", Some(body))
        .await
}

/// Polls the run until it is no longer running; answers its report.
async fn finished(w: &World, run: &str) -> Value {
    wait_until("the bulk run finished", || async {
        let (status, body) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
        assert_eq!(status, 200, "{body}");
        body["status"] != "running"
    })
    .await;
    w.admin(Method::GET, &format!("/sync/{run}"), None).await.1
}

/// The mall's member writes in `log`: (members written in batch requests, batch requests,
/// single `POST /members/{id}/tags`).
fn mall_writes(log: &[tagsync::sim::mall::ApiRequestLog]) -> (usize, usize, usize) {
    let batches: Vec<_> = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/members:batch-tags")
        .collect();
    let batched = batches
        .iter()
        .map(|r| {
            r.request.as_ref().unwrap()["items"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    let singles = log
        .iter()
        .filter(|r| {
            r.method == "POST" && r.path.starts_with("/members/") && r.path.ends_with("/tags")
        })
        .count();
    (batched, batches.len(), singles)
}

/// The (userid, external userid) pairs of every `mark_tag` since call number `from`.
fn marks_since(w: &World, from: usize) -> Vec<(String, String)> {
    w.wecom.calls()[from..]
        .iter()
        .filter(|c| c.op == ApiOp::MarkTag && c.errcode == Some(0))
        .map(|c| (s(&c.request["userid"]), s(&c.request["external_userid"])))
        .collect()
}

#[tokio::test]
async fn a_bulk_run_over_300_customers_tags_every_relation_and_the_mall_once_and_leaves_later_customers_alone()
 {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let fair = bound_customers(&w, "wm_f", 300, "展会").await;
    let shop = bound_customers(&w, "wm_s", 10, "门店").await;
    let filter = json!({"state": "展会"});

    let (status, preview) = post_bulk(
        &w,
        json!({"filter": filter, "add": [gold], "preview": true}),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["matched"], 300);
    assert_eq!(preview["sample"].as_array().unwrap().len(), 20);
    assert_eq!(preview["sample"][0]["external_userid"], "wm_f000");

    let calls = w.wecom.calls().len();
    let mall_before = w.mall.requests().len();
    let (status, started) = post_bulk(&w, json!({"filter": filter, "add": [gold]})).await;
    assert_eq!(status, 202, "{started}");
    let run = s(&started["run_id"]);
    // Once the snapshot is taken, a new customer from the same contact way is not swept in.
    wait_until("the run took its snapshot", || async {
        let (_, r) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
        !r["counts"]["matched"].is_null()
    })
    .await;
    let late = bound_customers(&w, "wm_late", 1, "展会").await;
    let report = finished(&w, &run).await;
    settle(&w).await;
    assert_eq!(report["status"], "done", "{report:#}");
    assert_eq!(report["scope"], "bulk");
    assert_eq!(
        report["counts"],
        json!({"matched": 300, "done": 300, "failed": 0}),
        "{report:#}"
    );
    assert_eq!(
        report["counts"]["matched"], preview["matched"],
        "the preview counts the run"
    );

    // Every relation of the 300 carries the tag, and every member in the mall.
    let mut relations = 0;
    for (c, m) in &fair {
        for userid in ["sales_li", "sales_wang"] {
            if let Some(tags) = w.wecom.relation_tags(userid, c) {
                relations += 1;
                assert!(tags.contains(&gold_w.to_string()), "{userid}/{c}: {tags:?}");
            }
        }
        let member = w.mall.member(m).expect("mall member");
        assert!(
            member.tag_ids.contains(&gold_m),
            "{c}: {:?}",
            member.tag_ids
        );
    }
    assert_eq!(relations, 400);
    // One mark_tag per relation: 400 calls, no relation twice.
    let marks = marks_since(&w, calls);
    let mut per_relation: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for m in &marks {
        *per_relation.entry(m).or_default() += 1;
    }
    assert_eq!(per_relation.len(), 400, "relations marked");
    assert!(
        per_relation.values().all(|n| *n == 1),
        "a relation marked twice"
    );
    // The members' mall writes go in batch requests, one per chunk of 25, not one request per
    // member.
    let mall_log = w.mall.requests()[mall_before..].to_vec();
    let (batched, batches, singles) = mall_writes(&mall_log);
    assert_eq!(
        (batched, batches, singles),
        (300, 12, 0),
        "one batch request of 25 members per chunk, no member written alone"
    );
    // Customers outside the filter, and the one added after the start, are untouched.
    for (c, m) in shop.iter().chain(late.iter()) {
        assert!(!w.mall.member(m).unwrap().tag_ids.contains(&gold_m), "{c}");
        let tags = w.wecom.relation_tags("sales_li", c).unwrap();
        assert!(!tags.contains(&gold_w.to_string()), "{c}");
    }
    // The index shows it, and the audit names the run.
    assert_eq!(customers(&w, &format!("tag={gold}")).await["total"], 300);
    let origin = format!("bulk:{run}");
    let audit = audit(&w).await;
    assert!(
        audit
            .iter()
            .any(|e| e.origin == origin && e.action == "member.tags_changed")
    );
    assert!(
        audit
            .iter()
            .any(|e| e.origin == origin && e.action == "relation.tags_changed")
    );
    w.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_bulk_run_and_its_report_says_how_far_it_got() {
    let w = World::start(crate::support::world::WorldOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let all = bound_customers(&w, "wm_c", 60, "展会").await;
    // The run's third customer is held in WeCom while the operator cancels.
    let mut hold = w.wecom.hold(
        ApiOp::MarkTag,
        Phase::Before,
        json!({"external_userid": "wm_c002"}),
    );
    let (status, started) =
        post_bulk(&w, json!({"filter": {"state": "展会"}, "add": [gold]})).await;
    assert_eq!(status, 202, "{started}");
    let run = s(&started["run_id"]);
    let held = hold.held(HELD_WITHIN).await.expect("wm_c002's mark_tag");
    let (status, cancelled) = w
        .admin(Method::POST, &format!("/sync/{run}:cancel"), None)
        .await;
    assert_eq!(status, 202, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    held.release();
    settle(&w).await;

    let (_, report) = w.admin(Method::GET, &format!("/sync/{run}"), None).await;
    assert_eq!(report["status"], "cancelled", "{report:#}");
    let done = report["counts"]["done"].as_u64().unwrap();
    assert_eq!(report["counts"]["matched"], 60);
    // The customer in hand was finished whole; the rest of its chunk and the other chunks
    // (one worker: still queued) were not started.
    assert_eq!(done, 3, "{report:#}");
    let tagged: Vec<&String> = all
        .iter()
        .filter(|(_, m)| w.mall.member(m).unwrap().tag_ids.contains(&gold_m))
        .map(|(c, _)| c)
        .collect();
    assert_eq!(tagged, ["wm_c000", "wm_c001", "wm_c002"]);
    // A finished run cannot be cancelled again.
    let (status, body) = w
        .admin(Method::POST, &format!("/sync/{run}:cancel"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    w.stop().await;
}

#[tokio::test]
async fn a_customer_that_fails_is_counted_with_the_reason_and_fails_the_run() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    bound_customers(&w, "wm_x", 5, "展会").await;
    // WeCom refuses the first mark_tag for good (60020: this server's IP is not trusted).
    w.wecom
        .inject(ApiOp::MarkTag, Fault::next(1, FaultKind::Errcode(60020)));
    let (status, started) =
        post_bulk(&w, json!({"filter": {"state": "展会"}, "add": [gold]})).await;
    assert_eq!(status, 202, "{started}");
    let report = finished(&w, &s(&started["run_id"])).await;
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(
        report["counts"],
        json!({"matched": 5, "done": 4, "failed": 1}),
        "{report:#}"
    );
    let reason = s(&report["failures"][0]["reason"]);
    assert!(reason.contains("60020"), "{reason}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or("")
            .contains("1 customers failed")
    );
    let _ = w.settle(Duration::from_secs(30)).await;
    w.stop().await;
}

/// A chunk's members go to the mall in one batch request; the mall refuses one of them (its
/// account was closed after the job read it): that customer alone counts as failed with the
/// mall's answer, and the others are done everywhere.
#[tokio::test]
async fn a_member_the_mall_refuses_in_a_bulk_runs_batch_fails_alone_with_the_malls_reason() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let three = bound_customers(&w, "wm_r", 3, "展会").await;
    let mut hold = w
        .mall
        .hold("POST", "/members:batch-tags", Phase::Before, Value::Null);
    let (status, started) =
        post_bulk(&w, json!({"filter": {"state": "展会"}, "add": [gold]})).await;
    assert_eq!(status, 202, "{started}");
    let held = hold
        .held(HELD_WITHIN)
        .await
        .expect("the chunk's batch write");
    assert_eq!(
        held.request["body"]["items"].as_array().map(Vec::len),
        Some(3),
        "{}",
        held.request
    );
    let (closed_c, closed_m) = &three[1];
    w.mall.operator().remove_member(closed_m).unwrap();
    held.release();

    let report = finished(&w, &s(&started["run_id"])).await;
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(
        report["counts"],
        json!({"matched": 3, "done": 2, "failed": 1}),
        "{report:#}"
    );
    assert_eq!(report["failures"][0]["external_userid"], closed_c.as_str());
    let reason = s(&report["failures"][0]["reason"]);
    assert!(reason.contains("404"), "the mall's answer: {reason}");
    for (c, m) in [&three[0], &three[2]] {
        assert!(w.mall.member(m).unwrap().tag_ids.contains(&gold_m), "{c}");
        let tags = w.wecom.relation_tags("sales_li", c).unwrap();
        assert!(tags.contains(&gold_w.to_string()), "{c}: {tags:?}");
    }
    let _ = w.settle(Duration::from_secs(30)).await;
    w.stop().await;
}

#[tokio::test]
async fn a_chunk_that_cannot_finish_is_parked_and_fails_its_run_with_the_reason() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    bound_customers(&w, "wm_p", 3, "展会").await;
    // WeCom is busy (−1, retryable) for every customer read from now on.
    w.wecom.inject(
        ApiOp::GetExternalContact,
        Fault::sometimes(1.0, FaultKind::Errcode(-1)),
    );
    let (status, started) =
        post_bulk(&w, json!({"filter": {"state": "展会"}, "add": [gold]})).await;
    assert_eq!(status, 202, "{started}");
    let report = finished(&w, &s(&started["run_id"])).await;
    assert_eq!(report["status"], "failed", "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("parked") && error.contains("-1"), "{error}");
    w.wecom.clear_faults();
    w.stop().await;
}

#[tokio::test]
async fn bad_bulk_input_is_refused_naming_the_field_and_starts_nothing() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    for (body, field) in [
        (json!({"add": ["no_such_tag"]}), "add"),
        (json!({"remove": ["no_such_tag"]}), "remove"),
        (
            json!({"filter": {"tag": ["no_such_tag"]}, "add": [gold]}),
            "filter.tag",
        ),
        (
            json!({"filter": {"tag_mode": "most"}, "add": [gold]}),
            "filter.tag_mode",
        ),
        (
            json!({"filter": {"colour": "red"}, "add": [gold]}),
            "filter.colour",
        ),
        (json!({"add": []}), "add"),
        (json!({"add": [gold], "remove": [gold]}), "remove"),
        (json!({"add": [gold], "preview": "yes"}), "preview"),
    ] {
        let (status, answer) = post_bulk(&w, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`{field}`")), "{body}: {answer}");
    }
    let (_, runs) = w.admin(Method::GET, "/sync", None).await;
    assert_eq!(runs["runs"], json!([]), "nothing started");
    w.stop().await;
}

#[tokio::test]
async fn a_preview_counts_and_shows_exactly_the_customers_its_run_then_tags() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let fair = bound_customers(&w, "wm_v", 24, "展会").await;
    bound_customers(&w, "wm_w", 5, "门店").await;
    // Filter: the fair's customers followed by sales_wang too (every third: 8 of them).
    let filter = json!({"state": "展会", "userid": "sales_wang"});
    let (status, preview) = post_bulk(
        &w,
        json!({"filter": filter, "add": [gold], "preview": true}),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    let sampled: Vec<String> = preview["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["external_userid"]))
        .collect();
    let want: Vec<String> = fair
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, (c, _))| c.clone())
        .collect();
    assert_eq!(preview["matched"], 8);
    assert_eq!(sampled, want, "the sample is the matches, in order");
    // The preview started nothing.
    let (_, runs) = w.admin(Method::GET, "/sync", None).await;
    assert_eq!(runs["runs"], json!([]));

    let (status, started) = post_bulk(&w, json!({"filter": filter, "add": [gold]})).await;
    assert_eq!(status, 202, "{started}");
    let report = finished(&w, &s(&started["run_id"])).await;
    settle(&w).await;
    assert_eq!(
        report["counts"]["matched"], preview["matched"],
        "{report:#}"
    );
    assert_eq!(report["counts"]["done"], preview["matched"], "{report:#}");
    // Exactly the previewed customers were tagged.
    let tagged: Vec<String> = fair
        .iter()
        .filter(|(_, m)| w.mall.member(m).unwrap().tag_ids.contains(&gold_m))
        .map(|(c, _)| c.clone())
        .collect();
    assert_eq!(tagged, sampled);
    w.stop().await;
}
