use super::*;
use serde_json::json;

// Known-answer vector, computed independently of this crate with Python's standard
// library:
//   python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test_0123456789",
//     b"1763712930." + b"{\"event_id\":\"evt_1\",\"type\":\"tag.created\"}",
//     hashlib.sha256).hexdigest())'
// and the same with key b"old-secret" for OLD_SECRET_SIG.
const SECRET: &[u8] = b"whsec_test_0123456789";
const TS: i64 = 1_763_712_930;
const BODY: &[u8] = br#"{"event_id":"evt_1","type":"tag.created"}"#;
const EXPECTED_SIG: &str = "v1=1fb51af76d0affc4c1381237c18bc0293397c640721a863bd5fb9c26a515a18d";
const OLD_SECRET_SIG: &str = "v1=3d381663a369c202839d442319c1b8e3931443199828018e172cf6e3581a3a22";

fn verify_at(sig: Option<&str>, ts: Option<&str>, now: i64) -> Result<i64, WebhookError> {
    verify(SECRET, ts, sig, BODY, now)
}

#[test]
fn sign_matches_independently_computed_vector() {
    assert_eq!(sign(SECRET, TS, BODY), EXPECTED_SIG);
}

#[test]
fn verify_accepts_what_sign_produces() {
    let sig = sign(SECRET, TS, BODY);
    assert_eq!(verify_at(Some(&sig), Some("1763712930"), TS), Ok(TS));
    assert_eq!(
        verify_at(Some(EXPECTED_SIG), Some("1763712930"), TS),
        Ok(TS)
    );
}

#[test]
fn verify_refuses_wrong_secret_body_or_timestamp() {
    let ts = Some("1763712930");
    assert_eq!(
        verify(b"another", ts, Some(EXPECTED_SIG), BODY, TS),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify(SECRET, ts, Some(EXPECTED_SIG), b"{}", TS),
        Err(WebhookError::BadSignature)
    );
    // A timestamp moved by one second no longer matches the signature.
    assert_eq!(
        verify_at(Some(EXPECTED_SIG), Some("1763712931"), TS),
        Err(WebhookError::BadSignature)
    );
    // Re-formatted digits are not the digits that were signed.
    assert_eq!(
        verify_at(Some(EXPECTED_SIG), Some("01763712930"), TS),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn verify_refuses_malformed_signatures() {
    let ts = Some("1763712930");
    let bare_hex = EXPECTED_SIG.trim_start_matches("v1=");
    let truncated = &EXPECTED_SIG[..EXPECTED_SIG.len() - 2];
    for bad in [bare_hex, "v1=", "v1=zz", truncated, "v0=00", "sha256=abc"] {
        assert_eq!(
            verify_at(Some(bad), ts, TS),
            Err(WebhookError::BadSignature),
            "{bad}"
        );
    }
}

#[test]
fn missing_headers_are_refused_with_401() {
    let ts = Some("1763712930");
    for sig in [None, Some(""), Some("  ")] {
        let err = verify_at(sig, ts, TS).unwrap_err();
        assert_eq!(err, WebhookError::MissingSignature);
        assert_eq!(err.status(), 401);
    }
    let err = verify_at(Some(EXPECTED_SIG), None, TS).unwrap_err();
    assert_eq!(err, WebhookError::MissingTimestamp);
    assert_eq!(err.status(), 401);
}

#[test]
fn unparseable_timestamps_are_refused_with_401() {
    for ts in [
        "abc",
        "-1763712930",
        "+1763712930",
        "1763712930.5",
        "99999999999999999999",
    ] {
        let err = verify_at(Some(EXPECTED_SIG), Some(ts), TS).unwrap_err();
        assert_eq!(err, WebhookError::BadTimestamp, "{ts}");
        assert_eq!(err.status(), 401);
    }
}

#[test]
fn replay_window_is_300_seconds_each_way() {
    let ts = Some("1763712930");
    // The request was signed at TS; tagsync's clock reads `now`.
    assert_eq!(verify_at(Some(EXPECTED_SIG), ts, TS + 300), Ok(TS));
    assert_eq!(verify_at(Some(EXPECTED_SIG), ts, TS - 300), Ok(TS));
    let stale = verify_at(Some(EXPECTED_SIG), ts, TS + 301).unwrap_err();
    assert_eq!(stale, WebhookError::Stale { skew_secs: 301 });
    assert_eq!(stale.status(), 401);
    let future = verify_at(Some(EXPECTED_SIG), ts, TS - 301).unwrap_err();
    assert_eq!(future, WebhookError::Stale { skew_secs: 301 });
    assert_eq!(future.status(), 401);
}

#[test]
fn stale_is_only_reported_for_a_genuine_signature() {
    let err = verify(
        b"wrong",
        Some("1763712930"),
        Some(EXPECTED_SIG),
        BODY,
        TS + 10_000,
    )
    .unwrap_err();
    assert_eq!(err, WebhookError::BadSignature);
}

#[test]
fn any_of_several_signatures_may_match_during_secret_rotation() {
    let ts = Some("1763712930");
    let rotated = format!("{OLD_SECRET_SIG},{EXPECTED_SIG}");
    assert_eq!(verify_at(Some(&rotated), ts, TS), Ok(TS));
    let spaced = format!("{EXPECTED_SIG} , {OLD_SECRET_SIG}");
    assert_eq!(verify_at(Some(&spaced), ts, TS), Ok(TS));
    let with_other_scheme = format!("v0=deadbeef,{EXPECTED_SIG}");
    assert_eq!(verify_at(Some(&with_other_scheme), ts, TS), Ok(TS));
    // The old secret's signature alone verifies only under the old secret.
    assert_eq!(
        verify_at(Some(OLD_SECRET_SIG), ts, TS),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(verify(b"old-secret", ts, Some(&rotated), BODY, TS), Ok(TS));
}

fn envelope(event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event_id": "evt_01JD3Z8Q5V6W7X8Y9Z0ABCDEF",
        "type": event_type,
        "occurred_at": "2026-11-21T08:15:30.123Z",
        "origin_request_id": null,
        "data": data,
    }))
    .unwrap()
}

fn parse(event_type: &str, data: Value) -> MallEvent {
    parse_event(&envelope(event_type, data)).unwrap().event
}

fn field_of(err: WebhookError) -> String {
    assert_eq!(err.status(), 400, "{err}");
    match err {
        WebhookError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn invalid_field(body: Value) -> String {
    field_of(parse_event(&serde_json::to_vec(&body).unwrap()).unwrap_err())
}

fn group(id: &str, name: &str, order: u32) -> MallTagGroup {
    MallTagGroup {
        id: MallGroupId::new_unchecked(id),
        name: name.to_owned(),
        order,
    }
}

fn tag(id: &str, group_id: &str, name: &str, order: u32) -> MallTag {
    MallTag {
        id: MallTagId::new_unchecked(id),
        group_id: MallGroupId::new_unchecked(group_id),
        name: name.to_owned(),
        order,
    }
}

#[test]
fn parses_the_envelope_of_a_realistic_delivery() {
    let body = r#"{
            "event_id": "evt_01JD3Z8Q5V6W7X8Y9Z0ABCDEF",
            "type": "tag.updated",
            "occurred_at": "2026-11-21T08:15:30.123Z",
            "origin_request_id": "tagsync-job-0193-mall-patch",
            "data": {"tag": {"id": "t_88", "group_id": "g_12", "name": "高价值客户", "order": 20}}
        }"#;
    let hook = parse_event(body.as_bytes()).unwrap();
    assert_eq!(hook.event_id, "evt_01JD3Z8Q5V6W7X8Y9Z0ABCDEF");
    assert_eq!(
        hook.occurred_at,
        Timestamp::parse_rfc3339("2026-11-21T08:15:30.123Z").unwrap()
    );
    assert_eq!(
        hook.origin_request_id.as_deref(),
        Some("tagsync-job-0193-mall-patch")
    );
    assert_eq!(
        hook.event,
        MallEvent::TagUpdated {
            tag: tag("t_88", "g_12", "高价值客户", 20)
        }
    );
    assert_eq!(hook.event.type_name(), "tag.updated");
}

#[test]
fn origin_request_id_may_be_null_or_absent() {
    let hook = parse_event(&envelope("tag_group.deleted", json!({"group_id": "g_1"}))).unwrap();
    assert_eq!(hook.origin_request_id, None);
    let body = json!({
        "event_id": "evt_2", "type": "tag_group.deleted",
        "occurred_at": "2026-11-21T08:15:30Z", "data": {"group_id": "g_1"}
    });
    let hook = parse_event(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(hook.origin_request_id, None);
}

#[test]
fn parses_tag_group_events() {
    let data = json!({"group": {"id": "g_12", "name": "客户等级", "order": 3}});
    assert_eq!(
        parse("tag_group.created", data.clone()),
        MallEvent::TagGroupCreated {
            group: group("g_12", "客户等级", 3)
        }
    );
    assert_eq!(
        parse("tag_group.updated", data),
        MallEvent::TagGroupUpdated {
            group: group("g_12", "客户等级", 3)
        }
    );
    assert_eq!(
        parse("tag_group.deleted", json!({"group_id": "g_12"})),
        MallEvent::TagGroupDeleted {
            group_id: MallGroupId::new_unchecked("g_12")
        }
    );
}

#[test]
fn parses_tag_events() {
    let data = json!({"tag": {"id": "t_7", "group_id": "g_12", "name": "VIP", "order": 0}});
    assert_eq!(
        parse("tag.created", data.clone()),
        MallEvent::TagCreated {
            tag: tag("t_7", "g_12", "VIP", 0)
        }
    );
    assert_eq!(
        parse("tag.updated", data),
        MallEvent::TagUpdated {
            tag: tag("t_7", "g_12", "VIP", 0)
        }
    );
    assert_eq!(
        parse("tag.deleted", json!({"tag_id": "t_7", "group_id": "g_12"})),
        MallEvent::TagDeleted {
            tag_id: MallTagId::new_unchecked("t_7"),
            group_id: MallGroupId::new_unchecked("g_12"),
        }
    );
}

#[test]
fn parses_member_events() {
    assert_eq!(
        parse(
            "member.tags_changed",
            json!({"member_id": "m_1001", "added": ["t_7", "t_8"], "removed": []})
        ),
        MallEvent::MemberTagsChanged {
            member_id: MemberId::new_unchecked("m_1001"),
            added: vec![
                MallTagId::new_unchecked("t_7"),
                MallTagId::new_unchecked("t_8")
            ],
            removed: vec![],
        }
    );
    assert_eq!(
        parse(
            "member.bound",
            json!({"member_id": "m_1001", "unionid": "o6_bmasdasdsad6_2sgVt7hMZOPfL",
                   "external_userid": "wmqfasd1e19278asdasdasd", "mobile": null})
        ),
        MallEvent::MemberBound {
            member_id: MemberId::new_unchecked("m_1001"),
            unionid: Some("o6_bmasdasdsad6_2sgVt7hMZOPfL".to_owned()),
            external_userid: Some(ExternalUserId::new_unchecked("wmqfasd1e19278asdasdasd")),
            mobile: None,
        }
    );
    // Nullable fields may also be left out.
    assert_eq!(
        parse(
            "member.bound",
            json!({"member_id": "m_1", "mobile": "13800000000"})
        ),
        MallEvent::MemberBound {
            member_id: MemberId::new_unchecked("m_1"),
            unionid: None,
            external_userid: None,
            mobile: Some("13800000000".to_owned()),
        }
    );
}

#[test]
fn unknown_types_are_accepted_without_looking_at_data() {
    let hook = parse_event(&envelope("coupon.issued", json!("anything"))).unwrap();
    assert_eq!(
        hook.event,
        MallEvent::Unknown {
            type_name: "coupon.issued".to_owned()
        }
    );
    assert_eq!(hook.event.type_name(), "coupon.issued");
    let body = br#"{"event_id":"e","type":"x.y","occurred_at":"2026-11-21T08:15:30.123Z"}"#;
    assert!(matches!(
        parse_event(body).unwrap().event,
        MallEvent::Unknown { .. }
    ));
}

#[test]
fn extra_fields_are_tolerated() {
    let body = json!({
        "event_id": "evt_3", "type": "tag.created", "occurred_at": "2026-11-21T08:15:30.123Z",
        "api_version": "1", "data": {"tag": {"id": "t", "group_id": "g", "name": "n",
        "order": 1, "color": "#ff0000"}, "shop_id": 9}
    });
    assert!(parse_event(&serde_json::to_vec(&body).unwrap()).is_ok());
}

#[test]
fn invalid_json_is_a_400() {
    for body in [&b"{"[..], b"", b"not json", b"{\"event_id\": }"] {
        let err = parse_event(body).unwrap_err();
        assert!(matches!(err, WebhookError::InvalidJson { .. }), "{err:?}");
        assert_eq!(err.status(), 400);
    }
    assert_eq!(field_of(parse_event(b"[1,2]").unwrap_err()), "body");
}

#[test]
fn oversized_bodies_are_a_413() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    let err = parse_event(&body).unwrap_err();
    assert_eq!(
        err,
        WebhookError::TooLarge {
            size: MAX_BODY_BYTES + 1
        }
    );
    assert_eq!(err.status(), 413);
}

fn without(mut value: Value, path: &[&str]) -> Value {
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut value;
    for p in parents {
        at = at.get_mut(*p).unwrap();
    }
    at.as_object_mut().unwrap().remove(*last).unwrap();
    value
}

fn with(mut value: Value, path: &[&str], new: Value) -> Value {
    let mut at = &mut value;
    for p in path {
        at = at.get_mut(*p).unwrap();
    }
    *at = new;
    value
}

fn full(event_type: &str, data: Value) -> Value {
    serde_json::from_slice(&envelope(event_type, data)).unwrap()
}

#[test]
fn missing_envelope_fields_are_named() {
    let body = full("tag_group.deleted", json!({"group_id": "g"}));
    for key in ["event_id", "type", "occurred_at", "data"] {
        assert_eq!(invalid_field(without(body.clone(), &[key])), key);
    }
}

#[test]
fn mistyped_envelope_fields_are_named() {
    let body = full("tag_group.deleted", json!({"group_id": "g"}));
    let cases = [
        ("event_id", json!(42)),
        ("event_id", json!("")),
        ("event_id", json!("e".repeat(201))),
        ("event_id", json!("evt\n1")),
        ("type", json!(null)),
        ("occurred_at", json!("yesterday")),
        ("occurred_at", json!(1_763_712_930)),
        ("origin_request_id", json!(7)),
        ("data", json!([])),
    ];
    for (key, bad) in cases {
        assert_eq!(
            invalid_field(with(body.clone(), &[key], bad.clone())),
            key,
            "{key} = {bad}"
        );
    }
    // The limit is inclusive.
    let ok = with(body, &["event_id"], json!("e".repeat(200)));
    assert!(parse_event(&serde_json::to_vec(&ok).unwrap()).is_ok());
}

#[test]
fn missing_fields_of_each_known_type_are_named() {
    let cases = [
        (
            "tag_group.created",
            json!({"group": {"id": "g", "name": "n", "order": 1}}),
            vec!["group", "group.id", "group.name", "group.order"],
        ),
        (
            "tag_group.updated",
            json!({"group": {"id": "g", "name": "n", "order": 1}}),
            vec!["group", "group.id", "group.name", "group.order"],
        ),
        (
            "tag_group.deleted",
            json!({"group_id": "g"}),
            vec!["group_id"],
        ),
        (
            "tag.created",
            json!({"tag": {"id": "t", "group_id": "g", "name": "n", "order": 1}}),
            vec!["tag", "tag.id", "tag.group_id", "tag.name", "tag.order"],
        ),
        (
            "tag.updated",
            json!({"tag": {"id": "t", "group_id": "g", "name": "n", "order": 1}}),
            vec!["tag", "tag.id", "tag.group_id", "tag.name", "tag.order"],
        ),
        (
            "tag.deleted",
            json!({"tag_id": "t", "group_id": "g"}),
            vec!["tag_id", "group_id"],
        ),
        (
            "member.tags_changed",
            json!({"member_id": "m", "added": [], "removed": []}),
            vec!["member_id", "added", "removed"],
        ),
        (
            "member.bound",
            json!({"member_id": "m", "unionid": null, "external_userid": null, "mobile": null}),
            vec!["member_id"],
        ),
    ];
    for (event_type, data, paths) in cases {
        let body = full(event_type, data);
        assert!(
            parse_event(&serde_json::to_vec(&body).unwrap()).is_ok(),
            "{event_type}"
        );
        for path in paths {
            let mut keys = vec!["data"];
            keys.extend(path.split('.'));
            assert_eq!(
                invalid_field(without(body.clone(), &keys)),
                format!("data.{path}"),
                "{event_type} without {path}"
            );
        }
    }
}

#[test]
fn mistyped_fields_of_known_types_are_named() {
    let tag_body = full(
        "tag.created",
        json!({"tag": {"id": "t", "group_id": "g", "name": "n", "order": 1}}),
    );
    let cases = [
        (&["data", "tag"][..], json!("t")),
        (&["data", "tag", "id"], json!(5)),
        (&["data", "tag", "id"], json!("")),
        (&["data", "tag", "group_id"], json!(null)),
        (&["data", "tag", "name"], json!("")),
        (&["data", "tag", "name"], json!("一".repeat(31))),
        (&["data", "tag", "name"], json!(["n"])),
        (&["data", "tag", "order"], json!(-1)),
        (&["data", "tag", "order"], json!(1.5)),
        (&["data", "tag", "order"], json!("1")),
        (&["data", "tag", "order"], json!(4_294_967_296u64)),
    ];
    for (path, bad) in cases {
        assert_eq!(
            invalid_field(with(tag_body.clone(), path, bad.clone())),
            path.join("."),
            "{path:?} = {bad}"
        );
    }
    // Thirty characters (not bytes) is the limit, and u32::MAX is a valid order.
    let ok = with(tag_body, &["data", "tag", "name"], json!("一".repeat(30)));
    let ok = with(ok, &["data", "tag", "order"], json!(u32::MAX));
    assert!(parse_event(&serde_json::to_vec(&ok).unwrap()).is_ok());

    let member = full(
        "member.tags_changed",
        json!({"member_id": "m", "added": ["t1", "t2"], "removed": ["t3"]}),
    );
    assert_eq!(
        invalid_field(with(member.clone(), &["data", "added"], json!("t1"))),
        "data.added"
    );
    assert_eq!(
        invalid_field(with(member.clone(), &["data", "added"], json!(["t1", 2]))),
        "data.added[1]"
    );
    assert_eq!(
        invalid_field(with(member, &["data", "removed"], json!([""]))),
        "data.removed[0]"
    );

    let bound = full(
        "member.bound",
        json!({"member_id": "m", "unionid": null, "external_userid": null, "mobile": null}),
    );
    for key in ["unionid", "external_userid", "mobile"] {
        assert_eq!(
            invalid_field(with(bound.clone(), &["data", key], json!(1))),
            format!("data.{key}")
        );
    }
    assert_eq!(
        invalid_field(with(bound, &["data", "external_userid"], json!(""))),
        "data.external_userid"
    );
}

#[test]
fn error_messages_name_the_field() {
    let body = full(
        "tag.created",
        json!({"tag": {"id": "t", "group_id": "g", "order": 1}}),
    );
    let err = parse_event(&serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert_eq!(err.to_string(), "data.tag.name is required");
}
