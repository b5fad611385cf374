//! The decrypted callback XML (wecom-api.md §5) as a typed [`WecomEvent`].
//!
//! Customer-contact payloads are thin signals (ids only); handlers re-read the APIs. Unknown
//! events and change types are tolerated, never errors (§9 P8).

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use crate::domain::ids::{CorpId, ExternalUserId, IdError, WecomUserId};

/// Why callback XML (the outer envelope or the decrypted event) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("missing required field <{0}>")]
    MissingField(&'static str),
    #[error("invalid <{field}>: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// A decrypted callback: the common envelope plus what the event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WecomEvent {
    /// The corp the event is about (`ToUserName`).
    pub to_user_name: CorpId,
    /// Always `sys` for customer events; empty if absent.
    pub from_user_name: String,
    /// Unix seconds.
    pub create_time: i64,
    pub msg_type: String,
    /// `Event`, present when `msg_type` is `event`.
    pub event: Option<String>,
    /// Only user messages carry one; events do not (§4.3).
    pub msg_id: Option<String>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `change_external_tag` (§5.2).
    TagChange {
        change: TagChangeType,
        /// Tag or group id; `None` when empty. For `shuffle`, `None` means the group order
        /// changed, otherwise it is the group whose tags were reordered (§8).
        id: Option<String>,
        /// Absent on `shuffle`.
        tag_type: Option<TagType>,
        /// Only for rule-group (strategy) tags.
        strategy_id: Option<String>,
    },
    /// `change_external_contact` (§5.1).
    ContactChange {
        change: ContactChangeType,
        user_id: WecomUserId,
        external_user_id: ExternalUserId,
        state: Option<String>,
        welcome_code: Option<String>,
        source: Option<String>,
        fail_reason: Option<String>,
    },
    /// `change_contact` (§13): a department (`create_party`, `update_party`, `delete_party`)
    /// or a staff member (`create_user`, `update_user`, `delete_user`) changed; `id` is the
    /// department's `Id` or the member's `UserID`. Other change types (tags of the address
    /// book, …) are kept too: tagsync re-reads the directory for any of them.
    DirectoryChange { change: String, id: Option<String> },
    /// Anything else: `event` is the `Event`, or the `MsgType` for plain messages.
    Other { event: String },
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            /// A value this version does not know; kept verbatim (§9 P8).
            Unknown(String),
        }

        impl $name {
            pub fn parse(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)*
                    other => Self::Unknown(other.to_owned()),
                }
            }

            /// The value as WeCom sends it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unknown(s) => s,
                }
            }
        }
    };
}

wire_enum!(
    /// `ChangeType` of `change_external_tag`.
    TagChangeType { Create = "create", Update = "update", Delete = "delete", Shuffle = "shuffle" }
);
wire_enum!(
    /// `TagType` of `change_external_tag`.
    TagType { Tag = "tag", TagGroup = "tag_group" }
);
wire_enum!(
    /// `ChangeType` of `change_external_contact`.
    ContactChangeType {
        Add = "add_external_contact",
        Edit = "edit_external_contact",
        AddHalf = "add_half_external_contact",
        Del = "del_external_contact",
        DelFollowUser = "del_follow_user",
        TransferFail = "transfer_fail",
    }
);

const TAG_EVENT: &str = "change_external_tag";
const CONTACT_EVENT: &str = "change_external_contact";
const DIRECTORY_EVENT: &str = "change_contact";

impl WecomEvent {
    /// Parses decrypted callback XML (CDATA or bare values).
    pub fn parse(xml: &str) -> Result<Self, XmlError> {
        let f = read_flat_xml(xml)?;
        let to_user_name =
            CorpId::parse(f.required("ToUserName")?).map_err(|e| invalid("ToUserName", &e))?;
        let create_time = f.required("CreateTime")?;
        let create_time = create_time
            .parse::<i64>()
            .map_err(|_| XmlError::InvalidField {
                field: "CreateTime",
                reason: format!("not an integer: {:?}", truncated(create_time)),
            })?;
        let msg_type = f.required("MsgType")?.to_owned();
        let event = f.optional("Event");
        let kind = match (msg_type.as_str(), event.as_deref()) {
            ("event", None) => return Err(XmlError::MissingField("Event")),
            ("event", Some(TAG_EVENT)) => EventKind::TagChange {
                change: TagChangeType::parse(f.required("ChangeType")?),
                id: f.optional("Id"),
                tag_type: f.optional("TagType").map(|t| TagType::parse(&t)),
                strategy_id: f.optional("StrategyId"),
            },
            ("event", Some(CONTACT_EVENT)) => EventKind::ContactChange {
                change: ContactChangeType::parse(f.required("ChangeType")?),
                user_id: WecomUserId::parse(f.required("UserID")?)
                    .map_err(|e| invalid("UserID", &e))?,
                external_user_id: ExternalUserId::parse(f.required("ExternalUserID")?)
                    .map_err(|e| invalid("ExternalUserID", &e))?,
                state: f.optional("State"),
                welcome_code: f.optional("WelcomeCode"),
                source: f.optional("Source"),
                fail_reason: f.optional("FailReason"),
            },
            ("event", Some(DIRECTORY_EVENT)) => EventKind::DirectoryChange {
                change: f.required("ChangeType")?.to_owned(),
                id: f.optional("Id").or_else(|| f.optional("UserID")),
            },
            (_, Some(e)) => EventKind::Other {
                event: e.to_owned(),
            },
            (m, None) => EventKind::Other {
                event: m.to_owned(),
            },
        };
        Ok(Self {
            to_user_name,
            from_user_name: f.optional("FromUserName").unwrap_or_default(),
            create_time,
            msg_type,
            event,
            msg_id: f.optional("MsgId"),
            kind,
        })
    }

    /// Idempotency key for WeCom's re-sends (§4.3). Customer events have no MsgId and
    /// FromUserName is always `sys`, so the key carries the event's ids too (§9 P1): a re-send
    /// gets the same key, two different events in the same second get different keys.
    /// Layout: `ToUserName|Event|ChangeType|ids…|CreateTime`, with `|` and `%` percent-escaped.
    pub fn dedupe_key(&self) -> String {
        let to = self.to_user_name.as_str();
        let parts: Vec<&str> = match &self.kind {
            EventKind::TagChange {
                change,
                id,
                tag_type,
                strategy_id,
            } => vec![
                to,
                TAG_EVENT,
                change.as_str(),
                id.as_deref().unwrap_or(""),
                tag_type.as_ref().map_or("", TagType::as_str),
                strategy_id.as_deref().unwrap_or(""),
            ],
            EventKind::ContactChange {
                change,
                user_id,
                external_user_id,
                ..
            } => vec![
                to,
                CONTACT_EVENT,
                change.as_str(),
                user_id.as_str(),
                external_user_id.as_str(),
            ],
            EventKind::DirectoryChange { change, id } => {
                vec![to, DIRECTORY_EVENT, change, id.as_deref().unwrap_or("")]
            }
            // Position 1 is never "other" for the kinds above, so keys cannot collide.
            EventKind::Other { event } => vec![
                to,
                "other",
                &self.msg_type,
                event,
                &self.from_user_name,
                self.msg_id.as_deref().unwrap_or(""),
            ],
        };
        let mut key = String::with_capacity(96);
        for p in parts {
            escape_into(&mut key, p);
            key.push('|');
        }
        key.push_str(&self.create_time.to_string());
        key
    }
}

/// `|` separates parts, so escape it (and `%`) to keep keys unambiguous.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

fn invalid(field: &'static str, e: &IdError) -> XmlError {
    XmlError::InvalidField {
        field,
        reason: e.to_string(),
    }
}

fn truncated(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

/// Every element name the envelope and event parsers read; others are skipped without
/// allocating (keeps a callback well under its CPU budget).
const KNOWN_FIELDS: [&str; 18] = [
    "ToUserName",
    "FromUserName",
    "CreateTime",
    "MsgType",
    "Event",
    "ChangeType",
    "Id",
    "TagType",
    "StrategyId",
    "UserID",
    "ExternalUserID",
    "State",
    "WelcomeCode",
    "Source",
    "FailReason",
    "MsgId",
    "AgentID",
    "Encrypt",
];

fn known_field(raw: &[u8]) -> Option<&'static str> {
    KNOWN_FIELDS.into_iter().find(|k| k.as_bytes() == raw)
}

/// The known direct children of the root element as (name, text) pairs, in document order.
/// WeCom's callback XML is flat; deeper elements are skipped.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a>(Vec<(&'static str, Cow<'a, str>)>);

impl Fields<'_> {
    /// First occurrence of `name`, trimmed.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim())
    }

    /// Present and non-empty.
    fn required(&self, name: &'static str) -> Result<&str, XmlError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or(XmlError::MissingField(name))
    }

    /// Empty counts as absent (e.g. `<Id><![CDATA[]]></Id>` on a group-order shuffle).
    fn optional(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }
}

pub(crate) fn read_flat_xml(xml: &str) -> Result<Fields<'_>, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut fields = Fields(Vec::with_capacity(KNOWN_FIELDS.len()));
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<(&'static str, Cow<'_, str>)> = None;
    let malformed = |reader: &Reader<&[u8]>, e: &dyn std::fmt::Display| {
        XmlError::Malformed(format!("{e} (at byte {})", reader.error_position()))
    };
    loop {
        let ev = reader.read_event().map_err(|e| malformed(&reader, &e))?;
        match ev {
            Event::Start(_) if depth == 0 => {
                enter_root(&mut seen_root)?;
                depth = 1;
            }
            Event::Empty(_) if depth == 0 => enter_root(&mut seen_root)?,
            Event::Start(e) => {
                if depth == 1 {
                    current = known_field(e.name().as_ref()).map(|n| (n, Cow::Borrowed("")));
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if depth == 1
                    && let Some(n) = known_field(e.name().as_ref())
                {
                    fields.0.push((n, Cow::Borrowed("")));
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1
                    && let Some(field) = current.take()
                {
                    fields.0.push(field);
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(|e| malformed(&reader, &e))?;
                if depth == 0 && !text.trim().is_empty() {
                    return Err(XmlError::Malformed("text outside the root element".into()));
                }
                if depth == 2 {
                    append(&mut current, text);
                }
            }
            Event::CData(c) => {
                if depth == 0 {
                    return Err(XmlError::Malformed("CDATA outside the root element".into()));
                }
                if depth == 2 {
                    let text = c.decode().map_err(|e| malformed(&reader, &e))?;
                    append(&mut current, text);
                }
            }
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err(XmlError::Malformed(
                        "entity outside the root element".into(),
                    ));
                }
                let resolved: Cow<'_, str> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| malformed(&reader, &e))?;
                        // Only XML's five entities; no DTD-defined ones (no entity expansion).
                        let value = resolve_predefined_entity(&name).ok_or_else(|| {
                            XmlError::Malformed(format!("unknown entity &{};", truncated(&name)))
                        })?;
                        Cow::Borrowed(value)
                    }
                    Err(e) => return Err(malformed(&reader, &e)),
                };
                if depth == 2 {
                    append(&mut current, resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        return Err(XmlError::Malformed("no root element".into()));
    }
    if depth != 0 {
        return Err(XmlError::Malformed("truncated: unclosed element".into()));
    }
    Ok(fields)
}

fn enter_root(seen_root: &mut bool) -> Result<(), XmlError> {
    if std::mem::replace(seen_root, true) {
        return Err(XmlError::Malformed("more than one root element".into()));
    }
    Ok(())
}

/// Text, CDATA and entity pieces of one element concatenate; borrow when there is one piece.
fn append<'a>(current: &mut Option<(&'static str, Cow<'a, str>)>, text: Cow<'a, str>) {
    if let Some((_, value)) = current {
        if value.is_empty() {
            *value = text;
        } else {
            value.to_mut().push_str(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §5.1 samples, verbatim apart from the ChangeType where noted.
    const ADD: &str = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1403610513</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_contact]]></Event>
  <ChangeType><![CDATA[add_external_contact]]></ChangeType>
  <UserID><![CDATA[zhangsan]]></UserID>
  <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID>
  <State><![CDATA[teststate]]></State>
  <WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>
</xml>"#;

    const DEL: &str = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1403610513</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_contact]]></Event>
  <ChangeType><![CDATA[del_external_contact]]></ChangeType>
  <UserID><![CDATA[zhangsan]]></UserID>
  <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA]]></ExternalUserID>
  <Source><![CDATA[DELETE_BY_TRANSFER]]></Source>
</xml>"#;

    const TRANSFER_FAIL: &str = r#"<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1403610513</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_contact]]></Event>
  <ChangeType><![CDATA[transfer_fail]]></ChangeType>
  <FailReason><![CDATA[customer_refused]]></FailReason>
  <UserID><![CDATA[zhangsan]]></UserID>
  <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID>
</xml>"#;

    /// The same envelope without CDATA, as some senders (and the simulator) write it.
    const EDIT_BARE: &str = "<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>\
        <CreateTime>1403610513</CreateTime><MsgType>event</MsgType>\
        <Event>change_external_contact</Event><ChangeType>edit_external_contact</ChangeType>\
        <UserID>zhangsan</UserID><ExternalUserID>woAJ2GCAAAXtWyujaWJHDDGi0mAAAA</ExternalUserID></xml>";

    /// §5.2 samples: StrategyId bare in one, CDATA in the other.
    const TAG_CREATE: &str = r#"<xml>
  <ToUserName><![CDATA[CORPID]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1403610513</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_tag]]></Event>
  <Id><![CDATA[TAG_ID]]></Id>
  <TagType><![CDATA[tag]]></TagType>
  <ChangeType><![CDATA[create]]></ChangeType>
  <StrategyId>1</StrategyId>
</xml>"#;

    const TAG_SHUFFLE: &str = r#"<xml>
  <ToUserName><![CDATA[CORPID]]></ToUserName>
  <FromUserName><![CDATA[sys]]></FromUserName>
  <CreateTime>1403610513</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[change_external_tag]]></Event>
  <Id><![CDATA[GROUP_ID]]></Id>
  <ChangeType><![CDATA[shuffle]]></ChangeType>
  <StrategyId><![CDATA[STRATEGY_ID]]></StrategyId>
</xml>"#;

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
            let EventKind::ContactChange { change, .. } =
                parse(&contact_xml(wire, "u", "x", 1)).kind
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
}
