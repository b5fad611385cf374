//! A transfer's tag carry-over with a person acting on the new relation exactly between
//! tagsync's read of it and tagsync's write there (the WeCom simulator holds the takeover's
//! `mark_tag` until the test has acted). The base rule (issue 12 §1): what tagsync knows of a
//! relation is what it read and merged plus exactly what it applied, so the person's change
//! survives on every side.

use crate::customers;
use crate::steps::*;
use crate::support::world::{World, WorldOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tagsync::domain::TAKEOVER_MS;
use tagsync::ports::{Clock, OffsetClock};
use tagsync::sim::hold::Phase;
use tagsync::sim::mall::MallSimConfig;
use tagsync::sim::wecom::SimConfig;
use tagsync::wecom::classify::ApiOp;

/// A transfer wakes up after the clock's jump on its own schedule; on a loaded machine that
/// can take longer than [`HELD_WITHIN`].
const TAKEN_OVER_WITHIN: Duration = Duration::from_secs(120);

/// A world whose clock (WeCom's, the mall's and tagsync's: the mall's signed webhooks carry
/// its time) the test moves forward.
async fn world() -> (World, OffsetClock) {
    let clock = OffsetClock::default();
    let w = World::start(WorldOptions {
        wecom: SimConfig {
            clock: Arc::new(clock.clone()),
            ..SimConfig::default()
        },
        mall: MallSimConfig {
            clock: Arc::new(clock.clone()),
            ..MallSimConfig::default()
        },
        ..WorldOptions::default()
    })
    .await;
    (w, clock)
}

/// Starts a resigned transfer of `customer` from `sales_li` (who leaves) to `sales_zhao` and
/// waits until WeCom has it; answers the transfer's id.
async fn transfer_from_a_leaver(w: &World, customer: &str) -> String {
    w.wecom.add_member("sales_zhao");
    w.wecom.member_leaves("sales_li");
    let (status, started) = w
        .admin(
            Method::POST,
            "/transfers",
            Some(
                json!({"handover_userid": "sales_li", "takeover_userid": "sales_zhao",
                        "external_userids": [customer], "resigned": true}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = s(&started["transfer_id"]);
    wait_until("the customer was sent to WeCom", || async {
        !transfer(w, &id).await["next_look_at"].is_null()
    })
    .await;
    id
}

async fn transfer(w: &World, id: &str) -> Value {
    let (status, body) = w
        .admin(Method::GET, &format!("/transfers/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// WeCom takes the customer over a day later; the takeover relation's first `mark_tag` is
/// held while `meanwhile` acts, then let go. Answers once the transfer is over and settled.
async fn take_over_with<F, Fut>(w: &World, clock: &OffsetClock, id: &str, c: &str, meanwhile: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut hold = w.wecom.hold(
        ApiOp::MarkTag,
        Phase::Before,
        json!({"userid": "sales_zhao", "external_userid": c}),
    );
    clock.jump_to(clock.now().plus_millis(TAKEOVER_MS + 1_000));
    let held = hold
        .held(TAKEN_OVER_WITHIN)
        .await
        .expect("tagsync carries the tags onto the new relation");
    meanwhile().await;
    held.release();
    wait_until_within("the transfer is over", TAKEN_OVER_WITHIN, || async {
        transfer(w, id).await["status"] != "running"
    })
    .await;
    settle(w).await;
    let over = transfer(w, id).await;
    assert_eq!(over["status"], "done", "{over:#}");
    assert_eq!(over["counts"]["done"], 1, "{over:#}");
}

/// The hub ids the customer index shows on `c`'s relation with `userid`.
async fn indexed_relation_tags(w: &World, c: &str, userid: &str) -> Vec<String> {
    let page = customers(w, &format!("q={c}")).await;
    let customer = page["customers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|x| x["external_userid"] == c))
        .unwrap_or_else(|| panic!("{c} is not in the index: {page:#}"));
    let relation = customer["relations"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["userid"] == userid));
    let mut ids: Vec<String> = relation
        .and_then(|r| r["tag_ids"].as_array())
        .map(|ids| ids.iter().map(s).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A customer bound to a mall member: its tags reach the new relation through the member-tag
/// path, whose base for the relation is what it read plus its own `mark_tag`; the tag a
/// salesperson puts on the new relation meanwhile is WeCom's change and reaches the mall.
#[tokio::test]
async fn tag_put_on_the_new_relation_while_a_transfer_carries_a_bound_customers_tags_survives_everywhere()
 {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let member = bound_member(&w, "wm_amy", &["sales_li"]).await;
    w.mall
        .operator()
        .tag_member(&member, &mall_tag_id(&w, "会员等级", "金卡"))
        .unwrap();
    settle(&w).await;
    member_tags_everywhere(&w, &member, &["会员等级/金卡"]).await;
    let id = transfer_from_a_leaver(&w, "wm_amy").await;

    let silver = wecom_tag(&w, "会员等级", "银卡").id;
    take_over_with(&w, &clock, &id, "wm_amy", || async {
        w.wecom
            .console()
            .tag_relation("sales_zhao", "wm_amy", &[silver.as_str()], &[])
            .unwrap();
    })
    .await;

    let trail = audit(&w).await;
    let hub_silver = s(&hub_tag(&w, "会员等级", "银卡").await["id"]);
    let mall_silver = mall_tag_id(&w, "会员等级", "银卡");
    let removed = removals_of(&trail, &[&hub_silver, &silver, mall_silver.as_str()]);
    assert!(
        removed.is_empty(),
        "银卡 was taken off somewhere:\n{}",
        render_audit(&trail)
    );
    assert_eq!(w.wecom.relation_tags("sales_li", "wm_amy"), None);
    member_tags_everywhere(&w, &member, &["会员等级/金卡", "会员等级/银卡"]).await;
    w.stop().await;
}

/// A customer bound to no member: the transfer itself adds the tags the index showed onto
/// the new relation. A salesperson tags that relation while tagsync's `mark_tag` waits, and
/// the contact event's read files it in the index before tagsync's write lands: the relation
/// keeps both tags in WeCom, and the index — what tagsync knows — shows both too (the
/// transfer's own record is what it read plus what it applied, folded onto what the index
/// learnt since, never an older whole read put back over a newer one).
#[tokio::test]
async fn tag_put_on_the_new_relation_while_a_transfer_carries_an_unbound_customers_tags_survives_in_wecom_and_the_index()
 {
    let (w, clock) = world().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    let gold = wecom_tag(&w, "会员等级", "金卡").id;
    let silver = wecom_tag(&w, "会员等级", "银卡").id;
    let hub_gold = s(&hub_tag(&w, "会员等级", "金卡").await["id"]);
    let hub_silver = s(&hub_tag(&w, "会员等级", "银卡").await["id"]);
    let console = w.wecom.console();
    console.add_relation("sales_li", "wm_ben", None).unwrap();
    console
        .tag_relation("sales_li", "wm_ben", &[gold.as_str()], &[])
        .unwrap();
    settle(&w).await;
    assert_eq!(
        indexed_relation_tags(&w, "wm_ben", "sales_li").await,
        [hub_gold.clone()]
    );
    let id = transfer_from_a_leaver(&w, "wm_ben").await;

    take_over_with(&w, &clock, &id, "wm_ben", || async {
        console
            .tag_relation("sales_zhao", "wm_ben", &[silver.as_str()], &[])
            .unwrap();
        // The edit's event is read and filed before tagsync's held write lands.
        wait_until("the index learns of the salesperson's tag", || async {
            indexed_relation_tags(&w, "wm_ben", "sales_zhao")
                .await
                .contains(&hub_silver)
        })
        .await;
    })
    .await;

    let mut in_wecom = w
        .wecom
        .relation_tags("sales_zhao", "wm_ben")
        .expect("taken over");
    in_wecom.sort();
    let mut both = vec![gold.clone(), silver.clone()];
    both.sort();
    assert_eq!(in_wecom, both);
    let mut hub_both = vec![hub_gold, hub_silver];
    hub_both.sort();
    assert_eq!(
        indexed_relation_tags(&w, "wm_ben", "sales_zhao").await,
        hub_both,
        "the index shows what tagsync knows of the new relation"
    );
    w.stop().await;
}
