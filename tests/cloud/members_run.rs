//! A members reconciliation run on the cloud path: the first case of `tests/reconcile/members.rs`
//! (copied, not included: that file's held-write race case is timing-sensitive on the cloud path
//! under load, see the report of issue 17).

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
