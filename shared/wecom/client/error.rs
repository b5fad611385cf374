//! The error every WeCom call returns: what was called, what came back, and the
//! classifier's [`Verdict`] on it, which says whether to retry, wait or give up.

use std::time::Duration;

use crate::wecom::classify::{ApiOp, TransportFailure, Verdict, classify_transport};

/// A failed WeCom call: what was called, what came back, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("WeCom {op} failed: {message}")]
pub struct WecomError {
    pub op: ApiOp,
    /// WeCom's errcode, when the call got that far.
    pub errcode: Option<i64>,
    /// The HTTP status, when it was not 200.
    pub http_status: Option<u16>,
    pub message: String,
    pub verdict: Verdict,
}

impl WecomError {
    /// Worth retrying later (the job goes back to the queue rather than being parked).
    pub fn retryable(&self) -> bool {
        self.verdict.is_retryable()
    }

    /// How long to wait before retrying, if retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RetryAfter(d) | Verdict::RateLimited(d) => Some(d),
            Verdict::RefreshToken => Some(Duration::ZERO),
            _ => None,
        }
    }

    /// What the refusal says about the object (not this app's, name taken, unknown id, no
    /// relation), when the call was refused for one of those reasons.
    pub fn refusal(&self) -> Option<crate::wecom::classify::Refusal> {
        self.errcode.and_then(crate::wecom::classify::refusal)
    }

    /// How long the API is paused for the corp, when this call met its rate limit (45009 or
    /// the budget): the caller reschedules rather than retrying or failing.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RateLimited(d) => Some(d),
            _ => None,
        }
    }

    pub(in crate::wecom) fn invalid_request(op: ApiOp, why: &str) -> Self {
        Self {
            op,
            errcode: None,
            http_status: None,
            message: format!("invalid request: {why}"),
            verdict: Verdict::Permanent(format!("invalid request: {why}")),
        }
    }

    pub(super) fn transport(op: ApiOp, failure: TransportFailure) -> Self {
        let verdict = classify_transport(&failure);
        let (http_status, message) = match &failure {
            TransportFailure::Status(s) => (Some(*s), format!("HTTP status {s}")),
            TransportFailure::Timeout => (None, "timed out".into()),
            TransportFailure::Connect => (None, "could not connect".into()),
            TransportFailure::Io(e) => (None, format!("connection failed: {e}")),
            TransportFailure::Decode(e) => (None, format!("response not understood: {e}")),
        };
        Self {
            op,
            errcode: None,
            http_status,
            message,
            verdict,
        }
    }
}
