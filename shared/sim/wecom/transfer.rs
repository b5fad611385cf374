//! Customer transfer (客户继承, wecom-api.md §6) in the WeCom simulator: the in-service and
//! resigned `transfer_customer`, their `transfer_result`, the takeover 24 hours later on the
//! simulator's clock, and the callbacks that go with it (§5.1).
//!
//! Choices where the reference is silent:
//! - The simulator has no timer: a takeover that is due happens at the first API call or
//!   control action at or after its due time (a test moves the clock, then anything that
//!   looks sees it done, and the callbacks go out then).
//! - A resigned transfer also completes 24 hours after it was initiated; only in-service
//!   transfers can be refused (the customer is notified of those), and the "twice, once per
//!   90 days" rule (40128) counts in-service transfers only.
//! - Corp tags do **not** carry over to the takeover member's new relation (not documented
//!   either way, §6; the worst case, which tagsync must handle). Its `add_way` is 202 (分配).
//! - A takeover at their customer limit (set with [`super::WecomSim::set_customer_limit`])
//!   ends the transfer with status 4 and `transfer_fail` `customer_limit_exceed`.
//! - Whole-call errors: 40130 handover = takeover, 40003 an unknown takeover (or an unknown
//!   or departed handover on the in-service API), 40097 a handover who has not left on the
//!   resigned API. Per customer: 40096 unknown customer, 40131 the handover does not follow
//!   them, 40129 a transfer of them is waiting, 40128 transferred too often.

use super::{ApiResult, EventChange, SimRelation, SimState, err, invalid_param, opt_str, str_list};
use crate::domain::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

/// The customer is notified, and the takeover happens this long after (§6).
pub const TAKEOVER_AFTER_MS: i64 = 24 * 3600 * 1000;
/// Customers per `transfer_customer` call (§6).
const MAX_CUSTOMERS: usize = 100;
/// `transfer_result` page size (choice: the reference gives none).
const RESULT_PAGE: usize = 100;
/// In-service transfers of one customer: at most two, at least 90 days apart (§6).
const IN_SERVICE_MAX: usize = 2;
const IN_SERVICE_GAP_MS: i64 = 90 * 24 * 3600 * 1000;
/// `add_way` of a relation made by assignment (分配, §1.5).
const ADD_WAY_ASSIGNED: i64 = 202;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    Waiting,
    Done,
    Refused,
    /// The takeover member was at their customer limit.
    Limit,
}

impl TransferStatus {
    /// `transfer_result`'s `status` (§6).
    fn code(self) -> i64 {
        match self {
            TransferStatus::Done => 1,
            TransferStatus::Waiting => 2,
            TransferStatus::Refused => 3,
            TransferStatus::Limit => 4,
        }
    }
}

/// One customer's transfer as the simulator keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimTransfer {
    pub handover_userid: String,
    pub takeover_userid: String,
    pub external_userid: String,
    pub resigned: bool,
    pub initiated_at: Timestamp,
    pub due_at: Timestamp,
    pub status: TransferStatus,
}

fn required<'a>(body: &'a Value, field: &str) -> Result<&'a str, super::ApiErr> {
    opt_str(body, field)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid_param(format!("{field} is required")))
}

/// A staff member who is (still) there: has customer contact and has not left.
fn serving(s: &SimState, userid: &str) -> bool {
    s.members.contains(userid) && !s.resigned.contains(userid)
}

/// `transfer_customer` / `resigned/transfer_customer`.
pub(super) fn transfer_customer(
    s: &mut SimState,
    body: &Value,
    resigned: bool,
    now: Timestamp,
) -> ApiResult {
    let handover = required(body, "handover_userid")?.to_owned();
    let takeover = required(body, "takeover_userid")?.to_owned();
    let customers = str_list(body, "external_userid")?;
    if customers.is_empty() || customers.len() > MAX_CUSTOMERS {
        return Err(invalid_param(
            "external_userid must hold 1 to 100 customers",
        ));
    }
    if handover == takeover {
        return Err(err(40130, "handover and takeover are the same member"));
    }
    if !serving(s, &takeover) {
        return Err(err(40003, "invalid userid: takeover_userid"));
    }
    if resigned && !s.resigned.contains(&handover) {
        return Err(err(40097, "the handover member has not left"));
    }
    if !resigned && !serving(s, &handover) {
        return Err(err(40003, "invalid userid: handover_userid"));
    }
    let mut answers = Vec::new();
    for c in customers {
        let errcode = if !s.customers.contains_key(&c) {
            40096
        } else if s.relation_index(&handover, &c).is_none() {
            40131
        } else if s
            .transfers
            .iter()
            .any(|t| t.external_userid == c && t.status == TransferStatus::Waiting)
        {
            40129
        } else if !resigned && too_often(s, &c, now) {
            40128
        } else {
            s.transfers.push(SimTransfer {
                handover_userid: handover.clone(),
                takeover_userid: takeover.clone(),
                external_userid: c.clone(),
                resigned,
                initiated_at: now,
                due_at: now.plus_millis(TAKEOVER_AFTER_MS),
                status: TransferStatus::Waiting,
            });
            0
        };
        answers.push(json!({"external_userid": c, "errcode": errcode}));
    }
    Ok(json!({ "customer": answers }))
}

/// In-service transfers of `c` that took place: two already, or one within 90 days.
fn too_often(s: &SimState, c: &str, now: Timestamp) -> bool {
    let done: Vec<&SimTransfer> = s
        .transfers
        .iter()
        .filter(|t| t.external_userid == c && !t.resigned && t.status == TransferStatus::Done)
        .collect();
    done.len() >= IN_SERVICE_MAX
        || done
            .iter()
            .any(|t| now.millis() - t.initiated_at.millis() < IN_SERVICE_GAP_MS)
}

/// `transfer_result` / `resigned/transfer_result`: the latest transfer of each customer of
/// this pair, in the order they were initiated, a page at a time.
pub(super) fn transfer_result(s: &SimState, body: &Value, resigned: bool) -> ApiResult {
    let handover = required(body, "handover_userid")?;
    let takeover = required(body, "takeover_userid")?;
    let start: usize = match opt_str(body, "cursor")?.filter(|c| !c.is_empty()) {
        Some(c) => c.parse().map_err(|_| invalid_param("invalid cursor"))?,
        None => 0,
    };
    let mut latest: Vec<&SimTransfer> = Vec::new();
    for t in s.transfers.iter().filter(|t| {
        t.handover_userid == handover && t.takeover_userid == takeover && t.resigned == resigned
    }) {
        match latest
            .iter_mut()
            .find(|l| l.external_userid == t.external_userid)
        {
            Some(l) => *l = t,
            None => latest.push(t),
        }
    }
    let page: Vec<Value> = latest
        .iter()
        .skip(start)
        .take(RESULT_PAGE)
        .map(|t| {
            let takeover_time = if t.status == TransferStatus::Done {
                t.due_at.secs()
            } else {
                0
            };
            json!({
                "external_userid": t.external_userid,
                "status": t.status.code(),
                "takeover_time": takeover_time,
            })
        })
        .collect();
    let next = if start + RESULT_PAGE < latest.len() {
        (start + RESULT_PAGE).to_string()
    } else {
        String::new()
    };
    Ok(json!({ "customer": page, "next_cursor": next }))
}

/// Carries out every takeover due by `now`; answers the callbacks to send, in order.
pub(super) fn take_over(s: &mut SimState, now: Timestamp) -> Vec<EventChange> {
    let mut events = Vec::new();
    let due: Vec<usize> = s
        .transfers
        .iter()
        .enumerate()
        .filter(|(_, t)| t.status == TransferStatus::Waiting && t.due_at <= now)
        .map(|(i, _)| i)
        .collect();
    for i in due {
        let t = s.transfers[i].clone();
        let at_limit = s.customer_limits.get(&t.takeover_userid).is_some_and(|n| {
            s.relation_at
                .keys()
                .filter(|(u, _)| *u == t.takeover_userid)
                .count()
                >= *n
        });
        if at_limit {
            s.transfers[i].status = TransferStatus::Limit;
            events.push(EventChange::ContactWith {
                change: "transfer_fail",
                userid: t.takeover_userid.clone(),
                external_userid: t.external_userid.clone(),
                extra: vec![("FailReason", "customer_limit_exceed".to_owned())],
            });
            continue;
        }
        s.transfers[i].status = TransferStatus::Done;
        if let Some(old) = s.relation_index(&t.handover_userid, &t.external_userid) {
            s.remove_relation(old);
            events.push(EventChange::ContactWith {
                change: "del_external_contact",
                userid: t.handover_userid.clone(),
                external_userid: t.external_userid.clone(),
                extra: vec![("Source", "DELETE_BY_TRANSFER".to_owned())],
            });
        }
        if s.relation_index(&t.takeover_userid, &t.external_userid)
            .is_none()
        {
            s.push_relation(SimRelation {
                userid: t.takeover_userid.clone(),
                external_userid: t.external_userid.clone(),
                state: None,
                createtime: t.due_at.secs(),
                remark: String::new(),
                add_way: ADD_WAY_ASSIGNED,
                tags: vec![],
                personal_tags: vec![],
            });
            events.push(EventChange::Contact {
                change: "add_external_contact",
                userid: t.takeover_userid.clone(),
                external_userid: t.external_userid.clone(),
                state: None,
                welcome_code: None,
            });
        }
    }
    events
}

/// The customer refuses their waiting in-service transfer: it ends with status 3, the old
/// relation stays, and WeCom sends `transfer_fail` `customer_refused`. `None` when no such
/// transfer waits.
pub(super) fn refuse(s: &mut SimState, external_userid: &str) -> Option<EventChange> {
    let t = s.transfers.iter_mut().find(|t| {
        t.external_userid == external_userid && t.status == TransferStatus::Waiting && !t.resigned
    })?;
    t.status = TransferStatus::Refused;
    Some(EventChange::ContactWith {
        change: "transfer_fail",
        userid: t.takeover_userid.clone(),
        external_userid: external_userid.to_owned(),
        extra: vec![("FailReason", "customer_refused".to_owned())],
    })
}
