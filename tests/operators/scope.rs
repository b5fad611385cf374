//! The one scope check (issue 16 §3): every admin route, walked with an operator outside the
//! objects' departments, answers 403 or a list without them; the Shanghai story end to end.

use crate::*;
use serde_json::json;
use tagsync::api::access::{Need, ROUTES};

/// What the walk acts on: Beijing's objects (outside Shanghai) and Shanghai's.
struct Objects {
    unscoped: String,
    shanghai: String,
    beijing: String,
    beijing_tag: String,
    beijing_member: String,
    shanghai_member: String,
}

async fn group(w: &World, name: &str, tag: &str, departments: &[u32]) -> (String, String) {
    let scope = if departments.is_empty() {
        Value::Null
    } else {
        json!({ "name": name, "departments": departments })
    };
    let (status, g) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({ "name": name, "tags": [{ "name": tag }], "scope": scope })),
        )
        .await;
    assert_eq!(status, 201, "{g}");
    (s(&g["id"]), s(&g["tags"][0]["id"]))
}

/// Staff, roles, a Shanghai and a Beijing customer each bound to a mall member, then (with
/// automatic sync off: the groups stay in the hub) an unscoped, a Shanghai and a Beijing
/// group.
async fn objects(w: &World) -> Objects {
    let shanghai_member = bound_member(w, "wm_sh_customer", &["pd_zhao"]).await;
    let beijing_member = bound_member(w, "wm_bj_customer", &["bj_chen"]).await;
    let (status, body) = w
        .admin(
            Method::PATCH,
            "/settings",
            Some(json!({ "auto_sync": false })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (unscoped, _) = group(w, "会员等级", "金卡", &[]).await;
    let (shanghai, _) = group(w, "上海内部评级", "A类", &[2]).await;
    let (beijing, beijing_tag) = group(w, "北京内部评级", "B类", &[3]).await;
    Objects {
        unscoped,
        shanghai,
        beijing,
        beijing_tag,
        beijing_member: beijing_member.to_string(),
        shanghai_member: shanghai_member.to_string(),
    }
}

/// The path of a route's row aimed at Beijing's object, and a body naming Beijing.
fn aimed_at_beijing(w: &World, o: &Objects, path: &str) -> (String, Option<Value>) {
    let id = if path.contains("/tag-groups/") {
        o.beijing.clone()
    } else if path.contains("/tags/") {
        o.beijing_tag.clone()
    } else if path.contains("/members/") {
        o.beijing_member.clone()
    } else if path.contains("/operators/") {
        "bj_chen".into()
    } else {
        "01900000000000000000000000000000".into()
    };
    let filled = path.replace("{t}", w.tenant.as_str()).replace("{id}", &id);
    let body = json!({
        "group_id": o.beijing,
        "name": "北京新组",
        "tags": [{ "name": "C类" }],
        "scope": { "name": "北京", "departments": [3] },
        "add": [o.beijing_tag],
        "role": "admin",
    });
    (format!("/admin{filled}"), Some(body))
}

#[tokio::test]
async fn every_admin_route_refuses_or_filters_an_operator_outside_the_objects_departments() {
    let w = staffed().await;
    let o = objects(&w).await;
    let shanghai = sign_in(&w, "sh_li").await;
    let beijing_markers = [
        o.beijing.as_str(),
        "北京内部评级",
        o.beijing_tag.as_str(),
        "wm_bj_customer",
    ];
    let mut walked = 0;
    for spec in ROUTES {
        if matches!(spec.need, Need::Public) || spec.path == "/v1/logout" {
            continue;
        }
        walked += 1;
        let (path, body) = aimed_at_beijing(&w, &o, spec.path);
        let body = (spec.method != Method::GET).then_some(body).flatten();
        let (status, answer) = shanghai.call(spec.method.clone(), &path, body).await;
        let what = format!(
            "{} {path} ({:?}) → {status} {answer}",
            spec.method, spec.need
        );
        match spec.need {
            Need::Signed | Need::Tenants | Need::Read | Need::Groups | Need::Customers => {
                // 404: the made-up run id of `sync/{id}` (an unknown object shows nothing).
                assert!(
                    status == 200 || (status == 404 && spec.path.contains("{id}")),
                    "{what}"
                );
                let text = answer.to_string();
                for m in beijing_markers {
                    assert!(!text.contains(m), "{what}: shows {m}");
                }
            }
            _ => assert_eq!(status, 403, "{what}"),
        }
    }
    assert!(walked >= 40, "walked {walked} routes");
    // Nothing of Beijing's changed.
    let (_, groups) = w.admin(Method::GET, "/tag-groups", None).await;
    let names: Vec<String> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| s(&g["name"]))
        .collect();
    assert!(names.contains(&"北京内部评级".to_string()), "{names:?}");
    assert!(!names.contains(&"北京新组".to_string()), "{names:?}");
}

#[tokio::test]
async fn every_route_row_reaches_its_handler_and_a_path_without_a_row_is_404() {
    let w = staffed().await;
    for spec in ROUTES {
        if matches!(spec.need, Need::Public) || spec.path == "/v1/logout" {
            continue;
        }
        let path = spec
            .path
            .replace("{t}", w.tenant.as_str())
            .replace("{id}", "01900000000000000000000000000000");
        // An empty JSON body: the handler answers (400, 404 for the made-up id, …), never
        // "no route".
        let body = (spec.method != Method::GET).then(|| json!({}));
        let (status, answer) = w
            .request(spec.method.clone(), &format!("/admin{path}"), body)
            .await;
        assert!(
            !answer.to_string().contains("no route for"),
            "{} {path}: {status} {answer}",
            spec.method
        );
    }
    let (status, _) = w.admin(Method::GET, "/not-a-resource", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_shanghai_operator_sees_only_unscoped_and_shanghai_groups_and_shanghai_customers() {
    let w = staffed().await;
    let o = objects(&w).await;
    // Pudong (4) is below Shanghai (2): its customer is Shanghai's.
    let b = sign_in(&w, "sh_li").await;
    let (status, groups) = b.admin(&w, Method::GET, "/tag-groups", None).await;
    assert_eq!(status, 200);
    let mut ids: Vec<String> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| s(&g["id"]))
        .collect();
    ids.sort();
    let mut expected = vec![o.unscoped.clone(), o.shanghai.clone()];
    expected.sort();
    assert_eq!(ids, expected, "{groups}");
    let (status, customers) = b.admin(&w, Method::GET, "/customers", None).await;
    assert_eq!(status, 200, "{customers}");
    let listed: Vec<String> = customers["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["external_userid"]))
        .collect();
    assert_eq!(listed, ["wm_sh_customer"], "{customers}");
    assert_eq!(customers["total"], 1);

    // A Beijing group cannot be read or changed through any route; a Shanghai one can.
    let (status, _) = b
        .admin(
            &w,
            Method::PATCH,
            &format!("/tag-groups/{}", o.beijing),
            Some(json!({"name": "改名"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = b
        .admin(
            &w,
            Method::GET,
            &format!("/members/{}", o.beijing_member),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = b
        .admin(
            &w,
            Method::GET,
            &format!("/members/{}", o.shanghai_member),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = b
        .admin(
            &w,
            Method::PATCH,
            &format!("/tag-groups/{}", o.shanghai),
            Some(json!({"name": "上海评级"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let audit = w.app.store.list_audit(&w.tenant, None, 50).await.unwrap();
    assert!(
        audit
            .items
            .iter()
            .any(|e| e.entity.contains(&o.shanghai) && e.origin == "operator:sh_li"),
        "the audit names the operator: {:?}",
        audit.items
    );

    // The admin sees everything; Beijing's editor sees Beijing's, not Shanghai's.
    let hq = sign_in(&w, "hq_wang").await;
    let (_, all) = hq.admin(&w, Method::GET, "/tag-groups", None).await;
    assert_eq!(all["groups"].as_array().unwrap().len(), 3);
    let bj = sign_in(&w, "bj_chen").await;
    let (_, theirs) = bj.admin(&w, Method::GET, "/tag-groups", None).await;
    let names: Vec<String> = theirs["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| s(&g["name"]))
        .collect();
    assert!(
        names.contains(&"北京内部评级".to_string()) && !names.contains(&"上海评级".to_string()),
        "{names:?}"
    );

    // The viewer of Shanghai reads the same, and cannot write.
    let viewer = sign_in(&w, "pd_zhao").await;
    let (_, seen) = viewer.admin(&w, Method::GET, "/tag-groups", None).await;
    assert_eq!(seen["groups"].as_array().unwrap().len(), 2);
    let (status, _) = viewer
        .admin(
            &w,
            Method::PATCH,
            &format!("/tag-groups/{}", o.shanghai),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 403);
}
