//! Bulk tagging by filter (issue 15): the state a bulk run keeps in its [`super::SyncRun`],
//! and the pure decisions about it (what a member's marks become, when the run is over).

use super::customer::CustomerFilter;
use super::ids::{ExternalUserId, HubTagId};
use super::member::{MemberTags, TagMark};
use super::ops::RunStatus;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many customers one chunk job applies.
pub const BULK_CHUNK: usize = 25;
/// How many per-customer failures a run keeps for its report (the count is exact).
pub const KEPT_FAILURES: usize = 100;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkState {
    pub filter: CustomerFilter,
    pub add: Vec<HubTagId>,
    pub remove: Vec<HubTagId>,
    /// How many customers the filter matched when the run started (`None` until the start
    /// job took that snapshot).
    #[serde(default)]
    pub matched: Option<u64>,
    /// Chunks the snapshot was cut into.
    #[serde(default)]
    pub chunks: u64,
    /// Chunks recorded, with the customers each applied and failed.
    #[serde(default)]
    pub chunks_done: BTreeMap<u64, (u64, u64)>,
    #[serde(default)]
    pub failures: Vec<BulkFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFailure {
    pub external_userid: ExternalUserId,
    pub reason: String,
}

impl BulkState {
    pub fn done(&self) -> u64 {
        self.chunks_done.values().map(|c| c.0).sum()
    }
    pub fn failed(&self) -> u64 {
        self.chunks_done.values().map(|c| c.1).sum()
    }

    /// Records a chunk once (a redelivered chunk job finds it recorded): answers whether it
    /// was new.
    pub fn record_chunk(&mut self, chunk: u64, done: u64, failures: Vec<BulkFailure>) -> bool {
        if self.chunks_done.contains_key(&chunk) {
            return false;
        }
        self.chunks_done
            .insert(chunk, (done, failures.len() as u64));
        let room = KEPT_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(failures.into_iter().take(room));
        true
    }

    /// How a running run ends once every chunk is recorded: `failed` when any customer
    /// failed, else `done`. `None` while chunks are outstanding.
    pub fn outcome(&self) -> Option<RunStatus> {
        let matched = self.matched?;
        if (self.chunks_done.len() as u64) < self.chunks {
            return None;
        }
        debug_assert!(self.done() + self.failed() <= matched);
        Some(if self.failed() > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Done
        })
    }
}

/// A member's hub marks with `add` put on and `remove` taken off at `now`; `None` when the
/// marks already say so (nothing to write: the run's own retry, or a member already there).
pub fn marks_after(
    tags: &MemberTags,
    add: &[HubTagId],
    remove: &[HubTagId],
    now: Timestamp,
) -> Option<MemberTags> {
    let mut next = tags.clone();
    for (ids, present) in [(add, true), (remove, false)] {
        for id in ids {
            let shown = tags.marks.get(id).is_some_and(|m| m.present);
            if shown != present || (!present && !tags.marks.contains_key(id)) {
                next.marks.insert(id.clone(), TagMark { present, at: now });
            }
        }
    }
    (next.marks != tags.marks).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberId, TenantId};

    fn tags(marks: &[(&str, bool)]) -> MemberTags {
        MemberTags {
            tenant: TenantId::parse("t").unwrap(),
            member_id: MemberId::new_unchecked("m"),
            marks: marks
                .iter()
                .map(|(id, p)| {
                    (
                        HubTagId::new_unchecked(*id),
                        TagMark {
                            present: *p,
                            at: Timestamp::from_millis(1),
                        },
                    )
                })
                .collect(),
            mall_base: Default::default(),
            version: 3,
        }
    }
    fn ids(v: &[&str]) -> Vec<HubTagId> {
        v.iter().map(|x| HubTagId::new_unchecked(*x)).collect()
    }

    #[test]
    fn marks_after_puts_on_and_takes_off_and_is_none_when_already_so() {
        let now = Timestamp::from_millis(9);
        let t = tags(&[("a", false), ("b", true)]);
        let next = marks_after(&t, &ids(&["a"]), &ids(&["b", "c"]), now).unwrap();
        assert!(next.marks[&HubTagId::new_unchecked("a")].present);
        assert!(!next.marks[&HubTagId::new_unchecked("b")].present);
        // An absent mark is written absent: a side that has the tag loses it by time.
        assert_eq!(next.marks[&HubTagId::new_unchecked("c")].at, now);
        assert_eq!(
            marks_after(&next, &ids(&["a"]), &ids(&["b", "c"]), now),
            None
        );
    }

    #[test]
    fn a_run_ends_once_every_chunk_is_recorded_failed_if_any_customer_failed() {
        let mut s = BulkState {
            matched: Some(30),
            chunks: 2,
            ..Default::default()
        };
        assert!(s.record_chunk(0, 25, vec![]));
        assert_eq!(s.outcome(), None);
        assert!(!s.record_chunk(0, 25, vec![]), "a chunk counts once");
        let f = BulkFailure {
            external_userid: ExternalUserId::new_unchecked("wm"),
            reason: "no".into(),
        };
        assert!(s.record_chunk(1, 4, vec![f]));
        assert_eq!((s.done(), s.failed()), (29, 1));
        assert_eq!(s.outcome(), Some(RunStatus::Failed));
    }
}
