//! The tag libraries (wecom-api.md §1.1–§1.4): the corp's tags and the rule groups' tags,
//! listed, created, edited and deleted. Both libraries take the same calls; only the API
//! (and, for rule groups, the strategy) differs.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::transport::{Empty, json};
use super::{WecomClient, WecomCredentials, WecomError};
use crate::domain::{WecomGroupId, WecomTagId};
use crate::wecom::classify::{ApiOp, Verdict};

/// Where `add_corp_tag` / `add_strategy_tag` put the tags.
#[derive(Clone, Copy, Debug)]
pub enum AddTarget<'a> {
    /// An existing group (its name and order are then ignored by WeCom).
    Group(&'a WecomGroupId),
    /// The group of this name, created if missing; WeCom merges into an existing one (§1.2).
    Named { name: &'a str, order: Option<u32> },
}

/// What `edit_corp_tag` / `edit_strategy_tag` edits: the API takes either id in one field.
#[derive(Clone, Copy, Debug)]
pub enum EditTarget<'a> {
    Tag(&'a WecomTagId),
    Group(&'a WecomGroupId),
}

impl EditTarget<'_> {
    fn as_str(&self) -> &str {
        match self {
            EditTarget::Tag(t) => t.as_str(),
            EditTarget::Group(g) => g.as_str(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewTag {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
}

impl NewTag {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            order: None,
        }
    }
}

/// The result of a delete: an unknown id on delete means it is already gone (§12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyGone,
}

/// A tag group as `get_corp_tag_list` / `get_strategy_tag_list` / `add_*_tag` return it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TagGroupInfo {
    pub group_id: WecomGroupId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub create_time: i64,
    #[serde(default, deserialize_with = "lenient::u32")]
    pub order: u32,
    /// Only present when queried by tag id (§1.1).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub deleted: bool,
    /// Strategy (rule-group) tags only.
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub strategy_id: Option<u32>,
    #[serde(default)]
    pub tag: Vec<TagInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TagInfo {
    pub id: WecomTagId,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub create_time: i64,
    #[serde(default, deserialize_with = "lenient::u32")]
    pub order: u32,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub deleted: bool,
}

#[derive(Deserialize)]
struct TagListResp {
    #[serde(default)]
    tag_group: Vec<TagGroupInfo>,
}

#[derive(Deserialize)]
struct AddTagResp {
    tag_group: TagGroupInfo,
}

#[derive(Serialize)]
struct TagListReq<'a, G> {
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy_id: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tag_id: &'a [WecomTagId],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    group_id: &'a [G],
}

/// `group_id` is omitted, never sent empty: WeCom rejects `""` (§9 P4).
#[derive(Serialize)]
pub(super) struct AddTagReq<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) strategy_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) group_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) order: Option<u32>,
    pub(super) tag: &'a [NewTag],
}

#[derive(Serialize)]
struct EditTagReq<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<u32>,
}

/// The corp library and the rule-group library take their edit and delete calls with the
/// same arguments and the same meaning (§1.3, §1.4); only the API differs. So each call is
/// written once, here, under the two names callers know from WeCom's documents.
macro_rules! edit_and_delete {
    ($edit:ident: $edit_op:expr, $del:ident: $del_op:expr, $library:literal) => {
        #[doc = concat!("Renames and/or reorders a tag or a group of ", $library, ".")]
        pub async fn $edit(
            &self,
            creds: &WecomCredentials,
            target: EditTarget<'_>,
            name: Option<&str>,
            order: Option<u32>,
        ) -> Result<(), WecomError> {
            self.edit_tag(creds, $edit_op, target, name, order).await
        }

        #[doc = concat!("Deletes tags and/or groups of ", $library, "; ids already gone count as deleted (§12).")]
        pub async fn $del(
            &self,
            creds: &WecomCredentials,
            tag_ids: &[WecomTagId],
            group_ids: &[WecomGroupId],
        ) -> Result<DeleteOutcome, WecomError> {
            self.del_tags(creds, $del_op, tag_ids, group_ids).await
        }
    };
}

impl WecomClient {
    /// The corp tag library, or the groups/tags asked for (`group_ids` wins over `tag_ids`).
    pub async fn get_corp_tag_list(
        &self,
        creds: &WecomCredentials,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>, WecomError> {
        let req = TagListReq {
            strategy_id: None,
            tag_id: tag_ids,
            group_id: group_ids,
        };
        self.list_tags(creds, ApiOp::GetCorpTagList, &req).await
    }

    /// Rule-group tags of one strategy, or of all when `strategy_id` is `None` (§1.4).
    pub async fn get_strategy_tag_list(
        &self,
        creds: &WecomCredentials,
        strategy_id: Option<u32>,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<Vec<TagGroupInfo>, WecomError> {
        let req = TagListReq {
            strategy_id,
            tag_id: tag_ids,
            group_id: group_ids,
        };
        self.list_tags(creds, ApiOp::GetStrategyTagList, &req).await
    }

    /// Creates tags (and their group when `target` names a new one); answers with the group
    /// and the tags of this request, new or merged (§1.2).
    pub async fn add_corp_tag(
        &self,
        creds: &WecomCredentials,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        self.add_tags(creds, ApiOp::AddCorpTag, None, target, tags)
            .await
    }

    /// [`Self::add_corp_tag`] in rule group `strategy_id`'s library (§1.4).
    pub async fn add_strategy_tag(
        &self,
        creds: &WecomCredentials,
        strategy_id: u32,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        self.add_tags(
            creds,
            ApiOp::AddStrategyTag,
            Some(strategy_id),
            target,
            tags,
        )
        .await
    }

    edit_and_delete!(
        edit_corp_tag: ApiOp::EditCorpTag,
        del_corp_tag: ApiOp::DelCorpTag,
        "the corp library"
    );

    edit_and_delete!(
        edit_strategy_tag: ApiOp::EditStrategyTag,
        del_strategy_tag: ApiOp::DelStrategyTag,
        "a rule group's library"
    );

    async fn list_tags<G: Serialize>(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        req: &TagListReq<'_, G>,
    ) -> Result<Vec<TagGroupInfo>, WecomError> {
        let resp: TagListResp = self.call(creds, op, json(req)).await?;
        Ok(resp.tag_group)
    }

    async fn add_tags(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        strategy_id: Option<u32>,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        if tags.is_empty() {
            return Err(WecomError::invalid_request(
                op,
                "a group cannot be empty: no tags",
            ));
        }
        let (group_id, group_name, order) = match target {
            AddTarget::Group(g) if g.as_str().is_empty() => {
                return Err(WecomError::invalid_request(op, "empty group id"));
            }
            AddTarget::Group(g) => (Some(g.as_str()), None, None),
            AddTarget::Named { name, order } => (None, Some(name), order),
        };
        let req = AddTagReq {
            strategy_id,
            group_id,
            group_name,
            order,
            tag: tags,
        };
        let resp: AddTagResp = self.call(creds, op, json(&req)).await?;
        Ok(resp.tag_group)
    }

    async fn edit_tag(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Result<(), WecomError> {
        let req = EditTagReq {
            id: target.as_str(),
            name,
            order,
        };
        let _: Empty = self.call(creds, op, json(&req)).await?;
        Ok(())
    }

    async fn del_tags(
        &self,
        creds: &WecomCredentials,
        op: ApiOp,
        tag_ids: &[WecomTagId],
        group_ids: &[WecomGroupId],
    ) -> Result<DeleteOutcome, WecomError> {
        if tag_ids.is_empty() && group_ids.is_empty() {
            return Err(WecomError::invalid_request(op, "no tag or group ids"));
        }
        let req = TagListReq {
            strategy_id: None,
            tag_id: tag_ids,
            group_id: group_ids,
        };
        match self.call::<Empty>(creds, op, json(&req)).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) if e.verdict == Verdict::AlreadyDone => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}
