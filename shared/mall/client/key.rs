//! The `Idempotency-Key` every write carries (`mall-connector.md` §3): derived from the job
//! and its step, so a retry sends the same key and the mall does the write once.

use super::MAX_IDEMPOTENCY_KEY_CHARS;
use crate::domain::JobId;
use sha2::{Digest, Sha256};
use std::fmt;

/// How every key tagsync sends starts.
const OWN_KEY_PREFIX: &str = "tagsync:";

/// The `Idempotency-Key` of one write. Derived, never random: a retried job derives the same
/// key for the same step, so the mall answers the retry from its record instead of acting
/// twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of `step` (e.g. `create-tag:<hub tag id>`) of job `job`.
    pub fn for_step(job: &JobId, step: &str) -> Self {
        Self(normalize_key(format!("{OWN_KEY_PREFIX}{job}:{step}")))
    }

    /// Whether a key (e.g. a webhook's `origin_request_id`) is one tagsync made: the webhook
    /// is then the echo of tagsync's own write.
    pub fn is_own(key: &str) -> bool {
        key.starts_with(OWN_KEY_PREFIX)
    }

    /// A sub-key, for a step that needs several writes (e.g. one per batch).
    pub fn derive(&self, part: &str) -> Self {
        Self(normalize_key(format!("{}:{part}", self.0)))
    }

    /// A key from elsewhere (tests, the simulator's control surface); normalized the same way.
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(normalize_key(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keys travel in an HTTP header, so only a safe ASCII subset survives as is; anything else,
/// or a key that is too long, is replaced by a readable prefix plus a digest of the original
/// (still deterministic, still distinct).
fn normalize_key(raw: String) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:/#@+=~".contains(c);
    if raw.len() <= MAX_IDEMPOTENCY_KEY_CHARS && !raw.is_empty() && raw.chars().all(allowed) {
        return raw;
    }
    let digest = hex::encode(Sha256::digest(raw.as_bytes()));
    let clean: String = raw
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_IDEMPOTENCY_KEY_CHARS - 17)
        .collect();
    format!("{clean}~{}", &digest[..16])
}
