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
mod tests;
