//! [`MallPort`] for the HTTP client: each call is the client's own method of that name.

use super::client::{
    Deleted, GroupPatch, IdempotencyKey, MallClient, MallEndpoint, MallError, MallGroupWithTags,
    MallMember, MemberLookup, MemberPage, MemberTagItem, TagPatch,
};
use super::webhook::{MallTag, MallTagGroup};
use crate::domain::{MallGroupId, MallTagId, MemberId};
use crate::ports::MallPort;
use async_trait::async_trait;

type Result<T> = std::result::Result<T, MallError>;

#[async_trait]
impl MallPort for MallClient {
    async fn list_groups(&self, ep: &MallEndpoint) -> Result<Vec<MallGroupWithTags>> {
        MallClient::list_groups(self, ep).await
    }

    async fn create_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTagGroup> {
        MallClient::create_group(self, ep, key, name, order).await
    }

    async fn update_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
        patch: &GroupPatch,
    ) -> Result<MallTagGroup> {
        MallClient::update_group(self, ep, key, id, patch).await
    }

    async fn delete_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
    ) -> Result<Deleted> {
        MallClient::delete_group(self, ep, key, id).await
    }

    async fn create_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        group_id: &MallGroupId,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTag> {
        MallClient::create_tag(self, ep, key, group_id, name, order).await
    }

    async fn update_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
        patch: &TagPatch,
    ) -> Result<MallTag> {
        MallClient::update_tag(self, ep, key, id, patch).await
    }

    async fn delete_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
    ) -> Result<Deleted> {
        MallClient::delete_tag(self, ep, key, id).await
    }

    async fn list_members(
        &self,
        ep: &MallEndpoint,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<MemberPage> {
        MallClient::list_members(self, ep, cursor, limit).await
    }

    async fn get_member(&self, ep: &MallEndpoint, id: &MemberId) -> Result<Option<MallMember>> {
        MallClient::get_member(self, ep, id).await
    }

    async fn lookup_member(
        &self,
        ep: &MallEndpoint,
        by: MemberLookup<'_>,
    ) -> Result<Option<MallMember>> {
        MallClient::lookup_member(self, ep, by).await
    }

    async fn change_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        member: &MemberId,
        add: &[MallTagId],
        remove: &[MallTagId],
    ) -> Result<MallMember> {
        MallClient::change_member_tags(self, ep, key, member, add, remove).await
    }

    fn offers_batch(&self, ep: &MallEndpoint) -> bool {
        MallClient::offers_batch(self, ep)
    }

    async fn batch_member_tags(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        items: &[MemberTagItem],
    ) -> Result<Option<Vec<Result<MallMember>>>> {
        MallClient::batch_member_tags(self, ep, key, items).await
    }
}
