//! Operators signing in with WeCom (wecom-api.md §13), their sessions and roles.

use crate::*;
use serde_json::json;

#[tokio::test]
async fn an_operator_signs_in_through_the_simulated_wecom_login_with_a_strict_http_only_cookie() {
    let w = staffed().await;
    let (callback, prelogin) = start_sign_in(&w, "sh_li").await;
    assert!(
        callback.contains("code=") && callback.contains("state="),
        "{callback}"
    );
    let resp = no_redirects()
        .get(&callback)
        .header("cookie", format!("tagsync_prelogin={prelogin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, header) = set_cookie(&resp, "tagsync_session").unwrap();
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("SameSite=Strict"), "{header}");
    assert!(header.contains("Max-Age=28800"), "{header}");
    assert!(!header.contains("Secure"), "loopback: no Secure: {header}");

    let b = sign_in(&w, "sh_li").await;
    let (status, me) = b.call(Method::GET, "/admin/v1/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["userid"], "sh_li");
    assert_eq!(me["name"], "李上海");
    assert_eq!(me["role"], "editor");
    assert_eq!(me["departments"], json!([2]));
    assert_eq!(me["wecom_departments"], json!([2]));
    let audit = w.app.store.list_audit(&w.tenant, None, 20).await.unwrap();
    let signed = audit
        .items
        .iter()
        .find(|e| e.action == "operator.signed_in")
        .expect("the sign-in is audited");
    assert_eq!(signed.origin, "operator:sh_li");
}

#[tokio::test]
async fn cookies_are_secure_outside_loopback() {
    let w = staffed().await;
    let resp = no_redirects()
        .get(format!("{}/admin/v1/tenants/{}/login", w.base, w.tenant))
        .header("host", "tagsync.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let (_, header) = set_cookie(&resp, "tagsync_prelogin").unwrap();
    assert!(header.contains("; Secure"), "{header}");
    let to = resp.headers()["location"].to_str().unwrap();
    assert!(
        to.contains("redirect_uri=https%3A%2F%2Ftagsync.example.com%2Fadmin%2Fv1%2Ftenants%2Facme%2Flogin%2Fcallback"),
        "{to}"
    );
}

#[tokio::test]
async fn a_sign_in_state_works_once_and_only_in_the_browser_that_started_it() {
    let w = staffed().await;
    let (callback, prelogin) = start_sign_in(&w, "sh_li").await;
    let http = no_redirects();
    let other_browser = http.get(&callback).send().await.unwrap();
    assert_eq!(other_browser.status(), 403);
    // The state was spent by that attempt: the right browser must start again.
    let again = http
        .get(&callback)
        .header("cookie", format!("tagsync_prelogin={prelogin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    let (callback, prelogin) = start_sign_in(&w, "sh_li").await;
    let ok = http
        .get(&callback)
        .header("cookie", format!("tagsync_prelogin={prelogin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let replay = http
        .get(&callback)
        .header("cookie", format!("tagsync_prelogin={prelogin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400, "a used state is refused");
}

#[tokio::test]
async fn wecom_answers_a_login_code_once_and_not_after_five_minutes() {
    let clock = tagsync::ports::OffsetClock::default();
    let w = World::start(support::world::WorldOptions {
        wecom: tagsync::sim::wecom::SimConfig {
            clock: std::sync::Arc::new(clock.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    seed_directory(&w);
    let creds = w.wecom.credentials();
    let code = w.wecom.login_code("sh_li");
    let user = w.app.wecom.auth_getuserinfo(&creds, &code).await.unwrap();
    assert_eq!(user.as_deref(), Some("sh_li"));
    let twice = w
        .app
        .wecom
        .auth_getuserinfo(&creds, &code)
        .await
        .unwrap_err();
    assert_eq!(twice.errcode, Some(40029), "{twice}");

    let outsider = w.wecom.login_code("not_staff");
    assert_eq!(
        w.app
            .wecom
            .auth_getuserinfo(&creds, &outsider)
            .await
            .unwrap(),
        None
    );

    let late = w.wecom.login_code("sh_li");
    use tagsync::ports::Clock;
    clock.jump_to(
        clock
            .now()
            .plus_millis(tagsync::sim::wecom::CODE_LIFETIME_MS + 1000),
    );
    let expired = w
        .app
        .wecom
        .auth_getuserinfo(&creds, &late)
        .await
        .unwrap_err();
    assert_eq!(expired.errcode, Some(42003), "{expired}");
    assert!(!expired.retryable());
}

#[tokio::test]
async fn a_staff_member_without_a_role_is_refused_at_sign_in_naming_them() {
    let w = start().await;
    seed_directory(&w);
    let (callback, prelogin) = start_sign_in(&w, "sh_li").await;
    let resp = no_redirects()
        .get(&callback)
        .header("cookie", format!("tagsync_prelogin={prelogin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(&resp, "tagsync_session").is_none());
    let body = resp.text().await.unwrap();
    assert!(body.contains("sh_li"), "{body}");
}

#[tokio::test]
async fn roles_are_set_listed_and_removed_by_an_admin_and_unknown_names_are_400() {
    let w = staffed().await;
    let (status, list) = w.admin(Method::GET, "/operators", None).await;
    assert_eq!(status, 200, "{list}");
    let users: Vec<&str> = list["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["userid"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bj_chen", "hq_wang", "pd_zhao", "sh_li"]);
    assert_eq!(list["operators"][3]["assigned_by"], "admin-token");

    let (status, body) = w
        .admin(
            Method::PUT,
            "/operators/ghost",
            Some(json!({"role": "viewer", "departments": [2]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("ghost"), "{body}");
    let (status, body) = w
        .admin(
            Method::PUT,
            "/operators/sh_li",
            Some(json!({"role": "viewer", "departments": [77]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("77"), "{body}");
    let (status, body) = w
        .admin(
            Method::PUT,
            "/operators/sh_li",
            Some(json!({"role": "boss"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("role"), "{body}");

    // Removing a role ends what the session may do at once.
    let b = sign_in(&w, "sh_li").await;
    let (status, _) = w.admin(Method::DELETE, "/operators/sh_li", None).await;
    assert_eq!(status, 204);
    let (status, body) = b.call(Method::GET, "/admin/v1/me", None).await;
    assert_eq!(status, 403, "{body}");
    let audit = w.app.store.list_audit(&w.tenant, None, 50).await.unwrap();
    assert!(
        audit
            .items
            .iter()
            .any(|e| e.action == "operator.role_removed" && e.origin == "operator:admin-token")
    );
}

#[tokio::test]
async fn an_admin_operator_gives_roles_and_the_audit_names_them() {
    let w = staffed().await;
    let admin = sign_in(&w, "hq_wang").await;
    let (status, body) = admin
        .admin(
            &w,
            Method::PUT,
            "/operators/bj_chen",
            Some(json!({"role": "viewer", "departments": [3]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assigned_by"], "hq_wang");
    let audit = w.app.store.list_audit(&w.tenant, None, 5).await.unwrap();
    assert_eq!(audit.items[0].action, "operator.role_set");
    assert_eq!(audit.items[0].origin, "operator:hq_wang");
    // An editor may not.
    let editor = sign_in(&w, "sh_li").await;
    let (status, _) = editor
        .admin(
            &w,
            Method::PUT,
            "/operators/pd_zhao",
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_sessions_write_needs_its_csrf_token_and_is_audited_under_the_operator() {
    let w = staffed().await;
    let b = sign_in(&w, "sh_li").await;
    let group = json!({"name": "兴趣", "tags": [{"name": "露营"}]});
    let (status, body) = b
        .send(
            Method::POST,
            &format!("/admin/v1/tenants/{}/tag-groups", w.tenant),
            Some(group.clone()),
            None,
        )
        .await;
    assert_eq!(status, 403, "no CSRF token: {body}");
    let (status, body) = b
        .send(
            Method::POST,
            &format!("/admin/v1/tenants/{}/tag-groups", w.tenant),
            Some(group.clone()),
            Some("forged".into()),
        )
        .await;
    assert_eq!(status, 403, "a wrong CSRF token: {body}");
    let (status, body) = b.admin(&w, Method::POST, "/tag-groups", Some(group)).await;
    assert_eq!(status, 201, "{body}");
    let audit = w.app.store.list_audit(&w.tenant, None, 50).await.unwrap();
    let created = audit
        .items
        .iter()
        .find(|e| e.action == "tag_group.created")
        .expect("the create is audited");
    assert_eq!(created.origin, "operator:sh_li", "{created:?}");
    settle(&w).await;
}

#[tokio::test]
async fn the_admin_token_still_works_as_an_admin_and_is_audited_as_admin_token() {
    let w = staffed().await;
    let (status, me) = w.request(Method::GET, "/admin/v1/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["kind"], "admin_token");
    let (status, _) = w
        .admin(
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "总部", "tags": [{"name": "重点"}]})),
        )
        .await;
    assert_eq!(status, 201);
    let audit = w.app.store.list_audit(&w.tenant, None, 50).await.unwrap();
    assert!(
        audit
            .items
            .iter()
            .any(|e| e.origin == "operator:admin-token"),
        "{:?}",
        audit.items
    );
    settle(&w).await;
}

#[tokio::test]
async fn logout_ends_the_session_and_an_expired_session_is_refused() {
    let clock = tagsync::ports::OffsetClock::default();
    let w = World::start(support::world::WorldOptions {
        wecom: tagsync::sim::wecom::SimConfig {
            clock: std::sync::Arc::new(clock.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    seed_directory(&w);
    give_role(&w, "sh_li", "editor", &[2]).await;
    let b = sign_in(&w, "sh_li").await;
    let (status, _) = b.call(Method::POST, "/admin/v1/logout", None).await;
    assert_eq!(status, 204);
    let (status, _) = b.call(Method::GET, "/admin/v1/me", None).await;
    assert_eq!(status, 401);

    let b = sign_in(&w, "sh_li").await;
    use tagsync::ports::Clock;
    clock.jump_to(clock.now().plus_secs(8 * 3600 + 60));
    let (status, body) = b.call(Method::GET, "/admin/v1/me", None).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_viewer_cannot_write_and_an_operator_cannot_reach_another_tenant() {
    let w = staffed().await;
    let viewer = sign_in(&w, "pd_zhao").await;
    let (status, body) = viewer
        .admin(
            &w,
            Method::POST,
            "/tag-groups",
            Some(json!({"name": "兴趣", "tags": [{"name": "露营"}]})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = viewer.admin(&w, Method::GET, "/tag-groups", None).await;
    assert_eq!(status, 200);
    let (status, body) = viewer
        .call(Method::GET, "/admin/v1/tenants/other/tag-groups", None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = viewer.call(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["tenants"].as_array().unwrap().len(), 1, "{body}");
}
