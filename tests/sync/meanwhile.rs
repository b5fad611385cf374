//! A side changed by someone else exactly between tagsync's read and its write there (the
//! simulators hold tagsync's call until the test has made the change): both changes survive
//! and reach every side. A base is what tagsync read and merged plus exactly what it applied,
//! never what a side shows after tagsync's own write (issue 12 §1; the member tags' case is
//! `members::tag_added_in_the_mall_while_a_member_job_writes_there_survives_everywhere`, the
//! moves' are in `move_tag`).

use crate::steps::*;
use serde_json::{Value, json};
use tagsync::domain::{ExternalUserId, WecomUserId};
use tagsync::sim::hold::Phase;
use tagsync::wecom::classify::ApiOp;

/// Relation bases: `mark_tag` answers nothing about the relation, and tagsync's base is what
/// it read plus its own call, so a tag a person puts on the relation while the call waits
/// stays a change for the callback's job.
#[tokio::test]
async fn tag_put_on_a_relation_while_tagsync_marks_it_there_survives_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let mut hold = w.wecom.hold(
        ApiOp::MarkTag,
        Phase::Before,
        json!({"userid": "sales_li", "external_userid": "wm_alice"}),
    );
    w.mall
        .operator()
        .tag_member(&member, &mall_tag_id(&w, "会员等级", "金卡"))
        .unwrap();
    let held = hold
        .held(HELD_WITHIN)
        .await
        .expect("the member job's mark_tag");
    let silver = wecom_tag(&w, "会员等级", "银卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[silver.as_str()], &[])
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
    member_tags_everywhere(&w, &member, &["会员等级/金卡", "会员等级/银卡"]).await;
    w.stop().await;
}

/// A tag's first create in WeCom creates its group there (by name). A person renames that
/// new group in the console before tagsync has the answer: the group's base is what tagsync
/// created, not what WeCom shows after, so the rename's callback job takes the console's name
/// for WeCom's change (it used to take it for in sync, and put the hub's name back).
#[tokio::test]
async fn wecom_group_renamed_in_the_console_while_tagsync_creates_it_keeps_the_console_name() {
    let w = start().await;
    let mut hold = w.wecom.hold(
        ApiOp::AddCorpTag,
        Phase::After,
        json!({"group_name": "来源渠道"}),
    );
    let (status, created) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "来源渠道", "order": 10, "tags": [{"name": "门店", "order": 1}]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let held = hold.held(HELD_WITHIN).await.expect("the group's create");
    let group = wecom_group(&w, "来源渠道");
    w.wecom.console().rename(&group.id, "获客渠道").unwrap();
    held.release();
    converged(&w).await;

    let hub = hub_group(&w, "获客渠道").await;
    assert_eq!(hub["id"], created["id"]);
    assert_eq!(s(&hub["wecom_id"]), group.id);
    assert_eq!(mall_tag(&w, "获客渠道", "门店").name, "门店");
    assert!(
        w.wecom_group("来源渠道").is_none(),
        "{:?}",
        w.wecom_library()
    );
    w.stop().await;
}

/// Tag fields in WeCom: tagsync carries a mall rename there (`edit_corp_tag` with the name
/// only); a person reorders the tag in the console meanwhile. The base after the edit is
/// what tagsync read plus the name it set, so the console's order is WeCom's change and
/// reaches the mall and the hub.
#[tokio::test]
async fn tag_reordered_in_wecom_while_tagsync_renames_it_there_keeps_both_changes() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 3), ("银卡", 2), ("铜卡", 1)]).await;
    let id = |name: &str| wecom_tag(&w, "会员等级", name).id;
    let (gold, silver, bronze) = (id("金卡"), id("银卡"), id("铜卡"));
    let mut hold = w
        .wecom
        .hold(ApiOp::EditCorpTag, Phase::Before, json!({"id": gold}));
    w.mall
        .operator()
        .rename_tag(&mall_tag_id(&w, "会员等级", "金卡"), "黑金卡")
        .unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the rename's edit");
    let group = wecom_group(&w, "会员等级").id;
    // First listed = largest order: 铜卡 3, 银卡 2, 金卡 1.
    w.wecom
        .console()
        .reorder_tags(&group, &[bronze.as_str(), silver.as_str(), gold.as_str()])
        .unwrap();
    held.release();
    converged(&w).await;

    assert_eq!(wecom_tag(&w, "会员等级", "黑金卡").id, gold);
    for (name, order) in [("黑金卡", 1), ("银卡", 2), ("铜卡", 3)] {
        assert_eq!(mall_tag(&w, "会员等级", name).order, order, "{name}");
        assert_eq!(wecom_tag(&w, "会员等级", name).order, order, "{name}");
    }
    w.stop().await;
}

/// Tag fields in the mall: tagsync carries a WeCom rename there (`PATCH /tags/{id}`); the
/// mall's operator reorders the tag meanwhile. The PATCH answer (which shows the new order
/// too) is not the base; the operator's order reaches WeCom.
#[tokio::test]
async fn tag_reordered_in_the_mall_while_tagsync_renames_it_there_keeps_both_changes() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let mut hold = w.mall.hold(
        "PATCH",
        &format!("/tags/{gold_m}"),
        Phase::Before,
        Value::Null,
    );
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom.console().rename(&gold_w, "钻石卡").unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the rename's PATCH");
    w.mall.operator().reorder_tag(&gold_m, 7).unwrap();
    held.release();
    converged(&w).await;

    assert_eq!(mall_tag_id(&w, "会员等级", "钻石卡"), gold_m);
    assert_eq!(mall_tag(&w, "会员等级", "钻石卡").order, 7);
    assert_eq!(wecom_tag(&w, "会员等级", "钻石卡").order, 7);
    assert_eq!(hub_tag(&w, "会员等级", "钻石卡").await["order"], 7);
    w.stop().await;
}

/// Group fields in the mall: tagsync carries a console rename of the group there; the mall's
/// operator reorders the group meanwhile. Both reach every side.
#[tokio::test]
async fn group_reordered_in_the_mall_while_tagsync_renames_it_there_keeps_both_changes() {
    let w = start().await;
    let group_m = mall_made_group(&w, "会员等级", 20, &[("金卡", 1)]).await;
    let mut hold = w.mall.hold(
        "PATCH",
        &format!("/tag-groups/{group_m}"),
        Phase::Before,
        Value::Null,
    );
    let group_w = wecom_group(&w, "会员等级").id;
    w.wecom.console().rename(&group_w, "会员级别").unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the rename's PATCH");
    w.mall.operator().reorder_group(&group_m, 30).unwrap();
    held.release();
    converged(&w).await;

    assert_eq!(mall_group(&w, "会员级别").group.order, 30);
    assert_eq!(wecom_group(&w, "会员级别").order, 30);
    assert_eq!(hub_group(&w, "会员级别").await["order"], 30);
    w.stop().await;
}

/// Group fields in WeCom: tagsync carries a mall reorder of the group there; a person renames
/// the group in the console meanwhile. Both reach every side.
#[tokio::test]
async fn group_renamed_in_wecom_while_tagsync_reorders_it_there_keeps_both_changes() {
    let w = start().await;
    let group_m = mall_made_group(&w, "会员等级", 20, &[("金卡", 1)]).await;
    let group_w = wecom_group(&w, "会员等级").id;
    let mut hold = w
        .wecom
        .hold(ApiOp::EditCorpTag, Phase::Before, json!({"id": group_w}));
    w.mall.operator().reorder_group(&group_m, 30).unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the reorder's edit");
    w.wecom.console().rename(&group_w, "会员级别").unwrap();
    held.release();
    converged(&w).await;

    assert_eq!(wecom_group(&w, "会员级别").id, group_w);
    assert_eq!(wecom_group(&w, "会员级别").order, 30);
    assert_eq!(mall_group(&w, "会员级别").group.order, 30);
    assert_eq!(hub_group(&w, "会员级别").await["order"], 30);
    w.stop().await;
}

/// The hub's operator untags a member while a member job (carrying the mall's tag to the
/// relations) waits on its `mark_tag`. The job's save then meets the operator's newer marks;
/// what the job did on the sides is still recorded (its bases carried onto the operator's
/// marks), so the operator's job takes the tag off everywhere. The job used to drop its
/// bases with the conflict, and its own writes then looked like new changes on both sides.
#[tokio::test]
async fn member_untagged_in_the_hub_while_tagsync_tags_it_in_wecom_stays_untagged() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let mut hold = w.wecom.hold(
        ApiOp::MarkTag,
        Phase::Before,
        json!({"userid": "sales_li", "external_userid": "wm_alice"}),
    );
    w.mall
        .operator()
        .tag_member(&member, &mall_tag_id(&w, "会员等级", "金卡"))
        .unwrap();
    let held = hold
        .held(HELD_WITHIN)
        .await
        .expect("the member job's mark_tag");
    let gold = hub_tag(&w, "会员等级", "金卡").await["id"].clone();
    let (status, body) = w
        .admin(
            Method::POST,
            &format!("/members/{member}/tags"),
            Some(json!({"remove": [gold]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    held.release();
    settle(&w).await;

    member_tags_everywhere(&w, &member, &[]).await;
    w.stop().await;
}

/// A relation seen for the first time keeps in its base the tag ids the hub does not know
/// (tagsync cannot tell a tag it never syncs from one whose job has not run), so they are not
/// waited for. A person creates a tag in WeCom, adds a customer and at once tags them with it;
/// the member jobs read the new relation before the tag's job has linked the tag (its read of
/// WeCom's library held). Never merged, the tag is no part of what tagsync knows to be in
/// sync there: once linked it is WeCom's change and reaches the mall and the customer's other
/// relation (it used to count as in sync with no mark in the hub, and a later member job took
/// it off the relation).
#[tokio::test]
async fn tag_put_on_a_new_relation_before_tagsync_knows_the_tag_reaches_every_side() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;

    let mut hold = w
        .wecom
        .hold(ApiOp::GetCorpTagList, Phase::Before, Value::Null);
    let group = wecom_group(&w, "会员等级").id;
    let console = w.wecom.console();
    let diamond = console.create_tag(&group, "钻石卡", 3).unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the new tag's job");
    console
        .add_relation("sales_wang", "wm_alice", None)
        .unwrap();
    console
        .tag_relation("sales_wang", "wm_alice", &[diamond.as_str()], &[])
        .unwrap();
    let customer = ExternalUserId::new_unchecked("wm_alice");
    let wang = WecomUserId::new_unchecked("sales_wang");
    let stored_with_it = || async {
        let c = w.app.store.get_customer(&w.tenant, &customer).await;
        c.ok()
            .flatten()
            .and_then(|c| c.relations.get(&wang).cloned())
            .is_some_and(|tags| tags.iter().any(|t| t.as_str() == diamond))
    };
    wait_until(
        "a member job stored the new relation with 钻石卡",
        stored_with_it,
    )
    .await;
    held.release();
    settle(&w).await;
    // Any later member job (here the mall's operator tags alice) must keep it too.
    w.mall
        .operator()
        .tag_member(&member, &mall_tag_id(&w, "会员等级", "金卡"))
        .unwrap();
    converged(&w).await;

    member_tags_everywhere(&w, &member, &["会员等级/金卡", "会员等级/钻石卡"]).await;
    w.stop().await;
}
