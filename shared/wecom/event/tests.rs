use super::*;

/// A callback sample of wecom-api.md §5, kept as a data file exactly as the document prints
/// it (CDATA, indentation and all), so the parser meets the real thing.
macro_rules! sample {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/wecom-events/",
            $name,
            ".xml"
        ))
    };
}

/// §5.1 samples, verbatim apart from the ChangeType where noted.
const ADD: &str = sample!("add_external_contact");

const DEL: &str = sample!("del_external_contact");

const TRANSFER_FAIL: &str = sample!("transfer_fail");

/// The same envelope without CDATA, as some senders (and the simulator) write it.
const EDIT_BARE: &str = "<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>\
    <CreateTime>1403610513</CreateTime><MsgType>event</MsgType>\
    <Event>change_external_contact</Event><ChangeType>edit_external_contact</ChangeType>\
    <UserID>zhangsan</UserID><ExternalUserID>woAJ2GCAAAXtWyujaWJHDDGi0mAAAA</ExternalUserID></xml>";

/// §5.2 samples: StrategyId bare in one, CDATA in the other.
const TAG_CREATE: &str = sample!("tag_create");

const TAG_SHUFFLE: &str = sample!("tag_shuffle");

fn tag_xml(to: &str, change: &str, id: &str, tag_type: &str, time: i64) -> String {
    format!(
        "<xml><ToUserName>{to}</ToUserName><FromUserName>sys</FromUserName>\
         <CreateTime>{time}</CreateTime><MsgType>event</MsgType>\
         <Event>change_external_tag</Event><Id>{id}</Id><TagType>{tag_type}</TagType>\
         <ChangeType>{change}</ChangeType></xml>"
    )
}

fn contact_xml(change: &str, user: &str, ext: &str, time: i64) -> String {
    format!(
        "<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>\
         <CreateTime>{time}</CreateTime><MsgType>event</MsgType>\
         <Event>change_external_contact</Event><ChangeType>{change}</ChangeType>\
         <UserID>{user}</UserID><ExternalUserID>{ext}</ExternalUserID></xml>"
    )
}

fn parse(xml: &str) -> WecomEvent {
    WecomEvent::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"))
}

#[test]
fn change_contact_events_carry_the_department_or_userid_and_distinct_dedupe_keys() {
    let xml = |fields: &str| {
        format!(
            "<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>\
             <CreateTime>1700000000</CreateTime><MsgType>event</MsgType>\
             <Event>change_contact</Event>{fields}</xml>"
        )
    };
    let party = parse(&xml(
        "<ChangeType>create_party</ChangeType><Id>5</Id><Name>徐汇</Name><ParentId>2</ParentId>",
    ));
    assert_eq!(
        party.kind,
        EventKind::DirectoryChange {
            change: "create_party".into(),
            id: Some("5".into())
        }
    );
    let user = parse(&xml(
        "<ChangeType>update_user</ChangeType><UserID>sh_li</UserID><Department>2,3</Department>",
    ));
    assert_eq!(
        user.kind,
        EventKind::DirectoryChange {
            change: "update_user".into(),
            id: Some("sh_li".into())
        }
    );
    assert_ne!(party.dedupe_key(), user.dedupe_key());
}

#[test]
fn add_external_contact_sample() {
    let e = parse(ADD);
    assert_eq!(e.to_user_name.as_str(), "toUser");
    assert_eq!(e.from_user_name, "sys");
    assert_eq!(e.create_time, 1_403_610_513);
    assert_eq!(e.msg_type, "event");
    assert_eq!(e.event.as_deref(), Some("change_external_contact"));
    assert_eq!(e.msg_id, None);
    assert_eq!(
        e.kind,
        EventKind::ContactChange {
            change: ContactChangeType::Add,
            user_id: WecomUserId::parse("zhangsan").unwrap(),
            external_user_id: ExternalUserId::parse("woAJ2GCAAAXtWyujaWJHDDGi0mAAAA").unwrap(),
            state: Some("teststate".into()),
            welcome_code: Some("WELCOMECODE".into()),
            source: None,
            fail_reason: None,
        }
    );
}

#[test]
fn del_and_transfer_fail_samples() {
    let EventKind::ContactChange {
        change,
        external_user_id,
        source,
        state,
        ..
    } = parse(DEL).kind
    else {
        panic!("not a contact change")
    };
    assert_eq!(change, ContactChangeType::Del);
    assert_eq!(
        external_user_id.as_str(),
        "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"
    );
    assert_eq!(source.as_deref(), Some("DELETE_BY_TRANSFER"));
    assert_eq!(state, None);

    let EventKind::ContactChange {
        change,
        fail_reason,
        user_id,
        ..
    } = parse(TRANSFER_FAIL).kind
    else {
        panic!("not a contact change")
    };
    assert_eq!(change, ContactChangeType::TransferFail);
    assert_eq!(fail_reason.as_deref(), Some("customer_refused"));
    assert_eq!(user_id.as_str(), "zhangsan");
}

#[test]
fn every_contact_change_type_maps() {
    for (wire, want) in [
        ("add_external_contact", ContactChangeType::Add),
        ("edit_external_contact", ContactChangeType::Edit),
        ("add_half_external_contact", ContactChangeType::AddHalf),
        ("del_external_contact", ContactChangeType::Del),
        ("del_follow_user", ContactChangeType::DelFollowUser),
        ("transfer_fail", ContactChangeType::TransferFail),
        (
            "brand_new_change",
            ContactChangeType::Unknown("brand_new_change".into()),
        ),
    ] {
        let EventKind::ContactChange { change, .. } = parse(&contact_xml(wire, "u", "x", 1)).kind
        else {
            panic!("{wire}")
        };
        assert_eq!(change.as_str(), wire);
        assert_eq!(change, want);
    }
}

#[test]
fn bare_and_cdata_forms_parse_the_same() {
    let bare = parse(EDIT_BARE);
    let cdata = parse(
        &EDIT_BARE
            .replace(">zhangsan<", "><![CDATA[zhangsan]]><")
            .replace(
                ">edit_external_contact<",
                "><![CDATA[edit_external_contact]]><",
            ),
    );
    assert_eq!(bare, cdata);
    assert!(matches!(
        bare.kind,
        EventKind::ContactChange {
            change: ContactChangeType::Edit,
            ..
        }
    ));
}

#[test]
fn tag_create_sample_with_bare_strategy_id() {
    assert_eq!(
        parse(TAG_CREATE).kind,
        EventKind::TagChange {
            change: TagChangeType::Create,
            id: Some("TAG_ID".into()),
            tag_type: Some(TagType::Tag),
            strategy_id: Some("1".into()),
        }
    );
    assert_eq!(parse(TAG_CREATE).to_user_name.as_str(), "CORPID");
}

#[test]
fn shuffle_sample_has_no_tag_type_and_cdata_strategy_id() {
    assert_eq!(
        parse(TAG_SHUFFLE).kind,
        EventKind::TagChange {
            change: TagChangeType::Shuffle,
            id: Some("GROUP_ID".into()),
            tag_type: None,
            strategy_id: Some("STRATEGY_ID".into()),
        }
    );
}

#[test]
fn shuffle_with_empty_id_means_group_order() {
    for empty in [
        "<Id><![CDATA[]]></Id>",
        "<Id></Id>",
        "<Id/>",
        "<Id> </Id>",
        "",
    ] {
        let xml = TAG_SHUFFLE.replace("<Id><![CDATA[GROUP_ID]]></Id>", empty);
        let EventKind::TagChange {
            change,
            id,
            strategy_id,
            ..
        } = parse(&xml).kind
        else {
            panic!("{empty}")
        };
        assert_eq!((change, id), (TagChangeType::Shuffle, None), "{empty}");
        assert_eq!(strategy_id.as_deref(), Some("STRATEGY_ID"));
    }
}

#[test]
fn tag_types_and_unknown_change_types() {
    let kind = |change, tag_type| parse(&tag_xml("ww1", change, "g1", tag_type, 1)).kind;
    assert!(matches!(
        kind("delete", "tag_group"),
        EventKind::TagChange {
            change: TagChangeType::Delete,
            tag_type: Some(TagType::TagGroup),
            ..
        }
    ));
    assert!(matches!(
        kind("update", "tag"),
        EventKind::TagChange {
            change: TagChangeType::Update,
            ..
        }
    ));
    let EventKind::TagChange {
        change,
        tag_type,
        strategy_id,
        ..
    } = kind("merge", "label")
    else {
        panic!()
    };
    assert_eq!(change, TagChangeType::Unknown("merge".into()));
    assert_eq!(tag_type, Some(TagType::Unknown("label".into())));
    assert_eq!(strategy_id, None);
}

#[test]
fn unknown_events_and_messages_are_other() {
    let chat = TAG_CREATE.replace("change_external_tag", "change_external_chat");
    assert_eq!(
        parse(&chat).kind,
        EventKind::Other {
            event: "change_external_chat".into()
        }
    );
    // A user message (the Set A plaintext): no Event, has MsgId.
    let text = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>";
    let e = parse(text);
    assert_eq!(
        e.kind,
        EventKind::Other {
            event: "text".into()
        }
    );
    assert_eq!(e.msg_id.as_deref(), Some("4561255354251345929"));
    assert_eq!(e.event, None);
    // Other events need no ChangeType or ids.
    let minimal = "<xml><ToUserName>ww1</ToUserName><CreateTime>5</CreateTime>\
                   <MsgType>event</MsgType><Event>subscribe</Event></xml>";
    assert_eq!(
        parse(minimal).kind,
        EventKind::Other {
            event: "subscribe".into()
        }
    );
    assert_eq!(parse(minimal).from_user_name, "");
}

#[test]
fn missing_or_bad_fields_are_named() {
    let err = |xml: &str| WecomEvent::parse(xml).unwrap_err();
    assert_eq!(
        err(&ADD.replace("<UserID><![CDATA[zhangsan]]></UserID>", "")),
        XmlError::MissingField("UserID")
    );
    assert_eq!(
        err(&ADD.replace("[zhangsan]", "[]")),
        XmlError::MissingField("UserID")
    );
    assert_eq!(
        err(&ADD
            .replace("<ExternalUserID>", "<X>")
            .replace("</ExternalUserID>", "</X>")),
        XmlError::MissingField("ExternalUserID")
    );
    assert_eq!(
        err(&ADD.replace("<ToUserName><![CDATA[toUser]]></ToUserName>", "")),
        XmlError::MissingField("ToUserName")
    );
    assert_eq!(
        err(&TAG_CREATE.replace("<ChangeType><![CDATA[create]]></ChangeType>", "")),
        XmlError::MissingField("ChangeType")
    );
    assert_eq!(
        err(&ADD.replace("<Event><![CDATA[change_external_contact]]></Event>", "")),
        XmlError::MissingField("Event")
    );
    assert_eq!(
        err(&ADD.replace("<MsgType><![CDATA[event]]></MsgType>", "")),
        XmlError::MissingField("MsgType")
    );
    for bad_time in ["soon", "1.5", "", "99999999999999999999"] {
        let e = err(&ADD.replace("1403610513", bad_time));
        if bad_time.is_empty() {
            assert_eq!(e, XmlError::MissingField("CreateTime"));
        } else {
            assert!(
                matches!(
                    e,
                    XmlError::InvalidField {
                        field: "CreateTime",
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains("CreateTime"), "{e}");
        }
    }
    let e = err(&ADD.replace("[zhangsan]", "[zhang\u{7}san]"));
    assert!(
        matches!(
            e,
            XmlError::InvalidField {
                field: "UserID",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        XmlError::MissingField("UserID").to_string(),
        "missing required field <UserID>"
    );
}

#[test]
fn every_truncation_is_malformed() {
    for xml in [ADD, TAG_CREATE, EDIT_BARE] {
        for cut in 0..xml.len() {
            let e = WecomEvent::parse(&xml[..cut]).unwrap_err();
            assert!(matches!(e, XmlError::Malformed(_)), "cut {cut}: {e}");
        }
    }
}

#[test]
fn malformed_xml_is_rejected() {
    for xml in [
        "",
        "   ",
        "not xml",
        "<xml><ToUserName>a</FromUserName></xml>",
        "<xml></xml><xml></xml>",
        "<xml/>trailing",
        "<xml><Id>&bogus;</Id></xml>",
        "<xml><Id>a & b</Id></xml>",
        "<xml><Id><![CDATA[x</Id></xml>",
    ] {
        assert!(
            matches!(WecomEvent::parse(xml), Err(XmlError::Malformed(_))),
            "{xml:?}"
        );
    }
}

#[test]
fn entities_resolve_but_dtd_entities_do_not_expand() {
    let xml = contact_xml("edit_external_contact", "a&amp;b&#x4e2d;&#49;", "x&lt;y", 1);
    let EventKind::ContactChange {
        user_id,
        external_user_id,
        ..
    } = parse(&xml).kind
    else {
        panic!()
    };
    assert_eq!(user_id.as_str(), "a&b中1");
    assert_eq!(external_user_id.as_str(), "x<y");
    let dtd = format!(
        "<!DOCTYPE xml [<!ENTITY boom \"lol\">]>{}",
        contact_xml("edit_external_contact", "&boom;", "x", 1)
    );
    assert!(matches!(
        WecomEvent::parse(&dtd),
        Err(XmlError::Malformed(_))
    ));
}

#[test]
fn nested_elements_and_declarations_are_skipped() {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!-- c -->{}",
        TAG_CREATE.replace(
            "<Id>",
            "<Extra><Id>nested</Id><Deep><UserID>q</UserID></Deep></Extra><Id>"
        )
    );
    let EventKind::TagChange { id, .. } = parse(&xml).kind else {
        panic!()
    };
    assert_eq!(id.as_deref(), Some("TAG_ID"));
}

#[test]
fn dedupe_key_is_stable_across_resends_and_forms() {
    let a = parse(EDIT_BARE).dedupe_key();
    assert_eq!(a, parse(EDIT_BARE).dedupe_key());
    let cdata = EDIT_BARE.replace(">zhangsan<", "><![CDATA[zhangsan]]><");
    assert_eq!(a, parse(&cdata).dedupe_key());
    // Optional extras (State, WelcomeCode) don't identify the event.
    assert_eq!(
        parse(ADD).dedupe_key(),
        parse(&ADD.replace("<State><![CDATA[teststate]]></State>", "")).dedupe_key()
    );
    assert_eq!(
        a,
        "ww1|change_external_contact|edit_external_contact|zhangsan|woAJ2GCAAAXtWyujaWJHDDGi0mAAAA|1403610513"
    );
}

#[test]
fn dedupe_key_separates_events_in_the_same_second() {
    // §9 P1: FromUserName is always `sys` and there is no MsgId.
    let keys = [
        tag_xml("ww1", "create", "t1", "tag", 100),
        tag_xml("ww1", "create", "t2", "tag", 100),
        tag_xml("ww1", "delete", "t1", "tag", 100),
        tag_xml("ww1", "create", "t1", "tag_group", 100),
        tag_xml("ww1", "create", "t1", "tag", 101),
        tag_xml("ww2", "create", "t1", "tag", 100),
        tag_xml("ww1", "shuffle", "", "", 100),
        tag_xml("ww1", "shuffle", "g1", "", 100),
        TAG_CREATE.to_owned(),
        TAG_CREATE.replace("<StrategyId>1</StrategyId>", "<StrategyId>2</StrategyId>"),
        TAG_CREATE.replace("<StrategyId>1</StrategyId>", ""),
        contact_xml("edit_external_contact", "u1", "x1", 100),
        contact_xml("edit_external_contact", "u1", "x2", 100),
        contact_xml("edit_external_contact", "u2", "x1", 100),
        contact_xml("del_follow_user", "u1", "x1", 100),
        contact_xml("edit_external_contact", "u1", "x1", 101),
        // Separator injection: `a|b` as one id vs `a` then `b`.
        tag_xml("ww1", "create", "a|b", "", 100),
        tag_xml("ww1", "create", "a", "b", 100),
        tag_xml("ww1", "create", "a%7Cb", "", 100),
        // Other events: by Event, FromUserName and MsgId.
        tag_xml("ww1", "create", "t1", "tag", 100).replace(TAG_EVENT, "change_external_chat"),
        tag_xml("ww1", "create", "t1", "tag", 100).replace(TAG_EVENT, "subscribe"),
        tag_xml("ww1", "create", "t1", "tag", 100).replace("<MsgType>event", "<MsgType>text"),
        tag_xml("ww1", "create", "t1", "tag", 100)
            .replace("<MsgType>event", "<MsgType>text")
            .replace("</xml>", "<MsgId>42</MsgId></xml>"),
    ]
    .map(|x| parse(&x).dedupe_key());
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:#?}");
}
