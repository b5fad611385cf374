//! The simulator's HTTP control surface (what a demo drives with curl).

use crate::helpers::*;
use serde_json::{Value, json};
use tagsync::mall::webhook::MallEvent;

async fn call(
    m: &TestMall,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", m.sim.base_url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_operator_manages_the_library_and_members_over_http() {
    use reqwest::Method as M;
    let m = spawn_mall().await;

    let (s, group) = call(
        &m,
        M::POST,
        "/control/tag-groups",
        Some(json!({"name": "Level", "order": 2})),
    )
    .await;
    assert_eq!(s, 201);
    let gid = group["id"].as_str().unwrap().to_owned();
    let (s, other) = call(
        &m,
        M::POST,
        "/control/tag-groups",
        Some(json!({"name": "Other"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, tag) = call(
        &m,
        M::POST,
        "/control/tags",
        Some(json!({"group_id": gid, "name": "VIP"})),
    )
    .await;
    assert_eq!(s, 201);
    let tid = tag["id"].as_str().unwrap().to_owned();
    let (s, dup) = call(
        &m,
        M::POST,
        "/control/tags",
        Some(json!({"group_id": gid, "name": "VIP"})),
    )
    .await;
    assert_eq!(
        (s, dup["error"]["existing_id"].as_str()),
        (409, Some(tid.as_str()))
    );

    let (s, moved) = call(
        &m,
        M::PATCH,
        &format!("/control/tags/{tid}"),
        Some(json!({"name": "VIP2", "group_id": other["id"], "order": 4})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(moved["group_id"], other["id"]);
    let (s, _) = call(
        &m,
        M::PATCH,
        &format!("/control/tag-groups/{gid}"),
        Some(json!({"name": "Tier"})),
    )
    .await;
    assert_eq!(s, 200);

    let (s, member) = call(
        &m,
        M::POST,
        "/control/members",
        Some(json!({"external_userid": "wm-7", "unionid": "u-7"})),
    )
    .await;
    assert_eq!(s, 201);
    let mid = member["id"].as_str().unwrap().to_owned();
    let (s, tagged) = call(
        &m,
        M::POST,
        &format!("/control/members/{mid}/tags"),
        Some(json!({"add": [tid]})),
    )
    .await;
    assert_eq!((s, tagged["tag_ids"].clone()), (200, json!([tid])));
    let (s, bound) = call(
        &m,
        M::POST,
        &format!("/control/members/{mid}/bind"),
        Some(json!({"mobile": "139"})),
    )
    .await;
    assert_eq!(
        (s, bound["mobile"].as_str(), bound["unionid"].as_str()),
        (200, Some("139"), Some("u-7"))
    );

    // Silent changes: state changes, no webhook.
    let (s, _) = call(
        &m,
        M::POST,
        &format!("/control/members/{mid}/tags?silent=true"),
        Some(json!({"remove": [tid]})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &m,
        M::DELETE,
        &format!("/control/tags/{tid}?silent=true"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(&m, M::DELETE, &format!("/control/tag-groups/{gid}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&m, M::DELETE, &format!("/control/tag-groups/{gid}"), None).await;
    assert_eq!(s, 404);

    m.settle().await;
    let types: Vec<String> = m
        .hooks
        .accepted()
        .iter()
        .map(|r| r.hook.event.type_name().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "tag_group.created",
            "tag_group.created",
            "tag.created",
            "tag.updated",
            "tag_group.updated",
            "member.bound",
            "member.tags_changed",
            "member.bound",
            "tag_group.deleted",
        ]
    );
    assert!(
        m.hooks
            .accepted()
            .iter()
            .all(|r| r.hook.origin_request_id.is_none())
    );

    let (s, state) = call(&m, M::GET, "/control/state", None).await;
    assert_eq!(s, 200);
    assert_eq!(state["groups"].as_array().unwrap().len(), 1);
    assert_eq!(state["members"][0]["tag_ids"], json!([]));
}

#[tokio::test]
async fn faults_rate_limit_webhook_target_and_log_are_controllable_over_http() {
    use reqwest::Method as M;
    let m = spawn_mall().await;

    let (s, faults) = call(
        &m,
        M::PATCH,
        "/control/faults",
        Some(json!({"fail_next": 1, "drop_webhooks_next": 1})),
    )
    .await;
    assert_eq!((s, faults["fail_next"].as_u64()), (200, Some(1)));
    assert_eq!(m.sim.faults().drop_webhooks_next, 1);
    let (s, _) = call(
        &m,
        M::PATCH,
        "/control/faults",
        Some(json!({"no_such_fault": 1})),
    )
    .await;
    assert_eq!(s, 400);

    let err = m.client.list_groups(&m.ep).await.unwrap_err();
    assert_eq!(err.status, Some(500));
    m.client.list_groups(&m.ep).await.unwrap();

    let (s, _) = call(
        &m,
        M::PUT,
        "/control/rate-limit",
        Some(json!({"per_sec": 1})),
    )
    .await;
    assert_eq!(s, 200);
    m.client.list_groups(&m.ep).await.unwrap();
    assert_eq!(
        m.client.list_groups(&m.ep).await.unwrap_err().status,
        Some(429)
    );
    let (s, _) = call(
        &m,
        M::PUT,
        "/control/rate-limit",
        Some(json!({"per_sec": null})),
    )
    .await;
    assert_eq!(s, 200);
    m.client.list_groups(&m.ep).await.unwrap();

    // Retarget webhooks to nowhere, then back.
    let (s, _) = call(&m, M::PUT, "/control/webhook", Some(json!({"url": null}))).await;
    assert_eq!(s, 200);
    m.sim
        .operator()
        .create_group("dropped by fault", 0)
        .unwrap();
    m.sim.operator().create_group("no target", 0).unwrap();
    m.settle().await;
    let (s, _) = call(
        &m,
        M::PUT,
        "/control/webhook",
        Some(json!({"url": m.hooks.url, "secret": WEBHOOK_SECRET})),
    )
    .await;
    assert_eq!(s, 200);
    let g = m.sim.operator().create_group("delivered", 0).unwrap();
    m.settle().await;
    assert_eq!(
        m.hooks
            .accepted()
            .into_iter()
            .map(|r| r.hook.event)
            .collect::<Vec<_>>(),
        vec![MallEvent::TagGroupCreated { group: g }]
    );

    let (s, log) = call(&m, M::GET, "/control/log", None).await;
    assert_eq!(s, 200);
    let statuses: Vec<u64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 200, 200, 429, 200]);
    assert_eq!(log["events"].as_array().unwrap().len(), 3);
    let webhooks = log["webhooks"].as_array().unwrap();
    assert_eq!(webhooks[0]["dropped"], true);
    assert_eq!(webhooks[1]["error"], "no webhook URL configured");
    assert_eq!(webhooks[2]["status"], 202);

    let (s, _) = call(&m, M::DELETE, "/control/log", None).await;
    assert_eq!(s, 204);
    assert!(m.sim.requests().is_empty() && m.sim.deliveries().is_empty());
}

/// A request held before it takes effect lets the operator act first: the member's answer
/// then shows the operator's tag next to the client's (the answer a job must not take for
/// what it did).
#[tokio::test]
async fn a_request_held_before_it_takes_effect_goes_on_only_when_released() {
    use tagsync::sim::hold::Phase;
    let m = spawn_mall().await;
    let op = m.sim.operator();
    let g = op.create_group("Level", 1).unwrap();
    let a = op.create_tag(&g.id, "A", 1).unwrap().id;
    let c = op.create_tag(&g.id, "C", 2).unwrap().id;
    let member = op
        .create_member(tagsync::sim::mall::NewMember::default())
        .unwrap()
        .id;
    let path = format!("/members/{member}/tags");
    let mut hold = m.sim.hold("post", &path, Phase::Before, Value::Null);
    let k = key("member-tags");
    let call = m
        .client
        .change_member_tags(&m.ep, &k, &member, std::slice::from_ref(&a), &[]);
    let act = async {
        let held = hold.held(std::time::Duration::from_secs(10)).await.unwrap();
        assert_eq!(held.request["path"], path.as_str());
        assert_eq!(held.request["body"]["add"], json!([a.as_str()]));
        assert!(m.sim.member(&member).unwrap().tag_ids.is_empty());
        op.tag_member(&member, &c).unwrap();
        held.release();
    };
    let (answer, ()) = tokio::join!(call, act);
    let mut tags = answer.unwrap().tag_ids;
    tags.sort();
    let mut both = vec![a, c];
    both.sort();
    assert_eq!(tags, both, "the answer shows both tags");
}

#[tokio::test]
async fn holds_are_armed_waited_for_and_released_over_http() {
    use reqwest::Method as M;
    let m = spawn_mall().await;
    let (s, armed) = call(
        &m,
        M::POST,
        "/control/holds",
        Some(json!({"method": "GET", "path": "/tag-*", "phase": "after"})),
    )
    .await;
    assert_eq!(s, 201, "{armed}");
    let id = armed["id"].as_u64().expect("a hold id");
    let (s, idle) = call(
        &m,
        M::POST,
        &format!("/control/holds/{id}/wait"),
        Some(json!({"timeout_ms": 10})),
    )
    .await;
    assert_eq!((s, &idle["held"]), (200, &json!(false)));
    let read = m.client.list_groups(&m.ep);
    let act = async {
        let (_, held) = call(
            &m,
            M::POST,
            &format!("/control/holds/{id}/wait"),
            Some(json!({"timeout_ms": 10000})),
        )
        .await;
        assert_eq!(held["held"], true, "{held}");
        assert_eq!(held["request"]["path"], "/tag-groups");
        let (s, _) = call(&m, M::POST, &format!("/control/holds/{id}/release"), None).await;
        assert_eq!(s, 200);
    };
    let (groups, ()) = tokio::join!(read, act);
    assert!(groups.unwrap().is_empty());
    let (s, _) = call(&m, M::POST, &format!("/control/holds/{id}/release"), None).await;
    assert_eq!(s, 404, "a released hold is gone");
}
