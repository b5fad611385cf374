//! Scoped groups (docs/scoped-groups.md): a hub group scoped to departments lives in WeCom as
//! a rule-group (customer strategy) tag group with that range; it reaches the mall only while
//! its `carry_to_mall` switch is on; its tags sync like corp tags, member tags included.

use crate::steps::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tagsync::sim::wecom::RangeNode;
use tagsync::wecom::classify::ApiOp;

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
        w.mall
            .library()
            .iter()
            .all(|m| m.group.name != "北京客户评级"),
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
    assert!(
        w.mall
            .library()
            .iter()
            .all(|m| m.group.name != "北京客户评级")
    );

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

#[tokio::test]
async fn member_tag_on_a_scoped_tag_kept_from_the_mall_reaches_every_wecom_relation_and_never_the_mall()
 {
    let w = start().await;
    hub_scoped_group(
        &w,
        json!({"name": "北京客户评级", "tags": [{"name": "A级"}],
               "scope": {"departments": [4]}, "carry_to_mall": false}),
    )
    .await;
    let (status, body) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "客户等级", "tags": [{"name": "VIP"}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;

    // WeCom: a salesperson puts the kept tag on: the hub and the other relation follow, the
    // mall does not (and nothing waits for it there: settling would fail on a parked job).
    let a = wecom_tag(&w, "北京客户评级", "A级").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[a.as_str()], &[])
        .unwrap();
    settle(&w).await;
    let view = w.member_view(member.as_str()).await;
    let kept = BTreeSet::from(["北京客户评级/A级".to_owned()]);
    assert_eq!(view.hub, kept);
    assert_eq!(view.relations["sales_li"], kept);
    assert_eq!(view.relations["sales_wang"], kept);
    assert!(view.mall.is_empty(), "kept from the mall: {:?}", view.mall);

    // A mall change of the member's other tags leaves the kept tag where it is.
    let vip = mall_tag_id(&w, "客户等级", "VIP");
    w.mall.operator().tag_member(&member, &vip).unwrap();
    settle(&w).await;
    let view = w.member_view(member.as_str()).await;
    let both = BTreeSet::from(["北京客户评级/A级".to_owned(), "客户等级/VIP".to_owned()]);
    assert_eq!(view.hub, both);
    assert_eq!(view.relations["sales_li"], both);
    assert_eq!(view.relations["sales_wang"], both);
    assert_eq!(view.mall, BTreeSet::from(["客户等级/VIP".to_owned()]));
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn scoped_group_switched_off_the_mall_after_reaching_it_leaves_the_mall_and_keeps_its_member_tags_in_wecom()
 {
    let w = start().await;
    let g = hub_scoped_group(
        &w,
        json!({"name": "售后服务", "tags": [{"name": "保养到期"}],
               "scope": {"departments": [3]}}),
    )
    .await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let due = wecom_tag(&w, "售后服务", "保养到期").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[due.as_str()], &[])
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["售后服务/保养到期"]).await;

    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tag-groups/{}", s(&g["id"])),
            Some(json!({"carry_to_mall": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&w).await;

    // The mall's copy is gone (and the member's mark with it); the hub and WeCom keep all,
    // with the same WeCom ids.
    assert!(
        w.mall.library().iter().all(|m| m.group.name != "售后服务"),
        "the mall's copy is deleted"
    );
    let hub = hub_group(&w, "售后服务").await;
    assert_eq!(hub["mall_id"], Value::Null);
    assert_eq!(hub["tags"][0]["mall_id"], Value::Null);
    assert_eq!(s(&hub["tags"][0]["wecom_id"]), due);
    let view = w.member_view(member.as_str()).await;
    let kept = BTreeSet::from(["售后服务/保养到期".to_owned()]);
    assert_eq!(view.hub, kept);
    assert_eq!(view.relations["sales_li"], kept);
    assert!(view.mall.is_empty(), "{:?}", view.mall);
    let actions: Vec<String> = audit(&w).await.into_iter().map(|e| e.action).collect();
    assert!(
        actions.iter().any(|a| a == "group.left_mall"),
        "{actions:?}"
    );

    // The member's next job (a mall change of another tag) does not read the mall's loss of
    // the copy as the mall taking the tag off.
    let (status, body) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "客户等级", "tags": [{"name": "VIP"}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    settle(&w).await;
    let vip = mall_tag_id(&w, "客户等级", "VIP");
    w.mall.operator().tag_member(&member, &vip).unwrap();
    settle(&w).await;
    let view = w.member_view(member.as_str()).await;
    let both = BTreeSet::from(["售后服务/保养到期".to_owned(), "客户等级/VIP".to_owned()]);
    assert_eq!(view.hub, both);
    assert_eq!(view.relations["sales_li"], both);
    assert_eq!(view.mall, BTreeSet::from(["客户等级/VIP".to_owned()]));
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn scoped_group_renamed_reordered_and_deleted_in_the_hub_follows_in_its_rule_group() {
    let w = start().await;
    let g = hub_scoped_group(
        &w,
        json!({"name": "售后服务", "order": 1, "tags": [{"name": "保养到期"}, {"name": "延保服务"}],
               "scope": {"name": "售后部", "departments": [3]}}),
    )
    .await;
    let id = s(&g["id"]);
    let wg = wecom_group(&w, "售后服务");
    let due = hub_tag(&w, "售后服务", "保养到期").await;

    // Group renamed and reordered, a tag renamed: edit_strategy_tag, same ids.
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tag-groups/{id}"),
            Some(json!({"name": "售后", "order": 5})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{}", s(&due["id"])),
            Some(json!({"name": "保养提醒"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&w).await;
    let renamed = wecom_group(&w, "售后");
    assert_eq!((renamed.id.as_str(), renamed.order), (wg.id.as_str(), 5));
    assert_eq!(
        renamed.strategy_id, wg.strategy_id,
        "still in its rule group"
    );
    assert_eq!(
        wecom_tag(&w, "售后", "保养提醒").id,
        s(&due["wecom_id"]),
        "same WeCom tag"
    );
    converged(&w).await;

    // Deleted: its tag group leaves the rule group (del_strategy_tag); the rule group stays.
    let (status, body) = w
        .admin(Method::DELETE, &format!("/tag-groups/{id}"), None)
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    settle(&w).await;
    assert!(
        w.wecom.library().iter().all(|g| g.id != wg.id),
        "the WeCom group is deleted"
    );
    assert_eq!(w.wecom.strategies().len(), 1, "the rule group is kept");
    assert!(w.mall.library().iter().all(|m| m.group.name != "售后"));
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn scoped_group_range_changed_in_the_hub_is_sent_to_its_rule_group() {
    let w = start().await;
    let g = hub_scoped_group(
        &w,
        json!({"name": "售后服务", "tags": [{"name": "保养到期"}],
               "scope": {"name": "售后部", "departments": [3, 7], "users": ["zhang_san"]}}),
    )
    .await;
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tag-groups/{}", s(&g["id"])),
            Some(json!({"scope": {"name": "售后中心", "departments": [3, 9], "users": []}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&w).await;
    let st = &w.wecom.strategies()[0];
    assert_eq!(st.name, "售后中心");
    assert_eq!(
        st.range,
        BTreeSet::from([RangeNode::Party(3), RangeNode::Party(9)])
    );
    let hub = hub_group(&w, "售后服务").await;
    assert_eq!(hub["sync"]["wecom"], "synced");
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn rule_group_tag_group_made_in_wecom_becomes_a_hub_group_scoped_to_its_rule_group() {
    let w = start().await;
    let sid = w.wecom.create_strategy(
        0,
        "售后部",
        vec![RangeNode::Party(3), RangeNode::User("zhang_san".into())],
    );
    // Made in WeCom's console: the callback carries the rule group's StrategyId.
    w.wecom
        .console()
        .create_strategy_group(sid, "售后服务", 2, &[("保养到期", 1)])
        .unwrap();
    settle(&w).await;

    let hub = hub_group(&w, "售后服务").await;
    assert_eq!(
        hub["scope"],
        json!({"strategy_id": sid, "name": "售后部", "departments": [3],
               "users": ["zhang_san"], "include_sub": false})
    );
    assert_eq!(hub["carry_to_mall"], true);
    assert_eq!(s(&hub["wecom_id"]), wecom_group(&w, "售后服务").id);
    let mall = mall_group(&w, "售后服务");
    assert_eq!(mall.tags.len(), 1);
    // The rule group is WeCom's as it was: no second one, its range untouched.
    assert_eq!(w.wecom.strategies().len(), 1);
    assert_eq!(w.wecom.call_count(ApiOp::StrategyEdit), 0);
    assert_eq!(w.wecom.call_count(ApiOp::StrategyCreate), 0);
    converged(&w).await;
    w.stop().await;
}

/// The range of the rule group named `name`.
fn range_of(w: &crate::support::world::World, name: &str) -> BTreeSet<RangeNode> {
    w.wecom
        .strategies()
        .into_iter()
        .find(|st| st.name == name)
        .unwrap_or_else(|| panic!("no rule group {name:?}: {:?}", w.wecom.strategies()))
        .range
}

fn parties(ids: &[u32]) -> BTreeSet<RangeNode> {
    ids.iter().copied().map(RangeNode::Party).collect()
}

/// 上海 (2) with 徐汇 (3) under it, and two groups scoped to 上海: one with its
/// sub-departments, one without.
async fn shanghai_groups(w: &crate::support::world::World) {
    let dirs = w.wecom.console();
    dirs.create_department(2, "上海", 1, 1).unwrap();
    dirs.create_department(3, "徐汇", 2, 1).unwrap();
    settle(w).await;
    hub_scoped_group(
        w,
        json!({"name": "上海客户评级", "tags": [{"name": "A级"}],
               "scope": {"departments": [2], "include_sub": true}}),
    )
    .await;
    hub_scoped_group(
        w,
        json!({"name": "上海门店", "tags": [{"name": "到店"}],
               "scope": {"departments": [2]}}),
    )
    .await;
    assert_eq!(range_of(w, "上海客户评级"), parties(&[2, 3]), "expanded");
    assert_eq!(range_of(w, "上海门店"), parties(&[2]), "as given");
}

#[tokio::test]
async fn a_sub_department_added_later_joins_the_rule_groups_range_when_include_sub_is_on() {
    let w = start().await;
    shanghai_groups(&w).await;

    // A department added two levels down (create_party callback).
    w.wecom
        .console()
        .create_department(5, "徐汇二店", 3, 2)
        .unwrap();
    settle(&w).await;
    assert_eq!(range_of(&w, "上海客户评级"), parties(&[2, 3, 5]));
    assert_eq!(range_of(&w, "上海门店"), parties(&[2]), "include_sub off");
    // A department moved under 上海 from elsewhere (update_party) joins too.
    w.wecom
        .console()
        .create_department(8, "苏州", 1, 3)
        .unwrap();
    settle(&w).await;
    w.wecom.console().update_department(8, "苏州", 2).unwrap();
    settle(&w).await;
    assert_eq!(range_of(&w, "上海客户评级"), parties(&[2, 3, 5, 8]));
    // The hub's scope still says what the operator chose.
    let hub = hub_group(&w, "上海客户评级").await;
    assert_eq!(hub["scope"]["departments"], json!([2]));
    assert_eq!(hub["sync"]["wecom"], "synced");
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn a_sub_department_whose_callback_was_lost_joins_the_range_at_the_nightly_run() {
    let w = start().await;
    shanghai_groups(&w).await;

    // Added by another app: no callback reaches tagsync.
    w.wecom.silent().create_department(6, "浦东", 2, 3).unwrap();
    settle(&w).await;
    assert_eq!(
        range_of(&w, "上海客户评级"),
        parties(&[2, 3]),
        "not known yet"
    );

    let report = tagsync::jobs::nightly::run(&w.app).await.unwrap();
    assert_eq!(report.directories.len(), 1, "{report:?}");
    settle(&w).await;
    assert_eq!(range_of(&w, "上海客户评级"), parties(&[2, 3, 6]));
    assert_eq!(range_of(&w, "上海门店"), parties(&[2]));
    converged(&w).await;
    w.stop().await;
}
