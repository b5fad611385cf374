//! `spawn_app()`: a real `tagsync serve` (in-process, on port 0, with its own SQLite data
//! directory) and a client for it; `wait_for` polls a condition with a deadline.

use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tagsync::app::App;
use tagsync::config::Config;
use tagsync::ports::SystemClock;
use tagsync::runtime::serve::{Nightly, ServeOptions};
use tagsync::store::sealing::SecretKey;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub app: App,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The app's configuration for tests: fast retries so backoff does not slow them down.
pub fn test_config() -> Config {
    let mut config = Config::new(
        ADMIN_TOKEN.into(),
        Some("http://127.0.0.1:9/cgi-bin".into()),
    )
    .unwrap();
    config.worker.base_backoff = Duration::from_millis(20);
    config.worker.max_backoff = Duration::from_millis(100);
    config.worker.visibility = Duration::from_secs(5);
    config
}

pub async fn sqlite_app(dir: &std::path::Path) -> App {
    App::sqlite(
        dir,
        test_config(),
        Arc::new(SystemClock),
        SecretKey::generate(),
    )
    .await
    .unwrap()
    .0
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with the test configuration changed by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    configure(&mut config);
    let app = App::sqlite(
        dir.path(),
        config,
        Arc::new(SystemClock),
        SecretKey::generate(),
    )
    .await
    .unwrap()
    .0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        workers: 2,
        nightly: Nightly::Off,
        shutdown_grace: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    let server = tokio::spawn(tagsync::runtime::serve::serve(
        app.clone(),
        listener,
        opts,
        async {
            let _ = stopped.await;
        },
    ));
    TestApp {
        base,
        app,
        client: reqwest::Client::new(),
        _dir: dir,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn put_tenant(&self, tenant: &str) -> (u16, Value) {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(tenant_body()),
        )
        .await
    }

    /// Every audit entry of a tenant, following cursors.
    pub async fn audit(&self, tenant: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, body) = self
                .admin(
                    reqwest::Method::GET,
                    &format!("/admin/v1/tenants/{tenant}/audit?limit=500&cursor={cursor}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            out.extend(body["entries"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return out,
            }
        }
    }

    /// Stops the server as SIGTERM would and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// The inbound events tenant `acme` has recorded (audit `event.received`).
pub async fn received(t: &TestApp) -> Vec<Value> {
    t.audit("acme")
        .await
        .into_iter()
        .filter(|e| e["action"] == "event.received")
        .collect()
}

/// After a refused request, nothing is recorded: no job, no audit entry, no last-event time.
pub async fn assert_nothing_recorded(t: &TestApp) {
    let c = t.app.queue.counts().await.unwrap();
    assert_eq!((c.pending, c.in_flight, c.dead), (0, 0, 0));
    assert!(received(t).await.is_empty());
    let (_, status) = t
        .admin(reqwest::Method::GET, "/admin/v1/tenants/acme/status", None)
        .await;
    assert_eq!(status["last_event_at"], Value::Null);
}

/// A valid tenant registration (the AES key and token are WeCom's official sample values).
pub fn tenant_body() -> Value {
    json!({
        "corp_id": "ww5823bf96d3bd56c7",
        "agent_id": "1000002",
        "corp_secret": "corp-secret-value-1",
        "callback_token": "QDG6eK",
        "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "mall_api_base": "https://mall.example.com/api/",
        "mall_api_token": "mall-token-value-2",
        "mall_webhook_secret": "webhook-secret-value-3",
    })
}

/// Polls `check` until it returns Some, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A tenant as the store keeps it, for tests that write it directly.
pub fn tagsync_tenant(id: &str) -> tagsync::domain::Tenant {
    use tagsync::domain::*;
    Tenant {
        id: TenantId::parse(id).unwrap(),
        corp_id: CorpId::parse("wwcorp").unwrap(),
        agent_id: "1000002".into(),
        mall_api_base: "https://mall.example.com".into(),
        secrets: TenantSecrets {
            corp_secret: Secret::new("s"),
            callback_token: Secret::new("t"),
            encoding_aes_key: Secret::new("k"),
            mall_api_token: Secret::new("m"),
            mall_webhook_secret: Secret::new("w"),
            message_feed_secret: None,
        },
        settings: Settings::default(),
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
        version: 0,
    }
}

/// `GET …/status` of a tenant, answered by the handler itself (no server: its workers would
/// drain the queue under the test).
pub async fn status_of(app: &tagsync::app::App, tenant: &str) -> Value {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    let req = tagsync::http::HttpRequest {
        method: reqwest::Method::GET,
        path: format!("/admin/v1/tenants/{tenant}/status"),
        query: Vec::new(),
        headers,
        body: Default::default(),
        request_id: "status-test".into(),
    };
    let resp = tagsync::api::dispatch(app, tagsync::api::Surface::Admin, req).await;
    assert_eq!(resp.status, 200);
    resp.body_json().unwrap()
}
