//! Operators signing in with WeCom's web login (wecom-api.md §13; docs/operators.md):
//!
//! - `GET /admin/v1/tenants/{t}/login` sends the browser to WeCom's login page with a fresh
//!   `state`, bound to this browser by a pre-login cookie;
//! - `GET …/login/callback?code&state` (WeCom sends the browser back here) checks the state
//!   and its browser, turns the code into the userid (`auth/getuserinfo`), reads their
//!   departments (`user/get`), requires a role in the hub, and opens a session;
//! - `POST /admin/v1/logout` ends it; `GET /admin/v1/me` says who is signed in.

use super::super::access::{self, Caller, SESSION_COOKIE};
use super::super::{load_tenant, parse_tenant};
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use base64::Engine;
use rand::RngCore;
use serde_json::json;

/// The cookie binding a sign-in's `state` to the browser that started it. `SameSite=Lax`:
/// it must come back on WeCom's (cross-site) redirect to the callback.
const PRELOGIN_COOKIE: &str = "tagsync_prelogin";
/// WeCom's own login page; a WeCom elsewhere (the simulator) serves it beside its API.
const WECOM_LOGIN: &str = "https://login.work.weixin.qq.com/wwlogin/sso/login";
const WECOM_API: &str = "https://qyapi.weixin.qq.com/cgi-bin";

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where the browser signs in: WeCom's page, or `{origin}/wwlogin/sso/login` beside a
/// WeCom API base that is not WeCom's (the simulator).
fn login_page(api_base: &str) -> String {
    if api_base == WECOM_API {
        return WECOM_LOGIN.into();
    }
    match reqwest::Url::parse(api_base) {
        Ok(u) => format!("{}/wwlogin/sso/login", u.origin().ascii_serialization()),
        Err(_) => WECOM_LOGIN.into(),
    }
}

/// The request's host without its port.
fn host(req: &HttpRequest) -> &str {
    req.header("host").unwrap_or("")
}

fn loopback(req: &HttpRequest) -> bool {
    let h = host(req);
    let name = if h.starts_with('[') {
        h.split(']').next().map(|s| &s[1..]).unwrap_or("")
    } else {
        h.rsplit_once(':').map_or(h, |(n, _)| n)
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

/// This deployment's address as the browser sees it: `https` unless on loopback (or the
/// proxy says otherwise in `X-Forwarded-Proto`).
fn public_base(req: &HttpRequest) -> String {
    let scheme =
        req.header("x-forwarded-proto")
            .unwrap_or(if loopback(req) { "http" } else { "https" });
    format!("{scheme}://{}", host(req))
}

/// A cookie's `Set-Cookie` value: HTTP-only, `Secure` outside loopback.
fn set_cookie(
    req: &HttpRequest,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: i64,
) -> String {
    let secure = if loopback(req) { "" } else { "; Secure" };
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    )
}

/// `GET …/tenants/{t}/login`.
pub async fn start(app: &App, tenant: &str, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let t = load_tenant(app, &parse_tenant(tenant)?).await?;
    let browser = random_token();
    let state = random_token();
    let now = app.clock.now();
    app.store
        .put_login_state(&LoginState {
            state: state.clone(),
            tenant: t.id.clone(),
            browser_hash: access::sha256_hex(&browser),
            expires_at: now.plus_secs(LoginState::LIFETIME_SECS),
        })
        .await?;
    let callback = format!(
        "{}/admin/v1/tenants/{}/login/callback",
        public_base(req),
        t.id
    );
    let mut url = reqwest::Url::parse(&login_page(&app.config.wecom_api_base))
        .map_err(|e| ApiError::Internal(format!("the WeCom login page: {e}")))?;
    url.query_pairs_mut()
        .append_pair("login_type", "CorpApp")
        .append_pair("appid", t.corp_id.as_str())
        .append_pair("agentid", &t.agent_id)
        .append_pair("redirect_uri", &callback)
        .append_pair("state", &state);
    let path = format!("/admin/v1/tenants/{}/login", t.id);
    Ok(HttpResponse::empty(302)
        .with_header("location", url.to_string())
        .with_header(
            "set-cookie",
            set_cookie(
                req,
                PRELOGIN_COOKIE,
                &browser,
                &path,
                "Lax",
                LoginState::LIFETIME_SECS,
            ),
        ))
}

/// `GET …/tenants/{t}/login/callback?code=…&state=…`.
pub async fn callback(
    app: &App,
    tenant: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let t = load_tenant(app, &parse_tenant(tenant)?).await?;
    let param = |k: &str| {
        req.query_param(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("query `{k}` is missing")))
    };
    let (code, state) = (param("code")?, param("state")?);
    let now = app.clock.now();
    let login = app
        .store
        .take_login_state(state)
        .await?
        .filter(|l| l.tenant == t.id && l.expires_at > now)
        .ok_or_else(|| {
            ApiError::BadRequest("this sign-in is unknown, used or expired; start again".into())
        })?;
    let browser = access::cookie(req, PRELOGIN_COOKIE).unwrap_or("");
    if access::sha256_hex(browser) != login.browser_hash {
        return Err(ApiError::Forbidden(
            "this sign-in was started in another browser; start again".into(),
        ));
    }
    let creds = App::wecom_credentials(&t);
    let userid = match app.wecom.auth_getuserinfo(&creds, code).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(ApiError::Forbidden(
                "WeCom says this person is not a member of the corp".into(),
            ));
        }
        Err(e) if e.retryable() => {
            return Err(ApiError::Unavailable(format!(
                "WeCom did not answer the sign-in: {e}"
            )));
        }
        Err(e) => {
            return Err(ApiError::Unauthorized(format!(
                "WeCom refused the sign-in code: {e}"
            )));
        }
    };
    let role = app
        .store
        .get_operator(&t.id, &userid)
        .await?
        .ok_or_else(|| {
            ApiError::Forbidden(format!(
                "`{userid}` has no role in tagsync; ask an admin to give them one"
            ))
        })?;
    let member = app.wecom.user_get(&creds, &userid).await.map_err(|e| {
        ApiError::Unavailable(format!("reading `{userid}`'s departments from WeCom: {e}"))
    })?;
    let token = random_token();
    let session = Session {
        id_hash: access::sha256_hex(&token),
        tenant: t.id.clone(),
        userid: userid.clone(),
        name: member.name,
        wecom_departments: member.departments,
        csrf_token: random_token(),
        created_at: now,
        expires_at: now.plus_secs(Session::LIFETIME_SECS),
    };
    app.store.put_session(&session).await?;
    let caller = Caller::Operator(Box::new(access::OperatorCaller {
        session: session.clone(),
        role,
    }));
    caller
        .scope(super::append_audit(
            app,
            &t.id,
            "operator.signed_in",
            format!("operator:{userid}"),
            None,
            Some(json!({ "wecom_departments": session.wecom_departments })),
        ))
        .await;
    // A page, not a redirect: the browser arrived from WeCom (cross-site), and a
    // `SameSite=Strict` cookie is only sent once it navigates on from here.
    let mut page = HttpResponse::text(
        200,
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url=/admin/\"><title>tagsync</title></head>\
         <body><p><a href=\"/admin/\">已登录，进入控制台 (signed in: open the console)</a></p></body></html>",
    );
    page.content_type = Some("text/html; charset=utf-8");
    let login_path = format!("/admin/v1/tenants/{}/login", t.id);
    Ok(page
        .with_header(
            "set-cookie",
            set_cookie(
                req,
                SESSION_COOKIE,
                &token,
                "/admin",
                "Strict",
                Session::LIFETIME_SECS,
            ),
        )
        .with_header(
            "set-cookie",
            set_cookie(req, PRELOGIN_COOKIE, "", &login_path, "Lax", 0),
        ))
}

/// `POST /admin/v1/logout`.
pub async fn logout(
    app: &App,
    caller: &Caller,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Caller::Operator(o) = caller {
        app.store.delete_session(&o.session.id_hash).await?;
        super::append_audit(
            app,
            &o.session.tenant,
            "operator.signed_out",
            format!("operator:{}", o.session.userid),
            None,
            None,
        )
        .await;
    }
    Ok(HttpResponse::empty(204).with_header(
        "set-cookie",
        set_cookie(req, SESSION_COOKIE, "", "/admin", "Strict", 0),
    ))
}

/// `GET /admin/v1/me`.
pub fn me(caller: &Caller) -> HttpResponse {
    let body = match caller {
        Caller::AdminToken => {
            json!({ "kind": "admin_token", "name": "admin-token", "role": "admin" })
        }
        Caller::Operator(o) => json!({
            "kind": "operator",
            "tenant": o.session.tenant,
            "userid": o.session.userid,
            "name": o.session.name,
            "role": o.role.role,
            "departments": o.role.departments,
            "wecom_departments": o.session.wecom_departments,
            "csrf_token": o.session.csrf_token,
            "expires_at": o.session.expires_at.to_rfc3339(),
        }),
    };
    HttpResponse::json(200, &body)
}
