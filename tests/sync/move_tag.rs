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
