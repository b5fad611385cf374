//! Customer strategies (rule groups, wecom-api.md §1.4) through the client against the
//! simulator: create / list / get / get_range / edit / del round-trip, and WeCom's limits are
//! refused as WeCom refuses them (40058 naming the limit).

use serde_json::{Value, json};
use std::collections::BTreeSet;
use tagsync::sim::wecom::RangeNode;
use tagsync::wecom::client::{AddTarget, NewTag};

use crate::helpers::{Harness, harness};

fn parties(ids: impl IntoIterator<Item = u32>) -> BTreeSet<RangeNode> {
    ids.into_iter().map(RangeNode::Party).collect()
}

/// A call the client would never send as is (it splits ranges), straight over HTTP.
async fn raw(h: &Harness, path: &str, body: Value) -> Value {
    let token = h.sim.current_token().unwrap();
    reqwest::Client::new()
        .post(format!("{}/externalcontact/{path}", h.sim.base_url()))
        .query(&[("access_token", token)])
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn strategies_round_trip_through_create_list_get_range_edit_and_delete() {
    let h = harness().await;
    // 250 nodes: the client sends 100 with the create and the rest in edits of at most 100.
    let mut range = parties(1..=249);
    range.insert(RangeNode::User("zhang_san".into()));
    let id = h
        .client
        .strategy_create(&h.creds, None, "售后部", &range)
        .await
        .unwrap();
    assert_eq!(h.client.strategy_ids(&h.creds).await.unwrap(), [id]);
    let info = h.client.strategy_get(&h.creds, id).await.unwrap();
    assert_eq!(
        (
            info.strategy_id,
            info.parent_id,
            info.strategy_name.as_str()
        ),
        (id, 0, "售后部")
    );
    // get_range pages at 1000; the whole range comes back.
    assert_eq!(h.client.strategy_range(&h.creds, id).await.unwrap(), range);

    let add = parties([500, 501]);
    let del: BTreeSet<RangeNode> = parties(1..=150);
    h.client
        .strategy_edit(&h.creds, id, Some("售后中心"), &add, &del)
        .await
        .unwrap();
    let after = h.client.strategy_range(&h.creds, id).await.unwrap();
    let mut want = parties((151..=249).chain([500, 501]));
    want.insert(RangeNode::User("zhang_san".into()));
    assert_eq!(after, want);
    assert_eq!(
        h.client
            .strategy_get(&h.creds, id)
            .await
            .unwrap()
            .strategy_name,
        "售后中心"
    );

    // Tags live in it; deleting the strategy deletes them.
    h.client
        .add_strategy_tag(
            &h.creds,
            id,
            AddTarget::Named {
                name: "售后服务",
                order: None,
            },
            &[NewTag::named("保养到期")],
        )
        .await
        .unwrap();
    h.client.strategy_del(&h.creds, id).await.unwrap();
    assert!(h.client.strategy_ids(&h.creds).await.unwrap().is_empty());
    assert!(
        h.client
            .get_strategy_tag_list(&h.creds, None, &[], &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn strategy_calls_beyond_wecoms_limits_are_refused_naming_the_limit() {
    let h = harness().await;
    let parent = h
        .client
        .strategy_create(&h.creds, None, "华东", &parties([2, 3]))
        .await
        .unwrap();

    // More than 100 range nodes in one call.
    let nodes: Vec<Value> = (1..=101)
        .map(|p| json!({"type": 2, "partyid": p}))
        .collect();
    let a = raw(
        &h,
        "customer_strategy/create",
        json!({"strategy_name": "大", "range": nodes}),
    )
    .await;
    assert_eq!(a["errcode"], 40058, "{a}");
    assert!(a["errmsg"].as_str().unwrap().contains("100"), "{a}");

    // A child's range outside its parent's.
    let a = raw(
        &h,
        "customer_strategy/create",
        json!({"parent_id": parent, "strategy_name": "上海",
               "range": [{"type": 2, "partyid": 9}]}),
    )
    .await;
    assert_eq!(a["errcode"], 40058, "{a}");
    assert!(a["errmsg"].as_str().unwrap().contains("subset"), "{a}");

    // Tags only on a top-level strategy.
    let child = h
        .client
        .strategy_create(&h.creds, Some(parent), "上海", &parties([3]))
        .await
        .unwrap();
    let e = h
        .client
        .add_strategy_tag(
            &h.creds,
            child,
            AddTarget::Named {
                name: "G",
                order: None,
            },
            &[NewTag::named("t")],
        )
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40058), "{e}");
    assert!(e.message.contains("top-level"), "{e}");

    // A parent cannot lose a node its child holds, nor be deleted before it.
    let e = h
        .client
        .strategy_edit(&h.creds, parent, None, &BTreeSet::new(), &parties([3]))
        .await
        .unwrap_err();
    assert_eq!(e.errcode, Some(40058), "{e}");
    let e = h.client.strategy_del(&h.creds, parent).await.unwrap_err();
    assert_eq!(e.errcode, Some(40058), "{e}");

    // An unknown strategy; an empty name; more than 3000 nodes in a strategy.
    let e = h.client.strategy_get(&h.creds, 999).await.unwrap_err();
    assert_eq!(e.errcode, Some(40058), "{e}");
    let a = raw(
        &h,
        "customer_strategy/create",
        json!({"strategy_name": "", "range": [{"type": 2, "partyid": 1}]}),
    )
    .await;
    assert_eq!(a["errcode"], 40058, "{a}");
    let big = h
        .client
        .strategy_create(&h.creds, None, "全国", &parties(1..=3000))
        .await
        .unwrap();
    let e = h
        .client
        .strategy_edit(&h.creds, big, None, &parties([3001]), &BTreeSet::new())
        .await
        .unwrap_err();
    assert!(e.message.contains("3000"), "{e}");
}
