//! Running steps against a [`World`]: each abstract edit is resolved against what its side
//! shows now and carried out there (a side that refuses it — a name a sibling holds, an object
//! gone meanwhile — leaves it as a skipped step); delivery chaos and faults; and the checks
//! made once the system is quiet.

use crate::model::*;
use crate::support::world::{Activity, World, WorldOptions};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tagsync::domain::{MallTagId, MemberId};
use tagsync::mall::client::MallGroupWithTags;
use tagsync::sim::hold::{Hold, Phase};
use tagsync::sim::mall::{Faults, NewMember};
use tagsync::sim::wecom::{Fault, FaultKind, Owner, SimGroup};
use tagsync::wecom::classify::ApiOp;
use tagsync::wecom::crypto::{CallbackCrypto, build_envelope};

/// Long enough for a slow machine; a settle that takes this long has failed anyway.
pub const SETTLE: Duration = Duration::from_secs(60);
/// Longer than the workers' longest backoff (200 ms): a loop with retries in it shows here.
pub const QUIET_WINDOW: Duration = Duration::from_millis(600);
/// No echo loops: at most this many jobs per edit (inbound events and their duplicates,
/// sync jobs, retries after faults, a WeCom group shuffle's one job per group…).
pub const JOBS_PER_EDIT: u64 = 20;

/// Every WeCom API the engine calls.
pub const WECOM_OPS: [ApiOp; 7] = [
    ApiOp::GetToken,
    ApiOp::GetCorpTagList,
    ApiOp::AddCorpTag,
    ApiOp::EditCorpTag,
    ApiOp::DelCorpTag,
    ApiOp::MarkTag,
    ApiOp::GetExternalContact,
];

/// Patterns a run may step around (`TAGSYNC_PROPTEST_AVOID`, comma-separated), each once a
/// known engine problem, kept to narrow down a failure (does it need this pattern?). Unset or
/// `none`, a run avoids nothing:
/// - `same-second`: the console waits for the next second before a change whose callback
///   would repeat one of the same second (same change, same object, same `CreateTime`);
/// - `unlinked-tags`: member edits use only tags linked on all three sides;
/// - `racing-deletes`: every deletion starts from a quiet system and is carried before the
///   next edit;
/// - `name-races`: no edit gives a name that another side's edit since the last quiet moment
///   gave (concurrent creates, renames and moves into one name);
/// - `stale-member-marks`: the hub's member view may list tags since deleted;
/// - `recreated-groups`: the console gives no group the name of a hub group WeCom dropped
///   (emptied) and the hub kept;
/// - `failures`: no injected failures (delivery chaos only).
#[derive(Clone, Copy, Debug, Default)]
pub struct Avoid {
    pub same_second: bool,
    pub unlinked_tags: bool,
    pub racing_deletes: bool,
    pub name_races: bool,
    pub stale_member_marks: bool,
    pub recreated_groups: bool,
    pub failures: bool,
}

impl Avoid {
    pub fn from_env() -> Self {
        let mut a = Avoid::default();
        let Ok(v) = std::env::var("TAGSYNC_PROPTEST_AVOID") else {
            return a;
        };
        for item in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            match item {
                "none" => {}
                "same-second" => a.same_second = true,
                "unlinked-tags" => a.unlinked_tags = true,
                "racing-deletes" => a.racing_deletes = true,
                "name-races" => a.name_races = true,
                "stale-member-marks" => a.stale_member_marks = true,
                "recreated-groups" => a.recreated_groups = true,
                "failures" => a.failures = true,
                other => panic!(
                    "TAGSYNC_PROPTEST_AVOID: unknown item {other:?} (same-second, \
                     unlinked-tags, racing-deletes, name-races, stale-member-marks, recreated-groups, \
                     failures)"
                ),
            }
        }
        a
    }
}

pub fn verbose() -> bool {
    std::env::var("TAGSYNC_CONVERGENCE_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A mall member bound to a WeCom customer with follow relations.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: MemberId,
    pub customer: String,
    pub userids: Vec<String>,
}

/// The seed every run starts from: two mall-made groups (so WeCom's copies are tagsync's
/// own), one console-made group (read-only for tagsync in WeCom), and two members bound to
/// customers that two members of staff follow each.
pub async fn seed(w: &World) -> Result<Vec<Member>, String> {
    let op = w.mall.operator();
    let g1 = op.create_group("G1", 3).map_err(|e| e.to_string())?;
    op.create_tag(&g1.id, "a", 2).map_err(|e| e.to_string())?;
    op.create_tag(&g1.id, "b", 1).map_err(|e| e.to_string())?;
    let g2 = op.create_group("G2", 2).map_err(|e| e.to_string())?;
    op.create_tag(&g2.id, "c", 1).map_err(|e| e.to_string())?;
    w.wecom
        .console()
        .create_group("WG1", 1, &[("w1", 1)])
        .map_err(|e| e.to_string())?;
    let mut members = Vec::new();
    for (customer, userids) in [
        ("wm_m0", ["sales_0", "sales_1"]),
        ("wm_m1", ["sales_1", "sales_2"]),
    ] {
        for u in userids {
            w.wecom
                .console()
                .add_relation(u, customer, None)
                .map_err(|e| e.to_string())?;
        }
        let m = op
            .create_member(NewMember::external(customer))
            .map_err(|e| e.to_string())?;
        members.push(Member {
            id: m.id,
            customer: customer.to_owned(),
            userids: userids.iter().map(|u| (*u).to_owned()).collect(),
        });
    }
    settle(w, "after seeding").await?;
    w.assert_converged()
        .await
        .map_err(|e| format!("the seed did not converge: {e}"))?;
    Ok(members)
}

pub async fn start() -> World {
    World::start(WorldOptions::default()).await
}

/// How long a test waits for one thing it depends on (a held call, a job's visible effect);
/// a slow machine stays well inside.
pub const WITHIN: Duration = Duration::from_secs(30);

/// Polls `holds` every 10 ms until it is true; `Err` naming `what` after [`WITHIN`]. The
/// one way these tests wait for a condition (never a sleep that hopes it came).
pub async fn until<F, Fut>(what: &str, mut holds: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !holds().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out after {WITHIN:?} waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Settles; `Err` with what still moved and the problems so far.
pub async fn settle(w: &World, when: &str) -> Result<(), String> {
    if let Err(e) = w.settle(SETTLE).await {
        return Err(format!(
            "{when}: {e}\nproblems so far: {:#?}",
            w.problems().await
        ));
    }
    Ok(())
}

/// Turns faults and delivery chaos on.
pub fn apply_chaos(w: &World, chaos: &Chaos) {
    let failures = !Avoid::from_env().failures;
    if failures && chaos.wecom_fault_pct > 0 {
        let kind = if chaos.wecom_http_500 {
            FaultKind::HttpStatus(500)
        } else {
            FaultKind::Errcode(-1)
        };
        for op in WECOM_OPS {
            w.wecom.inject(
                op,
                Fault::sometimes(f64::from(chaos.wecom_fault_pct) / 100.0, kind.clone()),
            );
        }
    }
    w.mall.set_faults(Faults {
        fail_rate: if failures {
            f64::from(chaos.mall_fail_pct) / 100.0
        } else {
            0.0
        },
        duplicate_webhook_rate: f64::from(chaos.duplicate_webhook_pct) / 100.0,
        delay_ms: u64::from(chaos.mall_delay_ms),
        ..Faults::default()
    });
}

pub fn clear_chaos(w: &World) {
    w.wecom.clear_faults();
    w.mall.set_faults(Faults::default());
}

// -----------------------------------------------------------------------------------------
// What each side shows now, by name.

/// An object as a step picks it.
#[derive(Clone, Debug)]
struct Obj {
    id: String,
    name: String,
    /// For a tag: its group's id and name.
    group_id: String,
    group_name: String,
    order: u32,
    /// Deleting or moving it (from the mall or the hub) cannot be carried to WeCom.
    protected: bool,
}

/// Groups sorted by name; tags sorted by group name, then name.
#[derive(Clone, Debug, Default)]
struct Lib {
    groups: Vec<Obj>,
    tags: Vec<Obj>,
}

impl Lib {
    fn finish(mut self) -> Self {
        self.groups
            .sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        self.tags
            .sort_by(|a, b| (&a.group_name, &a.name, &a.id).cmp(&(&b.group_name, &b.name, &b.id)));
        self
    }
}

fn s(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_default()
}

fn hub_groups(hub: &Value) -> Vec<Value> {
    hub["groups"].as_array().cloned().unwrap_or_default()
}

/// Which objects the mall or the hub may not delete or move in a run: those WeCom lets
/// tagsync read only (the console's), and those that may yet turn out to be (not linked to
/// WeCom yet, named from the console's pools or like a console object there). A deletion WeCom
/// refuses leaves WeCom holding what the other sides deleted: a difference by WeCom's rules,
/// not the engine's, which this test leaves out.
#[derive(Debug, Default)]
struct Protection {
    hub_tags: HashSet<String>,
    hub_groups: HashSet<String>,
    mall_tags: HashSet<String>,
    mall_groups: HashSet<String>,
}

impl Protection {
    fn of(hub: &Value, wecom: &[SimGroup], mall: &[MallGroupWithTags]) -> Self {
        let w_groups: HashMap<&str, &SimGroup> = wecom.iter().map(|g| (g.id.as_str(), g)).collect();
        let w_tags: HashMap<&str, Owner> = wecom
            .iter()
            .flat_map(|g| g.tags.iter().map(|t| (t.id.as_str(), t.owner)))
            .collect();
        let foreign_groups: HashSet<&str> = wecom
            .iter()
            .filter(|g| g.owner != Owner::App)
            .map(|g| g.name.as_str())
            .collect();
        let foreign_tags: HashSet<(&str, &str)> = wecom
            .iter()
            .flat_map(|g| {
                g.tags
                    .iter()
                    .filter(|t| t.owner != Owner::App)
                    .map(move |t| (g.name.as_str(), t.name.as_str()))
            })
            .collect();
        let read_only = |v: &Value| v["sync"]["wecom"] == "read_only";

        let mut p = Protection::default();
        let mut by_mall_tag: HashMap<String, bool> = HashMap::new();
        let mut by_mall_group: HashMap<String, bool> = HashMap::new();
        for g in hub_groups(hub) {
            let gname = s(&g["name"]);
            let wg = g["wecom_id"].as_str().and_then(|id| w_groups.get(id));
            let mut gp = read_only(&g)
                || match wg {
                    Some(wg) => {
                        wg.owner != Owner::App || wg.tags.iter().any(|t| t.owner != Owner::App)
                    }
                    None => {
                        CONSOLE_GROUPS.contains(&gname.as_str())
                            || foreign_groups.contains(gname.as_str())
                    }
                };
            for t in g["tags"].as_array().cloned().unwrap_or_default() {
                let tname = s(&t["name"]);
                let owner = t["wecom_id"].as_str().and_then(|id| w_tags.get(id));
                let tp = read_only(&t)
                    || match owner {
                        Some(o) => *o != Owner::App,
                        None => {
                            CONSOLE_TAGS.contains(&tname.as_str())
                                || foreign_tags.contains(&(gname.as_str(), tname.as_str()))
                        }
                    };
                if tp {
                    gp = true;
                    p.hub_tags.insert(s(&t["id"]));
                }
                if let Some(m) = t["mall_id"].as_str() {
                    by_mall_tag.insert(m.to_owned(), tp);
                }
            }
            if gp {
                p.hub_groups.insert(s(&g["id"]));
            }
            if let Some(m) = g["mall_id"].as_str() {
                by_mall_group.insert(m.to_owned(), gp);
            }
        }
        for g in mall {
            let gname = g.group.name.as_str();
            let mut gp = by_mall_group
                .get(g.group.id.as_str())
                .copied()
                .unwrap_or_else(|| {
                    CONSOLE_GROUPS.contains(&gname) || foreign_groups.contains(gname)
                });
            for t in &g.tags {
                let tp = by_mall_tag.get(t.id.as_str()).copied().unwrap_or_else(|| {
                    CONSOLE_TAGS.contains(&t.name.as_str())
                        || foreign_tags.contains(&(gname, t.name.as_str()))
                });
                if tp {
                    gp = true;
                    p.mall_tags.insert(t.id.as_str().to_owned());
                }
            }
            if gp {
                p.mall_groups.insert(g.group.id.as_str().to_owned());
            }
        }
        p
    }
}

/// The names an edit would give (`g:{group}`, `t:{group}/{tag}`), resolved as the edit is.
fn name_keys(
    side: Side,
    edit: &Edit,
    wecom: &[SimGroup],
    mall: &[MallGroupWithTags],
    hub: &Value,
    p: &Protection,
) -> Vec<String> {
    let (lib, groups, tags): (Lib, &[&str], &[&str]) = match side {
        Side::Wecom => (wecom_lib(wecom), &CONSOLE_GROUPS, &CONSOLE_TAGS),
        Side::Mall => (mall_lib(mall, p), &GROUPS, &TAGS),
        Side::Hub => (hub_lib(hub, p), &GROUPS, &TAGS),
    };
    let gname = |i: u8| groups[usize::from(i) % groups.len()];
    let tname = |i: u8| tags[usize::from(i) % tags.len()];
    match *edit {
        Edit::CreateGroup { name, tag, .. } => vec![
            format!("g:{}", gname(name)),
            format!("t:{}/{}", gname(name), tname(tag)),
        ],
        Edit::CreateTag { group, name, .. } => pick(&lib.groups, group)
            .map(|g| vec![format!("t:{}/{}", g.name, tname(name))])
            .unwrap_or_default(),
        Edit::RenameGroup { name, .. } => vec![format!("g:{}", gname(name))],
        Edit::RenameTag { tag, name } => pick(&lib.tags, tag)
            .map(|t| vec![format!("t:{}/{}", t.group_name, tname(name))])
            .unwrap_or_default(),
        Edit::MoveTag { tag, group } => match (pick(&lib.tags, tag), pick(&lib.groups, group)) {
            (Some(t), Some(g)) => vec![format!("t:{}/{}", g.name, t.name)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Hub tags linked on both sides, by each side's id.
#[derive(Debug, Default)]
struct Linked {
    hub: HashSet<String>,
    wecom: HashSet<String>,
    mall: HashSet<String>,
}

impl Linked {
    fn of(hub: &Value) -> Self {
        let mut l = Linked::default();
        for g in hub_groups(hub) {
            for t in g["tags"].as_array().cloned().unwrap_or_default() {
                if let (Some(wid), Some(mid)) = (t["wecom_id"].as_str(), t["mall_id"].as_str()) {
                    l.hub.insert(s(&t["id"]));
                    l.wecom.insert(wid.to_owned());
                    l.mall.insert(mid.to_owned());
                }
            }
        }
        l
    }
}

fn wecom_lib(wecom: &[SimGroup]) -> Lib {
    let mut lib = Lib::default();
    for g in wecom {
        lib.groups.push(Obj {
            id: g.id.clone(),
            name: g.name.clone(),
            group_id: String::new(),
            group_name: String::new(),
            order: g.order,
            protected: false,
        });
        for t in &g.tags {
            lib.tags.push(Obj {
                id: t.id.clone(),
                name: t.name.clone(),
                group_id: g.id.clone(),
                group_name: g.name.clone(),
                order: t.order,
                protected: false,
            });
        }
    }
    lib.finish()
}

fn mall_lib(mall: &[MallGroupWithTags], p: &Protection) -> Lib {
    let mut lib = Lib::default();
    for g in mall {
        lib.groups.push(Obj {
            id: g.group.id.as_str().to_owned(),
            name: g.group.name.clone(),
            group_id: String::new(),
            group_name: String::new(),
            order: g.group.order,
            protected: p.mall_groups.contains(g.group.id.as_str()),
        });
        for t in &g.tags {
            lib.tags.push(Obj {
                id: t.id.as_str().to_owned(),
                name: t.name.clone(),
                group_id: g.group.id.as_str().to_owned(),
                group_name: g.group.name.clone(),
                order: t.order,
                protected: p.mall_tags.contains(t.id.as_str()),
            });
        }
    }
    lib.finish()
}

fn hub_lib(hub: &Value, p: &Protection) -> Lib {
    let mut lib = Lib::default();
    for g in hub_groups(hub) {
        let gid = s(&g["id"]);
        let gname = s(&g["name"]);
        lib.groups.push(Obj {
            id: gid.clone(),
            name: gname.clone(),
            group_id: String::new(),
            group_name: String::new(),
            order: g["order"].as_u64().unwrap_or(0) as u32,
            protected: p.hub_groups.contains(&gid),
        });
        for t in g["tags"].as_array().cloned().unwrap_or_default() {
            let tid = s(&t["id"]);
            lib.tags.push(Obj {
                protected: p.hub_tags.contains(&tid),
                id: tid,
                name: s(&t["name"]),
                group_id: gid.clone(),
                group_name: gname.clone(),
                order: t["order"].as_u64().unwrap_or(0) as u32,
            });
        }
    }
    lib.finish()
}

// -----------------------------------------------------------------------------------------
// Carrying out steps.

/// What became of a step.
enum Done {
    /// Carried out: what was done.
    Applied(String),
    /// Not applicable now, or refused by the side: why.
    Skipped(String),
}

/// Runs steps against one world and keeps the record of what each step did.
pub struct Driver<'a> {
    pub w: &'a World,
    pub members: Vec<Member>,
    /// One line per step: the step and what became of it.
    pub log: Vec<String>,
    pub applied: usize,
    pub skipped: usize,
    /// WeCom group ids and names the mall or the hub deleted since the last settle: the
    /// console adds no tag to them (WeCom would then refuse tagsync the group's deletion).
    doomed_groups: HashSet<String>,
    /// The second of the last console callback per (change, object); see `space`.
    wecom_keys: HashMap<String, i64>,
    /// Names given since the last settle, and by which side (`name-races`).
    claims: HashMap<String, Side>,
    pub avoid: Avoid,
    started: Instant,
    /// Holds armed by `Meanwhile` steps whose write has not come yet.
    pending: Vec<Pending>,
    /// Settles so far: changes between two settles are concurrent.
    epoch: usize,
    /// The side and side id of the tag the last member edit touched.
    touched: Option<(Side, String)>,
    /// Every member edit applied: (member, hub tag, epoch, the [`Expected`] it made if any).
    touches: Vec<(MemberId, String, usize, Option<usize>)>,
    /// What third parties did while tagsync's writes were held, to be found everywhere.
    pub expected: Vec<Expected>,
}

/// A hold armed by a `Meanwhile` step.
struct Pending {
    hold: Hold,
    write: Write,
    side: Side,
    edit: Edit,
    step: usize,
}

/// A member tag change a third party made while tagsync's write was held: unless another
/// member edit touched the same (member, tag) since the settle before it, or the tag is gone,
/// the member must end with (`present`) or without the tag on every side.
#[derive(Clone, Debug)]
pub struct Expected {
    pub member: MemberId,
    pub hub_tag: String,
    pub present: bool,
    epoch: usize,
    pub what: String,
    /// For a change made in WeCom: the WeCom tag id it put on (or took off) the relation.
    pub wecom_id: Option<String>,
}

impl<'a> Driver<'a> {
    pub fn new(w: &'a World, members: Vec<Member>) -> Self {
        Self {
            w,
            members,
            log: Vec::new(),
            applied: 0,
            skipped: 0,
            doomed_groups: HashSet::new(),
            wecom_keys: HashMap::new(),
            claims: HashMap::new(),
            avoid: Avoid::from_env(),
            started: Instant::now(),
            pending: Vec::new(),
            epoch: 0,
            touched: None,
            touches: Vec::new(),
            expected: Vec::new(),
        }
    }

    fn note(&mut self, line: String) {
        let line = format!(
            "{:>3}. [{:>6} ms] {line}",
            self.log.len() + 1,
            self.started.elapsed().as_millis()
        );
        if verbose() {
            eprintln!("{line}");
        }
        self.log.push(line);
    }

    pub fn record(&self) -> String {
        self.log.join("\n")
    }

    /// Runs one step. `Err` only when the system itself failed (a settle that never came,
    /// an admin API that answered 5xx, a re-sent callback refused).
    pub async fn run(&mut self, step: &Step) -> Result<(), String> {
        self.serve_pending().await?;
        match step {
            Step::Edit(side, edit) => {
                let done = self.edit(*side, edit).await?;
                if self.avoid.racing_deletes
                    && matches!(edit, Edit::DeleteTag { .. } | Edit::DeleteGroup { .. })
                    && matches!(done, Done::Applied(_))
                {
                    self.settle("the settle after a deletion").await?;
                }
                match done {
                    Done::Applied(what) => {
                        self.applied += 1;
                        self.note(format!("{step} → {what}"));
                    }
                    Done::Skipped(why) => {
                        self.skipped += 1;
                        self.note(format!("{step} → skipped: {why}"));
                    }
                }
            }
            Step::Settle => {
                self.note("settle".into());
                self.settle("a settle step").await?;
            }
            Step::Pause(i) => {
                self.note(step.to_string());
                let until = Instant::now() + Duration::from_millis(pause_ms(*i));
                while Instant::now() < until {
                    self.serve_pending().await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Step::Meanwhile {
                write,
                side,
                edit,
                pick,
            } => {
                let hold = match write {
                    Write::MallMemberTags => {
                        self.w
                            .mall
                            .hold("POST", "/members/*", Phase::Before, Value::Null)
                    }
                    Write::MallTag => {
                        self.w
                            .mall
                            .hold("PATCH", "/tags/*", Phase::Before, Value::Null)
                    }
                    Write::MallGroup => {
                        self.w
                            .mall
                            .hold("PATCH", "/tag-groups/*", Phase::Before, Value::Null)
                    }
                    Write::WecomMarkTag => {
                        self.w
                            .wecom
                            .hold(ApiOp::MarkTag, Phase::Before, Value::Null)
                    }
                    Write::WecomEdit => {
                        self.w
                            .wecom
                            .hold(ApiOp::EditCorpTag, Phase::Before, Value::Null)
                    }
                    Write::WecomAdd => {
                        self.w
                            .wecom
                            .hold(ApiOp::AddCorpTag, Phase::Before, Value::Null)
                    }
                };
                let n = self.log.len() + 1;
                self.pending.push(Pending {
                    hold,
                    write: *write,
                    side: *side,
                    edit: *edit,
                    step: n,
                });
                let (trigger_side, trigger) = write.trigger(*pick);
                let done = self.edit(trigger_side, &trigger).await?;
                let what = match done {
                    Done::Applied(what) => {
                        self.applied += 1;
                        what
                    }
                    Done::Skipped(why) => {
                        self.skipped += 1;
                        format!("skipped: {why}")
                    }
                };
                self.note(format!("{step} → armed; {trigger_side}: {what}"));
            }
            Step::Redeliver(i) => {
                let what = redeliver(self.w, *i).await?;
                self.note(format!("{step} → {what}"));
            }
            Step::HoldNextWebhook => {
                self.w.mall.update_faults(|f| f.reorder_webhooks_next += 1);
                self.note(step.to_string());
            }
        }
        Ok(())
    }

    async fn edit(&mut self, side: Side, edit: &Edit) -> Result<Done, String> {
        let w = self.w;
        if self.avoid.racing_deletes
            && matches!(edit, Edit::DeleteTag { .. } | Edit::DeleteGroup { .. })
        {
            self.settle("the settle before a deletion").await?;
        }
        let hub = w.hub_groups().await;
        let wecom = w.wecom_library();
        let mall = w.mall.library();
        let p = Protection::of(&hub, &wecom, &mall);
        if let (
            true,
            Side::Wecom,
            Edit::CreateGroup { name, .. } | Edit::RenameGroup { name, .. },
        ) = (self.avoid.recreated_groups, side, edit)
        {
            let g = CONSOLE_GROUPS[usize::from(*name) % CONSOLE_GROUPS.len()];
            if hub_groups(&hub)
                .iter()
                .any(|h| h["name"] == g && h["wecom_id"].is_null())
            {
                return Ok(Done::Skipped(format!(
                    "the hub keeps a group {g} WeCom dropped"
                )));
            }
        }
        if self.avoid.name_races {
            let keys = name_keys(side, edit, &wecom, &mall, &hub, &p);
            if let Some(other) = keys
                .iter()
                .find_map(|k| self.claims.get(k).filter(|s| **s != side))
            {
                return Ok(Done::Skipped(format!(
                    "the {other} gave one of {keys:?} since the last settle"
                )));
            }
            for k in keys {
                self.claims.insert(k, side);
            }
        }
        if let Edit::MemberTag {
            member,
            relation,
            tag,
            add,
        } = *edit
        {
            let Some(m) = pick(&self.members, member).cloned() else {
                return Ok(Done::Skipped("no member".into()));
            };
            self.touched = None;
            let done = match side {
                Side::Wecom => {
                    self.wecom_member(&m, &wecom, &hub, relation, tag, add)
                        .await
                }
                Side::Mall => self.mall_member(&m, &mall, &hub, &p, tag, add),
                Side::Hub => self.hub_member(&m, &hub, &p, relation, tag, add).await?,
            };
            if let Some((side, id)) = self.touched.take()
                && let Some(hub_tag) = hub_tag_id(&hub, side, &id)
            {
                self.touches.push((m.id.clone(), hub_tag, self.epoch, None));
            }
            return Ok(done);
        }
        match side {
            Side::Wecom => Ok(self.wecom_edit(&wecom, edit).await),
            Side::Mall => Ok(self.mall_edit(&hub, &mall, &p, edit)),
            Side::Hub => self.hub_edit(&hub, &p, edit).await,
        }
    }

    /// Settles, serving the holds of `Meanwhile` steps whose write comes meanwhile (a held
    /// write keeps its job, and so the system, from going quiet). Changes after it are
    /// concurrent with none before.
    pub async fn settle(&mut self, when: &str) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            self.serve_pending().await?;
            match self.w.settle(Duration::from_millis(250)).await {
                Ok(()) if !self.serve_pending().await? => break,
                Ok(()) => {}
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{when}: {e}\nproblems so far: {:#?}",
                        self.w.problems().await
                    ));
                }
                Err(_) => {}
            }
        }
        self.doomed_groups.clear();
        self.claims.clear();
        self.epoch += 1;
        Ok(())
    }

    /// Disarms the holds whose write never came (before the final checks).
    pub fn disarm(&mut self) {
        for p in self.pending.drain(..) {
            self.log.push(format!(
                "     (step {}: tagsync made no {} after it; disarmed)",
                p.step, p.write
            ));
        }
    }

    /// For every `Meanwhile` hold whose write is held now: the third party's edit, then the
    /// release. `Ok(true)` if any was served.
    async fn serve_pending(&mut self) -> Result<bool, String> {
        let mut served = false;
        let mut i = 0;
        while i < self.pending.len() {
            let Some(held) = self.pending[i].hold.try_held() else {
                i += 1;
                continue;
            };
            let p = self.pending.remove(i);
            let request = held.request.clone();
            let done = if p.write.is_member() {
                self.meanwhile_member(&p, &request).await
            } else {
                // Boxed: an edit may settle, which serves holds.
                Box::pin(self.edit(p.side, &p.edit)).await
            };
            held.release();
            served = true;
            let what = match done? {
                Done::Applied(what) => {
                    self.applied += 1;
                    what
                }
                Done::Skipped(why) => {
                    self.skipped += 1;
                    format!("skipped: {why}")
                }
            };
            self.note(format!(
                "(step {}) tagsync's {} held ({}); meanwhile {}: {what}; released",
                p.step,
                p.write,
                compact(&request),
                p.side
            ));
        }
        Ok(served)
    }

    /// A third party changes the tags of the member whose write (`request`) tagsync is
    /// making: the mall's operator or the hub's tags or untags it, or a person in WeCom does
    /// on the relation being written (or another one of the customer's). Only a change that
    /// changes something is made (an add of a tag the member lacks there, a removal of one
    /// it has), and it is remembered as [`Expected`].
    async fn meanwhile_member(&mut self, p: &Pending, request: &Value) -> Result<Done, String> {
        let Edit::MemberTag {
            relation, tag, add, ..
        } = p.edit
        else {
            return Ok(Done::Skipped("not a member edit".into()));
        };
        let path = request["path"].as_str().unwrap_or_default();
        let member = match p.write {
            Write::MallMemberTags => path
                .strip_prefix("/members/")
                .and_then(|r| r.strip_suffix("/tags"))
                .and_then(|id| self.members.iter().find(|m| m.id.as_str() == id)),
            _ => {
                let customer = request["external_userid"].as_str().unwrap_or_default();
                self.members.iter().find(|m| m.customer == customer)
            }
        };
        let Some(m) = member.cloned() else {
            return Ok(Done::Skipped(format!(
                "no member of ours in {}",
                compact(request)
            )));
        };
        let w = self.w;
        let hub = w.hub_groups().await;
        let (side_id, outcome): (String, Result<(), String>) = match p.side {
            Side::Mall => {
                let has: Vec<MallTagId> =
                    w.mall.member(&m.id).map(|x| x.tag_ids).unwrap_or_default();
                let mut all: Vec<MallTagId> = w
                    .mall
                    .library()
                    .into_iter()
                    .flat_map(|g| g.tags.into_iter().map(|t| t.id))
                    .collect();
                all.sort();
                let candidates: Vec<MallTagId> =
                    all.into_iter().filter(|t| has.contains(t) != add).collect();
                let Some(t) = pick(&candidates, tag).cloned() else {
                    return Ok(Done::Skipped("no mall tag to change".into()));
                };
                let op = w.mall.operator();
                let r = if add {
                    op.tag_member(&m.id, &t)
                } else {
                    op.untag_member(&m.id, &t)
                };
                (t.to_string(), r.map(|_| ()).map_err(|e| e.to_string()))
            }
            Side::Wecom => {
                let userid = match request["userid"].as_str() {
                    Some(u) if relation % 2 == 0 => u.to_owned(),
                    _ => match pick(&m.userids, relation) {
                        Some(u) => u.clone(),
                        None => return Ok(Done::Skipped("no relation".into())),
                    },
                };
                let has = w
                    .wecom
                    .relation_tags(&userid, &m.customer)
                    .unwrap_or_default();
                let mut all: Vec<String> = w
                    .wecom_library()
                    .into_iter()
                    .flat_map(|g| g.tags.into_iter().map(|t| t.id))
                    .collect();
                all.sort();
                let candidates: Vec<String> =
                    all.into_iter().filter(|t| has.contains(t) != add).collect();
                let Some(t) = pick(&candidates, tag).cloned() else {
                    return Ok(Done::Skipped("no WeCom tag to change".into()));
                };
                let (a, r): (&[&str], &[&str]) = if add {
                    (&[t.as_str()], &[])
                } else {
                    (&[], &[t.as_str()])
                };
                let r = w.wecom.console().tag_relation(&userid, &m.customer, a, r);
                (t.clone(), r.map_err(|e| e.to_string()))
            }
            Side::Hub => {
                let (status, view) = w
                    .admin(Method::GET, &format!("/members/{}", m.id), None)
                    .await;
                let has: Vec<String> = if status == 200 {
                    view["tag_ids"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(s)
                        .collect()
                } else {
                    Vec::new()
                };
                let mut all: Vec<String> = hub_groups(&hub)
                    .iter()
                    .flat_map(|g| g["tags"].as_array().cloned().unwrap_or_default())
                    .map(|t| s(&t["id"]))
                    .collect();
                all.sort();
                let candidates: Vec<String> =
                    all.into_iter().filter(|t| has.contains(t) != add).collect();
                let Some(t) = pick(&candidates, tag).cloned() else {
                    return Ok(Done::Skipped("no hub tag to change".into()));
                };
                let body = if add {
                    json!({"add": [t]})
                } else {
                    json!({"remove": [t]})
                };
                let (status, answer) = w
                    .admin(Method::POST, &format!("/members/{}/tags", m.id), Some(body))
                    .await;
                let r = match status {
                    200..=299 => Ok(()),
                    400..=499 => Err(format!("the hub refused ({status}): {answer}")),
                    _ => return Err(format!("POST …/members/{}/tags: {status} {answer}", m.id)),
                };
                (t.clone(), r)
            }
        };
        if let Err(e) = outcome {
            return Ok(Done::Skipped(format!("{} refused: {e}", p.side)));
        }
        let verb = if add { "tagged" } else { "untagged" };
        let Some(hub_tag) = hub_tag_id(&hub, p.side, &side_id) else {
            return Ok(Done::Applied(format!(
                "{verb} member {} with {} {side_id} (not linked in the hub yet: not followed)",
                m.id, p.side
            )));
        };
        let name = tag_name(&hub, &hub_tag);
        let index = self.expected.len();
        self.touches
            .push((m.id.clone(), hub_tag.clone(), self.epoch, Some(index)));
        self.expected.push(Expected {
            member: m.id.clone(),
            hub_tag: hub_tag.clone(),
            present: add,
            epoch: self.epoch,
            what: format!("step {}: {verb} member {} with {name}", p.step, m.id),
            wecom_id: (p.side == Side::Wecom).then(|| side_id.clone()),
        });
        Ok(Done::Applied(format!("{verb} member {} with {name}", m.id)))
    }

    /// The expectations no other member edit touched since the settle before them.
    pub fn expectations(&self) -> Vec<Expected> {
        self.expected
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                !self.touches.iter().any(|(m, t, epoch, own)| {
                    *own != Some(*i) && *m == e.member && *t == e.hub_tag && *epoch >= e.epoch
                })
            })
            .map(|(_, e)| e.clone())
            .collect()
    }

    // WeCom: a person in the console (who may edit anything, tagsync's objects included).

    /// With `TAGSYNC_PROPTEST_AVOID=same-second`: before a console change whose callback
    /// would repeat one sent in the same second (same change, same object, same
    /// `CreateTime`), wait for the next second, so that no two callbacks share a dedupe key
    /// (callbacks carry no event id; tagsync runs a repeated key's jobs again).
    async fn space(&mut self, key: String) {
        if !self.avoid.same_second {
            return;
        }
        let now = chrono::Utc::now();
        if self.wecom_keys.get(&key) == Some(&now.timestamp()) {
            let into = u64::from(now.timestamp_subsec_millis());
            tokio::time::sleep(Duration::from_millis(1000 - into.min(999) + 5)).await;
            self.note(format!("(waited for the next second before {key})"));
        }
        self.wecom_keys.insert(key, chrono::Utc::now().timestamp());
    }

    async fn wecom_edit(&mut self, wecom: &[SimGroup], edit: &Edit) -> Done {
        let lib = wecom_lib(wecom);
        let w = self.w;
        let console = w.wecom.console();
        let outcome = match *edit {
            Edit::CreateGroup { name, order, tag } => {
                let g = CONSOLE_GROUPS[usize::from(name) % CONSOLE_GROUPS.len()];
                let t = CONSOLE_TAGS[usize::from(tag) % CONSOLE_TAGS.len()];
                let o = order_of(order);
                console.create_group(g, o, &[(t, 1)]).map(|c| {
                    format!(
                        "created group {g} (order {o}) = {} with tag {t}",
                        c.group_id
                    )
                })
            }
            Edit::CreateTag { group, name, order } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("WeCom has no group".into());
                };
                if self.doomed_groups.contains(&g.id) || self.doomed_groups.contains(&g.name) {
                    return Done::Skipped(format!(
                        "group {} is being deleted on another side",
                        g.name
                    ));
                }
                let t = CONSOLE_TAGS[usize::from(name) % CONSOLE_TAGS.len()];
                let o = order_of(order);
                console
                    .create_tag(&g.id, t, o)
                    .map(|id| format!("created tag {}/{t} (order {o}) = {id}", g.name))
            }
            Edit::RenameGroup { group, name } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("WeCom has no group".into());
                };
                let n = CONSOLE_GROUPS[usize::from(name) % CONSOLE_GROUPS.len()];
                self.space(format!("update {}", g.id)).await;
                console
                    .rename(&g.id, n)
                    .map(|()| format!("renamed group {} ({}) to {n}", g.name, g.id))
            }
            Edit::RenameTag { tag, name } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("WeCom has no tag".into());
                };
                let n = CONSOLE_TAGS[usize::from(name) % CONSOLE_TAGS.len()];
                self.space(format!("update {}", t.id)).await;
                console
                    .rename(&t.id, n)
                    .map(|()| format!("renamed tag {}/{} ({}) to {n}", t.group_name, t.name, t.id))
            }
            Edit::ReorderGroup { group, .. } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("WeCom has no group".into());
                };
                // Drag it to the top: every group gets a new order.
                let mut ids: Vec<&str> = vec![g.id.as_str()];
                ids.extend(wecom.iter().map(|x| x.id.as_str()).filter(|id| *id != g.id));
                self.space("shuffle".into()).await;
                console
                    .reorder_groups(&ids)
                    .map(|()| format!("dragged group {} to the top", g.name))
            }
            Edit::ReorderTag { tag, .. } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("WeCom has no tag".into());
                };
                let Some(g) = wecom.iter().find(|g| g.id == t.group_id) else {
                    return Done::Skipped("the tag's group is gone".into());
                };
                let mut ids: Vec<&str> = vec![t.id.as_str()];
                ids.extend(
                    g.tags
                        .iter()
                        .map(|x| x.id.as_str())
                        .filter(|id| *id != t.id),
                );
                self.space(format!("shuffle {}", g.id)).await;
                console
                    .reorder_tags(&g.id, &ids)
                    .map(|()| format!("dragged tag {}/{} to the top of its group", g.name, t.name))
            }
            Edit::MoveTag { .. } => return Done::Skipped("WeCom cannot move a tag".into()),
            Edit::DeleteTag { tag } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("WeCom has no tag".into());
                };
                console
                    .delete(&t.id)
                    .map(|()| format!("deleted tag {}/{} ({})", t.group_name, t.name, t.id))
            }
            Edit::DeleteGroup { group } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("WeCom has no group".into());
                };
                console
                    .delete(&g.id)
                    .map(|()| format!("deleted group {} ({})", g.name, g.id))
            }
            Edit::MemberTag { .. } => unreachable!("member edits are handled apart"),
        };
        match outcome {
            Ok(what) => Done::Applied(what),
            Err(e) => Done::Skipped(format!("WeCom refused: {e}")),
        }
    }

    async fn wecom_member(
        &mut self,
        m: &Member,
        wecom: &[SimGroup],
        hub: &Value,
        relation: u8,
        tag: u8,
        add: bool,
    ) -> Done {
        let Some(userid) = pick(&m.userids, relation) else {
            return Done::Skipped("no relation".into());
        };
        let mut lib = wecom_lib(wecom);
        let linked = Linked::of(hub);
        if self.avoid.unlinked_tags {
            lib.tags.retain(|t| linked.wecom.contains(&t.id));
        }
        let names: HashMap<&str, String> = lib
            .tags
            .iter()
            .map(|t| (t.id.as_str(), format!("{}/{}", t.group_name, t.name)))
            .collect();
        let w = self.w;
        let console = w.wecom.console();
        self.space(format!("edit {userid} {}", m.customer)).await;
        let (id, r) = if add {
            let Some(t) = pick(&lib.tags, tag) else {
                return Done::Skipped("WeCom has no tag".into());
            };
            (
                t.id.clone(),
                console.tag_relation(userid, &m.customer, &[t.id.as_str()], &[]),
            )
        } else {
            let mut current = self
                .w
                .wecom
                .relation_tags(userid, &m.customer)
                .unwrap_or_default();
            if self.avoid.unlinked_tags {
                current.retain(|t| linked.wecom.contains(t));
            }
            current.sort();
            let Some(id) = pick(&current, tag).cloned() else {
                return Done::Skipped(format!("{userid} → {} carries no tag", m.customer));
            };
            let r = console.tag_relation(userid, &m.customer, &[], &[id.as_str()]);
            (id, r)
        };
        let name = names
            .get(id.as_str())
            .cloned()
            .unwrap_or_else(|| id.clone());
        if r.is_ok() {
            self.touched = Some((Side::Wecom, id.clone()));
        }
        match r {
            Ok(()) => Done::Applied(format!(
                "{} {name} on relation {userid} → {} (member {})",
                if add { "tagged" } else { "untagged" },
                m.customer,
                m.id
            )),
            Err(e) => Done::Skipped(format!("WeCom refused: {e}")),
        }
    }

    // The mall's operator.

    fn mall_edit(
        &mut self,
        hub: &Value,
        mall: &[MallGroupWithTags],
        p: &Protection,
        edit: &Edit,
    ) -> Done {
        let lib = mall_lib(mall, p);
        let op = self.w.mall.operator();
        let group_id = |id: &str| {
            mall.iter()
                .find(|g| g.group.id.as_str() == id)
                .map(|g| g.group.id.clone())
        };
        let tag_id = |id: &str| {
            mall.iter()
                .flat_map(|g| g.tags.iter())
                .find(|t| t.id.as_str() == id)
                .map(|t| t.id.clone())
        };
        let outcome: Result<String, String> = match *edit {
            Edit::CreateGroup { name, order, tag } => {
                let g = GROUPS[usize::from(name) % GROUPS.len()];
                let t = TAGS[usize::from(tag) % TAGS.len()];
                let o = order_of(order);
                match op.create_group(g, o) {
                    Err(e) => Err(e.to_string()),
                    Ok(created) => match op.create_tag(&created.id, t, 1) {
                        Ok(_) => Ok(format!(
                            "created group {g} (order {o}) = {} and tag {t} in it",
                            created.id
                        )),
                        Err(e) => Ok(format!(
                            "created group {g} (order {o}) = {}; tag {t} refused: {e}",
                            created.id
                        )),
                    },
                }
            }
            Edit::CreateTag { group, name, order } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("the mall has no group".into());
                };
                let t = TAGS[usize::from(name) % TAGS.len()];
                let o = order_of(order);
                op.create_tag(&group_id(&g.id).expect("listed"), t, o)
                    .map(|x| format!("created tag {}/{t} (order {o}) = {}", g.name, x.id))
                    .map_err(|e| e.to_string())
            }
            Edit::RenameGroup { group, name } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("the mall has no group".into());
                };
                let n = GROUPS[usize::from(name) % GROUPS.len()];
                op.rename_group(&group_id(&g.id).expect("listed"), n)
                    .map(|_| format!("renamed group {} ({}) to {n}", g.name, g.id))
                    .map_err(|e| e.to_string())
            }
            Edit::RenameTag { tag, name } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("the mall has no tag".into());
                };
                let n = TAGS[usize::from(name) % TAGS.len()];
                op.rename_tag(&tag_id(&t.id).expect("listed"), n)
                    .map(|_| format!("renamed tag {}/{} ({}) to {n}", t.group_name, t.name, t.id))
                    .map_err(|e| e.to_string())
            }
            Edit::ReorderGroup { group, order } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("the mall has no group".into());
                };
                let o = order_of(order);
                op.reorder_group(&group_id(&g.id).expect("listed"), o)
                    .map(|_| format!("group {} order {} → {o}", g.name, g.order))
                    .map_err(|e| e.to_string())
            }
            Edit::ReorderTag { tag, order } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("the mall has no tag".into());
                };
                let o = order_of(order);
                op.reorder_tag(&tag_id(&t.id).expect("listed"), o)
                    .map(|_| format!("tag {}/{} order {} → {o}", t.group_name, t.name, t.order))
                    .map_err(|e| e.to_string())
            }
            Edit::MoveTag { tag, group } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("the mall has no tag".into());
                };
                if t.protected {
                    return Done::Skipped(format!(
                        "{}/{} is WeCom-read-only: WeCom would keep it where it is",
                        t.group_name, t.name
                    ));
                }
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("the mall has no group".into());
                };
                if g.id == t.group_id {
                    return Done::Skipped("already in that group".into());
                }
                op.move_tag(
                    &tag_id(&t.id).expect("listed"),
                    &group_id(&g.id).expect("listed"),
                )
                .map(|_| format!("moved tag {}/{} to group {}", t.group_name, t.name, g.name))
                .map_err(|e| e.to_string())
            }
            Edit::DeleteTag { tag } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Done::Skipped("the mall has no tag".into());
                };
                if t.protected {
                    return Done::Skipped(format!(
                        "{}/{} is WeCom-read-only: WeCom would keep it",
                        t.group_name, t.name
                    ));
                }
                op.delete_tag(&tag_id(&t.id).expect("listed"))
                    .map(|()| format!("deleted tag {}/{} ({})", t.group_name, t.name, t.id))
                    .map_err(|e| e.to_string())
            }
            Edit::DeleteGroup { group } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Done::Skipped("the mall has no group".into());
                };
                if g.protected {
                    return Done::Skipped(format!(
                        "group {} holds what WeCom lets tagsync read only",
                        g.name
                    ));
                }
                let r = op
                    .delete_group(&group_id(&g.id).expect("listed"))
                    .map(|()| format!("deleted group {} ({})", g.name, g.id))
                    .map_err(|e| e.to_string());
                if r.is_ok() {
                    let wecom_id = hub_groups(hub)
                        .iter()
                        .find(|h| h["mall_id"] == g.id.as_str())
                        .and_then(|h| h["wecom_id"].as_str().map(str::to_owned));
                    self.doom_group(g.name.clone(), wecom_id);
                }
                r
            }
            Edit::MemberTag { .. } => unreachable!("member edits are handled apart"),
        };
        match outcome {
            Ok(what) => Done::Applied(what),
            Err(e) => Done::Skipped(format!("the mall refused: {e}")),
        }
    }

    /// Remembers a group deleted on the mall or the hub side, by name and (when the hub
    /// links it already) by its WeCom id.
    fn doom_group(&mut self, name: String, wecom_id: Option<String>) {
        self.doomed_groups.insert(name);
        if let Some(id) = wecom_id {
            self.doomed_groups.insert(id);
        }
    }

    fn mall_member(
        &mut self,
        m: &Member,
        mall: &[MallGroupWithTags],
        hub: &Value,
        p: &Protection,
        tag: u8,
        add: bool,
    ) -> Done {
        let mut lib = mall_lib(mall, p);
        let linked = Linked::of(hub);
        if self.avoid.unlinked_tags {
            lib.tags.retain(|t| linked.mall.contains(&t.id));
        }
        let names: HashMap<&str, String> = lib
            .tags
            .iter()
            .map(|t| (t.id.as_str(), format!("{}/{}", t.group_name, t.name)))
            .collect();
        let op = self.w.mall.operator();
        let all_ids: Vec<_> = mall
            .iter()
            .flat_map(|g| g.tags.iter().map(|t| t.id.clone()))
            .collect();
        let (id, r) = if add {
            let Some(t) = pick(&lib.tags, tag) else {
                return Done::Skipped("the mall has no tag".into());
            };
            let id = all_ids
                .iter()
                .find(|i| i.as_str() == t.id)
                .cloned()
                .expect("listed");
            let r = op.tag_member(&m.id, &id);
            (id, r)
        } else {
            let mut current = self
                .w
                .mall
                .member(&m.id)
                .map(|x| x.tag_ids)
                .unwrap_or_default();
            if self.avoid.unlinked_tags {
                current.retain(|t| linked.mall.contains(t.as_str()));
            }
            current.sort();
            let Some(id) = pick(&current, tag).cloned() else {
                return Done::Skipped(format!("member {} carries no tag in the mall", m.id));
            };
            let r = op.untag_member(&m.id, &id);
            (id, r)
        };
        let name = names
            .get(id.as_str())
            .cloned()
            .unwrap_or_else(|| id.to_string());
        if r.is_ok() {
            self.touched = Some((Side::Mall, id.to_string()));
        }
        match r {
            Ok(_) => Done::Applied(format!(
                "{} member {} with {name}",
                if add { "tagged" } else { "untagged" },
                m.id
            )),
            Err(e) => Done::Skipped(format!("the mall refused: {e}")),
        }
    }

    // The hub's admin API.

    async fn hub_edit(&mut self, hub: &Value, p: &Protection, edit: &Edit) -> Result<Done, String> {
        let lib = hub_lib(hub, p);
        let wecom_of_group: HashMap<String, String> = hub_groups(hub)
            .iter()
            .filter_map(|g| Some((s(&g["id"]), g["wecom_id"].as_str()?.to_owned())))
            .collect();
        let (method, path, body, what): (Method, String, Option<Value>, String) = match *edit {
            Edit::CreateGroup { name, order, tag } => {
                let g = GROUPS[usize::from(name) % GROUPS.len()];
                let t = TAGS[usize::from(tag) % TAGS.len()];
                let o = order_of(order);
                (
                    Method::POST,
                    "/tag-groups".into(),
                    Some(json!({"name": g, "order": o, "tags": [{"name": t, "order": 1}]})),
                    format!("created group {g} (order {o}) with tag {t}"),
                )
            }
            Edit::CreateTag { group, name, order } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Ok(Done::Skipped("the hub has no group".into()));
                };
                let t = TAGS[usize::from(name) % TAGS.len()];
                let o = order_of(order);
                (
                    Method::POST,
                    "/tags".into(),
                    Some(json!({"group_id": g.id, "name": t, "order": o})),
                    format!("created tag {}/{t} (order {o})", g.name),
                )
            }
            Edit::RenameGroup { group, name } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Ok(Done::Skipped("the hub has no group".into()));
                };
                let n = GROUPS[usize::from(name) % GROUPS.len()];
                (
                    Method::PATCH,
                    format!("/tag-groups/{}", g.id),
                    Some(json!({"name": n})),
                    format!("renamed group {} ({}) to {n}", g.name, g.id),
                )
            }
            Edit::RenameTag { tag, name } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Ok(Done::Skipped("the hub has no tag".into()));
                };
                let n = TAGS[usize::from(name) % TAGS.len()];
                (
                    Method::PATCH,
                    format!("/tags/{}", t.id),
                    Some(json!({"name": n})),
                    format!("renamed tag {}/{} ({}) to {n}", t.group_name, t.name, t.id),
                )
            }
            Edit::ReorderGroup { group, order } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Ok(Done::Skipped("the hub has no group".into()));
                };
                let o = order_of(order);
                (
                    Method::PATCH,
                    format!("/tag-groups/{}", g.id),
                    Some(json!({"order": o})),
                    format!("group {} order {} → {o}", g.name, g.order),
                )
            }
            Edit::ReorderTag { tag, order } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Ok(Done::Skipped("the hub has no tag".into()));
                };
                let o = order_of(order);
                (
                    Method::PATCH,
                    format!("/tags/{}", t.id),
                    Some(json!({"order": o})),
                    format!("tag {}/{} order {} → {o}", t.group_name, t.name, t.order),
                )
            }
            Edit::MoveTag { tag, group } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Ok(Done::Skipped("the hub has no tag".into()));
                };
                if t.protected {
                    return Ok(Done::Skipped(format!(
                        "{}/{} is WeCom-read-only: WeCom would keep it where it is",
                        t.group_name, t.name
                    )));
                }
                let Some(g) = pick(&lib.groups, group) else {
                    return Ok(Done::Skipped("the hub has no group".into()));
                };
                if g.id == t.group_id {
                    return Ok(Done::Skipped("already in that group".into()));
                }
                (
                    Method::PATCH,
                    format!("/tags/{}", t.id),
                    Some(json!({"group_id": g.id})),
                    format!("moved tag {}/{} to group {}", t.group_name, t.name, g.name),
                )
            }
            Edit::DeleteTag { tag } => {
                let Some(t) = pick(&lib.tags, tag) else {
                    return Ok(Done::Skipped("the hub has no tag".into()));
                };
                if t.protected {
                    return Ok(Done::Skipped(format!(
                        "{}/{} is WeCom-read-only: WeCom would keep it",
                        t.group_name, t.name
                    )));
                }
                (
                    Method::DELETE,
                    format!("/tags/{}", t.id),
                    None,
                    format!("deleted tag {}/{} ({})", t.group_name, t.name, t.id),
                )
            }
            Edit::DeleteGroup { group } => {
                let Some(g) = pick(&lib.groups, group) else {
                    return Ok(Done::Skipped("the hub has no group".into()));
                };
                if g.protected {
                    return Ok(Done::Skipped(format!(
                        "group {} holds what WeCom lets tagsync read only",
                        g.name
                    )));
                }
                self.doom_group(g.name.clone(), wecom_of_group.get(&g.id).cloned());
                (
                    Method::DELETE,
                    format!("/tag-groups/{}", g.id),
                    None,
                    format!("deleted group {} ({})", g.name, g.id),
                )
            }
            Edit::MemberTag { .. } => unreachable!("member edits are handled apart"),
        };
        let (status, answer) = self.w.admin(method.clone(), &path, body).await;
        match status {
            200..=299 => Ok(Done::Applied(what)),
            400..=499 => Ok(Done::Skipped(format!(
                "the hub refused ({status}): {}",
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or(&answer.to_string())
            ))),
            _ => Err(format!("{method} …{path}: {status} {answer}")),
        }
    }

    /// An operator's change of member `m`'s tags: through `POST …/members/{id}/tags` (whose
    /// job reads the mall member) or, for an odd `relation` pick, as a one-item
    /// `POST …/member-tags:batch` (whose job takes the mall member to be as the hub last knew
    /// it and reads nothing from the mall: `View::mall_from_base`).
    async fn hub_member(
        &mut self,
        m: &Member,
        hub: &Value,
        p: &Protection,
        relation: u8,
        tag: u8,
        add: bool,
    ) -> Result<Done, String> {
        let mut lib = hub_lib(hub, p);
        let linked = Linked::of(hub);
        if self.avoid.unlinked_tags {
            lib.tags.retain(|t| linked.hub.contains(&t.id));
        }
        let names: HashMap<&str, String> = lib
            .tags
            .iter()
            .map(|t| (t.id.as_str(), format!("{}/{}", t.group_name, t.name)))
            .collect();
        let path = format!("/members/{}/tags", m.id);
        let (id, body) = if add {
            let Some(t) = pick(&lib.tags, tag) else {
                return Ok(Done::Skipped("the hub has no tag".into()));
            };
            (t.id.clone(), json!({"add": [t.id]}))
        } else {
            let (status, view) = self
                .w
                .admin(Method::GET, &format!("/members/{}", m.id), None)
                .await;
            if status != 200 {
                return Ok(Done::Skipped(format!(
                    "the hub does not show member {} ({status})",
                    m.id
                )));
            }
            let mut current: Vec<String> = view["tag_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(s)
                .collect();
            if self.avoid.unlinked_tags {
                current.retain(|t| linked.hub.contains(t));
            }
            current.sort();
            let Some(id) = pick(&current, tag).cloned() else {
                return Ok(Done::Skipped(format!("member {} carries no hub tag", m.id)));
            };
            (id.clone(), json!({"remove": [id]}))
        };
        let name = names
            .get(id.as_str())
            .cloned()
            .unwrap_or_else(|| id.clone());
        let batch = relation % 2 == 1;
        let (path, body) = if batch {
            let mut item = body;
            item["member_id"] = json!(m.id);
            ("/member-tags:batch".to_owned(), json!({ "items": [item] }))
        } else {
            (path, body)
        };
        let (status, answer) = self.w.admin(Method::POST, &path, Some(body)).await;
        if (200..300).contains(&status) {
            self.touched = Some((Side::Hub, id.clone()));
        }
        match status {
            200..=299 => Ok(Done::Applied(format!(
                "{} member {} with {name}{}",
                if add { "tagged" } else { "untagged" },
                m.id,
                if batch { " (as a batch)" } else { "" }
            ))),
            400..=499 => Ok(Done::Skipped(format!(
                "the hub refused ({status}): {}",
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or(&answer.to_string())
            ))),
            _ => Err(format!("POST …{path}: {status} {answer}")),
        }
    }
}

/// The hub tag whose `side` id is `id` (on the hub side: the hub id itself, if it is one).
fn hub_tag_id(hub: &Value, side: Side, id: &str) -> Option<String> {
    let key = match side {
        Side::Wecom => "wecom_id",
        Side::Mall => "mall_id",
        Side::Hub => "id",
    };
    hub_groups(hub)
        .iter()
        .flat_map(|g| g["tags"].as_array().cloned().unwrap_or_default())
        .find(|t| t[key].as_str() == Some(id))
        .map(|t| s(&t["id"]))
}

/// `group/tag` of hub tag `id`, or the id.
fn tag_name(hub: &Value, id: &str) -> String {
    hub_groups(hub)
        .iter()
        .find_map(|g| {
            g["tags"]
                .as_array()?
                .iter()
                .find(|t| t["id"] == id)
                .map(|t| format!("{}/{}", s(&g["name"]), s(&t["name"])))
        })
        .unwrap_or_else(|| id.to_owned())
}

/// A held request, short.
fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

/// What is wrong with what third parties did while tagsync's writes were held: each change
/// (see [`Driver::expectations`]) of a tag the hub still has must be in the hub's member view
/// (and so, the members being converged, on every side).
pub async fn expectation_problems(w: &World, expected: &[Expected]) -> Vec<String> {
    let hub = w.hub_groups().await;
    let mut out = Vec::new();
    for e in expected {
        if hub_tag_id(&hub, Side::Hub, &e.hub_tag).is_none() {
            continue; // deleted (or merged into another) since: nothing to keep
        }
        let (status, view) = w
            .admin(Method::GET, &format!("/members/{}", e.member), None)
            .await;
        let has = status == 200
            && view["tag_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == e.hub_tag.as_str()));
        // WeCom cannot move a tag: tagsync moves one by creating it in the new group,
        // re-marking the relations that carry the old one and deleting the old one, which
        // takes it off every relation without an event naming it. A tag put on a relation in
        // WeCom with the old id after the re-mark read the relations is gone with it, and
        // nothing in WeCom says it was there: the documented limit (docs/sync-engine.md,
        // "No move in WeCom"), not counted as a lost change.
        let moved_under_it = e.present
            && e.wecom_id.as_ref().is_some_and(|used| {
                hub_groups(&hub)
                    .iter()
                    .flat_map(|g| g["tags"].as_array().cloned().unwrap_or_default())
                    .find(|t| t["id"] == e.hub_tag.as_str())
                    .is_some_and(|t| t["wecom_id"].as_str() != Some(used.as_str()))
            });
        if has != e.present && !moved_under_it {
            out.push(format!(
                "lost: {} — member {} {} {} in the hub ({status} {view})",
                e.what,
                e.member,
                if has { "has" } else { "lacks" },
                tag_name(&hub, &e.hub_tag)
            ));
        }
    }
    out
}

/// WeCom re-sends callback `pick` (among those delivered already), exactly as it sent it:
/// same XML, freshly encrypted and signed. tagsync must answer 200.
pub async fn redeliver(w: &World, pick_at: u8) -> Result<String, String> {
    let delivered: Vec<_> = w
        .wecom
        .callbacks()
        .into_iter()
        .filter(|c| c.delivered)
        .collect();
    let Some(c) = pick(&delivered, pick_at) else {
        return Ok("no callback delivered yet".into());
    };
    send_callback(w, c).await?;
    Ok(format!("re-sent #{} {}/{}", c.seq, c.event, c.change_type))
}

/// Sends the callback of record `c` to tagsync as WeCom does (its XML, freshly encrypted and
/// signed); tagsync must answer 200.
pub async fn send_callback(
    w: &World,
    c: &tagsync::sim::wecom::CallbackRecord,
) -> Result<(), String> {
    let cfg = w.wecom.config();
    let crypto = CallbackCrypto::new(
        &cfg.callback_token,
        &cfg.encoding_aes_key,
        cfg.corp_id.as_str(),
    )
    .map_err(|e| format!("callback crypto: {e}"))?;
    let encrypted = crypto.encrypt(&c.xml);
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let nonce = format!("{}", rand::random_range(100_000_000u64..1_000_000_000));
    let signature = crypto.signature(&timestamp, &nonce, &encrypted);
    let body = build_envelope(cfg.corp_id.as_str(), &cfg.agent_id, &encrypted);
    let resp = reqwest::Client::new()
        .post(format!("{}/wecom/callback/{}", w.base, w.tenant))
        .query(&[
            ("msg_signature", signature.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
        ])
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("re-sending callback #{}: {e}", c.seq))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!(
            "tagsync answered {status} to the callback #{} {}/{}",
            c.seq, c.event, c.change_type
        ));
    }
    Ok(())
}

// -----------------------------------------------------------------------------------------
// Checks once quiet.

/// One member's tags on each side, as hub tag ids (a side's id the hub does not map shows as
/// `?{side}:{id}`, a hub id that is no live hub tag as `?hub:{id}`).
#[derive(Debug, Default)]
struct MemberTags {
    hub: BTreeSet<String>,
    mall: BTreeSet<String>,
    relations: Vec<(String, BTreeSet<String>)>,
}

/// What is wrong with the members' tags: the hub, the mall and every relation of each
/// member's customer must hold the same tags. Compared by identity (through the hub's id
/// links), not by name: WeCom keeps its own names for what it lets tagsync read only.
pub async fn member_problems(w: &World, members: &[Member]) -> Vec<String> {
    let lib = w.hub_groups().await;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut by_wecom: HashMap<String, String> = HashMap::new();
    let mut by_mall: HashMap<String, String> = HashMap::new();
    for g in hub_groups(&lib) {
        for t in g["tags"].as_array().cloned().unwrap_or_default() {
            let id = s(&t["id"]);
            names.insert(id.clone(), format!("{}/{}", s(&g["name"]), s(&t["name"])));
            if let Some(x) = t["wecom_id"].as_str() {
                by_wecom.insert(x.to_owned(), id.clone());
            }
            if let Some(x) = t["mall_id"].as_str() {
                by_mall.insert(x.to_owned(), id.clone());
            }
        }
    }
    let show = |set: &BTreeSet<String>| {
        let v: Vec<String> = set
            .iter()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .collect();
        format!("{v:?}")
    };
    let relations = w.wecom.relations();
    let avoid = Avoid::from_env();
    let mut out = Vec::new();
    for m in members {
        let mut tags = MemberTags::default();
        let (status, view) = w
            .admin(Method::GET, &format!("/members/{}", m.id), None)
            .await;
        if status == 200 {
            for id in view["tag_ids"].as_array().cloned().unwrap_or_default() {
                let id = s(&id);
                if names.contains_key(&id) {
                    tags.hub.insert(id);
                } else if !avoid.stale_member_marks {
                    tags.hub.insert(format!("?hub:{id}"));
                }
            }
        } else if status != 404 {
            out.push(format!("GET …/members/{}: {status} {view}", m.id));
        }
        for id in w.mall.member(&m.id).map(|x| x.tag_ids).unwrap_or_default() {
            let id = id.as_str();
            tags.mall.insert(
                by_mall
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("?mall:{id}")),
            );
        }
        for r in relations.iter().filter(|r| r.external_userid == m.customer) {
            let set = r
                .tags
                .iter()
                .map(|id| {
                    by_wecom
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| format!("?wecom:{id}"))
                })
                .collect();
            tags.relations.push((r.userid.clone(), set));
        }
        if tags.relations.is_empty() {
            out.push(format!(
                "member {} ({}): WeCom shows no relation",
                m.id, m.customer
            ));
        }
        if tags.hub != tags.mall {
            out.push(format!(
                "member {}: the hub holds {}, the mall {}",
                m.id,
                show(&tags.hub),
                show(&tags.mall)
            ));
        }
        for (u, set) in &tags.relations {
            if *set != tags.mall {
                out.push(format!(
                    "member {}: relation {u} → {} holds {}, the mall {}",
                    m.id,
                    m.customer,
                    show(set),
                    show(&tags.mall)
                ));
            }
        }
    }
    out
}

/// The reason a job parks with when two hub objects hold one name in one place and neither
/// came there by a change that can go back (`jobs/library/collisions.rs`).
const CLASH: &str = "cannot share a name — rename one of them";

/// The operator's part the design leaves to one (docs/sync-engine.md, "Name collisions"):
/// when every parked job is such a clash and the hub shows it — two live groups of one name,
/// or two live tags of one name in one group — the operator renames one of each pair (the
/// later in the hub's list) to a fresh name and redrives the parked jobs. Nothing is done for
/// any other parked job, nor for a clash the hub does not show (a wrong verdict is left for
/// the checks to report). Returns what the operator did, one line per rename.
pub async fn operator_settles_clashes(w: &World) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for turn in 0..3 {
        let (_, parked) = w.admin(Method::GET, "/dead-letters", None).await;
        let reasons: Vec<&str> = parked["dead_letters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["error"].as_str())
            .collect();
        if reasons.is_empty() || reasons.iter().any(|r| !r.contains(CLASH)) {
            break;
        }
        let groups = w.hub_groups().await;
        let groups = groups["groups"].as_array().cloned().unwrap_or_default();
        let mut renames = Vec::new();
        let mut seen = HashSet::new();
        for g in &groups {
            if !seen.insert(g["name"].to_string()) {
                renames.push(("tag-groups", g.clone()));
            }
            let mut tag_names = HashSet::new();
            for t in g["tags"].as_array().into_iter().flatten() {
                if !tag_names.insert(t["name"].to_string()) {
                    renames.push(("tags", t.clone()));
                }
            }
        }
        if renames.is_empty() {
            break;
        }
        for (n, (path, x)) in renames.iter().enumerate() {
            let id = x["id"].as_str().unwrap_or_default();
            let name = format!("op{turn}{n}");
            let (status, answer) = w
                .admin(
                    Method::PATCH,
                    &format!("/{path}/{id}"),
                    Some(json!({ "name": name })),
                )
                .await;
            if !(200..300).contains(&status) {
                return Err(format!(
                    "the operator's rename of {path}/{id}: {status} {answer}"
                ));
            }
            done.push(format!(
                "operator: renamed {path}/{id} ({}) to {name}",
                x["name"]
            ));
        }
        let (status, answer) = w.admin(Method::POST, "/dead-letters:redrive", None).await;
        if status != 200 {
            return Err(format!("the operator's redrive: {status} {answer}"));
        }
        settle(w, "the operator's turn").await?;
    }
    Ok(done)
}

/// Everything that must hold once the system is quiet: nothing parked or refused, the same
/// library on the three sides, the same tags for every member everywhere.
pub async fn converged(w: &World, members: &[Member]) -> Vec<String> {
    let mut out = w.problems().await;
    if let Err(e) = w.assert_converged().await {
        out.push(e);
    }
    out.extend(member_problems(w, members).await);
    out
}

/// After a quiet spell longer than any backoff, nothing has happened.
pub async fn stays_quiet(w: &World) -> Result<(), String> {
    let before = w.activity();
    tokio::time::sleep(QUIET_WINDOW).await;
    settle(w, "the quiet check").await?;
    let after = w.activity();
    if after != before {
        return Err(format!(
            "something happened while nobody acted (an echo loop?): before {before:?}, after {after:?}"
        ));
    }
    Ok(())
}

pub fn jobs_since(w: &World, start: &Activity) -> u64 {
    w.activity().jobs.saturating_sub(start.jobs)
}

/// The three libraries, for a failure message.
pub async fn views(w: &World) -> String {
    let v = w.library_view().await;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hub:   {}",
        serde_json::to_string(&v.hub).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "WeCom: {}",
        serde_json::to_string(&v.wecom).unwrap_or_default()
    );
    let _ = write!(
        out,
        "mall:  {}",
        serde_json::to_string(&v.mall).unwrap_or_default()
    );
    out
}

/// tagsync's audit trail, oldest first, one line per entry (at most the last 400).
pub async fn audit_trail(w: &World) -> String {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match w
            .app
            .store
            .list_audit(&w.tenant, cursor.as_deref(), 200)
            .await
        {
            Ok(p) => p,
            Err(e) => return format!("(audit unreadable: {e})"),
        };
        entries.extend(page.items);
        match page.next_cursor {
            Some(c) if entries.len() < 400 => cursor = Some(c),
            _ => break,
        }
    }
    let first = entries.last().map(|e| e.at.millis()).unwrap_or(0);
    entries
        .iter()
        .rev()
        .map(|e| {
            let compact = |v: &Option<Value>| {
                v.as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            format!(
                "  +{:>5} ms {:?} {} {} by {}: {} → {}",
                e.at.millis() - first,
                e.side,
                e.action,
                e.entity,
                e.origin,
                compact(&e.before),
                compact(&e.after)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
