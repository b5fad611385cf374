//! [`WecomPort`] for the HTTP client: each call is the client's own method of that name.

use super::classify::ApiOp;
use super::client::{
    AddTarget, BatchPage, ContactDetail, ContactWay, DeleteOutcome, EditTarget, NewTag,
    TagGroupInfo, TransferAnswer, TransferResultPage, WecomClient, WecomCredentials, WecomError,
};
use super::strategy::{RangeNode, StrategyInfo};
use crate::domain::{
    CorpId, Department, ExternalUserId, StaffMember, WecomGroupId, WecomTagId, WecomUserId,
};
use crate::ports::{StoreError, WecomPort};
use crate::sync::pace::Windows;
use async_trait::async_trait;
use std::collections::BTreeSet;

type Result<T> = std::result::Result<T, WecomError>;

#[async_trait]
impl WecomPort for WecomClient {
    async fn get_corp_tag_list(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>> {
        WecomClient::get_corp_tag_list(self, creds, tag_ids, group_ids).await
    }

    async fn add_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo> {
        WecomClient::add_corp_tag(self, creds, target, tags).await
    }

    async fn edit_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<()> {
        WecomClient::edit_corp_tag(self, creds, target, name, order).await
    }

    async fn del_corp_tag(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome> {
        WecomClient::del_corp_tag(self, creds, tag_ids, group_ids).await
    }

    async fn get_strategy_tag_list(
        &self,
        creds: &WecomCredentials,
        strategy_id: Option<u32>,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>> {
        WecomClient::get_strategy_tag_list(self, creds, strategy_id, tag_ids, group_ids).await
    }

    async fn add_strategy_tag(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo> {
        WecomClient::add_strategy_tag(self, creds, strategy_id, target, tags).await
    }

    async fn edit_strategy_tag(
        &self,
        creds: &WecomCredentials,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<()> {
        WecomClient::edit_strategy_tag(self, creds, target, name, order).await
    }

    async fn del_strategy_tag(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome> {
        WecomClient::del_strategy_tag(self, creds, tag_ids, group_ids).await
    }

    async fn strategy_ids(&self, creds: &WecomCredentials) -> Result<Vec<u32>> {
        WecomClient::strategy_ids(self, creds).await
    }

    async fn strategy_get(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<StrategyInfo> {
        WecomClient::strategy_get(self, creds, strategy_id).await
    }

    async fn strategy_range(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
    ) -> Result<BTreeSet<RangeNode>> {
        WecomClient::strategy_range(self, creds, strategy_id).await
    }

    async fn strategy_create(
        &self,
        creds: &WecomCredentials,
        parent_id: Option<u32>,
        name: &str,
        range: &BTreeSet<RangeNode>,
    ) -> Result<u32> {
        WecomClient::strategy_create(self, creds, parent_id, name, range).await
    }

    async fn strategy_edit(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        name: Option<&str>,
        add: &BTreeSet<RangeNode>,
        del: &BTreeSet<RangeNode>,
    ) -> Result<()> {
        WecomClient::strategy_edit(self, creds, strategy_id, name, add, del).await
    }

    async fn mark_tag(
        &self,
        creds: &WecomCredentials,
        userid: &WecomUserId,
        external_userid: &ExternalUserId,
        add: &[WecomTagId],
        remove: &[WecomTagId],
    ) -> Result<()> {
        WecomClient::mark_tag(self, creds, userid, external_userid, add, remove).await
    }

    async fn get_external_contact(
        &self,
        creds: &WecomCredentials,
        external_userid: &ExternalUserId,
    ) -> Result<ContactDetail> {
        WecomClient::get_external_contact(self, creds, external_userid).await
    }

    async fn batch_get_by_user(
        &self,
        creds: &WecomCredentials,
        userids: &[WecomUserId],
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BatchPage> {
        WecomClient::batch_get_by_user(self, creds, userids, cursor, limit).await
    }

    async fn get_follow_user_list(&self, creds: &WecomCredentials) -> Result<Vec<WecomUserId>> {
        WecomClient::get_follow_user_list(self, creds).await
    }

    async fn add_contact_way(
        &self,
        creds: &WecomCredentials,
        state: &str,
        users: &[WecomUserId],
        remark: &str,
    ) -> Result<ContactWay> {
        WecomClient::add_contact_way(self, creds, state, users, remark).await
    }

    async fn del_contact_way(&self, creds: &WecomCredentials, config_id: &str) -> Result<()> {
        WecomClient::del_contact_way(self, creds, config_id).await
    }

    async fn transfer_customer(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        customers: &[ExternalUserId],
    ) -> Result<Vec<TransferAnswer>> {
        WecomClient::transfer_customer(self, creds, resigned, handover, takeover, customers).await
    }

    async fn transfer_result(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        cursor: Option<&str>,
    ) -> Result<TransferResultPage> {
        WecomClient::transfer_result(self, creds, resigned, handover, takeover, cursor).await
    }

    async fn department_list(
        &self,
        creds: &WecomCredentials,
        id: Option<u32>,
    ) -> Result<Vec<Department>> {
        WecomClient::department_list(self, creds, id).await
    }

    async fn user_simplelist(
        &self,
        creds: &WecomCredentials,
        department: u32,
        fetch_child: bool,
    ) -> Result<Vec<StaffMember>> {
        WecomClient::user_simplelist(self, creds, department, fetch_child).await
    }

    async fn user_get(&self, creds: &WecomCredentials, userid: &str) -> Result<StaffMember> {
        WecomClient::user_get(self, creds, userid).await
    }

    async fn auth_getuserinfo(
        &self,
        creds: &WecomCredentials,
        code: &str,
    ) -> Result<Option<String>> {
        WecomClient::auth_getuserinfo(self, creds, code).await
    }

    async fn rate_windows(
        &self,
        corp: &CorpId,
        op: ApiOp,
    ) -> std::result::Result<Windows, StoreError> {
        self.budget().windows(corp, op).await
    }

    fn limit_in_flight(&self, calls: usize) {
        WecomClient::limit_in_flight(self, calls)
    }
}
