//! `POST /members:batch-tags` (`mall-connector.md` §3.1): many members' tag changes in one
//! write, on malls that offer it; the others are noticed and written member by member.

use super::transport::Call;
use super::{ErrorDetail, IdempotencyKey, MallClient, MallEndpoint, MallError, MallMember};
use super::{MAX_BATCH_MEMBERS, NO_BATCH_REMEMBERED, Verdict, classify};
use crate::domain::{MallTagId, MemberId};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One member's change in a `POST /members:batch-tags` (at most 100 ids together).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberTagItem {
    pub member_id: MemberId,
    pub add: Vec<MallTagId>,
    pub remove: Vec<MallTagId>,
}

#[derive(Deserialize)]
struct Results {
    results: Vec<ItemResult>,
}

#[derive(Deserialize)]
struct ItemResult {
    member_id: MemberId,
    status: u16,
    member: Option<MallMember>,
    error: Option<ErrorDetail>,
}

impl ItemResult {
    /// The item's member, or its error classified as `POST /members/{id}/tags` would be.
    fn into_result(self, op: &'static str) -> Result<MallMember, MallError> {
        match (self.status, self.member) {
            (200..=299, Some(m)) => Ok(m),
            (status, _) => {
                let error = self.error.unwrap_or_default();
                let verdict = match classify(&Method::POST, status, None, Some(&error)) {
                    Verdict::Success => {
                        Verdict::Permanent("a successful result without its member".to_owned())
                    }
                    v => v,
                };
                Err(MallError::answered(op, status, error, verdict))
            }
        }
    }
}

impl MallClient {
    /// Whether `ep`'s mall is (as far as this process knows) one that offers
    /// `POST /members:batch-tags`: false for [`NO_BATCH_REMEMBERED`] after it answered 404/405.
    pub fn offers_batch(&self, ep: &MallEndpoint) -> bool {
        let mut known = self.no_batch.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&ep.base_url) {
            Some(since) if since.elapsed() < NO_BATCH_REMEMBERED => false,
            Some(_) => {
                known.remove(&ep.base_url);
                true
            }
            None => true,
        }
    }

    /// `POST /members:batch-tags` (§3.1): up to 100 members' changes in one write with one
    /// key. `Ok(None)`: the mall does not offer the endpoint (it answered 404/405, now or
    /// within [`NO_BATCH_REMEMBERED`]); write member by member instead. Otherwise one result
    /// per item, in order, each classified as `POST /members/{id}/tags` would be. An error is
    /// the whole request's (429, 5xx, a malformed batch): no item was applied.
    pub async fn batch_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        items: &[MemberTagItem],
    ) -> Result<Option<Vec<Result<MallMember, MallError>>>, MallError> {
        let op = "batch_member_tags";
        if items.is_empty() || items.len() > MAX_BATCH_MEMBERS {
            return Err(MallError::local(
                op,
                format!("a batch holds 1 to {MAX_BATCH_MEMBERS} members"),
            ));
        }
        if !self.offers_batch(ep) {
            return Ok(None);
        }
        let body = Some(json!({ "items": items }));
        let call = Call::write(op, Method::POST, &["members:batch-tags"], key, body);
        let results = match self.fetch::<Results>(ep, call).await {
            Ok(answer) => answer.results,
            Err(e) if matches!(e.status, Some(404 | 405)) => {
                tracing::info!(mall = %ep.base_url, status = ?e.status, "the mall has no batch endpoint; writing member by member");
                self.no_batch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ep.base_url.clone(), std::time::Instant::now());
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let in_order = results.len() == items.len()
            && results
                .iter()
                .zip(items)
                .all(|(r, i)| r.member_id == i.member_id);
        if !in_order {
            return Err(MallError::local(
                op,
                "the mall's answer does not give one result per item in request order".to_owned(),
            ));
        }
        Ok(Some(
            results.into_iter().map(|r| r.into_result(op)).collect(),
        ))
    }
}
