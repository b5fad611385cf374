//! Tenant secrets sealed at rest: AES-256-GCM (RustCrypto `aes-gcm`) under a key kept apart
//! from the store, so a copied database file, table export or backup reveals none of them.
//!
//! - `tagsync serve`: the key itself, from `TAGSYNC_SECRET_KEY` or a key file outside the data
//!   directory ([`KeySource::Local`]).
//! - The Lambdas: envelope encryption ([`KeySource::Kms`]). One AES-256 data key per
//!   deployment, made by KMS `GenerateDataKey`; only its KMS-encrypted form is stored (the key
//!   record), its plaintext lives in the memory of each sandbox after one `Decrypt`.
//!
//! The store keeps one key record (`SEALING` / `KEY`): which key its secrets are sealed with
//! (an id derived from the key, never the key). A process given another key is refused at
//! start instead of failing on every tenant later.
//!
//! A sealed value is the string `sealed:v1:{key id}:{base64(nonce ‖ ciphertext ‖ tag)}`, with
//! the item's key and the field's path as associated data, so a sealed value copied into
//! another tenant or another field does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const PREFIX: &str = "sealed:v1:";
/// KMS encryption context of the data key: the template's grant may be narrowed to it, and
/// a blob made for another purpose does not decrypt as this one.
pub const KMS_CONTEXT: (&str, &str) = ("purpose", "tagsync-tenant-secrets");

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key given is malformed (wrong length, not base64).
    #[error("secret key: {0}")]
    BadKey(String),
    /// The store's secrets were sealed with another key.
    #[error(
        "the store's secrets are sealed with key {stored}, but this process was given key {given}: \
         start it with the key this store was first started with (see the README, \"secret key\")"
    )]
    WrongKey { stored: String, given: String },
    /// The store is sealed by the other kind of key (KMS vs. a local key).
    #[error("the store's secrets are sealed by {stored}, but this process was given {given}")]
    WrongScheme { stored: String, given: String },
    /// A sealed value did not open: tampered with, or moved to another item or field.
    #[error("a sealed secret ({at}) does not open: {reason}")]
    Open { at: String, reason: String },
    /// KMS failed; `retryable` says whether trying again may help (throttling, network).
    #[error("KMS {op}: {message}")]
    Kms {
        op: &'static str,
        message: String,
        retryable: bool,
    },
    /// The key record could not be read or written.
    #[error("the store's key record: {0}")]
    Store(#[from] crate::ports::StoreError),
}

impl SealError {
    pub fn retryable(&self) -> bool {
        match self {
            SealError::Kms { retryable, .. } => *retryable,
            SealError::Store(e) => e.retryable(),
            _ => false,
        }
    }
}

/// A 256-bit key. `Debug` shows its id only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh random key (the thread RNG is a CSPRNG seeded from the OS).
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The key as written in `TAGSYNC_SECRET_KEY` or a key file: standard base64 of 32 bytes
    /// (`openssl rand -base64 32`), surrounding whitespace ignored.
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| SealError::BadKey("not base64 (expected 32 bytes in base64)".into()))?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| SealError::BadKey(format!("{} bytes, expected {KEY_LEN}", bytes.len())))?;
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// A short public id of the key (a hash prefix): stored beside the secrets and in every
    /// sealed value, so a wrong key is named, never guessed at.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"tagsync sealing key id\0");
        h.update(self.0);
        hex::encode(&h.finalize()[..8])
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

/// Seals and opens single values with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    key_id: String,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({})", self.key_id)
    }
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Self {
        Self {
            cipher: Aes256Gcm::new(&key.0.into()),
            key_id: key.id(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }

    /// Seals `plain`, bound to `aad` (where it is stored). A fresh random nonce per value.
    pub fn seal(&self, aad: &str, plain: &str) -> Result<String, SealError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        // AES-GCM refuses only plaintexts over 64 GiB.
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open {
                at: aad.to_string(),
                reason: "could not be sealed".into(),
            })?;
        let mut blob = nonce.to_vec();
        blob.extend(sealed);
        Ok(format!("{PREFIX}{}:{}", self.key_id, B64.encode(blob)))
    }

    /// Opens a value [`seal`](Self::seal) made for the same `aad`.
    pub fn open(&self, aad: &str, value: &str) -> Result<String, SealError> {
        let fail = |reason: &str| SealError::Open {
            at: aad.to_string(),
            reason: reason.to_string(),
        };
        let rest = value
            .strip_prefix(PREFIX)
            .ok_or_else(|| fail("not a sealed value"))?;
        let (key_id, b64) = rest.split_once(':').ok_or_else(|| fail("no key id"))?;
        if key_id != self.key_id {
            return Err(fail(&format!(
                "sealed with key {key_id}, this process holds key {}",
                self.key_id
            )));
        }
        let blob = B64.decode(b64).map_err(|_| fail("not base64"))?;
        if blob.len() < NONCE_LEN {
            return Err(fail("too short"));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| fail("authentication failed (tampered with, or moved)"))?;
        String::from_utf8(plain).map_err(|_| fail("not UTF-8"))
    }
}

/// Where an entity's secrets sit in its JSON form: a path ending in `/*` is every member of
/// that object (so a secret field added to it later is sealed without naming it here).
#[derive(Clone, Copy, Debug)]
pub struct SecretPaths(pub &'static [&'static str]);

impl SecretPaths {
    /// Applies `f` to every string at these paths, with its path (`/secrets/corp_secret`).
    pub fn for_each(
        &self,
        value: &mut serde_json::Value,
        mut f: impl FnMut(&str, &mut String) -> Result<(), SealError>,
    ) -> Result<(), SealError> {
        for path in self.0 {
            if let Some(object) = path.strip_suffix("/*") {
                if let Some(serde_json::Value::Object(map)) = value.pointer_mut(object) {
                    for (name, member) in map.iter_mut() {
                        if let serde_json::Value::String(s) = member {
                            f(&format!("{object}/{name}"), s)?;
                        }
                    }
                }
            } else if let Some(serde_json::Value::String(s)) = value.pointer_mut(path) {
                f(path, s)?;
            }
        }
        Ok(())
    }
}

/// Where the key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// The key itself (`tagsync serve`).
    Local(SecretKey),
    /// A KMS key that makes and unwraps the store's data key (the Lambdas).
    Kms(KmsKey),
}

#[derive(Clone)]
pub struct KmsKey {
    pub client: aws_sdk_kms::Client,
    /// Key id or ARN (`TAGSYNC_KMS_KEY_ID`, set by `template.yaml`).
    pub key_id: String,
}

/// The store's key record: which key seals its secrets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum KeyRecord {
    /// A key given to `serve`; only its id is stored.
    Local { key_id: String },
    /// A KMS data key: its id and its KMS-encrypted form (`CiphertextBlob`, base64).
    Kms {
        key_id: String,
        kms_key_id: String,
        wrapped_key: String,
    },
}

impl KeyRecord {
    fn describe(&self) -> String {
        match self {
            KeyRecord::Local { key_id } => format!("a local key ({key_id})"),
            KeyRecord::Kms { kms_key_id, .. } => format!("a KMS data key (under {kms_key_id})"),
        }
    }
}

impl KeySource {
    fn describe(&self) -> String {
        match self {
            KeySource::Local(k) => format!("a local key ({})", k.id()),
            KeySource::Kms(k) => format!("a KMS key ({})", k.key_id),
        }
    }

    /// A new record for a store that has none yet, with the key it stands for.
    pub(crate) async fn new_record(&self) -> Result<(KeyRecord, SecretKey), SealError> {
        match self {
            KeySource::Local(key) => Ok((KeyRecord::Local { key_id: key.id() }, key.clone())),
            KeySource::Kms(kms) => {
                let out = kms
                    .client
                    .generate_data_key()
                    .key_id(&kms.key_id)
                    .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                    .encryption_context(KMS_CONTEXT.0, KMS_CONTEXT.1)
                    .send()
                    .await
                    .map_err(|e| kms_error("GenerateDataKey", e))?;
                let plain = out.plaintext().ok_or_else(|| SealError::Kms {
                    op: "GenerateDataKey",
                    message: "no plaintext in the answer".into(),
                    retryable: false,
                })?;
                let wrapped = out.ciphertext_blob().ok_or_else(|| SealError::Kms {
                    op: "GenerateDataKey",
                    message: "no ciphertext in the answer".into(),
                    retryable: false,
                })?;
                let key = SecretKey::from_bytes(plain.as_ref())?;
                Ok((
                    KeyRecord::Kms {
                        key_id: key.id(),
                        kms_key_id: out.key_id().unwrap_or(&kms.key_id).to_string(),
                        wrapped_key: B64.encode(wrapped.as_ref()),
                    },
                    key,
                ))
            }
        }
    }

    /// The key of an existing record, checked against this source.
    pub(crate) async fn key_for(&self, record: &KeyRecord) -> Result<SecretKey, SealError> {
        match (self, record) {
            (KeySource::Local(key), KeyRecord::Local { key_id }) => {
                if key.id() == *key_id {
                    Ok(key.clone())
                } else {
                    Err(SealError::WrongKey {
                        stored: key_id.clone(),
                        given: key.id(),
                    })
                }
            }
            (
                KeySource::Kms(kms),
                KeyRecord::Kms {
                    key_id,
                    wrapped_key,
                    ..
                },
            ) => {
                let blob = B64.decode(wrapped_key).map_err(|_| SealError::Kms {
                    op: "Decrypt",
                    message: "the stored data key is not base64".into(),
                    retryable: false,
                })?;
                // KeyId pins the KMS key: a record written under another key fails here
                // instead of asking KMS to use whatever key the blob names.
                let out = kms
                    .client
                    .decrypt()
                    .key_id(&kms.key_id)
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
                    .encryption_context(KMS_CONTEXT.0, KMS_CONTEXT.1)
                    .send()
                    .await
                    .map_err(|e| kms_error("Decrypt", e))?;
                let plain = out.plaintext().ok_or_else(|| SealError::Kms {
                    op: "Decrypt",
                    message: "no plaintext in the answer".into(),
                    retryable: false,
                })?;
                let key = SecretKey::from_bytes(plain.as_ref())?;
                if key.id() != *key_id {
                    return Err(SealError::WrongKey {
                        stored: key_id.clone(),
                        given: key.id(),
                    });
                }
                Ok(key)
            }
            (source, record) => Err(SealError::WrongScheme {
                stored: record.describe(),
                given: source.describe(),
            }),
        }
    }
}

/// KMS errors: throttling, timeouts, server faults and transport failures are worth
/// retrying; the rest (access denied, disabled or unknown key, wrong context) are not.
fn kms_error<E>(
    op: &'static str,
    e: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> SealError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let server_side = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    match e.as_service_error() {
        Some(service) => {
            let code = service.code().unwrap_or("Unknown");
            let retryable = server_side
                || matches!(
                    code,
                    "ThrottlingException"
                        | "KMSInternalException"
                        | "DependencyTimeoutException"
                        | "KeyUnavailableException"
                );
            SealError::Kms {
                op,
                message: format!("{code}: {}", service.message().unwrap_or("no message")),
                retryable,
            }
        }
        None => SealError::Kms {
            op,
            message: aws_sdk_kms::error::DisplayErrorContext(&e).to_string(),
            retryable: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_where_it_was_sealed() {
        let key = SecretKey::generate();
        let sealer = Sealer::new(&key);
        let sealed = sealer
            .seal("TENANT#a|META|/secrets/corp_secret", "s3cret")
            .unwrap();
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            sealer
                .open("TENANT#a|META|/secrets/corp_secret", &sealed)
                .unwrap(),
            "s3cret"
        );
        // Moved to another tenant or field: refused.
        assert!(
            sealer
                .open("TENANT#b|META|/secrets/corp_secret", &sealed)
                .is_err()
        );
        // Another key: refused, naming both ids.
        let other = Sealer::new(&SecretKey::generate());
        let e = other
            .open("TENANT#a|META|/secrets/corp_secret", &sealed)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&key.id()), "{e}");
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            sealed,
            sealer
                .seal("TENANT#a|META|/secrets/corp_secret", "s3cret")
                .unwrap()
        );
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_only() {
        let key = SecretKey::generate();
        assert_eq!(
            SecretKey::from_base64(&format!(" {}\n", key.to_base64())).unwrap(),
            key
        );
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        assert!(SecretKey::from_base64("not base64!").is_err());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn secret_paths_reach_every_member_of_a_secrets_object() {
        let mut v = serde_json::json!({"id": "a", "secrets": {"x": "1", "y": "2"}, "token": "t"});
        let mut seen = Vec::new();
        SecretPaths(&["/secrets/*", "/token", "/missing"])
            .for_each(&mut v, |path, s| {
                seen.push(format!("{path}={s}"));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, ["/secrets/x=1", "/secrets/y=2", "/token=t"]);
    }
}
