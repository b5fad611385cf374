//! A tag moved to another group: WeCom has no move, so tagsync creates it anew there, carries
//! every relation over, and deletes the old one; the hub id and the mall id stay.

use crate::steps::*;

#[tokio::test]
async fn move_tag_between_groups_in_mall_recreates_it_in_wecom_and_keeps_relations() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let to = mall_made_group(&w, "专属权益", 10, &[("生日礼", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let old = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[old.as_str()], &[])
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;
    let carrying: Vec<String> = w
        .wecom
        .relations()
        .into_iter()
        .filter(|r| r.tags.contains(&old))
        .map(|r| r.userid)
        .collect();
    assert!(carrying.contains(&"sales_li".to_owned()));
    let hub_before = hub_tag(&w, "会员等级", "金卡").await;
    let mall_id = mall_tag_id(&w, "会员等级", "金卡");

    w.mall.operator().move_tag(&mall_id, &to).unwrap();
    converged(&w).await;

    let new = wecom_tag(&w, "专属权益", "金卡").id;
    assert_ne!(new, old, "WeCom has no move: a new tag");
    assert!(
        w.wecom_tag("会员等级", "金卡").is_none(),
        "the old one is gone"
    );
    for userid in &carrying {
        let tags = w.wecom.relation_tags(userid, "wm_alice").unwrap();
        assert!(
            tags.contains(&new),
            "{userid} carries the new tag: {tags:?}"
        );
        assert!(!tags.contains(&old), "{userid} lost the old tag: {tags:?}");
    }
    let hub_after = hub_tag(&w, "专属权益", "金卡").await;
    assert_eq!(hub_after["id"], hub_before["id"], "the hub id stays");
    assert_eq!(s(&hub_after["wecom_id"]), new);
    assert_eq!(
        s(&hub_after["mall_id"]),
        mall_id.as_str(),
        "the mall id stays"
    );
    member_tags_everywhere(&w, &member, &["专属权益/金卡"]).await;
    w.stop().await;
}

#[tokio::test]
async fn admin_move_keeps_the_hub_and_mall_ids() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    mall_made_group(&w, "专属权益", 10, &[("生日礼", 1)]).await;
    let before = hub_tag(&w, "会员等级", "银卡").await;
    let to = hub_group(&w, "专属权益").await;

    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{}", s(&before["id"])),
            Some(serde_json::json!({"group_id": to["id"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    converged(&w).await;

    let after = hub_tag(&w, "专属权益", "银卡").await;
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["mall_id"], before["mall_id"]);
    assert_ne!(after["wecom_id"], before["wecom_id"]);
    assert_eq!(
        mall_tag(&w, "专属权益", "银卡").group_id.as_str(),
        s(&to["mall_id"])
    );
    w.stop().await;
}

/// A person takes 金卡 off one of alice's relations; her member job is held at its read of
/// the customer while the mall moves 金卡 to another group. The move's re-mark of alice's
/// relations waits for her member job (it holds her lock), which takes 金卡 off everywhere;
/// the move then finds nothing to carry over. It used to re-mark from the stored bases —
/// putting the new tag back on the relation it had been taken off — so alice kept it.
#[tokio::test]
async fn tag_taken_off_a_relation_while_the_tag_moves_stays_off_everywhere() {
    use serde_json::json;
    use tagsync::sim::hold::Phase;
    use tagsync::wecom::classify::ApiOp;
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let to = mall_made_group(&w, "专属权益", 10, &[("生日礼", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    w.mall.operator().tag_member(&member, &gold_m).unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;

    let mut hold = w.wecom.hold(
        ApiOp::GetExternalContact,
        Phase::Before,
        json!({"external_userid": "wm_alice"}),
    );
    let old = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .console()
        .tag_relation("sales_wang", "wm_alice", &[], &[old.as_str()])
        .unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("alice's member job");
    w.mall.operator().move_tag(&gold_m, &to).unwrap();
    wait_until("the move created 金卡 in 专属权益 in WeCom", || async {
        w.wecom_tag("专属权益", "金卡").is_some()
    })
    .await;
    held.release();
    converged(&w).await;

    member_tags_everywhere(&w, &member, &[]).await;
    assert!(
        w.wecom_tag("会员等级", "金卡").is_none(),
        "the old one is gone"
    );
    w.stop().await;
}

/// Another app takes 金卡 off one of alice's relations (WeCom tells nobody); then the mall
/// moves 金卡. The move reads alice's relations before re-marking them: the one without 金卡
/// is not given the new tag, and since no event will say what changed there, the move queues
/// alice's member job, which takes 金卡 off everywhere.
#[tokio::test]
async fn tag_another_app_took_off_a_relation_before_a_move_stays_off_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let to = mall_made_group(&w, "专属权益", 10, &[("生日礼", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    w.mall.operator().tag_member(&member, &gold_m).unwrap();
    settle(&w).await;
    let old = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .silent()
        .tag_relation("sales_wang", "wm_alice", &[], &[old.as_str()])
        .unwrap();

    w.mall.operator().move_tag(&gold_m, &to).unwrap();
    converged(&w).await;

    member_tags_everywhere(&w, &member, &[]).await;
    assert!(w.wecom_tag("专属权益", "金卡").is_some());
    w.stop().await;
}

/// A person renames 金卡 in WeCom while tagsync moves it there (its create in the new group
/// held): WeCom's move deletes the tag that was renamed. The rename is carried onto the new
/// tag before the old one goes, and reaches the other sides.
#[tokio::test]
async fn tag_renamed_in_wecom_while_tagsync_moves_it_there_keeps_the_new_name() {
    use serde_json::json;
    use tagsync::sim::hold::Phase;
    use tagsync::wecom::classify::ApiOp;
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let to = mall_made_group(&w, "专属权益", 10, &[("生日礼", 1)]).await;
    let to_w = wecom_group(&w, "专属权益").id;
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let hub_id = hub_tag(&w, "会员等级", "金卡").await["id"].clone();
    let mut hold = w
        .wecom
        .hold(ApiOp::AddCorpTag, Phase::Before, json!({"group_id": to_w}));
    w.mall.operator().move_tag(&gold_m, &to).unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the move's create");
    let old = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom.console().rename(&old, "足金卡").unwrap();
    held.release();
    converged(&w).await;

    let tag = hub_tag(&w, "专属权益", "足金卡").await;
    assert_eq!(tag["id"], hub_id, "the same hub tag");
    assert_eq!(mall_tag_id(&w, "专属权益", "足金卡"), gold_m);
    assert_ne!(wecom_tag(&w, "专属权益", "足金卡").id, old);
    w.stop().await;
}

/// The mall's side of a move: tagsync carries a hub move to the mall (`PATCH /tags/{id}`
/// with the new group); the mall's operator renames the tag meanwhile. The base after the
/// move is what tagsync read plus the group it set, so the operator's name reaches the hub
/// and WeCom in the new group.
#[tokio::test]
async fn tag_renamed_in_the_mall_while_tagsync_moves_it_there_keeps_the_new_name() {
    use serde_json::Value;
    use tagsync::sim::hold::Phase;
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    mall_made_group(&w, "专属权益", 10, &[("生日礼", 1)]).await;
    let silver = hub_tag(&w, "会员等级", "银卡").await;
    let to = hub_group(&w, "专属权益").await;
    let silver_m = mall_tag_id(&w, "会员等级", "银卡");
    let mut hold = w.mall.hold(
        "PATCH",
        &format!("/tags/{silver_m}"),
        Phase::Before,
        Value::Null,
    );
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{}", s(&silver["id"])),
            Some(serde_json::json!({"group_id": to["id"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let held = hold.held(HELD_WITHIN).await.expect("the move's PATCH");
    w.mall.operator().rename_tag(&silver_m, "白银卡").unwrap();
    held.release();
    converged(&w).await;

    let tag = hub_tag(&w, "专属权益", "白银卡").await;
    assert_eq!(tag["id"], silver["id"]);
    assert_eq!(mall_tag_id(&w, "专属权益", "白银卡"), silver_m);
    wecom_tag(&w, "专属权益", "白银卡");
    w.stop().await;
}
