//! Scoped groups (docs/scoped-groups.md): a hub group scoped to departments lives in WeCom as
//! a rule-group (customer strategy) tag group with that range; it reaches the mall only while
//! its `carry_to_mall` switch is on; its tags sync like corp tags, member tags included.

use crate::steps::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tagsync::sim::wecom::RangeNode;

/// Creates a scoped group in the hub (admin API) and waits until nothing moves.
async fn hub_scoped_group(w: &crate::support::world::World, body: Value) -> Value {
    let (status, created) = w.admin(Method::POST, "/tag-groups", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    settle(w).await;
    created
}

#[tokio::test]
async fn scoped_group_made_in_the_hub_appears_in_wecom_as_a_rule_group_with_its_range_and_in_the_mall()
 {
    let w = start().await;
    hub_scoped_group(
        &w,
        json!({"name": "售后服务", "order": 3, "tags": [{"name": "保养到期"}, {"name": "延保服务"}],
               "scope": {"name": "售后部", "departments": [3, 7], "users": ["zhang_san"]}}),
    )
    .await;

    // WeCom: one rule group named 售后部 whose range is exactly the scope's …
    let strategies = w.wecom.strategies();
    assert_eq!(strategies.len(), 1, "{strategies:?}");
    let st = &strategies[0];
    assert_eq!((st.name.as_str(), st.parent_id), ("售后部", 0));
    let range: BTreeSet<RangeNode> = [
        RangeNode::Party(3),
        RangeNode::Party(7),
        RangeNode::User("zhang_san".into()),
    ]
    .into();
    assert_eq!(st.range, range);
    // … holding the group and its tags (and the corp library does not).
    let wg = wecom_group(&w, "售后服务");
    assert_eq!(wg.strategy_id, Some(st.id));
    let names: BTreeSet<&str> = wg.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["保养到期", "延保服务"]));
    assert!(
        w.wecom
            .library()
            .iter()
            .all(|g| g.strategy_id.is_some() || g.name != "售后服务"),
        "not in the corp library"
    );
    // The hub shows the rule group's id, both sides synced; the mall has the group (default on).
    let hub = hub_group(&w, "售后服务").await;
    assert_eq!(hub["scope"]["strategy_id"], st.id);
    assert_eq!(s(&hub["wecom_id"]), wg.id);
    assert_eq!(hub["sync"], json!({"wecom": "synced", "mall": "synced"}));
    let mall = mall_group(&w, "售后服务");
    let mall_names: BTreeSet<&str> = mall.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(mall_names, names);
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn scoped_group_with_its_mall_switch_off_stays_out_of_the_mall_and_reaches_it_when_turned_on()
 {
    let w = start().await;
    let g = hub_scoped_group(
        &w,
        json!({"name": "北京客户评级", "tags": [{"name": "A级"}],
               "scope": {"departments": [4]}, "carry_to_mall": false}),
    )
    .await;
    let wg = wecom_group(&w, "北京客户评级");
    assert!(wg.strategy_id.is_some(), "in WeCom as a rule group");
    assert!(
        w.mall.library().iter().all(|m| m.group.name != "北京客户评级"),
        "kept from the mall"
    );
    let hub = hub_group(&w, "北京客户评级").await;
    assert_eq!(hub["mall_id"], Value::Null);
    assert_eq!(hub["tags"][0]["mall_id"], Value::Null);

    // A tag added later stays out of the mall too.
    let (status, body) = w
        .admin(
            Method::POST,
            "/tags",
            Some(json!({"group_id": g["id"], "name": "B级"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    settle(&w).await;
    assert!(wecom_tag_named(&w, "北京客户评级", "B级"));
    assert!(w.mall.library().iter().all(|m| m.group.name != "北京客户评级"));

    // Switched on: the group and its tags are carried.
    let id = s(&g["id"]);
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tag-groups/{id}"),
            Some(json!({"carry_to_mall": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&w).await;
    let mall = mall_group(&w, "北京客户评级");
    let names: BTreeSet<&str> = mall.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["A级", "B级"]));
    w.stop().await;
}

fn wecom_tag_named(w: &crate::support::world::World, group: &str, tag: &str) -> bool {
    w.wecom_tag(group, tag).is_some()
}

#[tokio::test]
async fn rule_group_tag_renamed_in_wecom_keeps_its_ids_everywhere() {
    let w = start().await;
    hub_scoped_group(
        &w,
        json!({"name": "售后服务", "tags": [{"name": "保养到期"}],
               "scope": {"departments": [3]}}),
    )
    .await;
    let before = hub_tag(&w, "售后服务", "保养到期").await;
    let wecom_id = wecom_tag(&w, "售后服务", "保养到期").id;
    let mall_id = mall_tag_id(&w, "售后服务", "保养到期");

    // Renamed in WeCom's console: the event carries the rule group's StrategyId.
    w.wecom.console().rename(&wecom_id, "保养提醒").unwrap();
    settle(&w).await;

    let after = hub_tag(&w, "售后服务", "保养提醒").await;
    assert_eq!(after["id"], before["id"], "same hub tag");
    assert_eq!(s(&after["wecom_id"]), wecom_id, "same WeCom tag");
    assert_eq!(s(&after["mall_id"]), mall_id.as_str(), "same mall tag");
    assert_eq!(mall_tag_id(&w, "售后服务", "保养提醒"), mall_id);
    assert_eq!(after["sync"], json!({"wecom": "synced", "mall": "synced"}));
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn member_tags_on_rule_group_tags_sync_both_ways() {
    let w = start().await;
    hub_scoped_group(
        &w,
        json!({"name": "售后服务", "tags": [{"name": "保养到期"}, {"name": "延保服务"}],
               "scope": {"departments": [3]}}),
    )
    .await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;

    // WeCom → mall: a salesperson tags the customer with a rule-group tag.
    let due = wecom_tag(&w, "售后服务", "保养到期").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[due.as_str()], &[])
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["售后服务/保养到期"]).await;
    assert_eq!(
        w.wecom.relation_tags("sales_wang", "wm_alice").unwrap(),
        [due.clone()],
        "the other relation carries the rule-group tag (mark_tag takes its id)"
    );

    // Mall → WeCom: the mall's operator tags the member with the other one.
    let extended = mall_tag_id(&w, "售后服务", "延保服务");
    w.mall.operator().tag_member(&member, &extended).unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["售后服务/保养到期", "售后服务/延保服务"]).await;
    w.stop().await;
}
