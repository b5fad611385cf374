//! The operator API's tag library routes (hub side): groups and tags, validation, conflicts,
//! deletion, audit.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use tagsync::domain::{HubGroupId, HubTagId, SideLink, Tag, TenantId};
use tagsync::ports::Write;

const GROUPS: &str = "/admin/v1/tenants/acme/tag-groups";
const TAGS: &str = "/admin/v1/tenants/acme/tags";

async fn setup() -> TestApp {
    let t = spawn_app().await;
    let (status, body) = t.put_tenant("acme").await;
    assert_eq!(status, 201, "{body}");
    t
}

async fn create_group(t: &TestApp, body: Value) -> Value {
    let (status, group) = t.admin(Method::POST, GROUPS, Some(body)).await;
    assert_eq!(status, 201, "{group}");
    group
}

async fn list(t: &TestApp) -> Vec<Value> {
    let (status, body) = t.admin(Method::GET, GROUPS, None).await;
    assert_eq!(status, 200, "{body}");
    body["groups"].as_array().unwrap().clone()
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[tokio::test]
async fn created_group_with_tags_is_listed_back_pending_on_both_sides_without_side_ids() {
    let t = setup().await;
    let created = create_group(
        &t,
        json!({"name": "会员等级", "order": 5, "tags": [{"name": "金卡", "order": 2}, {"name": "银卡"}]}),
    )
    .await;
    assert_eq!(created["name"], "会员等级");
    assert_eq!(created["order"], 5);
    assert_eq!(names(&created["tags"]), ["金卡", "银卡"]);
    let groups = list(&t).await;
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g, &created, "the listing shows what the POST answered");
    assert_eq!(g["wecom_id"], Value::Null);
    assert_eq!(g["mall_id"], Value::Null);
    assert_eq!(g["sync"], json!({"wecom": "pending", "mall": "pending"}));
    for tag in g["tags"].as_array().unwrap() {
        assert_eq!(tag["wecom_id"], Value::Null);
        assert_eq!(tag["mall_id"], Value::Null);
        assert_eq!(tag["sync"], json!({"wecom": "pending", "mall": "pending"}));
        assert_eq!(tag["group_id"], g["id"]);
    }
    assert_eq!(g["tags"][1]["order"], 0, "order defaults to 0");
    // Stored with its per-field times.
    let stored = t
        .app
        .store
        .get_group(&acme(), &HubGroupId::new_unchecked(id(g)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.name_at, stored.order_at);
    assert!(stored.deleted_at.is_none());
    t.shutdown().await;
}

#[tokio::test]
async fn groups_and_tags_are_listed_by_order_descending_then_by_id() {
    let t = setup().await;
    let a = create_group(
        &t,
        json!({"name": "A", "order": 1, "tags": [{"name": "a1"}]}),
    )
    .await;
    let b = create_group(
        &t,
        json!({"name": "B", "order": 9, "tags": [{"name": "b1"}]}),
    )
    .await;
    let c = create_group(
        &t,
        json!({"name": "C", "order": 1, "tags": [
            {"name": "low", "order": 1}, {"name": "high", "order": 7}, {"name": "low2", "order": 1}
        ]}),
    )
    .await;
    let groups = list(&t).await;
    let ids: Vec<String> = groups.iter().map(id).collect();
    // a and c share order 1: ids are time-ordered, so a comes first.
    assert_eq!(ids, [id(&b), id(&a), id(&c)]);
    assert_eq!(names(&groups[2]["tags"]), ["high", "low", "low2"]);
    t.shutdown().await;
}

#[tokio::test]
async fn group_and_tag_are_renamed_and_reordered() {
    let t = setup().await;
    let g = create_group(&t, json!({"name": "Level", "tags": [{"name": "Gold"}]})).await;
    let gid = id(&g);
    let tid = id(&g["tags"][0]);
    let before = t
        .app
        .store
        .get_group(&acme(), &HubGroupId::new_unchecked(&gid))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let (status, patched) = t
        .admin(
            Method::PATCH,
            &format!("{GROUPS}/{gid}"),
            Some(json!({"name": "Tier", "order": 3})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "Tier");
    assert_eq!(patched["order"], 3);
    assert_eq!(names(&patched["tags"]), ["Gold"]);
    let after = t
        .app
        .store
        .get_group(&acme(), &HubGroupId::new_unchecked(&gid))
        .await
        .unwrap()
        .unwrap();
    assert!(after.name_at > before.name_at && after.order_at > before.order_at);

    // Only the order: the name's time stays.
    let (status, _) = t
        .admin(
            Method::PATCH,
            &format!("{GROUPS}/{gid}"),
            Some(json!({"order": 4})),
        )
        .await;
    assert_eq!(status, 200);
    let again = t
        .app
        .store
        .get_group(&acme(), &HubGroupId::new_unchecked(&gid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.name_at, after.name_at);
    assert_eq!(again.order, 4);

    let (status, tag) = t
        .admin(
            Method::PATCH,
            &format!("{TAGS}/{tid}"),
            Some(json!({"name": "Platinum", "order": 8})),
        )
        .await;
    assert_eq!(status, 200, "{tag}");
    assert_eq!(tag["name"], "Platinum");
    assert_eq!(tag["order"], 8);
    assert_eq!(tag["sync"], json!({"wecom": "pending", "mall": "pending"}));
    let groups = list(&t).await;
    assert_eq!(groups[0]["name"], "Tier");
    assert_eq!(groups[0]["order"], 4);
    assert_eq!(groups[0]["tags"][0]["name"], "Platinum");
    assert_eq!(groups[0]["tags"][0]["order"], 8);
    t.shutdown().await;
}

#[tokio::test]
async fn tag_is_created_in_a_group_and_moved_to_another() {
    let t = setup().await;
    let g1 = create_group(
        &t,
        json!({"name": "G1", "order": 2, "tags": [{"name": "x"}]}),
    )
    .await;
    let g2 = create_group(
        &t,
        json!({"name": "G2", "order": 1, "tags": [{"name": "y"}]}),
    )
    .await;
    let (status, tag) = t
        .admin(
            Method::POST,
            TAGS,
            Some(json!({"group_id": id(&g1), "name": "mover", "order": 3})),
        )
        .await;
    assert_eq!(status, 201, "{tag}");
    assert_eq!(tag["group_id"], g1["id"]);
    assert_eq!(tag["sync"], json!({"wecom": "pending", "mall": "pending"}));
    let tid = id(&tag);
    let stored = |t: &TestApp| {
        let store = t.app.store.clone();
        let tid = tid.clone();
        async move {
            store
                .get_tag(&acme(), &HubTagId::new_unchecked(tid))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let before = stored(&t).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let (status, moved) = t
        .admin(
            Method::PATCH,
            &format!("{TAGS}/{tid}"),
            Some(json!({"group_id": id(&g2)})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["group_id"], g2["id"]);
    let after = stored(&t).await;
    assert!(after.group_at > before.group_at, "a move sets group_at");
    assert_eq!(after.name_at, before.name_at);
    assert_eq!(after.order_at, before.order_at);
    let groups = list(&t).await;
    assert_eq!(names(&groups[0]["tags"]), ["x"]);
    assert_eq!(names(&groups[1]["tags"]), ["mover", "y"]);
    t.shutdown().await;
}

#[tokio::test]
async fn deleted_tags_and_groups_leave_the_listing_and_stay_marked_in_the_store() {
    let t = setup().await;
    let g1 = create_group(
        &t,
        json!({"name": "G1", "tags": [{"name": "a"}, {"name": "b"}]}),
    )
    .await;
    let g2 = create_group(&t, json!({"name": "G2", "tags": [{"name": "c"}]})).await;
    let a = id(&g1["tags"][0]);
    let (status, body) = t.admin(Method::DELETE, &format!("{TAGS}/{a}"), None).await;
    assert_eq!(status, 204, "{body}");
    let groups = list(&t).await;
    assert_eq!(names(&groups[0]["tags"]), ["b"]);
    let tag = t
        .app
        .store
        .get_tag(&acme(), &HubTagId::new_unchecked(&a))
        .await
        .unwrap()
        .unwrap();
    assert!(tag.deleted_at.is_some(), "the deleted tag is kept, marked");

    let (status, _) = t
        .admin(Method::DELETE, &format!("{GROUPS}/{}", id(&g2)), None)
        .await;
    assert_eq!(status, 204);
    let groups = list(&t).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["id"], g1["id"]);
    let c = t
        .app
        .store
        .get_tag(&acme(), &HubTagId::new_unchecked(id(&g2["tags"][0])))
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.deleted_at.is_some(),
        "the tags of a deleted group are deleted too"
    );
    let g = t
        .app
        .store
        .get_group(&acme(), &HubGroupId::new_unchecked(id(&g2)))
        .await
        .unwrap()
        .unwrap();
    assert!(g.deleted_at.is_some());

    // Deleting again is harmless; patching a deleted object is 404.
    let (status, _) = t
        .admin(Method::DELETE, &format!("{GROUPS}/{}", id(&g2)), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = t.admin(Method::DELETE, &format!("{TAGS}/{a}"), None).await;
    assert_eq!(status, 204);
    let (status, body) = t
        .admin(
            Method::PATCH,
            &format!("{GROUPS}/{}", id(&g2)),
            Some(json!({"name": "back"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = t
        .admin(
            Method::PATCH,
            &format!("{TAGS}/{a}"),
            Some(json!({"order": 1})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // A deleted group takes no new tags, and its name is free again.
    let (status, _) = t
        .admin(
            Method::POST,
            TAGS,
            Some(json!({"group_id": id(&g2), "name": "d"})),
        )
        .await;
    assert_eq!(status, 404);
    create_group(&t, json!({"name": "G2", "tags": [{"name": "c"}]})).await;
    t.shutdown().await;
}

#[tokio::test]
async fn validation_errors_answer_400_naming_the_field() {
    let t = setup().await;
    let g = create_group(&t, json!({"name": "G", "tags": [{"name": "t"}]})).await;
    let gid = id(&g);
    let tid = id(&g["tags"][0]);
    let long = "标".repeat(31);
    let group_patch = format!("{GROUPS}/{gid}");
    let tag_patch = format!("{TAGS}/{tid}");
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (
            Method::POST,
            GROUPS,
            json!({"tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "", "tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": long, "tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": " G2", "tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2 ", "tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G\n2", "tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": 7, "tags": [{"name": "a"}]}),
            "name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "order": -1, "tags": [{"name": "a"}]}),
            "order",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "order": 4294967296u64, "tags": [{"name": "a"}]}),
            "order",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "order": 1.5, "tags": [{"name": "a"}]}),
            "order",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "order": "1", "tags": [{"name": "a"}]}),
            "order",
        ),
        (Method::POST, GROUPS, json!({"name": "G2"}), "tags"),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "tags": "a"}),
            "tags",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "tags": ["a"]}),
            "tags[0]",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "tags": [{"name": "a"}, {"name": "\tb"}]}),
            "tags[1].name",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "tags": [{"name": "a", "order": -2}]}),
            "tags[0].order",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "tags": [{"name": "a", "colour": "red"}]}),
            "tags[0].colour",
        ),
        (
            Method::POST,
            GROUPS,
            json!({"name": "G2", "nmae": "x", "tags": [{"name": "a"}]}),
            "nmae",
        ),
        (Method::PATCH, &group_patch, json!({"name": ""}), "name"),
        (Method::PATCH, &group_patch, json!({"name": long}), "name"),
        (Method::PATCH, &group_patch, json!({"order": -3}), "order"),
        (Method::PATCH, &group_patch, json!({"tags": []}), "tags"),
        (Method::POST, TAGS, json!({"name": "n"}), "group_id"),
        (
            Method::POST,
            TAGS,
            json!({"group_id": 5, "name": "n"}),
            "group_id",
        ),
        (
            Method::POST,
            TAGS,
            json!({"group_id": gid, "name": "n\u{0}"}),
            "name",
        ),
        (Method::POST, TAGS, json!({"group_id": gid}), "name"),
        (
            Method::POST,
            TAGS,
            json!({"group_id": gid, "name": "n", "order": 1e3}),
            "order",
        ),
        (
            Method::POST,
            TAGS,
            json!({"group_id": gid, "name": "n", "id": "x"}),
            "id",
        ),
        (Method::PATCH, &tag_patch, json!({"name": "  "}), "name"),
        (Method::PATCH, &tag_patch, json!({"order": true}), "order"),
        (
            Method::PATCH,
            &tag_patch,
            json!({"group_id": ""}),
            "group_id",
        ),
        (
            Method::PATCH,
            &tag_patch,
            json!({"deleted": true}),
            "deleted",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, resp) = t.admin(method.clone(), path, Some(body.clone())).await;
        assert_eq!(status, 400, "{method} {path} {body}: {resp}");
        assert_eq!(resp["error"]["code"], "invalid_request");
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{field}")),
            "message for {field} does not name it: {message}"
        );
    }
    let raw = t
        .client
        .post(t.url(GROUPS))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    // 30 characters is fine, however many bytes they take; nothing above changed anything.
    create_group(
        &t,
        json!({"name": "标".repeat(30), "tags": [{"name": "a"}]}),
    )
    .await;
    let groups = list(&t).await;
    assert_eq!(groups.len(), 2);
    let g = groups.iter().find(|x| x["id"] == gid.as_str()).unwrap();
    assert_eq!(g["name"], "G");
    assert_eq!(g["order"], 0);
    assert_eq!(names(&g["tags"]), ["t"]);
    assert_eq!(g["tags"][0]["order"], 0);
    t.shutdown().await;
}

#[tokio::test]
async fn duplicate_names_are_refused_with_409_naming_the_clash() {
    let t = setup().await;
    let g1 = create_group(
        &t,
        json!({"name": "VIP", "tags": [{"name": "Gold"}, {"name": "Silver"}]}),
    )
    .await;
    let g2 = create_group(&t, json!({"name": "Other", "tags": [{"name": "Gold"}]})).await;
    let silver = id(&g1["tags"][1]);
    let other_gold = id(&g2["tags"][0]);
    let conflicts: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            GROUPS.into(),
            json!({"name": "VIP", "tags": [{"name": "x"}]}),
            "VIP",
        ),
        (
            Method::PATCH,
            format!("{GROUPS}/{}", id(&g2)),
            json!({"name": "VIP"}),
            "VIP",
        ),
        (
            Method::POST,
            GROUPS.into(),
            json!({"name": "New", "tags": [{"name": "x"}, {"name": "x"}]}),
            "tags[1].name",
        ),
        (
            Method::POST,
            TAGS.into(),
            json!({"group_id": id(&g1), "name": "Gold"}),
            "Gold",
        ),
        (
            Method::PATCH,
            format!("{TAGS}/{silver}"),
            json!({"name": "Gold"}),
            "Gold",
        ),
        (
            Method::PATCH,
            format!("{TAGS}/{other_gold}"),
            json!({"group_id": id(&g1)}),
            "Gold",
        ),
    ];
    for (method, path, body, clash) in conflicts {
        let (status, resp) = t.admin(method.clone(), &path, Some(body.clone())).await;
        assert_eq!(status, 409, "{method} {path} {body}: {resp}");
        assert_eq!(resp["error"]["code"], "conflict");
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(message.contains(clash), "{message} does not name {clash}");
    }
    // Names are compared exactly, as both platforms do: case differs, so no clash.
    create_group(&t, json!({"name": "vip", "tags": [{"name": "x"}]})).await;
    let (status, _) = t
        .admin(
            Method::POST,
            TAGS,
            Some(json!({"group_id": id(&g1), "name": "gold"})),
        )
        .await;
    assert_eq!(status, 201);
    // Keeping one's own name is no clash.
    let (status, _) = t
        .admin(
            Method::PATCH,
            &format!("{GROUPS}/{}", id(&g1)),
            Some(json!({"name": "VIP", "order": 2})),
        )
        .await;
    assert_eq!(status, 200);
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_answer_404() {
    let t = setup().await;
    let g = create_group(&t, json!({"name": "G", "tags": [{"name": "t"}]})).await;
    let tid = id(&g["tags"][0]);
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            format!("{GROUPS}/nope"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("{GROUPS}/nope"), None),
        (
            Method::PATCH,
            format!("{TAGS}/nope"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("{TAGS}/nope"), None),
        (
            Method::POST,
            TAGS.into(),
            Some(json!({"group_id": "nope", "name": "x"})),
        ),
        (
            Method::PATCH,
            format!("{TAGS}/{tid}"),
            Some(json!({"group_id": "nope"})),
        ),
        (
            Method::GET,
            "/admin/v1/tenants/nobody/tag-groups".into(),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let (status, resp) = t.admin(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {resp}");
        assert_eq!(resp["error"]["code"], "not_found");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn library_routes_require_the_admin_token_and_refuse_unknown_methods() {
    let t = setup().await;
    let none = t.client.get(t.url(GROUPS)).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = t
        .client
        .post(t.url(GROUPS))
        .bearer_auth("not-the-token-at-all-000")
        .json(&json!({"name": "G", "tags": [{"name": "t"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        list(&t).await.is_empty(),
        "a refused request creates nothing"
    );
    let (status, body) = t
        .admin(Method::POST, "/admin/v1/tenants/acme/sync", Some(json!({})))
        .await;
    assert_eq!(status, 400, "a run needs its scope: {body}");
    let (status, _) = t.admin(Method::PUT, GROUPS, Some(json!({}))).await;
    assert_eq!(status, 405);
    t.shutdown().await;
}

#[tokio::test]
async fn every_change_is_audited_on_the_hub_with_before_and_after() {
    let t = setup().await;
    let g = create_group(&t, json!({"name": "G", "tags": [{"name": "a"}]})).await;
    let gid = id(&g);
    let (_, tag) = t
        .admin(
            Method::POST,
            TAGS,
            Some(json!({"group_id": gid, "name": "b"})),
        )
        .await;
    let tid = id(&tag);
    t.admin(
        Method::PATCH,
        &format!("{GROUPS}/{gid}"),
        Some(json!({"name": "H"})),
    )
    .await;
    t.admin(
        Method::PATCH,
        &format!("{TAGS}/{tid}"),
        Some(json!({"order": 9})),
    )
    .await;
    t.admin(Method::DELETE, &format!("{TAGS}/{tid}"), None)
        .await;
    t.admin(Method::DELETE, &format!("{GROUPS}/{gid}"), None)
        .await;

    let audit = t.audit("acme").await;
    let find = |action: &str| -> Value {
        audit
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {audit:?}"))
            .clone()
    };
    for e in audit.iter().filter(|e| e["action"] != "tenant.created") {
        assert_eq!(e["side"], "hub", "{e}");
        assert_eq!(e["origin"], "operator:admin-token", "{e}");
    }
    let created = find("tag_group.created");
    assert_eq!(created["entity"], format!("group:{gid}"));
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["name"], "G");
    let tag_created = find("tag.created");
    assert_eq!(tag_created["entity"], format!("tag:{tid}"));
    assert_eq!(tag_created["after"]["name"], "b");
    let renamed = find("tag_group.updated");
    assert_eq!(renamed["before"]["name"], "G");
    assert_eq!(renamed["after"]["name"], "H");
    let reordered = find("tag.updated");
    assert_eq!(reordered["before"]["order"], 0);
    assert_eq!(reordered["after"]["order"], 9);
    let tag_deleted = find("tag.deleted");
    assert_eq!(tag_deleted["before"]["name"], "b");
    assert_eq!(tag_deleted["after"], Value::Null);
    let group_deleted = find("tag_group.deleted");
    assert_eq!(group_deleted["before"]["name"], "H");
    assert_eq!(names(&group_deleted["before"]["tags"]), ["a"]);
    assert_eq!(group_deleted["after"], Value::Null);
    t.shutdown().await;
}

#[tokio::test]
async fn a_tenant_holds_at_most_10000_live_tags() {
    let t = setup().await;
    let g = create_group(&t, json!({"name": "G", "tags": [{"name": "t0"}]})).await;
    let gid = HubGroupId::new_unchecked(id(&g));
    let now = t.app.clock.now();
    let tags: Vec<Tag> = (1..10_000)
        .map(|i| Tag {
            tenant: acme(),
            id: HubTagId::new_unchecked(format!("seed{i:05}")),
            group_id: gid.clone(),
            name: format!("t{i}"),
            order: 0,
            name_at: now,
            order_at: now,
            group_at: now,
            deleted_at: None,
            wecom: SideLink::default(),
            mall: SideLink::default(),
            version: 0,
        })
        .collect();
    for chunk in tags.chunks(100) {
        let writes = chunk.iter().cloned().map(Write::Tag).collect();
        t.app.store.transact(writes).await.unwrap();
    }
    let (status, body) = t
        .admin(
            Method::POST,
            TAGS,
            Some(json!({"group_id": gid, "name": "one more"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("10000"));
    let (status, body) = t
        .admin(
            Method::POST,
            GROUPS,
            Some(json!({"name": "G2", "tags": [{"name": "x"}]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`tags`")
    );
    // Deleting one makes room for one.
    let (status, _) = t
        .admin(Method::DELETE, &format!("{TAGS}/seed00001"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = t
        .admin(
            Method::POST,
            TAGS,
            Some(json!({"group_id": gid, "name": "one more"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    t.shutdown().await;
}
