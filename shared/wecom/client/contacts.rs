//! The corp's directory and staff sign-in (wecom-api.md §13): `department/list`,
//! `user/simplelist`, `user/get`, and `auth/getuserinfo` (a web-login `code` → the userid).

use super::{Payload, WecomClient, WecomCredentials, WecomError, lenient};
use crate::domain::{Department, StaffMember};
use crate::wecom::classify::ApiOp;
use serde::Deserialize;

#[derive(Deserialize)]
struct DepartmentListResp {
    #[serde(default)]
    department: Vec<DepartmentInfo>,
}

#[derive(Deserialize)]
struct DepartmentInfo {
    #[serde(deserialize_with = "lenient::u32")]
    id: u32,
    #[serde(default, deserialize_with = "lenient::string")]
    name: String,
    #[serde(default, deserialize_with = "lenient::u32")]
    parentid: u32,
    #[serde(default, deserialize_with = "lenient::u32")]
    order: u32,
}

#[derive(Deserialize)]
struct UserListResp {
    #[serde(default)]
    userlist: Vec<UserInfo>,
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(deserialize_with = "lenient::string")]
    userid: String,
    #[serde(default, deserialize_with = "lenient::string")]
    name: String,
    #[serde(default)]
    department: Vec<serde_json::Value>,
}

impl UserInfo {
    fn into_staff(self) -> StaffMember {
        StaffMember {
            userid: self.userid,
            name: self.name,
            departments: self
                .department
                .iter()
                .map(lenient::i64_of)
                .filter_map(|d| u32::try_from(d).ok())
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct UserInfoResp {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    userid: Option<String>,
    /// The older `user/getuserinfo` spelling.
    #[serde(default, rename = "UserId", deserialize_with = "lenient::opt_string")]
    user_id: Option<String>,
}

impl WecomClient {
    /// Every department under `id` (itself included), or the whole tree when `None`.
    pub async fn department_list(
        &self,
        creds: &WecomCredentials,
        id: Option<u32>,
    ) -> Result<Vec<Department>, WecomError> {
        let query = id.map(|i| ("id", i.to_string())).into_iter().collect();
        let resp: DepartmentListResp = self
            .call(creds, ApiOp::DepartmentList, Payload::Query(query))
            .await?;
        Ok(resp
            .department
            .into_iter()
            .map(|d| Department {
                id: d.id,
                name: d.name,
                parent_id: d.parentid,
                order: d.order,
            })
            .collect())
    }

    /// The staff of `department` and, with `fetch_child`, of every department below it.
    pub async fn user_simplelist(
        &self,
        creds: &WecomCredentials,
        department: u32,
        fetch_child: bool,
    ) -> Result<Vec<StaffMember>, WecomError> {
        let query = vec![
            ("department_id", department.to_string()),
            ("fetch_child", u8::from(fetch_child).to_string()),
        ];
        let resp: UserListResp = self
            .call(creds, ApiOp::UserSimpleList, Payload::Query(query))
            .await?;
        Ok(resp
            .userlist
            .into_iter()
            .map(UserInfo::into_staff)
            .collect())
    }

    /// One staff member: their name and departments.
    pub async fn user_get(
        &self,
        creds: &WecomCredentials,
        userid: &str,
    ) -> Result<StaffMember, WecomError> {
        let query = vec![("userid", userid.to_owned())];
        let resp: UserInfo = self
            .call(creds, ApiOp::UserGet, Payload::Query(query))
            .await?;
        Ok(resp.into_staff())
    }

    /// The staff member a web-login `code` was issued to (§13). A code works once and for five
    /// minutes; someone outside the corp (WeCom answers an `openid`) is `Ok(None)`.
    pub async fn auth_getuserinfo(
        &self,
        creds: &WecomCredentials,
        code: &str,
    ) -> Result<Option<String>, WecomError> {
        if code.is_empty() {
            return Err(WecomError::invalid_request(
                ApiOp::AuthGetUserInfo,
                "empty code",
            ));
        }
        let query = vec![("code", code.to_owned())];
        let resp: UserInfoResp = self
            .call(creds, ApiOp::AuthGetUserInfo, Payload::Query(query))
            .await?;
        Ok(resp.userid.or(resp.user_id))
    }
}
