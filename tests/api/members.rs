//! The operator API's member routes: a member's view (hub tags, binding, WeCom relations),
//! changes of one member's hub tags, batches, validation, audit, and the jobs they queue.
//! (What the sync jobs do on WeCom and the mall is the engine's, tested with it.)

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tagsync::api::{Surface, dispatch};
use tagsync::app::App;
use tagsync::domain::*;
use tagsync::http::HttpRequest;
use tagsync::ports::Write;
use tagsync::sim::mall::{MallSim, MallSimConfig, NewMember};

const MEMBERS: &str = "/admin/v1/tenants/acme/members";
const BATCH: &str = "/admin/v1/tenants/acme/member-tags:batch";

async fn setup() -> TestApp {
    let t = spawn_app().await;
    let (status, body) = t.put_tenant("acme").await;
    assert_eq!(status, 201, "{body}");
    know_members(&t.app, &ROSTER).await;
    t
}

/// The members these tests change: known to the hub, as a member sync leaves every mall member
/// (the tenant's mall is not reachable here, so nobody else could vouch for them).
const ROSTER: [&str; 5] = ["m_1", "m_2", "m_3", "m_9", "m_ok"];

/// A refused request wrote nothing: the member has no hub tags.
async fn assert_no_hub_tags(t: &TestApp, member: &str) {
    let stored = t
        .app
        .store
        .get_member_tags(&acme(), &MemberId::new_unchecked(member))
        .await
        .unwrap();
    assert!(stored.is_none(), "{member} has hub tags: {stored:?}");
}

/// Binds `members` in the hub (unbound to any customer), as a member sync or a webhook would.
async fn know_members(app: &App, members: &[&str]) {
    let writes: Vec<Write> = members
        .iter()
        .map(|m| {
            Write::Binding(MemberBinding {
                tenant: acme(),
                member_id: MemberId::new_unchecked(*m),
                external_userid: None,
                unionid: None,
                bound_at: Timestamp::from_millis(0),
                version: 0,
            })
        })
        .collect();
    for chunk in writes.chunks(100) {
        app.store.transact(chunk.to_vec()).await.unwrap();
    }
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// A tag group with `n` tags (1..=99), through the library route; answers the tag ids.
async fn create_tags(t: &TestApp, n: usize) -> Vec<String> {
    let tags: Vec<Value> = (0..n).map(|i| json!({"name": format!("t{i}")})).collect();
    let (status, group) = t
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/tag-groups",
            Some(json!({"name": "g", "tags": tags})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    group["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

async fn change(t: &TestApp, member: &str, body: Value) -> (u16, Value) {
    t.admin(
        Method::POST,
        &format!("{MEMBERS}/{member}/tags"),
        Some(body),
    )
    .await
}

async fn member(t: &TestApp, member: &str) -> (u16, Value) {
    t.admin(Method::GET, &format!("{MEMBERS}/{member}"), None)
        .await
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The `member.tags_changed` audit entries of tenant `acme`, newest first.
async fn tag_changes(t: &TestApp) -> Vec<Value> {
    t.audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "member.tags_changed")
        .collect()
}

/// The app without a server or workers, called through `dispatch`: queued jobs stay queued,
/// so the queue shows exactly what a route sent.
struct Direct {
    app: App,
    _dir: tempfile::TempDir,
}

impl Direct {
    /// With the tenant's mall at `mall` (the simulator), and the roster known to the hub.
    async fn with_mall(mall: &MallSim) -> Self {
        let d = Self::new().await;
        let mut body = tenant_body();
        body["mall_api_base"] = json!(mall.base_url());
        body["mall_api_token"] = json!("mall-sim-token");
        let (status, answer) = d.call(Method::PUT, "/admin/v1/tenants/acme", body).await;
        assert_eq!(status, 200, "{answer}");
        d
    }

    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = Self {
            app: sqlite_app(dir.path()).await,
            _dir: dir,
        };
        let (status, body) = d
            .call(Method::PUT, "/admin/v1/tenants/acme", tenant_body())
            .await;
        assert_eq!(status, 201, "{body}");
        know_members(&d.app, &ROSTER).await;
        d
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
        );
        headers.insert("content-type", "application/json".parse().unwrap());
        let req = HttpRequest {
            method,
            path: path.into(),
            query: vec![],
            headers,
            body: if body.is_null() {
                bytes::Bytes::new()
            } else {
                serde_json::to_vec(&body).unwrap().into()
            },
            request_id: "test".into(),
        };
        let resp = dispatch(&self.app, Surface::All, req).await;
        (
            resp.status,
            serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
        )
    }

    async fn create_tags(&self, n: usize) -> Vec<String> {
        let tags: Vec<Value> = (0..n).map(|i| json!({"name": format!("t{i}")})).collect();
        let (status, group) = self
            .call(
                Method::POST,
                "/admin/v1/tenants/acme/tag-groups",
                json!({"name": "g", "tags": tags}),
            )
            .await;
        assert_eq!(status, 201, "{group}");
        // The library jobs the creation queued are not this file's subject: take them off.
        loop {
            let got = self
                .app
                .queue
                .receive(10, Duration::from_secs(60), Duration::ZERO)
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            for d in &got {
                self.app.queue.ack(d).await.unwrap();
            }
        }
        group["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Every job waiting in the queue (received, so invisible afterwards).
    async fn queued_jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        loop {
            let got = self
                .app
                .queue
                .receive(10, Duration::from_secs(60), Duration::ZERO)
                .await
                .unwrap();
            if got.is_empty() {
                return jobs;
            }
            jobs.extend(got.into_iter().map(|d| d.job.unwrap()));
        }
    }
}

/// The members named by SyncMember jobs (each must come from the operator).
/// The members of queued `SyncMember` and `SyncMembers` jobs.
fn synced_members(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .flat_map(|j| match &j.kind {
            JobKind::SyncMember { member, hint } => {
                assert_eq!(hint.origin, Actor::Operator, "{j:?}");
                assert_eq!(j.tenant, acme());
                vec![member.to_string()]
            }
            JobKind::SyncMembers { members, hint } => {
                assert_eq!(hint.origin, Actor::Operator, "{j:?}");
                assert_eq!(j.tenant, acme());
                members.iter().map(ToString::to_string).collect()
            }
            other => panic!("unexpected job {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The member view.

/// A tenant whose mall is a simulator holding one member (`only_in_mall`, which the hub has
/// not seen); answers the app, the simulator and that member's id.
async fn setup_with_mall() -> (TestApp, MallSim, String) {
    let mall = MallSim::start(MallSimConfig::default()).await.unwrap();
    let t = spawn_app().await;
    let mut body = tenant_body();
    body["mall_api_base"] = json!(mall.base_url());
    body["mall_api_token"] = json!("mall-sim-token");
    let (status, answer) = t
        .admin(Method::PUT, "/admin/v1/tenants/acme", Some(body))
        .await;
    assert_eq!(status, 201, "{answer}");
    know_members(&t.app, &ROSTER).await;
    let only_in_mall = mall_only_member(&mall);
    (t, mall, only_in_mall)
}

/// A member created in the mall that the hub has not seen (the simulator numbers its members
/// `m_1`, `m_2`…: ids the roster already uses are skipped).
fn mall_only_member(mall: &MallSim) -> String {
    loop {
        let id = mall
            .operator()
            .create_member(NewMember::external("wm_new"))
            .unwrap()
            .id
            .to_string();
        if !ROSTER.contains(&id.as_str()) {
            return id;
        }
    }
}

#[tokio::test]
async fn a_member_neither_the_hub_nor_the_mall_knows_is_404() {
    let (t, _mall, _) = setup_with_mall().await;
    let (status, body) = member(&t, "m_nobody").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert!(message(&body).contains("unknown member"), "{body}");
    // An id that cannot be a member id (a control character once decoded) names no member.
    let (status, _) = member(&t, "m%0A1").await;
    assert_eq!(status, 404);
    let (status, _) = t
        .admin(Method::GET, "/admin/v1/tenants/nobody/members/m_1", None)
        .await;
    assert_eq!(status, 404, "unknown tenant");
    t.shutdown().await;
}

#[tokio::test]
async fn a_member_only_the_mall_knows_is_shown_without_hub_tags() {
    let (t, _mall, only_in_mall) = setup_with_mall().await;
    let (status, body) = member(&t, &only_in_mall).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["member_id"], only_in_mall.as_str());
    assert_eq!(body["tag_ids"], json!([]));
    t.shutdown().await;
}

#[tokio::test]
async fn a_tag_change_for_a_member_nobody_knows_is_404_and_writes_and_queues_nothing() {
    let mall = MallSim::start(MallSimConfig::default()).await.unwrap();
    let d = Direct::with_mall(&mall).await;
    let tags = d.create_tags(1).await;
    let (status, body) = d
        .call(
            Method::POST,
            &format!("{MEMBERS}/m_nobody/tags"),
            json!({"add": [tags[0]]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        message(&body).contains("neither the hub nor the mall"),
        "{body}"
    );
    assert!(
        d.app
            .store
            .get_member_tags(&acme(), &MemberId::new_unchecked("m_nobody"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(synced_members(&d.queued_jobs().await).is_empty());
}

#[tokio::test]
async fn a_tag_change_for_a_member_only_the_mall_knows_is_accepted_on_first_use() {
    let (t, _mall, only_in_mall) = setup_with_mall().await;
    let tags = create_tags(&t, 1).await;
    let (status, body) = change(&t, &only_in_mall, json!({"add": [tags[0]]})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tag_ids"], json!([tags[0]]));
    t.shutdown().await;
}

#[tokio::test]
async fn a_batch_leaves_out_unknown_members_names_them_and_queues_only_known_ones() {
    let mall = MallSim::start(MallSimConfig::default()).await.unwrap();
    let d = Direct::with_mall(&mall).await;
    let only_in_mall = mall_only_member(&mall);
    let tags = d.create_tags(1).await;
    // 10,000 items for nobody beside two real members: the hub knows m_1, the mall knows the
    // other. Nobody's items are not written and not queued. (Members are looked up in id
    // order; the mall's member comes before the `unknown_` ones, within the look-up cap.)
    let mut items: Vec<Value> = (0..9_998)
        .map(|i| json!({"member_id": format!("unknown_{i}"), "add": [tags[0]]}))
        .collect();
    items.push(json!({"member_id": "m_1", "add": [tags[0]]}));
    items.push(json!({"member_id": only_in_mall, "add": [tags[0]]}));
    let (status, body) = d.call(Method::POST, BATCH, json!({"items": items})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["members"], 2, "{body}");
    let unknown = &body["unknown_members"];
    assert_eq!(unknown["count"], 9_998, "{unknown}");
    let listed = unknown["members"].as_array().unwrap();
    assert_eq!(listed.len(), 20, "the first 20 are named");
    assert!(
        listed
            .iter()
            .all(|u| u["member_id"].as_str().unwrap().starts_with("unknown_"))
    );
    assert!(
        listed
            .iter()
            .all(|u| !u["reason"].as_str().unwrap().is_empty())
    );
    // Only the two real members were queued, and the mall was asked about no more than the
    // cap of unseen members (not about ten thousand).
    let mut queued = synced_members(&d.queued_jobs().await);
    queued.sort();
    let mut want = vec!["m_1".to_string(), only_in_mall.clone()];
    want.sort();
    assert_eq!(queued, want);
    let looked_up: BTreeSet<String> = mall
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/members/"))
        .map(|r| r.path.clone())
        .collect();
    // 50: the route's cap on mall look-ups per request (`MALL_LOOKUPS`).
    assert!(
        looked_up.len() <= 50,
        "{} members looked up in the mall",
        looked_up.len()
    );
}

#[tokio::test]
async fn a_batch_of_only_unknown_members_is_404_and_writes_and_queues_nothing() {
    let mall = MallSim::start(MallSimConfig::default()).await.unwrap();
    let d = Direct::with_mall(&mall).await;
    let tags = d.create_tags(1).await;
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"member_id": format!("ghost_{i}"), "add": [tags[0]]}))
        .collect();
    let (status, body) = d.call(Method::POST, BATCH, json!({"items": items})).await;
    assert_eq!(status, 404, "{body}");
    assert!(message(&body).contains("ghost_0"), "{body}");
    assert!(synced_members(&d.queued_jobs().await).is_empty());
}

#[tokio::test]
async fn the_member_view_maps_relation_tags_to_hub_ids_and_leaves_out_unmapped_ones() {
    let t = setup().await;
    let tags = create_tags(&t, 2).await;
    let now = Timestamp::from_millis(1_700_000_000_000);
    let link = |wecom: &str, hub: &str| {
        Write::Link(IdLink {
            tenant: acme(),
            side: Side::Wecom,
            kind: EntityKind::Tag,
            side_id: wecom.into(),
            hub_id: hub.into(),
        })
    };
    let relations = BTreeMap::from([
        (
            WecomUserId::new_unchecked("sales_1"),
            BTreeSet::from([
                WecomTagId::new_unchecked("et_a"),
                WecomTagId::new_unchecked("et_unmapped"),
            ]),
        ),
        (
            WecomUserId::new_unchecked("sales_2"),
            BTreeSet::from([
                WecomTagId::new_unchecked("et_b"),
                WecomTagId::new_unchecked("et_a"),
            ]),
        ),
    ]);
    t.app
        .store
        .transact(vec![
            Write::Binding(MemberBinding {
                tenant: acme(),
                member_id: MemberId::new_unchecked("m_view"),
                external_userid: Some(ExternalUserId::new_unchecked("wm_view")),
                unionid: None,
                bound_at: now,
                version: 0,
            }),
            Write::Customer(CustomerRelations {
                tenant: acme(),
                external_userid: ExternalUserId::new_unchecked("wm_view"),
                relations,
                marking: Default::default(),
                updated_at: now,
                version: 0,
            }),
            link("et_a", &tags[0]),
            link("et_b", &tags[1]),
        ])
        .await
        .unwrap();

    let (status, view) = member(&t, "m_view").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view,
        json!({
            "member_id": "m_view",
            "external_userid": "wm_view",
            "tag_ids": [],
            "relations": [
                {"userid": "sales_1", "tag_ids": [tags[0]]},
                {"userid": "sales_2", "tag_ids": sorted(vec![tags[0].clone(), tags[1].clone()])},
            ],
        })
    );
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Changing one member's tags.

#[tokio::test]
async fn a_tag_change_shows_in_the_member_view_and_in_the_audit_log_as_an_operator_change() {
    let t = setup().await;
    let tags = create_tags(&t, 3).await;
    let (a, b, c) = (&tags[0], &tags[1], &tags[2]);

    let (status, body) = change(&t, "m_1", json!({"add": [b, a]})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"member_id": "m_1", "tag_ids": sorted(vec![a.clone(), b.clone()])})
    );
    let (status, view) = member(&t, "m_1").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["tag_ids"], json!(sorted(vec![a.clone(), b.clone()])));
    assert_eq!(view["external_userid"], Value::Null, "not bound");
    assert_eq!(view["relations"], json!([]));

    let (status, body) = change(&t, "m_1", json!({"add": [c], "remove": [a]})).await;
    assert_eq!(status, 202, "{body}");
    let after = sorted(vec![b.clone(), c.clone()]);
    assert_eq!(body["tag_ids"], json!(after));
    let (_, view) = member(&t, "m_1").await;
    assert_eq!(view["tag_ids"], json!(after));

    // Stored as marks decided by the operator: the removed tag is kept, absent.
    let stored = t
        .app
        .store
        .get_member_tags(&acme(), &MemberId::new_unchecked("m_1"))
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.marks[&HubTagId::new_unchecked(a.as_str())].present);
    assert!(stored.marks[&HubTagId::new_unchecked(c.as_str())].present);

    let entries = tag_changes(&t).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let newest = &entries[0];
    assert_eq!(newest["side"], "hub");
    assert_eq!(newest["origin"], "operator:admin-token");
    assert_eq!(newest["entity"], "member:m_1");
    assert_eq!(
        newest["before"],
        json!({"tag_ids": sorted(vec![a.clone(), b.clone()])})
    );
    assert_eq!(newest["after"], json!({"tag_ids": after}));
    assert_eq!(entries[1]["before"], json!({"tag_ids": []}));
    t.shutdown().await;
}

#[tokio::test]
async fn a_tag_change_refuses_unknown_and_deleted_tag_ids_by_name() {
    let t = setup().await;
    let tags = create_tags(&t, 2).await;
    let (status, _) = t
        .admin(
            Method::DELETE,
            &format!("/admin/v1/tenants/acme/tags/{}", tags[1]),
            None,
        )
        .await;
    assert_eq!(status, 204);

    let (status, body) = change(&t, "m_1", json!({"add": [tags[0], "no-such-tag"]})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(message(&body).contains("`no-such-tag` (add[1])"), "{body}");
    assert!(!message(&body).contains(&tags[0]), "the live tag is fine");

    let (status, body) = change(&t, "m_1", json!({"remove": [tags[1]]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains(&tags[1]), "a deleted tag: {body}");

    assert_no_hub_tags(&t, "m_1").await;
    assert!(tag_changes(&t).await.is_empty());
    t.shutdown().await;
}

#[tokio::test]
async fn a_tag_change_refuses_an_id_in_both_add_and_remove() {
    let t = setup().await;
    let tags = create_tags(&t, 2).await;
    let (status, body) = change(
        &t,
        "m_1",
        json!({"add": [tags[0], tags[1]], "remove": [tags[1]]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("remove[0]"), "{body}");
    assert!(message(&body).contains(&tags[1]), "{body}");
    assert_no_hub_tags(&t, "m_1").await;
    t.shutdown().await;
}

#[tokio::test]
async fn a_tag_change_without_any_tag_id_is_refused() {
    let t = setup().await;
    for body in [
        json!({}),
        json!({"add": [], "remove": []}),
        json!({"add": null}),
    ] {
        let (status, answer) = change(&t, "m_1", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(message(&answer).contains("`add`"), "{answer}");
        assert!(message(&answer).contains("`remove`"), "{answer}");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn a_tag_change_refuses_unknown_fields_and_malformed_lists_naming_the_field() {
    let t = setup().await;
    let tags = create_tags(&t, 1).await;
    let cases = [
        (json!({"add": [tags[0]], "remvoe": [tags[0]]}), "remvoe"),
        (json!({"add": tags[0]}), "`add`"),
        (json!({"add": [tags[0], 7]}), "`add[1]`"),
        (json!({"remove": [""]}), "`remove[0]`"),
    ];
    for (body, field) in cases {
        let (status, answer) = change(&t, "m_1", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(message(&answer).contains(field), "{body} → {answer}");
    }
    let (status, answer) = t
        .admin(Method::DELETE, &format!("{MEMBERS}/m_1/tags"), None)
        .await;
    assert_eq!(status, 405, "{answer}");
    t.shutdown().await;
}

#[tokio::test]
async fn concurrent_changes_of_one_member_all_land() {
    let t = setup().await;
    let tags = create_tags(&t, 4).await;
    let one = |i: usize| change(&t, "m_1", json!({"add": [tags[i]]}));
    let (a, b, c, d) = tokio::join!(one(0), one(1), one(2), one(3));
    for (status, body) in [a, b, c, d] {
        assert_eq!(status, 202, "{body}");
    }
    let (_, view) = member(&t, "m_1").await;
    assert_eq!(view["tag_ids"], json!(sorted(tags.clone())));
    assert_eq!(tag_changes(&t).await.len(), 4);
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Batches.

#[tokio::test]
async fn a_batch_writes_every_member_once_and_answers_its_counts() {
    let t = setup().await;
    let tags = create_tags(&t, 5).await;
    const MEMBERS_N: usize = 500;
    const ITEMS: usize = 2_000;
    let roster: Vec<String> = (0..MEMBERS_N)
        .map(|i| format!("m_{i}"))
        .filter(|m| !ROSTER.contains(&m.as_str()))
        .collect();
    know_members(
        &t.app,
        &roster.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    // Item i is for member i % 500, so each member gets four items; the last one removes the
    // tag the first one added (later items win over earlier ones for the same tag).
    let items: Vec<Value> = (0..ITEMS)
        .map(|i| {
            let m = format!("m_{}", i % MEMBERS_N);
            match i / MEMBERS_N {
                0 => json!({"member_id": m, "add": [tags[0], tags[1 + i % 4]]}),
                1 => json!({"member_id": m, "add": [tags[i % 5]]}),
                2 => json!({"member_id": m, "add": [tags[2]], "remove": [tags[3]]}),
                _ => json!({"member_id": m, "remove": [tags[0]]}),
            }
        })
        .collect();
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in &items {
        let set = expected
            .entry(item["member_id"].as_str().unwrap().to_string())
            .or_default();
        for a in item["add"].as_array().into_iter().flatten() {
            set.insert(a.as_str().unwrap().to_string());
        }
        for r in item["remove"].as_array().into_iter().flatten() {
            set.remove(r.as_str().unwrap());
        }
    }

    let started = Instant::now();
    let (status, body) = t
        .admin(Method::POST, BATCH, Some(json!({"items": items})))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 202, "{body}");
    eprintln!("batch of {ITEMS} items over {MEMBERS_N} members answered in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "a batch of {ITEMS} items took {took:?}"
    );
    assert_eq!(body["members"], MEMBERS_N);
    assert_eq!(body["items"], ITEMS);
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    assert!(!batch_id.is_empty());

    for (m, want) in &expected {
        let stored = t
            .app
            .store
            .get_member_tags(&acme(), &MemberId::new_unchecked(m.as_str()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{m} was not written"));
        let present: BTreeSet<String> = stored
            .marks
            .iter()
            .filter(|(_, mark)| mark.present)
            .map(|(id, _)| id.to_string())
            .collect();
        assert_eq!(&present, want, "{m}");
        assert!(!present.contains(&tags[0]), "the later remove wins for {m}");
    }
    let entries = tag_changes(&t).await;
    assert_eq!(entries.len(), MEMBERS_N, "one audit entry per member");
    let audited: BTreeSet<&str> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["origin"], "operator");
            assert_eq!(e["after"]["batch_id"], batch_id.as_str());
            e["entity"].as_str().unwrap()
        })
        .collect();
    assert_eq!(audited.len(), MEMBERS_N);
    t.shutdown().await;
}

#[tokio::test]
async fn a_batch_queues_its_distinct_members_in_one_job_per_hundred() {
    let d = Direct::new().await;
    let tags = d.create_tags(2).await;
    let items = json!([
        {"member_id": "m_1", "add": [tags[0]]},
        {"member_id": "m_2", "add": [tags[0]], "remove": [tags[1]]},
        {"member_id": "m_1", "remove": [tags[0]]},
        {"member_id": "m_3", "add": [tags[1]]},
        {"member_id": "m_2", "add": [tags[1]]},
    ]);
    let (status, body) = d.call(Method::POST, BATCH, json!({"items": items})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["members"], 3);
    assert_eq!(body["items"], 5);
    assert_eq!(
        d.app.queue.counts().await.unwrap().pending,
        1,
        "one job for up to 100 members (their mall writes go in one request)"
    );
    let mut members = synced_members(&d.queued_jobs().await);
    members.sort();
    assert_eq!(members, ["m_1", "m_2", "m_3"]);

    // A single change queues one job too.
    let (status, body) = d
        .call(
            Method::POST,
            &format!("{MEMBERS}/m_9/tags"),
            json!({"add": [tags[0]]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(synced_members(&d.queued_jobs().await), ["m_9"]);
}

#[tokio::test]
async fn a_batch_names_the_failing_item_by_index_and_writes_nothing() {
    let t = setup().await;
    let tags = create_tags(&t, 2).await;
    let ok = json!({"member_id": "m_ok", "add": [tags[0]]});
    let cases = [
        (json!({"member_id": "m_2"}), "items[1].add"),
        (json!({"add": [tags[0]]}), "items[1].member_id"),
        (
            json!({"member_id": "", "add": [tags[0]]}),
            "items[1].member_id",
        ),
        (json!({"member_id": "m_2", "add": [3]}), "items[1].add[0]"),
        (
            json!({"member_id": "m_2", "add": [tags[0]], "remove": [tags[0]]}),
            "items[1].remove[0]",
        ),
        (
            json!({"member_id": "m_2", "add": [tags[0]], "note": "x"}),
            "items[1].note",
        ),
        (json!("m_2"), "items[1]"),
        (
            json!({"member_id": "m_2", "add": ["no-such-tag"]}),
            "items[1].add[0]",
        ),
    ];
    for (bad, field) in cases {
        let (status, body) = t
            .admin(Method::POST, BATCH, Some(json!({"items": [ok, bad]})))
            .await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert!(message(&body).contains(field), "{bad} → {body}");
    }
    for body in [json!({}), json!({"items": []}), json!({"items": {}})] {
        let (status, answer) = t.admin(Method::POST, BATCH, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(message(&answer).contains("`items`"), "{answer}");
    }
    assert_no_hub_tags(&t, "m_ok").await;
    assert!(tag_changes(&t).await.is_empty());
    t.shutdown().await;
}

#[tokio::test]
async fn a_batch_of_more_than_10000_items_is_refused() {
    let t = setup().await;
    let tags = create_tags(&t, 1).await;
    let items: Vec<Value> = (0..10_001)
        .map(|i| json!({"member_id": format!("m_{i}"), "add": [tags[0]]}))
        .collect();
    let (status, body) = t
        .admin(Method::POST, BATCH, Some(json!({"items": items})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("`items`"), "{body}");
    assert!(message(&body).contains("10000"), "{body}");
    assert_no_hub_tags(&t, "m_0").await;
    t.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Switches.

#[tokio::test]
async fn with_member_sync_off_the_hub_change_is_recorded_but_no_job_is_queued() {
    let d = Direct::new().await;
    let tags = d.create_tags(1).await;
    let (status, body) = d
        .call(
            Method::PATCH,
            "/admin/v1/tenants/acme/settings",
            json!({"member_sync": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = d
        .call(
            Method::POST,
            &format!("{MEMBERS}/m_1/tags"),
            json!({"add": [tags[0]]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = d
        .call(
            Method::POST,
            BATCH,
            json!({"items": [{"member_id": "m_2", "add": [tags[0]]}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    for m in ["m_1", "m_2"] {
        let (status, view) = d
            .call(Method::GET, &format!("{MEMBERS}/{m}"), Value::Null)
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["tag_ids"], json!([tags[0]]), "{m}");
    }
    let counts = d.app.queue.counts().await.unwrap();
    assert_eq!((counts.pending, counts.in_flight, counts.dead), (0, 0, 0));
}
