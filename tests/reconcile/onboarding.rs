//! Onboarding: the first run for a corp and a mall that both have a library already.

use crate::steps::*;
use crate::support::world::WorldOptions;
use crate::{counts, run_sync};

#[tokio::test]
async fn first_run_links_same_names_creates_the_rest_and_reports_ambiguous_matches() {
    // Not wired: the two libraries exist before tagsync hears of either.
    let w = crate::support::world::World::start(WorldOptions {
        wire: false,
        ..WorldOptions::default()
    })
    .await;
    let console = w.wecom.console();
    let wg = console
        .create_group("会员等级", 10, &[("金卡", 2), ("银卡", 1)])
        .unwrap();
    console.create_group("兴趣", 5, &[("运动", 1)]).unwrap();
    console.create_group("VIP", 3, &[("A", 1)]).unwrap();
    let op = w.mall.silent();
    let mg = op.create_group("会员等级", 10).unwrap();
    let gold_m = op.create_tag(&mg.id, "金卡", 2).unwrap();
    op.create_tag(&mg.id, "铜卡", 0).unwrap();
    op.create_group("vip", 3).unwrap();
    op.create_group("渠道", 1).unwrap();
    // From here on both sides talk to tagsync.
    let callback = format!("{}/wecom/callback/{}", w.base, w.tenant);
    w.wecom.set_callback_url(Some(callback.clone()));
    w.wecom.verify_url(&callback).await.unwrap();
    w.mall.set_webhook(
        Some(format!("{}/mall/webhook/{}", w.base, w.tenant)),
        tagsync::sim::mall::MallSimConfig::default().webhook_secret,
    );

    let report = run_sync(&w, "library").await;
    let repaired = counts(&report, "repaired");
    assert!(
        repaired.contains(&("groups.linked".into(), 1)),
        "{report:#}"
    );
    assert!(repaired.contains(&("tags.linked".into(), 1)), "{report:#}");
    let ambiguous = report["ambiguous"].as_array().unwrap();
    assert_eq!(ambiguous.len(), 1, "{report:#}");
    assert!(
        ambiguous[0].as_str().unwrap().contains("`VIP`"),
        "{report:#}"
    );

    // Linked, not duplicated: one 会员等级 with 金卡 (the mall's id kept), 银卡 and 铜卡
    // everywhere; 兴趣 and 渠道 carried over; VIP / vip left alone on their sides.
    let gold = hub_tag(&w, "会员等级", "金卡").await;
    assert_eq!(s(&gold["mall_id"]), gold_m.id.as_str());
    assert_eq!(s(&hub_group(&w, "会员等级").await["wecom_id"]), wg.group_id);
    for (g, t) in [("会员等级", "银卡"), ("会员等级", "铜卡"), ("兴趣", "运动")] {
        hub_tag(&w, g, t).await;
        wecom_tag(&w, g, t);
        mall_tag(&w, g, t);
    }
    mall_group(&w, "渠道");
    assert!(w.hub_group("VIP").await.is_none() && w.hub_group("vip").await.is_none());
    assert!(w.mall_group("VIP").is_none() && w.wecom_group("vip").is_none());
    let again = run_sync(&w, "library").await;
    assert_eq!(counts(&again, "drift"), vec![], "{again:#}");
    w.stop().await;
}
