//! How one call reaches WeCom: a permit of the in-flight limit, a slot of the rate budget,
//! the access token, the request, and the classifier's verdict on the answer; a refused
//! token is refreshed once and a transient failure retried in place.

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::lenient;
use super::{WecomClient, WecomCredentials, WecomError};
use crate::domain::Secret;
use crate::wecom::budget::{BudgetError, wait_until};
use crate::wecom::classify::{ApiOp, TransportFailure, Verdict, classify_errcode_at};
use crate::wecom::token::FetchedToken;

/// What a call sends: query parameters (GET) or a JSON body (POST), as [`ApiOp::is_get`] says.
pub(in crate::wecom) enum Payload {
    Query(Vec<(&'static str, String)>),
    Json(Value),
}

/// The answer of a call whose only news is its errcode (0).
#[derive(Deserialize)]
pub(in crate::wecom) struct Empty {}

#[derive(Deserialize)]
struct TokenResp {
    #[serde(default, deserialize_with = "lenient::string")]
    access_token: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    expires_in: i64,
}

impl WecomClient {
    /// Spends one call of `op` from the budget, or fails as rate-limited until its window ends.
    async fn take_budget(&self, creds: &WecomCredentials, op: ApiOp) -> Result<(), WecomError> {
        match self.budget.take(&creds.corp_id, op).await {
            Ok(()) => Ok(()),
            Err(e @ BudgetError::Spent { until, .. }) => {
                let wait = wait_until(self.clock.now(), until);
                Err(WecomError {
                    op,
                    errcode: None,
                    http_status: None,
                    message: e.to_string(),
                    verdict: Verdict::RateLimited(wait),
                })
            }
            // The store could not count: retry the job soon, like any transient failure.
            Err(e @ BudgetError::Store(_)) => Err(WecomError {
                op,
                errcode: None,
                http_status: None,
                message: e.to_string(),
                verdict: Verdict::RetryAfter(crate::wecom::classify::TRANSPORT_RETRY),
            }),
        }
    }

    /// WeCom said 45009: pause `op` for the corp in the shared budget until the minute ends,
    /// and answer the error with the wait to that moment.
    async fn pause(&self, creds: &WecomCredentials, mut e: WecomError) -> WecomError {
        match self.budget.exhausted(&creds.corp_id, e.op).await {
            Ok(until) => e.verdict = Verdict::RateLimited(wait_until(self.clock.now(), until)),
            Err(store) => {
                tracing::warn!(op = %e.op, corp = %creds.corp_id, error = %store,
                    "the 45009 pause was not shared through the store; this process keeps it")
            }
        }
        e
    }

    /// in-flight permit → budget → token → request → classify, with one retry after a token
    /// refresh.
    pub(in crate::wecom) async fn call<T: DeserializeOwned>(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        payload: Payload,
    ) -> Result<T, WecomError> {
        let gate = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Never closed; a closed gate would only mean no limit.
        let _permit = gate.acquire_owned().await.ok();
        let mut refreshed = false;
        let mut attempt = 1;
        loop {
            self.take_budget(creds, op).await?;
            let token = self.tokens.get(creds, || self.fetch_token(creds)).await?;
            match self.send(creds, op, Some(&token), &payload).await {
                Ok(body) => {
                    return serde_json::from_value(body).map_err(|e| {
                        WecomError::transport(op, TransportFailure::Decode(e.to_string()))
                    });
                }
                Err(e) if e.verdict == Verdict::RefreshToken && !refreshed => {
                    tracing::info!(op = %op, corp = %creds.corp_id, errcode = ?e.errcode,
                        "access token refused; refreshing once");
                    self.tokens.invalidate(creds, &token).await?;
                    refreshed = true;
                }
                // Not retried in place: the window ends later than any in-place retry.
                Err(e) if e.errcode == Some(45009) => return Err(self.pause(creds, e).await),
                Err(e) if e.retryable() => {
                    attempt += 1;
                    let Some(wait) = self.retries.pause(attempt, e.retry_after()) else {
                        return Err(e);
                    };
                    tracing::debug!(op = %op, error = %e, ?wait, "transient failure; trying again");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_token(&self, creds: &WecomCredentials) -> Result<FetchedToken, WecomError> {
        let op = ApiOp::GetToken;
        self.take_budget(creds, op).await?;
        let query = vec![
            ("corpid", creds.corp_id.to_string()),
            ("corpsecret", creds.secret.expose().to_owned()),
        ];
        let body = self.send(creds, op, None, &Payload::Query(query)).await?;
        let resp: TokenResp = serde_json::from_value(body)
            .map_err(|e| WecomError::transport(op, TransportFailure::Decode(e.to_string())))?;
        if resp.access_token.is_empty() {
            return Err(WecomError::transport(
                op,
                TransportFailure::Decode("no access_token in the answer".into()),
            ));
        }
        tracing::debug!(corp = %creds.corp_id, expires_in = resp.expires_in, "fetched an access token");
        Ok(FetchedToken {
            access_token: Secret::new(resp.access_token),
            expires_in_secs: resp.expires_in,
        })
    }

    /// One HTTP exchange, counted; `Ok` only for errcode 0.
    async fn send(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        token: Option<&Secret>,
        payload: &Payload,
    ) -> Result<Value, WecomError> {
        let result = self.exchange(creds, op, token, payload).await;
        if let Some(m) = &self.metrics {
            let outcome = result
                .as_ref()
                .map_or_else(|e| e.verdict.label(), |_| "success");
            m.incr(
                crate::metrics::WECOM_CALLS,
                &[("api", op.path()), ("outcome", outcome)],
            );
        }
        result
    }

    async fn exchange(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        token: Option<&Secret>,
        payload: &Payload,
    ) -> Result<Value, WecomError> {
        let url = format!("{}/{}", self.base_url, op.path());
        let mut req = match payload {
            Payload::Query(q) => self.http.get(&url).query(q),
            Payload::Json(body) => self.http.post(&url).json(body),
        };
        if let Some(t) = token {
            req = req.query(&[("access_token", t.expose())]);
        }
        let resp = req
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| WecomError::transport(op, transport_failure(e)))?;
        let status = resp.status().as_u16();
        if status != 200 {
            tracing::warn!(op = %op, corp = %creds.corp_id, status, "WeCom answered a non-200 status");
            return Err(WecomError::transport(op, TransportFailure::Status(status)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| WecomError::transport(op, transport_failure(e)))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| WecomError::transport(op, TransportFailure::Decode(e.to_string())))?;
        let errcode = lenient::i64_of(&body["errcode"]);
        let errmsg = body["errmsg"].as_str().unwrap_or_default();
        let verdict = classify_errcode_at(op, errcode, errmsg, self.clock.now());
        if verdict == Verdict::Success {
            return Ok(body);
        }
        tracing::warn!(op = %op, corp = %creds.corp_id, errcode, errmsg, ?verdict, "WeCom call failed");
        let message = match &verdict {
            Verdict::Permanent(reason) => reason.clone(),
            _ => format!("errcode {errcode}: {errmsg}"),
        };
        Err(WecomError {
            op,
            errcode: Some(errcode),
            http_status: None,
            message,
            verdict,
        })
    }
}

pub(in crate::wecom) fn json<T: Serialize>(req: &T) -> Payload {
    // Kept: the request structs are plain strings, numbers and lists of them, which
    // serde_json always serialises (it fails only on maps with non-string keys).
    Payload::Json(serde_json::to_value(req).expect("request structs always serialise"))
}

/// Maps a reqwest error without its URL, which holds the token or the secret.
fn transport_failure(e: reqwest::Error) -> TransportFailure {
    if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_connect() {
        TransportFailure::Connect
    } else {
        TransportFailure::Io(e.without_url().to_string())
    }
}
