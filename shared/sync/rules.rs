//! Automatic tagging, the pure half (automation.md §1): whether an event matches a rule's
//! trigger, what the rule does to a customer's hub tags given its conditions, which problems
//! make a rule broken, and which of a firing's marks an undo may reverse. No I/O: the job
//! (`crate::jobs::rules`) reads the facts and writes the outcome.

use crate::domain::{Actions, Condition, HubTagId, Rule, Speaker, TagMark, Timestamp, Trigger};
use crate::domain::{WecomUserId, WrittenMark};
use std::collections::{BTreeMap, BTreeSet};

/// Folds text for keyword matching: full-width ASCII forms (U+FF01..U+FF5E) and the
/// ideographic space become their half-width forms, then letters are lower-cased. Chinese has
/// no case, so this only changes Latin (and other cased) letters.
pub fn fold(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `text` contains any of `words` (both folded). Empty words never match.
pub fn contains_any(words: &[String], text: &str) -> bool {
    let text = fold(text);
    words
        .iter()
        .map(|w| fold(w.trim()))
        .any(|w| !w.is_empty() && text.contains(&w))
}

/// An event as a trigger sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Channel { state: &'a str },
    Message { text: &'a str, speaker: Speaker },
    TagAdded { tag: &'a HubTagId },
}

/// Whether `event` is one `trigger` listens to.
pub fn triggered(trigger: &Trigger, event: &Event<'_>) -> bool {
    match (trigger, event) {
        (Trigger::Channel { state }, Event::Channel { state: s }) => state == s,
        (Trigger::Keyword { any, from }, Event::Message { text, speaker }) => {
            (*from == Speaker::Any || from == speaker) && contains_any(any, text)
        }
        (Trigger::TagAdded { tag_id }, Event::TagAdded { tag }) => tag_id == *tag,
        _ => false,
    }
}

/// What the job knows of the customer at the moment of the trigger.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The customer's hub tags (present, live).
    pub tags: &'a BTreeSet<HubTagId>,
    /// The staff member of the relation the event concerns.
    pub staff: Option<&'a WecomUserId>,
    /// That relation's add time (for a message with no such relation, the earliest one);
    /// `None` when it is not known.
    pub added_at: Option<Timestamp>,
    pub now: Timestamp,
}

/// What a rule does to one customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This condition does not hold.
    Excluded(Condition),
    /// Every action is already so.
    AlreadyHad,
    /// These changes: tags to add that the customer lacks, tags to remove that it has.
    Change(Actions),
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Whether one condition holds.
pub fn holds(condition: &Condition, facts: &Facts<'_>) -> bool {
    match condition {
        Condition::HasAny(t) => t.iter().any(|x| facts.tags.contains(x)),
        Condition::HasAll(t) => t.iter().all(|x| facts.tags.contains(x)),
        Condition::HasNone(t) => !t.iter().any(|x| facts.tags.contains(x)),
        Condition::StaffIn(users) => facts.staff.is_some_and(|s| users.contains(s)),
        Condition::AddedWithinDays(n) => facts
            .added_at
            .is_some_and(|at| facts.now.millis() - at.millis() <= i64::from(*n) * DAY_MS),
    }
}

/// Evaluates a rule whose trigger matched: the first condition that fails excludes the
/// customer; otherwise the actions less what is already so.
pub fn evaluate(rule: &Rule, facts: &Facts<'_>) -> Verdict {
    if let Some(failed) = rule.conditions.iter().find(|c| !holds(c, facts)) {
        return Verdict::Excluded(failed.clone());
    }
    let add: Vec<HubTagId> = dedup(&rule.actions.add)
        .into_iter()
        .filter(|t| !facts.tags.contains(t))
        .collect();
    let remove: Vec<HubTagId> = dedup(&rule.actions.remove)
        .into_iter()
        .filter(|t| facts.tags.contains(t))
        .collect();
    if add.is_empty() && remove.is_empty() {
        Verdict::AlreadyHad
    } else {
        Verdict::Change(Actions { add, remove })
    }
}

fn dedup(ids: &[HubTagId]) -> Vec<HubTagId> {
    let mut seen = BTreeSet::new();
    ids.iter().filter(|t| seen.insert(*t)).cloned().collect()
}

/// Why a rule is broken: each tag it names that is not a live hub tag.
pub fn problems(rule: &Rule, live: &BTreeSet<HubTagId>) -> Vec<String> {
    rule.tags()
        .into_iter()
        .filter(|t| !live.contains(*t))
        .map(|t| format!("tag {t} was deleted"))
        .collect()
}

/// Whether adding `gained` can trigger `rule` in a chain: its trigger is `tag_added` of one of
/// them.
pub fn chained_by(rule: &Rule, gained: &[HubTagId]) -> bool {
    matches!(&rule.trigger, Trigger::TagAdded { tag_id } if gained.contains(tag_id))
}

/// An undo's judgement of one firing's marks against the member's marks now: a mark still
/// exactly as the firing wrote it (same presence, same time) is the rule's and is reversed;
/// any other (someone or something changed that tag since, or it was deleted) is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UndoPlan {
    /// Tag → present after the undo.
    pub reverse: BTreeMap<HubTagId, bool>,
    pub kept: Vec<HubTagId>,
}

pub fn undo_plan(written: &[WrittenMark], now: &BTreeMap<HubTagId, TagMark>) -> UndoPlan {
    let mut plan = UndoPlan::default();
    for w in written {
        match now.get(&w.tag_id) {
            Some(m) if m.present == w.present && m.at == w.at => {
                plan.reverse.insert(w.tag_id.clone(), !w.present);
            }
            _ => plan.kept.push(w.tag_id.clone()),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use proptest::prelude::*;

    fn tag(s: &str) -> HubTagId {
        HubTagId::new_unchecked(s)
    }

    fn rule(conditions: Vec<Condition>, add: &[&str], remove: &[&str]) -> Rule {
        Rule {
            tenant: TenantId::parse("t").unwrap(),
            id: RuleId::new_unchecked("r1"),
            name: "r".into(),
            trigger: Trigger::Keyword {
                any: vec!["优惠券".into()],
                from: Speaker::Customer,
            },
            conditions,
            actions: Actions {
                add: add.iter().map(|s| tag(s)).collect(),
                remove: remove.iter().map(|s| tag(s)).collect(),
            },
            mode: Mode::On,
            canary_limit: None,
            canary_customers: BTreeSet::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            version: 0,
        }
    }

    fn facts(tags: &BTreeSet<HubTagId>) -> Facts<'_> {
        Facts {
            tags,
            staff: None,
            added_at: None,
            now: Timestamp(100 * DAY_MS),
        }
    }

    #[test]
    fn keywords_match_across_case_and_full_and_half_width_forms() {
        let words = vec!["Coupon".to_string(), "优惠券".to_string()];
        assert!(contains_any(&words, "有优惠券吗?"));
        assert!(contains_any(&words, "any COUPON today"));
        assert!(contains_any(&words, "ｃｏｕｐｏｎ？"), "full-width letters");
        assert!(!contains_any(&words, "coupe"));
        assert!(
            contains_any(&["ＶＩＰ".into()], "i am a vip"),
            "a full-width keyword"
        );
        assert!(
            !contains_any(&["  ".into()], "anything"),
            "a blank word matches nothing"
        );
    }

    #[test]
    fn a_keyword_trigger_listens_only_to_its_speaker() {
        let r = rule(vec![], &["a"], &[]);
        let customer = Event::Message {
            text: "优惠券",
            speaker: Speaker::Customer,
        };
        let staff = Event::Message {
            text: "优惠券",
            speaker: Speaker::Staff,
        };
        assert!(triggered(&r.trigger, &customer));
        assert!(!triggered(&r.trigger, &staff));
        assert!(!triggered(&r.trigger, &Event::Channel { state: "优惠券" }));
        let any = Trigger::Keyword {
            any: vec!["优惠券".into()],
            from: Speaker::Any,
        };
        assert!(triggered(&any, &staff));
    }

    #[test]
    fn the_exclusion_names_the_condition_that_failed() {
        let done = tag("已成交");
        let r = rule(
            vec![Condition::HasNone(vec![done.clone()])],
            &["促销敏感"],
            &[],
        );
        let tags: BTreeSet<_> = [done.clone()].into();
        assert_eq!(
            evaluate(&r, &facts(&tags)),
            Verdict::Excluded(Condition::HasNone(vec![done]))
        );
        let none = BTreeSet::new();
        assert_eq!(
            evaluate(&r, &facts(&none)),
            Verdict::Change(Actions {
                add: vec![tag("促销敏感")],
                remove: vec![]
            })
        );
    }

    #[test]
    fn staff_and_add_time_conditions_need_the_facts() {
        let tags = BTreeSet::new();
        let li = WecomUserId::new_unchecked("li");
        let r = rule(vec![Condition::StaffIn(vec![li.clone()])], &["a"], &[]);
        assert!(matches!(evaluate(&r, &facts(&tags)), Verdict::Excluded(_)));
        let mut f = facts(&tags);
        f.staff = Some(&li);
        assert!(matches!(evaluate(&r, &f), Verdict::Change(_)));

        let r = rule(vec![Condition::AddedWithinDays(7)], &["a"], &[]);
        let mut f = facts(&tags);
        assert!(matches!(evaluate(&r, &f), Verdict::Excluded(_)), "unknown");
        f.added_at = Some(Timestamp(94 * DAY_MS));
        assert!(matches!(evaluate(&r, &f), Verdict::Change(_)));
        f.added_at = Some(Timestamp(92 * DAY_MS));
        assert!(matches!(evaluate(&r, &f), Verdict::Excluded(_)));
    }

    #[test]
    fn a_rule_whose_actions_are_already_so_says_already_had() {
        let tags: BTreeSet<_> = [tag("a")].into();
        assert_eq!(
            evaluate(&rule(vec![], &["a"], &["b"]), &facts(&tags)),
            Verdict::AlreadyHad
        );
    }

    #[test]
    fn a_deleted_tag_makes_the_rule_broken() {
        let r = rule(vec![Condition::HasNone(vec![tag("x")])], &["a"], &[]);
        let live: BTreeSet<_> = [tag("a")].into();
        assert_eq!(problems(&r, &live), vec!["tag x was deleted".to_string()]);
        let live: BTreeSet<_> = [tag("a"), tag("x")].into();
        assert!(problems(&r, &live).is_empty());
    }

    #[test]
    fn undo_reverses_only_marks_still_as_the_firing_wrote_them() {
        let written = vec![
            WrittenMark {
                tag_id: tag("a"),
                present: true,
                at: Timestamp(5),
            },
            WrittenMark {
                tag_id: tag("b"),
                present: false,
                at: Timestamp(5),
            },
        ];
        let mut now = BTreeMap::new();
        now.insert(
            tag("a"),
            TagMark {
                present: true,
                at: Timestamp(5),
            },
        );
        now.insert(
            tag("b"),
            TagMark {
                present: false,
                at: Timestamp(9),
            },
        );
        let plan = undo_plan(&written, &now);
        assert_eq!(plan.reverse, [(tag("a"), false)].into());
        assert_eq!(plan.kept, vec![tag("b")]);
    }

    fn width_variants() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 ?!]".prop_map(|s| s),
                Just("优".to_string()),
                Just("惠".to_string()),
                Just("券".to_string()),
            ],
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    /// Upper-cases and widens every other ASCII character.
    fn disguise(s: &str) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                if c.is_ascii_graphic() && i % 2 == 0 {
                    char::from_u32(c.to_ascii_uppercase() as u32 + 0xFEE0).unwrap_or(c)
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn folding_is_idempotent_and_ignores_case_and_width(s in width_variants()) {
            prop_assert_eq!(fold(&fold(&s)), fold(&s));
            prop_assert_eq!(fold(&disguise(&s)), fold(&s));
        }

        #[test]
        fn a_word_matches_any_disguise_of_a_text_containing_it(
            pre in width_variants(), word in "[a-z]{1,4}|优惠券", post in width_variants()
        ) {
            let text = format!("{pre}{word}{post}");
            prop_assert!(contains_any(std::slice::from_ref(&word), &disguise(&text)));
        }

        #[test]
        fn a_change_adds_only_missing_tags_and_removes_only_present_ones(
            have in proptest::collection::btree_set("[a-e]", 0..5),
            add in proptest::collection::vec("[a-e]", 0..4),
            remove in proptest::collection::vec("[f-h]|[a-e]", 0..4),
            excluded in proptest::collection::vec("[a-e]", 0..2),
        ) {
            let have: BTreeSet<HubTagId> = have.iter().map(|s| tag(s)).collect();
            let add_r: Vec<&str> = add.iter().map(String::as_str).collect();
            let remove_r: Vec<&str> = remove.iter().map(String::as_str).filter(|r| !add_r.contains(r)).collect();
            let conds = if excluded.is_empty() { vec![] } else {
                vec![Condition::HasNone(excluded.iter().map(|s| tag(s)).collect())]
            };
            let r = rule(conds, &add_r, &remove_r);
            let blocked = excluded.iter().any(|e| have.contains(&tag(e)));
            match evaluate(&r, &facts(&have)) {
                Verdict::Excluded(_) => prop_assert!(blocked),
                Verdict::AlreadyHad => {
                    prop_assert!(!blocked);
                    prop_assert!(add_r.iter().all(|a| have.contains(&tag(a))));
                    prop_assert!(remove_r.iter().all(|x| !have.contains(&tag(x))));
                }
                Verdict::Change(c) => {
                    prop_assert!(!blocked);
                    prop_assert!(!c.add.is_empty() || !c.remove.is_empty());
                    prop_assert!(c.add.iter().all(|a| !have.contains(a)));
                    prop_assert!(c.remove.iter().all(|x| have.contains(x)));
                    // Applying it leaves exactly what the actions ask for.
                    let mut after = have.clone();
                    after.extend(c.add.iter().cloned());
                    for x in &c.remove { after.remove(x); }
                    prop_assert!(add_r.iter().all(|a| after.contains(&tag(a))));
                    prop_assert!(remove_r.iter().all(|x| !after.contains(&tag(x))));
                }
            }
        }
    }
}
