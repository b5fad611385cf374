//! Contact ways (渠道活码, wecom-api.md §7): the QR codes tagsync creates so that the add
//! events of customers who scan them carry its `state`.

use serde::{Deserialize, Serialize};

use super::transport::{Empty, json};
use super::{WecomClient, WecomCredentials, WecomError};
use crate::domain::WecomUserId;
use crate::wecom::classify::{ApiOp, Verdict};

/// A contact way tagsync created (§7): its id, and the QR code's URL (scene 2).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ContactWay {
    pub config_id: String,
    #[serde(default)]
    pub qr_code: String,
}

#[derive(Serialize)]
struct AddContactWayReq<'a> {
    /// 1: one member, 2: several.
    r#type: u8,
    /// 2: a QR code.
    scene: u8,
    state: &'a str,
    user: &'a [WecomUserId],
    remark: &'a str,
    skip_verify: bool,
}

#[derive(Serialize)]
struct DelContactWayReq<'a> {
    config_id: &'a str,
}

impl WecomClient {
    /// (§7); answers its `config_id` and QR code URL.
    pub async fn add_contact_way(
        &self,
        creds: &WecomCredentials,
        state: &str,
        users: &[WecomUserId],
        remark: &str,
    ) -> Result<ContactWay, WecomError> {
        if users.is_empty() {
            return Err(WecomError::invalid_request(
                ApiOp::AddContactWay,
                "a contact way needs at least one member",
            ));
        }
        let req = AddContactWayReq {
            r#type: if users.len() == 1 { 1 } else { 2 },
            scene: 2,
            state,
            user: users,
            remark,
            skip_verify: true,
        };
        self.call(creds, ApiOp::AddContactWay, json(&req)).await
    }

    /// Deletes a contact way; one already gone counts as deleted.
    pub async fn del_contact_way(
        &self,
        creds: &WecomCredentials,
        config_id: &str,
    ) -> Result<(), WecomError> {
        let req = DelContactWayReq { config_id };
        match self
            .call::<Empty>(creds, ApiOp::DelContactWay, json(&req))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.verdict == Verdict::AlreadyDone => Ok(()),
            Err(e) => Err(e),
        }
    }
}
