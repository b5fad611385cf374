//! `POST /messages/{tenant}`: the chat-message feed (automation.md §3). A connector the
//! merchant runs forwards decrypted chat-archive messages, signed like a mall webhook
//! (`X-Feed-Timestamp`, `X-Feed-Signature: v1=…`, HMAC-SHA256 over `timestamp + "." + body`
//! with the tenant's `message_feed_secret`). The whole request is checked before anything is
//! recorded; then each message is deduplicated by `msgid`, the new text messages go to one
//! `Rules` job, and the answer is 202 once that job is durably queued.

use super::inbound_tenant;
use crate::app::App;
use crate::domain::*;
use crate::http::{ApiError, HttpRequest, HttpResponse};
use crate::mall::webhook::{MAX_BODY_BYTES, WebhookError, verify};
use crate::ports::Claim;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 100;
/// A `msgid` becomes a store key: bounded well below the key limits.
const MAX_MSGID_CHARS: usize = 200;
/// How long a `msgid` is remembered (a connector re-sending after a restart is caught).
const DEDUPE_TTL_SECS: i64 = 30 * 24 * 3600;
/// How long a claim blocks a concurrent copy of the same message while it is queued.
const CLAIM_LOCK_MS: i64 = 30_000;

pub async fn handle(app: &App, tenant: &str, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let tenant = inbound_tenant(app, tenant).await?;
    let Some(secret) = &tenant.secrets.message_feed_secret else {
        return Err(ApiError::Unauthorized(
            "this tenant has no message_feed_secret: set one with PUT tenant first".into(),
        ));
    };
    verify(
        secret.expose().as_bytes(),
        req.header("x-feed-timestamp"),
        req.header("x-feed-signature"),
        &req.body,
        app.clock.now().secs(),
    )
    .map_err(signature_error)?;
    let messages = parse(&req.body)?;
    if !tenant.settings.tags_enabled {
        tracing::info!(tenant = %tenant.id, "customer-tag feature is off: feed acknowledged and dropped");
        return Ok(HttpResponse::json(
            202,
            &json!({"queued": 0, "skipped": messages.len()}),
        ));
    }

    let now = app.clock.now();
    let expires = now.plus_secs(DEDUPE_TTL_SECS);
    let mut claimed: Vec<String> = Vec::new();
    let mut fresh: Vec<FeedMessage> = Vec::new();
    let mut skipped = 0usize;
    let mut seen = BTreeSet::new();
    for m in messages {
        if !seen.insert(m.msgid.clone()) {
            skipped += 1;
            continue;
        }
        let key = format!("msg#{}#{}", tenant.id, m.msgid);
        let claim = app
            .store
            .claim(&key, now, now.plus_millis(CLAIM_LOCK_MS), expires)
            .await;
        match claim {
            Ok(Claim::Acquired) => {
                claimed.push(key);
                // Other types are accepted and skipped (no firing); their ids are kept so a
                // re-send is a duplicate all the same.
                if m.msgtype == "text" {
                    fresh.push(m);
                } else {
                    skipped += 1;
                }
            }
            Ok(Claim::Completed) => skipped += 1,
            Ok(Claim::InProgress) => {
                release(app, &claimed).await;
                return Err(ApiError::Unavailable(format!(
                    "message `{}` is being recorded by another request; retry",
                    m.msgid
                )));
            }
            Err(e) => {
                release(app, &claimed).await;
                return Err(e.into());
            }
        }
    }
    let queued = fresh.len();
    if !fresh.is_empty() {
        let job = Job::new(
            tenant.id.clone(),
            JobKind::Rules {
                event: RuleEvent::Messages { messages: fresh },
            },
            now,
        );
        if let Err(e) = app.queue.send(std::slice::from_ref(&job)).await {
            release(app, &claimed).await;
            return Err(e.into());
        }
    }
    for key in &claimed {
        if let Err(e) = app.store.complete(key, expires).await {
            // Queued already: a re-send after the claim lapses is queued again, and firings
            // are once per (rule, customer, message) whatever the queue does.
            tracing::warn!(key, error = %e, "message queued but its dedupe record was not completed");
        }
    }
    if let Err(e) = app.store.touch_last_event(&tenant.id, now).await {
        tracing::warn!(error = %e, "last event time not recorded");
    }
    app.metrics.incr(
        crate::metrics::EVENTS,
        &[("source", "feed"), ("outcome", "queued")],
    );
    tracing::info!(tenant = %tenant.id, queued, skipped, "chat messages accepted");
    Ok(HttpResponse::json(
        202,
        &json!({"queued": queued, "skipped": skipped}),
    ))
}

/// Gives back the claims of a request that is refused after all (its retry must get through).
async fn release(app: &App, keys: &[String]) {
    for key in keys {
        if let Err(e) = app.store.release(key).await {
            tracing::error!(key, error = %e, "could not release a message's dedupe claim; its retry waits until the claim lapses");
        }
    }
}

/// 401 for anything about authenticity, named with the feed's headers.
fn signature_error(e: WebhookError) -> ApiError {
    let what = match e {
        WebhookError::MissingTimestamp => "missing X-Feed-Timestamp header".to_owned(),
        WebhookError::BadTimestamp => "X-Feed-Timestamp must be unix seconds".to_owned(),
        WebhookError::MissingSignature => "missing X-Feed-Signature header".to_owned(),
        WebhookError::BadSignature => "X-Feed-Signature does not match the body".to_owned(),
        WebhookError::Stale { skew_secs } => {
            format!("X-Feed-Timestamp is {skew_secs} s away from tagsync's clock (allowed: 300 s)")
        }
        other => other.to_string(),
    };
    ApiError::Unauthorized(what)
}

fn bad(field: String, what: &str) -> ApiError {
    ApiError::BadRequest(format!("field `{field}` {what}"))
}

/// The body, strictly: `{"messages": [...]}` with 1..=100 messages, each with string `msgid`,
/// `from` and `msgtype`; a text message has `text.content`. Anything else refuses the whole
/// request (nothing recorded).
pub fn parse(body: &[u8]) -> Result<Vec<FeedMessage>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let list = value
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages".into(), "must be a list of messages"))?;
    if list.is_empty() || list.len() > MAX_MESSAGES {
        return Err(bad(
            "messages".into(),
            &format!(
                "must list 1 to {MAX_MESSAGES} messages ({} given)",
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect()
}

fn message(i: usize, m: &Value) -> Result<FeedMessage, ApiError> {
    let field = |k: &str| format!("messages[{i}].{k}");
    if !m.is_object() {
        return Err(bad(format!("messages[{i}]"), "must be an object"));
    }
    let required = |k: &str| -> Result<String, ApiError> {
        match m.get(k) {
            Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => {
                Ok(s.clone())
            }
            Some(_) => Err(bad(
                field(k),
                "must be a non-empty string without control characters",
            )),
            None => Err(bad(field(k), "is required")),
        }
    };
    let msgid = required("msgid")?;
    if msgid.chars().count() > MAX_MSGID_CHARS {
        return Err(bad(field("msgid"), "is over 200 characters"));
    }
    let from = required("from")?;
    let msgtype = required("msgtype")?;
    let optional = |k: &str| -> Result<String, ApiError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(field(k), "must be a string")),
        }
    };
    let tolist = match m.get("tolist") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(field("tolist"), "must be a list of strings"))?,
        Some(_) => return Err(bad(field("tolist"), "must be a list of strings")),
    };
    let msgtime = match m.get("msgtime") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| bad(field("msgtime"), "must be milliseconds since the epoch"))?,
    };
    let text = if msgtype == "text" {
        Some(
            m.get("text")
                .and_then(|t| t.get("content"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad(field("text.content"), "is required for a text message"))?
                .to_owned(),
        )
    } else {
        None
    };
    Ok(FeedMessage {
        msgid,
        action: optional("action")?,
        from,
        tolist,
        roomid: optional("roomid")?,
        msgtime,
        msgtype,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_body_is_parsed_strictly_and_names_the_field_at_fault() {
        let ok = br#"{"messages":[{"msgid":"m1","action":"send","from":"wm1","tolist":["li"],"roomid":"","msgtime":1,"msgtype":"text","text":{"content":"hi"}},{"msgid":"m2","from":"wm1","msgtype":"image"}]}"#;
        let m = parse(ok).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].text.as_deref(), Some("hi"));
        assert_eq!(m[1].text, None);
        let err = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert!(err(b"{").contains("not valid JSON"));
        assert!(err(br#"{"messages":[]}"#).contains("1 to 100"));
        assert!(
            err(br#"{"messages":[{"from":"a","msgtype":"text"}]}"#).contains("messages[0].msgid")
        );
        assert!(
            err(br#"{"messages":[{"msgid":"x","from":"a","msgtype":"text"}]}"#)
                .contains("text.content")
        );
        let many = format!(
            r#"{{"messages":[{}]}}"#,
            vec![r#"{"msgid":"x","from":"a","msgtype":"image"}"#; 101].join(",")
        );
        assert!(err(many.as_bytes()).contains("101 given"));
    }
}
