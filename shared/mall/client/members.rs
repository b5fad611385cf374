//! Members on the mall (`mall-connector.md` §1, §3): paged and looked up by identity, and
//! their tags changed one member at a time.

use super::MallError;
use super::transport::Call;
use super::{IdempotencyKey, MAX_IDS_PER_MEMBER_CALL, MAX_PAGE_LIMIT, MallClient, MallEndpoint};
use crate::domain::{ExternalUserId, MallTagId, MemberId};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// A mall member (contract §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallMember {
    pub id: MemberId,
    pub unionid: Option<String>,
    /// The WeCom customer this member is bound to, when the mall knows it.
    pub external_userid: Option<ExternalUserId>,
    pub mobile: Option<String>,
    #[serde(default)]
    pub tag_ids: Vec<MallTagId>,
}

/// One page of `GET /members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPage {
    pub members: Vec<MallMember>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /members:lookup` takes exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberLookup<'a> {
    Unionid(&'a str),
    ExternalUserid(&'a ExternalUserId),
    Mobile(&'a str),
}

impl MallClient {
    /// `GET /members`: one page of at most `limit` (1..=500) members from `cursor` (`None`:
    /// the first page).
    pub async fn list_members(
        &self,
        ep: &MallEndpoint,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemberPage, MallError> {
        let limit = limit.clamp(1, MAX_PAGE_LIMIT).to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor));
        }
        self.fetch(ep, Call::read("list_members", &["members"], &query))
            .await
    }

    /// Walks every member page by page, holding one page at a time.
    pub fn members<'a>(&'a self, ep: &'a MallEndpoint, limit: u32) -> MemberPager<'a> {
        self.members_from(ep, None, limit)
    }

    /// Resumes a walk at a cursor an earlier [`MemberPager::cursor`] returned (e.g. a
    /// reconciliation that fans pages out as jobs).
    pub fn members_from<'a>(
        &'a self,
        ep: &'a MallEndpoint,
        cursor: Option<String>,
        limit: u32,
    ) -> MemberPager<'a> {
        MemberPager {
            client: self,
            ep,
            limit,
            cursor,
            done: false,
        }
    }

    /// `GET /members/{id}`; `None` when the mall has no such member.
    pub async fn get_member(
        &self,
        ep: &MallEndpoint,
        id: &MemberId,
    ) -> Result<Option<MallMember>, MallError> {
        let path = ["members", id.as_str()];
        self.fetch_if_found(ep, Call::read("get_member", &path, &[]))
            .await
    }

    /// `GET /members:lookup` by one identity; `None` when no member has it.
    pub async fn lookup_member(
        &self,
        ep: &MallEndpoint,
        by: MemberLookup<'_>,
    ) -> Result<Option<MallMember>, MallError> {
        let query = match by {
            MemberLookup::Unionid(v) => [("unionid", v)],
            MemberLookup::ExternalUserid(v) => [("external_userid", v.as_str())],
            MemberLookup::Mobile(v) => [("mobile", v)],
        };
        let call = Call::read("lookup_member", &["members:lookup"], &query);
        self.fetch_if_found(ep, call).await
    }

    /// `POST /members/{id}/tags`, split into calls of at most 100 ids. Each call's key is
    /// derived from `key` and the call's content, so a retry that has the same work to do
    /// reuses its keys, and one whose work changed (part of it landed) never gets a stale
    /// replay. Returns the member as the last call left it.
    pub async fn change_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        member: &MemberId,
        add: &[MallTagId],
        remove: &[MallTagId],
    ) -> Result<MallMember, MallError> {
        let op = "change_member_tags";
        let batches =
            member_tag_batches(add, remove).map_err(|reason| MallError::local(op, reason))?;
        let path = ["members", member.as_str(), "tags"];
        let mut last = None;
        for batch in &batches {
            let body = json!({ "add": batch.add, "remove": batch.remove });
            let batch_key = key.derive(&batch.fingerprint());
            let call = Call::write(op, Method::POST, &path, &batch_key, Some(body));
            last = Some(self.fetch(ep, call).await?);
        }
        // `member_tag_batches` always yields at least one batch.
        last.ok_or_else(|| MallError::local(op, "no batch was sent".to_owned()))
    }
}

/// Walks `GET /members` one page at a time (`next_page` until it returns `None`). A failed
/// page leaves the pager where it was, so the caller may retry it.
pub struct MemberPager<'a> {
    client: &'a MallClient,
    ep: &'a MallEndpoint,
    limit: u32,
    cursor: Option<String>,
    done: bool,
}

impl MemberPager<'_> {
    pub async fn next_page(&mut self) -> Result<Option<Vec<MallMember>>, MallError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .client
            .list_members(self.ep, self.cursor.as_deref(), self.limit)
            .await?;
        match page.next_cursor {
            Some(next) if Some(&next) == self.cursor.as_ref() => {
                // A mall bug would otherwise loop forever.
                return Err(MallError::local(
                    "list_members",
                    "the mall returned the same cursor again".to_owned(),
                ));
            }
            Some(next) if !next.is_empty() => self.cursor = Some(next),
            _ => self.done = true,
        }
        Ok(Some(page.members))
    }

    /// Where the next page starts (`None`: at the beginning, or after the last page).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// One `POST /members/{id}/tags` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberTagBatch {
    pub add: Vec<MallTagId>,
    pub remove: Vec<MallTagId>,
}

impl MemberTagBatch {
    /// A digest of the batch's content: the part of its idempotency key that changes when
    /// the work changes.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for id in &self.add {
            h.update(b"+");
            h.update(id.as_str().as_bytes());
            h.update(b"\n");
        }
        for id in &self.remove {
            h.update(b"-");
            h.update(id.as_str().as_bytes());
            h.update(b"\n");
        }
        format!("tags-{}", &hex::encode(h.finalize())[..16])
    }
}

/// Splits a member's tag changes into bodies of at most [`MAX_IDS_PER_MEMBER_CALL`] ids, in a
/// deterministic order (sorted, duplicates dropped). Nothing to change still gives one
/// (empty) batch, whose answer is the member. An id both added and removed is refused:
/// split across batches it would half-apply.
pub fn member_tag_batches(
    add: &[MallTagId],
    remove: &[MallTagId],
) -> Result<Vec<MemberTagBatch>, String> {
    let add: BTreeSet<&MallTagId> = add.iter().collect();
    let remove: BTreeSet<&MallTagId> = remove.iter().collect();
    let both: Vec<&str> = add.intersection(&remove).map(|id| id.as_str()).collect();
    if !both.is_empty() {
        return Err(format!(
            "tag ids both added and removed: {}",
            both.join(", ")
        ));
    }
    let ops: Vec<(bool, &MallTagId)> = add
        .into_iter()
        .map(|id| (true, id))
        .chain(remove.into_iter().map(|id| (false, id)))
        .collect();
    if ops.is_empty() {
        return Ok(vec![MemberTagBatch {
            add: Vec::new(),
            remove: Vec::new(),
        }]);
    }
    Ok(ops
        .chunks(MAX_IDS_PER_MEMBER_CALL)
        .map(|chunk| MemberTagBatch {
            add: chunk
                .iter()
                .filter(|(is_add, _)| *is_add)
                .map(|(_, id)| (*id).clone())
                .collect(),
            remove: chunk
                .iter()
                .filter(|(is_add, _)| !*is_add)
                .map(|(_, id)| (*id).clone())
                .collect(),
        })
        .collect())
}
