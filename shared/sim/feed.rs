//! A simulator of the chat-archive feed connector (automation.md §3): what a merchant runs
//! next to WeCom's native SDK. It builds messages in the archive's decrypted shape, signs
//! batches with the tenant's `message_feed_secret` exactly as the contract says, and posts
//! them to `POST {tagsync}/messages/{tenant}`.
//!
//! [`ChatArchive`] puts it behind a small HTTP server for the demo, so a newcomer can "send"
//! a chat message with one `curl` and watch the rules act on it.

use crate::mall::webhook::sign;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub struct FeedConnector {
    url: String,
    secret: String,
    http: reqwest::Client,
    next: AtomicU64,
}

/// A text message (`msgtype: text`) from `from` to `to` in a one-to-one chat.
pub fn text(msgid: &str, from: &str, to: &str, content: &str) -> Value {
    json!({
        "msgid": msgid,
        "action": "send",
        "from": from,
        "tolist": [to],
        "roomid": "",
        "msgtime": chrono::Utc::now().timestamp_millis(),
        "msgtype": "text",
        "text": {"content": content},
    })
}

impl FeedConnector {
    /// Posts to `{base}/messages/{tenant}` signing with `secret`.
    pub fn new(base: &str, tenant: &str, secret: &str) -> Self {
        Self {
            url: format!("{}/messages/{tenant}", base.trim_end_matches('/')),
            secret: secret.to_owned(),
            http: reqwest::Client::new(),
            next: AtomicU64::new(1),
        }
    }

    /// A fresh message id (the archive's are opaque base64 strings; unique is what counts).
    pub fn msgid(&self) -> String {
        format!(
            "sim-{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A text message with a fresh id.
    pub fn text(&self, from: &str, to: &str, content: &str) -> Value {
        text(&self.msgid(), from, to, content)
    }

    /// Signs and posts one batch; the status and the answer's body.
    pub async fn post(&self, messages: &[Value]) -> Result<(u16, Value), reqwest::Error> {
        let body =
            serde_json::to_vec(&json!({ "messages": messages })).expect("a JSON value serializes");
        let ts = chrono::Utc::now().timestamp();
        self.post_raw(
            &body,
            Some(ts),
            Some(&sign(self.secret.as_bytes(), ts, &body)),
        )
        .await
    }

    /// Posts `body` as given, with the headers given (to show what tagsync refuses).
    pub async fn post_raw(
        &self,
        body: &[u8],
        timestamp: Option<i64>,
        signature: Option<&str>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(ts) = timestamp {
            req = req.header("x-feed-timestamp", ts.to_string());
        }
        if let Some(s) = signature {
            req = req.header("x-feed-signature", s);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Signs `body` at `timestamp` with this connector's secret (for stale-request tests).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        sign(self.secret.as_bytes(), timestamp, body)
    }
}

/// The feed connector as a loopback HTTP server (the demo's chat archive):
/// `POST /chat {"from", "to", "text"}` builds a one-to-one text message with a fresh `msgid`,
/// signs it and posts it to tagsync, and answers tagsync's status and body with the `msgid`.
/// Until [`ChatArchive::connect`] names where to post, it answers 503.
pub struct ChatArchive {
    url: String,
    target: Arc<Mutex<Option<Arc<FeedConnector>>>>,
    stop: Option<oneshot::Sender<()>>,
}

#[derive(Deserialize)]
struct ChatRequest {
    from: String,
    to: String,
    text: String,
}

impl ChatArchive {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let target: Arc<Mutex<Option<Arc<FeedConnector>>>> = Arc::default();
        let app = axum::Router::new()
            .route("/chat", axum::routing::post(chat))
            .with_state(target.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "chat archive simulator stopped with an error");
            }
        });
        Ok(Self {
            url,
            target,
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:P`; messages are sent with `POST {url}/chat`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on, messages go through `connector`.
    pub fn connect(&self, connector: FeedConnector) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(connector));
    }
}

impl Drop for ChatArchive {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn chat(
    AxumState(target): AxumState<Arc<Mutex<Option<Arc<FeedConnector>>>>>,
    body: axum::body::Bytes,
) -> Response {
    let refuse = |status: StatusCode, error: String| {
        (status, axum::Json(json!({"ok": false, "error": error}))).into_response()
    };
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"from\", \"to\", \"text\"}}: {e}"),
            );
        }
    };
    let connector = target.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(connector) = connector else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to tagsync yet".into(),
        );
    };
    let message = connector.text(&req.from, &req.to, &req.text);
    match connector.post(std::slice::from_ref(&message)).await {
        Ok((status, answer)) => axum::Json(json!({
            "ok": (200..300).contains(&status),
            "msgid": message["msgid"],
            "tagsync": {"status": status, "body": answer},
        }))
        .into_response(),
        Err(e) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("posting to tagsync failed: {e}"),
        ),
    }
}
