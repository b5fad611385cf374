//! Identifier newtypes. Every id that crosses a boundary has its own type, so a WeCom tag id
//! can never be passed where a mall tag id or a hub tag id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an id from outside was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub reason: &'static str,
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $label:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an id received from outside: non-empty, at most 256 bytes, no control
            /// characters (ids end up in store keys and log lines).
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if s.is_empty() {
                    return Err(IdError { kind: $label, reason: "must not be empty" });
                }
                if s.len() > 256 {
                    return Err(IdError { kind: $label, reason: "must be at most 256 bytes" });
                }
                if s.chars().any(char::is_control) {
                    return Err(IdError { kind: $label, reason: "must not contain control characters" });
                }
                Ok(Self(s))
            }

            /// Wraps an id that tagsync itself produced or already validated.
            pub fn new_unchecked(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A WeCom corp id (`ww…`), the receive id of callbacks.
    CorpId, "corp id");
string_id!(
    /// The hub's id of a tag group (tagsync-assigned, time-ordered).
    HubGroupId, "hub group id");
string_id!(
    /// The hub's id of a tag (tagsync-assigned, time-ordered).
    HubTagId, "hub tag id");
string_id!(
    /// WeCom's `group_id` of a corp tag group.
    WecomGroupId, "wecom group id");
string_id!(
    /// WeCom's `id` of a corp tag.
    WecomTagId, "wecom tag id");
string_id!(
    /// The mall's id of a tag group.
    MallGroupId, "mall group id");
string_id!(
    /// The mall's id of a tag.
    MallTagId, "mall tag id");
string_id!(
    /// The mall's id of a member.
    MemberId, "member id");
string_id!(
    /// WeCom's `external_userid` of a customer.
    ExternalUserId, "external userid");
string_id!(
    /// WeCom's `userid` of a member (the sales staff who follows customers).
    WecomUserId, "wecom userid");
string_id!(
    /// A queued job's id; also the base of the idempotency keys of the writes it makes.
    JobId, "job id");
string_id!(
    /// A reconciliation run's id.
    RunId, "run id");
string_id!(
    /// An automatic-tagging rule's id (tagsync-assigned, time-ordered).
    RuleId, "rule id");
string_id!(
    /// A rule firing's id (time-ordered: firings page newest first by it).
    FiringId, "firing id");
string_id!(
    /// A channel code's id in the hub (tagsync-assigned).
    ChannelId, "channel id");

/// A tenant: one WeCom corp bound to one mall. Tenant ids appear in URLs and store keys, so
/// they are restricted to `[A-Za-z0-9_-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok_len = !s.is_empty() && s.len() <= 64;
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_len {
            return Err(IdError {
                kind: "tenant id",
                reason: "must be 1 to 64 characters",
            });
        }
        if !ok_chars {
            return Err(IdError {
                kind: "tenant id",
                reason: "may contain only letters, digits, '-' and '_'",
            });
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new time-ordered id (UUIDv7, simple form): hub ids, job ids and run ids sort by creation.
pub fn new_ordered_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_restricted_to_url_and_key_safe_characters() {
        assert!(TenantId::parse("acme-shop_1").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a#b").is_err());
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse("x".repeat(65)).is_err());
    }

    #[test]
    fn external_ids_refuse_empty_and_control_characters() {
        assert!(WecomTagId::parse("etAbC").is_ok());
        assert!(WecomTagId::parse("").is_err());
        assert!(MemberId::parse("m\n1").is_err());
    }

    #[test]
    fn ordered_ids_sort_by_creation() {
        let a = new_ordered_id();
        let b = new_ordered_id();
        assert!(a < b, "{a} should sort before {b}");
    }
}
