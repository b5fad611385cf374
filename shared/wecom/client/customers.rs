//! Customers (wecom-api.md §1.5, §1.6): who follows whom, a customer's details with every
//! follow relation, the relations of many members page by page, and marking tags on one
//! relation.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::transport::{Empty, Payload, json};
use super::{WecomClient, WecomCredentials, WecomError};
use crate::domain::{ExternalUserId, WecomTagId, WecomUserId};
use crate::wecom::classify::ApiOp;

/// `batch/get_by_user` limits (§1.5).
pub const MAX_BATCH_USERS: usize = 100;
pub const MAX_BATCH_LIMIT: u32 = 100;
/// A guard against a server that keeps answering with a cursor.
const MAX_CONTACT_PAGES: usize = 1_000;

/// The customer part of `externalcontact/get` and `batch/get_by_user` (§1.5).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExternalContact {
    pub external_userid: ExternalUserId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub avatar: String,
    /// 1 = WeChat user, 2 = WeCom user.
    #[serde(rename = "type", default, deserialize_with = "lenient::i64")]
    pub kind: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub gender: i64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub unionid: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub position: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub corp_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub corp_full_name: String,
}

/// One follow relation (member → customer) as `externalcontact/get` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FollowUser {
    pub userid: WecomUserId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub remark: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub createtime: i64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub add_way: i64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub oper_userid: String,
    #[serde(default)]
    pub tags: Vec<FollowUserTag>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FollowUserTag {
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub tag_name: String,
    /// 1 corp, 2 personal, 3 rule-group (§0).
    #[serde(rename = "type", default, deserialize_with = "lenient::i64")]
    pub kind: i64,
    /// Absent for personal (type 2) tags.
    #[serde(default)]
    pub tag_id: Option<WecomTagId>,
}

/// A customer with all the follow relations visible to the app (every page joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactDetail {
    pub external_contact: ExternalContact,
    pub follow_user: Vec<FollowUser>,
}

/// One relation as `batch/get_by_user` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FollowInfo {
    pub userid: WecomUserId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub remark: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub createtime: i64,
    /// Corp and rule-group tag ids; personal tags are not returned (§1.5).
    #[serde(default)]
    pub tag_id: Vec<WecomTagId>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub add_way: i64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub oper_userid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BatchContact {
    pub external_contact: ExternalContact,
    pub follow_info: FollowInfo,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BatchPage {
    #[serde(default)]
    pub external_contact_list: Vec<BatchContact>,
    /// `None` on the last page (WeCom sends an empty string).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct GetContactResp {
    external_contact: ExternalContact,
    #[serde(default)]
    follow_user: Vec<FollowUser>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct FollowUserListResp {
    #[serde(default)]
    follow_user: Vec<WecomUserId>,
}

#[derive(Deserialize)]
struct ListResp {
    #[serde(default)]
    external_userid: Vec<ExternalUserId>,
}

#[derive(Serialize)]
struct MarkTagReq<'a> {
    userid: &'a WecomUserId,
    external_userid: &'a ExternalUserId,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    add_tag: &'a [WecomTagId],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    remove_tag: &'a [WecomTagId],
}

#[derive(Serialize)]
struct BatchReq<'a> {
    userid_list: &'a [WecomUserId],
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    limit: u32,
}

impl WecomClient {
    /// Adds and removes tags on one (member, customer) relation in one call (§1.6).
    pub async fn mark_tag(
        &self,
        creds: &WecomCredentials,
        userid: &WecomUserId,
        external_userid: &ExternalUserId,
        add: &[WecomTagId],
        remove: &[WecomTagId],
    ) -> Result<(), WecomError> {
        let op = ApiOp::MarkTag;
        if add.is_empty() && remove.is_empty() {
            return Err(WecomError::invalid_request(op, "nothing to add or remove"));
        }
        let req = MarkTagReq {
            userid,
            external_userid,
            add_tag: add,
            remove_tag: remove,
        };
        let _: Empty = self.call(creds, op, json(&req)).await?;
        Ok(())
    }

    /// A customer and every follow relation, following `next_cursor` (> 500 follow users).
    pub async fn get_external_contact(
        &self,
        creds: &WecomCredentials,
        external_userid: &ExternalUserId,
    ) -> Result<ContactDetail, WecomError> {
        let op = ApiOp::GetExternalContact;
        let page = |cursor: Option<String>| {
            let mut query = vec![("external_userid", external_userid.to_string())];
            query.extend(cursor.map(|c| ("cursor", c)));
            self.call::<GetContactResp>(creds, op, Payload::Query(query))
        };
        let first = page(None).await?;
        let mut cursor = first.next_cursor;
        let mut detail = ContactDetail {
            external_contact: first.external_contact,
            follow_user: first.follow_user,
        };
        for _ in 1..MAX_CONTACT_PAGES {
            let Some(current) = cursor.take() else { break };
            let next = page(Some(current.clone())).await?;
            detail.follow_user.extend(next.follow_user);
            match next.next_cursor {
                Some(c) if c != current => cursor = Some(c),
                _ => break,
            }
        }
        Ok(detail)
    }

    /// One page of the relations of up to 100 members (`limit` ≤ 100), for reconciliation.
    pub async fn batch_get_by_user(
        &self,
        creds: &WecomCredentials,
        userids: &[WecomUserId],
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BatchPage, WecomError> {
        let op = ApiOp::BatchGetByUser;
        if userids.is_empty() || userids.len() > MAX_BATCH_USERS {
            return Err(WecomError::invalid_request(
                op,
                "userid_list must hold 1 to 100 members",
            ));
        }
        if limit == 0 || limit > MAX_BATCH_LIMIT {
            return Err(WecomError::invalid_request(op, "limit must be 1 to 100"));
        }
        let req = BatchReq {
            userid_list: userids,
            cursor: cursor.filter(|c| !c.is_empty()),
            limit,
        };
        self.call(creds, op, json(&req)).await
    }

    /// Members with customer contact enabled.
    pub async fn get_follow_user_list(
        &self,
        creds: &WecomCredentials,
    ) -> Result<Vec<WecomUserId>, WecomError> {
        let resp: FollowUserListResp = self
            .call(creds, ApiOp::GetFollowUserList, Payload::Query(vec![]))
            .await?;
        Ok(resp.follow_user)
    }

    /// Every customer of one member (no paging, §1.5).
    pub async fn list_external_contacts(
        &self,
        creds: &WecomCredentials,
        userid: &WecomUserId,
    ) -> Result<Vec<ExternalUserId>, WecomError> {
        let query = vec![("userid", userid.to_string())];
        let resp: ListResp = self
            .call(creds, ApiOp::ListExternalContacts, Payload::Query(query))
            .await?;
        Ok(resp.external_userid)
    }
}
