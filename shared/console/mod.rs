//! The operator's web console at `/admin/`: static HTML, JS and CSS compiled into the binary
//! (no build step, no files to deploy beside it), served by the same router as the admin API,
//! so `tagsync serve` and the admin Lambda both have it. The page itself talks only to
//! `/admin/v1/…` with the admin token the operator types in; the assets hold no secrets and
//! need no token. Every word the page shows is in `messages.json` (zh-CN and en), fetched by
//! app.js under the same CSP and content-hash scheme as the other assets.

use crate::http::{ApiError, HttpRequest, HttpResponse};
use http::Method;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");
const MESSAGES_JSON: &str = include_str!("messages.json");
const FAVICON: &str = include_str!("favicon.svg");

/// Whether the path after `/admin` names the console rather than the API (`/admin/v1/…`).
pub fn serves(rest: &[&str]) -> bool {
    match rest {
        [] => true,
        [name] => *name != "v1",
        _ => false,
    }
}

/// A short content hash: the page asks for `app.js?v={hash}`, so a new build is fetched at
/// once while an unchanged asset may be cached for good.
fn version(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..6])
}

/// The page with its asset links versioned. Built once per process.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    INDEX
        .replace("{{app.js}}", &format!("app.js?v={}", version(APP_JS)))
        .replace(
            "{{style.css}}",
            &format!("style.css?v={}", version(STYLE_CSS)),
        )
        .replace(
            "{{favicon.svg}}",
            &format!("favicon.svg?v={}", version(FAVICON)),
        )
        .replace(
            "{{messages.json}}",
            &format!("messages.json?v={}", version(MESSAGES_JSON)),
        )
});

/// Only this origin's own scripts and styles: the page holds the admin token, so no inline
/// script and nothing from elsewhere may run in it. Images are the one exception: a channel
/// code's QR image is WeCom's (`qr_code`, served from WeCom's https CDN), so `https:` images
/// may load — an image runs no script, and the page sends no referrer. When tagsync talks to
/// a WeCom on plain http (the simulator on loopback), that origin is allowed as well.
fn csp(wecom_api_base: &str) -> String {
    let wecom = reqwest::Url::parse(wecom_api_base)
        .ok()
        .filter(|u| u.scheme() == "http")
        .map(|u| format!(" {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:{wecom}; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Answers `GET /admin/` and `GET /admin/{asset}` (`rest` is the path after `/admin`);
/// `wecom_api_base` is where tagsync calls WeCom (see [`csp`]).
pub fn respond(
    req: &HttpRequest,
    rest: &[&str],
    wecom_api_base: &str,
) -> Result<HttpResponse, ApiError> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed("use GET".into()));
    }
    let (body, content_type): (&str, &'static str) = match rest {
        // `/admin` without the slash: the page's relative links need the directory form.
        [] if !req.path.ends_with('/') => {
            return Ok(HttpResponse::empty(308).with_header("location", "admin/"));
        }
        [] | ["index.html"] => (PAGE.as_str(), "text/html; charset=utf-8"),
        ["app.js"] => (APP_JS, "text/javascript; charset=utf-8"),
        ["style.css"] => (STYLE_CSS, "text/css; charset=utf-8"),
        ["favicon.svg"] => (FAVICON, "image/svg+xml"),
        ["messages.json"] => (MESSAGES_JSON, "application/json; charset=utf-8"),
        _ => {
            return Err(ApiError::NotFound(format!("no console asset {}", req.path)));
        }
    };
    // The page is revalidated every time (it names the current assets); an asset asked for
    // with its own content hash never changes under that URL. Any other `v` (an old build's,
    // or made up) is answered but not cached for good: it would pin today's body to a URL
    // that names another.
    let own = req.query_param("v") == Some(version(body).as_str());
    let cache = if content_type.starts_with("text/html") || !own {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let mut resp = HttpResponse::text(200, body);
    resp.content_type = Some(content_type);
    if req.method == Method::HEAD {
        resp.body = bytes::Bytes::new();
    }
    Ok(resp
        .with_header("cache-control", cache)
        .with_header("content-security-policy", csp(wecom_api_base))
        .with_header("x-content-type-options", "nosniff")
        .with_header("referrer-policy", "no-referrer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: &str) -> HttpResponse {
        let req = HttpRequest {
            method: Method::GET,
            path: path.into(),
            query: HttpRequest::parse_query(query),
            headers: Default::default(),
            body: Default::default(),
            request_id: "t".into(),
        };
        let trimmed = path.trim_end_matches('/');
        let rest: Vec<&str> = trimmed.split('/').skip(2).collect();
        respond(&req, &rest, "https://qyapi.weixin.qq.com").unwrap_or_else(ApiError::into_response)
    }

    #[test]
    fn the_page_links_versioned_assets_that_are_cached_for_good() {
        let page = get("/admin/", "");
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, Some("text/html; charset=utf-8"));
        let html = String::from_utf8_lossy(&page.body).into_owned();
        assert!(!html.contains("{{"), "every placeholder is replaced");
        let js = format!("app.js?v={}", version(APP_JS));
        assert!(html.contains(&js), "{html}");
        let asset = get("/admin/app.js", &format!("v={}", version(APP_JS)));
        assert_eq!(asset.content_type, Some("text/javascript; charset=utf-8"));
        assert!(
            asset
                .headers
                .iter()
                .any(|(k, v)| *k == "cache-control" && v.contains("immutable"))
        );
        let page_cache = page.headers.iter().find(|(k, _)| *k == "cache-control");
        assert_eq!(page_cache.map(|(_, v)| v.as_str()), Some("no-cache"));
    }

    #[test]
    fn the_message_table_is_served_versioned_as_json_with_both_languages() {
        let html = String::from_utf8_lossy(&get("/admin/", "").body).into_owned();
        let v = version(MESSAGES_JSON);
        assert!(html.contains(&format!("messages.json?v={v}")), "{html}");
        let asset = get("/admin/messages.json", &format!("v={v}"));
        assert_eq!(asset.status, 200);
        assert_eq!(asset.content_type, Some("application/json; charset=utf-8"));
        assert!(
            asset
                .headers
                .iter()
                .any(|(k, val)| *k == "cache-control" && val.contains("immutable"))
        );
        let table: serde_json::Value = serde_json::from_slice(&asset.body).expect("valid JSON");
        for lang in ["zh-CN", "en"] {
            assert!(table[lang].is_object(), "{lang} is in the table");
        }
    }

    #[test]
    fn an_asset_asked_for_with_a_hash_not_its_own_is_not_cached_immutable() {
        let cache = |r: &HttpResponse| {
            r.headers
                .iter()
                .find(|(k, _)| *k == "cache-control")
                .map(|(_, v)| v.clone())
        };
        for v in ["v=0000deadbeef", &format!("v={}", version(STYLE_CSS)), ""] {
            let r = get("/admin/app.js", v);
            assert_eq!(r.status, 200);
            assert_eq!(cache(&r).as_deref(), Some("no-cache"), "app.js?{v}");
        }
        let own = get("/admin/app.js", &format!("v={}", version(APP_JS)));
        assert!(cache(&own).unwrap().contains("immutable"));
    }

    #[test]
    fn qr_images_may_load_from_https_and_from_a_plain_http_wecom_but_scripts_only_from_self() {
        let real = csp("https://qyapi.weixin.qq.com");
        assert!(real.contains("img-src 'self' data: https:;"), "{real}");
        assert!(real.contains("script-src 'self';"), "{real}");
        let sim = csp("http://127.0.0.1:41234/");
        assert!(
            sim.contains("img-src 'self' data: https: http://127.0.0.1:41234;"),
            "{sim}"
        );
        assert!(sim.contains("connect-src 'self';"), "{sim}");
    }

    #[test]
    fn admin_without_slash_redirects_and_unknown_assets_are_404() {
        let r = get("/admin", "");
        assert_eq!(r.status, 308);
        assert_eq!(get("/admin/nope.js", "").status, 404);
        assert!(serves(&[]) && serves(&["app.js"]) && !serves(&["v1"]));
        assert!(!serves(&["v1", "tenants"]));
    }
}
