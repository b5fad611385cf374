//! The operator API's tenant routes: auth, validation, secrets, switches, status.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn healthz_answers_ok_without_credentials() {
    let t = spawn_app().await;
    let resp = t.client.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    t.shutdown().await;
}

#[tokio::test]
async fn admin_routes_refuse_missing_or_wrong_token_and_record_nothing() {
    let t = spawn_app().await;
    let url = t.url("/admin/v1/tenants/acme");
    let none = t
        .client
        .put(&url)
        .json(&tenant_body())
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let wrong = t
        .client
        .put(&url)
        .bearer_auth("not-the-token-at-all-000")
        .json(&tenant_body())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let tenant = t
        .app
        .store
        .get_tenant(&tagsync::domain::TenantId::parse("acme").unwrap())
        .await
        .unwrap();
    assert!(
        tenant.is_none(),
        "a refused request must not create the tenant"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn put_tenant_creates_with_201_then_updates_with_200_keeping_created_at() {
    let t = spawn_app().await;
    let (status, first) = t.put_tenant("acme").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["corp_id"], "ww5823bf96d3bd56c7");
    assert_eq!(first["mall_api_base"], "https://mall.example.com/api");
    assert_eq!(
        first["settings"],
        json!({"tags_enabled": true, "auto_sync": true, "member_sync": true})
    );
    let mut body = tenant_body();
    body["agent_id"] = json!(1000003);
    let (status, second) = t
        .admin(Method::PUT, "/admin/v1/tenants/acme", Some(body))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["agent_id"], "1000003",
        "a numeric agent_id is accepted and kept as digits"
    );
    assert_eq!(second["created_at"], first["created_at"]);
    let (status, got) = t.admin(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(status, 200);
    assert_eq!(got["agent_id"], "1000003");
    t.shutdown().await;
}

#[tokio::test]
async fn secrets_are_never_returned_or_audited() {
    let t = spawn_app().await;
    let (_, put) = t.put_tenant("acme").await;
    let (_, get) = t.admin(Method::GET, "/admin/v1/tenants/acme", None).await;
    let audit = t.audit("acme").await;
    let everything = format!("{put}{get}{}", Value::Array(audit.clone()));
    for secret in [
        "corp-secret-value-1",
        "mall-token-value-2",
        "webhook-secret-value-3",
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "QDG6eK",
    ] {
        assert!(
            !everything.contains(secret),
            "secret {secret} leaked: {everything}"
        );
    }
    assert!(
        audit.iter().any(|e| e["action"] == "tenant.created"),
        "the registration is audited"
    );
    t.shutdown().await;
}

/// A change to a valid registration that makes it invalid.
type Mutation = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn put_tenant_refuses_bad_input_with_400_naming_the_field() {
    let t = spawn_app().await;
    let cases: Vec<(&str, Mutation)> = vec![
        ("corp_id", Box::new(|b| b["corp_id"] = json!(""))),
        (
            "corp_secret",
            Box::new(|b| {
                b.as_object_mut()
                    .unwrap()
                    .remove("corp_secret")
                    .map(|_| ())
                    .unwrap()
            }),
        ),
        ("agent_id", Box::new(|b| b["agent_id"] = json!("10x2"))),
        ("agent_id", Box::new(|b| b["agent_id"] = json!(-5))),
        (
            "encoding_aes_key",
            Box::new(|b| b["encoding_aes_key"] = json!("tooshort")),
        ),
        (
            "encoding_aes_key",
            Box::new(|b| {
                b["encoding_aes_key"] = json!("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2-")
            }),
        ),
        (
            "callback_token",
            Box::new(|b| b["callback_token"] = json!("has spaces")),
        ),
        (
            "mall_api_base",
            Box::new(|b| b["mall_api_base"] = json!("not a url")),
        ),
        (
            "mall_api_base",
            Box::new(|b| b["mall_api_base"] = json!("ftp://mall.example.com")),
        ),
        (
            "mall_webhook_secret",
            Box::new(|b| b["mall_webhook_secret"] = json!(42)),
        ),
        (
            "corp_secert",
            Box::new(|b| b["corp_secert"] = json!("typo")),
        ),
        (
            "settings.auto_sinc",
            Box::new(|b| b["settings"] = json!({"auto_sinc": false})),
        ),
        (
            "tags_enabled",
            Box::new(|b| b["settings"] = json!({"tags_enabled": "yes"})),
        ),
    ];
    for (field, mutate) in cases {
        let mut body = tenant_body();
        mutate(&mut body);
        let (status, resp) = t
            .admin(Method::PUT, "/admin/v1/tenants/acme", Some(body))
            .await;
        assert_eq!(status, 400, "{field}: {resp}");
        assert_eq!(resp["error"]["code"], "invalid_request");
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "message for {field} does not name it: {message}"
        );
    }
    let raw = t
        .client
        .put(t.url("/admin/v1/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(
        t.app
            .store
            .get_tenant(&tagsync::domain::TenantId::parse("acme").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    t.shutdown().await;
}

#[tokio::test]
async fn settings_patch_flips_only_the_named_switches() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let (status, s) = t
        .admin(
            Method::PATCH,
            "/admin/v1/tenants/acme/settings",
            Some(json!({"auto_sync": false})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s,
        json!({"tags_enabled": true, "auto_sync": false, "member_sync": true})
    );
    let (_, s) = t
        .admin(
            Method::PATCH,
            "/admin/v1/tenants/acme/settings",
            Some(json!({"member_sync": false, "tags_enabled": false})),
        )
        .await;
    assert_eq!(
        s,
        json!({"tags_enabled": false, "auto_sync": false, "member_sync": false})
    );
    let (status, e) = t
        .admin(
            Method::PATCH,
            "/admin/v1/tenants/acme/settings",
            Some(json!({"auto_sync": "no"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auto_sync")
    );
    // Re-registering the tenant (new secrets) keeps the switches.
    t.put_tenant("acme").await;
    let (_, got) = t.admin(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(
        got["settings"],
        json!({"tags_enabled": false, "auto_sync": false, "member_sync": false})
    );
    t.shutdown().await;
}

#[tokio::test]
async fn unknown_tenants_and_routes_are_404() {
    let t = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/admin/v1/tenants/nobody"),
        (Method::PATCH, "/admin/v1/tenants/nobody/settings"),
        (Method::GET, "/admin/v1/tenants/nobody/status"),
        (Method::GET, "/admin/v1/tenants/bad%23id/status"),
        (Method::GET, "/admin/v2/anything"),
    ] {
        let (status, body) = t.admin(method.clone(), path, Some(json!({}))).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn status_reports_queue_counts_and_no_run_yet() {
    let t = spawn_app().await;
    t.put_tenant("acme").await;
    let (status, s) = t
        .admin(Method::GET, "/admin/v1/tenants/acme/status", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s["queue"],
        json!({"pending": 0, "in_flight": 0, "dead": 0, "scope": "tenant"})
    );
    assert_eq!(s["last_run"], Value::Null);
    t.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let t = spawn_app().await;
    let huge = vec![b'x'; tagsync::http::MAX_BODY + 1];
    let resp = t
        .client
        .put(t.url("/admin/v1/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    t.shutdown().await;
}

#[tokio::test]
async fn the_console_is_served_without_a_token_and_lists_nothing_without_one() {
    let t = spawn_app().await;
    let page = t.client.get(t.url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("app.js?v="), "{html}");
    // Without the slash the page's relative links would resolve against `/`.
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(t.url("/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "admin/");
    for (asset, content_type) in [
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = t
            .client
            .get(t.url(&format!("/admin/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(r.headers()["content-type"], content_type);
    }
    assert_eq!(
        t.client
            .get(t.url("/admin/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The API next to it still wants the token.
    let list = t
        .client
        .get(t.url("/admin/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 401);
    t.shutdown().await;
}

#[tokio::test]
async fn tenants_are_listed_by_id_without_secrets() {
    let t = spawn_app().await;
    t.put_tenant("zeta").await;
    t.put_tenant("acme").await;
    let (status, body) = t.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "zeta"]);
    let text = body.to_string();
    for secret in [
        "corp_secret",
        "callback_token",
        "mall_api_token",
        "mall_webhook_secret",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
    t.shutdown().await;
}
