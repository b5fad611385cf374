//! A library page: the three sides' tag libraries compared whole (they are small), matched
//! objects linked, and every drifted group and tag brought up to date by the library jobs.

use super::{PageResult, Recorder, bump, defer};
use crate::app::App;
use crate::domain::*;
use crate::jobs::Step;
use crate::jobs::library::{sync_group, sync_tag};
use crate::jobs::worker::Outcome;
use crate::mall::client::MallGroupWithTags;
use crate::ports::Write;
use crate::sync::reconcile::{self as pure, Match, SideGroup, SideLib, SideTag, Target};
use crate::wecom::client::TagGroupInfo;
use std::collections::HashMap;

fn wecom_lib(groups: &[TagGroupInfo]) -> SideLib {
    SideLib {
        groups: groups
            .iter()
            .map(|g| SideGroup {
                id: g.group_id.to_string(),
                name: g.group_name.clone(),
                order: g.order,
                tags: g
                    .tag
                    .iter()
                    .map(|x| side_tag(&x.id, &x.name, x.order))
                    .collect(),
            })
            .collect(),
    }
}

fn side_tag(id: &impl ToString, name: &str, order: u32) -> SideTag {
    SideTag {
        id: id.to_string(),
        name: name.to_owned(),
        order,
    }
}

fn mall_lib(groups: &[MallGroupWithTags]) -> SideLib {
    SideLib {
        groups: groups
            .iter()
            .map(|g| SideGroup {
                id: g.group.id.to_string(),
                name: g.group.name.clone(),
                order: g.group.order,
                tags: g
                    .tags
                    .iter()
                    .map(|x| side_tag(&x.id, &x.name, x.order))
                    .collect(),
            })
            .collect(),
    }
}

async fn read_libs(app: &App, tenant: &Tenant) -> Step<(SideLib, SideLib)> {
    // Corp and rule-group (strategy) tags alike: scoped hub groups live in the latter.
    let creds = App::wecom_credentials(tenant);
    let mut w = app.wecom.get_corp_tag_list(&creds, &[], &[]).await?;
    w.extend(
        app.wecom
            .get_strategy_tag_list(&creds, None, &[], &[])
            .await?,
    );
    let m = app.mall.list_groups(&App::mall_endpoint(tenant)).await?;
    Ok((wecom_lib(&w), mall_lib(&m)))
}

/// Side id → hub id of every group and tag the hub links, for one side.
fn hub_map(groups: &[TagGroup], tags: &[Tag], side: Side) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for g in groups {
        let id = match side {
            Side::Wecom => g.wecom.id.as_ref().map(ToString::to_string),
            Side::Mall => g.mall.id.as_ref().map(ToString::to_string),
        };
        if let Some(id) = id {
            m.insert(id, g.id.to_string());
        }
    }
    for x in tags {
        let id = match side {
            Side::Wecom => x.wecom.id.as_ref().map(ToString::to_string),
            Side::Mall => x.mall.id.as_ref().map(ToString::to_string),
        };
        if let Some(id) = id {
            m.insert(id, x.id.to_string());
        }
    }
    m
}

pub(super) async fn library_page(
    app: &App,
    tenant: &Tenant,
    job: &Job,
    run: &SyncRun,
    hint: &Hint,
    rec: &Recorder,
) -> Step<PageResult> {
    let t = &tenant.id;
    let mut r = PageResult {
        done: true,
        ..PageResult::default()
    };
    let (wecom, mall) = read_libs(app, tenant).await?;
    let groups = app.store.list_groups(t).await?;
    let tags = app.store.list_tags(t).await?;
    let found = pure::library(&groups, &tags, &wecom, &mall);
    r.drift = found.drift;
    r.skipped.extend(found.skipped);
    r.compared = found.compared;
    r.ambiguous = found.ambiguous;
    rec.found(&mut r).await?;

    let mut targets = Vec::new();
    let linked = link_matches(app, tenant, &found.matches, &mut targets).await?;
    for (k, n) in linked {
        bump(&mut r.repaired, k, n);
    }
    // Groups before tags (a tag's first WeCom create needs its group), as the finder orders.
    let mut ordered: Vec<Target> = targets
        .iter()
        .filter(|x| matches!(x, Target::Group(_)))
        .cloned()
        .collect();
    ordered.extend(found.targets);
    ordered.extend(targets.into_iter().filter(|x| matches!(x, Target::Tag(_))));
    for target in ordered {
        let mut h = hint.clone();
        let object = match target {
            Target::Group(group) => LibObject::Group(group),
            Target::Tag(tag) => LibObject::Tag(tag),
            Target::NewGroup { side, id } => {
                set_side_id(&mut h, side, id);
                LibObject::Group(HubGroupId::new_unchecked(new_ordered_id()))
            }
            Target::NewTag { side, id } => {
                set_side_id(&mut h, side, id);
                LibObject::Tag(HubTagId::new_unchecked(new_ordered_id()))
            }
        };
        let (kind, outcome) = match object {
            LibObject::Group(group) => {
                let outcome = sync_group(app, tenant, job, &group, &h).await;
                (JobKind::SyncGroup { group, hint: h }, outcome)
            }
            LibObject::Tag(tag) => {
                let outcome = sync_tag(app, tenant, job, &tag, &h).await;
                (JobKind::SyncTag { tag, hint: h }, outcome)
            }
        };
        match outcome {
            Outcome::Done => {}
            Outcome::RetryAfter { reason, .. }
            | Outcome::Reschedule { reason, .. }
            | Outcome::Park { reason, .. }
            | Outcome::Wait { reason } => {
                defer(app, t, kind, &mut r.skipped, &reason).await?;
            }
        }
    }

    // What the repairs changed on each side: the libraries read again, compared by hub id.
    let hub_before = [
        hub_map(&groups, &tags, Side::Wecom),
        hub_map(&groups, &tags, Side::Mall),
    ];
    let (groups2, tags2) = (
        app.store.list_groups(t).await?,
        app.store.list_tags(t).await?,
    );
    let (wecom2, mall2) = read_libs(app, tenant).await?;
    for (i, (side, before, after)) in [(Side::Wecom, &wecom, &wecom2), (Side::Mall, &mall, &mall2)]
        .into_iter()
        .enumerate()
    {
        let changed = pure::changes(
            side,
            before,
            after,
            &hub_before[i],
            &hub_map(&groups2, &tags2, side),
        );
        SyncRun::add(&mut r.repaired, &changed);
    }
    if run.scope == RunScope::All {
        r.new_chains.push((
            "mall_members".into(),
            Chain::new(Walk::MallMembers, Some("library")),
        ));
    }
    Ok(r)
}

/// A library object a repair brings up to date.
enum LibObject {
    Group(HubGroupId),
    Tag(HubTagId),
}

fn set_side_id(h: &mut Hint, side: Side, id: String) {
    match side {
        Side::Wecom => h.wecom_id = Some(id),
        Side::Mall => h.mall_id = Some(id),
    }
}

/// Onboarding: links each same-name pair to one new hub object (bases = what each side
/// shows, so nothing is created again); a pair whose sides differ in order is brought up to
/// date by its job afterwards (`targets`).
async fn link_matches(
    app: &App,
    tenant: &Tenant,
    matches: &[Match],
    targets: &mut Vec<Target>,
) -> Step<Vec<(&'static str, u64)>> {
    let t = &tenant.id;
    let now = app.clock.now();
    let (mut groups, mut tags) = (0, 0);
    for m in matches {
        match m {
            Match::Group { wecom, mall } => {
                let id = HubGroupId::new_unchecked(new_ordered_id());
                let snap = |g: &SideGroup| GroupSnapshot {
                    name: g.name.clone(),
                    order: g.order,
                };
                let g = TagGroup {
                    tenant: t.clone(),
                    id: id.clone(),
                    name: wecom.name.clone(),
                    order: wecom.order,
                    name_at: now,
                    order_at: now,
                    deleted_at: None,
                    wecom: synced(WecomGroupId::new_unchecked(wecom.id.clone()), snap(wecom)),
                    mall: synced(MallGroupId::new_unchecked(mall.id.clone()), snap(mall)),
                    scope: None,
                    carry_to_mall: true,
                    version: 0,
                };
                let links = both_links(t, EntityKind::Group, &wecom.id, &mall.id, id.as_str());
                let writes = [vec![Write::Group(g)], links].concat();
                if commit_link(app, writes).await? {
                    groups += 1;
                    if wecom.order != mall.order {
                        targets.push(Target::Group(id));
                    }
                }
            }
            Match::Tag {
                wecom,
                wecom_group,
                mall,
                ..
            } => {
                let Some(group) = app
                    .store
                    .lookup_link(t, Side::Wecom, EntityKind::Group, wecom_group)
                    .await?
                else {
                    continue;
                };
                let group = HubGroupId::new_unchecked(group);
                let id = HubTagId::new_unchecked(new_ordered_id());
                let snap = |x: &SideTag| TagSnapshot {
                    name: x.name.clone(),
                    order: x.order,
                    group_id: group.clone(),
                };
                let x = Tag {
                    tenant: t.clone(),
                    id: id.clone(),
                    group_id: group.clone(),
                    name: wecom.name.clone(),
                    order: wecom.order,
                    name_at: now,
                    order_at: now,
                    group_at: now,
                    deleted_at: None,
                    wecom: synced(WecomTagId::new_unchecked(wecom.id.clone()), snap(wecom)),
                    mall: synced(MallTagId::new_unchecked(mall.id.clone()), snap(mall)),
                    version: 0,
                };
                let links = both_links(t, EntityKind::Tag, &wecom.id, &mall.id, id.as_str());
                let writes = [vec![Write::Tag(x)], links].concat();
                if commit_link(app, writes).await? {
                    tags += 1;
                    if wecom.order != mall.order {
                        targets.push(Target::Tag(id));
                    }
                }
            }
        }
    }
    Ok(vec![("groups.linked", groups), ("tags.linked", tags)])
}

/// Writes a link; false when a side id got linked meanwhile (an event's job was quicker).
async fn commit_link(app: &App, writes: Vec<Write>) -> Step<bool> {
    match app.store.transact(writes).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn synced<I, S>(id: I, base: S) -> SideLink<I, S> {
    SideLink {
        id: Some(id),
        base: Some(base),
        state: SyncState::Synced,
        error: None,
    }
}

/// The id-map entries of a hub object linked to a WeCom and a mall object at once.
fn both_links(
    t: &TenantId,
    kind: EntityKind,
    wecom_id: &str,
    mall_id: &str,
    hub_id: &str,
) -> Vec<Write> {
    [(Side::Wecom, wecom_id), (Side::Mall, mall_id)]
        .into_iter()
        .map(|(side, side_id)| {
            Write::Link(IdLink {
                tenant: t.clone(),
                side,
                kind,
                side_id: side_id.to_owned(),
                hub_id: hub_id.to_owned(),
            })
        })
        .collect()
}
