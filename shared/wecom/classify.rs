//! The one place that decides what a WeCom answer means for the caller: done, retry later,
//! refresh the token and retry, already done, or give up with a reason (wecom-api.md §2, §3,
//! §12). Jobs act on the [`Verdict`]; nothing else interprets errcodes.

use std::fmt;
use std::time::Duration;

use crate::domain::Timestamp;

/// The WeCom API a call was made to; rate limits and verdicts are per API (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiOp {
    GetToken,
    GetCorpTagList,
    AddCorpTag,
    EditCorpTag,
    DelCorpTag,
    MarkTag,
    GetExternalContact,
    BatchGetByUser,
    GetFollowUserList,
    ListExternalContacts,
    GetStrategyTagList,
    AddStrategyTag,
    EditStrategyTag,
    DelStrategyTag,
    /// Customer strategies (rule groups, 规则组, §1.4) and their ranges.
    StrategyList,
    StrategyGet,
    StrategyGetRange,
    StrategyCreate,
    StrategyEdit,
    StrategyDel,
    /// Channel codes (渠道活码, §7).
    AddContactWay,
    DelContactWay,
    /// Customer transfer (客户继承, §6): in-service and resigned, and their results.
    TransferCustomer,
    TransferResult,
    ResignedTransferCustomer,
    ResignedTransferResult,
    /// The corp's directory and staff sign-in (§13).
    DepartmentList,
    UserGet,
    UserSimpleList,
    UserList,
    AuthGetUserInfo,
}

impl ApiOp {
    pub const ALL: [ApiOp; 31] = [
        ApiOp::GetToken,
        ApiOp::GetCorpTagList,
        ApiOp::AddCorpTag,
        ApiOp::EditCorpTag,
        ApiOp::DelCorpTag,
        ApiOp::MarkTag,
        ApiOp::GetExternalContact,
        ApiOp::BatchGetByUser,
        ApiOp::GetFollowUserList,
        ApiOp::ListExternalContacts,
        ApiOp::GetStrategyTagList,
        ApiOp::AddStrategyTag,
        ApiOp::EditStrategyTag,
        ApiOp::DelStrategyTag,
        ApiOp::StrategyList,
        ApiOp::StrategyGet,
        ApiOp::StrategyGetRange,
        ApiOp::StrategyCreate,
        ApiOp::StrategyEdit,
        ApiOp::StrategyDel,
        ApiOp::AddContactWay,
        ApiOp::DelContactWay,
        ApiOp::TransferCustomer,
        ApiOp::TransferResult,
        ApiOp::ResignedTransferCustomer,
        ApiOp::ResignedTransferResult,
        ApiOp::DepartmentList,
        ApiOp::UserGet,
        ApiOp::UserSimpleList,
        ApiOp::UserList,
        ApiOp::AuthGetUserInfo,
    ];

    /// The path under `cgi-bin/`.
    pub fn path(self) -> &'static str {
        match self {
            ApiOp::GetToken => "gettoken",
            ApiOp::GetCorpTagList => "externalcontact/get_corp_tag_list",
            ApiOp::AddCorpTag => "externalcontact/add_corp_tag",
            ApiOp::EditCorpTag => "externalcontact/edit_corp_tag",
            ApiOp::DelCorpTag => "externalcontact/del_corp_tag",
            ApiOp::MarkTag => "externalcontact/mark_tag",
            ApiOp::GetExternalContact => "externalcontact/get",
            ApiOp::BatchGetByUser => "externalcontact/batch/get_by_user",
            ApiOp::GetFollowUserList => "externalcontact/get_follow_user_list",
            ApiOp::ListExternalContacts => "externalcontact/list",
            ApiOp::GetStrategyTagList => "externalcontact/get_strategy_tag_list",
            ApiOp::AddStrategyTag => "externalcontact/add_strategy_tag",
            ApiOp::EditStrategyTag => "externalcontact/edit_strategy_tag",
            ApiOp::DelStrategyTag => "externalcontact/del_strategy_tag",
            ApiOp::StrategyList => "externalcontact/customer_strategy/list",
            ApiOp::StrategyGet => "externalcontact/customer_strategy/get",
            ApiOp::StrategyGetRange => "externalcontact/customer_strategy/get_range",
            ApiOp::StrategyCreate => "externalcontact/customer_strategy/create",
            ApiOp::StrategyEdit => "externalcontact/customer_strategy/edit",
            ApiOp::StrategyDel => "externalcontact/customer_strategy/del",
            ApiOp::AddContactWay => "externalcontact/add_contact_way",
            ApiOp::DelContactWay => "externalcontact/del_contact_way",
            ApiOp::TransferCustomer => "externalcontact/transfer_customer",
            ApiOp::TransferResult => "externalcontact/transfer_result",
            ApiOp::ResignedTransferCustomer => "externalcontact/resigned/transfer_customer",
            ApiOp::ResignedTransferResult => "externalcontact/resigned/transfer_result",
            ApiOp::DepartmentList => "department/list",
            ApiOp::UserGet => "user/get",
            ApiOp::UserSimpleList => "user/simplelist",
            ApiOp::UserList => "user/list",
            ApiOp::AuthGetUserInfo => "auth/getuserinfo",
        }
    }

    pub fn from_path(path: &str) -> Option<ApiOp> {
        let path = path.trim_start_matches('/');
        let path = path.strip_prefix("cgi-bin/").unwrap_or(path);
        ApiOp::ALL.into_iter().find(|op| op.path() == path)
    }

    /// GET with query parameters (the rest are POST with a JSON body).
    pub fn is_get(self) -> bool {
        matches!(
            self,
            ApiOp::GetToken
                | ApiOp::GetExternalContact
                | ApiOp::GetFollowUserList
                | ApiOp::ListExternalContacts
                | ApiOp::DepartmentList
                | ApiOp::UserGet
                | ApiOp::UserSimpleList
                | ApiOp::UserList
                | ApiOp::AuthGetUserInfo
        )
    }

    /// Deletes, for which "unknown id" means the goal is already reached (§12).
    pub fn is_delete(self) -> bool {
        matches!(self, ApiOp::DelCorpTag | ApiOp::DelStrategyTag)
    }
}

impl fmt::Display for ApiOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// What the caller should do about an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Transient: try the same call again after this long.
    RetryAfter(Duration),
    /// The API is paused for the corp until its rate window ends (WeCom said 45009, or
    /// tagsync's own budget is spent: `wecom::budget`): wait this long, not in place and not
    /// as a failure — the job is rescheduled to that moment.
    RateLimited(Duration),
    /// The access token was refused: invalidate it, fetch a new one, retry once.
    RefreshToken,
    /// The call failed but its goal holds (e.g. deleting what is already gone).
    AlreadyDone,
    /// Retrying will not help; the reason is for the operator and includes the errcode.
    Permanent(String),
}

impl Verdict {
    /// A short name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::RetryAfter(_) => "retry",
            Verdict::RateLimited(_) => "rate_limited",
            Verdict::RefreshToken => "refresh_token",
            Verdict::AlreadyDone => "already_done",
            Verdict::Permanent(_) => "permanent",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Verdict::RetryAfter(_) | Verdict::RateLimited(_) | Verdict::RefreshToken
        )
    }
}

/// System busy (−1): official advice is a quick retry (§2).
pub const BUSY_RETRY: Duration = Duration::from_secs(1);
/// Concurrency cap (45033): back off a little longer so parallel callers spread out (§3).
pub const CONCURRENCY_RETRY: Duration = Duration::from_secs(2);
/// HTTP 5xx, timeouts, connection failures.
pub const TRANSPORT_RETRY: Duration = Duration::from_secs(2);
/// The shortest wait after a 45009, so a call at second 59.999 does not retry at once.
const MIN_WINDOW_WAIT: Duration = Duration::from_secs(1);

/// Classifies an `errcode`, using the wall clock for the 45009 window.
pub fn classify_errcode(op: ApiOp, errcode: i64, errmsg: &str) -> Verdict {
    let now = Timestamp::from_millis(chrono::Utc::now().timestamp_millis());
    classify_errcode_at(op, errcode, errmsg, now)
}

/// Classifies an `errcode`; `now` places a 45009 in its minute window (§3: a per-minute block
/// ends when the minute does).
pub fn classify_errcode_at(op: ApiOp, errcode: i64, errmsg: &str, now: Timestamp) -> Verdict {
    let permanent = |why: &str| Verdict::Permanent(format!("{why} (errcode {errcode})"));
    match errcode {
        0 => Verdict::Success,
        -1 => Verdict::RetryAfter(BUSY_RETRY),
        45009 => Verdict::RateLimited(rest_of_minute(now)),
        45033 => Verdict::RetryAfter(CONCURRENCY_RETRY),
        // Concurrent modification of one (userid, external_userid) pair [secondary, §1.6].
        45035 => Verdict::RetryAfter(CONCURRENCY_RETRY),
        40014 | 42001 => Verdict::RefreshToken,
        40068 if op.is_delete() => Verdict::AlreadyDone,
        40068 => permanent("unknown or deleted tag or group id"),
        40071 => permanent("the name is already used by another tag or group at the same level"),
        40058 => permanent(&format!("invalid parameter: {errmsg}")),
        48002 => permanent(
            "API forbidden: the app is not among 客户联系 → 可调用接口的应用 or lacks 企业客户标签 rights",
        ),
        // §1.3: apps may edit or delete only the tags they created.
        301002 => permanent(
            "no permission: this tag or group is read-only for the app (created in the admin console or by another app)",
        ),
        40126 => permanent("the corp's tag limit is reached"),
        84061 => permanent("no such follow relation: the customer is not a contact of this member"),
        40003 => permanent("invalid userid"),
        40096 => permanent("invalid external_userid"),
        41001 => permanent("access_token missing from the request (a bug in the caller)"),
        40001 => permanent("invalid corp secret: check the app's secret in the tenant settings"),
        40013 => permanent("invalid corp id: check the tenant's corp id"),
        60020 => permanent("this server's IP is not in the app's trusted IP list"),
        // Customer transfer (§6): whole-call answers; per-customer ones come in the body.
        40097 => permanent("the handover member has not left: use an in-service transfer"),
        40098 => permanent("the takeover member is not real-name verified"),
        40099 => permanent("the takeover member is at their customer limit"),
        40100 => permanent("the customer is already being transferred"),
        40128 => {
            permanent("the customer was transferred too often (once per 90 days, at most twice)")
        }
        40129 => permanent("a transfer of the customer is in progress"),
        40130 => permanent("the handover and the takeover member are the same"),
        40131 => permanent("the handover member does not follow this customer"),
        _ => Verdict::Permanent(format!("WeCom errcode {errcode}: {errmsg}")),
    }
}

/// What a refused library or relation call says about its object, for the jobs that act on
/// it (wecom-api.md §12, §1.3): the one reading of these errcodes, next to the verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 301002: the object is not this app's (made in the console or by another app): it is
    /// read-only to tagsync, which leaves it as WeCom shows it.
    NotOurs,
    /// 40071: a sibling already has the name.
    NameTaken,
    /// 40068: no such tag or group (any more).
    UnknownId,
    /// 84061: the follow relation does not exist (any more).
    NoRelation,
}

/// The [`Refusal`] an errcode means, if it is one of them.
pub fn refusal(errcode: i64) -> Option<Refusal> {
    match errcode {
        301002 => Some(Refusal::NotOurs),
        40071 => Some(Refusal::NameTaken),
        40068 => Some(Refusal::UnknownId),
        84061 => Some(Refusal::NoRelation),
        _ => None,
    }
}

/// What `transfer_customer`'s errcode for one customer means (§6): 0 is initiated, and so is
/// 40100/40129 (a transfer of the customer is already going: a retry after a crash finds its
/// own; one to someone else is not in this pair's results and fails then); 40099 is the
/// takeover member's customer limit; anything else refuses the customer.
pub fn transfer_sent(errcode: i64) -> crate::domain::TransferSent {
    use crate::domain::TransferSent;
    match errcode {
        0 | 40100 | 40129 => TransferSent::Initiated,
        40099 => TransferSent::TakeoverFull,
        _ => TransferSent::Refused,
    }
}

/// How a call failed below the errcode layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// A non-200 HTTP status.
    Status(u16),
    Timeout,
    Connect,
    /// The connection broke while sending or reading.
    Io(String),
    /// A 200 whose body is not the JSON the API answers with.
    Decode(String),
}

pub fn classify_transport(failure: &TransportFailure) -> Verdict {
    match failure {
        TransportFailure::Status(s) if *s >= 500 => Verdict::RetryAfter(TRANSPORT_RETRY),
        // Timeout and throttling statuses are transient by definition.
        TransportFailure::Status(408 | 429) => Verdict::RetryAfter(TRANSPORT_RETRY),
        TransportFailure::Status(s) => Verdict::Permanent(format!("unexpected HTTP status {s}")),
        TransportFailure::Timeout => Verdict::RetryAfter(TRANSPORT_RETRY),
        TransportFailure::Connect => Verdict::RetryAfter(TRANSPORT_RETRY),
        TransportFailure::Io(_) => Verdict::RetryAfter(TRANSPORT_RETRY),
        TransportFailure::Decode(why) => {
            Verdict::Permanent(format!("response not understood: {why}"))
        }
    }
}

fn rest_of_minute(now: Timestamp) -> Duration {
    let into_minute = now.millis().rem_euclid(60_000) as u64;
    Duration::from_millis(60_000 - into_minute).max(MIN_WINDOW_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_customers_transfer_errcode_means_initiated_takeover_full_or_refused() {
        use crate::domain::TransferSent::*;
        for (code, meaning) in [
            (0, Initiated),
            (40100, Initiated),
            (40129, Initiated),
            (40099, TakeoverFull),
            (40128, Refused),
            (40131, Refused),
        ] {
            assert_eq!(transfer_sent(code), meaning, "errcode {code}");
        }
    }

    fn permanent_reason(v: Verdict) -> String {
        match v {
            Verdict::Permanent(r) => r,
            other => panic!("expected Permanent, got {other:?}"),
        }
    }

    #[test]
    fn zero_is_success() {
        assert_eq!(classify_errcode(ApiOp::MarkTag, 0, "ok"), Verdict::Success);
    }

    #[test]
    fn system_busy_retries_soon() {
        assert_eq!(
            classify_errcode(ApiOp::AddCorpTag, -1, "system busy"),
            Verdict::RetryAfter(BUSY_RETRY)
        );
    }

    #[test]
    fn frequency_limit_waits_for_the_rest_of_the_minute() {
        let v = classify_errcode_at(ApiOp::MarkTag, 45009, "freq", at(120_000 + 45_000));
        assert_eq!(v, Verdict::RateLimited(Duration::from_secs(15)));
        let v = classify_errcode_at(ApiOp::MarkTag, 45009, "freq", at(120_000));
        assert_eq!(v, Verdict::RateLimited(Duration::from_secs(60)));
        // Never zero, even at the very end of a window.
        let v = classify_errcode_at(ApiOp::MarkTag, 45009, "freq", at(179_999));
        assert_eq!(v, Verdict::RateLimited(MIN_WINDOW_WAIT));
    }

    #[test]
    fn concurrency_limits_retry_after_a_short_wait() {
        for code in [45033, 45035] {
            assert_eq!(
                classify_errcode(ApiOp::MarkTag, code, "concurrent"),
                Verdict::RetryAfter(CONCURRENCY_RETRY)
            );
        }
    }

    #[test]
    fn invalid_or_expired_token_refreshes() {
        for code in [40014, 42001] {
            assert_eq!(
                classify_errcode(ApiOp::GetCorpTagList, code, "token"),
                Verdict::RefreshToken
            );
        }
    }

    #[test]
    fn unknown_id_on_delete_is_already_done_elsewhere_permanent() {
        for op in [ApiOp::DelCorpTag, ApiOp::DelStrategyTag] {
            assert_eq!(
                classify_errcode(op, 40068, "invalid tagid"),
                Verdict::AlreadyDone
            );
        }
        for op in [ApiOp::EditCorpTag, ApiOp::MarkTag, ApiOp::AddCorpTag] {
            let r = permanent_reason(classify_errcode(op, 40068, "invalid tagid"));
            assert!(r.contains("40068") && r.contains("unknown"), "{r}");
        }
    }

    #[test]
    fn permanent_codes_carry_a_reason_with_the_errcode() {
        let cases = [
            (48002, "forbidden"),
            (301002, "read-only"),
            (40126, "limit"),
            (84061, "follow relation"),
            (40003, "userid"),
            (40096, "external_userid"),
            (40071, "already used"),
            (40058, "invalid parameter"),
            (41001, "missing"),
            (40001, "secret"),
            (40013, "corp id"),
            (60020, "IP"),
        ];
        for (code, needle) in cases {
            let r = permanent_reason(classify_errcode(ApiOp::EditCorpTag, code, "x"));
            assert!(r.contains(&code.to_string()), "{code}: {r}");
            assert!(r.contains(needle), "{code}: {r}");
        }
    }

    #[test]
    fn unknown_codes_are_permanent_with_wecoms_message() {
        let r = permanent_reason(classify_errcode(ApiOp::MarkTag, 99999, "strange thing"));
        assert!(r.contains("99999") && r.contains("strange thing"), "{r}");
    }

    #[test]
    fn server_errors_timeouts_and_connect_failures_retry() {
        for f in [
            TransportFailure::Status(500),
            TransportFailure::Status(502),
            TransportFailure::Status(503),
            TransportFailure::Status(429),
            TransportFailure::Timeout,
            TransportFailure::Connect,
            TransportFailure::Io("reset".into()),
        ] {
            assert_eq!(
                classify_transport(&f),
                Verdict::RetryAfter(TRANSPORT_RETRY),
                "{f:?}"
            );
        }
    }

    #[test]
    fn other_statuses_and_garbled_bodies_are_permanent() {
        for f in [
            TransportFailure::Status(400),
            TransportFailure::Status(404),
            TransportFailure::Status(301),
            TransportFailure::Decode("expected value".into()),
        ] {
            assert!(
                matches!(classify_transport(&f), Verdict::Permanent(_)),
                "{f:?}"
            );
        }
    }

    #[test]
    fn paths_round_trip_and_methods_match_the_docs() {
        for op in ApiOp::ALL {
            assert_eq!(ApiOp::from_path(op.path()), Some(op));
            assert_eq!(
                ApiOp::from_path(&format!("/cgi-bin/{}", op.path())),
                Some(op)
            );
        }
        assert!(ApiOp::GetExternalContact.is_get());
        assert!(!ApiOp::BatchGetByUser.is_get());
        assert_eq!(ApiOp::from_path("nope"), None);
    }

    #[test]
    fn refusals_name_what_the_job_acts_on() {
        assert_eq!(refusal(301002), Some(Refusal::NotOurs));
        assert_eq!(refusal(40071), Some(Refusal::NameTaken));
        assert_eq!(refusal(40068), Some(Refusal::UnknownId));
        assert_eq!(refusal(84061), Some(Refusal::NoRelation));
        for other in [0, -1, 45009, 48002, 40014] {
            assert_eq!(refusal(other), None, "{other}");
        }
    }

    #[test]
    fn retryable_verdicts() {
        assert!(Verdict::RefreshToken.is_retryable());
        assert!(Verdict::RetryAfter(BUSY_RETRY).is_retryable());
        assert!(!Verdict::AlreadyDone.is_retryable());
        assert!(!Verdict::Permanent("x".into()).is_retryable());
        assert!(!Verdict::Success.is_retryable());
    }
}
