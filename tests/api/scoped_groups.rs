//! Scoped tag groups in the operator API (docs/scoped-groups.md): a group may carry the
//! WeCom rule group (规则组) it belongs to, with its range, and a switch saying whether it is
//! carried to the mall. Stored, listed, patched, validated field by field.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use tagsync::domain::{GroupScope, HubGroupId, TenantId};

const GROUPS: &str = "/admin/v1/tenants/acme/tag-groups";

async fn setup() -> TestApp {
    let t = spawn_app().await;
    let (status, body) = t.put_tenant("acme").await;
    assert_eq!(status, 201, "{body}");
    t
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

async fn create(t: &TestApp, body: Value) -> (u16, Value) {
    t.admin(Method::POST, GROUPS, Some(body)).await
}

async fn patch(t: &TestApp, id: &str, body: Value) -> (u16, Value) {
    t.admin(Method::PATCH, &format!("{GROUPS}/{id}"), Some(body))
        .await
}

#[tokio::test]
async fn scoped_group_is_created_stored_and_listed_with_its_scope_and_mall_switch() {
    let t = setup().await;
    let (status, created) = create(
        &t,
        json!({"name": "售后服务", "tags": [{"name": "保养到期"}, {"name": "延保服务"}],
               "scope": {"name": "售后部", "departments": [7, 3], "users": ["zhang_san"],
                         "include_sub": true},
               "carry_to_mall": false}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["scope"],
        json!({"strategy_id": null, "name": "售后部", "departments": [3, 7],
               "users": ["zhang_san"], "include_sub": true}),
        "departments come back ascending; no WeCom rule group yet"
    );
    assert_eq!(created["carry_to_mall"], false);
    let (_, listed) = t.admin(Method::GET, GROUPS, None).await;
    assert_eq!(
        listed["groups"][0], created,
        "the listing shows what the POST answered"
    );

    let id = created["id"].as_str().unwrap();
    let stored = t
        .app
        .store
        .get_group(&acme(), &HubGroupId::new_unchecked(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.scope,
        Some(GroupScope {
            strategy_id: None,
            name: "售后部".into(),
            departments: vec![3, 7],
            users: vec!["zhang_san".into()],
            include_sub: true,
        })
    );
    assert!(!stored.carry_to_mall);

    // Unscoped groups show `null` and are carried; a scope's name defaults to the group's.
    let (_, plain) = create(&t, json!({"name": "会员等级", "tags": []})).await;
    assert_eq!(plain["scope"], Value::Null);
    assert_eq!(plain["carry_to_mall"], true);
    let (status, named) = create(
        &t,
        json!({"name": "上海客户评级", "tags": [], "scope": {"departments": [2]}}),
    )
    .await;
    assert_eq!(status, 201, "{named}");
    assert_eq!(named["scope"]["name"], "上海客户评级");
    assert_eq!(named["scope"]["include_sub"], false);
    assert_eq!(named["carry_to_mall"], true, "carried by default");
}

#[tokio::test]
async fn scope_range_and_mall_switch_are_patched_and_audited() {
    let t = setup().await;
    let (_, g) = create(
        &t,
        json!({"name": "北京客户评级", "tags": [], "scope": {"departments": [4]}}),
    )
    .await;
    let id = g["id"].as_str().unwrap().to_string();
    let (status, after) = patch(
        &t,
        &id,
        json!({"scope": {"departments": [4, 5], "include_sub": true}, "carry_to_mall": false}),
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["scope"]["departments"], json!([4, 5]));
    assert_eq!(after["scope"]["include_sub"], true);
    assert_eq!(
        after["scope"]["name"], "北京客户评级",
        "fields not given stay"
    );
    assert_eq!(after["carry_to_mall"], false);
    let (_, listed) = t.admin(Method::GET, GROUPS, None).await;
    assert_eq!(listed["groups"][0], after);

    let (_, audit) = t
        .admin(Method::GET, "/admin/v1/tenants/acme/audit", None)
        .await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tag_group.updated")
        .expect("the patch is audited");
    assert_eq!(entry["before"]["scope"]["departments"], json!([4]));
    assert_eq!(entry["after"]["scope"]["departments"], json!([4, 5]));
    assert_eq!(entry["after"]["carry_to_mall"], false);
}

#[tokio::test]
async fn bad_scopes_answer_400_or_409_naming_the_field() {
    let t = setup().await;
    let cases = [
        (json!({"departments": [], "users": []}), "field `scope`"),
        (json!({"include_sub": true}), "field `scope`"),
        (json!({"departments": [0]}), "field `scope.departments[0]`"),
        (
            json!({"departments": [2, -1]}),
            "field `scope.departments[1]`",
        ),
        (
            json!({"departments": [2, 2]}),
            "field `scope.departments[1]`",
        ),
        (json!({"departments": "2"}), "field `scope.departments`"),
        (json!({"users": ["a b"]}), "field `scope.users[0]`"),
        (json!({"users": ["li", "li"]}), "field `scope.users[1]`"),
        (json!({"users": [""]}), "field `scope.users[0]`"),
        (
            json!({"departments": [2], "name": ""}),
            "field `scope.name`",
        ),
        (
            json!({"departments": [2], "strategy_id": 9}),
            "unknown field `scope.strategy_id`",
        ),
        (
            json!({"departments": [2], "include_sub": "yes"}),
            "field `scope.include_sub`",
        ),
        (json!("售后部"), "field `scope`"),
    ];
    for (scope, expected) in cases {
        let (status, body) = create(&t, json!({"name": "售后", "tags": [], "scope": scope})).await;
        assert_eq!(status, 400, "{scope}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(expected),
            "{scope}: expected {expected} in {body}"
        );
    }
    let too_many: Vec<u32> = (1..=3001).collect();
    let (status, body) = create(
        &t,
        json!({"name": "售后", "tags": [], "scope": {"departments": too_many}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("at most 3000"), "{body}");

    // The mall switch belongs to scoped groups only.
    let (status, body) = create(
        &t,
        json!({"name": "会员", "tags": [], "carry_to_mall": false}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("field `carry_to_mall`"), "{body}");
    // A corp-library group cannot become a rule group, nor lose its range.
    let (_, plain) = create(&t, json!({"name": "会员", "tags": []})).await;
    let pid = plain["id"].as_str().unwrap();
    let (status, body) = patch(&t, pid, json!({"scope": {"departments": [2]}})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("field `scope`"), "{body}");
    let (_, scoped) = create(
        &t,
        json!({"name": "售后", "tags": [], "scope": {"users": ["li"]}}),
    )
    .await;
    let sid = scoped["id"].as_str().unwrap();
    let (status, body) = patch(&t, sid, json!({"scope": {"users": []}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("field `scope`"), "{body}");
    // Nothing refused was stored.
    let (_, listed) = t.admin(Method::GET, GROUPS, None).await;
    assert_eq!(listed["groups"].as_array().unwrap().len(), 2);
    let (_, again) = t.admin(Method::GET, GROUPS, None).await;
    let scoped_now = again["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == sid)
        .unwrap()
        .clone();
    assert_eq!(scoped_now["scope"]["users"], json!(["li"]));
}
