//! Reconciliation, pure: compares a whole side's library with the hub and its bases (which
//! entities drifted, and how), links an existing corp's and mall's libraries by name the
//! first time, and counts what a repair changed on a side. Member drift is decided per member
//! and relation by the page jobs with [`tag_drift`].
//!
//! Counter names are `{groups|tags}.{created|renamed|reordered|moved|deleted|pending}.{side}`
//! and `member_tags.{added|removed}.{side}`; `pending` means the hub holds a change the side
//! has not got yet (made while the automatic switches were off, or still failing).

use crate::domain::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A side's library as read in full, in side ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideLib {
    pub groups: Vec<SideGroup>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideGroup {
    pub id: String,
    pub name: String,
    pub order: u32,
    pub tags: Vec<SideTag>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideTag {
    pub id: String,
    pub name: String,
    pub order: u32,
}

pub type Counts = BTreeMap<String, u64>;

fn bump(c: &mut Counts, key: String) {
    *c.entry(key).or_default() += 1;
}

/// A hub entity or a side object the run brings up to date through the engine's jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Group(HubGroupId),
    Tag(HubTagId),
    /// An object only a side has (not linked, no same-name partner): the job brings it in.
    NewGroup {
        side: Side,
        id: String,
    },
    NewTag {
        side: Side,
        id: String,
    },
}

/// A (group, tag) matched by name on both sides, neither linked yet: linked to one new hub
/// object instead of being created twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    Group {
        wecom: SideGroup,
        mall: SideGroup,
    },
    /// `group_*` are the side ids of the tag's groups (matched, or already linked).
    Tag {
        wecom: SideTag,
        wecom_group: String,
        mall: SideTag,
        mall_group: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub drift: Counts,
    pub skipped: Counts,
    pub matches: Vec<Match>,
    pub ambiguous: Vec<String>,
    /// Groups first, then tags.
    pub targets: Vec<Target>,
    pub compared: u64,
}

struct Index<'a> {
    groups: HashMap<&'a str, &'a SideGroup>,
    tags: HashMap<&'a str, (&'a SideTag, &'a SideGroup)>,
}

fn index(lib: &SideLib) -> Index<'_> {
    let mut ix = Index {
        groups: HashMap::new(),
        tags: HashMap::new(),
    };
    for g in &lib.groups {
        ix.groups.insert(&g.id, g);
        for t in &g.tags {
            ix.tags.insert(&t.id, (t, g));
        }
    }
    ix
}

fn side_id<I: ToString, S>(link: &SideLink<I, S>) -> Option<String> {
    link.id.as_ref().map(ToString::to_string)
}

/// Compares both sides' libraries with the hub: what drifted, what to link by name, and
/// which entities to bring up to date.
pub fn library(groups: &[TagGroup], tags: &[Tag], wecom: &SideLib, mall: &SideLib) -> Findings {
    let mut f = Findings::default();
    let cx = Compare::new(groups, tags, wecom, mall);
    for g in groups {
        f.compared += 1;
        if cx.group_drifted(g, &mut f) {
            f.targets.push(Target::Group(g.id.clone()));
        }
    }
    let groups_paired = cx.match_groups(&mut f);
    let mut tag_targets = Vec::new();
    for t in tags {
        f.compared += 1;
        if cx.tag_drifted(t, &mut f) {
            tag_targets.push(Target::Tag(t.id.clone()));
        }
    }
    cx.match_tags(&groups_paired, &mut f, &mut tag_targets);
    f.targets.extend(tag_targets);
    f
}

/// What comparing the library needs of the hub and both sides, read once. Arrays are indexed
/// by side: 0 WeCom, 1 the mall.
struct Compare<'a> {
    sides: [(Side, &'a SideLib); 2],
    ix: [Index<'a>; 2],
    /// Side group id → hub group id, from the hub's links (tombstones included).
    group_of: [HashMap<String, &'a HubGroupId>; 2],
    /// Side group ids the hub links.
    linked: [BTreeSet<String>; 2],
    /// Side tag ids the hub links.
    tag_linked: [BTreeSet<String>; 2],
    /// Scoped groups kept from the mall: having no mall copy is not drift there.
    kept: BTreeSet<&'a HubGroupId>,
    live_tags: HashMap<&'a HubGroupId, usize>,
}

/// The groups onboarding paired by name, and per side which group each matched.
struct GroupsPaired {
    paired: Paired,
    /// Side group id → the other side's group id it matched (for tag matching).
    partner: [HashMap<String, String>; 2],
}

impl<'a> Compare<'a> {
    fn new(groups: &'a [TagGroup], tags: &'a [Tag], wecom: &'a SideLib, mall: &'a SideLib) -> Self {
        let mut group_of: [HashMap<String, &HubGroupId>; 2] = [HashMap::new(), HashMap::new()];
        let mut linked: [BTreeSet<String>; 2] = [BTreeSet::new(), BTreeSet::new()];
        for g in groups {
            for (i, id) in [side_id(&g.wecom), side_id(&g.mall)]
                .into_iter()
                .enumerate()
            {
                if let Some(id) = id {
                    group_of[i].insert(id.clone(), &g.id);
                    linked[i].insert(id);
                }
            }
        }
        let mut tag_linked: [BTreeSet<String>; 2] = [BTreeSet::new(), BTreeSet::new()];
        for t in tags {
            for (i, id) in [side_id(&t.wecom), side_id(&t.mall)]
                .into_iter()
                .enumerate()
            {
                tag_linked[i].extend(id);
            }
        }
        let kept = groups
            .iter()
            .filter(|g| !g.reaches_mall())
            .map(|g| &g.id)
            .collect();
        let live_tags =
            tags.iter()
                .filter(|t| t.deleted_at.is_none())
                .fold(HashMap::new(), |mut m, t| {
                    *m.entry(&t.group_id).or_default() += 1;
                    m
                });
        Self {
            sides: [(Side::Wecom, wecom), (Side::Mall, mall)],
            ix: [index(wecom), index(mall)],
            group_of,
            linked,
            tag_linked,
            kept,
            live_tags,
        }
    }

    /// A hub group against each side; counts its drift, answers whether it drifted.
    fn group_drifted(&self, g: &TagGroup, f: &mut Findings) -> bool {
        let mut drifted = false;
        for (i, (side, _)) in self.sides.iter().enumerate() {
            let (id, base) = match side {
                Side::Wecom => (side_id(&g.wecom), g.wecom.base.clone()),
                Side::Mall => (side_id(&g.mall), g.mall.base.clone()),
            };
            let shown = id.as_deref().and_then(|id| self.ix[i].groups.get(id));
            let wanted = GroupSnapshot {
                name: g.name.clone(),
                order: g.order,
            };
            let needed = g.deleted_at.is_none()
                && match side {
                    Side::Mall => !self.kept.contains(&g.id),
                    Side::Wecom => self.live_tags.get(&g.id).copied().unwrap_or(0) > 0,
                };
            let mut d = |what: &str| {
                bump(&mut f.drift, format!("groups.{what}.{side}"));
                drifted = true;
            };
            match (shown, &base) {
                (Some(s), Some(b)) => {
                    if g.deleted_at.is_some() {
                        d("pending");
                        continue;
                    }
                    if s.name != b.name {
                        d("renamed");
                    }
                    if s.order != b.order {
                        d("reordered");
                    }
                    if s.name == b.name && s.order == b.order && wanted != *b {
                        d("pending");
                    }
                }
                (Some(_), None) => d("pending"),
                // Linked but gone from the side. WeCom drops a group with its last tag: that
                // is not a deletion, and a group with no live tags is not wanted there.
                (None, Some(_)) if id.is_some() && needed => d("deleted"),
                (None, _) if id.is_none() && needed => d("pending"),
                (None, _) => {}
            }
        }
        drifted
    }

    /// Onboarding: unlinked groups of both sides with one name are matched; the other
    /// unlinked side groups are new.
    fn match_groups(&self, f: &mut Findings) -> GroupsPaired {
        let unlinked = |i: usize| -> Vec<Candidate> {
            self.sides[i]
                .1
                .groups
                .iter()
                .filter(|g| !self.linked[i].contains(&g.id))
                .map(|g| Candidate {
                    scope: String::new(),
                    name: g.name.clone(),
                    id: g.id.clone(),
                })
                .collect()
        };
        let paired = pair_up("group", &unlinked(0), &unlinked(1));
        let mut partner: [HashMap<String, String>; 2] = [HashMap::new(), HashMap::new()];
        for (w, m) in &paired.pairs {
            partner[0].insert(w.clone(), m.clone());
            partner[1].insert(m.clone(), w.clone());
            f.matches.push(Match::Group {
                wecom: (*self.ix[0].groups[w.as_str()]).clone(),
                mall: (*self.ix[1].groups[m.as_str()]).clone(),
            });
        }
        f.ambiguous.extend(paired.ambiguous.iter().cloned());
        for (i, (side, lib)) in self.sides.iter().enumerate() {
            for g in &lib.groups {
                if self.linked[i].contains(&g.id)
                    || partner[i].contains_key(&g.id)
                    || paired.left_alone[i].contains(&g.id)
                {
                    continue;
                }
                bump(&mut f.drift, format!("groups.created.{side}"));
                f.targets.push(Target::NewGroup {
                    side: *side,
                    id: g.id.clone(),
                });
            }
        }
        GroupsPaired { paired, partner }
    }

    /// A hub tag against each side; counts its drift, answers whether it drifted.
    fn tag_drifted(&self, t: &Tag, f: &mut Findings) -> bool {
        let mut drifted = false;
        for (i, (side, _)) in self.sides.iter().enumerate() {
            let (id, base, state) = match side {
                Side::Wecom => (side_id(&t.wecom), t.wecom.base.clone(), t.wecom.state),
                Side::Mall => (side_id(&t.mall), t.mall.base.clone(), t.mall.state),
            };
            let shown = id.as_deref().and_then(|id| self.ix[i].tags.get(id));
            let mut d = |what: &str| {
                bump(&mut f.drift, format!("tags.{what}.{side}"));
                drifted = true;
            };
            match (shown, &base) {
                (Some((s, sg)), Some(b)) => {
                    if t.deleted_at.is_some() {
                        // A read-only tag is not ours to delete in WeCom.
                        if state != SyncState::ReadOnly {
                            d("pending");
                        }
                        continue;
                    }
                    let group = self.group_of[i].get(&sg.id).map(|g| (*g).clone());
                    let moved = group.as_ref() != Some(&b.group_id);
                    if s.name != b.name {
                        d("renamed");
                    }
                    if s.order != b.order {
                        d("reordered");
                    }
                    if moved {
                        d("moved");
                    }
                    let wanted_differs =
                        t.name != b.name || t.order != b.order || t.group_id != b.group_id;
                    if s.name == b.name && s.order == b.order && !moved && wanted_differs {
                        if state == SyncState::ReadOnly {
                            bump(&mut f.skipped, format!("tags.read_only.{side}"));
                        } else {
                            d("pending");
                        }
                    }
                }
                (Some(_), None) => d("pending"),
                (None, Some(_)) if id.is_some() && t.deleted_at.is_none() => d("deleted"),
                (None, _)
                    if id.is_none()
                        && t.deleted_at.is_none()
                        && !(*side == Side::Mall && self.kept.contains(&t.group_id)) =>
                {
                    d("pending")
                }
                (None, _) => {}
            }
        }
        drifted
    }

    /// Onboarding: unlinked tags of both sides with one (group, tag) name are matched; their
    /// groups must be one pair: linked to one hub group, or matched by [`Self::match_groups`].
    /// The other unlinked side tags (outside ambiguous groups) are new.
    fn match_tags(&self, groups: &GroupsPaired, f: &mut Findings, targets: &mut Vec<Target>) {
        let partner = &groups.partner;
        let scope = |i: usize, g: &SideGroup| -> Option<String> {
            if let Some(h) = self.group_of[i].get(&g.id) {
                return Some(format!("hub:{h}"));
            }
            let w = if i == 0 {
                Some(&g.id)
            } else {
                partner[1].get(&g.id)
            };
            w.filter(|w| partner[0].contains_key(*w))
                .map(|w| format!("match:{w}"))
        };
        let unlinked_tags = |i: usize| -> Vec<Candidate> {
            let mut out = Vec::new();
            for g in &self.sides[i].1.groups {
                let Some(sc) = scope(i, g) else { continue };
                for t in &g.tags {
                    if !self.tag_linked[i].contains(&t.id) {
                        out.push(Candidate {
                            scope: sc.clone(),
                            name: t.name.clone(),
                            id: t.id.clone(),
                        });
                    }
                }
            }
            out
        };
        let tags_paired = pair_up("tag", &unlinked_tags(0), &unlinked_tags(1));
        let mut matched_tags: [BTreeSet<String>; 2] = [BTreeSet::new(), BTreeSet::new()];
        for (w, m) in &tags_paired.pairs {
            let (wt, wg) = self.ix[0].tags[w.as_str()];
            let (mt, mg) = self.ix[1].tags[m.as_str()];
            matched_tags[0].insert(w.clone());
            matched_tags[1].insert(m.clone());
            f.matches.push(Match::Tag {
                wecom: wt.clone(),
                wecom_group: wg.id.clone(),
                mall: mt.clone(),
                mall_group: mg.id.clone(),
            });
        }
        f.ambiguous.extend(tags_paired.ambiguous);
        for (i, (side, lib)) in self.sides.iter().enumerate() {
            for g in &lib.groups {
                if groups.paired.left_alone[i].contains(&g.id) {
                    continue;
                }
                for t in &g.tags {
                    if self.tag_linked[i].contains(&t.id)
                        || matched_tags[i].contains(&t.id)
                        || tags_paired.left_alone[i].contains(&t.id)
                    {
                        continue;
                    }
                    bump(&mut f.drift, format!("tags.created.{side}"));
                    targets.push(Target::NewTag {
                        side: *side,
                        id: t.id.clone(),
                    });
                }
            }
        }
    }
}

/// An unlinked side object that onboarding may pair by name within `scope`.
struct Candidate {
    scope: String,
    name: String,
    id: String,
}

struct Paired {
    /// (WeCom id, mall id) of exact, unique name matches.
    pairs: Vec<(String, String)>,
    ambiguous: Vec<String>,
    /// Ids on each side involved in an ambiguous match: neither linked nor created.
    left_alone: [BTreeSet<String>; 2],
}

/// A name as people mean it: without surrounding or doubled spaces, full-width letters and
/// digits as ASCII, lower case. Two different names that fold alike (`VIP` and `vip `) are
/// an ambiguous match: reported, not guessed.
fn fold(name: &str) -> String {
    let half: String = name
        .chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect();
    half.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Pairs WeCom and mall candidates of one scope by name: one exact match on each side is a
/// pair; several of one name on a side, or names that differ only as [`fold`] forgives, are
/// ambiguous and left alone.
fn pair_up(kind: &str, wecom: &[Candidate], mall: &[Candidate]) -> Paired {
    let mut out = Paired {
        pairs: Vec::new(),
        ambiguous: Vec::new(),
        left_alone: [BTreeSet::new(), BTreeSet::new()],
    };
    let mut fw: BTreeMap<(String, String), Vec<&Candidate>> = BTreeMap::new();
    let mut fm: BTreeMap<(String, String), Vec<&Candidate>> = BTreeMap::new();
    for c in wecom {
        fw.entry((c.scope.clone(), fold(&c.name)))
            .or_default()
            .push(c);
    }
    for c in mall {
        fm.entry((c.scope.clone(), fold(&c.name)))
            .or_default()
            .push(c);
    }
    for (key, ws) in &fw {
        let Some(ms) = fm.get(key) else { continue };
        if ws.len() == 1 && ms.len() == 1 && ws[0].name == ms[0].name {
            out.pairs.push((ws[0].id.clone(), ms[0].id.clone()));
            continue;
        }
        let names = |v: &[&Candidate]| {
            v.iter()
                .map(|c| format!("`{}`", c.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.ambiguous.push(format!(
            "{kind} {} in WeCom and {} in the mall: left unlinked (rename one side to match \
             exactly, then run again)",
            names(ws),
            names(ms)
        ));
        out.left_alone[0].extend(ws.iter().map(|c| c.id.clone()));
        out.left_alone[1].extend(ms.iter().map(|c| c.id.clone()));
    }
    out
}

/// What changed on one side between two reads of its library, by the hub entity each side
/// object maps to (`hub_before` / `hub_after`: side id → hub id, before and after): created,
/// deleted, renamed, reordered and moved groups and tags. A WeCom move (a delete and a create
/// of one hub tag) counts as one move.
pub fn changes(
    side: Side,
    before: &SideLib,
    after: &SideLib,
    hub_before: &HashMap<String, String>,
    hub_after: &HashMap<String, String>,
) -> Counts {
    let mut c = Counts::new();
    let (b, a) = (index(before), index(after));
    for (id, g) in &a.groups {
        match b.groups.get(id) {
            None => bump(&mut c, format!("groups.created.{side}")),
            Some(old) => {
                if old.name != g.name {
                    bump(&mut c, format!("groups.renamed.{side}"));
                }
                if old.order != g.order {
                    bump(&mut c, format!("groups.reordered.{side}"));
                }
            }
        }
    }
    for id in b.groups.keys() {
        if !a.groups.contains_key(id) {
            bump(&mut c, format!("groups.deleted.{side}"));
        }
    }
    let hub_of = |map: &HashMap<String, String>, id: &str| map.get(id).cloned();
    let created: Vec<&str> = a
        .tags
        .keys()
        .filter(|id| !b.tags.contains_key(*id))
        .copied()
        .collect();
    let deleted: Vec<&str> = b
        .tags
        .keys()
        .filter(|id| !a.tags.contains_key(*id))
        .copied()
        .collect();
    let moved_hubs: BTreeSet<String> = created
        .iter()
        .filter_map(|id| hub_of(hub_after, id))
        .filter(|h| {
            deleted
                .iter()
                .any(|d| hub_of(hub_before, d).as_ref() == Some(h))
        })
        .collect();
    for id in &created {
        if hub_of(hub_after, id).is_some_and(|h| moved_hubs.contains(&h)) {
            bump(&mut c, format!("tags.moved.{side}"));
        } else {
            bump(&mut c, format!("tags.created.{side}"));
        }
    }
    for id in &deleted {
        if !hub_of(hub_before, id).is_some_and(|h| moved_hubs.contains(&h)) {
            bump(&mut c, format!("tags.deleted.{side}"));
        }
    }
    let group_hub = |map: &HashMap<String, String>, g: &SideGroup| {
        map.get(&g.id).cloned().unwrap_or_else(|| g.id.clone())
    };
    for (id, (t, g)) in &a.tags {
        if let Some((old, og)) = b.tags.get(id) {
            if old.name != t.name {
                bump(&mut c, format!("tags.renamed.{side}"));
            }
            if old.order != t.order {
                bump(&mut c, format!("tags.reordered.{side}"));
            }
            if group_hub(hub_before, og) != group_hub(hub_after, g) {
                bump(&mut c, format!("tags.moved.{side}"));
            }
        }
    }
    c
}

/// Tag-set drift of one member on one side against its base: (added, removed) on the side.
pub fn tag_drift<T: Ord>(shown: &BTreeSet<T>, base: &BTreeSet<T>) -> (u64, u64) {
    (
        shown.difference(base).count() as u64,
        base.difference(shown).count() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_millis(1_000)
    }
    fn tenant() -> TenantId {
        TenantId::parse("t1").unwrap()
    }
    fn sg(id: &str, name: &str, tags: &[(&str, &str)]) -> SideGroup {
        SideGroup {
            id: id.into(),
            name: name.into(),
            order: 0,
            tags: tags
                .iter()
                .map(|(id, n)| SideTag {
                    id: (*id).into(),
                    name: (*n).into(),
                    order: 0,
                })
                .collect(),
        }
    }
    fn lib(groups: Vec<SideGroup>) -> SideLib {
        SideLib { groups }
    }
    fn synced_group(id: &str, name: &str, w: &str, m: &str) -> TagGroup {
        let snap = GroupSnapshot {
            name: name.into(),
            order: 0,
        };
        TagGroup {
            tenant: tenant(),
            id: HubGroupId::new_unchecked(id),
            name: name.into(),
            order: 0,
            name_at: t0(),
            order_at: t0(),
            deleted_at: None,
            wecom: SideLink {
                id: Some(WecomGroupId::new_unchecked(w)),
                base: Some(snap.clone()),
                state: SyncState::Synced,
                error: None,
            },
            mall: SideLink {
                id: Some(MallGroupId::new_unchecked(m)),
                base: Some(snap),
                state: SyncState::Synced,
                error: None,
            },
            scope: None,
            carry_to_mall: true,
            version: 1,
        }
    }
    fn synced_tag(id: &str, group: &str, name: &str, w: &str, m: &str) -> Tag {
        let snap = TagSnapshot {
            name: name.into(),
            order: 0,
            group_id: HubGroupId::new_unchecked(group),
        };
        Tag {
            tenant: tenant(),
            id: HubTagId::new_unchecked(id),
            group_id: HubGroupId::new_unchecked(group),
            name: name.into(),
            order: 0,
            name_at: t0(),
            order_at: t0(),
            group_at: t0(),
            deleted_at: None,
            wecom: SideLink {
                id: Some(WecomTagId::new_unchecked(w)),
                base: Some(snap.clone()),
                state: SyncState::Synced,
                error: None,
            },
            mall: SideLink {
                id: Some(MallTagId::new_unchecked(m)),
                base: Some(snap),
                state: SyncState::Synced,
                error: None,
            },
            version: 1,
        }
    }

    #[test]
    fn a_synced_library_shows_no_drift_and_no_targets() {
        let g = synced_group("g1", "G", "wg1", "mg1");
        let t = synced_tag("t1", "g1", "a", "wt1", "mt1");
        let f = library(
            &[g],
            &[t],
            &lib(vec![sg("wg1", "G", &[("wt1", "a")])]),
            &lib(vec![sg("mg1", "G", &[("mt1", "a")])]),
        );
        assert!(f.drift.is_empty(), "{:?}", f.drift);
        assert!(f.targets.is_empty());
        assert_eq!(f.compared, 2);
    }

    #[test]
    fn silent_changes_on_both_sides_are_counted_by_kind_and_side() {
        let g = synced_group("g1", "G", "wg1", "mg1");
        let t1 = synced_tag("t1", "g1", "a", "wt1", "mt1");
        let t2 = synced_tag("t2", "g1", "b", "wt2", "mt2");
        let f = library(
            &[g],
            &[t1, t2],
            // WeCom renamed a, created c; the mall deleted b.
            &lib(vec![sg(
                "wg1",
                "G",
                &[("wt1", "a2"), ("wt2", "b"), ("wt3", "c")],
            )]),
            &lib(vec![sg("mg1", "G", &[("mt1", "a")])]),
        );
        let want: Counts = [
            ("tags.created.wecom".to_string(), 1),
            ("tags.deleted.mall".to_string(), 1),
            ("tags.renamed.wecom".to_string(), 1),
        ]
        .into();
        assert_eq!(f.drift, want);
        assert_eq!(
            f.targets,
            vec![
                Target::Tag(HubTagId::new_unchecked("t1")),
                Target::Tag(HubTagId::new_unchecked("t2")),
                Target::NewTag {
                    side: Side::Wecom,
                    id: "wt3".into()
                },
            ]
        );
    }

    #[test]
    fn onboarding_links_same_names_and_reports_ambiguous_ones() {
        let f = library(
            &[],
            &[],
            &lib(vec![
                sg(
                    "wg1",
                    "VIP",
                    &[("wt1", "gold"), ("wt2", "silver"), ("wt6", "Plat")],
                ),
                sg("wg2", "Interests", &[("wt3", "x")]),
                sg("wg4", "OnlyW", &[("wt5", "z")]),
            ]),
            &lib(vec![
                sg(
                    "mg1",
                    "VIP",
                    &[("mt1", "gold"), ("mt2", "bronze"), ("mt6", "plat")],
                ),
                sg("mg2", "interests ", &[]),
            ]),
        );
        let groups: Vec<_> = f
            .matches
            .iter()
            .filter_map(|m| match m {
                Match::Group { wecom, mall } => Some((wecom.id.as_str(), mall.id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(groups, vec![("wg1", "mg1")]);
        let tags: Vec<_> = f
            .matches
            .iter()
            .filter_map(|m| match m {
                Match::Tag { wecom, mall, .. } => Some((wecom.id.as_str(), mall.id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(tags, vec![("wt1", "mt1")]);
        assert_eq!(f.ambiguous.len(), 2, "{:?}", f.ambiguous);
        assert!(f.ambiguous[0].contains("`Interests`") && f.ambiguous[0].contains("`interests `"));
        assert!(f.ambiguous[1].contains("`Plat`") && f.ambiguous[1].contains("`plat`"));
        // Created from one side: OnlyW and its tag, silver, bronze; nothing ambiguous.
        assert_eq!(f.drift.get("groups.created.wecom"), Some(&1));
        assert_eq!(f.drift.get("groups.created.mall"), None);
        assert_eq!(f.drift.get("tags.created.wecom"), Some(&2));
        assert_eq!(f.drift.get("tags.created.mall"), Some(&1));
        assert!(!f.targets.iter().any(|t| matches!(t,
            Target::NewGroup { id, .. } | Target::NewTag { id, .. }
                if ["wg2", "mg2", "wt3", "wt6", "mt6"].contains(&id.as_str()))));
    }

    #[test]
    fn fold_forgives_case_width_and_spaces() {
        assert_eq!(fold("  ＶＩＰ\u{3000}会员 "), "vip 会员");
        assert_ne!(fold("金卡"), fold("银卡"));
    }

    #[test]
    fn changes_count_a_wecom_move_once() {
        let before = lib(vec![
            sg("wg1", "G", &[("wt1", "a")]),
            sg("wg2", "H", &[("wt9", "z")]),
        ]);
        let after = lib(vec![
            sg("wg1", "G2", &[]),
            sg("wg2", "H", &[("wt9", "z"), ("wt2", "a")]),
        ]);
        let hb: HashMap<_, _> = [("wt1".into(), "t1".into())].into();
        let ha: HashMap<_, _> = [("wt2".into(), "t1".into())].into();
        let c = changes(Side::Wecom, &before, &after, &hb, &ha);
        let want: Counts = [
            ("groups.renamed.wecom".to_string(), 1),
            ("tags.moved.wecom".to_string(), 1),
        ]
        .into();
        assert_eq!(c, want);
    }
}
