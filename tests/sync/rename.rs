//! Renames reach the other sides under the same ids; read-only WeCom tags and name swaps.

use crate::steps::*;
use serde_json::json;

#[tokio::test]
async fn mall_rename_keeps_the_wecom_tag_id() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let wecom_id = wecom_tag(&w, "会员等级", "金卡").id;
    let hub_id = hub_tag(&w, "会员等级", "金卡").await["id"].clone();

    w.mall
        .operator()
        .rename_tag(&mall_tag_id(&w, "会员等级", "金卡"), "黑金卡")
        .unwrap();
    converged(&w).await;

    assert_eq!(wecom_tag(&w, "会员等级", "黑金卡").id, wecom_id);
    let tag = hub_tag(&w, "会员等级", "黑金卡").await;
    assert_eq!(tag["id"], hub_id);
    assert_eq!(s(&tag["wecom_id"]), wecom_id);
    w.stop().await;
}

#[tokio::test]
async fn mall_group_rename_keeps_the_wecom_group_id() {
    let w = start().await;
    let group = mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let wecom_id = wecom_group(&w, "会员等级").id;

    w.mall.operator().rename_group(&group, "会员级别").unwrap();
    converged(&w).await;

    assert_eq!(wecom_group(&w, "会员级别").id, wecom_id);
    assert_eq!(s(&hub_group(&w, "会员级别").await["wecom_id"]), wecom_id);
    w.stop().await;
}

/// The tag was created by tagsync's app, so tagsync may edit it; the console may rename any
/// tag.
#[tokio::test]
async fn wecom_console_rename_keeps_the_mall_tag_id() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let mall_id = mall_tag_id(&w, "会员等级", "金卡");
    let wecom_id = wecom_tag(&w, "会员等级", "金卡").id;

    w.wecom.console().rename(&wecom_id, "钻石卡").unwrap();
    converged(&w).await;

    assert_eq!(mall_tag_id(&w, "会员等级", "钻石卡"), mall_id);
    let tag = hub_tag(&w, "会员等级", "钻石卡").await;
    assert_eq!(s(&tag["mall_id"]), mall_id.as_str());
    assert_eq!(s(&tag["wecom_id"]), wecom_id);
    assert_eq!(tag["sync"], json!({"wecom": "synced", "mall": "synced"}));
    w.stop().await;
}

#[tokio::test]
async fn admin_rename_reaches_both_sides_with_same_ids() {
    let w = start().await;
    let (status, created) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(
                json!({"name": "来源渠道", "order": 10, "tags": [{"name": "小程序", "order": 1}]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    converged(&w).await;
    let before = hub_tag(&w, "来源渠道", "小程序").await;
    let group_before = hub_group(&w, "来源渠道").await;

    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{}", s(&before["id"])),
            Some(json!({"name": "微信小程序"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tag-groups/{}", s(&group_before["id"])),
            Some(json!({"name": "获客渠道"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    converged(&w).await;

    let after = hub_tag(&w, "获客渠道", "微信小程序").await;
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["wecom_id"], before["wecom_id"]);
    assert_eq!(after["mall_id"], before["mall_id"]);
    assert_eq!(
        wecom_tag(&w, "获客渠道", "微信小程序").id,
        s(&before["wecom_id"])
    );
    assert_eq!(
        mall_tag_id(&w, "获客渠道", "微信小程序").as_str(),
        s(&before["mall_id"])
    );
    let group_after = hub_group(&w, "获客渠道").await;
    assert_eq!(group_after["wecom_id"], group_before["wecom_id"]);
    assert_eq!(group_after["mall_id"], group_before["mall_id"]);
    assert_eq!(wecom_group(&w, "获客渠道").id, s(&group_before["wecom_id"]));
    w.stop().await;
}

/// A tag made in WeCom's console is read-only for tagsync's app (301002 on edit): a rename in
/// the mall reaches the hub, WeCom keeps its name, and the hub says so.
#[tokio::test]
async fn console_tag_is_read_only_on_wecom_leg() {
    let w = start().await;
    let level = w
        .wecom
        .console()
        .create_group("客户等级", 20, &[("VIP客户", 2), ("普通客户", 1)])
        .unwrap();
    converged(&w).await;

    w.mall
        .operator()
        .rename_tag(&mall_tag_id(&w, "客户等级", "VIP客户"), "贵宾")
        .unwrap();
    converged(&w).await;

    let vip = &level.tag_ids[0];
    assert_eq!(
        wecom_tag(&w, "客户等级", "VIP客户").id,
        *vip,
        "WeCom keeps its name"
    );
    assert!(w.wecom_tag("客户等级", "贵宾").is_none());
    assert!(w.mall_tag("客户等级", "贵宾").is_some());
    let tag = hub_tag(&w, "客户等级", "贵宾").await;
    assert_eq!(s(&tag["wecom_id"]), *vip);
    assert_eq!(tag["sync"]["wecom"], "read_only");
    assert_eq!(tag["sync"]["mall"], "synced");
    w.stop().await;
}

/// Two tags trade names. The mall refuses duplicate names too, so its operator goes through a
/// temporary name; WeCom must end with the swap and never hold two tags of one name.
#[tokio::test]
async fn name_swap_between_two_tags_resolves_without_duplicates() {
    let w = start().await;
    mall_made_group(&w, "尺码", 5, &[("x", 2), ("y", 1)]).await;
    let (a_mall, b_mall) = (mall_tag_id(&w, "尺码", "x"), mall_tag_id(&w, "尺码", "y"));
    let (a_wecom, b_wecom) = (wecom_tag(&w, "尺码", "x").id, wecom_tag(&w, "尺码", "y").id);

    let op = w.mall.operator();
    op.rename_tag(&a_mall, "x-tmp").unwrap();
    op.rename_tag(&b_mall, "x").unwrap();
    op.rename_tag(&a_mall, "y").unwrap();
    converged(&w).await;

    assert_eq!(wecom_tag(&w, "尺码", "y").id, a_wecom);
    assert_eq!(wecom_tag(&w, "尺码", "x").id, b_wecom);
    assert_eq!(wecom_group(&w, "尺码").tags.len(), 2);
    assert_eq!(
        s(&hub_tag(&w, "尺码", "y").await["mall_id"]),
        a_mall.as_str()
    );
    assert_eq!(
        s(&hub_tag(&w, "尺码", "x").await["mall_id"]),
        b_mall.as_str()
    );
    w.stop().await;
}
