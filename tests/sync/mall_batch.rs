//! The mall's batch endpoint (`POST /members:batch-tags`, mall-connector.md §3.1): a job with
//! several members to write sends their mall changes in one request, handles each member's
//! result on its own, and falls back to one write per member on a mall without the endpoint.

use crate::steps::*;
use crate::support::world::World;
use serde_json::{Value, json};
use tagsync::domain::MemberId;
use tagsync::sim::hold::Phase;
use tagsync::sim::mall::{ApiRequestLog, BatchEndpoint};
use tagsync::wecom::classify::ApiOp;

const BATCH_PATH: &str = "/members:batch-tags";

/// Three members bound to customers with two relations each, and the hub id of `金卡`.
async fn three_members(w: &World) -> (Vec<MemberId>, String, String) {
    mall_made_group(w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let mut members = Vec::new();
    for c in ["wm_a", "wm_b", "wm_c"] {
        members.push(bound_member(w, c, &["sales_li", "sales_wang"]).await);
    }
    let gold = s(&hub_tag(w, "会员等级", "金卡").await["id"]);
    let silver = s(&hub_tag(w, "会员等级", "银卡").await["id"]);
    (members, gold, silver)
}

/// `POST …/member-tags:batch` adding `tag` to every member.
async fn add_to_all(w: &World, members: &[MemberId], tag: &str) {
    let items: Vec<Value> = members
        .iter()
        .map(|m| json!({"member_id": m, "add": [tag]}))
        .collect();
    let (status, body) = w
        .admin(
            Method::POST,
            "/member-tags:batch",
            Some(json!({ "items": items })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

fn batch_requests(log: &[ApiRequestLog]) -> Vec<&ApiRequestLog> {
    log.iter()
        .filter(|r| r.method == "POST" && r.path == BATCH_PATH)
        .collect()
}

fn member_writes(log: &[ApiRequestLog]) -> usize {
    log.iter()
        .filter(|r| {
            r.method == "POST" && r.path.starts_with("/members/") && r.path.ends_with("/tags")
        })
        .count()
}

fn member_reads(log: &[ApiRequestLog]) -> usize {
    log.iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/members/"))
        .count()
}

#[tokio::test]
async fn an_operators_batch_reaches_the_mall_in_one_request_without_reading_its_members() {
    let w = start().await;
    let (members, gold, _) = three_members(&w).await;
    let before = w.mall.requests().len();
    let marks_before = w.wecom.call_count(ApiOp::MarkTag);

    add_to_all(&w, &members, &gold).await;
    settle(&w).await;

    for m in &members {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    let log = w.mall.requests()[before..].to_vec();
    let batches = batch_requests(&log);
    assert_eq!(batches.len(), 1, "one batch request: {log:#?}");
    assert_eq!(batches[0].status, 200);
    let items = batches[0].request.as_ref().unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 3, "all three members in it: {items:?}");
    assert_eq!(member_writes(&log), 0, "no member written on its own");
    assert_eq!(
        member_reads(&log),
        0,
        "the hub's base stands for the mall member"
    );
    assert_eq!(
        w.wecom.call_count(ApiOp::MarkTag) - marks_before,
        6,
        "one mark_tag per relation"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_tag_put_on_a_member_in_the_mall_while_its_batch_write_is_held_reaches_every_side_even_without_its_webhook()
 {
    let w = start().await;
    let (members, gold, _) = three_members(&w).await;
    let silver = mall_tag_id(&w, "会员等级", "银卡");
    let mut hold = w.mall.hold("POST", BATCH_PATH, Phase::Before, Value::Null);

    add_to_all(&w, &members, &gold).await;
    let held = hold.held(HELD_WITHIN).await.expect("the batch write");
    // The mall's operator tags the first member meanwhile, and its webhook is lost: only the
    // batch's answer tells tagsync (which must not take that answer as the new base).
    w.mall.update_faults(|f| f.drop_webhooks_next = 1);
    w.mall.operator().tag_member(&members[0], &silver).unwrap();
    held.release();
    settle(&w).await;

    member_tags_everywhere(&w, &members[0], &["会员等级/金卡", "会员等级/银卡"]).await;
    for m in &members[1..] {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    w.stop().await;
}

/// The batch job takes each mall member as the hub last knew it. The mall's operator takes a
/// tag off a member after that and before the batch is written, its webhook lost: the batch
/// names only the change the job makes (it puts nothing back), its answer is not the base, and
/// the removal reaches WeCom and the hub.
#[tokio::test]
async fn a_tag_taken_off_a_member_in_the_mall_while_its_batch_write_is_held_is_not_put_back() {
    let w = start().await;
    let (members, gold, silver) = three_members(&w).await;
    add_to_all(&w, &members[..1], &silver).await;
    settle(&w).await;
    member_tags_everywhere(&w, &members[0], &["会员等级/银卡"]).await;
    let silver_m = mall_tag_id(&w, "会员等级", "银卡");
    let mut hold = w.mall.hold("POST", BATCH_PATH, Phase::Before, Value::Null);

    add_to_all(&w, &members, &gold).await;
    let held = hold.held(HELD_WITHIN).await.expect("the batch write");
    w.mall.update_faults(|f| f.drop_webhooks_next = 1);
    w.mall
        .operator()
        .untag_member(&members[0], &silver_m)
        .unwrap();
    let items = held.request["body"]["items"].clone();
    held.release();
    settle(&w).await;

    let first = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["member_id"] == members[0].as_str())
        .cloned()
        .unwrap_or_else(|| panic!("the first member is in the batch: {items}"));
    assert_eq!(
        first["add"],
        json!([mall_tag_id(&w, "会员等级", "金卡")]),
        "{first}"
    );
    assert_eq!(first["remove"], json!([]), "{first}");
    member_tags_everywhere(&w, &members[0], &["会员等级/金卡"]).await;
    for m in &members[1..] {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    w.stop().await;
}

/// A person puts a tag on one of a member's WeCom relations after the batch job marked it and
/// before the job's batch goes to the mall: the relation's base is what the job read plus its
/// own `mark_tag`, so the console's tag is WeCom's change and reaches the mall and the hub
/// (the convergence property once found it lost when a member job took the mall member from
/// the hub's base).
#[tokio::test]
async fn a_tag_put_on_a_relation_while_the_batch_write_is_held_reaches_every_side() {
    let w = start().await;
    let (members, gold, _) = three_members(&w).await;
    let mut hold = w.mall.hold("POST", BATCH_PATH, Phase::Before, Value::Null);

    add_to_all(&w, &members, &gold).await;
    let held = hold.held(HELD_WITHIN).await.expect("the batch write");
    let silver = wecom_tag(&w, "会员等级", "银卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_b", &[silver.as_str()], &[])
        .unwrap();
    held.release();
    settle(&w).await;

    let trail = audit(&w).await;
    let hub_silver = s(&hub_tag(&w, "会员等级", "银卡").await["id"]);
    let mall_silver = mall_tag_id(&w, "会员等级", "银卡");
    let removed = removals_of(&trail, &[&hub_silver, &silver, mall_silver.as_str()]);
    assert!(
        removed.is_empty(),
        "银卡 was taken off somewhere:\n{}",
        render_audit(&trail)
    );
    member_tags_everywhere(&w, &members[1], &["会员等级/金卡", "会员等级/银卡"]).await;
    for m in [&members[0], &members[2]] {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_mall_without_the_batch_endpoint_is_written_member_by_member_and_asked_only_once() {
    let w = start().await;
    let (members, gold, silver) = three_members(&w).await;
    w.mall.set_batch_endpoint(BatchEndpoint::NotFound);

    let before = w.mall.requests().len();
    add_to_all(&w, &members, &gold).await;
    settle(&w).await;
    let log = w.mall.requests()[before..].to_vec();
    let batches = batch_requests(&log);
    assert!(
        batches.len() == 1 && batches[0].status == 404,
        "asked once, answered 404: {batches:#?}"
    );
    assert_eq!(member_writes(&log), 3, "one write per member");
    assert_eq!(member_reads(&log), 0);
    for m in &members {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }

    // The answer is remembered for the tenant: the next batch is not offered to the mall.
    let before = w.mall.requests().len();
    add_to_all(&w, &members, &silver).await;
    settle(&w).await;
    let log = w.mall.requests()[before..].to_vec();
    assert_eq!(batch_requests(&log).len(), 0, "{log:#?}");
    assert_eq!(member_writes(&log), 3);
    for m in &members {
        member_tags_everywhere(&w, m, &["会员等级/金卡", "会员等级/银卡"]).await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_mall_answering_405_for_the_batch_path_is_written_member_by_member() {
    let w = start().await;
    let (members, gold, _) = three_members(&w).await;
    w.mall.set_batch_endpoint(BatchEndpoint::MethodNotAllowed);

    let before = w.mall.requests().len();
    add_to_all(&w, &members, &gold).await;
    settle(&w).await;
    let log = w.mall.requests()[before..].to_vec();
    let batches = batch_requests(&log);
    assert!(
        batches.len() == 1 && batches[0].status == 405,
        "{batches:#?}"
    );
    assert_eq!(member_writes(&log), 3);
    for m in &members {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_member_the_mall_refuses_in_a_batch_is_parked_alone_with_the_reason_and_the_others_converge()
 {
    let w = start().await;
    let (members, gold, _) = three_members(&w).await;
    // The second member's account is closed in the mall (no webhook: the contract has none).
    w.mall.operator().remove_member(&members[1]).unwrap();

    let before = w.mall.requests().len();
    add_to_all(&w, &members, &gold).await;
    w.settle(std::time::Duration::from_secs(30)).await.unwrap();
    // Its own job tried it again, and failed where everyone sees it.
    let problems = w.problems().await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let parked: Value = serde_json::from_str(
        problems[0]
            .strip_prefix("1 parked job(s): ")
            .unwrap_or_else(|| panic!("{problems:?}")),
    )
    .unwrap();
    let parked = &parked["dead_letters"][0];
    assert_eq!(parked["kind"], "sync_member");
    assert_eq!(parked["job"]["member"], members[1].as_str());
    assert!(
        s(&parked["error"]).contains("404"),
        "the mall's answer is the reason: {parked}"
    );

    let log = w.mall.requests()[before..].to_vec();
    let batches = batch_requests(&log);
    assert_eq!(batches.len(), 1, "{log:#?}");
    let results = batches[0].response.as_ref().unwrap()["results"].clone();
    let mut statuses: Vec<(String, u64)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (s(&r["member_id"]), r["status"].as_u64().unwrap()))
        .collect();
    statuses.sort();
    let mut want = vec![
        (members[0].to_string(), 200),
        (members[1].to_string(), 404),
        (members[2].to_string(), 200),
    ];
    want.sort();
    assert_eq!(
        statuses, want,
        "one result per member, in any order the job handed them in"
    );
    assert_eq!(member_reads(&log), 0, "{log:#?}");
    assert_eq!(
        member_writes(&log),
        1,
        "only the refused member is written again, alone"
    );
    for m in [&members[0], &members[2]] {
        member_tags_everywhere(&w, m, &["会员等级/金卡"]).await;
    }
    w.stop().await;
}
