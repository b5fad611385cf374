//! Transport-neutral HTTP: the request every adapter (axum in `tagsync serve`, `lambda_http`
//! in the Lambdas) builds, the response it sends back, and the one place that maps errors to
//! status codes ([`ApiError`]).

use crate::ports::{QueueError, StoreError};
use bytes::Bytes;
use serde::Serialize;

/// The largest body any route accepts; the WeCom and mall routes have smaller limits of their
/// own. The admin batch route (10,000 items) needs the most.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: http::Method,
    /// The path without the query string, percent-decoding not applied.
    pub path: String,
    /// Query parameters, percent-decoded once (WeCom's `echostr` is base64 with `+`, `/`, `=`).
    pub query: Vec<(String, String)>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The platform's request id (API Gateway) or one made up by `serve`; in every log line.
    pub request_id: String,
}

impl HttpRequest {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Parses a raw query string (`a=1&b=x%2By`): `+` means space only in form encoding, and
    /// WeCom's base64 `echostr` arrives with `%2B`; a literal `+` is kept as `+`.
    pub fn parse_query(raw: &str) -> Vec<(String, String)> {
        raw.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = &bytes[i + 1..i + 3];
            if let Some(b) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self {
                status,
                content_type: Some("application/json"),
                headers: vec![],
                body: body.into(),
            },
            Err(e) => {
                ApiError::Internal(format!("response does not serialise: {e}")).into_response()
            }
        }
    }
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            headers: vec![],
            body: Bytes::from(body.into()),
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            headers: vec![],
            body: Bytes::new(),
        }
    }
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Every error a route can answer with. The status and the `code` of the JSON error body
/// (`{"error": {"code", "message"}}`) are decided here and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong credentials")]
    Unauthorized(String),
    /// Signed in, but not allowed this (a role or a department scope, docs/operators.md).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Conflict(String),
    /// The body is not JSON where JSON is required (the message names the type sent).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    NotImplemented(String),
    /// A dependency failed in a way worth retrying (the caller should retry; platforms do).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::BadRequest(_) => 400,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::Conflict(_) => 409,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Timeout(_) => 408,
            ApiError::NotImplemented(_) => 501,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Conflict(_) => "conflict",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let status = self.status();
        if status >= 500 {
            tracing::error!(status, error = %self, "request failed");
        }
        // Internal details stay in the log; the caller learns only that it failed.
        let message = match &self {
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        let body = serde_json::json!({"error": {"code": self.code(), "message": message}});
        HttpResponse::json(status, &body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::TransactionConflict { .. } => {
                ApiError::Conflict(format!("concurrent modification, try again ({e})"))
            }
            StoreError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Corrupt { .. } | StoreError::Invalid(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Invalid(_) => ApiError::Internal(e.to_string()),
            _ => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<ApiError> for HttpResponse {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_decodes_percent_escapes_once_and_keeps_plus() {
        let q = HttpRequest::parse_query("echostr=P9n%2BAz%2F%3D%3D&nonce=1+2&empty=&flag");
        assert_eq!(q[0], ("echostr".into(), "P9n+Az/==".into()));
        assert_eq!(q[1], ("nonce".into(), "1+2".into()));
        assert_eq!(q[2], ("empty".into(), "".into()));
        assert_eq!(q[3], ("flag".into(), "".into()));
    }

    #[test]
    fn query_parsing_keeps_malformed_escapes_literally() {
        let q = HttpRequest::parse_query("a=%zz&b=%4");
        assert_eq!(q[0].1, "%zz");
        assert_eq!(q[1].1, "%4");
    }

    #[test]
    fn errors_map_to_status_and_json_body() {
        let r = ApiError::BadRequest("field `corp_id` must not be empty".into()).into_response();
        assert_eq!(r.status, 400);
        let v = r.body_json().unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(v["error"]["message"].as_str().unwrap().contains("corp_id"));
        let r = ApiError::Internal("secret detail".into()).into_response();
        assert_eq!(r.status, 500);
        assert!(!String::from_utf8_lossy(&r.body).contains("secret detail"));
    }
}
