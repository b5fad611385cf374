//! Mall webhooks (`mall-connector.md` §2): signature and replay-window checks, and a strict
//! parser of the event body into typed events. Pure: the caller supplies the clock reading
//! and the tenant's secret, and maps [`WebhookError::status`] onto its answer.
//!
//! The order a handler should follow: refuse a body over [`MAX_BODY_BYTES`] (413) before
//! reading it all, [`verify`] the headers over the raw bytes (401), then [`parse_event`]
//! (400; an unknown `type` parses to [`MallEvent::Unknown`] and is acknowledged).

use crate::domain::{ExternalUserId, IdError, MallGroupId, MallTagId, MemberId, Timestamp};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The only signature scheme of contract version 1.
pub const SIGNATURE_SCHEME: &str = "v1=";
/// How far `X-Mall-Timestamp` may be from tagsync's clock, either way, in seconds.
pub const REPLAY_WINDOW_SECS: u64 = 300;
/// The largest body the contract allows (256 KiB); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest `event_id` accepted, in characters. Event ids become dedupe keys in the
/// store, so they are bounded well below the store's key limits.
pub const MAX_EVENT_ID_CHARS: usize = 200;
/// The contract's limit on group and tag names, in characters.
pub const MAX_NAME_CHARS: usize = 30;

/// Why a webhook was refused. [`WebhookError::status`] is the one mapping to HTTP.
///
/// Messages name the header or field at fault but never echo secrets or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing X-Mall-Timestamp header")]
    MissingTimestamp,
    #[error("X-Mall-Timestamp must be unix seconds")]
    BadTimestamp,
    #[error("missing X-Mall-Signature header")]
    MissingSignature,
    #[error("X-Mall-Signature does not match the body")]
    BadSignature,
    /// Correctly signed, but signed too long ago (a replay) or by a clock too far ahead.
    #[error("X-Mall-Timestamp is {skew_secs} s away from tagsync's clock (allowed: 300 s)")]
    Stale { skew_secs: u64 },
    #[error("body of {size} bytes is over the 262144-byte limit")]
    TooLarge { size: usize },
    #[error("body is not valid JSON: {message}")]
    InvalidJson { message: String },
    /// The body is JSON but not of the contract's schema; `field` is the path of the
    /// offending field, e.g. `data.tag.name` or `data.added[2]`.
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
}

impl WebhookError {
    /// The HTTP status to answer with: 401 for anything about authenticity (the mall will
    /// retry, which is right if the secret was being rotated), 413 for an oversized body,
    /// 400 for a body that does not follow the schema.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingTimestamp
            | Self::BadTimestamp
            | Self::MissingSignature
            | Self::BadSignature
            | Self::Stale { .. } => 401,
            Self::TooLarge { .. } => 413,
            Self::InvalidJson { .. } | Self::Invalid { .. } => 400,
        }
    }
}

/// The `X-Mall-Signature` value for a body: `v1=` + lowercase hex of
/// HMAC-SHA256(secret, "{timestamp}.{body}"). The mall simulator and tests sign with this.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = keyed_mac(secret, timestamp.to_string().as_bytes(), body)
        .finalize()
        .into_bytes();
    format!("{SIGNATURE_SCHEME}{}", hex::encode(tag))
}

/// Checks a webhook's `X-Mall-Timestamp` and `X-Mall-Signature` headers against the raw body
/// and returns the signed timestamp (unix seconds).
///
/// The signature header may list several comma-separated values (a mall that is rotating
/// its secret signs with both); the request is authentic if any `v1=` value matches. Values
/// of other schemes are ignored. The signature is checked before the replay window, so a
/// [`WebhookError::Stale`] answer is only ever given to a correctly signed request.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<i64, WebhookError> {
    let raw_ts = timestamp
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(WebhookError::MissingTimestamp)?;
    let ts = parse_unix_secs(raw_ts).ok_or(WebhookError::BadTimestamp)?;
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(WebhookError::MissingSignature)?;

    // The MAC covers the header's digits exactly as sent, not a re-formatting of them.
    let mac = keyed_mac(secret, raw_ts.as_bytes(), body);
    let matched = signature
        .split(',')
        .filter_map(|part| part.trim().strip_prefix(SIGNATURE_SCHEME))
        .filter_map(|hex_tag| hex::decode(hex_tag).ok())
        // `verify_slice` compares in constant time; every candidate is tried, so timing
        // does not reveal which one matched.
        .fold(false, |found, tag| {
            mac.clone().verify_slice(&tag).is_ok() | found
        });
    if !matched {
        return Err(WebhookError::BadSignature);
    }

    let skew_secs = now_secs.abs_diff(ts);
    if skew_secs > REPLAY_WINDOW_SECS {
        return Err(WebhookError::Stale { skew_secs });
    }
    Ok(ts)
}

fn keyed_mac(secret: &[u8], timestamp: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac
}

/// Unix seconds as the mall sends them: ASCII digits only (no sign, no fraction).
fn parse_unix_secs(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A tag group as the mall reports it (contract §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallTagGroup {
    pub id: MallGroupId,
    /// 1..=30 characters, compared exactly (no trimming or case folding).
    pub name: String,
    /// Larger shows first.
    pub order: u32,
}

/// A tag as the mall reports it (contract §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallTag {
    pub id: MallTagId,
    pub group_id: MallGroupId,
    /// 1..=30 characters, unique within its group, compared exactly.
    pub name: String,
    pub order: u32,
}

/// One webhook delivery: the envelope and its typed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MallWebhook {
    /// Unique per event; the dedupe key of deliveries (the mall retries and may repeat).
    pub event_id: String,
    /// When the change happened in the mall; breaks ties between concurrent edits.
    pub occurred_at: Timestamp,
    /// The `Idempotency-Key` of the tagsync request that caused this change, if any: marks
    /// the echo of tagsync's own write.
    pub origin_request_id: Option<String>,
    pub event: MallEvent,
}

/// What changed in the mall, one variant per `type` of the contract's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MallEvent {
    TagGroupCreated {
        group: MallTagGroup,
    },
    TagGroupUpdated {
        group: MallTagGroup,
    },
    /// Its tags are deleted with it, without separate events.
    TagGroupDeleted {
        group_id: MallGroupId,
    },
    TagCreated {
        tag: MallTag,
    },
    /// May change `group_id`: a move.
    TagUpdated {
        tag: MallTag,
    },
    /// Members lose the tag without separate `member.tags_changed` events.
    TagDeleted {
        tag_id: MallTagId,
        group_id: MallGroupId,
    },
    MemberTagsChanged {
        member_id: MemberId,
        added: Vec<MallTagId>,
        removed: Vec<MallTagId>,
    },
    MemberBound {
        member_id: MemberId,
        unionid: Option<String>,
        external_userid: Option<ExternalUserId>,
        mobile: Option<String>,
    },
    /// A `type` this version does not know: acknowledged and ignored (logged by the caller).
    Unknown {
        type_name: String,
    },
}

impl MallEvent {
    /// The wire name of the event's `type`, for logs and audit entries.
    pub fn type_name(&self) -> &str {
        match self {
            Self::TagGroupCreated { .. } => "tag_group.created",
            Self::TagGroupUpdated { .. } => "tag_group.updated",
            Self::TagGroupDeleted { .. } => "tag_group.deleted",
            Self::TagCreated { .. } => "tag.created",
            Self::TagUpdated { .. } => "tag.updated",
            Self::TagDeleted { .. } => "tag.deleted",
            Self::MemberTagsChanged { .. } => "member.tags_changed",
            Self::MemberBound { .. } => "member.bound",
            Self::Unknown { type_name } => type_name,
        }
    }
}

/// Parses a webhook body strictly against the contract's schema. Unknown extra fields are
/// tolerated (the mall may add some); a missing or mistyped field of a known event type is
/// an [`WebhookError::Invalid`] naming the field's path. The `data` of an unknown `type` is
/// not looked at.
pub fn parse_event(body: &[u8]) -> Result<MallWebhook, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge { size: body.len() });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson {
        message: e.to_string(),
    })?;
    let root = Obj::root(&value)?;

    let event_id = root.string("event_id")?;
    let event_id_chars = event_id.chars().count();
    if event_id_chars == 0 || event_id_chars > MAX_EVENT_ID_CHARS {
        return Err(root.invalid("event_id", "must be 1 to 200 characters"));
    }
    if event_id.chars().any(char::is_control) {
        return Err(root.invalid("event_id", "must not contain control characters"));
    }
    let type_name = root.string("type")?;
    let occurred_at = Timestamp::parse_rfc3339(root.string("occurred_at")?).ok_or_else(|| {
        root.invalid(
            "occurred_at",
            "must be an RFC 3339 timestamp such as 2026-11-21T08:15:30.123Z",
        )
    })?;
    let origin_request_id = root.opt_string("origin_request_id")?.map(str::to_owned);

    let event = match type_name {
        "tag_group.created" => MallEvent::TagGroupCreated {
            group: root.obj("data")?.obj("group")?.tag_group()?,
        },
        "tag_group.updated" => MallEvent::TagGroupUpdated {
            group: root.obj("data")?.obj("group")?.tag_group()?,
        },
        "tag_group.deleted" => MallEvent::TagGroupDeleted {
            group_id: root.obj("data")?.id("group_id", MallGroupId::parse)?,
        },
        "tag.created" => MallEvent::TagCreated {
            tag: root.obj("data")?.obj("tag")?.tag()?,
        },
        "tag.updated" => MallEvent::TagUpdated {
            tag: root.obj("data")?.obj("tag")?.tag()?,
        },
        "tag.deleted" => {
            let data = root.obj("data")?;
            MallEvent::TagDeleted {
                tag_id: data.id("tag_id", MallTagId::parse)?,
                group_id: data.id("group_id", MallGroupId::parse)?,
            }
        }
        "member.tags_changed" => {
            let data = root.obj("data")?;
            MallEvent::MemberTagsChanged {
                member_id: data.id("member_id", MemberId::parse)?,
                added: data.id_list("added", MallTagId::parse)?,
                removed: data.id_list("removed", MallTagId::parse)?,
            }
        }
        "member.bound" => {
            let data = root.obj("data")?;
            MallEvent::MemberBound {
                member_id: data.id("member_id", MemberId::parse)?,
                unionid: data.opt_string("unionid")?.map(str::to_owned),
                external_userid: data.opt_id("external_userid", ExternalUserId::parse)?,
                mobile: data.opt_string("mobile")?.map(str::to_owned),
            }
        }
        other => MallEvent::Unknown {
            type_name: other.to_owned(),
        },
    };

    Ok(MallWebhook {
        event_id: event_id.to_owned(),
        occurred_at,
        origin_request_id,
        event,
    })
}

/// A JSON object together with its path from the body's root, so that every error can name
/// the field it is about.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn root(value: &'a Value) -> Result<Self, WebhookError> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: String::new(),
            }),
            _ => Err(WebhookError::Invalid {
                field: "body".to_owned(),
                message: "must be a JSON object".to_owned(),
            }),
        }
    }

    fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn invalid(&self, key: &str, message: &str) -> WebhookError {
        WebhookError::Invalid {
            field: self.field_path(key),
            message: message.to_owned(),
        }
    }

    /// A required field; `null` counts as present (and then fails its type check).
    fn required(&self, key: &str) -> Result<&'a Value, WebhookError> {
        self.map
            .get(key)
            .ok_or_else(|| self.invalid(key, "is required"))
    }

    fn obj(&self, key: &str) -> Result<Obj<'a>, WebhookError> {
        match self.required(key)? {
            Value::Object(map) => Ok(Obj {
                map,
                path: self.field_path(key),
            }),
            _ => Err(self.invalid(key, "must be an object")),
        }
    }

    fn string(&self, key: &str) -> Result<&'a str, WebhookError> {
        self.required(key)?
            .as_str()
            .ok_or_else(|| self.invalid(key, "must be a string"))
    }

    /// A "string or null" field; absent is taken as null.
    fn opt_string(&self, key: &str) -> Result<Option<&'a str>, WebhookError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(key, "must be a string or null")),
        }
    }

    fn id<T>(&self, key: &str, parse: fn(String) -> Result<T, IdError>) -> Result<T, WebhookError> {
        let s = self.string(key)?;
        parse(s.to_owned()).map_err(|e| self.invalid(key, e.reason))
    }

    fn opt_id<T>(
        &self,
        key: &str,
        parse: fn(String) -> Result<T, IdError>,
    ) -> Result<Option<T>, WebhookError> {
        self.opt_string(key)?
            .map(|s| parse(s.to_owned()).map_err(|e| self.invalid(key, e.reason)))
            .transpose()
    }

    fn id_list<T>(
        &self,
        key: &str,
        parse: fn(String) -> Result<T, IdError>,
    ) -> Result<Vec<T>, WebhookError> {
        let Value::Array(items) = self.required(key)? else {
            return Err(self.invalid(key, "must be an array of strings"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_key = format!("{key}[{i}]");
                let s = item
                    .as_str()
                    .ok_or_else(|| self.invalid(&item_key, "must be a string"))?;
                parse(s.to_owned()).map_err(|e| self.invalid(&item_key, e.reason))
            })
            .collect()
    }

    fn name(&self, key: &str) -> Result<String, WebhookError> {
        let s = self.string(key)?;
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(self.invalid(key, "must be 1 to 30 characters"));
        }
        Ok(s.to_owned())
    }

    fn order(&self, key: &str) -> Result<u32, WebhookError> {
        self.required(key)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.invalid(key, "must be an integer from 0 to 4294967295"))
    }

    fn tag_group(&self) -> Result<MallTagGroup, WebhookError> {
        Ok(MallTagGroup {
            id: self.id("id", MallGroupId::parse)?,
            name: self.name("name")?,
            order: self.order("order")?,
        })
    }

    fn tag(&self) -> Result<MallTag, WebhookError> {
        Ok(MallTag {
            id: self.id("id", MallTagId::parse)?,
            group_id: self.id("group_id", MallGroupId::parse)?,
            name: self.name("name")?,
            order: self.order("order")?,
        })
    }
}

#[cfg(test)]
mod tests;
