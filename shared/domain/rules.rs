//! Automatic tagging (automation.md): rules, their firings, channel codes, and the chat
//! messages the feed forwards. Pure data; the evaluation is `crate::sync::rules`, the work
//! `crate::jobs::rules`.

use super::ids::{
    ChannelId, ExternalUserId, FiringId, HubTagId, MemberId, RuleId, TenantId, WecomUserId,
};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The longest `state` WeCom keeps on a contact way (wecom-api.md §7).
pub const MAX_STATE_CHARS: usize = 30;
/// Most tag ids one rule's actions name.
pub const MAX_ACTION_TAGS: usize = 20;
/// How deep a chain of `tag_added` rules goes (the first rule is depth 1).
pub const MAX_CHAIN_DEPTH: u8 = 3;

/// Who spoke in a chat message a keyword rule listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Customer,
    Staff,
    Any,
}

/// What makes a rule look at a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A customer added through a contact way whose `state` equals this.
    Channel { state: String },
    /// A chat message containing any of the words (case and width folded).
    Keyword { any: Vec<String>, from: Speaker },
    /// A customer gains this hub tag, from any side.
    TagAdded { tag_id: HubTagId },
}

/// One condition; all of a rule's must hold. Serialized as a one-key object
/// (`{"has_none": [...]}`), exactly as the contract writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    HasAny(Vec<HubTagId>),
    HasAll(Vec<HubTagId>),
    HasNone(Vec<HubTagId>),
    StaffIn(Vec<WecomUserId>),
    AddedWithinDays(u32),
}

impl Condition {
    /// The hub tags the condition names.
    pub fn tags(&self) -> &[HubTagId] {
        match self {
            Condition::HasAny(t) | Condition::HasAll(t) | Condition::HasNone(t) => t,
            Condition::StaffIn(_) | Condition::AddedWithinDays(_) => &[],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actions {
    #[serde(default)]
    pub add: Vec<HubTagId>,
    #[serde(default)]
    pub remove: Vec<HubTagId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    DryRun,
    Canary,
    On,
}

/// A rule as stored. `status` and `problems` are not stored: they are computed when the rule
/// is shown (a tag deleted later makes it broken).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub tenant: TenantId,
    pub id: RuleId,
    pub name: String,
    pub trigger: Trigger,
    pub conditions: Vec<Condition>,
    pub actions: Actions,
    pub mode: Mode,
    /// Kept whatever the mode (so switching back to canary remembers it); used only in
    /// `canary`.
    #[serde(default)]
    pub canary_limit: Option<u32>,
    /// The customers a canary has acted on (at most `canary_limit`): a firing for one of them
    /// acts again, a new one past the limit is `canary_full`.
    #[serde(default)]
    pub canary_customers: BTreeSet<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}

impl Rule {
    /// Every hub tag the rule names (trigger, conditions, actions).
    pub fn tags(&self) -> BTreeSet<&HubTagId> {
        let mut out: BTreeSet<&HubTagId> = BTreeSet::new();
        if let Trigger::TagAdded { tag_id } = &self.trigger {
            out.insert(tag_id);
        }
        for c in &self.conditions {
            out.extend(c.tags());
        }
        out.extend(&self.actions.add);
        out.extend(&self.actions.remove);
        out
    }
}

/// What a firing's evaluation came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FiringOutcome {
    Applied,
    DryRun,
    Excluded,
    AlreadyHad,
    CanaryFull,
    UnknownCustomer,
    Undone,
}

/// What triggered a firing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FiringEvent {
    /// A chat message of the feed.
    Message {
        msgid: String,
        from: String,
        #[serde(default)]
        roomid: String,
        text: String,
        msgtime: i64,
    },
    /// A customer added through a contact way (`add_external_contact` or
    /// `add_half_external_contact`).
    Channel {
        state: String,
        userid: WecomUserId,
        change: String,
    },
    /// The customer gained a tag: `by` an operator, a side, or another rule (`rule:{id}`).
    TagAdded { tag_id: HubTagId, by: String },
}

/// One hub mark a firing wrote: what undo reverses, and checks is still the rule's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenMark {
    pub tag_id: HubTagId,
    pub present: bool,
    pub at: Timestamp,
}

/// One evaluation of a rule that matched its trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub tenant: TenantId,
    pub id: FiringId,
    pub rule_id: RuleId,
    pub at: Timestamp,
    pub customer: Option<ExternalUserId>,
    pub member_id: Option<MemberId>,
    pub event: FiringEvent,
    pub outcome: FiringOutcome,
    #[serde(default)]
    pub excluded_by: Option<Condition>,
    /// What the rule did (`applied`) or would have done (`dry_run`): the changes it made to
    /// the customer's hub tags, tags already so left out.
    #[serde(default)]
    pub changes: Actions,
    /// The marks written (for undo).
    #[serde(default)]
    pub written: Vec<WrittenMark>,
    /// Place in a chain of `tag_added` rules (1: triggered by an outside event).
    #[serde(default = "one")]
    pub depth: u8,
    /// Set when this firing's change would have triggered further rules but the chain was at
    /// its depth limit: which rules were not evaluated.
    #[serde(default)]
    pub chain_stopped: Option<String>,
    /// When an undo reversed it, and which run.
    #[serde(default)]
    pub undone_by: Option<String>,
    #[serde(skip)]
    pub version: u64,
}

fn one() -> u8 {
    1
}

/// A channel code: a WeCom contact way (scene 2, QR code) created by tagsync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub tenant: TenantId,
    pub id: ChannelId,
    pub name: String,
    pub state: String,
    pub config_id: String,
    pub qr_code: String,
    pub users: Vec<WecomUserId>,
    pub rule_ids: Vec<RuleId>,
    pub created_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}

/// A decrypted chat-archive message as the feed forwards it (automation.md §3); only what
/// matching needs is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedMessage {
    pub msgid: String,
    #[serde(default)]
    pub action: String,
    pub from: String,
    #[serde(default)]
    pub tolist: Vec<String>,
    #[serde(default)]
    pub roomid: String,
    #[serde(default)]
    pub msgtime: i64,
    pub msgtype: String,
    /// `text.content` of a text message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What a rules job evaluates (`JobKind::Rules`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum RuleEvent {
    /// New (never seen) messages of one feed request.
    Messages { messages: Vec<FeedMessage> },
    /// A member gained these hub tags (an operator's change, or a side's through a member
    /// job), each with the time of its mark: the event's identity.
    TagsAdded {
        member: MemberId,
        tags: Vec<(HubTagId, Timestamp)>,
        by: String,
    },
}
