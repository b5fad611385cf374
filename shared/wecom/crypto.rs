//! WXBizMsgCrypt: the signature and AES scheme of WeCom callbacks (wecom-api.md §4.4), plus
//! the outer `<xml><ToUserName/><AgentID/><Encrypt/></xml>` envelope of §4.3.
//!
//! Order for an incoming callback: [`parse_envelope`] → [`CallbackCrypto::verify`] →
//! [`CallbackCrypto::decrypt`]. Always verify first: the signature covers the ciphertext, so
//! nothing unauthenticated reaches the padding check (§9 P9).

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::event::{XmlError, read_flat_xml};

/// WeCom pads to 32 bytes, not AES's 16 (§4.4, §9 P2).
const PAD_BLOCK: usize = 32;
/// 16 random bytes + 4-byte big-endian message length.
const HEADER_LEN: usize = 20;

/// WeCom's EncodingAESKeys end in a character with non-zero trailing bits, which the strict
/// `STANDARD` engine refuses (§4.4).
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a callback failed the crypto layer. Every variant maps to "reject the request".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("msg_signature does not match the token, timestamp, nonce and ciphertext")]
    BadSignature,
    #[error("invalid EncodingAESKey: {0}")]
    BadKey(&'static str),
    #[error("ciphertext is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("ciphertext length {0} is not a non-zero multiple of 32 bytes")]
    BadCiphertextLength(usize),
    #[error("decrypted data has invalid PKCS#7 (32-byte block) padding")]
    BadPadding,
    #[error("decrypted data is too short for its length field")]
    BadLength,
    #[error("decrypted message is not valid UTF-8")]
    BadUtf8,
    #[error("receive id mismatch: expected {expected:?}, found {found:?}")]
    ReceiveIdMismatch { expected: String, found: String },
}

/// One app's callback crypto: its Token, its AES key and the receive id (corp id for self-built
/// apps, suite id for third-party apps — §4.4, §9 P3).
#[derive(Clone)]
pub struct CallbackCrypto {
    token: String,
    cipher: Aes256,
    iv: [u8; 16],
    receive_id: String,
}

impl std::fmt::Debug for CallbackCrypto {
    // Never print the token or the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackCrypto")
            .field("receive_id", &self.receive_id)
            .finish_non_exhaustive()
    }
}

impl CallbackCrypto {
    /// `encoding_aes_key` is the 43-character EncodingAESKey from the admin console.
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::BadKey("must be exactly 43 characters"));
        }
        let key = KEY_ENGINE
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey("not base64"))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| CryptoError::BadKey("does not decode to 32 bytes"))?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        Ok(Self {
            token: token.to_owned(),
            cipher: Aes256::new(&key.into()),
            iv,
            receive_id: receive_id.to_owned(),
        })
    }

    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// Lowercase hex SHA-1 of the byte-wise sorted concatenation of token, timestamp, nonce
    /// and ciphertext (§4.2, §4.4).
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut sha = Sha1::new();
        for p in parts {
            sha.update(p.as_bytes());
        }
        hex::encode(sha.finalize())
    }

    /// Checks `msg_signature` in constant time.
    pub fn verify(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypted);
        if bool::from(expected.as_bytes().ct_eq(msg_signature.as_bytes())) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// Decrypts an `Encrypt` value or `echostr` and checks the receive id.
    pub fn decrypt(&self, encrypted_b64: &str) -> Result<String, CryptoError> {
        let mut buf = STANDARD.decode(encrypted_b64)?;
        let len = buf.len();
        if len == 0 || len % PAD_BLOCK != 0 {
            return Err(CryptoError::BadCiphertextLength(len));
        }
        cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::BadCiphertextLength(len))?;

        let pad = usize::from(buf[len - 1]);
        if pad == 0 || pad > PAD_BLOCK || buf[len - pad..].iter().any(|&b| usize::from(b) != pad) {
            return Err(CryptoError::BadPadding);
        }
        let content = &buf[..len - pad];
        if content.len() < HEADER_LEN {
            return Err(CryptoError::BadLength);
        }
        let msg_len = u32::from_be_bytes([content[16], content[17], content[18], content[19]]);
        let rest = &content[HEADER_LEN..];
        let msg_len = usize::try_from(msg_len).map_err(|_| CryptoError::BadLength)?;
        if msg_len > rest.len() {
            return Err(CryptoError::BadLength);
        }
        let (msg, receive_id) = rest.split_at(msg_len);
        if receive_id != self.receive_id.as_bytes() {
            return Err(CryptoError::ReceiveIdMismatch {
                expected: self.receive_id.clone(),
                found: String::from_utf8_lossy(receive_id).into_owned(),
            });
        }
        String::from_utf8(msg.to_vec()).map_err(|_| CryptoError::BadUtf8)
    }

    /// Encrypts with a fixed random prefix; deterministic, for test vectors and simulators.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer (the length field is a u32).
    pub fn encrypt_with_random(&self, msg: &str, random16: [u8; 16]) -> String {
        let msg_len = u32::try_from(msg.len()).expect("WeCom messages are shorter than 4 GiB");
        let unpadded = HEADER_LEN + msg.len() + self.receive_id.len();
        // Always 1..=32 bytes of padding; a full block when already aligned (§9 P2).
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buf = Vec::with_capacity(unpadded + pad);
        buf.extend_from_slice(&random16);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(self.receive_id.as_bytes());
        buf.resize(unpadded + pad, pad as u8);
        let len = buf.len();
        let ciphertext =
            cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &self.iv.into())
                .encrypt_padded_mut::<NoPadding>(&mut buf, len)
                // Kept: `buf` was padded above to a whole number of blocks.
                .expect("buffer is a whole number of blocks");
        STANDARD.encode(ciphertext)
    }

    /// Encrypts with a fresh random prefix.
    pub fn encrypt(&self, msg: &str) -> String {
        self.encrypt_with_random(msg, rand::random())
    }
}

/// The outer XML of an event POST (§4.3). Only `Encrypt` is signed; the other two are
/// informational.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub to_user_name: Option<String>,
    pub agent_id: Option<String>,
    pub encrypt: String,
}

/// Reads the POST body; `Encrypt` is required, CDATA or plain text.
pub fn parse_envelope(xml: &str) -> Result<Envelope, XmlError> {
    let fields = read_flat_xml(xml)?;
    let non_empty = |name| {
        fields
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(Envelope {
        to_user_name: non_empty("ToUserName"),
        agent_id: non_empty("AgentID"),
        encrypt: non_empty("Encrypt").ok_or(XmlError::MissingField("Encrypt"))?,
    })
}

/// Builds the POST body WeCom sends (used by the simulator).
pub fn build_envelope(to_user_name: &str, agent_id: &str, encrypt: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><AgentID>{}</AgentID><Encrypt>{}</Encrypt></xml>",
        cdata(to_user_name),
        cdata(agent_id),
        cdata(encrypt)
    )
}

/// Wraps text in CDATA, splitting any `]]>` so arbitrary input stays well-formed.
pub(crate) fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wecom-vectors.json"
    ));

    fn sets() -> Vec<Value> {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        v["sets"].as_array().unwrap().clone()
    }

    fn s<'a>(v: &'a Value, k: &str) -> &'a str {
        v[k].as_str()
            .unwrap_or_else(|| panic!("vector field {k} missing"))
    }

    fn crypto_for(set: &Value) -> CallbackCrypto {
        CallbackCrypto::new(
            s(set, "token"),
            s(set, "encoding_aes_key"),
            s(set, "receive_id"),
        )
        .unwrap()
    }

    fn sample() -> CallbackCrypto {
        crypto_for(&sets()[0])
    }

    #[test]
    fn all_three_vector_sets_are_present() {
        let names: Vec<_> = sets()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["Set A", "Set B", "Set C"]);
    }

    #[test]
    fn aes_key_matches_published_hex() {
        for set in sets() {
            let key = KEY_ENGINE
                .decode(format!("{}=", s(&set, "encoding_aes_key")))
                .unwrap();
            assert_eq!(hex::encode(&key), s(&set, "aes_key_hex"), "{}", set["name"]);
            // The pitfall of §4.4: a strict decoder refuses these keys.
            assert!(
                STANDARD
                    .decode(format!("{}=", s(&set, "encoding_aes_key")))
                    .is_err()
            );
        }
    }

    /// One published vector (`url_verification` or `message`) of a set: the signature we
    /// compute is the published one, it verifies, and `payload` decrypts to the plaintext.
    fn check_vector(set: &Value, vector: &str, payload: &str) {
        let c = crypto_for(set);
        let v = &set[vector];
        let (ts, nonce, body) = (s(v, "timestamp"), s(v, "nonce"), s(v, payload));
        assert_eq!(
            c.signature(ts, nonce, body),
            s(v, "msg_signature"),
            "{}",
            set["name"]
        );
        c.verify(s(v, "msg_signature"), ts, nonce, body).unwrap();
        assert_eq!(
            c.decrypt(body).unwrap(),
            s(v, "plaintext"),
            "{}",
            set["name"]
        );
    }

    #[test]
    fn url_verification_vectors() {
        for set in sets() {
            check_vector(&set, "url_verification", "echostr");
        }
    }

    #[test]
    fn message_vectors() {
        for set in sets() {
            check_vector(&set, "message", "encrypt");
        }
    }

    #[test]
    fn vectors_reject_another_sets_receive_id() {
        let all = sets();
        for (i, set) in all.iter().enumerate() {
            let other = s(&all[(i + 1) % all.len()], "receive_id");
            let c =
                CallbackCrypto::new(s(set, "token"), s(set, "encoding_aes_key"), other).unwrap();
            let err = c.decrypt(s(&set["message"], "encrypt")).unwrap_err();
            assert_eq!(
                err,
                CryptoError::ReceiveIdMismatch {
                    expected: other.to_owned(),
                    found: s(set, "receive_id").to_owned()
                }
            );
            assert!(err.to_string().contains(s(set, "receive_id")));
        }
    }

    #[test]
    fn set_c_deterministic_encrypt_is_byte_exact() {
        let set = &sets()[2];
        let c = crypto_for(set);
        let d = &set["deterministic_encrypt"];
        let random: [u8; 16] = s(d, "random_prefix").as_bytes().try_into().unwrap();
        let enc = c.encrypt_with_random(s(d, "plaintext"), random);
        assert_eq!(enc, s(d, "encrypt"));
        assert_eq!(
            c.signature(s(d, "timestamp"), s(d, "nonce"), &enc),
            s(d, "msg_signature")
        );
        assert_eq!(c.decrypt(&enc).unwrap(), s(d, "plaintext"));
    }

    #[test]
    fn set_a_post_is_reproduced_with_its_recovered_prefix() {
        // §4.5: random16 of Set A's POST is ASCII "0960688932c47ef1", pad 30.
        let set = &sets()[0];
        let c = crypto_for(set);
        let m = &set["message"];
        assert_eq!(
            c.encrypt_with_random(s(m, "plaintext"), *b"0960688932c47ef1"),
            s(m, "encrypt")
        );
    }

    #[test]
    fn round_trips_every_length_0_to_100() {
        let c = sample();
        for n in 0..=100usize {
            let msg: String = (0..n)
                .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
                .collect();
            let enc = c.encrypt(&msg);
            assert_eq!(STANDARD.decode(&enc).unwrap().len() % PAD_BLOCK, 0);
            assert_eq!(c.decrypt(&enc).unwrap(), msg, "length {n}");
        }
    }

    #[test]
    fn aligned_plaintext_gets_a_full_pad_block() {
        let c = sample();
        let rid = c.receive_id().len();
        for blocks in 2..=5 {
            let n = blocks * PAD_BLOCK - HEADER_LEN - rid;
            let msg = "x".repeat(n);
            let raw = STANDARD.decode(c.encrypt(&msg)).unwrap();
            assert_eq!(
                raw.len(),
                (blocks + 1) * PAD_BLOCK,
                "a full 32-byte pad block is added"
            );
            assert_eq!(c.decrypt(&STANDARD.encode(&raw)).unwrap(), msg);
        }
    }

    #[test]
    fn multibyte_messages_round_trip() {
        let c = sample();
        let msg = "<xml><Content>你好, 企业微信 🎉</Content></xml>";
        assert_eq!(c.decrypt(&c.encrypt(msg)).unwrap(), msg);
    }

    #[test]
    fn empty_receive_id_is_supported() {
        let set = &sets()[0];
        let c = CallbackCrypto::new(s(set, "token"), s(set, "encoding_aes_key"), "").unwrap();
        assert_eq!(c.decrypt(&c.encrypt("hi")).unwrap(), "hi");
    }

    /// Encrypts raw (already padded) plaintext, to forge bad padding and lengths.
    fn encrypt_raw(c: &CallbackCrypto, mut raw: Vec<u8>) -> String {
        let len = raw.len();
        let ct = cbc::Encryptor::<Aes256>::inner_iv_init(c.cipher.clone(), &c.iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut raw, len)
            .unwrap();
        STANDARD.encode(ct)
    }

    fn layout(msg: &[u8], declared_len: u32, rid: &[u8]) -> Vec<u8> {
        let mut v = vec![b'r'; 16];
        v.extend_from_slice(&declared_len.to_be_bytes());
        v.extend_from_slice(msg);
        v.extend_from_slice(rid);
        v
    }

    fn pad32(mut v: Vec<u8>) -> Vec<u8> {
        let p = PAD_BLOCK - v.len() % PAD_BLOCK;
        v.resize(v.len() + p, p as u8);
        v
    }

    #[test]
    fn forged_layouts_are_rejected_with_the_right_error() {
        let c = sample();
        let rid = c.receive_id().as_bytes().to_vec();
        // Control: a hand-built valid layout decrypts.
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, pad32(layout(b"ok", 2, &rid))))
                .unwrap(),
            "ok"
        );

        // Pad byte 0.
        let mut v = layout(b"ok", 2, &rid);
        v.resize(64, 0);
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)), Err(CryptoError::BadPadding));
        // Pad byte 33 (> block of 32).
        let mut v = layout(b"ok", 2, &rid);
        v.resize(64, 33);
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)), Err(CryptoError::BadPadding));
        // Inconsistent pad bytes.
        let mut v = pad32(layout(b"ok", 2, &rid));
        let n = v.len();
        v[n - 2] ^= 1;
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)), Err(CryptoError::BadPadding));
        // A pad of 17..=32 is valid (§9 P2): 20 + 2 + 18 = 40 → pad 24.
        let v = pad32(layout(b"ok", 2, &rid));
        assert_eq!(v[v.len() - 1], 24);
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)).unwrap(), "ok");

        // Length field larger than what follows.
        let v = pad32(layout(b"ok", 1000, &rid));
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)), Err(CryptoError::BadLength));
        let v = pad32(layout(b"ok", u32::MAX, &rid));
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)), Err(CryptoError::BadLength));
        // Shorter than the 20-byte header: 32 bytes of pad 32 leave nothing.
        assert_eq!(
            c.decrypt(&encrypt_raw(&c, vec![32; 32])),
            Err(CryptoError::BadLength)
        );
        // Not UTF-8.
        let v = pad32(layout(&[0xff, 0xfe], 2, &rid));
        assert_eq!(c.decrypt(&encrypt_raw(&c, v)), Err(CryptoError::BadUtf8));
        // Receive id off by the length field.
        let v = pad32(layout(b"ok", 1, &rid));
        assert!(matches!(
            c.decrypt(&encrypt_raw(&c, v)),
            Err(CryptoError::ReceiveIdMismatch { .. })
        ));
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let c = sample();
        let enc = c.encrypt("<xml><A>1</A></xml>");
        let raw = STANDARD.decode(&enc).unwrap();
        // Flipping any bit of the last block scrambles the padding/receive id; flipping the
        // second-to-last block flips the same bit of the last plaintext block.
        let mut bad = raw.clone();
        let n = bad.len();
        bad[n - 17] ^= 0x01;
        assert!(c.decrypt(&STANDARD.encode(&bad)).is_err());
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x80;
            // Never panics, never silently yields the original message.
            assert_ne!(
                c.decrypt(&STANDARD.encode(&bad)).ok().as_deref(),
                Some("<xml><A>1</A></xml>")
            );
        }
        // Truncation and non-multiple-of-32 lengths.
        assert_eq!(
            c.decrypt(&STANDARD.encode(&raw[..raw.len() - 16])),
            Err(CryptoError::BadCiphertextLength(raw.len() - 16))
        );
        assert_eq!(c.decrypt(""), Err(CryptoError::BadCiphertextLength(0)));
        assert_eq!(c.decrypt("AAAA"), Err(CryptoError::BadCiphertextLength(3)));
    }

    #[test]
    fn bad_base64_is_rejected() {
        let c = sample();
        assert!(matches!(
            c.decrypt("not base64!"),
            Err(CryptoError::Base64(_))
        ));
        // `+` turned into a space by a double URL-decode (§4.2).
        let enc = c.encrypt("hello").replace('+', " ");
        if enc.contains(' ') {
            assert!(matches!(c.decrypt(&enc), Err(CryptoError::Base64(_))));
        }
        assert!(matches!(
            c.decrypt("QUJD\u{0}"),
            Err(CryptoError::Base64(_))
        ));
    }

    #[test]
    fn wrong_signature_is_rejected() {
        let set = &sets()[0];
        let c = crypto_for(set);
        let u = &set["url_verification"];
        let (sig, ts, nonce, echo) = (
            s(u, "msg_signature"),
            s(u, "timestamp"),
            s(u, "nonce"),
            s(u, "echostr"),
        );
        assert_eq!(c.verify(sig, ts, nonce, echo), Ok(()));
        let bad = |r| assert_eq!(r, Err(CryptoError::BadSignature));
        bad(c.verify(&sig.to_uppercase(), ts, nonce, echo));
        bad(c.verify(&sig[..39], ts, nonce, echo));
        bad(c.verify("", ts, nonce, echo));
        bad(c.verify(sig, "1409659590", nonce, echo));
        bad(c.verify(sig, ts, "263014781", echo));
        bad(c.verify(sig, ts, nonce, &echo.replace('P', "Q")));
        let other = CallbackCrypto::new("other", s(set, "encoding_aes_key"), "x").unwrap();
        bad(other.verify(sig, ts, nonce, echo));
    }

    #[test]
    fn bad_keys_are_rejected() {
        let bad = |k: &str| {
            matches!(
                CallbackCrypto::new("t", k, "r"),
                Err(CryptoError::BadKey(_))
            )
        };
        assert!(bad(""));
        assert!(bad("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2")); // 42
        assert!(bad("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C=")); // 44
        assert!(bad("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2!"));
        assert!(bad("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2é"));
    }

    #[test]
    fn errors_have_readable_messages() {
        assert!(
            CryptoError::BadKey("x")
                .to_string()
                .contains("EncodingAESKey")
        );
        assert!(
            CryptoError::BadCiphertextLength(3)
                .to_string()
                .contains('3')
        );
        assert!(CryptoError::BadPadding.to_string().contains("32"));
    }

    #[test]
    fn debug_does_not_leak_secrets() {
        let c = sample();
        let d = format!("{c:?}");
        assert!(!d.contains("QDG6eK") && !d.contains("cipher"), "{d}");
    }

    #[test]
    fn envelope_parses_vector_body_and_round_trips() {
        let set = &sets()[0];
        let enc = s(&set["message"], "encrypt");
        let body = format!(
            "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
        );
        let e = parse_envelope(&body).unwrap();
        assert_eq!(e.encrypt, enc);
        assert_eq!(e.to_user_name.as_deref(), Some("wx5823bf96d3bd56c7"));
        assert_eq!(e.agent_id.as_deref(), Some("218"));

        let built = build_envelope("ww1", "1000002", enc);
        assert_eq!(
            parse_envelope(&built).unwrap(),
            Envelope {
                to_user_name: Some("ww1".into()),
                agent_id: Some("1000002".into()),
                encrypt: enc.into()
            }
        );
    }

    #[test]
    fn envelope_accepts_plain_text_and_whitespace() {
        let e = parse_envelope(
            "<?xml version=\"1.0\"?>\n<xml>\n  <ToUserName>ww1</ToUserName>\n  <Encrypt>\n    QUJD+/==\n  </Encrypt>\n</xml>\n",
        )
        .unwrap();
        assert_eq!(e.encrypt, "QUJD+/==");
        assert_eq!(e.agent_id, None);
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(
            parse_envelope("<xml><ToUserName>a</ToUserName></xml>"),
            Err(XmlError::MissingField("Encrypt"))
        );
        assert_eq!(
            parse_envelope("<xml><Encrypt/></xml>"),
            Err(XmlError::MissingField("Encrypt"))
        );
        assert!(matches!(
            parse_envelope("<xml><Encrypt>abc"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(parse_envelope(""), Err(XmlError::Malformed(_))));
        assert!(matches!(
            parse_envelope("Encrypt=abc"),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn cdata_escapes_its_terminator() {
        let built = build_envelope("a]]>b", "", "x");
        assert_eq!(
            parse_envelope(&built).unwrap().to_user_name.as_deref(),
            Some("a]]>b")
        );
    }
}
