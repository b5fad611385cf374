//! The tag library on the mall (`mall-connector.md` §3): tag groups and their tags, listed
//! whole and written one object at a time.

use super::transport::{Call, to_value};
use super::{Deleted, IdempotencyKey, MallClient, MallEndpoint, MallError};
use crate::domain::{MallGroupId, MallTagId};
use crate::mall::webhook::{MallTag, MallTagGroup};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A tag group with its tags, as `GET /tag-groups` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallGroupWithTags {
    #[serde(flatten)]
    pub group: MallTagGroup,
    #[serde(default)]
    pub tags: Vec<MallTag>,
}

/// The fields a `PATCH /tag-groups/{id}` changes; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
}

impl GroupPatch {
    /// A patch that renames the group and changes nothing else.
    pub fn renamed(name: &str) -> Self {
        Self {
            name: Some(name.to_owned()),
            ..Self::default()
        }
    }
}

/// The fields a `PATCH /tags/{id}` changes; a new `group_id` moves the tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TagPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<MallGroupId>,
}

impl TagPatch {
    /// A patch that renames the tag and changes nothing else.
    pub fn renamed(name: &str) -> Self {
        Self {
            name: Some(name.to_owned()),
            ..Self::default()
        }
    }
}

impl MallClient {
    /// `GET /tag-groups`: the whole library, each group with its tags.
    pub async fn list_groups(
        &self,
        ep: &MallEndpoint,
    ) -> Result<Vec<MallGroupWithTags>, MallError> {
        #[derive(Deserialize)]
        struct Groups {
            groups: Vec<MallGroupWithTags>,
        }
        let call = Call::read("list_groups", &["tag-groups"], &[]);
        Ok(self.fetch::<Groups>(ep, call).await?.groups)
    }

    /// `POST /tag-groups`. A 409 carries the id of the group that has the name.
    pub async fn create_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTagGroup, MallError> {
        let body = created(json!({ "name": name }), order);
        let call = Call::write("create_group", Method::POST, &["tag-groups"], key, body);
        self.fetch(ep, call).await
    }

    /// `PATCH /tag-groups/{id}`: rename and/or reorder.
    pub async fn update_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
        patch: &GroupPatch,
    ) -> Result<MallTagGroup, MallError> {
        let path = ["tag-groups", id.as_str()];
        let body = Some(to_value(patch));
        let call = Call::write("update_group", Method::PATCH, &path, key, body);
        self.fetch(ep, call).await
    }

    /// `DELETE /tag-groups/{id}` (its tags go with it). A 404 is [`Deleted::AlreadyGone`].
    pub async fn delete_group(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallGroupId,
    ) -> Result<Deleted, MallError> {
        let path = ["tag-groups", id.as_str()];
        let call = Call::write("delete_group", Method::DELETE, &path, key, None);
        self.delete(ep, call).await
    }

    /// `POST /tags`. A 409 carries the id of the tag in that group that has the name.
    pub async fn create_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        group_id: &MallGroupId,
        name: &str,
        order: Option<u32>,
    ) -> Result<MallTag, MallError> {
        let body = created(json!({ "group_id": group_id, "name": name }), order);
        let call = Call::write("create_tag", Method::POST, &["tags"], key, body);
        self.fetch(ep, call).await
    }

    /// `PATCH /tags/{id}`: rename, reorder and/or move to another group.
    pub async fn update_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
        patch: &TagPatch,
    ) -> Result<MallTag, MallError> {
        let path = ["tags", id.as_str()];
        let body = Some(to_value(patch));
        let call = Call::write("update_tag", Method::PATCH, &path, key, body);
        self.fetch(ep, call).await
    }

    /// `DELETE /tags/{id}` (members lose it). A 404 is [`Deleted::AlreadyGone`].
    pub async fn delete_tag(
        &self,
        ep: &MallEndpoint,
        key: &IdempotencyKey,
        id: &MallTagId,
    ) -> Result<Deleted, MallError> {
        let path = ["tags", id.as_str()];
        let call = Call::write("delete_tag", Method::DELETE, &path, key, None);
        self.delete(ep, call).await
    }
}

/// A create's body: `fields`, plus `order` only when one is given (optional in the
/// contract's `POST /tag-groups` and `POST /tags`).
fn created(mut fields: Value, order: Option<u32>) -> Option<Value> {
    if let Some(order) = order {
        fields["order"] = json!(order);
    }
    Some(fields)
}
