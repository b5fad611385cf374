//! Customer transfer (客户继承, wecom-api.md §6): handing a member's customers to another
//! member, in service or after they left, and following where the transfers stand.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::transport::json;
use super::{WecomClient, WecomCredentials, WecomError};
use crate::domain::{ExternalUserId, WecomUserId};
use crate::wecom::classify::ApiOp;

/// Most customers one `transfer_customer` call takes (§6).
pub const MAX_TRANSFER_CUSTOMERS: usize = 100;

/// One customer's answer to `transfer_customer`: errcode 0 means the transfer was
/// *initiated* (§6); any other is that customer's refusal (40128 transferred too often…).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TransferAnswer {
    pub external_userid: ExternalUserId,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub errcode: i64,
}

#[derive(Deserialize)]
struct TransferResp {
    #[serde(default)]
    customer: Vec<TransferAnswer>,
}

/// One customer in `transfer_result` (§6): `status` 1 takeover complete, 2 waiting, 3
/// refused, 4 takeover member at their customer limit, 5 no transfer record;
/// `takeover_time` (seconds) is 0 while waiting.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TransferStatus {
    pub external_userid: ExternalUserId,
    #[serde(deserialize_with = "lenient::i64")]
    pub status: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub takeover_time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TransferResultPage {
    #[serde(default)]
    pub customer: Vec<TransferStatus>,
    /// `None` on the last page.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize)]
struct TransferReq<'a> {
    handover_userid: &'a WecomUserId,
    takeover_userid: &'a WecomUserId,
    external_userid: &'a [ExternalUserId],
}

#[derive(Serialize)]
struct TransferResultReq<'a> {
    handover_userid: &'a WecomUserId,
    takeover_userid: &'a WecomUserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

impl WecomClient {
    /// Hands up to 100 of `handover`'s customers to `takeover` (§6): the in-service API, or
    /// the resigned one (`handover` has left). Answers each customer's errcode.
    pub async fn transfer_customer(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        customers: &[ExternalUserId],
    ) -> Result<Vec<TransferAnswer>, WecomError> {
        let op = if resigned {
            ApiOp::ResignedTransferCustomer
        } else {
            ApiOp::TransferCustomer
        };
        if customers.is_empty() || customers.len() > MAX_TRANSFER_CUSTOMERS {
            return Err(WecomError::invalid_request(
                op,
                "a transfer takes 1 to 100 customers",
            ));
        }
        let req = TransferReq {
            handover_userid: handover,
            takeover_userid: takeover,
            external_userid: customers,
        };
        let resp: TransferResp = self.call(creds, op, json(&req)).await?;
        Ok(resp.customer)
    }

    /// One page of where `handover` → `takeover` transfers stand (§6).
    pub async fn transfer_result(
        &self,
        creds: &WecomCredentials,
        resigned: bool,
        handover: &WecomUserId,
        takeover: &WecomUserId,
        cursor: Option<&str>,
    ) -> Result<TransferResultPage, WecomError> {
        let op = if resigned {
            ApiOp::ResignedTransferResult
        } else {
            ApiOp::TransferResult
        };
        let req = TransferResultReq {
            handover_userid: handover,
            takeover_userid: takeover,
            cursor: cursor.filter(|c| !c.is_empty()),
        };
        self.call(creds, op, json(&req)).await
    }
}
