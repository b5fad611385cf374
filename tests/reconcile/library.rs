//! The tag library: silent changes on both sides found, counted and repaired.

use crate::steps::*;
use crate::{counts, pairs, run_sync};

#[tokio::test]
async fn manual_library_sync_repairs_silent_changes_on_both_sides_and_counts_them() {
    let w = start().await;
    let g = mall_made_group(&w, "会员等级", 20, &[("金卡", 3), ("银卡", 2), ("铜卡", 1)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    let gold_hub = s(&hub_tag(&w, "会员等级", "金卡").await["id"]);
    let silver_m = mall_tag_id(&w, "会员等级", "银卡");

    // Another app renames 金卡 in WeCom; the mall loses 银卡 and gains 钻石卡, all unannounced.
    w.wecom.silent().rename(&gold_w, "黄金卡").unwrap();
    let quiet = w.mall.silent();
    quiet.delete_tag(&silver_m).unwrap();
    quiet.create_tag(&g, "钻石卡", 4).unwrap();
    settle(&w).await;
    assert!(
        w.assert_converged().await.is_err(),
        "nothing carried them yet"
    );

    let report = run_sync(&w, "library").await;
    assert_eq!(
        counts(&report, "drift"),
        pairs(&[
            ("tags.created.mall", 1),
            ("tags.deleted.mall", 1),
            ("tags.renamed.wecom", 1),
        ]),
        "{report:#}"
    );
    assert_eq!(
        counts(&report, "repaired"),
        pairs(&[
            ("tags.created.wecom", 1),
            ("tags.deleted.wecom", 1),
            ("tags.renamed.mall", 1),
        ]),
        "{report:#}"
    );
    converged(&w).await;
    // A rename stays a rename: the hub tag and both side ids are the ones from before.
    let gold = hub_tag(&w, "会员等级", "黄金卡").await;
    assert_eq!(s(&gold["id"]), gold_hub);
    assert_eq!(s(&gold["wecom_id"]), gold_w);
    assert!(w.mall_tag("会员等级", "银卡").is_none() && w.wecom_tag("会员等级", "银卡").is_none());

    let again = run_sync(&w, "library").await;
    assert_eq!(counts(&again, "drift"), vec![], "{again:#}");
    assert_eq!(counts(&again, "repaired"), vec![], "{again:#}");
    w.stop().await;
}

#[tokio::test]
async fn changes_held_back_by_auto_sync_off_are_carried_by_the_manual_sync() {
    let w = start().await;
    mall_made_group(&w, "兴趣", 5, &[("运动", 1)]).await;
    let (status, _) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(serde_json::json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(status, 200);
    let tag = s(&hub_tag(&w, "兴趣", "运动").await["id"]);
    let (status, body) = w
        .admin(
            Method::PATCH,
            &format!("/tags/{tag}"),
            Some(serde_json::json!({"name": "户外运动"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&w).await;
    assert!(
        w.mall_tag("兴趣", "运动").is_some(),
        "held back while auto_sync is off"
    );

    let report = run_sync(&w, "library").await;
    assert_eq!(
        counts(&report, "drift"),
        pairs(&[("tags.pending.mall", 1), ("tags.pending.wecom", 1)]),
        "{report:#}"
    );
    assert_eq!(
        counts(&report, "repaired"),
        pairs(&[("tags.renamed.mall", 1), ("tags.renamed.wecom", 1)]),
        "{report:#}"
    );
    converged(&w).await;
    w.stop().await;
}

#[tokio::test]
async fn library_sync_repairs_a_rule_group_tag_renamed_silently_in_wecom_and_finds_nothing_in_a_group_kept_from_the_mall()
 {
    let w = start().await;
    for body in [
        serde_json::json!({"name": "售后服务", "tags": [{"name": "保养到期"}],
                           "scope": {"departments": [3]}}),
        serde_json::json!({"name": "北京客户评级", "tags": [{"name": "A级"}],
                           "scope": {"departments": [4]}, "carry_to_mall": false}),
    ] {
        let (status, created) = w.admin(Method::POST, "/tag-groups", Some(body)).await;
        assert_eq!(status, 201, "{created}");
    }
    settle(&w).await;
    let due_w = wecom_tag(&w, "售后服务", "保养到期").id;
    let due_hub = s(&hub_tag(&w, "售后服务", "保养到期").await["id"]);

    // Another app renames the rule-group tag; no callback.
    w.wecom.silent().rename(&due_w, "保养提醒").unwrap();
    settle(&w).await;

    let report = run_sync(&w, "library").await;
    assert_eq!(
        counts(&report, "drift"),
        pairs(&[("tags.renamed.wecom", 1)]),
        "{report:#}"
    );
    assert_eq!(
        counts(&report, "repaired"),
        pairs(&[("tags.renamed.mall", 1)]),
        "{report:#}"
    );
    converged(&w).await;
    let due = hub_tag(&w, "售后服务", "保养提醒").await;
    assert_eq!((s(&due["id"]), s(&due["wecom_id"])), (due_hub, due_w));

    // Quiet now: the group kept from the mall is not drift there.
    let again = run_sync(&w, "library").await;
    assert_eq!(counts(&again, "drift"), vec![], "{again:#}");
    assert_eq!(counts(&again, "repaired"), vec![], "{again:#}");
    w.stop().await;
}
