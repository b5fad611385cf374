//! The one place that decides what a mall answer means ([`classify`]), and the error a
//! failed call returns ([`MallError`]), which carries that meaning.

use super::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER};
use crate::domain::MallTagId;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The contract's error body, `{"error": {...}}`. Also what the simulator answers with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// With `name_taken`: the sibling that already has the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    /// With `unknown_tag`: the ids that do not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_ids: Vec<String>,
}

/// What an answer (or a failure to get one) means for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Transient (429, 5xx, timeout, connection): try again after this long, same key.
    RetryAfter(Duration),
    /// A DELETE of something already gone: the goal is reached.
    AlreadyDone,
    /// 409 `name_taken`: a sibling has the name; the engine may adopt `existing_id`.
    NameTaken {
        existing_id: String,
    },
    /// Retrying cannot help: bad token, unknown ids, a malformed request, a missing object.
    Permanent(String),
}

impl Verdict {
    /// A short name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::RetryAfter(_) => "retry",
            Verdict::AlreadyDone => "already_done",
            Verdict::NameTaken { .. } => "name_taken",
            Verdict::Permanent(_) => "permanent",
        }
    }
}

/// Classifies an HTTP answer of the mall. `error` is the decoded error body, if any.
pub fn classify(
    method: &Method,
    status: u16,
    retry_after: Option<&str>,
    error: Option<&ErrorDetail>,
) -> Verdict {
    let code = error.map(|e| e.code.as_str()).unwrap_or("");
    let message = error.map(|e| e.message.as_str()).unwrap_or("");
    match status {
        200..=299 => Verdict::Success,
        404 if *method == Method::DELETE => Verdict::AlreadyDone,
        409 if code == "name_taken" => match error.and_then(|e| e.existing_id.as_deref()) {
            Some(id) if !id.is_empty() => Verdict::NameTaken {
                existing_id: id.to_owned(),
            },
            _ => Verdict::Permanent("409 name_taken without error.existing_id".to_owned()),
        },
        408 | 429 | 500..=599 => Verdict::RetryAfter(parse_retry_after(retry_after)),
        401 => Verdict::Permanent("bad mall token".to_owned()),
        400 if code == "unknown_tag" => Verdict::Permanent(format!(
            "unknown tag ids: {}",
            error.map(|e| e.unknown_ids.join(", ")).unwrap_or_default()
        )),
        _ if code.is_empty() => Verdict::Permanent(format!("HTTP {status}")),
        _ => Verdict::Permanent(format!("{status} {code}: {message}")),
    }
}

/// Classifies a request that got no answer. Timeouts and connection failures are transient;
/// a request that could not even be built is not.
pub fn classify_transport(err: &reqwest::Error) -> Verdict {
    if err.is_builder() {
        Verdict::Permanent(format!("could not build the request: {err}"))
    } else {
        Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
    }
}

/// `Retry-After` in seconds (the contract's form); an HTTP date or garbage gets the default.
fn parse_retry_after(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// A failed mall call, with what the mall said and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mall {op}: {}", self.describe())]
pub struct MallError {
    /// The client method, e.g. `create_tag`.
    pub op: &'static str,
    /// `None` when no answer arrived (timeout, connection error).
    pub status: Option<u16>,
    /// The error body's `code`, e.g. `name_taken`.
    pub code: Option<String>,
    pub message: String,
    pub verdict: Verdict,
    /// With `unknown_tag`: the ids the mall does not know. (Boxed: keeps the error small.)
    pub unknown_ids: Box<[MallTagId]>,
}

impl MallError {
    pub fn retryable(&self) -> bool {
        matches!(self.verdict, Verdict::RetryAfter(_))
    }

    /// With a 429: how long the mall asked us to stay away. A rate limit is not a failure of
    /// the job: coming back sooner only spends the token's budget, and a job that meets it
    /// is rescheduled to that moment rather than counted towards the dead-letter limit.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RetryAfter(d) if self.status == Some(429) => Some(d),
            _ => None,
        }
    }

    /// How long to wait before retrying, when retrying helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::RetryAfter(d) => Some(d),
            _ => None,
        }
    }

    /// With 409 `name_taken`: the id of the sibling that has the name.
    pub fn existing_id(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::NameTaken { existing_id } => Some(existing_id),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    fn describe(&self) -> String {
        let what = match &self.verdict {
            Verdict::RetryAfter(d) => format!("retry after {} ms", d.as_millis()),
            Verdict::NameTaken { existing_id } => format!("name taken by {existing_id}"),
            Verdict::Permanent(reason) => reason.clone(),
            Verdict::Success | Verdict::AlreadyDone => "no error".to_owned(),
        };
        match self.status {
            Some(status) if self.message.is_empty() => format!("HTTP {status}, {what}"),
            Some(status) => format!("HTTP {status} ({}), {what}", self.message),
            None => format!("{} ({what})", self.message),
        }
    }

    /// The mall answered `status` with `error` (its body's `error`, or the default when it
    /// sent none), which [`classify`] judged `verdict`.
    pub(super) fn answered(
        op: &'static str,
        status: u16,
        error: ErrorDetail,
        verdict: Verdict,
    ) -> Self {
        Self {
            op,
            status: Some(status),
            code: Some(error.code).filter(|c| !c.is_empty()),
            message: error.message,
            verdict,
            // The mall's own ids, as it reported them: nothing to check them against.
            unknown_ids: error
                .unknown_ids
                .into_iter()
                .map(MallTagId::new_unchecked)
                .collect(),
        }
    }

    /// A failure found on this side (a request that cannot be made, an answer that breaks
    /// the contract): permanent, with no status.
    pub(super) fn local(op: &'static str, reason: String) -> Self {
        Self {
            op,
            status: None,
            code: None,
            message: reason.clone(),
            verdict: Verdict::Permanent(reason),
            unknown_ids: Box::default(),
        }
    }
}
