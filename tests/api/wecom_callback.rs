//! `GET/POST /wecom/callback/{tenant}` against a real `serve`, with callbacks built exactly
//! as WeCom builds them (WXBizMsgCrypt, wecom-api.md §4).

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tagsync::wecom::crypto::{CallbackCrypto, build_envelope};

// The tenant registered by `tenant_body()` uses WeCom's official sample app (Set A).
const CORP: &str = "ww5823bf96d3bd56c7";
const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn crypto() -> CallbackCrypto {
    CallbackCrypto::new(TOKEN, AES_KEY, CORP).unwrap()
}

fn tag_event(change: &str, id: &str, tag_type: Option<&str>, time: i64) -> String {
    let tag_type = tag_type
        .map(|t| format!("<TagType><![CDATA[{t}]]></TagType>"))
        .unwrap_or_default();
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[{id}]]></Id>{tag_type}\
         <ChangeType><![CDATA[{change}]]></ChangeType></xml>"
    )
}

fn contact_event(change: &str, extra: &str, time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>\
         <UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID>{extra}</xml>"
    )
}

/// Every event type tagsync uses, as WeCom sends it.
fn every_event() -> Vec<String> {
    vec![
        tag_event("create", "etTAG1", Some("tag"), 1_700_000_001),
        tag_event("create", "etGROUP1", Some("tag_group"), 1_700_000_001),
        tag_event("update", "etTAG1", Some("tag"), 1_700_000_002),
        tag_event("delete", "etTAG1", Some("tag"), 1_700_000_003),
        tag_event("delete", "etGROUP1", Some("tag_group"), 1_700_000_003),
        tag_event("shuffle", "etGROUP1", None, 1_700_000_004),
        tag_event("shuffle", "", None, 1_700_000_004),
        contact_event(
            "add_external_contact",
            "<State><![CDATA[mall:ch42]]></State><WelcomeCode><![CDATA[WC]]></WelcomeCode>",
            1_700_000_005,
        ),
        contact_event(
            "add_half_external_contact",
            "<State><![CDATA[teststate]]></State>",
            1_700_000_005,
        ),
        contact_event("edit_external_contact", "", 1_700_000_006),
        contact_event(
            "del_external_contact",
            "<Source><![CDATA[DELETE_BY_TRANSFER]]></Source>",
            1_700_000_007,
        ),
        contact_event("del_follow_user", "", 1_700_000_008),
        contact_event(
            "transfer_fail",
            "<FailReason><![CDATA[customer_refused]]></FailReason>",
            1_700_000_009,
        ),
    ]
}

/// A signed POST of `encrypt` (as the `Encrypt` of the envelope).
async fn post_encrypted(
    t: &TestApp,
    tenant: &str,
    encrypt: &str,
    signature: Option<String>,
) -> u16 {
    let (ts, nonce) = ("1700000000", "nonce42");
    let sig = signature.unwrap_or_else(|| crypto().signature(ts, nonce, encrypt));
    let body = build_envelope(CORP, "1000002", encrypt);
    t.client
        .post(t.url(&format!("/wecom/callback/{tenant}")))
        .query(&[
            ("msg_signature", sig.as_str()),
            ("timestamp", ts),
            ("nonce", nonce),
        ])
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post_event(t: &TestApp, xml: &str) -> u16 {
    post_encrypted(t, "acme", &crypto().encrypt(xml), None).await
}

async fn wait_received(t: &TestApp, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} events recorded"),
        Duration::from_secs(20),
        || async {
            let r = received(t).await;
            (r.len() >= n).then_some(r)
        },
    )
    .await
}

#[tokio::test]
async fn url_verification_answers_the_decrypted_echostr_as_plain_text() {
    let t = spawn_app().await;
    // WeCom's official sample (wecom-api.md §4.5 Set A); the corp id is the receive id.
    let mut body = tenant_body();
    body["corp_id"] = json!("wx5823bf96d3bd56c7");
    t.admin(Method::PUT, "/admin/v1/tenants/sample", Some(body))
        .await;
    let resp = t
        .client
        .get(t.url("/wecom/callback/sample"))
        .query(&[
            ("msg_signature", "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"),
            ("timestamp", "1409659589"),
            ("nonce", "263014780"),
            ("echostr", "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "1616140317555161061");
    let bad = t
        .client
        .get(t.url("/wecom/callback/sample"))
        .query(&[("msg_signature", "0000000000000000000000000000000000000000"), ("timestamp", "1409659589"), ("nonce", "263014780"), ("echostr", "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    t.shutdown().await;
}

#[tokio::test]
async fn every_event_type_becomes_one_queued_job() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let events = every_event();
    for xml in &events {
        assert_eq!(post_event(&t, xml).await, 200, "{xml}");
    }
    let got = wait_received(&t, events.len()).await;
    assert_eq!(got.len(), events.len());
    let kinds: Vec<_> = got
        .iter()
        .map(|e| e["after"]["change"].as_str().unwrap().to_string())
        .collect();
    for change in [
        "create",
        "update",
        "delete",
        "shuffle",
        "add_external_contact",
        "add_half_external_contact",
        "edit_external_contact",
        "del_external_contact",
        "del_follow_user",
        "transfer_fail",
    ] {
        assert!(
            kinds.iter().any(|k| k == change),
            "{change} missing from {kinds:?}"
        );
    }
    let (_, status) = t
        .admin(Method::GET, "/admin/v1/tenants/acme/status", None)
        .await;
    assert!(status["last_event_at"].is_string(), "{status}");
    t.shutdown().await;
}

#[tokio::test]
async fn the_same_callback_delivered_three_times_is_one_job() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let xml = contact_event("edit_external_contact", "", 1_700_000_100);
    // WeCom re-sends the same event; each copy is encrypted afresh (new random prefix).
    for _ in 0..3 {
        assert_eq!(post_event(&t, &xml).await, 200);
    }
    // A different event in the same second is not a duplicate (wecom-api.md §9 P1).
    assert_eq!(
        post_event(&t, &contact_event("del_follow_user", "", 1_700_000_100)).await,
        200
    );
    wait_received(&t, 2).await;
    wait_for("the queue to drain", Duration::from_secs(10), || async {
        let c = t.app.queue.counts().await.unwrap();
        (c.pending == 0 && c.in_flight == 0).then_some(())
    })
    .await;
    assert_eq!(received(&t).await.len(), 2);
    t.shutdown().await;
}

#[tokio::test]
async fn a_wrong_signature_is_401_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let encrypt = crypto().encrypt(&every_event()[0]);
    assert_eq!(
        post_encrypted(&t, "acme", &encrypt, Some("f".repeat(40))).await,
        401
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn an_event_for_another_corp_is_401_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    // Encrypted for this app but naming another corp inside.
    let xml = every_event()[0].replace(CORP, "wwSOMEONEELSE");
    assert_eq!(post_event(&t, &xml).await, 401);
    // Encrypted with another receive id (another corp's app sharing the key).
    let other = CallbackCrypto::new(TOKEN, AES_KEY, "wwSOMEONEELSE").unwrap();
    assert_eq!(
        post_encrypted(&t, "acme", &other.encrypt(&every_event()[0]), None).await,
        401
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn truncated_event_xml_is_400_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let xml = every_event()[7].clone();
    assert_eq!(post_event(&t, &xml[..xml.len() / 2]).await, 400);
    // A truncated envelope too.
    let resp = t
        .client
        .post(t.url("/wecom/callback/acme"))
        .query(&[("msg_signature", "x"), ("timestamp", "1"), ("nonce", "n")])
        .body("<xml><ToUserName><![CDATA[ww")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn a_non_base64_encrypt_is_400_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    assert_eq!(post_encrypted(&t, "acme", "not*base64!!", None).await, 400);
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn bad_padding_is_400_with_nothing_recorded() {
    use base64::Engine;
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(crypto().encrypt(&every_event()[0])).unwrap();
    // CBC: flipping a bit of the second-to-last ciphertext block flips the same bit of the
    // last plaintext block — here the pad byte, which becomes ≥ 64 and so invalid.
    let n = raw.len();
    raw[n - 17] ^= 0x40;
    assert_eq!(
        post_encrypted(&t, "acme", &b64.encode(raw), None).await,
        400
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn an_oversize_body_is_413_with_nothing_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let encrypt = "A".repeat(tagsync::api::wecom_callback::MAX_BODY);
    assert_eq!(post_encrypted(&t, "acme", &encrypt, None).await, 413);
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn an_unknown_tenant_is_404() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    assert_eq!(
        post_encrypted(&t, "nobody", &crypto().encrypt(&every_event()[0]), None).await,
        404
    );
    assert_nothing_recorded(&t).await;
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_events_and_a_disabled_tenant_are_acknowledged_but_not_recorded() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let unknown = every_event()[0].replace("change_external_tag", "change_external_chat");
    assert_eq!(post_event(&t, &unknown).await, 200);
    let message = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[u]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId></xml>"
    );
    assert_eq!(post_event(&t, &message).await, 200);
    t.admin(
        Method::PATCH,
        "/admin/v1/tenants/acme/settings",
        Some(json!({"tags_enabled": false})),
    )
    .await;
    assert_eq!(
        post_event(&t, &every_event()[1]).await,
        200,
        "still verified and acknowledged"
    );
    assert_nothing_recorded(&t).await;
    // A bad signature is still refused while the feature is off.
    assert_eq!(
        post_encrypted(
            &t,
            "acme",
            &crypto().encrypt(&every_event()[1]),
            Some("0".repeat(40))
        )
        .await,
        401
    );
    t.shutdown().await;
}
