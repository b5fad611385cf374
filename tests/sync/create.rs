//! Groups and tags created on one side appear on the other two, linked by id.

use crate::steps::*;
use serde_json::json;

#[tokio::test]
async fn mall_created_group_and_tag_reach_wecom_and_hub() {
    let w = start().await;
    let op = w.mall.operator();
    let grades = op.create_group("会员等级", 20).unwrap();
    let gold = op.create_tag(&grades.id, "金卡", 2).unwrap();
    converged(&w).await;

    let hub = hub_group(&w, "会员等级").await;
    let in_wecom = wecom_group(&w, "会员等级");
    assert_eq!(s(&hub["mall_id"]), grades.id.as_str());
    assert_eq!(s(&hub["wecom_id"]), in_wecom.id);
    let tag = hub_tag(&w, "会员等级", "金卡").await;
    assert_eq!(s(&tag["mall_id"]), gold.id.as_str());
    assert_eq!(s(&tag["wecom_id"]), wecom_tag(&w, "会员等级", "金卡").id);
    assert_eq!(tag["sync"], json!({"wecom": "synced", "mall": "synced"}));
    assert_eq!(wecom_tag(&w, "会员等级", "金卡").order, 2);
    w.stop().await;
}

#[tokio::test]
async fn wecom_console_created_tag_reaches_mall_and_hub() {
    let w = start().await;
    let console = w.wecom.console();
    let level = console
        .create_group("客户等级", 20, &[("VIP客户", 2)])
        .unwrap();
    converged(&w).await;
    let ordinary = console.create_tag(&level.group_id, "普通客户", 1).unwrap();
    converged(&w).await;

    let hub = hub_group(&w, "客户等级").await;
    assert_eq!(s(&hub["wecom_id"]), level.group_id);
    assert_eq!(
        s(&hub["mall_id"]),
        mall_group(&w, "客户等级").group.id.as_str()
    );
    let tag = hub_tag(&w, "客户等级", "普通客户").await;
    assert_eq!(s(&tag["wecom_id"]), ordinary);
    assert_eq!(
        s(&tag["mall_id"]),
        mall_tag(&w, "客户等级", "普通客户").id.as_str()
    );
    assert_eq!(mall_tag(&w, "客户等级", "普通客户").order, 1);
    assert_eq!(tag["sync"]["mall"], "synced");
    w.stop().await;
}

#[tokio::test]
async fn admin_created_group_reaches_both_sides() {
    let w = start().await;
    let (status, created) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "来源渠道", "order": 10, "tags": [
                {"name": "线下门店", "order": 2}, {"name": "小程序", "order": 1}]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    converged(&w).await;

    let hub = hub_group(&w, "来源渠道").await;
    assert_eq!(hub["id"], created["id"], "the hub id stays");
    assert_eq!(s(&hub["wecom_id"]), wecom_group(&w, "来源渠道").id);
    assert_eq!(
        s(&hub["mall_id"]),
        mall_group(&w, "来源渠道").group.id.as_str()
    );
    assert_eq!(hub["sync"], json!({"wecom": "synced", "mall": "synced"}));
    for name in ["线下门店", "小程序"] {
        let tag = hub_tag(&w, "来源渠道", name).await;
        assert_eq!(s(&tag["wecom_id"]), wecom_tag(&w, "来源渠道", name).id);
        assert_eq!(
            s(&tag["mall_id"]),
            mall_tag(&w, "来源渠道", name).id.as_str()
        );
        assert_eq!(tag["sync"], json!({"wecom": "synced", "mall": "synced"}));
    }
    w.stop().await;
}

/// The admin API creates a group only with at least one tag (`tags: []` is a 400), so the
/// empty hub group here is the one left when its only tag is deleted: WeCom drops it with the
/// tag, the mall keeps it, and WeCom gets it back only with the next tag.
#[tokio::test]
async fn admin_created_empty_group_waits_for_a_tag_in_wecom() {
    let w = start().await;
    let (status, created) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "待定", "order": 5, "tags": [{"name": "临时"}]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    converged(&w).await;
    let mall_id = mall_group(&w, "待定").group.id;
    let tag = s(&created["tags"][0]["id"]);
    let (status, body) = w.admin(Method::DELETE, &format!("/tags/{tag}"), None).await;
    assert_eq!(status, 204, "{body}");
    converged(&w).await;

    assert_eq!(
        mall_group(&w, "待定").group.id,
        mall_id,
        "the mall keeps it"
    );
    assert!(mall_group(&w, "待定").tags.is_empty());
    assert!(w.wecom_group("待定").is_none(), "WeCom has no empty group");
    let hub = hub_group(&w, "待定").await;
    assert_eq!(hub["id"], created["id"]);
    assert!(hub["wecom_id"].is_null(), "{hub}");
    assert_eq!(hub["sync"]["wecom"], "pending");

    let (status, body) = w
        .admin(
            Method::POST,
            "/tags",
            Some(json!({"group_id": created["id"], "name": "首个", "order": 1})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    converged(&w).await;
    let hub = hub_group(&w, "待定").await;
    assert_eq!(s(&hub["wecom_id"]), wecom_group(&w, "待定").id);
    assert_eq!(s(&hub["mall_id"]), mall_id.as_str(), "the same mall group");
    assert_eq!(wecom_group(&w, "待定").tags.len(), 1);
    w.stop().await;
}

#[tokio::test]
async fn mall_created_empty_group_waits_for_a_tag_in_wecom() {
    let w = start().await;
    let op = w.mall.operator();
    let group = op.create_group("新分组", 3).unwrap();
    converged(&w).await;
    let hub = hub_group(&w, "新分组").await;
    assert_eq!(s(&hub["mall_id"]), group.id.as_str());
    assert!(hub["wecom_id"].is_null(), "{hub}");
    assert_eq!(hub["sync"]["wecom"], "pending");
    assert!(w.wecom_group("新分组").is_none());

    op.create_tag(&group.id, "第一个", 1).unwrap();
    converged(&w).await;
    let hub = hub_group(&w, "新分组").await;
    assert_eq!(s(&hub["wecom_id"]), wecom_group(&w, "新分组").id);
    assert_eq!(wecom_group(&w, "新分组").order, 3);
    w.stop().await;
}
