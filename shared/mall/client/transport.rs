//! How one request reaches the mall: paced per mall, sent with its bearer token and key,
//! classified, counted, and retried in place when the answer is transient.

use super::{Deleted, ErrorBody, Verdict, classify, classify_transport};
use super::{IdempotencyKey, MallClient, MallEndpoint, MallError};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// A token bucket per mall base URL (one tenant, one token) that this process's requests
/// take from before they are sent, so a burst of jobs meets the mall's limit by waiting for
/// its turn here rather than by a 429 and a retry. Its burst is a fifth of a second's worth
/// (the mall's own bucket holds a second's), which leaves room for requests that reach the
/// mall later than they left.
#[derive(Debug)]
pub struct Pace {
    per_sec: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, tokio::time::Instant)>>,
}

impl Pace {
    pub fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self {
            per_sec,
            burst: (per_sec / 5.0).max(1.0),
            buckets: Default::default(),
        }
    }

    /// Takes one request's place for `mall` and says how long to wait for it (places are
    /// handed out in order, so waiting requests keep their turn).
    pub(super) fn reserve(&self, mall: &str) -> Duration {
        let now = tokio::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.entry(mall.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.per_sec)
        }
    }
}

/// One request to the mall: the operation's name (for errors, logs and metrics), the method,
/// the path under the endpoint's base URL, and what it carries.
pub(super) struct Call<'a> {
    op: &'static str,
    method: Method,
    path: &'a [&'a str],
    query: &'a [(&'a str, &'a str)],
    key: Option<&'a IdempotencyKey>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    /// A GET: no key (reads need none) and no body.
    pub(super) fn read(
        op: &'static str,
        path: &'a [&'a str],
        query: &'a [(&'a str, &'a str)],
    ) -> Self {
        Self {
            op,
            method: Method::GET,
            path,
            query,
            key: None,
            body: None,
        }
    }

    /// A write: always with its idempotency key, so a repeat is answered from the mall's
    /// record.
    pub(super) fn write(
        op: &'static str,
        method: Method,
        path: &'a [&'a str],
        key: &'a IdempotencyKey,
        body: Option<Value>,
    ) -> Self {
        Self {
            op,
            method,
            path,
            query: &[],
            key: Some(key),
            body,
        }
    }
}

/// A successful answer: its body, or the knowledge that a DELETE found nothing to delete.
pub(super) enum Reply {
    Body(bytes::Bytes),
    AlreadyDone,
}

impl MallClient {
    /// Sends `call` and decodes its answer.
    pub(super) async fn fetch<T: DeserializeOwned>(
        &self,
        ep: &MallEndpoint,
        call: Call<'_>,
    ) -> Result<T, MallError> {
        let reply = self.send(ep, &call).await?;
        decode(call.op, reply)
    }

    /// Sends a read of one object; `None` when the mall answers 404 (there is no such object).
    pub(super) async fn fetch_if_found<T: DeserializeOwned>(
        &self,
        ep: &MallEndpoint,
        call: Call<'_>,
    ) -> Result<Option<T>, MallError> {
        match self.send(ep, &call).await {
            Ok(reply) => decode(call.op, reply).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a DELETE; a 404 is [`Deleted::AlreadyGone`].
    pub(super) async fn delete(
        &self,
        ep: &MallEndpoint,
        call: Call<'_>,
    ) -> Result<Deleted, MallError> {
        Ok(match self.send(ep, &call).await? {
            Reply::Body(_) => Deleted::Deleted,
            Reply::AlreadyDone => Deleted::AlreadyGone,
        })
    }

    /// One HTTP exchange, counted by operation and verdict, retried in place while it is
    /// transient and the retry policy allows.
    pub(super) async fn send(
        &self,
        ep: &MallEndpoint,
        call: &Call<'_>,
    ) -> Result<Reply, MallError> {
        let op = call.op;
        let mut attempt = 1;
        loop {
            if let Some(pace) = &self.pace {
                let wait = pace.reserve(&ep.base_url);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let result = self.exchange(ep, call).await;
            if let Some(m) = &self.metrics {
                let outcome = match &result {
                    Ok(Reply::Body(_)) => "success",
                    Ok(Reply::AlreadyDone) => "already_done",
                    Err(e) => e.verdict.label(),
                };
                m.incr(
                    crate::metrics::MALL_CALLS,
                    &[("op", op), ("outcome", outcome)],
                );
            }
            match result {
                Err(e) if e.retryable() => {
                    attempt += 1;
                    let Some(pause) = self.retries.pause(attempt, e.retry_after()) else {
                        return Err(e);
                    };
                    // A 429's Retry-After is a floor, not a default for "soon".
                    let wait = e.rate_limited().map_or(pause, |d| d.max(pause));
                    tracing::debug!(op, error = %e, ?wait, "transient failure; trying again");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn exchange(&self, ep: &MallEndpoint, call: &Call<'_>) -> Result<Reply, MallError> {
        let Call {
            op,
            method,
            path,
            query,
            key,
            body,
        } = call;
        let op = *op;
        let url = endpoint_url(&ep.base_url, path).ok_or_else(|| {
            MallError::local(op, "the mall base URL is not a valid URL".to_owned())
        })?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(ep.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key.as_str());
        }
        if let Some(body) = body {
            req = req.json(body);
        }

        let resp = req.send().await.map_err(|e| unanswered(op, e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| unanswered(op, e))?;
        let error = if (200..300).contains(&status) {
            None
        } else {
            // Lenient: a proxy's HTML error page still classifies by status.
            serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .map(|b| b.error)
        };
        let verdict = classify(method, status, retry_after.as_deref(), error.as_ref());
        tracing::debug!(op, %method, status, key = key.map(|k| k.as_str()), ?verdict, "mall call");
        match verdict {
            Verdict::Success => Ok(Reply::Body(bytes)),
            Verdict::AlreadyDone => Ok(Reply::AlreadyDone),
            verdict => Err(MallError::answered(
                op,
                status,
                error.unwrap_or_default(),
                verdict,
            )),
        }
    }
}

/// A request that got no answer (timeout, connection failure).
fn unanswered(op: &'static str, e: reqwest::Error) -> MallError {
    // Without the URL: it may carry query values, and the message is enough.
    let e = e.without_url();
    let verdict = classify_transport(&e);
    tracing::debug!(op, error = %e, "mall call got no answer");
    MallError {
        op,
        status: None,
        code: None,
        message: if e.is_timeout() {
            "timed out".to_owned()
        } else {
            e.to_string()
        },
        verdict,
        unknown_ids: Box::default(),
    }
}

/// `base` + path segments, each percent-encoded (ids are opaque and may hold any character).
pub(super) fn endpoint_url(base: &str, segments: &[&str]) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(segments);
    Some(url)
}

pub(super) fn to_value<T: Serialize>(v: &T) -> Value {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub(super) fn decode<T: DeserializeOwned>(op: &'static str, reply: Reply) -> Result<T, MallError> {
    let bytes = match reply {
        Reply::Body(bytes) => bytes,
        Reply::AlreadyDone => bytes::Bytes::new(),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        MallError::local(
            op,
            format!("the mall's answer does not follow the contract: {e}"),
        )
    })
}
