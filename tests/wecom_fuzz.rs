//! Property tests over the whole WeCom callback path: query params → envelope XML → signature
//! → base64 → AES → padding → event XML. Nothing may panic on any input; anything built with
//! `encrypt` must round-trip. 256 cases per property by default; raise with `PROPTEST_CASES`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use tagsync::wecom::crypto::{CallbackCrypto, CryptoError, build_envelope, parse_envelope};
use tagsync::wecom::event::{ContactChangeType, EventKind, TagChangeType, TagType, WecomEvent};

const TOKEN: &str = "QDG6eK";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "wx5823bf96d3bd56c7";

fn crypto() -> CallbackCrypto {
    CallbackCrypto::new(TOKEN, KEY, CORP).unwrap()
}

#[derive(Debug)]
enum PathError {
    Xml,
    Crypto(CryptoError),
    Event,
}

/// What the callback handler does with a POST.
fn post(
    c: &CallbackCrypto,
    sig: &str,
    ts: &str,
    nonce: &str,
    body: &str,
) -> Result<WecomEvent, PathError> {
    let env = parse_envelope(body).map_err(|_| PathError::Xml)?;
    c.verify(sig, ts, nonce, &env.encrypt)
        .map_err(PathError::Crypto)?;
    let xml = c.decrypt(&env.encrypt).map_err(PathError::Crypto)?;
    WecomEvent::parse(&xml).map_err(|_| PathError::Event)
}

/// Every stage on its own, so garbage reaches the later stages too.
fn every_stage(c: &CallbackCrypto, s: &str) {
    let _ = parse_envelope(s);
    let _ = WecomEvent::parse(s).map(|e| e.dedupe_key());
    let _ = c.verify(s, s, s, s);
    let _ = c.decrypt(s);
    let _ = c.decrypt(s.trim());
    let _ = post(c, s, "1", "2", s);
}

fn config() -> ProptestConfig {
    // Default reads PROPTEST_CASES (256 otherwise); no regression files in the repo.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// XML-ish fragments, to get deeper into the parsers than uniform strings do.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<xml>".to_owned()),
        Just("</xml>".to_owned()),
        Just("<Encrypt>".to_owned()),
        Just("</Encrypt>".to_owned()),
        Just("<ToUserName>".to_owned()),
        Just("</ToUserName>".to_owned()),
        Just("<CreateTime>".to_owned()),
        Just("</CreateTime>".to_owned()),
        Just("<MsgType>event</MsgType>".to_owned()),
        Just("<Event>change_external_tag</Event>".to_owned()),
        Just("<Event>change_external_contact</Event>".to_owned()),
        Just("<ChangeType>".to_owned()),
        Just("</ChangeType>".to_owned()),
        Just("<UserID>u</UserID>".to_owned()),
        Just("<Id/>".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("]]>".to_owned()),
        Just("&amp;".to_owned()),
        Just("&#x0;".to_owned()),
        Just("&#xFFFFFFFF;".to_owned()),
        Just("&unknown;".to_owned()),
        Just("<!DOCTYPE x [<!ENTITY e \"e\">]>".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        Just("<!--".to_owned()),
        Just("-->".to_owned()),
        "[0-9]{1,20}",
        ".{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Values that survive both bare (escaped) and CDATA forms: no control characters, no
/// leading/trailing whitespace (values are trimmed).
fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_\\-&<>'\"\\]中文🎉]([A-Za-z0-9_\\-&<>'\" \\]中文🎉]{0,30}[A-Za-z0-9_\\-&<>'\"\\]中文🎉])?"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn field(name: &str, v: &str, cdata: bool) -> String {
    if cdata {
        let inner = v.replace("]]>", "]]]]><![CDATA[>");
        format!("<{name}><![CDATA[{inner}]]></{name}>")
    } else {
        format!("<{name}>{}</{name}>", escape(v))
    }
}

#[derive(Debug, Clone)]
struct ContactCase {
    change: &'static str,
    user: String,
    external: String,
    state: Option<String>,
    time: i64,
    cdata: bool,
}

fn contact_case() -> impl Strategy<Value = ContactCase> {
    (
        prop::sample::select(vec![
            "add_external_contact",
            "edit_external_contact",
            "add_half_external_contact",
            "del_external_contact",
            "del_follow_user",
            "transfer_fail",
            "something_new",
        ]),
        value(),
        value(),
        prop::option::of(value()),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(|(change, user, external, state, time, cdata)| ContactCase {
            change,
            user,
            external,
            state,
            time,
            cdata,
        })
}

impl ContactCase {
    fn xml(&self) -> String {
        let c = self.cdata;
        let mut x = String::from("<xml>");
        x += &field("ToUserName", CORP, c);
        x += &field("FromUserName", "sys", c);
        x += &format!("<CreateTime>{}</CreateTime>", self.time);
        x += &field("MsgType", "event", c);
        x += &field("Event", "change_external_contact", c);
        x += &field("ChangeType", self.change, c);
        x += &field("UserID", &self.user, c);
        x += &field("ExternalUserID", &self.external, c);
        if let Some(s) = &self.state {
            x += &field("State", s, c);
        }
        x + "</xml>"
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        every_stage(&crypto(), &s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let c = crypto();
        every_stage(&c, &String::from_utf8_lossy(&bytes));
        let _ = c.decrypt(&STANDARD.encode(&bytes));
    }

    #[test]
    fn arbitrary_query_params_never_panic(
        sig in "[0-9a-f]{0,41}|.{0,50}",
        ts in "[0-9]{0,12}|.{0,20}",
        nonce in ".{0,20}",
        echostr in "[A-Za-z0-9+/ =]{0,120}",
    ) {
        let c = crypto();
        prop_assert!(c.verify(&sig, &ts, &nonce, &echostr).is_err() || sig == c.signature(&ts, &nonce, &echostr));
        let _ = c.decrypt(&echostr);
    }

    #[test]
    fn xmlish_input_never_panics(s in xmlish()) {
        let c = crypto();
        every_stage(&c, &s);
        // Also as a signed, encrypted payload, so it reaches the event parser via the path.
        let enc = c.encrypt(&s);
        let body = build_envelope(CORP, "1", &enc);
        let sig = c.signature("1", "2", &enc);
        match post(&c, &sig, "1", "2", &body) {
            Ok(_) | Err(PathError::Event) => {}
            Err(e) => prop_assert!(false, "crypto layer refused its own output: {e:?}"),
        }
    }

    #[test]
    fn random_ciphertext_blocks_never_panic(blocks in prop::collection::vec(any::<[u8; 32]>(), 1..8)) {
        let raw: Vec<u8> = blocks.concat();
        let r = crypto().decrypt(&STANDARD.encode(&raw));
        // Random ciphertext must not come out as a message for our corp.
        prop_assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn any_message_round_trips(msg in any::<String>(), random in any::<[u8; 16]>(), ts in "[0-9]{1,10}", nonce in "[0-9]{1,10}") {
        let c = crypto();
        let enc = c.encrypt_with_random(&msg, random);
        prop_assert_eq!(STANDARD.decode(&enc).unwrap().len() % 32, 0);
        let sig = c.signature(&ts, &nonce, &enc);
        let env = parse_envelope(&build_envelope(CORP, "1000002", &enc)).unwrap();
        prop_assert_eq!(&env.encrypt, &enc);
        prop_assert!(c.verify(&sig, &ts, &nonce, &env.encrypt).is_ok());
        prop_assert_eq!(c.decrypt(&env.encrypt).unwrap(), msg);
    }

    #[test]
    fn contact_events_round_trip_through_the_whole_path(case in contact_case()) {
        let c = crypto();
        let enc = c.encrypt(&case.xml());
        let sig = c.signature("1409659813", "1372623149", &enc);
        let body = build_envelope(CORP, "218", &enc);
        let ev = post(&c, &sig, "1409659813", "1372623149", &body).unwrap();
        prop_assert_eq!(ev.to_user_name.as_str(), CORP);
        prop_assert_eq!(ev.create_time, case.time);
        let EventKind::ContactChange { change, user_id, external_user_id, state, .. } = &ev.kind else {
            return Err(TestCaseError::fail(format!("not a contact change: {ev:?}")));
        };
        prop_assert_eq!(change.as_str(), case.change);
        prop_assert_eq!(
            matches!(change, ContactChangeType::Unknown(_)),
            case.change == "something_new"
        );
        prop_assert_eq!(user_id.as_str(), case.user.as_str());
        prop_assert_eq!(external_user_id.as_str(), case.external.as_str());
        prop_assert_eq!(state, &case.state);
        // A re-send (fresh random prefix, other form) gets the same dedupe key.
        let again = CallbackCrypto::new(TOKEN, KEY, CORP).unwrap();
        let resent = ContactCase { cdata: !case.cdata, ..case.clone() };
        let enc2 = again.encrypt(&resent.xml());
        let ev2 = WecomEvent::parse(&again.decrypt(&enc2).unwrap()).unwrap();
        prop_assert_eq!(ev.dedupe_key(), ev2.dedupe_key());
    }

    #[test]
    fn tag_events_round_trip(
        change in prop::sample::select(vec!["create", "update", "delete", "shuffle", "other"]),
        id in prop::option::of(value()),
        tag_type in prop::option::of(prop::sample::select(vec!["tag", "tag_group", "x"])),
        strategy in prop::option::of("[0-9]{1,6}"),
        cdata in any::<bool>(),
    ) {
        let mut xml = String::from("<xml>");
        xml += &field("ToUserName", CORP, cdata);
        xml += "<FromUserName>sys</FromUserName><CreateTime>1403610513</CreateTime>";
        xml += &field("MsgType", "event", cdata);
        xml += &field("Event", "change_external_tag", cdata);
        xml += &field("Id", id.as_deref().unwrap_or(""), cdata);
        if let Some(t) = tag_type {
            xml += &field("TagType", t, cdata);
        }
        xml += &field("ChangeType", change, cdata);
        if let Some(s) = &strategy {
            xml += &format!("<StrategyId>{s}</StrategyId>");
        }
        xml += "</xml>";
        let c = crypto();
        let ev = WecomEvent::parse(&c.decrypt(&c.encrypt(&xml)).unwrap()).unwrap();
        let want = EventKind::TagChange {
            change: TagChangeType::parse(change),
            id: id.clone(),
            tag_type: tag_type.map(TagType::parse),
            strategy_id: strategy.clone(),
        };
        prop_assert_eq!(ev.kind, want);
    }

    #[test]
    fn mutated_envelopes_never_panic_and_never_verify(
        msg in ".{0,200}",
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let c = crypto();
        let enc = c.encrypt(&msg);
        let sig = c.signature("1", "2", &enc);
        let body = build_envelope(CORP, "1", &enc);
        let mut bytes = body.clone().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        match parse_envelope(&mutated) {
            Ok(env) if env.encrypt != enc => {
                prop_assert!(matches!(
                    post(&c, &sig, "1", "2", &mutated),
                    Err(PathError::Crypto(CryptoError::BadSignature))
                ));
            }
            _ => {}
        }
        let _ = post(&c, &sig, "1", "2", &mutated);
        let truncated = &body[..cut.index(body.len())];
        prop_assert!(post(&c, &sig, "1", "2", truncated).is_err());
    }
}
