//! Customer transfers (wecom-api.md §6): a leaving salesperson's customers handed to a
//! colleague in chunks, followed to WeCom's takeover 24 hours later (on the simulators' clock,
//! which tagsync reads too), with the customer's tags carried onto the new relation; refusals
//! and WeCom's per-customer errcodes shown per customer; bad input refused with nothing
//! started.

use crate::steps::*;
use crate::support::world::{World, WorldOptions};
use crate::{customers, hub_tag_id};
use serde_json::{Value, json};
use std::sync::Arc;
use tagsync::domain::{MemberId, TAKEOVER_MS, Timestamp};
use tagsync::ports::{Clock, OffsetClock};
use tagsync::sim::wecom::{SimConfig, TransferStatus};
use tagsync::wecom::classify::ApiOp;

/// A world whose clock (WeCom's and tagsync's) a test moves forward.
async fn world() -> (World, OffsetClock) {
    let clock = OffsetClock::default();
    let w = World::start(WorldOptions {
        wecom: SimConfig {
            clock: Arc::new(clock.clone()),
            ..SimConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;
    (w, clock)
}

/// Moves the clock `ms` ahead of now.
fn jump(clock: &OffsetClock, ms: i64) {
    clock.jump_to(clock.now().plus_millis(ms));
}

/// `n` customers `{prefix}{i:03}` followed by `userid`; every fifth one bound to no mall
/// member and tagged `wecom_tag` in the WeCom client, the others bound to a mall member
/// tagged `mall_tag` in the mall. Answers (customer, member) pairs. Settled.
async fn tagged_customers(
    w: &World,
    prefix: &str,
    n: usize,
    userid: &str,
    wecom_tag: &str,
    mall_tag: &tagsync::domain::MallTagId,
) -> Vec<(String, Option<MemberId>)> {
    let console = w.wecom.console();
    let mut out = Vec::new();
    for i in 0..n {
        let c = format!("{prefix}{i:03}");
        console.add_relation(userid, &c, Some("门店")).unwrap();
        if i % 5 == 0 {
            console.tag_relation(userid, &c, &[wecom_tag], &[]).unwrap();
            out.push((c, None));
        } else {
            let m = w
                .mall
                .operator()
                .create_member(tagsync::sim::mall::NewMember::external(&c))
                .unwrap();
            w.mall.operator().tag_member(&m.id, mall_tag).unwrap();
            out.push((c, Some(m.id)));
        }
    }
    settle(w).await;
    out
}

async fn post_transfer(w: &World, body: Value) -> (u16, Value) {
    w.admin(Method::POST, "/transfers", Some(body)).await
}

async fn transfer(w: &World, id: &str) -> Value {
    let (status, body) = w
        .admin(Method::GET, &format!("/transfers/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// How long a transfer's chain of jobs may take to carry 150 customers while other tests
/// load the machine.
const CARRIED_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Polls the transfer until `done` holds of it; answers it.
async fn transfer_when(w: &World, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_until_within(what, CARRIED_WITHIN, || async {
        done(&transfer(w, id).await)
    })
    .await;
    transfer(w, id).await
}

/// Each customer's status in a transfer's view.
fn statuses(t: &Value) -> Vec<(String, String)> {
    t["customers"]
        .as_array()
        .expect("customers")
        .iter()
        .map(|c| (s(&c["external_userid"]), s(&c["status"])))
        .collect()
}

/// Sizes of the `transfer_customer` calls of `op` WeCom answered.
fn chunk_sizes(w: &World, op: ApiOp) -> Vec<usize> {
    w.wecom
        .calls()
        .iter()
        .filter(|c| c.op == op && c.errcode == Some(0))
        .map(|c| c.request["external_userid"].as_array().map_or(0, Vec::len))
        .collect()
}

#[tokio::test]
async fn a_resigned_transfer_of_150_customers_completes_in_chunks_and_every_new_relation_has_the_customers_tags()
 {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let all = tagged_customers(&w, "wm_r", 150, "sales_li", &gold_w, &gold_m).await;
    assert_eq!(
        customers(&w, &format!("userid=sales_li&tag={gold}")).await["total"],
        150,
        "the index knows the 150 and their tags"
    );
    w.wecom.add_member("sales_zhao");
    w.wecom.member_leaves("sales_li");

    // No list: every customer of the departed member, as the index knows them.
    let (status, started) = post_transfer(
        &w,
        json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao", "resigned": true}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = s(&started["transfer_id"]);
    let sent = transfer_when(&w, &id, "every customer was sent", |t| {
        !t["next_look_at"].is_null()
    })
    .await;
    assert_eq!(sent["status"], "running");
    assert_eq!(sent["counts"]["waiting"], 150, "{sent:#}");
    // In chunks of at most 100, through the resigned API.
    assert_eq!(chunk_sizes(&w, ApiOp::ResignedTransferCustomer), [100, 50]);
    assert_eq!(w.wecom.call_count(ApiOp::TransferCustomer), 0);

    // WeCom takes them over a day later.
    jump(&clock, TAKEOVER_MS + 1_000);
    let over = transfer_when(&w, &id, "the transfer is over", |t| {
        t["status"] != "running"
    })
    .await;
    assert_eq!(over["status"], "done", "{over:#}");
    assert_eq!(over["counts"]["done"], 150, "{over:#}");
    assert!(statuses(&over).iter().all(|(_, st)| st == "done"));
    settle(&w).await;

    // Every new relation carries the customer's tags (WeCom does not copy them); the old
    // relations are gone; the mall members keep theirs.
    for (c, member) in &all {
        assert_eq!(w.wecom.relation_tags("sales_li", c), None, "{c}");
        let tags = w
            .wecom
            .relation_tags("sales_zhao", c)
            .unwrap_or_else(|| panic!("{c} has no relation with sales_zhao"));
        assert!(tags.contains(&gold_w), "{c}: {tags:?}");
        if let Some(m) = member {
            assert!(w.mall.member(m).unwrap().tag_ids.contains(&gold_m), "{c}");
        }
    }
    assert!(
        w.wecom
            .transfers()
            .iter()
            .all(|t| t.status == TransferStatus::Done && t.resigned)
    );
    // The index lists them with their new follower (their tags there are what the last read
    // saw; WeCom, checked above, is the truth).
    assert_eq!(customers(&w, "userid=sales_zhao").await["total"], 150);
    assert_eq!(customers(&w, "userid=sales_li").await["total"], 0);
    // The tags of unbound customers were carried by the transfer itself (audit origin).
    let origin = format!("transfer:{id}");
    let carried = audit(&w)
        .await
        .into_iter()
        .filter(|e| e.origin == origin && e.action == "relation.tags_changed")
        .count();
    assert!(carried >= 30, "{carried} relations tagged by the transfer");
    let (_, listed) = w.admin(Method::GET, "/transfers", None).await;
    assert_eq!(listed["transfers"][0]["transfer_id"], id.as_str());
    w.stop().await;
}

#[tokio::test]
async fn an_in_service_transfer_waits_for_the_takeover_time() {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    tagged_customers(&w, "wm_i", 3, "sales_li", &gold_w, &gold_m).await;
    w.wecom.add_member("sales_zhao");
    let start = clock.now();
    let (status, started) = post_transfer(
        &w,
        json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao",
               "external_userids": ["wm_i000", "wm_i001", "wm_i002"], "resigned": false}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = s(&started["transfer_id"]);
    let sent = transfer_when(&w, &id, "the customers were sent", |t| {
        !t["next_look_at"].is_null()
    })
    .await;
    assert_eq!(chunk_sizes(&w, ApiOp::TransferCustomer), [3]);
    // Its next look is at the takeover time, a day after sending.
    let next = Timestamp::parse_rfc3339(&s(&sent["next_look_at"])).expect("a time");
    assert!(
        next.millis() >= start.millis() + TAKEOVER_MS,
        "looks again at {next:?}, before the takeover"
    );

    // A minute before it, nothing has moved: WeCom still waits, tagsync has not looked.
    jump(&clock, TAKEOVER_MS - 60_000);
    assert!(
        w.wecom
            .transfers()
            .iter()
            .all(|t| t.status == TransferStatus::Waiting)
    );
    assert!(w.wecom.relation_tags("sales_li", "wm_i001").is_some());
    assert_eq!(w.wecom.call_count(ApiOp::TransferResult), 0);
    assert_eq!(transfer(&w, &id).await["counts"]["waiting"], 3);

    jump(&clock, 61_000);
    let over = transfer_when(&w, &id, "the transfer is over", |t| {
        t["status"] != "running"
    })
    .await;
    assert_eq!(over["counts"]["done"], 3, "{over:#}");
    // One look at the results was enough: tagsync slept until the takeover.
    assert_eq!(w.wecom.call_count(ApiOp::TransferResult), 1);
    settle(&w).await;
    for c in ["wm_i000", "wm_i001", "wm_i002"] {
        let tags = w.wecom.relation_tags("sales_zhao", c).expect("taken over");
        assert!(tags.contains(&gold_w), "{c}: {tags:?}");
    }
    w.stop().await;
}

#[tokio::test]
async fn a_refused_customer_keeps_its_relation_and_tags() {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let all = tagged_customers(&w, "wm_f", 2, "sales_li", &gold_w, &gold_m).await;
    w.wecom.add_member("sales_zhao");
    let (status, started) = post_transfer(
        &w,
        json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao",
               "external_userids": ["wm_f000", "wm_f001"], "resigned": false}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = s(&started["transfer_id"]);
    transfer_when(&w, &id, "the customers were sent", |t| {
        !t["next_look_at"].is_null()
    })
    .await;
    // wm_f001 (bound, tagged in the mall) refuses in WeCom: transfer_fail is sent.
    w.wecom.console().refuse_transfer("wm_f001").unwrap();
    jump(&clock, TAKEOVER_MS + 1_000);
    let over = transfer_when(&w, &id, "the transfer is over", |t| {
        t["status"] != "running"
    })
    .await;
    settle(&w).await;
    assert_eq!(
        statuses(&over),
        [
            ("wm_f000".to_string(), "done".to_string()),
            ("wm_f001".to_string(), "refused".to_string())
        ],
        "{over:#}"
    );
    let refused = &over["customers"][1];
    assert!(
        s(&refused["reason"]).contains("refused"),
        "{refused}: WeCom's reason"
    );
    assert!(
        w.wecom
            .callbacks()
            .iter()
            .any(|c| c.change_type == "transfer_fail" && c.xml.contains("customer_refused"))
    );
    // The refused customer keeps its relation with its tags, gets no new one, and its member
    // keeps its tags in the mall.
    let kept = w.wecom.relation_tags("sales_li", "wm_f001").expect("kept");
    assert!(kept.contains(&gold_w), "{kept:?}");
    assert_eq!(w.wecom.relation_tags("sales_zhao", "wm_f001"), None);
    let member = all[1].1.as_ref().expect("bound");
    assert!(w.mall.member(member).unwrap().tag_ids.contains(&gold_m));
    assert_eq!(customers(&w, "userid=sales_li").await["total"], 1);
    w.stop().await;
}

#[tokio::test]
async fn errcode_40128_transferred_too_often_shows_per_customer() {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    tagged_customers(&w, "wm_o", 2, "sales_li", &gold_w, &gold_m).await;
    w.wecom.add_member("sales_zhao");
    // wm_o000 goes to sales_zhao (done a day later)…
    let (status, first) = post_transfer(
        &w,
        json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao",
               "external_userids": ["wm_o000"], "resigned": false}),
    )
    .await;
    assert_eq!(status, 202, "{first}");
    let first = s(&first["transfer_id"]);
    transfer_when(&w, &first, "sent", |t| !t["next_look_at"].is_null()).await;
    jump(&clock, TAKEOVER_MS + 1_000);
    transfer_when(&w, &first, "the first transfer is over", |t| {
        t["status"] == "done"
    })
    .await;
    settle(&w).await;
    // …and back within 90 days: WeCom refuses it (40128), while wm_o001 goes.
    w.wecom
        .console()
        .add_relation("sales_zhao", "wm_o001", None)
        .unwrap();
    settle(&w).await;
    let (status, second) = post_transfer(
        &w,
        json!({"handover_userid": "sales_zhao", "takeover_userid": "sales_li",
               "external_userids": ["wm_o000", "wm_o001"], "resigned": false}),
    )
    .await;
    assert_eq!(status, 202, "{second}");
    let second = s(&second["transfer_id"]);
    let sent = transfer_when(&w, &second, "sent", |t| !t["next_look_at"].is_null()).await;
    let refused = &sent["customers"][0];
    assert_eq!(refused["external_userid"], "wm_o000");
    assert_eq!(refused["status"], "failed", "{sent:#}");
    assert_eq!(refused["errcode"], 40128, "{sent:#}");
    assert!(
        s(&refused["reason"]).contains("too often"),
        "{refused}: WeCom's reason"
    );
    assert_eq!(sent["customers"][1]["status"], "waiting", "{sent:#}");
    assert_eq!(sent["counts"]["failed"], 1);
    // The refused customer stays with sales_zhao, tags and all.
    let tags = w
        .wecom
        .relation_tags("sales_zhao", "wm_o000")
        .expect("kept");
    assert!(tags.contains(&gold_w));
    w.stop().await;
}

#[tokio::test]
async fn bad_transfer_input_is_refused_naming_the_field_and_starts_nothing() {
    let (w, _clock) = world().await;
    w.wecom
        .console()
        .add_relation("sales_li", "wm_b000", None)
        .unwrap();
    w.wecom.add_member("sales_zhao");
    w.wecom.add_member("sales_gone");
    w.wecom.member_leaves("sales_gone");
    settle(&w).await;
    let ok =
        json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao", "resigned": false});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (
            with("takeover_userid", json!("sales_li")),
            "takeover_userid",
        ),
        (with("takeover_userid", json!("nobody")), "takeover_userid"),
        (
            with("takeover_userid", json!("sales_gone")),
            "takeover_userid",
        ),
        (with("handover_userid", json!("nobody")), "handover_userid"),
        // Still there, so not a resigned transfer.
        (with("resigned", json!(true)), "handover_userid"),
        // Gone, but no customer in the index follows them.
        (
            json!({"handover_userid": "sales_gone", "takeover_userid": "sales_zhao", "resigned": true}),
            "handover_userid",
        ),
        (with("external_userids", json!([])), "external_userids"),
        (with("external_userids", json!([""])), "external_userids[0]"),
        (with("resigned", json!("no")), "resigned"),
        (
            json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao"}),
            "resigned",
        ),
        (with("colour", json!("red")), "colour"),
    ] {
        let (status, answer) = post_transfer(&w, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`{field}`")), "{body}: {answer}");
    }
    let (_, listed) = w.admin(Method::GET, "/transfers", None).await;
    assert_eq!(listed["transfers"], json!([]), "nothing started");
    assert_eq!(w.wecom.transfers(), vec![]);
    assert_eq!(w.wecom.call_count(ApiOp::TransferCustomer), 0);
    let (status, _) = w
        .admin(Method::GET, "/transfers/no_such_transfer", None)
        .await;
    assert_eq!(status, 404);
    w.stop().await;
}

#[tokio::test]
async fn a_takeover_at_its_customer_limit_shows_limit_and_the_customer_keeps_its_relation() {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    tagged_customers(&w, "wm_l", 1, "sales_li", &gold_w, &gold_m).await;
    w.wecom.add_member("sales_zhao");
    w.wecom.set_customer_limit("sales_zhao", Some(0));
    let (status, started) = post_transfer(
        &w,
        json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao",
               "external_userids": ["wm_l000"], "resigned": false}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = s(&started["transfer_id"]);
    transfer_when(&w, &id, "sent", |t| !t["next_look_at"].is_null()).await;
    jump(&clock, TAKEOVER_MS + 1_000);
    let over = transfer_when(&w, &id, "the transfer is over", |t| {
        t["status"] != "running"
    })
    .await;
    assert_eq!(over["customers"][0]["status"], "limit", "{over:#}");
    assert!(s(&over["customers"][0]["reason"]).contains("limit"));
    settle(&w).await;
    assert!(
        w.wecom
            .callbacks()
            .iter()
            .any(|c| c.change_type == "transfer_fail" && c.xml.contains("customer_limit_exceed"))
    );
    let kept = w.wecom.relation_tags("sales_li", "wm_l000").expect("kept");
    assert!(kept.contains(&gold_w));
    assert_eq!(w.wecom.relation_tags("sales_zhao", "wm_l000"), None);
    w.stop().await;
}
