//! The customer index: what the hub knows of each WeCom customer, kept for operators to list,
//! filter and bulk-tag without a WeCom call per page (issue 15). It is written by the jobs
//! that read customers anyway (member jobs, the members reconciliation, contact events of
//! unbound customers) and never read by the sync engine: the relations' bases stay in
//! [`super::CustomerRelations`]. Personal tags (WeCom `type` 2) are shown here and nowhere
//! else: the API cannot write them, so tagsync never syncs them.

use super::ids::{ExternalUserId, HubTagId, MemberId, TenantId, WecomUserId};
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One customer as the index holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEntry {
    pub tenant: TenantId,
    pub external_userid: ExternalUserId,
    /// The WeCom name (empty until a read showed it).
    #[serde(default)]
    pub name: String,
    /// The mall member bound to the customer, if any.
    #[serde(default)]
    pub member_id: Option<MemberId>,
    /// Per follow relation (the staff member's userid).
    #[serde(default)]
    pub relations: BTreeMap<WecomUserId, RelationEntry>,
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}

/// One follow relation of an indexed customer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationEntry {
    /// The contact way's `state` the customer added this staff member with.
    #[serde(default)]
    pub state: Option<String>,
    /// When the relation was made (WeCom's `createtime`).
    #[serde(default)]
    pub added_at: Option<Timestamp>,
    /// The managed tags on the relation, as hub ids (WeCom tags the hub does not know are
    /// not shown: they are not managed).
    #[serde(default)]
    pub tag_ids: BTreeSet<HubTagId>,
    /// Names of the staff member's personal tags (read only, never synced).
    #[serde(default)]
    pub personal_tags: Vec<String>,
}

impl CustomerEntry {
    pub fn new(tenant: TenantId, external_userid: ExternalUserId, now: Timestamp) -> Self {
        Self {
            tenant,
            external_userid,
            name: String::new(),
            member_id: None,
            relations: BTreeMap::new(),
            updated_at: now,
            version: 0,
        }
    }

    /// The customer's managed tags: the union over its relations.
    pub fn tag_ids(&self) -> BTreeSet<HubTagId> {
        self.relations
            .values()
            .flat_map(|r| r.tag_ids.iter().cloned())
            .collect()
    }

    /// The text `q` is matched against: the name and the external userid, lowercased.
    pub fn search_text(&self) -> String {
        format!(
            "{}\n{}",
            self.name.to_lowercase(),
            self.external_userid.as_str().to_lowercase()
        )
    }

    /// The index keys (facets) under which a store files this customer, one per tag, state
    /// and staff member it has: every filter but `q` and `bound` is one of these.
    pub fn facets(&self) -> BTreeSet<Facet> {
        let mut out = BTreeSet::from([Facet::Bound(self.member_id.is_some())]);
        for (userid, r) in &self.relations {
            out.insert(Facet::User(userid.as_str().to_string()));
            if let Some(s) = &r.state {
                out.insert(Facet::State(s.clone()));
            }
            for t in &r.tag_ids {
                out.insert(Facet::Tag(t.as_str().to_string()));
            }
        }
        out
    }

    /// The customer as the admin API shows it.
    pub fn view(&self) -> serde_json::Value {
        let relations: Vec<serde_json::Value> = self
            .relations
            .iter()
            .map(|(userid, r)| {
                serde_json::json!({
                    "userid": userid,
                    "state": r.state,
                    "added_at": r.added_at.map(Timestamp::to_rfc3339),
                    "tag_ids": r.tag_ids,
                    "personal_tags": r.personal_tags,
                })
            })
            .collect();
        serde_json::json!({
            "external_userid": self.external_userid,
            "name": self.name,
            "member_id": self.member_id,
            "tag_ids": self.tag_ids(),
            "relations": relations,
        })
    }
}

/// One key a customer is filed under in the index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Facet {
    Tag(String),
    State(String),
    User(String),
    Bound(bool),
}

impl Facet {
    /// The facet as one string (`tag:…`, `state:…`, `user:…`), for store keys.
    pub fn key(&self) -> String {
        match self {
            Facet::Tag(t) => format!("tag:{t}"),
            Facet::State(s) => format!("state:{s}"),
            Facet::User(u) => format!("user:{u}"),
            Facet::Bound(b) => format!("bound:{b}"),
        }
    }
}

/// How several `tag` filters combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagMode {
    /// At least one of the tags.
    #[default]
    Any,
    /// Every one of the tags.
    All,
    /// None of the tags.
    None,
}

impl TagMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "any" => Some(TagMode::Any),
            "all" => Some(TagMode::All),
            "none" => Some(TagMode::None),
            _ => None,
        }
    }
}

/// A filter over the customer index (admin-api.md 1.1). Every given part must hold; `state`
/// and `userid` each hold when any relation has them (possibly different relations).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFilter {
    #[serde(default, rename = "tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<HubTagId>,
    #[serde(default)]
    pub tag_mode: TagMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<WecomUserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<bool>,
    /// Case-insensitive substring of the name or the external userid (kept lowercased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

impl CustomerFilter {
    /// Whether `e` passes the filter. Both stores answer exactly this (the SQLite one in SQL,
    /// the DynamoDB one by calling it on what its index partition holds).
    pub fn matches(&self, e: &CustomerEntry) -> bool {
        if !self.tags.is_empty() {
            let has = e.tag_ids();
            let ok = match self.tag_mode {
                TagMode::Any => self.tags.iter().any(|t| has.contains(t)),
                TagMode::All => self.tags.iter().all(|t| has.contains(t)),
                TagMode::None => !self.tags.iter().any(|t| has.contains(t)),
            };
            if !ok {
                return false;
            }
        }
        if let Some(s) = &self.state
            && !e.relations.values().any(|r| r.state.as_ref() == Some(s))
        {
            return false;
        }
        if let Some(u) = &self.userid
            && !e.relations.contains_key(u)
        {
            return false;
        }
        if let Some(b) = self.bound
            && e.member_id.is_some() != b
        {
            return false;
        }
        if let Some(q) = &self.q
            && !e.search_text().contains(&q.to_lowercase())
        {
            return false;
        }
        true
    }

    /// The one facet whose customers include every match, when there is one: an index over
    /// that facet answers the filter without reading the whole tenant. Taken in order of
    /// likely selectivity: a staff member, a `state`, a required tag, bound or not.
    pub fn narrowing_facet(&self) -> Option<Facet> {
        if let Some(u) = &self.userid {
            return Some(Facet::User(u.as_str().to_string()));
        }
        if let Some(s) = &self.state {
            return Some(Facet::State(s.clone()));
        }
        match (self.tag_mode, self.tags.as_slice()) {
            (TagMode::All, [first, ..]) | (TagMode::Any, [first]) => {
                Some(Facet::Tag(first.as_str().to_string()))
            }
            _ => self.bound.map(Facet::Bound),
        }
    }
}

/// A page of the customer index.
#[derive(Clone, Debug, Default)]
pub struct CustomerPage {
    pub customers: Vec<CustomerEntry>,
    /// The external userid to continue after; `None` on the last page.
    pub next_cursor: Option<String>,
    /// How many customers match, on every page.
    pub total: u64,
}

/// One relation as a read of WeCom showed it, before it is merged into the index.
#[derive(Clone, Debug)]
pub struct RelationRead {
    pub userid: WecomUserId,
    pub state: Option<String>,
    pub added_at: Option<Timestamp>,
    pub tag_ids: BTreeSet<HubTagId>,
    /// `None` when the read does not show personal tags (`batch/get_by_user`): the index
    /// keeps the ones it knows.
    pub personal_tags: Option<Vec<String>>,
}

/// What one read of a customer showed, to fold into its index entry.
#[derive(Clone, Debug, Default)]
pub struct CustomerRead {
    /// The name, when the read showed it.
    pub name: Option<String>,
    /// The bound member, when known (`Some(None)`: known to be unbound).
    pub member: Option<Option<MemberId>>,
    pub relations: Vec<RelationRead>,
    /// The read showed every relation of the customer (`externalcontact/get`): relations it
    /// did not show are gone. A page of `batch/get_by_user` shows only some.
    pub complete: bool,
}

impl CustomerEntry {
    /// Folds a read into the entry; answers whether anything the index shows changed.
    pub fn absorb(&mut self, read: &CustomerRead) -> bool {
        let before = self.clone();
        if let Some(n) = &read.name {
            self.name = n.clone();
        }
        if let Some(m) = &read.member {
            self.member_id = m.clone();
        }
        if read.complete {
            let shown: BTreeSet<&WecomUserId> = read.relations.iter().map(|r| &r.userid).collect();
            self.relations.retain(|u, _| shown.contains(u));
        }
        for r in &read.relations {
            let e = self.relations.entry(r.userid.clone()).or_default();
            if r.state.is_some() {
                e.state = r.state.clone();
            }
            if r.added_at.is_some() {
                e.added_at = r.added_at;
            }
            e.tag_ids = r.tag_ids.clone();
            if let Some(p) = &r.personal_tags {
                e.personal_tags = p.clone();
            }
        }
        self.name != before.name
            || self.member_id != before.member_id
            || self.relations != before.relations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, name: &str, rels: &[(&str, Option<&str>, &[&str])]) -> CustomerEntry {
        let mut e = CustomerEntry::new(
            TenantId::parse("t").unwrap(),
            ExternalUserId::new_unchecked(id),
            Timestamp::from_millis(0),
        );
        e.name = name.into();
        for (u, s, tags) in rels {
            e.relations.insert(
                WecomUserId::new_unchecked(*u),
                RelationEntry {
                    state: s.map(str::to_string),
                    tag_ids: tags.iter().map(|t| HubTagId::new_unchecked(*t)).collect(),
                    ..Default::default()
                },
            );
        }
        e
    }

    fn tags(ids: &[&str], mode: TagMode) -> CustomerFilter {
        CustomerFilter {
            tags: ids.iter().map(|t| HubTagId::new_unchecked(*t)).collect(),
            tag_mode: mode,
            ..Default::default()
        }
    }

    #[test]
    fn tag_modes_take_the_union_over_relations() {
        let e = entry("wm1", "张三", &[("u1", None, &["a"]), ("u2", None, &["b"])]);
        assert!(tags(&["a", "b"], TagMode::All).matches(&e));
        assert!(tags(&["b", "c"], TagMode::Any).matches(&e));
        assert!(!tags(&["c"], TagMode::Any).matches(&e));
        assert!(tags(&["c"], TagMode::None).matches(&e));
        assert!(!tags(&["a", "c"], TagMode::None).matches(&e));
    }

    #[test]
    fn state_and_userid_may_hold_on_different_relations() {
        let e = entry("wm1", "x", &[("u1", Some("shop"), &[]), ("u2", None, &[])]);
        let f = CustomerFilter {
            state: Some("shop".into()),
            userid: Some(WecomUserId::new_unchecked("u2")),
            ..Default::default()
        };
        assert!(f.matches(&e));
        let f = CustomerFilter {
            state: Some("web".into()),
            ..Default::default()
        };
        assert!(!f.matches(&e));
    }

    #[test]
    fn q_is_a_case_insensitive_substring_of_name_or_id() {
        let e = entry("wmAbC9", "Li Lei 李雷", &[]);
        for q in ["abc", "LEI", "李", "wmabc9"] {
            let f = CustomerFilter {
                q: Some(q.into()),
                ..Default::default()
            };
            assert!(f.matches(&e), "{q}");
        }
        let f = CustomerFilter {
            q: Some("han".into()),
            ..Default::default()
        };
        assert!(!f.matches(&e));
    }

    #[test]
    fn a_complete_read_drops_relations_it_no_longer_shows_and_keeps_personal_tags_it_cannot_see() {
        let mut e = entry("wm1", "x", &[("u1", Some("s"), &["a"]), ("u2", None, &[])]);
        if let Some(r) = e.relations.get_mut(&WecomUserId::new_unchecked("u1")) {
            r.personal_tags = vec!["老客户".into()];
        }
        let partial = CustomerRead {
            relations: vec![RelationRead {
                userid: WecomUserId::new_unchecked("u1"),
                state: None,
                added_at: None,
                tag_ids: [HubTagId::new_unchecked("b")].into(),
                personal_tags: None,
            }],
            ..Default::default()
        };
        assert!(e.absorb(&partial));
        let u1 = &e.relations[&WecomUserId::new_unchecked("u1")];
        assert_eq!(u1.personal_tags, vec!["老客户".to_string()]);
        assert_eq!(u1.state.as_deref(), Some("s"));
        assert_eq!(e.relations.len(), 2);
        let complete = CustomerRead {
            complete: true,
            ..partial
        };
        e.absorb(&complete);
        assert_eq!(e.relations.len(), 1);
    }

    #[test]
    fn narrowing_facet_is_absent_for_filters_no_single_index_serves() {
        assert_eq!(tags(&["a", "b"], TagMode::Any).narrowing_facet(), None);
        assert_eq!(tags(&["a"], TagMode::None).narrowing_facet(), None);
        assert_eq!(
            tags(&["a", "b"], TagMode::All).narrowing_facet(),
            Some(Facet::Tag("a".into()))
        );
    }
}
