//! A permanent failure is not retried for ever: the job is parked with its reason, the object
//! shows the side as failed, and once the cause is fixed a redrive carries the change.

use crate::drive::*;
use crate::support::world::World;
use reqwest::Method;
use serde_json::{Value, json};
use tagsync::sim::mall::MallSimConfig;

/// The tenant's registration as `World::start` makes it, with another mall API base and token.
fn registration(w: &World, mall_base: &str, mall_token: &str) -> Value {
    let sim = w.wecom.config();
    json!({
        "corp_id": sim.corp_id.as_str(),
        "agent_id": sim.agent_id,
        "corp_secret": sim.secret.expose(),
        "callback_token": sim.callback_token,
        "encoding_aes_key": sim.encoding_aes_key,
        "mall_api_base": mall_base,
        "mall_api_token": mall_token,
        "mall_webhook_secret": MallSimConfig::default().webhook_secret,
    })
}

async fn put_tenant(w: &World, mall_token: &str) {
    put_tenant_at(w, &w.mall.base_url(), mall_token).await;
}

async fn put_tenant_at(w: &World, mall_base: &str, mall_token: &str) {
    let (status, body) = w
        .request(
            Method::PUT,
            &format!("/admin/v1/tenants/{}", w.tenant),
            Some(registration(w, mall_base, mall_token)),
        )
        .await;
    assert_eq!(status, 200, "PUT tenant: {body}");
}

/// A loopback address nothing listens on: connections to it are refused.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/api")
}

async fn dead_letters(w: &World) -> Vec<Value> {
    let (status, body) = w.admin(Method::GET, "/dead-letters", None).await;
    assert_eq!(status, 200, "GET …/dead-letters: {body}");
    body["dead_letters"].as_array().cloned().unwrap_or_default()
}

async fn redrive(w: &World) -> u64 {
    let (status, body) = w.admin(Method::POST, "/dead-letters:redrive", None).await;
    assert_eq!(status, 200, "POST …/dead-letters:redrive: {body}");
    body["redriven"].as_u64().unwrap_or(0)
}

/// The hub tag named `tag` in group `group`, or the test fails showing the hub's library.
async fn hub_tag(w: &World, group: &str, tag: &str) -> Value {
    match w.hub_tag(group, tag).await {
        Some(t) => t,
        None => panic!("the hub has no tag {group}/{tag}: {}", w.hub_groups().await),
    }
}

async fn must_settle(w: &World) {
    if let Err(e) = settle(w, "settling").await {
        panic!("{e}");
    }
}

async fn must_converge(w: &World) {
    must_settle(w).await;
    let problems = converged(w, &[]).await;
    assert!(
        problems.is_empty(),
        "not converged:\n  - {}\n{}",
        problems.join("\n  - "),
        views(w).await
    );
}

/// A mall group `G1` with tags `a` and `b`, carried everywhere.
async fn one_group(w: &World) {
    let op = w.mall.operator();
    let g = op.create_group("G1", 3).unwrap();
    op.create_tag(&g.id, "a", 2).unwrap();
    op.create_tag(&g.id, "b", 1).unwrap();
    must_converge(w).await;
}

/// The mall stops taking tagsync's token (the operator rotated it and tagsync still has the
/// old one): a rename made in WeCom cannot reach the mall. The job is parked with the mall's
/// 401 as its reason and the tag shows the mall as failed; with the token fixed, a redrive
/// carries the rename.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_is_parked_with_its_reason_and_succeeds_when_redriven() {
    let w = start().await;
    one_group(&w).await;
    let token = MallSimConfig::default().tokens[0].clone();

    put_tenant(&w, "a-revoked-mall-token-0000").await;
    let a = w.wecom_tag("G1", "a").expect("WeCom has G1/a");
    w.wecom.console().rename(&a.id, "a2").unwrap();
    must_settle(&w).await;

    let parked = dead_letters(&w).await;
    assert!(
        !parked.is_empty(),
        "nothing parked: {:#?}",
        w.problems().await
    );
    let reasons: Vec<String> = parked
        .iter()
        .map(|d| d["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("401")
            || r.to_lowercase().contains("unauthorized")
            || r.to_lowercase().contains("token")),
        "the reason names the refused token: {parked:#?}"
    );
    assert!(
        parked
            .iter()
            .all(|d| d["receive_count"].as_u64() == Some(1)),
        "a permanent failure is parked on its first try, not retried: {parked:#?}"
    );
    // Checked once the rest has been seen, so a failure shows everything that is off.
    let mut off = Vec::new();
    // The hub takes WeCom's rename before the mall leg fails, or keeps the old name.
    let tag = match w.hub_tag("G1", "a2").await {
        Some(t) => t,
        None => hub_tag(&w, "G1", "a").await,
    };
    if tag["sync"]["mall"] != "failed" {
        off.push(format!(
            "while parked, the tag should show the mall as failed: {tag}"
        ));
    }
    assert_eq!(w.mall_tag("G1", "a").map(|t| t.name), Some("a".into()));

    put_tenant(&w, &token).await;
    let n = redrive(&w).await;
    assert_eq!(n, parked.len() as u64, "every parked job goes back");
    must_converge(&w).await;
    assert!(dead_letters(&w).await.is_empty());
    let tag = hub_tag(&w, "G1", "a2").await;
    assert_eq!(tag["sync"]["mall"], "synced", "{tag}");
    assert!(w.mall_tag("G1", "a2").is_some(), "{:#?}", w.mall.library());
    w.stop().await;
    assert!(off.is_empty(), "{}", off.join("\n"));
}

/// A name the mall holds for a tag tagsync does not manage (made there without a webhook):
/// the rename cannot be carried, the job is parked naming the holder, the tag shows the mall
/// as failed; once the operator removes the stray tag, a redrive carries the rename.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_held_by_an_unmanaged_mall_tag_is_parked_and_goes_through_once_freed() {
    let w = start().await;
    one_group(&w).await;
    let g1 = w.mall_group("G1").expect("mall G1").group.id;
    let stray = w.mall.silent().create_tag(&g1, "x", 9).unwrap();

    let a = w.wecom_tag("G1", "a").expect("WeCom has G1/a");
    w.wecom.console().rename(&a.id, "x").unwrap();
    must_settle(&w).await;

    let parked = dead_letters(&w).await;
    assert_eq!(parked.len(), 1, "one job parked: {parked:#?}");
    let reason = parked[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains(stray.id.as_str()) || reason.contains("`x`"),
        "the reason names the name and its holder: {reason}"
    );
    let tag = hub_tag(&w, "G1", "x").await;
    assert_eq!(tag["sync"]["mall"], "failed", "{tag}");
    assert_eq!(tag["sync"]["wecom"], "synced", "{tag}");

    w.mall.silent().delete_tag(&stray.id).unwrap();
    assert_eq!(redrive(&w).await, 1);
    must_converge(&w).await;
    assert!(dead_letters(&w).await.is_empty());
    let tag = hub_tag(&w, "G1", "x").await;
    assert_eq!(tag["sync"]["mall"], "synced", "{tag}");
    w.stop().await;
}

/// The mall cannot be reached at all (tagsync's registration points at a port nothing listens
/// on): a group and a tag the operator creates cannot get there. Their jobs are retried, then
/// parked, and the library shows them `failed` in the mall with the reason — not `pending`, as
/// if something were still on its way; once the mall is back, a redrive carries them
/// everywhere and they show `synced`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mall_parks_the_jobs_and_the_library_shows_them_failed_until_a_redrive_succeeds()
 {
    let w = start().await;
    one_group(&w).await;
    let token = MallSimConfig::default().tokens[0].clone();
    put_tenant_at(&w, &closed_port().await, &token).await;

    let (status, created) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "G2", "tags": [{"name": "c"}]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    must_settle(&w).await;

    let parked = dead_letters(&w).await;
    assert!(
        !parked.is_empty(),
        "nothing parked: {:#?}",
        w.problems().await
    );
    for d in &parked {
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains("gave up after 5 tries"), "{d:#}");
    }
    let group = w.hub_group("G2").await.expect("the hub has G2");
    let tag = hub_tag(&w, "G2", "c").await;
    for (what, view) in [("group", &group), ("tag", &tag)] {
        assert_eq!(view["sync"]["mall"], "failed", "{what}: {view:#}");
        let why = view["errors"]["mall"].as_str().unwrap_or_default();
        assert!(
            why.contains("gave up after 5 tries"),
            "the {what} shows why: {view:#}"
        );
        // WeCom is reachable: reached (synced), or, if the parked job never got there,
        // failed with the same reason — never left pending.
        match view["sync"]["wecom"].as_str() {
            Some("synced") => {}
            Some("failed") => assert!(view["errors"]["wecom"].is_string(), "{view:#}"),
            _ => panic!("the {what} is left pending in WeCom: {view:#}"),
        }
    }

    put_tenant(&w, &token).await;
    assert_eq!(redrive(&w).await, parked.len() as u64);
    must_converge(&w).await;
    assert!(dead_letters(&w).await.is_empty());
    let group = w.hub_group("G2").await.expect("the hub has G2");
    let tag = hub_tag(&w, "G2", "c").await;
    for view in [&group, &tag] {
        assert_eq!(
            view["sync"],
            json!({"wecom": "synced", "mall": "synced"}),
            "{view:#}"
        );
        assert_eq!(
            view["errors"],
            json!({"wecom": null, "mall": null}),
            "{view:#}"
        );
    }
    assert!(w.mall_tag("G2", "c").is_some(), "{:#?}", w.mall.library());
    assert!(w.wecom_tag("G2", "c").is_some());
    w.stop().await;
}
