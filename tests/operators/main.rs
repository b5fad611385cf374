//! Department-scoped operators (issue 16), end to end: the corp directory read from the
//! WeCom simulator and kept in the hub; operators signing in with WeCom, their roles and
//! sessions; the one scope check every admin route goes through.

#[path = "../sync/steps.rs"]
#[allow(dead_code)] // shared with tests/sync; not every helper is used here
mod steps;
#[path = "../support/mod.rs"]
mod support;

mod directory;
mod scope;
mod sessions;

use crate::support::world::World;
use serde_json::Value;
use steps::*;

/// Shanghai (2) and Beijing (3) under the root (1), Pudong (4) under Shanghai; four staff.
/// Made silently (no callbacks).
pub fn seed_directory(w: &World) {
    let a = w.wecom.silent();
    a.create_department(2, "上海分公司", 1, 10).unwrap();
    a.create_department(3, "北京分公司", 1, 20).unwrap();
    a.create_department(4, "浦东门店", 2, 10).unwrap();
    a.put_staff("hq_wang", "王总", &[1]).unwrap();
    a.put_staff("sh_li", "李上海", &[2]).unwrap();
    a.put_staff("pd_zhao", "赵浦东", &[4]).unwrap();
    a.put_staff("bj_chen", "陈北京", &[3]).unwrap();
}

/// `GET …/directory`.
pub async fn directory(w: &World) -> Value {
    let (status, body) = w.admin(Method::GET, "/directory", None).await;
    assert_eq!(status, 200, "GET directory: {body}");
    body
}

/// The departments of `userid` in the stored directory (None: not in it).
pub fn staff_departments(dir: &Value, userid: &str) -> Option<Vec<u64>> {
    dir["staff"]
        .as_array()?
        .iter()
        .find(|s| s["userid"] == userid)
        .map(|s| {
            s["departments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect()
        })
}

/// A browser of one operator: the cookies tagsync set, and the session's CSRF token.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub session: String,
    pub csrf: String,
}

/// A client that does not follow redirects (each hop is checked).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of cookie `name` among a response's `Set-Cookie` headers, with the whole header.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, v.to_owned())
        })
}

/// The first two hops of a sign-in: tagsync's redirect to the WeCom login page (with the
/// pre-login cookie), then the simulated scan by `userid` (WeCom's redirect back). Answers
/// the callback URL and the pre-login cookie.
pub async fn start_sign_in(w: &World, userid: &str) -> (String, String) {
    let http = no_redirects();
    let resp = http
        .get(format!("{}/admin/v1/tenants/{}/login", w.base, w.tenant))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let (prelogin, _) = set_cookie(&resp, "tagsync_prelogin").expect("a pre-login cookie");
    let to_wecom = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_wecom.starts_with(&w.wecom.login_url()), "{to_wecom}");
    let resp = http
        .get(format!("{to_wecom}&sim_user={userid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
    let back = resp.headers()["location"].to_str().unwrap().to_owned();
    (back, prelogin)
}

/// Signs `userid` in through the simulated WeCom login, as a browser would.
pub async fn sign_in(w: &World, userid: &str) -> Browser {
    let (callback, prelogin) = start_sign_in(w, userid).await;
    let http = no_redirects();
    let resp = http
        .get(&callback)
        .header("cookie", format!("tagsync_prelogin={prelogin}"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let session = set_cookie(&resp, "tagsync_session");
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let (session, _) = session.expect("a session cookie");
    let mut b = Browser {
        http,
        base: w.base.clone(),
        session,
        csrf: String::new(),
    };
    let (status, me) = b.call(Method::GET, "/admin/v1/me", None).await;
    assert_eq!(status, 200, "{me}");
    b.csrf = me["csrf_token"].as_str().unwrap().to_owned();
    b
}

impl Browser {
    /// A request with the session cookie and (for writes) the CSRF token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let csrf = self.csrf.clone();
        self.send(method, path, body, Some(csrf)).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<String>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("cookie", format!("tagsync_session={}", self.session));
        if let Some(c) = csrf.filter(|c| !c.is_empty()) {
            req = req.header("x-csrf-token", c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// `…/tenants/{t}{path}`.
    pub async fn admin(
        &self,
        w: &World,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(
            method,
            &format!("/admin/v1/tenants/{}{path}", w.tenant),
            body,
        )
        .await
    }
}

/// Gives `userid` a role (with the admin token).
pub async fn give_role(w: &World, userid: &str, role: &str, departments: &[u32]) {
    let (status, body) = w
        .admin(
            Method::PUT,
            &format!("/operators/{userid}"),
            Some(serde_json::json!({ "role": role, "departments": departments })),
        )
        .await;
    assert!(
        status == 200 || status == 201,
        "role for {userid}: {status} {body}"
    );
}

/// A world with the directory seeded and read, and roles: `hq_wang` admin, `sh_li` editor
/// of Shanghai (2), `pd_zhao` viewer of Shanghai, `bj_chen` editor of Beijing (3).
pub async fn staffed() -> World {
    let w = start().await;
    seed_directory(&w);
    give_role(&w, "hq_wang", "admin", &[]).await;
    give_role(&w, "sh_li", "editor", &[2]).await;
    give_role(&w, "pd_zhao", "viewer", &[2]).await;
    give_role(&w, "bj_chen", "editor", &[3]).await;
    w
}
