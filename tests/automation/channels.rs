//! Channel codes: WeCom contact ways created from the hub, scanned by customers, tagging them
//! through their channel rule.

use crate::steps::*;
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn a_scan_of_a_channel_code_tags_the_customer_on_that_relation_on_its_other_relations_and_in_the_mall()
 {
    let (w, tags) = world_with_tags(&["线下门店"]).await;
    let member = bound_member(&w, "wm_carol", &["sales_wang"]).await;
    let (status, channel) = w
        .admin(
            Method::POST,
            "/channels",
            Some(json!({"name": "线下门店", "users": ["sales_li"], "tag_ids": [tags["线下门店"]]})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let config_id = s(&channel["config_id"]);
    let ways = w.wecom.contact_ways();
    assert_eq!(ways.len(), 1);
    assert_eq!(ways[0].config_id, config_id);
    assert_eq!(
        ways[0].state,
        s(&channel["state"]),
        "the state tagsync generated"
    );
    assert!(s(&channel["qr_code"]).ends_with(".svg"), "{channel}");
    let (qr_status, _) = (
        reqwest::get(s(&channel["qr_code"])).await.unwrap().status(),
        (),
    );
    assert_eq!(qr_status, 200, "the QR code URL answers an image");

    let added_by = w.wecom.console().scan(&config_id, "wm_carol").unwrap();
    assert_eq!(added_by, "sales_li");
    settle(&w).await;

    tags_everywhere(&w, &member, &["线下门店"]).await;
    let view = w.member_view(member.as_str()).await;
    assert_eq!(
        view.relations.keys().collect::<Vec<_>>(),
        ["sales_li", "sales_wang"],
        "the new relation and the old one"
    );
    let rule_id = s(&channel["rule_ids"][0]);
    let (_, rule) = w
        .admin(Method::GET, &format!("/rules/{rule_id}"), None)
        .await;
    assert_eq!(rule["mode"], "on");
    assert_eq!(
        rule["trigger"],
        json!({"kind": "channel", "state": channel["state"]})
    );
    let fired = firings(&w, &rule).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["outcome"], "applied");
    assert_eq!(fired[0]["event"]["userid"], "sales_li");
    w.stop().await;
}

#[tokio::test]
async fn a_half_add_then_the_full_add_through_a_code_fires_once() {
    let (w, tags) = world_with_tags(&["线下门店"]).await;
    let member = bound_member(&w, "wm_dan", &["sales_wang"]).await;
    let rule = create_rule(
        &w,
        json!({
            "name": "门店",
            "trigger": {"kind": "channel", "state": "store-9"},
            "actions": {"add": [tags["线下门店"]]},
            "mode": "on",
        }),
    )
    .await;
    let console = w.wecom.console();
    console
        .add_half_relation("sales_li", "wm_dan", Some("store-9"))
        .unwrap();
    console
        .add_relation("sales_li", "wm_dan", Some("store-9"))
        .unwrap();
    settle(&w).await;
    assert_eq!(firings(&w, &rule).await.len(), 1, "one arrival, one firing");
    tags_everywhere(&w, &member, &["线下门店"]).await;
    w.stop().await;
}

#[tokio::test]
async fn channels_are_listed_and_deleting_one_deletes_the_contact_way_and_switches_its_rule_off() {
    let (w, tags) = world_with_tags(&["线下门店"]).await;
    let (status, channel) = w
        .admin(
            Method::POST,
            "/channels",
            Some(json!({"name": "门店二", "state": "store-2", "users": ["sales_li", "sales_wang"], "tag_ids": [tags["线下门店"]]})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let (status, again) = w
        .admin(
            Method::POST,
            "/channels",
            Some(json!({"name": "重复", "state": "store-2", "users": ["sales_li"]})),
        )
        .await;
    assert_eq!(status, 409, "a state names one channel: {again}");
    let (status, long) = w
        .admin(
            Method::POST,
            "/channels",
            Some(json!({"name": "长", "state": "s".repeat(31), "users": ["sales_li"]})),
        )
        .await;
    assert_eq!(status, 400, "{long}");
    assert!(long.to_string().contains("state"), "{long}");
    let (_, listed) = w.admin(Method::GET, "/channels", None).await;
    assert_eq!(listed["channels"].as_array().unwrap().len(), 1);
    assert_eq!(
        listed["channels"][0]["users"],
        json!(["sales_li", "sales_wang"])
    );

    let (status, _) = w
        .admin(
            Method::DELETE,
            &format!("/channels/{}", s(&channel["id"])),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        w.wecom.contact_ways().is_empty(),
        "del_contact_way was called"
    );
    let (_, listed) = w.admin(Method::GET, "/channels", None).await;
    assert_eq!(listed["channels"], json!([]));
    let (_, rule) = w
        .admin(
            Method::GET,
            &format!("/rules/{}", s(&channel["rule_ids"][0])),
            None,
        )
        .await;
    assert_eq!(rule["mode"], "off", "the rule is kept, switched off");
    w.stop().await;
}
