//! The WeCom port: the calls the jobs and the admin routes make to WeCom (wecom-api.md).
//!
//! Implemented by the HTTP client in `wecom/port.rs`, which delegates to `WecomClient`; the
//! client's process-wide knobs (rate budget, retries, metrics, timeouts) are set where
//! `App::new` builds it, before it becomes an `Arc<dyn WecomPort>`. A failure is a
//! [`WecomError`]: callers ask it what it means (`retryable`, `rate_limited`, `refusal`:
//! not ours / name taken / unknown id / no relation), never for an errcode.
//!
//! The request and answer shapes are the client's (`wecom::client`, `wecom::strategy`): they
//! are WeCom's API, and any implementation of this port speaks it.

use crate::domain::{
    CorpId, Department, ExternalUserId, StaffMember, WecomGroupId, WecomTagId, WecomUserId,
};
use crate::ports::StoreError;
use crate::sync::pace::Windows;
use crate::wecom::classify::ApiOp;
use crate::wecom::client::{
    AddTarget, BatchPage, ContactDetail, ContactWay, DeleteOutcome, EditTarget, NewTag,
    TagGroupInfo, TransferAnswer, TransferResultPage, WecomCredentials, WecomError,
};
use crate::wecom::strategy::{RangeNode, StrategyInfo};
use async_trait::async_trait;
use std::collections::BTreeSet;

type Result<T> = std::result::Result<T, WecomError>;

#[async_trait]
pub trait WecomPort: Send + Sync {
    // --- The corp tag library (§1.1–§1.3).

    /// The library, or the groups/tags asked for (`group_ids` wins over `tag_ids`).
    async fn get_corp_tag_list(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>>;

    /// Creates tags (and their group when `target` names a new one); answers the group and
    /// the tags of this request, new or merged into same-name ones.
    async fn add_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo>;

    async fn edit_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<()>;

    async fn del_corp_tag(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome>;

    // --- Rule groups and their tags (§1.4).

    /// Rule-group tags of one strategy, or of all when `strategy_id` is `None`.
    async fn get_strategy_tag_list(
        &self,
        creds: &WecomCredentials,
        strategy_id: Option<u32>,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>>;

    async fn add_strategy_tag(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo>;

    async fn edit_strategy_tag(
        &self,
        creds: &WecomCredentials,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<()>;

    async fn del_strategy_tag(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome>;

    /// Every rule group's id.
    async fn strategy_ids(&self, creds: &WecomCredentials) -> Result<Vec<u32>>;

    async fn strategy_get(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<StrategyInfo>;

    /// The departments and members a rule group covers.
    async fn strategy_range(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<BTreeSet<RangeNode>>;

    /// Creates a rule group; answers its id.
    async fn strategy_create(
        &self,
        creds: &WecomCredentials,
        parent_id: Option<u32>,
        name: &str,
        range: &BTreeSet<RangeNode>,
    ) -> Result<u32>;

    async fn strategy_edit(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        name: Option<&str>,
        add: &BTreeSet<RangeNode>,
        del: &BTreeSet<RangeNode>,
    ) -> Result<()>;

    // --- Customers and their tags (§1.5, §1.6).

    /// Adds and removes tags on one (member, customer) relation in one call.
    async fn mark_tag(
        &self,
        creds: &WecomCredentials,
        userid: &WecomUserId,
        external_userid: &ExternalUserId,
        add: &[WecomTagId],
        remove: &[WecomTagId],
    ) -> Result<()>;

    /// A customer and every follow relation.
    async fn get_external_contact(
        &self,
        creds: &WecomCredentials,
        external_userid: &ExternalUserId,
    ) -> Result<ContactDetail>;

    /// One page of the relations of up to 100 members (`limit` ≤ 100).
    async fn batch_get_by_user(
        &self,
        creds: &WecomCredentials,
        userids: &[WecomUserId],
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BatchPage>;

    /// Members with customer contact enabled.
    async fn get_follow_user_list(&self, creds: &WecomCredentials) -> Result<Vec<WecomUserId>>;

    // --- Contact ways (§7) and customer transfer (§6).

    /// A QR-code contact way for `users` whose add events carry `state`.
    async fn add_contact_way(
        &self,
        creds: &WecomCredentials,
        state: &str,
        users: &[WecomUserId],
        remark: &str,
    ) -> Result<ContactWay>;

    /// Deletes a contact way; one already gone counts as deleted.
    async fn del_contact_way(&self, creds: &WecomCredentials, config_id: &str) -> Result<()>;

    /// Hands up to 100 of `handover`'s customers to `takeover` (`resigned`: `handover` has
    /// left); answers each customer's outcome.
    async fn transfer_customer(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        customers: &[ExternalUserId],
    ) -> Result<Vec<TransferAnswer>>;

    /// One page of where `handover` → `takeover` transfers stand.
    async fn transfer_result(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        cursor: Option<&str>,
    ) -> Result<TransferResultPage>;

    // --- The directory and staff sign-in (§13).

    /// Every department under `id` (itself included), or the whole tree when `None`.
    async fn department_list(
        &self,
        creds: &WecomCredentials,
        id: Option<u32>,
    ) -> Result<Vec<Department>>;

    /// The staff of `department` and, with `fetch_child`, of every department below it.
    async fn user_simplelist(
        &self,
        creds: &WecomCredentials,
        department: u32,
        fetch_child: bool,
    ) -> Result<Vec<StaffMember>>;

    async fn user_get(&self, creds: &WecomCredentials, userid: &str) -> Result<StaffMember>;

    /// The staff member a web-login `code` was issued to; `None` for someone outside the corp.
    async fn auth_getuserinfo(
        &self,
        creds: &WecomCredentials,
        code: &str,
    ) -> Result<Option<String>>;

    // --- The rate limits as tagsync spends them.

    /// How much of `op`'s minute and hour `corp` has spent, without spending any (a run
    /// plans its pace from it).
    async fn rate_windows(
        &self,
        corp: &CorpId,
        op: ApiOp,
    ) -> std::result::Result<Windows, StoreError>;

    /// At most `calls` calls of this process in flight at once: its number of workers, so a
    /// window WeCom says is spent meets at most one 45009 per worker. Set once, before any
    /// call, by the runtime that knows its worker count (`tagsync serve --workers`).
    fn limit_in_flight(&self, calls: usize);
}
