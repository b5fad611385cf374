//! Automatic tagging, the I/O half (automation.md §1): the job that handles an event reads
//! the customer's hub state, asks the pure core (`crate::sync::rules`) what each matching rule
//! does, and records the firing — once per (rule, customer, event) — together with the rule's
//! change to the member's hub tags, in one transaction. The change then travels like an
//! operator's: a member job carries it to every WeCom relation and the mall member (coalesced
//! with whatever else the member needs), and the hub's audit entry says `rule:{id}`.
//!
//! Chains: a rule's added tags are `tag_added` events for the other rules, evaluated here at
//! once, up to [`MAX_CHAIN_DEPTH`]; a rule never fires on its own chain's events (no loops).
//! Tags an operator or a side adds reach `tag_added` rules through a `Rules` job
//! ([`tags_gained`]).

use super::intake::member_of_customer;
use super::worker::Outcome;
use super::{Step, StepError, enqueue};
use crate::app::App;
use crate::domain::*;
use crate::ports::{StoreError, Write};
use crate::sync::rules::{Event, Facts, Verdict, chained_by, evaluate, triggered};
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

/// How long "this (rule, customer, event) fired" is remembered: as long as firings are kept.
const FIRED_TTL_SECS: i64 = crate::store::table::FIRING_TTL_SECS;
/// How often a firing's transaction is tried again after the member or the rule changed.
const WRITE_ATTEMPTS: usize = 6;

pub async fn run(app: &App, tenant: &Tenant, _job: &Job, event: &RuleEvent) -> Outcome {
    let mut cx = match Cx::new(app, tenant).await {
        Ok(cx) => cx,
        Err(e) => return e.into_outcome(),
    };
    let result = match event {
        RuleEvent::Messages { messages } => cx.messages(messages).await,
        RuleEvent::TagsAdded { member, tags, by } => cx.tags_added(member, tags, by).await,
    };
    match result.and(cx.flush().await) {
        Ok(()) => Outcome::Done,
        Err(e) => e.into_outcome(),
    }
}

/// A customer added through a contact way with `state` (the job of its WeCom callback calls
/// this): fires the `channel` rules of that state. The event is the relation's arrival
/// through the code, so a half add followed by the full add fires once.
pub async fn channel(
    app: &App,
    tenant: &Tenant,
    userid: &WecomUserId,
    customer: &ExternalUserId,
    state: &str,
    change: &str,
    create_time: i64,
) -> Step<()> {
    let mut cx = Cx::new(app, tenant).await?;
    let event = Event::Channel { state };
    let rules: Vec<Rule> = cx
        .rules
        .iter()
        .filter(|r| triggered(&r.trigger, &event))
        .cloned()
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    // The customer may be new to tagsync: find (and bind) its mall member the way the
    // callback's member job does.
    let member = member_of_customer(app, tenant, customer).await?;
    let subject = Subject {
        customer: Some(customer.clone()),
        member,
        staff: Some(userid.clone()),
        added_at: (create_time > 0).then(|| Timestamp::from_millis(create_time * 1000)),
    };
    let fired = FiringEvent::Channel {
        state: state.to_owned(),
        userid: userid.clone(),
        change: change.to_owned(),
    };
    for rule in &rules {
        let key = format!("channel:{userid}:{state}");
        cx.fire(rule, &subject, fired.clone(), key, 1, Vec::new())
            .await?;
    }
    cx.flush().await
}

/// Tags a member gained from an operator or a side: queues their `tag_added` evaluation when
/// a rule listens to one of them (most tenants have none, and then nothing is queued).
pub async fn tags_gained(
    app: &App,
    tenant: &Tenant,
    member: &MemberId,
    gained: Vec<(HubTagId, Timestamp)>,
    by: &str,
) -> Step<()> {
    if gained.is_empty() {
        return Ok(());
    }
    let ids: Vec<HubTagId> = gained.iter().map(|(t, _)| t.clone()).collect();
    let listening = app
        .store
        .list_rules(&tenant.id)
        .await?
        .iter()
        .any(|r| r.mode != Mode::Off && chained_by(r, &ids));
    if !listening {
        return Ok(());
    }
    let kind = JobKind::Rules {
        event: RuleEvent::TagsAdded {
            member: member.clone(),
            tags: gained,
            by: by.to_owned(),
        },
    };
    enqueue(app, tenant, vec![kind])
        .await
        .map_err(|e| StepError::retry(format!("queueing tag_added rules: {e}"), None))?;
    Ok(())
}

/// Whose firing it is.
#[derive(Clone, Debug)]
struct Subject {
    customer: Option<ExternalUserId>,
    member: Option<MemberId>,
    /// The staff member of the relation the event concerns.
    staff: Option<WecomUserId>,
    /// That relation's add time, when the event told it.
    added_at: Option<Timestamp>,
}

impl Subject {
    fn key(&self) -> String {
        match (&self.customer, &self.member) {
            (Some(c), _) => format!("c:{c}"),
            (None, Some(m)) => format!("m:{m}"),
            (None, None) => "-".into(),
        }
    }
}

/// One job's view: the tenant's active rules and live tags (read once), the staff list (read
/// when a message needs it), and the members whose hub tags it changed (queued at the end,
/// one member job each however many rules acted).
struct Cx<'a> {
    app: &'a App,
    tenant: &'a Tenant,
    rules: Vec<Rule>,
    live: BTreeSet<HubTagId>,
    staff: Option<BTreeSet<String>>,
    changed: BTreeSet<MemberId>,
}

impl<'a> Cx<'a> {
    async fn new(app: &'a App, tenant: &'a Tenant) -> Step<Self> {
        let (rules, tags) = tokio::join!(
            app.store.list_rules(&tenant.id),
            app.store.list_tags(&tenant.id)
        );
        Ok(Self {
            app,
            tenant,
            rules: rules?.into_iter().filter(|r| r.mode != Mode::Off).collect(),
            live: tags?
                .into_iter()
                .filter(|t| t.deleted_at.is_none())
                .map(|t| t.id)
                .collect(),
            staff: None,
            changed: BTreeSet::new(),
        })
    }

    /// Queues one member job per member whose hub tags a rule changed.
    async fn flush(&mut self) -> Step<()> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let kinds: Vec<JobKind> = std::mem::take(&mut self.changed)
            .into_iter()
            .map(|member| JobKind::SyncMember {
                member,
                hint: Hint::from(Actor::Hub),
            })
            .collect();
        enqueue(self.app, self.tenant, kinds)
            .await
            .map_err(|e| StepError::retry(format!("queueing member jobs: {e}"), None))?;
        Ok(())
    }

    async fn messages(&mut self, messages: &[FeedMessage]) -> Step<()> {
        if !self
            .rules
            .iter()
            .any(|r| matches!(r.trigger, Trigger::Keyword { .. }))
        {
            return Ok(());
        }
        for m in messages {
            // Only text is matched; other types were accepted and are skipped.
            let (true, Some(text)) = (m.msgtype == "text", m.text.as_deref()) else {
                continue;
            };
            let Some((subject, speaker)) = self.who(m).await? else {
                continue;
            };
            let event = Event::Message { text, speaker };
            let rules: Vec<Rule> = self
                .rules
                .iter()
                .filter(|r| triggered(&r.trigger, &event))
                .cloned()
                .collect();
            if rules.is_empty() {
                continue;
            }
            let mut subject = subject;
            if let Some(c) = &subject.customer {
                subject.member = self
                    .app
                    .store
                    .binding_by_customer(&self.tenant.id, c)
                    .await?
                    .map(|b| b.member_id);
            }
            let fired = FiringEvent::Message {
                msgid: m.msgid.clone(),
                from: m.from.clone(),
                roomid: m.roomid.clone(),
                text: text.to_owned(),
                msgtime: m.msgtime,
            };
            for rule in &rules {
                let key = format!("msg:{}", m.msgid);
                self.fire(rule, &subject, fired.clone(), key, 1, Vec::new())
                    .await?;
            }
        }
        Ok(())
    }

    /// Who a message is about, and who spoke; `None` for a staff message in a group chat
    /// (only customer messages are matched there). In a one-to-one chat the customer is the
    /// sender, or the one receiver when the sender is staff; staff is whoever follows the
    /// other party in the hub's relations, else is on WeCom's staff list.
    async fn who(&mut self, m: &FeedMessage) -> Step<Option<(Subject, Speaker)>> {
        let t = &self.tenant.id;
        let from = ExternalUserId::parse(m.from.clone())
            .map_err(|e| StepError::park(format!("message {}: from: {e}", m.msgid)))?;
        let subject = |customer: ExternalUserId, staff: Option<&str>| Subject {
            customer: Some(customer),
            member: None,
            staff: staff.map(WecomUserId::new_unchecked),
            added_at: None,
        };
        if m.roomid.is_empty() && m.tolist.len() == 1 {
            let other = &m.tolist[0];
            if let Ok(o) = ExternalUserId::parse(other.clone())
                && let Some(c) = self.app.store.get_customer(t, &o).await?
                && c.relations.keys().any(|u| u.as_str() == m.from)
            {
                return Ok(Some((subject(o, Some(&m.from)), Speaker::Staff)));
            }
            if self.app.store.get_customer(t, &from).await?.is_some() {
                return Ok(Some((subject(from, Some(other)), Speaker::Customer)));
            }
            if self.is_staff(&m.from).await? {
                let o = ExternalUserId::parse(other.clone())
                    .map_err(|e| StepError::park(format!("message {}: tolist: {e}", m.msgid)))?;
                return Ok(Some((subject(o, Some(&m.from)), Speaker::Staff)));
            }
            return Ok(Some((subject(from, Some(other)), Speaker::Customer)));
        }
        if self.app.store.get_customer(t, &from).await?.is_some() {
            return Ok(Some((subject(from, None), Speaker::Customer)));
        }
        if self.is_staff(&m.from).await? {
            return Ok(None);
        }
        Ok(Some((subject(from, None), Speaker::Customer)))
    }

    /// Whether WeCom lists `userid` as staff with customer contact (read once per job).
    async fn is_staff(&mut self, userid: &str) -> Step<bool> {
        if self.staff.is_none() {
            let listed = self
                .app
                .wecom
                .get_follow_user_list(&App::wecom_credentials(self.tenant))
                .await?;
            self.staff = Some(listed.into_iter().map(|u| u.to_string()).collect());
        }
        Ok(self.staff.as_ref().is_some_and(|s| s.contains(userid)))
    }

    async fn tags_added(
        &mut self,
        member: &MemberId,
        tags: &[(HubTagId, Timestamp)],
        by: &str,
    ) -> Step<()> {
        let customer = self
            .app
            .store
            .get_binding(&self.tenant.id, member)
            .await?
            .and_then(|b| b.external_userid);
        let subject = Subject {
            customer,
            member: Some(member.clone()),
            staff: None,
            added_at: None,
        };
        for (tag, at) in tags {
            let event = Event::TagAdded { tag };
            let rules: Vec<Rule> = self
                .rules
                .iter()
                .filter(|r| triggered(&r.trigger, &event))
                .cloned()
                .collect();
            for rule in &rules {
                let fired = FiringEvent::TagAdded {
                    tag_id: tag.clone(),
                    by: by.to_owned(),
                };
                let key = format!("tag_added:{tag}:{}", at.millis());
                self.fire(rule, &subject, fired, key, 1, Vec::new()).await?;
            }
        }
        Ok(())
    }

    /// The add time of the relation `subject` concerns (its staff's, else the earliest), from
    /// WeCom: only read for a rule with an `added_within_days` condition.
    async fn added_at(&self, subject: &Subject) -> Step<Option<Timestamp>> {
        if subject.added_at.is_some() {
            return Ok(subject.added_at);
        }
        let Some(c) = &subject.customer else {
            return Ok(None);
        };
        let detail = match self
            .app
            .wecom
            .get_external_contact(&App::wecom_credentials(self.tenant), c)
            .await
        {
            Ok(d) => d,
            Err(e) if !e.retryable() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let of_staff = subject
            .staff
            .as_ref()
            .and_then(|s| detail.follow_user.iter().find(|f| &f.userid == s));
        let time = match of_staff {
            Some(f) => Some(f.createtime),
            None => detail.follow_user.iter().map(|f| f.createtime).min(),
        };
        Ok(time.map(|s| Timestamp::from_millis(s * 1000)))
    }

    /// Evaluates `rule` for `subject` and records the firing, once per `event_key`; applies
    /// the change when the mode says so; then runs the chain its added tags start.
    fn fire<'s>(
        &'s mut self,
        rule: &'s Rule,
        subject: &'s Subject,
        event: FiringEvent,
        event_key: String,
        depth: u8,
        chain: Vec<RuleId>,
    ) -> Pin<Box<dyn Future<Output = Step<()>> + Send + 's>>
    where
        'a: 's,
    {
        Box::pin(async move {
            let once = format!(
                "fire#{}#{}#{}#{event_key}",
                self.tenant.id,
                rule.id,
                subject.key()
            );
            let Some(applied) = self
                .record(rule, subject, event, &once, depth, &chain)
                .await?
            else {
                return Ok(());
            };
            // The chain: the other rules listening to a tag this firing added.
            if depth >= MAX_CHAIN_DEPTH || applied.changes.add.is_empty() {
                return Ok(());
            }
            let mut chain = chain;
            chain.push(rule.id.clone());
            let by = format!("rule:{}", rule.id);
            for tag in &applied.changes.add {
                let event = Event::TagAdded { tag };
                let next: Vec<Rule> = self
                    .rules
                    .iter()
                    .filter(|r| triggered(&r.trigger, &event) && !chain.contains(&r.id))
                    .cloned()
                    .collect();
                for r in &next {
                    let fired = FiringEvent::TagAdded {
                        tag_id: tag.clone(),
                        by: by.clone(),
                    };
                    let key = format!("tag_added:{tag}:{}", applied.id);
                    self.fire(r, subject, fired, key, depth + 1, chain.clone())
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// Records one firing (and its change); answers the firing when it applied a change,
    /// `None` otherwise (also when this event fired this rule before).
    async fn record(
        &mut self,
        rule: &Rule,
        subject: &Subject,
        event: FiringEvent,
        once: &str,
        depth: u8,
        chain: &[RuleId],
    ) -> Step<Option<Firing>> {
        let app = self.app;
        let t = &self.tenant.id;
        let needs_added_at = rule
            .conditions
            .iter()
            .any(|c| matches!(c, Condition::AddedWithinDays(_)));
        let added_at = if needs_added_at {
            self.added_at(subject).await?
        } else {
            subject.added_at
        };
        for _ in 0..WRITE_ATTEMPTS {
            let now = app.clock.now();
            let mut firing = Firing {
                tenant: t.clone(),
                id: FiringId::new_unchecked(new_ordered_id()),
                rule_id: rule.id.clone(),
                at: now,
                customer: subject.customer.clone(),
                member_id: subject.member.clone(),
                event: event.clone(),
                outcome: FiringOutcome::UnknownCustomer,
                excluded_by: None,
                changes: Actions::default(),
                written: Vec::new(),
                depth,
                chain_stopped: None,
                undone_by: None,
                version: 0,
            };
            let mut writes = vec![
                Write::CompleteOnce {
                    key: once.to_owned(),
                    now,
                    expires_at: now.plus_secs(FIRED_TTL_SECS),
                },
                Write::Firing(firing.clone()),
            ];
            let Some(member) = &subject.member else {
                // Nothing else is recorded about a customer tagsync does not know.
                self.commit(writes, None).await?;
                return Ok(None);
            };
            // The rule as stored now: a canary counts its customers on it.
            let mut current = rule.clone();
            if rule.mode == Mode::Canary {
                match app.store.get_rule(t, &rule.id).await? {
                    Some(r) => current = r,
                    None => return Ok(None),
                }
            }
            let stored = app.store.get_member_tags(t, member).await?;
            let mut mt = stored
                .clone()
                .unwrap_or_else(|| MemberTags::empty(t, member));
            let tags: BTreeSet<HubTagId> = mt
                .marks
                .iter()
                .filter(|(id, m)| m.present && self.live.contains(*id))
                .map(|(id, _)| id.clone())
                .collect();
            let facts = Facts {
                tags: &tags,
                staff: subject.staff.as_ref(),
                added_at,
                now,
            };
            let verdict = evaluate(&current, &facts);
            let acted = self.decide(verdict, &mut current, subject, &mut firing, &mut writes);
            if acted {
                let written = self.write_change(rule, member, &tags, &mut mt, &mut firing, now);
                if depth >= MAX_CHAIN_DEPTH {
                    firing.chain_stopped = self.stopped(rule, &firing.changes.add, chain);
                }
                writes.extend(written);
            }
            writes[1] = Write::Firing(firing.clone());
            match self.commit(writes, acted.then_some(member)).await {
                Ok(true) => return Ok(acted.then_some(firing)),
                Ok(false) => return Ok(None),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StepError::retry(
            format!("rule {}: the member kept changing", rule.id),
            Some(std::time::Duration::ZERO),
        ))
    }

    /// Puts the rule's verdict on the firing: its outcome and the change it would make (less
    /// tags deleted since the rule was written: the rule then shows as broken). A canary
    /// counts the customer it acts on (the rule's write joins `writes`). Answers whether the
    /// change is to be applied.
    fn decide(
        &self,
        verdict: Verdict,
        current: &mut Rule,
        subject: &Subject,
        firing: &mut Firing,
        writes: &mut Vec<Write>,
    ) -> bool {
        let mut change = match verdict {
            Verdict::Excluded(c) => {
                firing.outcome = FiringOutcome::Excluded;
                firing.excluded_by = Some(c);
                return false;
            }
            Verdict::AlreadyHad => {
                firing.outcome = FiringOutcome::AlreadyHad;
                return false;
            }
            Verdict::Change(change) => change,
        };
        change.add.retain(|x| self.live.contains(x));
        change.remove.retain(|x| self.live.contains(x));
        let key = subject.key();
        let limit = current.canary_limit.unwrap_or(0) as usize;
        let full =
            !current.canary_customers.contains(&key) && current.canary_customers.len() >= limit;
        let acted = match current.mode {
            Mode::DryRun => false,
            Mode::Canary if full => false,
            _ => true,
        };
        firing.outcome = match current.mode {
            _ if acted => FiringOutcome::Applied,
            Mode::DryRun => FiringOutcome::DryRun,
            _ => FiringOutcome::CanaryFull,
        };
        if acted && current.mode == Mode::Canary && current.canary_customers.insert(key) {
            writes.push(Write::Rule(current.clone()));
        }
        firing.changes = change;
        acted
    }

    /// Puts an applied firing's change on the member's marks (and on the firing, for its
    /// undo); answers the member's new tags and their audit entry, to be written with it.
    fn write_change(
        &self,
        rule: &Rule,
        member: &MemberId,
        tags: &BTreeSet<HubTagId>,
        mt: &mut MemberTags,
        firing: &mut Firing,
        now: Timestamp,
    ) -> [Write; 2] {
        let before: Vec<&HubTagId> = tags.iter().collect();
        let before = json!({ "tag_ids": before });
        let changes = &firing.changes;
        let marks: Vec<(HubTagId, bool)> = (changes.add.iter().map(|x| (x.clone(), true)))
            .chain(changes.remove.iter().map(|x| (x.clone(), false)))
            .collect();
        for (tag, present) in marks {
            mt.marks.insert(tag.clone(), TagMark { present, at: now });
            firing.written.push(WrittenMark {
                tag_id: tag,
                present,
                at: now,
            });
        }
        let after: Vec<&HubTagId> = mt
            .marks
            .iter()
            .filter(|(id, m)| m.present && self.live.contains(*id))
            .map(|(id, _)| id)
            .collect();
        let audit = AuditEntry {
            tenant: self.tenant.id.clone(),
            at: now,
            side: Actor::Hub,
            action: "member.tags_changed".into(),
            entity: format!("member:{member}"),
            before: Some(before),
            after: Some(json!({ "tag_ids": after, "firing_id": firing.id })),
            origin: format!("rule:{}", rule.id),
        };
        [Write::MemberTags(mt.clone()), Write::Audit(audit)]
    }

    /// Writes a firing's transaction (its first write is the once-key). `Ok(false)`: this
    /// event fired this rule before; a conflict elsewhere is returned to be tried again.
    async fn commit(
        &mut self,
        writes: Vec<Write>,
        changed: Option<&MemberId>,
    ) -> Result<bool, StoreError> {
        match self.app.store.transact(writes).await {
            Ok(()) => {
                if let Some(m) = changed {
                    self.changed.insert(m.clone());
                }
                Ok(true)
            }
            Err(StoreError::TransactionConflict { failed }) if failed.iter().any(|f| f.0 == 0) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// What a firing at the depth limit leaves unevaluated: the rules its added tags would
    /// have triggered.
    fn stopped(&self, rule: &Rule, added: &[HubTagId], chain: &[RuleId]) -> Option<String> {
        let waiting: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.id != rule.id && !chain.contains(&r.id) && chained_by(r, added))
            .map(|r| r.id.to_string())
            .collect();
        (!waiting.is_empty()).then(|| {
            format!(
                "chain stopped at depth {MAX_CHAIN_DEPTH}: rules {} not evaluated",
                waiting.join(", ")
            )
        })
    }
}
