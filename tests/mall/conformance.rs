//! Recorded traffic conforms to `docs/mall-openapi.yaml`.
//!
//! The document is parsed once and every request body, answer (by status) and webhook body
//! that the simulator logged is validated against the document's own schemas with a JSON
//! Schema 2020-12 validator (OpenAPI 3.1 schemas are JSON Schema 2020-12). Checked per
//! recorded request: the endpoint and status are documented, path and query parameters and
//! the `Idempotency-Key` header follow their schemas, the bodies follow theirs, a 204 has no
//! body, and a 429 carries `Retry-After`. The tests at the bottom prove the check fails on
//! wrong traffic.

use crate::helpers::*;
use jsonschema::Validator;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tagsync::domain::{MallGroupId, MallTagId, MemberId, Secret, Timestamp};
use tagsync::mall::client::{GroupPatch, MallEndpoint, MemberLookup, MemberTagItem, TagPatch};
use tagsync::sim::mall::{ApiRequestLog, NewMember};

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mall-openapi.yaml");

/// A documented operation matched to a concrete path.
struct Operation<'a> {
    template: String,
    item: &'a Value,
    op: &'a Value,
    path_params: Vec<(String, String)>,
}

pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<Validator>>>,
}

impl Contract {
    pub fn load() -> Contract {
        let text = std::fs::read_to_string(DOCUMENT).expect("docs/mall-openapi.yaml");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("the document is YAML");
        Contract {
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// Follows an OpenAPI `$ref` (responses, parameters) within the document.
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {r}")),
            None => v,
        }
    }

    /// Errors of `instance` against `schema` (a schema object of the document). The schema is
    /// validated as the root of a document that also holds `components`, so its
    /// `#/components/schemas/...` references resolve.
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let cache_key = schema.to_string();
        let validator = {
            let mut cache = self.validators.lock().unwrap();
            cache
                .entry(cache_key)
                .or_insert_with(|| {
                    let mut root = schema.clone();
                    root["components"] = self.doc["components"].clone();
                    std::sync::Arc::new(
                        jsonschema::draft202012::options()
                            .should_validate_formats(true)
                            .build(&root)
                            .unwrap_or_else(|e| panic!("schema {schema} does not build: {e}")),
                    )
                })
                .clone()
        };
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {:?}", e, e.instance_path().as_str()))
            .collect()
    }

    /// The documented operation for a concrete path.
    fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let concrete: Vec<&str> = path.split('/').collect();
        for (template, item) in self.doc["paths"].as_object()? {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != concrete.len() {
                continue;
            }
            let mut params = Vec::new();
            let matched = parts.iter().zip(&concrete).all(|(t, c)| {
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(name) => {
                        params.push((name.to_owned(), (*c).to_owned()));
                        !c.is_empty()
                    }
                    None => t == c,
                }
            });
            if matched && let Some(op) = item.get(method.to_ascii_lowercase()) {
                return Some(Operation {
                    template: template.clone(),
                    item,
                    op,
                    path_params: params,
                });
            }
        }
        None
    }

    fn parameters<'a>(&'a self, item: &'a Value, op: &'a Value) -> Vec<&'a Value> {
        [item, op]
            .into_iter()
            .filter_map(|v| v.get("parameters").and_then(Value::as_array))
            .flatten()
            .map(|p| self.deref(p))
            .collect()
    }

    /// Everything about one recorded API request that breaks the document.
    pub fn check_request(&self, r: &ApiRequestLog) -> Vec<String> {
        let at = format!(
            "{} {}{} → {}",
            r.method,
            r.path,
            r.query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default(),
            r.status
        );
        let Some(Operation {
            template,
            item,
            op,
            path_params,
        }) = self.operation(&r.method, &r.path)
        else {
            return vec![format!("{at}: undocumented endpoint")];
        };
        let mut errors = Vec::new();
        let mut push = |what: &str, errs: Vec<String>| {
            errors.extend(errs.into_iter().map(|e| format!("{at}: {what}: {e}")));
        };
        // A 400 invalid_request may answer a deliberately malformed request: the request side
        // is then not checked, the answer still is.
        let refused_as_malformed = r.status == 400
            && r.response.as_ref().map(|b| &b["error"]["code"]) == Some(&json!("invalid_request"));
        let params = self.parameters(item, op);

        for (name, value) in &path_params {
            if let Some(p) = params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name.as_str())
            {
                push(
                    &format!("path parameter {name}"),
                    self.errors(&p["schema"], &json!(value)),
                );
            } else {
                push(
                    "path",
                    vec![format!("parameter {name} of {template} is undeclared")],
                );
            }
        }
        let query: Vec<(String, String)> = r
            .query
            .as_deref()
            .map(|q| {
                reqwest::Url::parse(&format!("http://x/?{q}"))
                    .unwrap()
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for (name, value) in &query {
            match params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == name.as_str())
            {
                None => push("query", vec![format!("parameter {name} is undeclared")]),
                Some(_) if refused_as_malformed || value.is_empty() => {}
                Some(p) => {
                    let typed = match p["schema"]["type"].as_str() {
                        Some("integer") => value
                            .parse::<i64>()
                            .map(|n| json!(n))
                            .unwrap_or(json!(value)),
                        _ => json!(value),
                    };
                    push(
                        &format!("query parameter {name}"),
                        self.errors(&p["schema"], &typed),
                    );
                }
            }
        }
        for p in params.iter().filter(|p| p["in"] == "header") {
            // Only Idempotency-Key is a request header of the API, and the log records it.
            if p["name"] != "Idempotency-Key" {
                continue;
            }
            match &r.idempotency_key {
                Some(k) => push("Idempotency-Key", self.errors(&p["schema"], &json!(k))),
                None if p["required"] == true && !refused_as_malformed => {
                    push("Idempotency-Key", vec!["required header missing".into()]);
                }
                None => {}
            }
        }

        match (op.get("requestBody"), &r.request) {
            (Some(body), Some(sent)) if !refused_as_malformed => {
                let schema = &self.deref(body)["content"]["application/json"]["schema"];
                push("request body", self.errors(schema, sent));
            }
            (Some(body), None) if body["required"] == true && !refused_as_malformed => {
                push("request body", vec!["required body missing".into()]);
            }
            (None, Some(_)) => push("request body", vec!["this operation takes no body".into()]),
            _ => {}
        }

        let responses = &op["responses"];
        let status = r.status.to_string();
        let class = format!("{}XX", &status[..1]);
        let Some(answer) = responses
            .get(&status)
            .or_else(|| responses.get(&class))
            .or_else(|| responses.get("default"))
            .map(|a| self.deref(a))
        else {
            push(
                "status",
                vec![format!("{status} is not a documented answer")],
            );
            return errors;
        };
        match (
            answer["content"]["application/json"].get("schema"),
            &r.response,
        ) {
            (Some(schema), Some(body)) => push("answer body", self.errors(schema, body)),
            (Some(_), None) => push("answer body", vec!["documented body missing".into()]),
            (None, Some(body)) => push(
                "answer body",
                vec![format!("no body documented, got {body}")],
            ),
            (None, None) => {}
        }
        if let Some(headers) = answer.get("headers").and_then(Value::as_object) {
            for (name, h) in headers {
                let h = self.deref(h);
                if name.eq_ignore_ascii_case("retry-after") {
                    match r.retry_after {
                        Some(secs) => push("Retry-After", self.errors(&h["schema"], &json!(secs))),
                        None if h["required"] == true => {
                            push("Retry-After", vec!["required header missing".into()])
                        }
                        None => {}
                    }
                }
            }
        }
        errors
    }

    /// Everything about one webhook body that breaks the document.
    pub fn check_webhook(&self, body: &Value) -> Vec<String> {
        let schema = &self.doc["webhooks"]["mallEvent"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        self.errors(schema, body)
            .into_iter()
            .map(|e| format!("webhook {}: {e}", body["type"]))
            .collect()
    }

    /// Every (METHOD, path template) the document defines.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (template, item) in self.doc["paths"].as_object().unwrap() {
            for method in ["get", "post", "patch", "put", "delete"] {
                if item.get(method).is_some() {
                    ops.insert((method.to_ascii_uppercase(), template.clone()));
                }
            }
        }
        ops
    }
}

async fn raw(
    m: &TestMall,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> u16 {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", m.sim.base_url()))
        .bearer_auth(m.ep.token.expose());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A session that exercises every endpoint and every error answer of the contract.
async fn realistic_session(m: &TestMall) {
    let (c, ep) = (&m.client, &m.ep);
    let level = c
        .create_group(ep, &key("g-level"), "客户等级", Some(5))
        .await
        .unwrap();
    let source = c
        .create_group(ep, &key("g-source"), "Source", None)
        .await
        .unwrap();
    c.create_group(ep, &key("g-level"), "客户等级", Some(5))
        .await
        .unwrap(); // replay
    c.create_group(ep, &key("g-dup"), "Source", None)
        .await
        .unwrap_err(); // 409
    c.create_group(ep, &key("g-long"), &"长".repeat(31), None)
        .await
        .unwrap_err(); // 400
    c.update_group(
        ep,
        &key("g-rename"),
        &level.id,
        &GroupPatch {
            name: Some("Level".into()),
            order: Some(9),
        },
    )
    .await
    .unwrap();
    c.update_group(
        ep,
        &key("g-missing"),
        &MallGroupId::new_unchecked("g_999"),
        &GroupPatch::default(),
    )
    .await
    .unwrap_err(); // 404

    let vip = c
        .create_tag(ep, &key("t-vip"), &level.id, "VIP", Some(3))
        .await
        .unwrap();
    let new = c
        .create_tag(ep, &key("t-new"), &level.id, "New", None)
        .await
        .unwrap();
    let web = c
        .create_tag(ep, &key("t-web"), &source.id, "Web", None)
        .await
        .unwrap();
    c.create_tag(ep, &key("t-dup"), &level.id, "VIP", None)
        .await
        .unwrap_err(); // 409
    c.create_tag(
        ep,
        &key("t-nogroup"),
        &MallGroupId::new_unchecked("g_999"),
        "x",
        None,
    )
    .await
    .unwrap_err(); // 404
    c.create_tag(ep, &key("t-4"), &source.id, "Shop", None)
        .await
        .unwrap();
    c.create_tag(ep, &key("t-5"), &source.id, "Ads", None)
        .await
        .unwrap_err(); // limit_exceeded
    c.update_tag(
        ep,
        &key("t-move"),
        &new.id,
        &TagPatch {
            group_id: Some(source.id.clone()),
            ..TagPatch::default()
        },
    )
    .await
    .unwrap();
    c.update_tag(
        ep,
        &key("t-clash"),
        &new.id,
        &TagPatch {
            name: Some("Web".into()),
            ..TagPatch::default()
        },
    )
    .await
    .unwrap_err(); // 409
    c.update_tag(
        ep,
        &key("t-missing"),
        &MallTagId::new_unchecked("t_999"),
        &TagPatch::default(),
    )
    .await
    .unwrap_err(); // 404
    c.list_groups(ep).await.unwrap();

    let op = m.sim.operator();
    let alice = op
        .create_member(NewMember {
            unionid: Some("u-alice".into()),
            external_userid: Some("wm-alice".into()),
            mobile: None,
        })
        .unwrap();
    let bob = op.create_member(NewMember::external("wm-bob")).unwrap();
    op.create_member(NewMember::default()).unwrap();
    op.bind_member(
        &bob.id,
        NewMember {
            mobile: Some("13800000000".into()),
            ..NewMember::default()
        },
    )
    .unwrap();
    op.tag_member(&bob.id, &web.id).unwrap();
    op.rename_group(&source.id, "来源").unwrap();
    op.delete_tag(&web.id).unwrap();

    let mut pager = c.members(ep, 2);
    while pager.next_page().await.unwrap().is_some() {}
    c.list_members(ep, Some("not-a-cursor"), 2)
        .await
        .unwrap_err(); // 400
    c.get_member(ep, &alice.id).await.unwrap().unwrap();
    assert!(
        c.get_member(ep, &MemberId::new_unchecked("m_999"))
            .await
            .unwrap()
            .is_none()
    ); // 404
    c.lookup_member(ep, MemberLookup::Unionid("u-alice"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.lookup_member(ep, MemberLookup::Mobile("000"))
            .await
            .unwrap()
            .is_none()
    ); // 404
    c.change_member_tags(
        ep,
        &key("m-alice"),
        &alice.id,
        std::slice::from_ref(&vip.id),
        &[],
    )
    .await
    .unwrap();
    c.change_member_tags(
        ep,
        &key("m-alice-2"),
        &alice.id,
        &[],
        std::slice::from_ref(&vip.id),
    )
    .await
    .unwrap();
    c.change_member_tags(
        ep,
        &key("m-ghost"),
        &alice.id,
        &[MallTagId::new_unchecked("t_999")],
        &[],
    )
    .await
    .unwrap_err(); // unknown_tag
    // Contract 1.1: two members in one request, one of them unknown (its own 404).
    let results = c
        .batch_member_tags(
            ep,
            &key("m-batch"),
            &[
                MemberTagItem {
                    member_id: alice.id.clone(),
                    add: vec![vip.id.clone()],
                    remove: vec![],
                },
                MemberTagItem {
                    member_id: MemberId::new_unchecked("m_999"),
                    add: vec![],
                    remove: vec![MallTagId::new_unchecked("t_999")],
                },
            ],
        )
        .await
        .unwrap()
        .expect("the simulator offers the batch endpoint");
    assert!(results[0].is_ok() && results[1].is_err());

    c.delete_tag(ep, &key("t-del"), &vip.id).await.unwrap();
    c.delete_tag(ep, &key("t-del-again"), &vip.id)
        .await
        .unwrap(); // 404 → AlreadyGone
    c.delete_group(ep, &key("g-del"), &level.id).await.unwrap();
    c.delete_group(ep, &key("g-del-again"), &level.id)
        .await
        .unwrap(); // 404

    // What the client never sends: no key, two lookup identities, limits out of range.
    assert_eq!(
        raw(
            m,
            reqwest::Method::POST,
            "/tag-groups",
            None,
            Some(json!({"name": "k"}))
        )
        .await,
        400
    );
    assert_eq!(
        raw(
            m,
            reqwest::Method::GET,
            "/members:lookup?unionid=a&mobile=b",
            None,
            None
        )
        .await,
        400
    );
    assert_eq!(
        raw(m, reqwest::Method::GET, "/members?limit=0", None, None).await,
        400
    );
    assert_eq!(
        raw(
            m,
            reqwest::Method::POST,
            &format!("/members/{}/tags", alice.id),
            Some("m-too-many"),
            Some(json!({"add": (0..101).map(|i| format!("t_{i}")).collect::<Vec<_>>()}))
        )
        .await,
        400
    );

    let bad = MallEndpoint {
        base_url: m.sim.base_url(),
        token: Secret::new("wrong"),
    };
    c.list_groups(&bad).await.unwrap_err(); // 401
    m.sim.update_faults(|f| f.fail_next = 1);
    c.create_group(ep, &key("g-500"), "Flaky", None)
        .await
        .unwrap_err(); // 500
    c.create_group(ep, &key("g-500"), "Flaky", None)
        .await
        .unwrap();
    m.sim.set_rate_limit(Some(1));
    c.list_groups(ep).await.unwrap();
    first_error(|| c.list_groups(ep)).await; // 429
    m.sim.set_rate_limit(None);
}

#[tokio::test]
async fn recorded_traffic_conforms_to_the_openapi_document() {
    let contract = Contract::load();
    let mut config = test_config();
    config.max_tags = 4;
    let m = spawn_mall_with(config).await;
    realistic_session(&m).await;
    m.settle().await;

    let requests = m.sim.requests();
    let mut errors: Vec<String> = requests
        .iter()
        .flat_map(|r| contract.check_request(r))
        .collect();
    let delivered: Vec<Value> = m.sim.deliveries().into_iter().map(|d| d.body).collect();
    for body in m.sim.events().iter().chain(&delivered) {
        errors.extend(contract.check_webhook(body));
    }
    assert!(
        errors.is_empty(),
        "{} violations:\n{}",
        errors.len(),
        errors.join("\n")
    );

    // The session covered the whole document, so the check above meant something.
    let seen: BTreeSet<(String, String)> = requests
        .iter()
        .filter_map(|r| {
            contract
                .operation(&r.method, &r.path)
                .map(|o| (r.method.clone(), o.template))
        })
        .collect();
    let missing: Vec<_> = contract.operations().difference(&seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "operations never exercised: {missing:?}"
    );
    let statuses: BTreeSet<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        BTreeSet::from([200, 201, 204, 400, 401, 404, 409, 429, 500])
    );
    let codes: BTreeSet<String> = requests
        .iter()
        .filter_map(|r| {
            r.response.as_ref()?["error"]["code"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for code in [
        "invalid_request",
        "unauthorized",
        "not_found",
        "unknown_tag",
        "limit_exceeded",
        "name_taken",
        "rate_limited",
    ] {
        assert!(codes.contains(code), "no {code} answer was recorded");
    }
    let types: BTreeSet<String> = m
        .sim
        .events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.len(), 8, "every webhook type was sent: {types:?}");
    assert!(requests.iter().any(|r| r.replayed));
    assert_eq!(m.hooks.rejected(), Vec::<u16>::new());
    assert_eq!(m.hooks.accepted().len(), m.sim.events().len());
}

// --- The check can fail. -------------------------------------------------------------

fn logged(
    method: &str,
    path: &str,
    key: Option<&str>,
    request: Option<Value>,
    status: u16,
    response: Option<Value>,
) -> ApiRequestLog {
    ApiRequestLog {
        at: Timestamp::from_millis(0),
        method: method.to_owned(),
        path: path.to_owned(),
        query: None,
        idempotency_key: key.map(str::to_owned),
        request,
        status,
        response,
        retry_after: None,
        replayed: false,
    }
}

fn tag_json() -> Value {
    json!({"id": "t_1", "group_id": "g_1", "name": "VIP", "order": 0})
}

#[test]
fn a_conforming_exchange_passes() {
    let c = Contract::load();
    let ok = logged(
        "POST",
        "/tags",
        Some("k"),
        Some(json!({"group_id": "g_1", "name": "VIP"})),
        201,
        Some(tag_json()),
    );
    assert_eq!(c.check_request(&ok), Vec::<String>::new());
}

#[test]
fn wrong_answer_bodies_are_rejected() {
    let c = Contract::load();
    let mut bad_tag = tag_json();
    bad_tag["order"] = json!(-1);
    let r = logged(
        "POST",
        "/tags",
        Some("k"),
        Some(json!({"group_id": "g_1", "name": "VIP"})),
        201,
        Some(bad_tag),
    );
    assert!(!c.check_request(&r).is_empty());

    let no_existing_id = json!({"error": {"code": "name_taken", "message": "taken"}});
    let r = logged(
        "POST",
        "/tags",
        Some("k"),
        Some(json!({"group_id": "g_1", "name": "VIP"})),
        409,
        Some(no_existing_id),
    );
    assert!(
        !c.check_request(&r).is_empty(),
        "409 needs error.existing_id"
    );

    let no_ids = json!({"error": {"code": "unknown_tag", "message": "no such tags"}});
    let r = logged(
        "POST",
        "/members/m_1/tags",
        Some("k"),
        Some(json!({"add": ["t_9"]})),
        400,
        Some(no_ids),
    );
    assert!(
        !c.check_request(&r).is_empty(),
        "unknown_tag needs error.unknown_ids"
    );

    let r = logged(
        "GET",
        "/members",
        None,
        None,
        200,
        Some(json!({"members": [{"id": "m_1"}], "next_cursor": null})),
    );
    assert!(
        !c.check_request(&r).is_empty(),
        "members carry all their fields"
    );

    let r = logged("DELETE", "/tags/t_1", Some("k"), None, 204, Some(json!({})));
    assert!(!c.check_request(&r).is_empty(), "204 has no body");
}

#[test]
fn wrong_requests_and_undocumented_answers_are_rejected() {
    let c = Contract::load();
    let r = logged(
        "POST",
        "/tags",
        Some("k"),
        Some(json!({"groupId": "g_1", "name": "VIP"})),
        201,
        Some(tag_json()),
    );
    assert!(!c.check_request(&r).is_empty(), "unknown request field");

    let r = logged(
        "POST",
        "/tags",
        None,
        Some(json!({"group_id": "g_1", "name": "VIP"})),
        201,
        Some(tag_json()),
    );
    assert!(
        !c.check_request(&r).is_empty(),
        "write without Idempotency-Key"
    );

    let r = logged(
        "POST",
        "/tags",
        Some("k"),
        Some(json!({"group_id": "g_1", "name": "VIP"})),
        418,
        None,
    );
    assert!(!c.check_request(&r).is_empty(), "undocumented status");

    let r = logged("PUT", "/tags/t_1", Some("k"), None, 200, None);
    assert!(!c.check_request(&r).is_empty(), "undocumented method");

    let mut r = logged(
        "GET",
        "/tag-groups",
        None,
        None,
        429,
        Some(json!({"error": {"code": "rate_limited", "message": "slow"}})),
    );
    assert!(!c.check_request(&r).is_empty(), "429 without Retry-After");
    r.retry_after = Some(1);
    assert_eq!(c.check_request(&r), Vec::<String>::new());

    let mut r = logged(
        "GET",
        "/members",
        None,
        None,
        200,
        Some(json!({"members": [], "next_cursor": null})),
    );
    r.query = Some("limit=501".into());
    assert!(!c.check_request(&r).is_empty(), "limit out of range");
    r.query = Some("page=2".into());
    assert!(
        !c.check_request(&r).is_empty(),
        "undeclared query parameter"
    );
}

#[test]
fn wrong_webhook_bodies_are_rejected() {
    let c = Contract::load();
    let good = json!({
        "event_id": "evt_1", "type": "tag.created", "occurred_at": "2026-11-21T08:15:30.123Z",
        "origin_request_id": null, "data": {"tag": tag_json()}
    });
    assert_eq!(c.check_webhook(&good), Vec::<String>::new());

    let mut wrong_data = good.clone();
    wrong_data["data"] = json!({"group": {"id": "g_1", "name": "G", "order": 0}});
    assert!(
        !c.check_webhook(&wrong_data).is_empty(),
        "data must match type"
    );

    let mut no_millis = good.clone();
    no_millis["occurred_at"] = json!("2026-11-21T08:15:30Z");
    assert!(
        !c.check_webhook(&no_millis).is_empty(),
        "millisecond precision"
    );

    let mut unknown = good.clone();
    unknown["type"] = json!("tag.exploded");
    assert!(
        !c.check_webhook(&unknown).is_empty(),
        "the mall sends only the documented types"
    );

    let mut missing_origin = good;
    missing_origin
        .as_object_mut()
        .unwrap()
        .remove("origin_request_id");
    assert!(!c.check_webhook(&missing_origin).is_empty());
}
