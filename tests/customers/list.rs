//! The customer index and `GET …/customers`: every filter kind, combined filters, personal
//! tags shown and never written, the reconciliation filling the index, bad input refused.

use crate::steps::*;
use crate::{all_ids, customers, hub_tag_id};
use tagsync::wecom::classify::ApiOp;

/// Four customers: alice (bound, both staff, 金卡), bob (bound, sales_wang, 银卡), carol (not
/// bound, came through the 门店 code to sales_li, 金卡 put on in WeCom), dave (not bound,
/// sales_wang, state 官网, no tags).
async fn four_customers(w: &crate::support::world::World) -> (String, String) {
    mall_made_group(w, "会员等级", 20, &[("金卡", 2), ("银卡", 1)]).await;
    w.wecom.add_customer("wm_alice", "Alice 王");
    w.wecom.add_customer("wm_bob", "Bob 李");
    w.wecom.add_customer("wm_carol", "卡罗尔");
    w.wecom.add_customer("wm_dave", "Dave");
    let alice = bound_member(w, "wm_alice", &["sales_li", "sales_wang"]).await;
    let bob = bound_member(w, "wm_bob", &["sales_wang"]).await;
    let (gold, silver) = (
        hub_tag_id(w, "会员等级", "金卡").await,
        hub_tag_id(w, "会员等级", "银卡").await,
    );
    for (member, tag) in [(&alice, &gold), (&bob, &silver)] {
        let (status, body) = w
            .admin(
                Method::POST,
                &format!("/members/{member}/tags"),
                Some(serde_json::json!({"add": [tag]})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let console = w.wecom.console();
    console
        .add_relation("sales_li", "wm_carol", Some("门店"))
        .unwrap();
    console
        .add_relation("sales_wang", "wm_dave", Some("官网"))
        .unwrap();
    settle(w).await;
    let gold_w = wecom_tag(w, "会员等级", "金卡").id;
    console
        .tag_relation("sales_li", "wm_carol", &[gold_w.as_str()], &[])
        .unwrap();
    settle(w).await;
    (gold, silver)
}

#[tokio::test]
async fn each_filter_kind_and_their_combination_return_exactly_the_matching_customers() {
    let w = start().await;
    let (gold, silver) = four_customers(&w).await;
    let calls = w.wecom.calls().len();

    assert_eq!(
        all_ids(&w, "").await,
        ["wm_alice", "wm_bob", "wm_carol", "wm_dave"]
    );
    assert_eq!(
        all_ids(&w, &format!("tag={gold}")).await,
        ["wm_alice", "wm_carol"]
    );
    assert_eq!(
        all_ids(&w, &format!("tag={gold}&tag={silver}&tag_mode=any")).await,
        ["wm_alice", "wm_bob", "wm_carol"]
    );
    assert_eq!(
        all_ids(&w, &format!("tag={gold}&tag={silver}&tag_mode=all")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        all_ids(&w, &format!("tag={gold}&tag_mode=none")).await,
        ["wm_bob", "wm_dave"]
    );
    assert_eq!(all_ids(&w, "state=%E9%97%A8%E5%BA%97").await, ["wm_carol"]);
    assert_eq!(
        all_ids(&w, "userid=sales_wang").await,
        ["wm_alice", "wm_bob", "wm_dave"]
    );
    assert_eq!(all_ids(&w, "bound=true").await, ["wm_alice", "wm_bob"]);
    assert_eq!(all_ids(&w, "bound=false").await, ["wm_carol", "wm_dave"]);
    assert_eq!(all_ids(&w, "q=DAV").await, ["wm_dave"]);
    assert_eq!(all_ids(&w, "q=%E7%8E%8B").await, ["wm_alice"]); // 王, in alice's name
    assert_eq!(all_ids(&w, "q=wm_b").await, ["wm_bob"]);
    // Combined: every part must hold (here on different relations of alice).
    assert_eq!(
        all_ids(&w, &format!("tag={gold}&userid=sales_wang&bound=true")).await,
        ["wm_alice"]
    );
    assert_eq!(
        all_ids(
            &w,
            &format!("tag={gold}&tag_mode=none&userid=sales_wang&bound=false")
        )
        .await,
        ["wm_dave"]
    );

    // Paging: one at a time, with the exact total on every page.
    let first = customers(&w, "limit=1&bound=true").await;
    assert_eq!(first["total"], 2);
    assert_eq!(first["customers"].as_array().unwrap().len(), 1);
    let next = s(&first["next_cursor"]);
    let second = customers(&w, &format!("limit=1&bound=true&cursor={next}")).await;
    assert_eq!(second["total"], 2);
    assert_eq!(second["customers"][0]["external_userid"], "wm_bob");
    assert!(second["next_cursor"].is_null(), "{second}");

    // The shape: name, member, tags as the union, each relation with its state and time.
    let alice = &customers(&w, "q=alice").await["customers"][0];
    assert_eq!(alice["name"], "Alice 王");
    assert!(alice["member_id"].is_string(), "{alice}");
    assert_eq!(alice["tag_ids"], serde_json::json!([gold]));
    let rels = alice["relations"].as_array().unwrap();
    assert_eq!(rels.len(), 2, "{alice}");
    for r in rels {
        assert_eq!(r["tag_ids"], serde_json::json!([gold]), "{alice}");
        assert!(r["added_at"].is_string(), "{alice}");
    }
    let carol = &customers(&w, "q=wm_carol").await["customers"][0];
    assert_eq!(carol["relations"][0]["state"], "门店");
    assert!(carol["member_id"].is_null());
    // Listing read the index only.
    assert_eq!(w.wecom.calls().len(), calls, "the listing called WeCom");
    w.stop().await;
}

#[tokio::test]
async fn personal_tags_appear_on_their_relation_and_are_never_written_anywhere() {
    let w = start().await;
    four_customers(&w).await;
    w.wecom
        .console()
        .set_personal_tags("sales_li", "wm_alice", &[("我的标签", "爱喝茶")])
        .unwrap();
    settle(&w).await;
    let alice = &customers(&w, "q=wm_alice").await["customers"][0];
    let li = alice["relations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userid"] == "sales_li")
        .expect("sales_li's relation");
    assert_eq!(li["personal_tags"], serde_json::json!(["爱喝茶"]));
    assert!(!alice["tag_ids"].to_string().contains("爱喝茶"));

    // A full sync later, nothing carries it: no hub tag, no WeCom corp tag, no mall tag, no
    // mark_tag sent with it.
    crate::steps::settle(&w).await;
    let hub = w.hub_groups().await.to_string();
    assert!(
        !hub.contains("爱喝茶") && !hub.contains("我的标签"),
        "{hub}"
    );
    assert!(!format!("{:?}", w.wecom_library()).contains("爱喝茶"));
    assert!(!format!("{:?}", w.mall.library()).contains("爱喝茶"));
    for call in w.wecom.calls().iter().filter(|c| c.op == ApiOp::MarkTag) {
        assert!(!format!("{call:?}").contains("爱喝茶"), "{call:?}");
    }
    w.stop().await;
}

#[tokio::test]
async fn the_members_reconciliation_files_customers_no_event_announced() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    let gold_w = wecom_tag(&w, "会员等级", "金卡").id;
    w.wecom.add_customer("wm_quiet", "安静的客户");
    let quiet = w.wecom.silent();
    quiet
        .add_relation("sales_li", "wm_quiet", Some("展会"))
        .unwrap();
    quiet
        .tag_relation("sales_li", "wm_quiet", &[gold_w.as_str()], &[])
        .unwrap();
    settle(&w).await;
    assert_eq!(customers(&w, "").await["total"], 0);

    let (status, body) = w
        .admin(
            Method::POST,
            "/sync",
            Some(serde_json::json!({"scope": "members"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let gold = hub_tag_id(&w, "会员等级", "金卡").await;
    wait_until("the reconciliation filed wm_quiet", || async {
        customers(&w, &format!("tag={gold}&state=%E5%B1%95%E4%BC%9A")).await["total"] == 1
    })
    .await;
    let c = &customers(&w, "").await["customers"][0];
    assert_eq!(c["name"], "安静的客户");
    assert!(c["member_id"].is_null());
    w.stop().await;
}

#[tokio::test]
async fn bad_listing_input_is_refused_naming_the_parameter() {
    let w = start().await;
    mall_made_group(&w, "会员等级", 20, &[("金卡", 2)]).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("tag=no_such_tag", "tag"),
        ("tag_mode=some", "tag_mode"),
        ("bound=maybe", "bound"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = w
            .admin(Method::GET, &format!("/customers?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`{field}`")), "{query}: {body}");
    }
    let body = customers(&w, "limit=200").await;
    assert_eq!(body["total"], 0);
    w.stop().await;
}
