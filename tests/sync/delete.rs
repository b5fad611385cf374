//! Deletions: an explicit delete of a tag or group goes everywhere; WeCom dropping a group
//! with its last tag is not a group deletion.

use crate::steps::*;

#[tokio::test]
async fn delete_tag_in_wecom_console_deletes_it_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let gold = wecom_tag(&w, "会员等级", "金卡").id;

    w.wecom.console().delete(&gold).unwrap();
    converged(&w).await;

    assert!(w.mall_tag("会员等级", "金卡").is_none());
    assert!(w.hub_tag("会员等级", "金卡").await.is_none());
    assert!(
        w.mall_tag("会员等级", "银卡").is_some(),
        "its sibling stays"
    );
    w.stop().await;
}

#[tokio::test]
async fn delete_group_in_mall_deletes_it_everywhere() {
    let w = start().await;
    let grades = mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    mall_made_group(&w, "来源渠道", 10, &[("门店", 1)]).await;

    w.mall.operator().delete_group(&grades).unwrap();
    converged(&w).await;

    assert!(w.wecom_group("会员等级").is_none());
    assert!(w.hub_group("会员等级").await.is_none());
    assert!(w.wecom_group("来源渠道").is_some(), "the other group stays");
    w.stop().await;
}

#[tokio::test]
async fn delete_group_in_wecom_console_deletes_it_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let group = wecom_group(&w, "会员等级").id;

    w.wecom.console().delete(&group).unwrap();
    converged(&w).await;

    assert!(w.mall_group("会员等级").is_none());
    assert!(w.hub_group("会员等级").await.is_none());
    w.stop().await;
}

#[tokio::test]
async fn admin_delete_group_deletes_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let hub = hub_group(&w, "会员等级").await;

    let (status, body) = w
        .admin(
            Method::DELETE,
            &format!("/tag-groups/{}", s(&hub["id"])),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    converged(&w).await;

    assert!(w.wecom_group("会员等级").is_none());
    assert!(w.mall_group("会员等级").is_none());
    assert!(w.hub_group("会员等级").await.is_none());
    w.stop().await;
}

#[tokio::test]
async fn wecom_drops_group_when_last_tag_deleted_but_hub_and_mall_keep_it() {
    let w = start().await;
    let grades = mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let hub_id = hub_group(&w, "会员等级").await["id"].clone();
    let old_wecom_group = wecom_group(&w, "会员等级").id;

    w.wecom
        .console()
        .delete(&wecom_tag(&w, "会员等级", "金卡").id)
        .unwrap();
    converged(&w).await;

    assert!(w.wecom_group("会员等级").is_none(), "WeCom dropped it");
    let mall = mall_group(&w, "会员等级");
    assert_eq!(mall.group.id, grades, "the mall keeps its group");
    assert!(mall.tags.is_empty());
    let hub = hub_group(&w, "会员等级").await;
    assert_eq!(hub["id"], hub_id, "the hub keeps its group");
    assert!(hub["wecom_id"].is_null(), "its WeCom id is cleared: {hub}");

    // The next tag brings the group back to WeCom, as a new WeCom group.
    w.mall.operator().create_tag(&grades, "银卡", 1).unwrap();
    converged(&w).await;
    let back = wecom_group(&w, "会员等级");
    assert_ne!(back.id, old_wecom_group);
    assert_eq!(s(&hub_group(&w, "会员等级").await["wecom_id"]), back.id);
    w.stop().await;
}
