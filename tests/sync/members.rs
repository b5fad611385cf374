//! Member tags: a mall member bound to a WeCom customer holds the same tags in the mall, in
//! the hub and on every follow relation of that customer.

use crate::steps::*;
use serde_json::{Value, json};
use tagsync::sim::hold::Phase;
use tagsync::sim::mall::NewMember;

#[tokio::test]
async fn customer_tagged_in_wecom_client_gains_the_tag_in_the_mall_and_on_other_relations() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    member_tags_everywhere(&w, &member, &[]).await;

    let gold = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[gold.as_str()], &[])
        .unwrap();
    settle(&w).await;

    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;
    let tags = w.wecom.relation_tags("sales_wang", "wm_alice").unwrap();
    assert_eq!(
        tags,
        [gold],
        "the other relation carries the same WeCom tag"
    );
    w.stop().await;
}

#[tokio::test]
async fn customer_untagged_in_wecom_client_loses_the_tag_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let gold = wecom_tag(&w, "会员等级", "金卡").id;
    let console = w.wecom.console();
    console
        .tag_relation("sales_li", "wm_alice", &[gold.as_str()], &[])
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;

    console
        .tag_relation("sales_wang", "wm_alice", &[], &[gold.as_str()])
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &[]).await;
    w.stop().await;
}

#[tokio::test]
async fn mall_member_untagged_loses_the_tag_on_every_relation() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let gold = mall_tag_id(&w, "会员等级", "金卡");
    let op = w.mall.operator();
    op.tag_member(&member, &gold).unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;

    op.untag_member(&member, &gold).unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &[]).await;
    w.stop().await;
}

#[tokio::test]
async fn admin_member_tags_reach_the_mall_and_every_relation() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let gold = hub_tag(&w, "会员等级", "金卡").await["id"].clone();
    let silver = hub_tag(&w, "会员等级", "银卡").await["id"].clone();
    let path = format!("/members/{member}/tags");

    let (status, body) = w
        .admin(Method::POST, &path, Some(json!({"add": [gold, silver]})))
        .await;
    assert_eq!(status, 202, "{body}");
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡", "会员等级/银卡"]).await;

    let (status, body) = w
        .admin(Method::POST, &path, Some(json!({"remove": [gold]})))
        .await;
    assert_eq!(status, 202, "{body}");
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/银卡"]).await;
    w.stop().await;
}

/// A member the mall binds to a customer later (`member.bound`): from then on, tags flow both
/// ways.
#[tokio::test]
async fn member_bound_by_webhook_syncs_from_then_on() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    w.wecom
        .console()
        .add_relation("sales_li", "wm_bob", None)
        .unwrap();
    let op = w.mall.operator();
    let member = op.create_member(NewMember::default()).unwrap().id;
    settle(&w).await;

    op.bind_member(&member, NewMember::external("wm_bob"))
        .unwrap();
    settle(&w).await;
    let view = w.member_view(member.as_str()).await;
    assert_eq!(view.external_userid.as_deref(), Some("wm_bob"));

    let gold = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_bob", &[gold.as_str()], &[])
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;

    op.tag_member(&member, &mall_tag_id(&w, "会员等级", "银卡"))
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡", "会员等级/银卡"]).await;
    w.stop().await;
}

/// Issue 12 §1, "the lost change": a WeCom callback starts a member job; between that job's
/// read of member M in the mall and its `POST /members/M/tags`, the mall's operator adds
/// `铜卡` to M (the mall sends its webhook). The POST's answer lists `铜卡` too; it used to
/// become M's mall base, so the webhook's job saw no change in the mall and took `铜卡` off M
/// (the hub had no mark for it): the operator's tag was lost and never reached WeCom.
#[tokio::test]
async fn tag_added_in_the_mall_while_a_member_job_writes_there_survives_everywhere() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 3), ("银卡", 2), ("铜卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let silver = mall_tag_id(&w, "会员等级", "银卡");
    w.mall.operator().tag_member(&member, &silver).unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/银卡"]).await;

    let mut hold = w.mall.hold(
        "POST",
        &format!("/members/{member}/tags"),
        Phase::Before,
        Value::Null,
    );
    let gold = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[gold.as_str()], &[])
        .unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the member job's POST");
    let bronze = mall_tag_id(&w, "会员等级", "铜卡");
    w.mall.operator().tag_member(&member, &bronze).unwrap();
    held.release();
    settle(&w).await;

    let trail = audit(&w).await;
    let hub_bronze = s(&hub_tag(&w, "会员等级", "铜卡").await["id"]);
    let wecom_bronze = wecom_tag(&w, "会员等级", "铜卡").id;
    let removed = removals_of(&trail, &[&hub_bronze, &wecom_bronze, bronze.as_str()]);
    assert!(
        removed.is_empty(),
        "the operator's 铜卡 was taken off somewhere:\n{}\naudit trail:\n{}",
        render_audit(&removed.into_iter().cloned().collect::<Vec<_>>()),
        render_audit(&trail)
    );
    member_tags_everywhere(
        &w,
        &member,
        &["会员等级/金卡", "会员等级/银卡", "会员等级/铜卡"],
    )
    .await;
    w.stop().await;
}

/// The same race with the mall's webhook for the operator's tag lost on its way: the POST's
/// answer lists a tag the job neither read nor put there (someone else's change), so the job
/// queues the member again itself, and the tag reaches every side without the webhook.
#[tokio::test]
async fn tag_added_in_the_mall_while_a_member_job_writes_there_arrives_even_if_its_webhook_is_lost()
{
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 3), ("银卡", 2), ("铜卡", 1)]).await;
    let member = bound_member(&w, "wm_alice", &["sales_li", "sales_wang"]).await;

    let mut hold = w.mall.hold(
        "POST",
        &format!("/members/{member}/tags"),
        Phase::Before,
        Value::Null,
    );
    let gold = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom
        .console()
        .tag_relation("sales_li", "wm_alice", &[gold.as_str()], &[])
        .unwrap();
    let held = hold.held(HELD_WITHIN).await.expect("the member job's POST");
    w.mall.update_faults(|f| f.drop_webhooks_next = 1);
    let bronze = mall_tag_id(&w, "会员等级", "铜卡");
    w.mall.operator().tag_member(&member, &bronze).unwrap();
    held.release();
    settle(&w).await;

    assert!(
        w.mall.deliveries().iter().any(|d| d.dropped),
        "the operator's webhook was lost"
    );
    member_tags_everywhere(&w, &member, &["会员等级/金卡", "会员等级/铜卡"]).await;
    w.stop().await;
}
