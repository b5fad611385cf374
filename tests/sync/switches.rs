//! The tenant's switches: `auto_sync` off holds library changes back (and turning it on does
//! not replay them); `tags_enabled` off syncs nothing at all.

use crate::steps::*;
use serde_json::json;

#[tokio::test]
async fn auto_sync_off_keeps_a_mall_rename_from_wecom_and_nothing_replays_when_it_returns() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let (status, body) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    w.mall
        .operator()
        .rename_tag(&mall_tag_id(&w, "会员等级", "金卡"), "黑金卡")
        .unwrap();
    settle(&w).await;
    assert!(w.wecom_tag("会员等级", "金卡").is_some(), "WeCom unchanged");
    assert!(
        w.hub_tag("会员等级", "金卡").await.is_some(),
        "hub unchanged"
    );

    let (status, body) = w
        .admin(Method::PATCH, "/settings", Some(json!({"auto_sync": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&w).await;
    assert!(
        w.wecom_tag("会员等级", "金卡").is_some(),
        "no replay in WeCom"
    );
    assert!(
        w.hub_tag("会员等级", "金卡").await.is_some(),
        "no replay in the hub"
    );

    // New changes flow again.
    w.mall
        .operator()
        .rename_tag(&mall_tag_id(&w, "会员等级", "银卡"), "白银卡")
        .unwrap();
    settle(&w).await;
    assert!(w.wecom_tag("会员等级", "白银卡").is_some());
    assert!(w.hub_tag("会员等级", "白银卡").await.is_some());
    w.stop().await;
}

#[tokio::test]
async fn tags_enabled_off_syncs_nothing() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li"]).await;
    let silver = wecom_tag(&w, "会员等级", "银卡").id;
    let (status, body) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(json!({"tags_enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let before = w.library_view().await;

    let op = w.mall.operator();
    op.rename_tag(&mall_tag_id(&w, "会员等级", "金卡"), "黑金卡")
        .unwrap();
    op.tag_member(&member, &mall_tag_id(&w, "会员等级", "黑金卡"))
        .unwrap();
    w.wecom.console().rename(&silver, "白银卡").unwrap();
    let (status, created) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "来源渠道", "tags": [{"name": "门店"}]})),
        )
        .await;
    settle(&w).await;

    let after = w.library_view().await;
    assert!(
        w.wecom_tag("会员等级", "金卡").is_some(),
        "WeCom keeps 金卡"
    );
    assert!(
        w.mall_tag("会员等级", "银卡").is_some(),
        "the mall keeps 银卡"
    );
    assert!(
        w.wecom_group("来源渠道").is_none(),
        "WeCom gets no new group"
    );
    assert!(
        w.mall_group("来源渠道").is_none(),
        "the mall gets no new group"
    );
    let hub_untouched = after
        .hub
        .iter()
        .filter(|g| g.name != "来源渠道")
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        hub_untouched, before.hub,
        "the hub took nothing from the sides"
    );
    if status == 201 {
        assert_eq!(created["sync"]["wecom"], "pending");
    }
    let view = w.member_view(member.as_str()).await;
    assert!(
        view.relations.values().all(|tags| tags.is_empty()),
        "no relation was tagged: {view:?}"
    );
    w.stop().await;
}
