//! The simulator's callbacks: a tiny receiver verifies and decrypts them with
//! `CallbackCrypto`, proving they are signed and encrypted as WeCom's are (§4, §5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tagsync::sim::wecom::{SimConfig, WecomSim};
use tagsync::wecom::classify::ApiOp;
use tagsync::wecom::crypto::{CallbackCrypto, parse_envelope};
use tagsync::wecom::event::{ContactChangeType, EventKind, TagChangeType, TagType, WecomEvent};

use crate::helpers::{eventually, harness};

/// What tagsync's callback endpoint does, minus the queue.
struct Receiver {
    crypto: CallbackCrypto,
    /// What to answer to POSTs.
    status: AtomicU16,
    /// How long to take before answering (a slow tagsync).
    delay_ms: AtomicU64,
    posts: AtomicUsize,
    events: Mutex<Vec<WecomEvent>>,
    envelopes: Mutex<Vec<(Option<String>, Option<String>)>>,
}

type Q = Query<HashMap<String, String>>;

async fn receive(State(r): State<Arc<Receiver>>, Query(q): Q, body: String) -> StatusCode {
    r.posts.fetch_add(1, Ordering::SeqCst);
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::OK {
        return status;
    }
    let Ok(env) = parse_envelope(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let p = |k: &str| q.get(k).cloned().unwrap_or_default();
    if r.crypto
        .verify(
            &p("msg_signature"),
            &p("timestamp"),
            &p("nonce"),
            &env.encrypt,
        )
        .is_err()
    {
        return StatusCode::FORBIDDEN;
    }
    let Ok(xml) = r.crypto.decrypt(&env.encrypt) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(event) = WecomEvent::parse(&xml) else {
        return StatusCode::BAD_REQUEST;
    };
    r.envelopes
        .lock()
        .unwrap()
        .push((env.to_user_name, env.agent_id));
    r.events.lock().unwrap().push(event);
    StatusCode::OK
}

/// The URL check (§4.2): verify, decrypt `echostr`, answer the plaintext.
async fn verify(State(r): State<Arc<Receiver>>, Query(q): Q) -> (StatusCode, String) {
    let p = |k: &str| q.get(k).cloned().unwrap_or_default();
    if r.crypto
        .verify(
            &p("msg_signature"),
            &p("timestamp"),
            &p("nonce"),
            &p("echostr"),
        )
        .is_err()
    {
        return (StatusCode::FORBIDDEN, String::new());
    }
    match r.crypto.decrypt(&p("echostr")) {
        Ok(plain) => (StatusCode::OK, plain),
        Err(_) => (StatusCode::BAD_REQUEST, String::new()),
    }
}

/// Starts a receiver for `config`'s app on loopback; returns it and its URL.
async fn receiver(config: &SimConfig, key: &str) -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver {
        crypto: CallbackCrypto::new(&config.callback_token, key, config.corp_id.as_str()).unwrap(),
        status: AtomicU16::new(200),
        delay_ms: AtomicU64::new(0),
        posts: AtomicUsize::new(0),
        events: Mutex::new(vec![]),
        envelopes: Mutex::new(vec![]),
    });
    let app = axum::Router::new()
        .route("/callback", get(verify).post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

async fn sim_with_receiver() -> (WecomSim, Arc<Receiver>) {
    sim_with_receiver_timing(Duration::from_secs(5)).await
}

/// `callback_timeout`: how long the simulator waits for tagsync's answer.
async fn sim_with_receiver_timing(callback_timeout: Duration) -> (WecomSim, Arc<Receiver>) {
    let config = SimConfig {
        callback_retry_delay: Duration::from_millis(20),
        callback_timeout,
        ..SimConfig::default()
    };
    let (r, url) = receiver(&config, &config.encoding_aes_key).await;
    let sim = WecomSim::start(SimConfig {
        callback_url: Some(url),
        ..config
    })
    .await;
    (sim, r)
}

fn events(r: &Receiver) -> Vec<WecomEvent> {
    r.events.lock().unwrap().clone()
}

fn tag_change(
    e: &WecomEvent,
) -> (
    TagChangeType,
    Option<String>,
    Option<TagType>,
    Option<String>,
) {
    match &e.kind {
        EventKind::TagChange {
            change,
            id,
            tag_type,
            strategy_id,
        } => (
            change.clone(),
            id.clone(),
            tag_type.clone(),
            strategy_id.clone(),
        ),
        other => panic!("expected a tag change, got {other:?}"),
    }
}

#[tokio::test]
async fn console_changes_send_signed_encrypted_callbacks_in_order() {
    let (sim, r) = sim_with_receiver().await;
    let c = sim.console();
    let g = c
        .create_group("Level", 1, &[("gold", 2), ("silver", 1)])
        .unwrap();
    let t = c.create_tag(&g.group_id, "bronze", 0).unwrap();
    c.rename(&t, "copper").unwrap();
    c.reorder_tags(&g.group_id, &[&t, &g.tag_ids[0], &g.tag_ids[1]])
        .unwrap();
    c.reorder_groups(&[&g.group_id]).unwrap();
    c.delete(&t).unwrap();
    let s = c
        .create_strategy_group(3, "Region", 0, &[("north", 0)])
        .unwrap();
    c.add_relation("alice", "wmC1", Some("mall:ch42")).unwrap();
    c.tag_relation("alice", "wmC1", &[&g.tag_ids[0]], &[])
        .unwrap();
    c.delete_relation("alice", "wmC1").unwrap();
    c.delete(&g.group_id).unwrap();

    eventually("11 callbacks", || events(&r).len() == 11).await;
    let ev = events(&r);
    let corp = sim.config().corp_id.clone();
    assert!(
        ev.iter()
            .all(|e| e.to_user_name == corp && e.from_user_name == "sys")
    );
    let group = Some(TagType::TagGroup);
    let tag = Some(TagType::Tag);
    let gid = Some(g.group_id.clone());
    // One tag_group create for a console group, no per-tag events (§12).
    assert_eq!(
        tag_change(&ev[0]),
        (TagChangeType::Create, gid.clone(), group.clone(), None)
    );
    assert_eq!(
        tag_change(&ev[1]),
        (TagChangeType::Create, Some(t.clone()), tag.clone(), None)
    );
    assert_eq!(
        tag_change(&ev[2]),
        (TagChangeType::Update, Some(t.clone()), tag.clone(), None)
    );
    assert_eq!(
        tag_change(&ev[3]),
        (TagChangeType::Shuffle, gid.clone(), None, None)
    );
    // An empty Id means the group order changed (§8).
    assert_eq!(
        tag_change(&ev[4]),
        (TagChangeType::Shuffle, None, None, None)
    );
    assert_eq!(
        tag_change(&ev[5]),
        (TagChangeType::Delete, Some(t.clone()), tag, None)
    );
    assert_eq!(
        tag_change(&ev[6]),
        (
            TagChangeType::Create,
            Some(s.group_id),
            group.clone(),
            Some("3".into())
        )
    );
    match &ev[7].kind {
        EventKind::ContactChange {
            change,
            user_id,
            external_user_id,
            state,
            welcome_code,
            ..
        } => {
            assert_eq!(*change, ContactChangeType::Add);
            assert_eq!(
                (user_id.as_str(), external_user_id.as_str()),
                ("alice", "wmC1")
            );
            assert_eq!(state.as_deref(), Some("mall:ch42"));
            assert!(welcome_code.is_some());
        }
        other => panic!("{other:?}"),
    }
    let contact_change = |e: &WecomEvent| match &e.kind {
        EventKind::ContactChange { change, .. } => change.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(contact_change(&ev[8]), ContactChangeType::Edit);
    assert_eq!(contact_change(&ev[9]), ContactChangeType::Del);
    // A group deletion is one tag_group event; its tags go silently (§5.2).
    assert_eq!(
        tag_change(&ev[10]),
        (TagChangeType::Delete, gid, group, None)
    );

    let envelopes = r.envelopes.lock().unwrap().clone();
    assert!(envelopes.iter().all(|(to, agent)| {
        to.as_deref() == Some(corp.as_str()) && agent.as_deref() == Some("1000002")
    }));
    // The simulator records an answer once it has read it, which can be just after the
    // receiver has handled the event: wait for the records, then check every one was answered
    // 200 on its first try.
    eventually("11 callbacks recorded as done", || {
        sim.callbacks().iter().filter(|c| c.done).count() == 11
    })
    .await;
    let records = sim.callbacks();
    assert!(
        records
            .iter()
            .all(|c| c.delivered && c.answers == [Some(200)]),
        "{records:?}"
    );
}

#[tokio::test]
async fn silent_changes_send_no_callback() {
    let (sim, r) = sim_with_receiver().await;
    let s = sim.silent();
    let g = s.create_group("Quiet", 0, &[("a", 0)]).unwrap();
    let t = s.create_tag(&g.group_id, "b", 0).unwrap();
    s.rename(&t, "bb").unwrap();
    s.reorder_tags(&g.group_id, &[&t]).unwrap();
    s.add_relation("alice", "wmC1", None).unwrap();
    s.tag_relation("alice", "wmC1", &[&t], &[]).unwrap();
    s.delete_relation("alice", "wmC1").unwrap();
    s.delete(&g.group_id).unwrap();
    // A console change afterwards is the marker: once it arrives, nothing came before it.
    sim.console().create_group("Loud", 0, &[("x", 0)]).unwrap();
    eventually("the marker callback", || !events(&r).is_empty()).await;
    assert_eq!(events(&r).len(), 1);
    assert_eq!(r.posts.load(Ordering::SeqCst), 1);
    assert_eq!(sim.callbacks().len(), 1);
}

#[tokio::test]
async fn failed_callbacks_are_resent_three_times() {
    let (sim, r) = sim_with_receiver().await;
    r.status.store(503, Ordering::SeqCst);
    sim.console().create_group("G", 0, &[("t", 0)]).unwrap();
    let records = sim.wait_for_callbacks(1, Duration::from_secs(5)).await;
    assert!(records[0].done);
    assert!(!records[0].delivered);
    assert_eq!(records[0].answers, [Some(503); 4]);
    assert_eq!(r.posts.load(Ordering::SeqCst), 4);
    // A receiver that recovers gets the next one first time.
    r.status.store(200, Ordering::SeqCst);
    sim.console()
        .create_tag(&sim.library()[0].id, "u", 0)
        .unwrap();
    let records = sim.wait_for_callbacks(2, Duration::from_secs(5)).await;
    assert_eq!(records[1].answers, [Some(200)]);
}

#[tokio::test]
async fn callbacks_answered_too_slowly_are_resent_three_times() {
    let (sim, r) = sim_with_receiver_timing(Duration::from_millis(200)).await;
    r.delay_ms.store(2_000, Ordering::SeqCst);
    sim.console().create_group("G", 0, &[("t", 0)]).unwrap();
    let records = sim.wait_for_callbacks(1, Duration::from_secs(5)).await;
    assert!(records[0].done && !records[0].delivered);
    assert_eq!(records[0].answers, [None; 4], "a timeout has no status");
    assert_eq!(r.posts.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn callbacks_without_a_url_are_recorded_undelivered() {
    let h = harness().await;
    h.sim.console().create_group("G", 0, &[("t", 0)]).unwrap();
    let records = h.sim.callbacks();
    assert_eq!(records.len(), 1);
    assert!(records[0].done && !records[0].delivered);
    assert!(
        records[0]
            .xml
            .contains("<Event><![CDATA[change_external_tag]]></Event>")
    );
}

#[tokio::test]
async fn url_verification_succeeds_only_with_the_right_key() {
    let (sim, _r) = sim_with_receiver().await;
    let config = SimConfig::default();
    let (_, good_url) = receiver(&config, &config.encoding_aes_key).await;
    sim.verify_url(&good_url).await.unwrap();
    let (_, bad_url) = receiver(&config, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR").await;
    let e = sim.verify_url(&bad_url).await.unwrap_err();
    assert!(e.contains("400") || e.contains("403"), "{e}");
}

async fn control(sim: &WecomSim, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/{path}", sim.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v["result"].clone()
}

#[tokio::test]
async fn the_http_control_surface_drives_the_same_simulator() {
    let (sim, r) = sim_with_receiver().await;
    let g = control(
        &sim,
        "groups",
        json!({"name": "Level", "order": 2, "tags": [{"name": "gold", "order": 1}]}),
    )
    .await;
    let tag_id = g["tag_ids"][0].as_str().unwrap().to_owned();
    control(
        &sim,
        "customers",
        json!({"external_userid": "wmC1", "name": "One"}),
    )
    .await;
    control(
        &sim,
        "relations",
        json!({"userid": "alice", "external_userid": "wmC1", "state": "s1"}),
    )
    .await;
    control(
        &sim,
        "relations/tags",
        json!({"userid": "alice", "external_userid": "wmC1", "add": [tag_id]}),
    )
    .await;
    control(
        &sim,
        "rename",
        json!({"id": tag_id, "name": "GOLD", "silent": true}),
    )
    .await;
    assert_eq!(
        sim.relation_tags("alice", "wmC1").unwrap(),
        [tag_id.as_str()]
    );
    assert_eq!(sim.library()[0].tags[0].name, "GOLD");
    eventually("3 callbacks", || events(&r).len() == 3).await;

    // Faults, tokens and logs over HTTP too.
    control(
        &sim,
        "faults",
        json!({"op": "externalcontact/get_follow_user_list", "errcode": -1}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = crate::helpers::client(
        &sim,
        crate::helpers::store_in(dir.path()),
        Arc::new(tagsync::ports::SystemClock),
    );
    let creds = sim.credentials();
    assert_eq!(
        client
            .get_follow_user_list(&creds)
            .await
            .unwrap_err()
            .errcode,
        Some(-1)
    );
    control(&sim, "tokens/invalidate", json!({})).await;
    client.get_follow_user_list(&creds).await.unwrap();
    assert_eq!(sim.call_count(ApiOp::GetToken), 2);

    let calls: Value = reqwest::get(format!("{}/calls", sim.control_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = calls["result"].as_array().unwrap();
    assert!(calls.iter().any(|c| c["errcode"] == 40014));
    // The log never holds the secret or a token.
    let text = serde_json::to_string(calls).unwrap();
    assert!(!text.contains(sim.config().secret.expose()));
    let library: Value = reqwest::get(format!("{}/library", sim.control_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(library["result"][0]["owner"], "console");

    let bad = reqwest::Client::new()
        .post(format!("{}/rename", sim.control_url()))
        .json(&json!({"id": "etNope", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
}
