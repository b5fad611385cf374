//! Rules fire on chat messages, channel arrivals and tags gained; their changes reach the hub,
//! every WeCom relation and the mall like an operator's.

use crate::steps::*;
use crate::support::*;
use serde_json::json;
use tagsync::domain::MemberId;

/// The outcomes of a rule's firings, newest first.
fn outcomes(firings: &[serde_json::Value]) -> Vec<String> {
    firings.iter().map(|f| s(&f["outcome"])).collect()
}

#[tokio::test]
async fn a_keyword_message_tags_the_customer_on_every_relation_and_in_the_mall() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "on")).await;

    let feed = w.feed();
    let (status, body) = feed
        .post(&[feed.text("wm_alice", "sales_li", "有ＣＯＵＰＯＮ吗？有优惠券吗?")])
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    settle(&w).await;

    tags_everywhere(&w, &member, &["促销敏感"]).await;
    let fired = firings(&w, &rule).await;
    assert_eq!(outcomes(&fired), ["applied"]);
    assert_eq!(fired[0]["customer"], "wm_alice");
    assert_eq!(fired[0]["member_id"], json!(member));
    assert_eq!(fired[0]["event"]["kind"], "message");
    let origin = format!("rule:{}", s(&rule["id"]));
    let entries = audit(&w).await;
    assert!(
        entries
            .iter()
            .any(|e| e.origin == origin && e.action == "member.tags_changed"),
        "the hub change is audited with origin {origin}:\n{}",
        render_audit(&entries)
    );
    w.stop().await;
}

#[tokio::test]
async fn the_same_message_delivered_three_times_fires_once() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "on")).await;
    let feed = w.feed();
    let message = feed.text("wm_alice", "sales_li", "有优惠券吗");
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, body) = feed.post(std::slice::from_ref(&message)).await.unwrap();
        assert_eq!(status, 202, "{body}");
        answers.push(body["queued"].as_u64().unwrap());
    }
    settle(&w).await;
    assert_eq!(answers, [1, 0, 0], "queued once, then seen");
    assert_eq!(outcomes(&firings(&w, &rule).await), ["applied"]);
    tags_everywhere(&w, &member, &["促销敏感"]).await;
    w.stop().await;
}

#[tokio::test]
async fn an_excluded_customer_is_not_tagged_and_its_firing_says_which_condition_excluded_it() {
    let (w, tags) = world_with_tags(&["促销敏感", "已成交"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let (status, body) = w
        .admin(
            Method::POST,
            &format!("/members/{member}/tags"),
            Some(json!({"add": [tags["已成交"]]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    settle(&w).await;
    let mut body = keyword_rule("优惠券", &[&tags["促销敏感"]], "on");
    body["conditions"] = json!([{"has_none": [tags["已成交"]]}]);
    let rule = create_rule(&w, body).await;

    let feed = w.feed();
    feed.post(&[feed.text("wm_alice", "sales_li", "有优惠券吗")])
        .await
        .unwrap();
    settle(&w).await;

    let fired = firings(&w, &rule).await;
    assert_eq!(outcomes(&fired), ["excluded"]);
    assert_eq!(
        fired[0]["excluded_by"],
        json!({"has_none": [tags["已成交"]]})
    );
    tags_everywhere(&w, &member, &["已成交"]).await;
    w.stop().await;
}

#[tokio::test]
async fn dry_run_changes_nothing_anywhere_and_records_what_it_would_have_done() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["促销敏感"]], "dry_run")).await;
    let before = w.activity();
    let audit_before = audit(&w).await.len();

    let feed = w.feed();
    feed.post(&[feed.text("wm_alice", "sales_li", "有优惠券吗")])
        .await
        .unwrap();
    settle(&w).await;

    let fired = firings(&w, &rule).await;
    assert_eq!(outcomes(&fired), ["dry_run"]);
    assert_eq!(fired[0]["changes"]["add"], json!([tags["促销敏感"]]));
    tags_everywhere(&w, &member, &[]).await;
    let after = w.activity();
    assert_eq!(
        (after.wecom_callbacks, after.mall_events),
        (before.wecom_callbacks, before.mall_events),
        "no side changed"
    );
    assert_eq!(
        w.wecom.call_count(tagsync::wecom::classify::ApiOp::MarkTag),
        0,
        "no mark_tag"
    );
    assert_eq!(audit(&w).await.len(), audit_before, "no change audited");
    w.stop().await;
}

#[tokio::test]
async fn canary_with_limit_5_acts_on_exactly_5_of_20_matching_customers() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let people = customers(&w, "c", 20).await;
    let mut body = keyword_rule("优惠券", &[&tags["促销敏感"]], "canary");
    body["canary_limit"] = json!(5);
    let rule = create_rule(&w, body).await;

    let feed = w.feed();
    let messages: Vec<_> = people
        .iter()
        .map(|(c, _)| feed.text(c, "sales_li", "有优惠券吗"))
        .collect();
    let (status, body) = feed.post(&messages).await.unwrap();
    assert_eq!(status, 202, "{body}");
    settle(&w).await;

    let fired = firings(&w, &rule).await;
    let applied = fired.iter().filter(|f| f["outcome"] == "applied").count();
    let full = fired
        .iter()
        .filter(|f| f["outcome"] == "canary_full")
        .count();
    assert_eq!((applied, full), (5, 15), "{:?}", outcomes(&fired));
    let mut tagged = 0;
    for (_, member) in &people {
        let view = w.member_view(member.as_str()).await;
        if view
            .expect_everywhere(&[&format!("{GROUP}/促销敏感")])
            .is_ok()
        {
            tagged += 1;
        } else {
            view.expect_everywhere(&[]).unwrap();
        }
    }
    assert_eq!(
        tagged, 5,
        "exactly five customers carry the tag, everywhere"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_channel_rule_tags_a_customer_added_with_its_state_on_every_relation_and_in_the_mall() {
    let (w, tags) = world_with_tags(&["线下门店"]).await;
    let member = bound_member(&w, "wm_bob", &["sales_wang"]).await;
    let rule = create_rule(
        &w,
        json!({
            "name": "门店码",
            "trigger": {"kind": "channel", "state": "store-1"},
            "actions": {"add": [tags["线下门店"]]},
            "mode": "on",
        }),
    )
    .await;
    w.wecom
        .console()
        .add_relation("sales_li", "wm_bob", Some("store-1"))
        .unwrap();
    settle(&w).await;

    tags_everywhere(&w, &member, &["线下门店"]).await;
    assert_eq!(w.member_view(member.as_str()).await.relations.len(), 2);
    let fired = firings(&w, &rule).await;
    assert_eq!(outcomes(&fired), ["applied"]);
    assert_eq!(fired[0]["event"]["state"], "store-1");
    w.stop().await;
}

#[tokio::test]
async fn a_tag_added_chain_of_two_rules_works() {
    let (w, tags) = world_with_tags(&["高意向", "跟进"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let first = create_rule(&w, keyword_rule("空调", &[&tags["高意向"]], "on")).await;
    let second = create_rule(
        &w,
        json!({
            "name": "高意向要跟进",
            "trigger": {"kind": "tag_added", "tag_id": tags["高意向"]},
            "actions": {"add": [tags["跟进"]]},
            "mode": "on",
        }),
    )
    .await;

    let feed = w.feed();
    feed.post(&[feed.text("wm_alice", "sales_li", "想买空调")])
        .await
        .unwrap();
    settle(&w).await;

    tags_everywhere(&w, &member, &["高意向", "跟进"]).await;
    let chained = firings(&w, &second).await;
    assert_eq!(outcomes(&chained), ["applied"]);
    assert_eq!(chained[0]["depth"], 2);
    assert_eq!(
        chained[0]["event"]["by"],
        format!("rule:{}", s(&first["id"]))
    );
    w.stop().await;
}

/// Two rules that undo each other (A → B, B → A) would loop forever through `tag_added`; a
/// rule never fires again on its own chain's events, so the loop ends where it started.
#[tokio::test]
async fn a_self_triggering_rule_does_not_loop() {
    let (w, tags) = world_with_tags(&["甲", "乙"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let swap = |from: &str, to: &str| {
        json!({
            "name": format!("{from}换{to}"),
            "trigger": {"kind": "tag_added", "tag_id": tags[from]},
            "actions": {"add": [tags[to]], "remove": [tags[from]]},
            "mode": "on",
        })
    };
    let a_to_b = create_rule(&w, swap("甲", "乙")).await;
    let b_to_a = create_rule(&w, swap("乙", "甲")).await;

    let (status, body) = w
        .admin(
            Method::POST,
            &format!("/members/{member}/tags"),
            Some(json!({"add": [tags["甲"]]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    settle(&w).await;

    assert_eq!(outcomes(&firings(&w, &a_to_b).await), ["applied"]);
    assert_eq!(outcomes(&firings(&w, &b_to_a).await), ["applied"]);
    tags_everywhere(&w, &member, &["甲"]).await;
    w.stop().await;
}

#[tokio::test]
async fn a_chain_stops_at_depth_3_and_the_firing_says_so() {
    let (w, tags) = world_with_tags(&["一", "二", "三", "四"]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    create_rule(&w, keyword_rule("开始", &[&tags["一"]], "on")).await;
    let step = |from: &str, to: &str| {
        json!({
            "name": format!("{from}到{to}"),
            "trigger": {"kind": "tag_added", "tag_id": tags[from]},
            "actions": {"add": [tags[to]]},
            "mode": "on",
        })
    };
    create_rule(&w, step("一", "二")).await;
    let third = create_rule(&w, step("二", "三")).await;
    let fourth = create_rule(&w, step("三", "四")).await;

    let feed = w.feed();
    feed.post(&[feed.text("wm_alice", "sales_li", "开始吧")])
        .await
        .unwrap();
    settle(&w).await;

    tags_everywhere(&w, &member, &["一", "二", "三"]).await;
    let at_limit = firings(&w, &third).await;
    assert_eq!(at_limit[0]["depth"], 3);
    let stopped = s(&at_limit[0]["chain_stopped"]);
    assert!(stopped.contains(&s(&fourth["id"])), "{stopped}");
    assert!(firings(&w, &fourth).await.is_empty());
    w.stop().await;
}

#[tokio::test]
async fn a_rule_naming_a_deleted_tag_shows_as_broken() {
    let (w, tags) = world_with_tags(&["促销敏感", "旧标签"]).await;
    let rule = create_rule(&w, keyword_rule("优惠券", &[&tags["旧标签"]], "on")).await;
    assert_eq!(rule["status"], "ok");
    let (status, body) = w
        .admin(Method::DELETE, &format!("/tags/{}", tags["旧标签"]), None)
        .await;
    assert!(
        status == 202 || status == 204 || status == 200,
        "{status} {body}"
    );
    settle(&w).await;

    let (status, shown) = w
        .admin(Method::GET, &format!("/rules/{}", s(&rule["id"])), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["status"], "broken", "{shown}");
    let problems = shown["problems"].to_string();
    assert!(problems.contains(&tags["旧标签"]), "{problems}");
    let (_, listed) = w.admin(Method::GET, "/rules", None).await;
    assert_eq!(listed["rules"][0]["status"], "broken");
    w.stop().await;
}

#[tokio::test]
async fn rules_are_refused_with_the_field_named() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let cases = [
        (
            json!({"name": "x", "trigger": {"kind": "keyword", "any": []}, "actions": {"add": [tags["促销敏感"]]}, "mode": "on"}),
            "trigger.any",
        ),
        (
            json!({"name": "x", "trigger": {"kind": "channel", "state": "s".repeat(31)}, "actions": {"add": [tags["促销敏感"]]}, "mode": "on"}),
            "trigger.state",
        ),
        (
            json!({"name": "x", "trigger": {"kind": "keyword", "any": ["a"]}, "actions": {"add": ["nope"]}, "mode": "on"}),
            "actions.add[0]",
        ),
        (
            json!({"name": "x", "trigger": {"kind": "keyword", "any": ["a"]}, "actions": {"add": [tags["促销敏感"]]}, "mode": "sometimes"}),
            "mode",
        ),
        (
            json!({"name": "x", "trigger": {"kind": "keyword", "any": ["a"]}, "actions": {"add": [tags["促销敏感"]]}, "mode": "canary"}),
            "canary_limit",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = w.admin(Method::POST, "/rules", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }
    let (_, listed) = w.admin(Method::GET, "/rules", None).await;
    assert_eq!(listed["rules"], json!([]), "nothing stored");
    w.stop().await;
}

#[tokio::test]
async fn switching_a_canary_to_on_acts_on_new_firings_without_replaying_old_ones() {
    let (w, tags) = world_with_tags(&["促销敏感"]).await;
    let people = customers(&w, "s", 3).await;
    let mut body = keyword_rule("优惠券", &[&tags["促销敏感"]], "canary");
    body["canary_limit"] = json!(1);
    let rule = create_rule(&w, body).await;
    let feed = w.feed();
    for (c, _) in &people[..2] {
        feed.post(&[feed.text(c, "sales_li", "优惠券")])
            .await
            .unwrap();
        settle(&w).await;
    }
    let (status, _) = w
        .admin(
            Method::PATCH,
            &format!("/rules/{}", s(&rule["id"])),
            Some(json!({"mode": "on"})),
        )
        .await;
    assert_eq!(status, 200);
    feed.post(&[feed.text(&people[2].0, "sales_li", "优惠券")])
        .await
        .unwrap();
    settle(&w).await;

    assert_eq!(
        outcomes(&firings(&w, &rule).await),
        ["applied", "canary_full", "applied"]
    );
    let tagged: Vec<&MemberId> = {
        let mut v = Vec::new();
        for (_, m) in &people {
            if !hub_tag_ids(&w, m).await.is_empty() {
                v.push(m);
            }
        }
        v
    };
    assert_eq!(tagged, [&people[0].1, &people[2].1]);
    w.stop().await;
}

/// Polls an undo run until it ends; answers its report.
async fn finished_run(w: &crate::support::world::World, run_id: &str) -> serde_json::Value {
    let path = format!("/sync/{run_id}");
    wait_until("the undo run ends", || async {
        let (status, body) = w.admin(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        body["status"] != "running"
    })
    .await;
    w.admin(Method::GET, &path, None).await.1
}

#[tokio::test]
async fn undo_removes_the_rules_tags_everywhere_except_where_an_operator_changed_them_after_the_firing_which_is_listed()
 {
    let (w, tags) = world_with_tags(&["投诉风险", "已成交"]).await;
    let people = customers(&w, "u", 4).await;
    // The fourth customer had the tag already: its firing is `already_had`, and undo leaves
    // it alone.
    let (status, _) = w
        .admin(
            Method::POST,
            &format!("/members/{}/tags", people[3].1),
            Some(json!({"add": [tags["投诉风险"]]})),
        )
        .await;
    assert_eq!(status, 202);
    settle(&w).await;
    let rule = create_rule(&w, keyword_rule("作业", &[&tags["投诉风险"]], "on")).await;
    let feed = w.feed();
    let messages: Vec<_> = people
        .iter()
        .map(|(c, _)| feed.text(c, "sales_li", "老师,作业写完了"))
        .collect();
    feed.post(&messages).await.unwrap();
    settle(&w).await;
    for (_, m) in &people {
        tags_everywhere(&w, m, &["投诉风险"]).await;
    }
    // An operator confirms the tag on the second customer after the firing.
    let (status, _) = w
        .admin(
            Method::POST,
            &format!("/members/{}/tags", people[1].1),
            Some(json!({"add": [tags["投诉风险"]]})),
        )
        .await;
    assert_eq!(status, 202);
    settle(&w).await;

    let (status, started) = w
        .admin(
            Method::POST,
            &format!("/rules/{}:undo", s(&rule["id"])),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let report = finished_run(&w, &s(&started["run_id"])).await;
    settle(&w).await;

    assert_eq!(report["status"], "done", "{report}");
    assert_eq!(report["scope"], "undo");
    assert_eq!(report["repaired"]["firings_undone"], 2, "{report}");
    let kept = report["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{report}");
    assert_eq!(kept[0]["customer"], people[1].0.as_str());
    assert_eq!(kept[0]["tag_id"], tags["投诉风险"].as_str());
    tags_everywhere(&w, &people[0].1, &[]).await;
    tags_everywhere(&w, &people[1].1, &["投诉风险"]).await;
    tags_everywhere(&w, &people[2].1, &[]).await;
    tags_everywhere(&w, &people[3].1, &["投诉风险"]).await;

    let mut outcomes_by_customer: Vec<(String, String)> = firings(&w, &rule)
        .await
        .iter()
        .map(|f| (s(&f["customer"]), s(&f["outcome"])))
        .collect();
    outcomes_by_customer.sort();
    assert_eq!(
        outcomes_by_customer,
        [
            (people[0].0.clone(), "undone".to_string()),
            (people[1].0.clone(), "applied".to_string()),
            (people[2].0.clone(), "undone".to_string()),
            (people[3].0.clone(), "already_had".to_string()),
        ]
    );
    let origin = format!("rule-undo:{}", s(&rule["id"]));
    assert!(audit(&w).await.iter().any(|e| e.origin == origin));

    // A second undo finds nothing more of the rule's to reverse.
    let (_, again) = w
        .admin(
            Method::POST,
            &format!("/rules/{}:undo", s(&rule["id"])),
            None,
        )
        .await;
    let report = finished_run(&w, &s(&again["run_id"])).await;
    assert_eq!(
        report["repaired"]["firings_undone"].as_u64().unwrap_or(0),
        0
    );
    w.stop().await;
}
