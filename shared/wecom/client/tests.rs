use super::tags::AddTagReq;
use super::*;
use crate::wecom::classify::{ApiOp, TransportFailure};
use serde_json::json;

#[test]
fn numbers_may_arrive_as_strings_and_unknown_fields_are_ignored() {
    let v = json!({
        "group_id": "etG", "group_name": "Level", "create_time": "1700000000",
        "order": "7", "deleted": "true", "strategy_id": "3", "brand_new": {"x": 1},
        "tag": [{"id": "etT", "name": 5, "create_time": 1700000001, "order": 2.0,
                 "deleted": 0, "also_new": []}]
    });
    let g: TagGroupInfo = serde_json::from_value(v).unwrap();
    assert_eq!(g.create_time, 1_700_000_000);
    assert_eq!(g.order, 7);
    assert!(g.deleted);
    assert_eq!(g.strategy_id, Some(3));
    assert_eq!(g.tag[0].name, "5");
    assert_eq!(g.tag[0].order, 2);
    assert!(!g.tag[0].deleted);
}

#[test]
fn absent_and_null_fields_take_defaults() {
    let g: TagGroupInfo =
        serde_json::from_value(json!({"group_id": "etG", "group_name": null})).unwrap();
    assert_eq!(g.group_name, "");
    assert_eq!(
        (g.order, g.create_time, g.deleted, g.strategy_id),
        (0, 0, false, None)
    );
    let p: BatchPage = serde_json::from_value(json!({"next_cursor": ""})).unwrap();
    assert_eq!(p.next_cursor, None);
}

#[test]
fn group_id_is_omitted_not_sent_empty() {
    let tags = [NewTag::named("a")];
    let req = AddTagReq {
        strategy_id: None,
        group_id: None,
        group_name: Some("G"),
        order: None,
        tag: &tags,
    };
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(v, json!({"group_name": "G", "tag": [{"name": "a"}]}));
}

#[test]
fn errors_say_whether_to_retry() {
    let e = WecomError::transport(ApiOp::MarkTag, TransportFailure::Status(502));
    assert!(e.retryable());
    assert_eq!(e.http_status, Some(502));
    assert!(e.retry_after().is_some());
    let e = WecomError::invalid_request(ApiOp::MarkTag, "nothing to do");
    assert!(!e.retryable());
    assert_eq!(e.retry_after(), None);
    assert!(e.to_string().contains("externalcontact/mark_tag"));
}
