//! The mall port: the calls the jobs and the admin routes make to a tenant's mall
//! (`design/mall-connector.md` §3).
//!
//! Implemented by the HTTP client in `mall/port.rs`, which delegates to `MallClient`; its
//! process-wide knobs (pace, retries, metrics, timeout) are set where `App::new` builds it,
//! before it becomes an `Arc<dyn MallPort>`. Every call takes the tenant's [`MallEndpoint`];
//! every write takes an [`IdempotencyKey`], so a retried job's write is done once. A failure
//! is a [`MallError`]: callers ask it what it means (`retryable`, `rate_limited`,
//! `existing_id` for a name taken, `is_not_found`, `unknown_ids`), never for a status.

use crate::domain::{MallGroupId, MallTagId, MemberId};
use crate::mall::client::{
    Deleted, GroupPatch, IdempotencyKey, MallEndpoint, MallError, MallGroupWithTags, MallMember,
    MemberLookup, MemberPage, MemberTagItem, TagPatch,
};
use crate::mall::webhook::{MallTag, MallTagGroup};
use async_trait::async_trait;

type Result<T> = std::result::Result<T, MallError>;

#[async_trait]
pub trait MallPort: Send + Sync {
    // --- The tag library.

    /// The whole library, each group with its tags.
    async fn list_groups(&self, ep: &MallEndpoint) -> Result<Vec<MallGroupWithTags>>;

    /// A name taken by a sibling fails with that sibling's id (`MallError::existing_id`).
    async fn create_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTagGroup>;

    /// Rename and/or reorder.
    async fn update_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
        patch: &GroupPatch,
    ) -> Result<MallTagGroup>;

    /// Deletes the group and its tags; one already gone is [`Deleted::AlreadyGone`].
    async fn delete_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
    ) -> Result<Deleted>;

    /// A name taken in the group fails with that tag's id (`MallError::existing_id`).
    async fn create_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        group_id: &MallGroupId,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTag>;

    /// Rename, reorder and/or move to another group.
    async fn update_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
        patch: &TagPatch,
    ) -> Result<MallTag>;

    /// Deletes the tag (members lose it); one already gone is [`Deleted::AlreadyGone`].
    async fn delete_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
    ) -> Result<Deleted>;

    // --- Members and their tags.

    /// One page of at most `limit` members from `cursor` (`None`: the first page).
    async fn list_members(
        &self,
        ep: &MallEndpoint,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemberPage>;

    /// `None` when the mall has no such member.
    async fn get_member(&self, ep: &MallEndpoint, id: &MemberId) -> Result<Option<MallMember>>;

    /// The member with one identity; `None` when no member has it.
    async fn lookup_member(
        &self,
        ep: &MallEndpoint,
        by: MemberLookup<'_>,
    ) -> Result<Option<MallMember>>;

    /// Adds and removes one member's tags (in as many calls as the ids need); answers the
    /// member as the last call left it.
    async fn change_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        member: &MemberId,
        add: &[MallTagId],
        remove: &[MallTagId],
    ) -> Result<MallMember>;

    /// Whether `ep`'s mall is, as far as this process knows, one that takes
    /// [`MallPort::batch_member_tags`].
    fn offers_batch(&self, ep: &MallEndpoint) -> bool;

    /// Up to 100 members' changes in one write. `Ok(None)`: the mall does not offer it;
    /// write member by member. Otherwise one result per item, in order; an error is the
    /// whole request's (no item was applied).
    async fn batch_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        items: &[MemberTagItem],
    ) -> Result<Option<Vec<Result<MallMember>>>>;
}
