//! A simulator of the chat-archive feed connector (automation.md §3): what a merchant runs
//! next to WeCom's native SDK. It builds messages in the archive's decrypted shape, signs
//! batches with the tenant's `message_feed_secret` exactly as the contract says, and posts
//! them to `POST {tagsync}/messages/{tenant}`.

use crate::mall::webhook::sign;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

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
