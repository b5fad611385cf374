//! The WeCom simulator acting as WeCom against a real `serve`: the URL check when the callback
//! URL is saved, every event type delivered encrypted and signed, duplicates absorbed.

use crate::helpers::*;
use std::time::Duration;
use tagsync::domain::CorpId;
use tagsync::sim::wecom::{SimConfig, WecomSim};
use tagsync::wecom::crypto::{CallbackCrypto, build_envelope};

// The app registered by `tenant_body()`.
const CORP: &str = "ww5823bf96d3bd56c7";
const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

async fn wecom_for(t: &TestApp) -> WecomSim {
    WecomSim::start(SimConfig {
        corp_id: CorpId::parse(CORP).unwrap(),
        callback_token: TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
        callback_url: Some(t.url("/wecom/callback/acme")),
        ..SimConfig::default()
    })
    .await
}

async fn received_changes(t: &TestApp) -> Vec<String> {
    let mut out: Vec<String> = t
        .audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "event.received")
        .map(|e| {
            let a = &e["after"];
            format!(
                "{}:{}",
                a["change"].as_str().unwrap(),
                a["tag_type"]
                    .as_str()
                    .or(a["user_id"].as_str())
                    .unwrap_or("order")
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn saving_the_callback_url_in_the_simulator_passes_tagsyncs_url_check() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let wecom = wecom_for(&t).await;
    wecom
        .verify_url(&t.url("/wecom/callback/acme"))
        .await
        .expect("URL verification");
    assert!(
        wecom
            .verify_url(&t.url("/wecom/callback/nobody"))
            .await
            .is_err(),
        "an unknown tenant fails the check"
    );
    wecom.stop().await;
    t.shutdown().await;
}

#[tokio::test]
async fn every_event_type_from_the_simulator_becomes_one_queued_job() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let wecom = wecom_for(&t).await;
    let console = wecom.console();
    let vip = console
        .create_group("VIP", 10, &[("Gold", 2), ("Silver", 1)])
        .unwrap(); // tag_group create
    let bronze = console.create_tag(&vip.group_id, "Bronze", 0).unwrap(); // tag create
    console.rename(&bronze, "Bronze+").unwrap(); // tag update
    console.rename(&vip.group_id, "VIP+").unwrap(); // tag_group update
    console
        .reorder_tags(&vip.group_id, &[&bronze, &vip.tag_ids[0], &vip.tag_ids[1]])
        .unwrap(); // shuffle of a group
    let other = console.create_group("Region", 5, &[("North", 0)]).unwrap(); // tag_group create
    console
        .reorder_groups(&[&other.group_id, &vip.group_id])
        .unwrap(); // shuffle of the group order
    console.delete(&bronze).unwrap(); // tag delete
    console.delete(&other.group_id).unwrap(); // tag_group delete
    console
        .add_relation("sales1", "wmCustomer1", Some("mall:ch42"))
        .unwrap(); // add_external_contact
    console
        .add_half_relation("sales2", "wmCustomer1", Some("mall:ch42"))
        .unwrap(); // add_half_external_contact
    console
        .tag_relation("sales1", "wmCustomer1", &[&vip.tag_ids[0]], &[])
        .unwrap(); // edit_external_contact
    console.add_relation("sales3", "wmCustomer1", None).unwrap(); // add_external_contact
    console
        .customer_deletes_member("sales3", "wmCustomer1")
        .unwrap(); // del_follow_user
    console
        .transfer_failed("sales4", "wmCustomer1", "customer_refused")
        .unwrap(); // transfer_fail
    console.delete_relation("sales1", "wmCustomer1").unwrap(); // del_external_contact
    let sent = wecom.wait_for_callbacks(16, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 16);
    assert!(
        sent.iter().all(|c| c.delivered && c.answers == [Some(200)]),
        "each callback answered 200 at once: {sent:?}"
    );

    let got = wait_for("16 events recorded", Duration::from_secs(20), || async {
        let r = received_changes(&t).await;
        (r.len() >= 16).then_some(r)
    })
    .await;
    let mut expected = vec![
        "create:tag_group",
        "create:tag",
        "update:tag",
        "update:tag_group",
        "shuffle:order",
        "create:tag_group",
        "shuffle:order",
        "delete:tag",
        "delete:tag_group",
        "add_external_contact:sales1",
        "add_half_external_contact:sales2",
        "edit_external_contact:sales1",
        "add_external_contact:sales3",
        "del_follow_user:sales3",
        "transfer_fail:sales4",
        "del_external_contact:sales1",
    ];
    expected.sort();
    assert_eq!(got, expected);
    wecom.stop().await;
    t.shutdown().await;
}

#[tokio::test]
async fn a_callback_delivered_three_times_is_one_job() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let wecom = wecom_for(&t).await;
    wecom
        .console()
        .add_relation("sales1", "wmCustomer9", None)
        .unwrap();
    let sent = wecom.wait_for_callbacks(1, Duration::from_secs(10)).await;
    // WeCom re-sends when it sees no answer within 5 s (§4.3): two more copies of the same
    // event, each encrypted afresh, as WeCom's re-sends are.
    let crypto = CallbackCrypto::new(TOKEN, AES_KEY, CORP).unwrap();
    for n in 0..2 {
        let encrypt = crypto.encrypt(&sent[0].xml);
        let (ts, nonce) = ("1700000000", format!("resend{n}"));
        let sig = crypto.signature(ts, &nonce, &encrypt);
        let resp = t
            .client
            .post(t.url("/wecom/callback/acme"))
            .query(&[
                ("msg_signature", sig.as_str()),
                ("timestamp", ts),
                ("nonce", nonce.as_str()),
            ])
            .body(build_envelope(CORP, "1000002", &encrypt))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    wait_for("the queue to drain", Duration::from_secs(10), || async {
        let c = t.app.queue.counts().await.unwrap();
        (c.pending == 0 && c.in_flight == 0 && !received_changes(&t).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(received_changes(&t).await, ["add_external_contact:sales1"]);
    wecom.stop().await;
    t.shutdown().await;
}
