//! Customer transfers (issue 15, wecom-api.md §6): the state a transfer keeps in its
//! [`super::SyncRun`], and the pure decisions about it — what WeCom's answers mean for each
//! customer, what the job does next, when the transfer is over.

use super::ids::{ExternalUserId, HubTagId, WecomUserId};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Customers per `transfer_customer` call (§6).
pub const TRANSFER_CHUNK: usize = 100;
/// Customers one transfer takes at most: its state is one stored run (a DynamoDB item holds
/// 400 KB; a full transfer with reasons and tags on every customer stays well below, see the
/// contract case `transfer_runs_of_the_largest_size_round_trip`). Larger handovers are split.
pub const MAX_TRANSFER_CUSTOMERS: usize = 1_000;
/// WeCom takes a customer over this long after the transfer was initiated (§6).
pub const TAKEOVER_MS: i64 = 24 * 3600 * 1000;
/// When WeCom still says "waiting" after the takeover was due, look again this much later.
pub const FOLLOW_AGAIN_MS: i64 = 10 * 60 * 1000;
/// Customers whose tags one job run carries before it re-queues itself.
pub const CARRY_BATCH: usize = 25;

/// Where one customer of a transfer stands, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerTransfer {
    /// Not sent yet, sent and not taken over yet, or taken over with its tags not carried yet.
    Waiting,
    /// Taken over, and the new relation carries the customer's tags.
    Done,
    /// The customer refused (WeCom status 3): the old relation and its tags stay.
    Refused,
    /// The takeover member is at their customer limit (status 4, errcode 40099).
    Limit,
    /// WeCom refused the customer (an errcode such as 40128) or has no record of it
    /// (status 5), or its tags could not be carried: see `reason`.
    Failed,
}

/// What WeCom's answer to `transfer_customer` means for one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferSent {
    /// The transfer is under way (initiated now or by an earlier try).
    Initiated,
    /// The takeover member is at their customer limit.
    TakeoverFull,
    /// WeCom refused the customer: it fails with WeCom's reason.
    Refused,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferCustomer {
    pub external_userid: ExternalUserId,
    pub status: CustomerTransfer,
    /// WeCom's errcode for this customer, when it refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// WeCom accepted the transfer (errcode 0) at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
    /// WeCom reported the takeover done (status 1); the tags are carried next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_at: Option<Timestamp>,
    /// The customer's hub tags (the index's) when the transfer started: what the new
    /// relation of a customer bound to no member gets (a bound one gets its member's tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<HubTagId>,
}

impl TransferCustomer {
    pub fn new(external_userid: ExternalUserId, tags: Vec<HubTagId>) -> Self {
        Self {
            external_userid,
            status: CustomerTransfer::Waiting,
            errcode: None,
            reason: None,
            sent_at: None,
            taken_over_at: None,
            tags,
        }
    }

    fn end(&mut self, status: CustomerTransfer, errcode: Option<i64>, reason: String) {
        self.status = status;
        self.errcode = errcode;
        self.reason = Some(reason);
    }

    /// `transfer_customer`'s answer for this customer: what it means (`wecom::classify::
    /// transfer_sent` reads the errcode), and the errcode and `reason` kept when it ends it.
    pub fn sent(
        &mut self,
        answer: TransferSent,
        errcode: i64,
        reason: impl FnOnce() -> String,
        now: Timestamp,
    ) {
        match answer {
            TransferSent::Initiated => self.sent_at = Some(now),
            TransferSent::TakeoverFull => {
                self.end(CustomerTransfer::Limit, Some(errcode), reason())
            }
            TransferSent::Refused => self.end(CustomerTransfer::Failed, Some(errcode), reason()),
        }
    }

    /// `transfer_result`'s `status` for this customer (`None`: not listed, i.e. no record).
    pub fn followed(&mut self, status: Option<i64>, takeover_time: i64, now: Timestamp) {
        match status {
            Some(1) => {
                self.taken_over_at = Some(if takeover_time > 0 {
                    Timestamp::from_millis(takeover_time * 1000)
                } else {
                    now
                })
            }
            Some(2) => {}
            Some(3) => self.end(
                CustomerTransfer::Refused,
                None,
                "the customer refused the transfer; the old relation and its tags stay".into(),
            ),
            Some(4) => self.end(
                CustomerTransfer::Limit,
                None,
                "the takeover member is at their customer limit".into(),
            ),
            Some(other) => self.end(
                CustomerTransfer::Failed,
                None,
                format!("WeCom has no record of this transfer (status {other})"),
            ),
            None => self.end(
                CustomerTransfer::Failed,
                None,
                "WeCom has no record of this transfer (not in transfer_result)".into(),
            ),
        }
    }

    /// Sent, and neither over nor taken over yet: WeCom's result is still to come.
    pub fn awaiting_wecom(&self) -> bool {
        self.status == CustomerTransfer::Waiting
            && self.sent_at.is_some()
            && self.taken_over_at.is_none()
    }

    /// Taken over, its tags still to carry.
    pub fn to_carry(&self) -> bool {
        self.status == CustomerTransfer::Waiting && self.taken_over_at.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferState {
    pub handover_userid: WecomUserId,
    pub takeover_userid: WecomUserId,
    /// The handover member has left: the resigned APIs.
    pub resigned: bool,
    pub customers: Vec<TransferCustomer>,
    /// When WeCom's results are looked at next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_at: Option<Timestamp>,
}

/// What a transfer's job does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferStep {
    /// Send these customers (at most [`TRANSFER_CHUNK`]).
    Send(Vec<ExternalUserId>),
    /// Carry the tags of these customers (at most [`CARRY_BATCH`]).
    Carry(Vec<ExternalUserId>),
    /// Look at WeCom's results now.
    Follow,
    /// Nothing until then.
    Sleep(Timestamp),
    /// Every customer is over.
    Over,
}

impl TransferState {
    /// The next step at `now`: sending comes first, then carrying what is taken over, then
    /// following what WeCom still has.
    pub fn next_step(&self, now: Timestamp) -> TransferStep {
        let unsent: Vec<ExternalUserId> = self
            .customers
            .iter()
            .filter(|c| c.status == CustomerTransfer::Waiting && c.sent_at.is_none())
            .take(TRANSFER_CHUNK)
            .map(|c| c.external_userid.clone())
            .collect();
        if !unsent.is_empty() {
            return TransferStep::Send(unsent);
        }
        let carry: Vec<ExternalUserId> = self
            .customers
            .iter()
            .filter(|c| c.to_carry())
            .take(CARRY_BATCH)
            .map(|c| c.external_userid.clone())
            .collect();
        if !carry.is_empty() {
            return TransferStep::Carry(carry);
        }
        if !self.customers.iter().any(TransferCustomer::awaiting_wecom) {
            return TransferStep::Over;
        }
        match self.follow_at {
            Some(at) if at > now => TransferStep::Sleep(at),
            _ => TransferStep::Follow,
        }
    }

    /// When WeCom's results are due: the takeover time of the last customer sent.
    pub fn takeover_due(&self) -> Option<Timestamp> {
        self.customers
            .iter()
            .filter_map(|c| c.sent_at)
            .max()
            .map(|at| at.plus_millis(TAKEOVER_MS))
    }

    pub fn customer_mut(&mut self, c: &ExternalUserId) -> Option<&mut TransferCustomer> {
        self.customers.iter_mut().find(|x| &x.external_userid == c)
    }

    /// Customers per status, every status present (for the API).
    pub fn counts(&self) -> std::collections::BTreeMap<CustomerTransfer, u64> {
        let mut out: std::collections::BTreeMap<CustomerTransfer, u64> = [
            CustomerTransfer::Waiting,
            CustomerTransfer::Done,
            CustomerTransfer::Refused,
            CustomerTransfer::Limit,
            CustomerTransfer::Failed,
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        for c in &self.customers {
            *out.entry(c.status).or_default() += 1;
        }
        out
    }
}

impl PartialOrd for CustomerTransfer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CustomerTransfer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wecom::classify::transfer_sent;

    fn state(n: usize) -> TransferState {
        TransferState {
            handover_userid: WecomUserId::new_unchecked("a"),
            takeover_userid: WecomUserId::new_unchecked("b"),
            resigned: false,
            customers: (0..n)
                .map(|i| {
                    TransferCustomer::new(ExternalUserId::new_unchecked(format!("c{i:03}")), vec![])
                })
                .collect(),
            follow_at: None,
        }
    }

    #[test]
    fn a_transfer_sends_in_chunks_of_100_then_sleeps_until_the_takeover_then_carries() {
        let t0 = Timestamp::from_millis(1_000);
        let mut s = state(150);
        let TransferStep::Send(first) = s.next_step(t0) else {
            panic!("sends first")
        };
        assert_eq!(first.len(), 100);
        for c in &first {
            s.customer_mut(c)
                .unwrap()
                .sent(transfer_sent(0), 0, String::new, t0);
        }
        let TransferStep::Send(second) = s.next_step(t0) else {
            panic!("then the rest")
        };
        assert_eq!(second.len(), 50);
        for (i, c) in second.iter().enumerate() {
            let code = if i == 0 { 40128 } else { 0 };
            s.customer_mut(c)
                .unwrap()
                .sent(transfer_sent(code), code, || "too often".into(), t0);
        }
        s.follow_at = s.takeover_due();
        assert_eq!(s.follow_at, Some(t0.plus_millis(TAKEOVER_MS)));
        assert_eq!(
            s.next_step(t0),
            TransferStep::Sleep(t0.plus_millis(TAKEOVER_MS))
        );
        let due = t0.plus_millis(TAKEOVER_MS);
        assert_eq!(s.next_step(due), TransferStep::Follow);
        s.customers[0].followed(Some(1), 0, due);
        s.customers[1].followed(Some(3), 0, due);
        assert_eq!(
            s.next_step(due),
            TransferStep::Carry(vec![ExternalUserId::new_unchecked("c000")])
        );
        s.customers[0].status = CustomerTransfer::Done;
        let counts = s.counts();
        assert_eq!(counts[&CustomerTransfer::Done], 1);
        assert_eq!(counts[&CustomerTransfer::Refused], 1);
        assert_eq!(counts[&CustomerTransfer::Failed], 1);
        assert_eq!(s.customers[100].errcode, Some(40128));
        assert_eq!(s.next_step(due), TransferStep::Follow, "147 still waiting");
        for c in s.customers.iter_mut() {
            if c.awaiting_wecom() {
                c.followed(None, 0, due);
            }
        }
        assert_eq!(s.next_step(due), TransferStep::Over);
    }

    #[test]
    fn a_transfer_already_going_counts_as_sent_and_the_takeovers_limit_is_its_own_status() {
        let now = Timestamp::from_millis(5);
        let mut c = TransferCustomer::new(ExternalUserId::new_unchecked("c"), vec![]);
        c.sent(transfer_sent(40129), 40129, || unreachable!(), now);
        assert!(c.awaiting_wecom());
        let mut d = TransferCustomer::new(ExternalUserId::new_unchecked("d"), vec![]);
        d.sent(transfer_sent(40099), 40099, || "limit".into(), now);
        assert_eq!(
            (d.status, d.errcode),
            (CustomerTransfer::Limit, Some(40099))
        );
    }
}
