//! A tenant: one WeCom corp bound to one mall, with its secrets and switches.

use super::ids::{CorpId, TenantId};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret value. It is stored sealed (`store::sealing`: every field of [`TenantSecrets`] is)
/// and never printed: `Debug` and `Display` show `***`, and no API view contains it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSecrets {
    /// The secret of the self-built app that owns the tags tagsync creates.
    pub corp_secret: Secret,
    /// Callback Token (signature) and EncodingAESKey (43 chars) of the app's callback.
    pub callback_token: Secret,
    pub encoding_aes_key: Secret,
    pub mall_api_token: Secret,
    pub mall_webhook_secret: Secret,
    /// The key the chat-message feed signs with (automation.md §3); none until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_feed_secret: Option<Secret>,
}

/// The operator's switches. All default to on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The customer-tag feature as a whole: off ⇒ nothing syncs; inbound events are verified,
    /// acknowledged and dropped.
    pub tags_enabled: bool,
    /// Automatic sync of tag groups and tags; off ⇒ library changes wait for a manual sync.
    pub auto_sync: bool,
    /// Automatic sync of member tags; off ⇒ member tags wait for a manual sync.
    pub member_sync: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tags_enabled: true,
            auto_sync: true,
            member_sync: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub corp_id: CorpId,
    /// WeCom's AgentId of the self-built app, a string of digits.
    pub agent_id: String,
    pub mall_api_base: String,
    pub secrets: TenantSecrets,
    pub settings: Settings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Optimistic-concurrency version, set by the store; 0 means "not stored yet".
    #[serde(skip)]
    pub version: u64,
}
