//! Order values travel as they are (larger shows first on every side).

use crate::steps::*;

fn names_in_order(tags: &[tagsync::sim::wecom::SimTag]) -> Vec<&str> {
    // `library()` lists larger orders first, as WeCom answers.
    tags.iter().map(|t| t.name.as_str()).collect()
}

#[tokio::test]
async fn reorder_on_mall_reaches_wecom() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 3), ("银卡", 2), ("铜卡", 1)]).await;
    let channels = mall_made_group(&w, "来源渠道", 10, &[("门店", 1)]).await;

    let op = w.mall.operator();
    op.reorder_tag(&mall_tag_id(&w, "会员等级", "铜卡"), 5)
        .unwrap();
    op.reorder_tag(&mall_tag_id(&w, "会员等级", "金卡"), 1)
        .unwrap();
    op.reorder_group(&channels, 30).unwrap();
    converged(&w).await;

    assert_eq!(
        names_in_order(&wecom_group(&w, "会员等级").tags),
        ["铜卡", "银卡", "金卡"]
    );
    assert_eq!(wecom_tag(&w, "会员等级", "铜卡").order, 5);
    assert_eq!(wecom_tag(&w, "会员等级", "金卡").order, 1);
    assert_eq!(wecom_group(&w, "来源渠道").order, 30);
    let order: Vec<String> = w.wecom_library().into_iter().map(|g| g.name).collect();
    assert_eq!(order, ["来源渠道", "会员等级"], "larger first");
    assert_eq!(hub_tag(&w, "会员等级", "铜卡").await["order"], 5);
    w.stop().await;
}

#[tokio::test]
async fn wecom_console_shuffle_reaches_mall() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 3), ("银卡", 2), ("铜卡", 1)]).await;
    mall_made_group(&w, "来源渠道", 10, &[("门店", 1)]).await;
    let g = wecom_group(&w, "会员等级");
    let id = |name: &str| wecom_tag(&w, "会员等级", name).id;
    let (gold, silver, bronze) = (id("金卡"), id("银卡"), id("铜卡"));

    let console = w.wecom.console();
    // First listed = largest order: 铜卡 3, 金卡 2, 银卡 1.
    console
        .reorder_tags(&g.id, &[bronze.as_str(), gold.as_str(), silver.as_str()])
        .unwrap();
    converged(&w).await;
    assert_eq!(mall_tag(&w, "会员等级", "铜卡").order, 3);
    assert_eq!(mall_tag(&w, "会员等级", "金卡").order, 2);
    assert_eq!(mall_tag(&w, "会员等级", "银卡").order, 1);

    let channels = wecom_group(&w, "来源渠道");
    console
        .reorder_groups(&[channels.id.as_str(), g.id.as_str()])
        .unwrap();
    converged(&w).await;
    assert!(
        mall_group(&w, "来源渠道").group.order > mall_group(&w, "会员等级").group.order,
        "{:?}",
        w.mall.library()
    );
    w.stop().await;
}
