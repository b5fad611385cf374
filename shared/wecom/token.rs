//! The access-token cache (wecom-api.md §2, §9 P6, P7): one token per (corp, secret), kept in
//! the store so every process shares it, plus a small in-process copy.
//!
//! - Within a process, concurrent callers of one key single-flight behind a tokio mutex.
//! - Across processes, one holder of a store lease fetches; the others poll the store
//!   briefly, or keep using the old token while it is still valid.
//! - Refresh starts `refresh_ahead` before expiry. WeCom answers a `gettoken` inside a token's
//!   lifetime with the same token (§2), so an early refresh may change nothing; it is then
//!   not retried for `retry_ahead_every`, which keeps `gettoken` traffic low (§9 P7).
//! - [`TokenCache::invalidate`] drops a token only if it is still the one that failed, so a
//!   newer token fetched by someone else survives.
//! - A token this process saw refused is never taken back from the store (a refresher may
//!   read it there just before the invalidation lands, and a caller that already refreshed
//!   once would meet it again and fail). Only `gettoken` itself can hand it out again: WeCom
//!   may legitimately answer with the same token, and its word is then taken.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::classify::{ApiOp, TRANSPORT_RETRY, Verdict};
use super::client::{WecomCredentials, WecomError};
use crate::domain::{AccessToken, CorpId, Secret, Timestamp};
use crate::ports::{Clock, Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// Refresh this long before the token expires.
    pub refresh_ahead: Duration,
    /// Inside the refresh-ahead window, try at most this often (per process).
    pub retry_ahead_every: Duration,
    /// How long a refresher holds the store lease (a crashed holder blocks no longer).
    pub lease_for: Duration,
    /// How often a waiter re-reads the store while another process refreshes.
    pub poll_every: Duration,
    /// How long a waiter waits before giving up with a retryable error.
    pub max_wait: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(300),
            retry_ahead_every: Duration::from_secs(60),
            lease_for: Duration::from_secs(30),
            poll_every: Duration::from_millis(50),
            max_wait: Duration::from_secs(10),
        }
    }
}

/// What `gettoken` answered.
#[derive(Clone, Debug)]
pub struct FetchedToken {
    pub access_token: Secret,
    pub expires_in_secs: i64,
}

/// Tells apps of one corp apart without storing or logging the secret: the first 16 hex
/// digits of its SHA-256.
pub fn secret_fingerprint(secret: &Secret) -> String {
    let digest = Sha256::digest(secret.expose().as_bytes());
    hex::encode(digest)[..16].to_owned()
}

type Key = (CorpId, String);

/// The longest lifetime WeCom gives a token (§2): a refused token is remembered this long
/// when its own expiry is not known here.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

#[derive(Default)]
struct SlotState {
    token: Option<AccessToken>,
    /// Inside the refresh-ahead window: no new attempt before this.
    next_attempt: Option<Timestamp>,
    /// Tokens refused here (40014/42001), each until it would have expired anyway.
    refused: Vec<(Secret, Timestamp)>,
}

impl SlotState {
    fn is_refused(&self, token: &Secret) -> bool {
        self.refused.iter().any(|(t, _)| t == token)
    }
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held by the one in-process caller refreshing this key.
    refresh: tokio::sync::Mutex<()>,
}

impl Slot {
    fn snapshot(&self) -> (Option<AccessToken>, Option<Timestamp>) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.token.clone(), s.next_attempt)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_refused(&self, token: &Secret) -> bool {
        self.lock().is_refused(token)
    }

    /// Takes a token read from the store, unless it was refused here (checked under the same
    /// lock as [`Slot::refuse`], so a refusal landing meanwhile is never undone).
    #[must_use]
    fn adopt(&self, token: AccessToken, next_attempt: Option<Timestamp>) -> bool {
        let mut s = self.lock();
        if s.is_refused(&token.token) {
            return false;
        }
        s.token = Some(token);
        s.next_attempt = next_attempt;
        true
    }

    /// Takes a token `gettoken` just answered: WeCom's word, even for a token refused before.
    fn set_fetched(&self, token: AccessToken, next_attempt: Option<Timestamp>) {
        let mut s = self.lock();
        s.refused.retain(|(t, _)| *t != token.token);
        s.token = Some(token);
        s.next_attempt = next_attempt;
    }

    /// Remembers `failed` as refused and drops it if it is still the current token.
    fn refuse(&self, failed: &Secret, now: Timestamp) {
        let mut s = self.lock();
        s.refused.retain(|(_, until)| now < *until);
        let until = match &s.token {
            Some(t) if t.token == *failed => t.expires_at,
            _ => now.plus_millis(millis(TOKEN_LIFETIME)),
        };
        if !s.is_refused(failed) {
            s.refused.push((failed.clone(), until));
        }
        if s.token.as_ref().is_some_and(|t| t.token == *failed) {
            s.token = None;
            s.next_attempt = None;
        }
    }
}

/// What a refresher holding the store lease ended with.
enum Leased<F> {
    /// Someone else stored a fresh token before we fetched; `fetch` was not used.
    Found(AccessToken, F),
    /// We fetched `token`; `theirs` is a still-valid token someone stored meanwhile, preferred
    /// if this process has not seen it refused.
    Fetched {
        token: AccessToken,
        next: Option<Timestamp>,
        theirs: Option<AccessToken>,
    },
}

pub struct TokenCache {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: TokenConfig,
    /// This process's name as a lease holder.
    holder: String,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

impl TokenCache {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: TokenConfig) -> Self {
        Self {
            store,
            clock,
            config,
            holder: format!("token-cache-{}", uuid::Uuid::new_v4().simple()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A usable token for `creds`, calling `fetch` (the `gettoken` request) only if this
    /// caller is the one that must refresh.
    pub async fn get<F, Fut>(
        &self,
        creds: &WecomCredentials,
        fetch: F,
    ) -> Result<Secret, WecomError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, WecomError>>,
    {
        let fp = secret_fingerprint(&creds.secret);
        let slot = self.slot(&creds.corp_id, &fp);
        if let Some(t) = self.usable(&slot, self.clock.now()) {
            return Ok(t);
        }
        // A still-valid token is used while someone else refreshes; an expired one waits.
        let (current, _) = slot.snapshot();
        let _guard = match current.filter(|t| self.clock.now() < t.expires_at) {
            Some(valid) => match slot.refresh.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(valid.token),
            },
            None => slot.refresh.lock().await,
        };
        if let Some(t) = self.usable(&slot, self.clock.now()) {
            return Ok(t);
        }
        self.refresh(creds, &fp, &slot, fetch).await
    }

    /// Forgets `failed` (after a 40014/42001) here and in the store, unless a newer token
    /// has replaced it.
    pub async fn invalidate(
        &self,
        creds: &WecomCredentials,
        failed: &Secret,
    ) -> Result<(), WecomError> {
        let fp = secret_fingerprint(&creds.secret);
        let slot = self.slot(&creds.corp_id, &fp);
        // In process first: from here on no refresher of this process can adopt `failed`,
        // even one that read it from the store before the store's copy is gone.
        slot.refuse(failed, self.clock.now());
        self.store
            .invalidate_token(&creds.corp_id, &fp, failed.expose())
            .await
            .map_err(store_error)
    }

    fn slot(&self, corp: &CorpId, fp: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry((corp.clone(), fp.to_owned()))
            .or_default()
            .clone()
    }

    fn fresh(&self, t: &AccessToken, now: Timestamp) -> bool {
        now < t.expires_at.plus_millis(-millis(self.config.refresh_ahead))
    }

    /// The in-process token if no refresh is due: fresh, or valid and recently tried.
    fn usable(&self, slot: &Slot, now: Timestamp) -> Option<Secret> {
        let (token, next_attempt) = slot.snapshot();
        let t = token?;
        let recently_tried = next_attempt.is_some_and(|n| now < n);
        (self.fresh(&t, now) || (now < t.expires_at && recently_tried)).then_some(t.token)
    }

    /// Called with the slot's refresh mutex held.
    async fn refresh<F, Fut>(
        &self,
        creds: &WecomCredentials,
        fp: &str,
        slot: &Slot,
        fetch: F,
    ) -> Result<Secret, WecomError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, WecomError>>,
    {
        let corp = &creds.corp_id;
        let lease = format!("wecom-token#{corp}#{fp}");
        let deadline = tokio::time::Instant::now() + self.config.max_wait;
        let (_, next_attempt) = slot.snapshot();
        let mut fetch = Some(fetch);
        // A busy or throttled store is waited out like a busy refresher, until the deadline.
        let transient = |e: StoreError| {
            if e.retryable() && tokio::time::Instant::now() < deadline {
                tracing::debug!(corp = %corp, error = %e, "token store busy; retrying");
                Ok(())
            } else {
                Err(store_error(e))
            }
        };
        loop {
            let now = self.clock.now();
            let stored = match self.store.get_token(corp, fp).await {
                Ok(stored) => stored,
                Err(e) => {
                    transient(e)?;
                    tokio::time::sleep(self.config.poll_every).await;
                    continue;
                }
            };
            let good = stored.as_ref().filter(|t| !slot.is_refused(&t.token));
            if let Some(t) = good.filter(|t| self.fresh(t, now)) {
                if slot.adopt(t.clone(), None) {
                    return Ok(t.token.clone());
                }
                continue; // Refused meanwhile: read again.
            }
            let valid = good.filter(|t| now < t.expires_at).cloned();
            if let Some(v) = &valid
                && next_attempt.is_some_and(|n| now < n)
            {
                if slot.adopt(v.clone(), next_attempt) {
                    return Ok(v.token.clone());
                }
                continue;
            }
            let until = now.plus_millis(millis(self.config.lease_for));
            let leased = match self
                .store
                .acquire_lease(&lease, &self.holder, now, until)
                .await
            {
                Ok(leased) => leased,
                Err(e) => {
                    transient(e)?;
                    false
                }
            };
            if leased && let Some(f) = fetch.take() {
                let result = self.fetch_and_store(corp, fp, slot, stored, f).await;
                if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
                    // It lapses after `lease_for` anyway.
                    tracing::warn!(corp = %corp, error = %e, "could not release the token lease");
                }
                match result {
                    Ok(Leased::Found(t, f)) => {
                        if slot.adopt(t.clone(), None) {
                            return Ok(t.token);
                        }
                        fetch = Some(f); // Refused meanwhile: the fetch is still ours to make.
                        continue;
                    }
                    Ok(Leased::Fetched {
                        token,
                        next,
                        theirs,
                    }) => {
                        if let Some(t) = theirs
                            && slot.adopt(t.clone(), None)
                        {
                            return Ok(t.token);
                        }
                        slot.set_fetched(token.clone(), next);
                        return Ok(token.token);
                    }
                    Err(e) => return self.after_failed_fetch(corp, slot, valid, now, e),
                }
            }
            if let Some(v) = valid
                && slot.adopt(v.clone(), next_attempt)
            {
                return Ok(v.token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WecomError {
                    op: ApiOp::GetToken,
                    errcode: None,
                    http_status: None,
                    message: "another process is refreshing the access token and has not finished"
                        .into(),
                    verdict: Verdict::RetryAfter(TRANSPORT_RETRY),
                });
            }
            tokio::time::sleep(self.config.poll_every).await;
        }
    }

    /// The leased fetch failed. An early refresh falls back on the old token, which still
    /// works for a while (`valid`), until the next attempt is due; otherwise the failure
    /// stands.
    fn after_failed_fetch(
        &self,
        corp: &CorpId,
        slot: &Slot,
        valid: Option<AccessToken>,
        now: Timestamp,
        e: WecomError,
    ) -> Result<Secret, WecomError> {
        let Some(v) = valid else { return Err(e) };
        tracing::warn!(corp = %corp, error = %e, "early token refresh failed");
        let next = now.plus_millis(millis(self.config.retry_ahead_every));
        if slot.adopt(v.clone(), Some(next)) {
            Ok(v.token)
        } else {
            Err(e)
        }
    }

    /// Fetches with the lease held and stores the result: the token and, when it is not
    /// fresh (WeCom repeated a token near its end), when to try again. A store that fails
    /// here costs sharing, not the call: the fetched token is used anyway.
    async fn fetch_and_store<F, Fut>(
        &self,
        corp: &CorpId,
        fp: &str,
        slot: &Slot,
        stored: Option<AccessToken>,
        fetch: F,
    ) -> Result<Leased<F>, WecomError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, WecomError>>,
    {
        // Someone may have finished between our read and our lease.
        let stored = match self.store.get_token(corp, fp).await {
            Ok(again) => again,
            Err(e) => {
                tracing::warn!(corp = %corp, error = %e, "token store unreadable; fetching");
                stored
            }
        };
        let now = self.clock.now();
        if let Some(t) = stored
            .as_ref()
            .filter(|t| self.fresh(t, now) && !slot.is_refused(&t.token))
        {
            return Ok(Leased::Found(t.clone(), fetch));
        }
        // Expiry counts from before the request, so ours is never later than WeCom's. The
        // version is the stored one even if that token was refused: ours replaces it.
        let asked_at = self.clock.now();
        let fetched = fetch().await?;
        let mut token = AccessToken {
            corp_id: corp.clone(),
            secret_fingerprint: fp.to_owned(),
            token: fetched.access_token,
            expires_at: asked_at.plus_secs(fetched.expires_in_secs.max(0)),
            version: stored.as_ref().map_or(0, |t| t.version),
        };
        let next = (!self.fresh(&token, asked_at))
            .then(|| asked_at.plus_millis(millis(self.config.retry_ahead_every)));
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.store.put_token(&mut token).await {
                Ok(()) => {
                    return Ok(Leased::Fetched {
                        token,
                        next,
                        theirs: None,
                    });
                }
                // Someone stored a token meanwhile; prefer theirs if it is still good.
                Err(e) if e.is_conflict() => {
                    let theirs = self.store.get_token(corp, fp).await.ok().flatten();
                    let theirs = theirs.filter(|t| self.clock.now() < t.expires_at);
                    return Ok(Leased::Fetched {
                        token,
                        next,
                        theirs,
                    });
                }
                Err(e) if e.retryable() && attempts < 5 => {
                    tokio::time::sleep(self.config.poll_every).await;
                }
                Err(e) => {
                    tracing::warn!(corp = %corp, error = %e, "could not store the new token");
                    return Ok(Leased::Fetched {
                        token,
                        next,
                        theirs: None,
                    });
                }
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn store_error(e: StoreError) -> WecomError {
    let verdict = if e.retryable() {
        Verdict::RetryAfter(TRANSPORT_RETRY)
    } else {
        Verdict::Permanent(format!("token store: {e}"))
    };
    WecomError {
        op: ApiOp::GetToken,
        errcode: None,
        http_status: None,
        message: format!("token store: {e}"),
        verdict,
    }
}

#[cfg(test)]
mod tests;
