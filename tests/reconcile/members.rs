//! Member tags: silent changes on both sides found, counted and repaired, with the WeCom
//! calls a members run makes: the pages, and one `mark_tag` per relation that drifted.

use crate::steps::*;
use crate::{counts, pairs, run_sync};
use tagsync::wecom::classify::ApiOp;

#[tokio::test]
async fn manual_member_sync_repairs_silent_member_tag_changes_with_one_mark_tag_per_relation() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let alice = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let bob = bound_member(&w, "wm_bob", &["sales_li", "sales_wang"]).await;
    let silver_m = mall_tag_id(&w, "会员等级", "银卡");
    w.mall.operator().tag_member(&bob, &silver_m).unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &bob, &["会员等级/银卡"]).await;

    // Unannounced: the mall tags alice 金卡; another app takes 银卡 off one of bob's relations.
    let gold_m = mall_tag_id(&w, "会员等级", "金卡");
    let silver_w = wecom_tag(&w, "会员等级", "银卡").id;
    w.mall.silent().tag_member(&alice, &gold_m).unwrap();
    w.wecom
        .silent()
        .tag_relation("sales_li", "wm_bob", &[], &[silver_w.as_str()])
        .unwrap();
    settle(&w).await;

    let before = |op| w.wecom.call_count(op);
    let (marks, gets, pages) = (
        before(ApiOp::MarkTag),
        before(ApiOp::GetExternalContact),
        before(ApiOp::BatchGetByUser),
    );
    let report = run_sync(&w, "members").await;
    assert_eq!(
        counts(&report, "drift"),
        pairs(&[
            ("member_tags.added.mall", 1),
            ("member_tags.removed.wecom", 1)
        ]),
        "{report:#}"
    );
    assert_eq!(
        counts(&report, "repaired"),
        pairs(&[
            ("member_tags.added.wecom", 2),
            ("member_tags.removed.mall", 1),
            ("member_tags.removed.wecom", 1),
            ("members.changed.hub", 2),
            ("relations.marked.wecom", 3),
        ]),
        "{report:#}"
    );
    member_tags_everywhere(&w, &alice, &["会员等级/金卡"]).await;
    member_tags_everywhere(&w, &bob, &[]).await;
    // WeCom calls: the relation pages (one per chain here: each of the two sales reps is a
    // chain of one page) and one mark_tag per relation that had to change; no customer read
    // one by one.
    assert_eq!(w.wecom.call_count(ApiOp::MarkTag) - marks, 3);
    assert_eq!(w.wecom.call_count(ApiOp::GetExternalContact) - gets, 0);
    assert_eq!(w.wecom.call_count(ApiOp::BatchGetByUser) - pages, 2);

    let again = run_sync(&w, "members").await;
    assert_eq!(counts(&again, "drift"), vec![], "{again:#}");
    assert_eq!(counts(&again, "repaired"), vec![], "{again:#}");
    w.stop().await;
}

#[tokio::test]
async fn the_members_run_binds_customers_the_mall_knows_and_reports_the_others() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    // A customer tagged in WeCom before the mall knew the member, and one the mall never knows:
    // nothing was announced to tagsync.
    let quiet = w.wecom.silent();
    quiet.add_relation("sales_li", "wm_carol", None).unwrap();
    quiet.add_relation("sales_li", "wm_dave", None).unwrap();
    quiet
        .tag_relation("sales_li", "wm_carol", &[gold_w.as_str()], &[])
        .unwrap();
    let carol = w
        .mall
        .silent()
        .create_member(tagsync::sim::mall::NewMember::external("wm_carol"))
        .unwrap();
    settle(&w).await;

    let report = run_sync(&w, "members").await;
    assert_eq!(
        counts(&report, "skipped"),
        pairs(&[("customers.unbound.wecom", 1)]),
        "{report:#}"
    );
    member_tags_everywhere(&w, &carol.id, &["会员等级/金卡"]).await;
    w.stop().await;
}

/// A run repairs a member through the same member code as the jobs, from what its page
/// read: another app put 银卡 on one of alice's relations (WeCom tells nobody), and the run's
/// `POST /members/{alice}/tags` carrying it to the mall is held while the mall's operator tags
/// alice 金卡. The operator's tag is not taken for in sync (it is not in what the page read
/// nor in what the repair applied) and reaches every relation.
#[tokio::test]
async fn a_tag_the_mall_adds_while_a_run_repairs_the_member_there_survives_everywhere() {
    use tagsync::sim::hold::Phase;
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let alice = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let silver_w = wecom_tag(&w, "会员等级", "银卡").id;
    w.wecom
        .silent()
        .tag_relation("sales_li", "wm_alice", &[silver_w.as_str()], &[])
        .unwrap();
    settle(&w).await;

    let mut hold = w.mall.hold(
        "POST",
        &format!("/members/{alice}/tags"),
        Phase::Before,
        serde_json::Value::Null,
    );
    let operator = async {
        let held = hold.held(HELD_WITHIN).await.expect("the repair's POST");
        w.mall
            .operator()
            .tag_member(&alice, &mall_tag_id(&w, "会员等级", "金卡"))
            .unwrap();
        held.release();
    };
    let (report, ()) = tokio::join!(run_sync(&w, "members"), operator);
    assert_eq!(
        counts(&report, "drift"),
        pairs(&[("member_tags.added.wecom", 1)]),
        "{report:#}"
    );
    settle(&w).await;
    member_tags_everywhere(&w, &alice, &["会员等级/金卡", "会员等级/银卡"]).await;
    w.stop().await;
}
