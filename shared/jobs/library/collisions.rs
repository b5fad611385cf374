//! A name two hub objects want on one side: the holder is brought up to date, then, as
//! `crate::sync::collision` judges it, the name is free, the holder steps aside under a
//! temporary name (a swap), the two merge (one object created twice), or the change that
//! brought one onto the name is refused. One way for groups and tags ([`Contested`]: the
//! few points where the kinds differ).

use super::persist::Stored;
use super::{Cx, HubObject, Step, StepError, StepFuture};
use crate::domain::*;
use crate::mall::client::{GroupPatch, IdempotencyKey, MallError, TagPatch};
use crate::ports::Write;
use crate::sync::collision::{Collision, Holder, MERGE_CHILDREN_MAX, collision, holder_verdict};
use crate::sync::object::LibraryObject;
use crate::wecom::classify::Refusal;
use crate::wecom::client::EditTarget;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

type CarriedFuture<'a> = Pin<Box<dyn Future<Output = Step<Option<Vec<Write>>>> + Send + 'a>>;
#[allow(type_alias_bounds)]
type NamesFuture<'a, T: Stored> = Pin<
    Box<
        dyn Future<Output = Step<(Vec<(T::WecomId, String)>, Vec<(T::MallId, String)>)>>
            + Send
            + 'a,
    >,
>;

/// A name two hub objects want: `me` (whose job runs) and `other`, which holds it.
pub(super) struct Clash<'c, T: Stored> {
    pub me: &'c T::Id,
    pub other: &'c T::Id,
    pub name: &'c str,
}

/// The change that brought `y` onto `clash.name`, refused: `y` goes back to `back`.
pub(super) struct Refused<'c, T: Stored> {
    pub y: T,
    pub back: T::Snapshot,
    pub clash: Clash<'c, T>,
}

/// What a temporary name goes to in the mall: its counterpart of WeCom's [`EditTarget`].
#[derive(Clone, Copy)]
pub(super) enum MallTarget<'a> {
    Group(&'a MallGroupId),
    Tag(&'a MallTagId),
}

/// What settling a name needs of a group or a tag beyond saving it, in the order a
/// settling meets them.
pub(super) trait Contested: Stored {
    /// Where the object that wants a name (`me`, as stored) wants it: anywhere for a group;
    /// for a tag, `me`'s group (`None`: `me` is not in the hub, so nothing is in its place).
    fn wanted_in(me: Option<&Self>) -> Option<Self::Scope>;
    /// Whether `holder` is brought up to date before it is judged. A group: any live one (its
    /// own change may still be queued: a rename away, or a WeCom rename that makes its WeCom
    /// group `me`'s). A tag: one the hub still names so (the hub may not have heard yet that
    /// it is moving away: its own event is still queued).
    fn refresh_first(holder: &Self, name: &str) -> bool;
    /// Object `id` as this job brings it up to date (now, or after its own work).
    const OBJECT: fn(Self::Id) -> HubObject;
    /// Whether the holder's base decides if it still holds the name even when it was not
    /// brought up to date (groups: yes; a tag's base is only trusted after its own run).
    const ALWAYS_LOOK_AT_BASE: bool;
    /// What a temporary name goes to in WeCom, by this kind's WeCom id.
    const WECOM_TARGET: fn(&Self::WecomId) -> EditTarget<'_>;
    /// The holder `c.other` keeps `c.name` in WeCom (it is not this app's to rename).
    fn read_only_holder<'c>(cx: &'c mut Cx<'_>, c: Clash<'c, Self>) -> StepFuture<'c>;
    /// What a temporary name goes to in the mall, by this kind's mall id.
    const MALL_TARGET: fn(&Self::MallId) -> MallTarget<'_>;
    /// How the clash reason says where the two are (" in the same group" for tags).
    const PLACE: &'static str;
    /// What merging `me` into `to` carries along besides the side objects (a group's tags),
    /// as writes; `None` when that is too much for one go.
    fn carried<'c>(cx: &'c Cx<'_>, me: &'c Self::Id, to: &'c Self::Id) -> CarriedFuture<'c>;
    /// The (side id, name) of each object WeCom and the mall hold in `place`.
    fn side_names<'c>(cx: &'c mut Cx<'_>, place: &'c Self::Scope) -> NamesFuture<'c, Self>;
    /// Puts `r.y` back to `r.back` (see [`Cx::refuse_change`]). Each side's base takes what
    /// the side shows, so that the next merge does not take the side's (older) value for a
    /// new change: the hub's value wins and goes to the side.
    fn go_back<'c>(cx: &'c mut Cx<'_>, r: &'c mut Refused<'_, Self>) -> StepFuture<'c>;
    /// What the refused change is called in messages (a group's is always a rename).
    const REFUSED: &'static str;
}

impl Contested for TagGroup {
    fn wanted_in(_: Option<&Self>) -> Option<()> {
        Some(())
    }
    fn refresh_first(holder: &Self, _: &str) -> bool {
        holder.deleted_at.is_none()
    }
    const OBJECT: fn(HubGroupId) -> HubObject = HubObject::Group;
    const ALWAYS_LOOK_AT_BASE: bool = true;
    const WECOM_TARGET: fn(&WecomGroupId) -> EditTarget<'_> = |id| EditTarget::Group(id);
    fn read_only_holder<'c>(_: &'c mut Cx<'_>, c: Clash<'c, Self>) -> StepFuture<'c> {
        let why = format!(
            "the name `{}` is held in WeCom by read-only tag group {}; rename it in WeCom",
            c.name, c.other
        );
        Box::pin(async move { Err(StepError::park(why)) })
    }
    const MALL_TARGET: fn(&MallGroupId) -> MallTarget<'_> = |id| MallTarget::Group(id);
    const PLACE: &'static str = "";
    /// The group's tags go along (and what their sides hold: the side groups are `to`'s
    /// then); more than [`MERGE_CHILDREN_MAX`] clash instead.
    fn carried<'c>(cx: &'c Cx<'_>, me: &'c HubGroupId, to: &'c HubGroupId) -> CarriedFuture<'c> {
        Box::pin(async move {
            let tags: Vec<Tag> = cx.all().await?;
            let tags: Vec<Tag> = tags.into_iter().filter(|y| &y.group_id == me).collect();
            if tags.len() > MERGE_CHILDREN_MAX {
                return Ok(None);
            }
            let moved = tags.into_iter().map(|mut y| {
                y.group_id = to.clone();
                if let Some(b) = y.wecom.base.as_mut().filter(|b| &b.group_id == me) {
                    b.group_id = to.clone();
                }
                if let Some(b) = y.mall.base.as_mut().filter(|b| &b.group_id == me) {
                    b.group_id = to.clone();
                }
                Write::Tag(y)
            });
            Ok(Some(moved.collect()))
        })
    }
    fn side_names<'c>(cx: &'c mut Cx<'_>, _: &'c ()) -> NamesFuture<'c, Self> {
        Box::pin(async move {
            let wecom = cx.wecom_lib().await?.iter();
            let wecom = wecom.map(|g| (g.group_id.clone(), g.group_name.clone()));
            let wecom = wecom.collect();
            let mall = cx.mall_lib().await?.iter();
            let mall = mall
                .map(|g| (g.group.id.clone(), g.group.name.clone()))
                .collect();
            Ok((wecom, mall))
        })
    }
    /// A group goes back to the name it was renamed from.
    fn go_back<'c>(cx: &'c mut Cx<'_>, r: &'c mut Refused<'_, Self>) -> StepFuture<'c> {
        let Refused { y, back, .. } = r;
        Box::pin(async move {
            if let Some(w) = y.wecom.id.clone()
                && let Some(shown) = cx.wecom_group_name(w.as_str()).await?
                && let Some(b) = y.wecom.base.as_mut()
            {
                b.name = shown;
            }
            if let Some(m) = y.mall.id.clone() {
                let shown = cx
                    .mall_lib()
                    .await?
                    .iter()
                    .find(|g| g.group.id == m)
                    .map(|g| g.group.name.clone());
                if let (Some(shown), Some(b)) = (shown, y.mall.base.as_mut()) {
                    b.name = shown;
                }
            }
            y.name = back.name.clone();
            y.name_at = cx.now();
            Ok(())
        })
    }
    const REFUSED: &'static str = "rename";
}

impl Contested for Tag {
    fn wanted_in(me: Option<&Self>) -> Option<HubGroupId> {
        me.map(|x| x.group_id.clone())
    }
    fn refresh_first(holder: &Self, name: &str) -> bool {
        holder.name == name && holder.deleted_at.is_none()
    }
    const OBJECT: fn(HubTagId) -> HubObject = HubObject::Tag;
    const ALWAYS_LOOK_AT_BASE: bool = false;
    const WECOM_TARGET: fn(&WecomTagId) -> EditTarget<'_> = |id| EditTarget::Tag(id);
    /// The change that brought `me` onto that name is refused instead, if there is one.
    fn read_only_holder<'c>(cx: &'c mut Cx<'_>, c: Clash<'c, Self>) -> StepFuture<'c> {
        Box::pin(async move {
            let t = cx.t().clone();
            let x = cx.app.store.get_tag(&t, c.me).await?;
            if let Some(x) = x.filter(|x| x.deleted_at.is_none())
                && let Some((_, back)) = x.came_from()
            {
                let r = Refused {
                    y: x,
                    back,
                    clash: c,
                };
                return cx.refuse_change(r).await;
            }
            Err(StepError::park(format!(
                "the name `{}` is held in WeCom by read-only tag {}; rename it in WeCom",
                c.name, c.other
            )))
        })
    }
    const MALL_TARGET: fn(&MallTagId) -> MallTarget<'_> = |id| MallTarget::Tag(id);
    const PLACE: &'static str = " in the same group";
    fn carried<'c>(_: &'c Cx<'_>, _: &'c HubTagId, _: &'c HubTagId) -> CarriedFuture<'c> {
        Box::pin(async { Ok(Some(Vec::new())) })
    }
    /// The tags of the side groups that hub group `group` has.
    fn side_names<'c>(cx: &'c mut Cx<'_>, group: &'c HubGroupId) -> NamesFuture<'c, Self> {
        Box::pin(async move {
            let Some(g) = cx.app.store.get_group(cx.t(), group).await? else {
                return Ok((Vec::new(), Vec::new()));
            };
            let mut wecom = Vec::new();
            if let Some(wg) = &g.wecom.id
                && let Some(found) = cx.wecom_lib().await?.iter().find(|x| &x.group_id == wg)
            {
                wecom.extend(found.tag.iter().map(|x| (x.id.clone(), x.name.clone())));
            }
            let mut mall = Vec::new();
            if let Some(mg) = &g.mall.id
                && let Some(found) = cx.mall_lib().await?.iter().find(|x| &x.group.id == mg)
            {
                mall.extend(found.tags.iter().map(|x| (x.id.clone(), x.name.clone())));
            }
            Ok((wecom, mall))
        })
    }
    /// A tag goes back to its former name, or else group; it is parked when that group is
    /// gone.
    fn go_back<'c>(cx: &'c mut Cx<'_>, r: &'c mut Refused<'_, Self>) -> StepFuture<'c> {
        let Refused { y, back, clash } = r;
        Box::pin(async move {
            let t = cx.t().clone();
            if back.group_id != y.group_id
                && cx
                    .app
                    .store
                    .get_group(&t, &back.group_id)
                    .await?
                    .is_none_or(|g| g.deleted_at.is_some())
            {
                let (me, other, name) = (clash.me, clash.other, clash.name);
                return Err(StepError::park(format!(
                    "hub tags {me} and {other} both hold `{name}` in one group, and the one to give way has no group to return to; rename one of them"
                )));
            }
            let now = cx.now();
            let (wecom_now, mall_now) = cx.tag_where_shown(y).await?;
            let renaming = back.name != y.name;
            for (base, shown) in [
                (y.wecom.base.as_mut(), wecom_now),
                (y.mall.base.as_mut(), mall_now),
            ] {
                if let (Some(base), Some((name, group))) = (base, shown) {
                    if renaming {
                        base.name = name;
                    } else if let Some(group) = group {
                        base.group_id = group;
                    }
                }
            }
            if renaming {
                y.name = back.name.clone();
                y.name_at = now;
            } else {
                y.group_id = back.group_id.clone();
                y.group_at = now;
            }
            Ok(())
        })
    }
    const REFUSED: &'static str = "change";
}

impl Cx<'_> {
    /// Hub object `other` holds `name` on `side`, which `me` wants there. `other` is brought
    /// up to date first where its own change may still be queued; then, as
    /// [`holder_verdict`] judges it, the name is free (`Ok`: try again), the two are settled
    /// ([`Cx::settle`]), or `other` is renaming away and gets a temporary name there now and
    /// its own after this job's work (`Ok`: try again).
    pub(super) async fn step_aside<T: Contested>(
        &mut self,
        side: Side,
        me: &T::Id,
        other: &T::Id,
        name: &str,
    ) -> Step<()> {
        let t = self.t().clone();
        let kind = T::KIND.as_str();
        let unknown = || {
            StepError::park(format!(
                "the name `{name}` is taken on {side} by an unknown hub {kind} {other}"
            ))
        };
        let mut o = T::read(self.app, &t, other).await?.ok_or_else(unknown)?;
        // A tag may hold the name on the side in `me`'s group while the hub already has it
        // elsewhere (a move on its way): the name is judged where `me` wants it.
        let scope = T::wanted_in(T::read(self.app, &t, me).await?.as_ref());
        let refresh = T::refresh_first(&o, name) && self.depth < 3;
        if refresh {
            // The side just said `other`'s object holds the name: this job's copy of that
            // side's library, read before, may still show it under its old name (its rename
            // there not heard of yet). Brought up to date from that copy, the holder looked
            // free, the write met the name again and the job parked (property test, seed
            // 7437243211154445712).
            match side {
                Side::Wecom => self.wecom_lib = None,
                Side::Mall => self.mall_lib = None,
            }
            self.bring_nested(T::OBJECT(other.clone()), false).await?;
            o = T::read(self.app, &t, other).await?.ok_or_else(unknown)?;
        }
        let look_at_base = refresh || T::ALWAYS_LOOK_AT_BASE;
        let temp = match holder_verdict(&o, side, name, scope.as_ref(), look_at_base) {
            Holder::Free => return Ok(()),
            Holder::Collides => return self.settle(me, o, side, name).await,
            Holder::StepAside(temp) => temp,
        };
        let there = match side {
            Side::Wecom => "WeCom",
            Side::Mall => "the mall",
        };
        let no_id = || {
            StepError::park(format!(
                "hub {kind} {other} holds `{name}` in {there} without an id"
            ))
        };
        let actor = match side {
            Side::Wecom => {
                let wid = o.wecom().id.clone().ok_or_else(no_id)?;
                let target = T::WECOM_TARGET(&wid);
                match self.wecom_edit_call(target, Some(&temp), None).await? {
                    Ok(()) => {}
                    Err(e) if e.refusal() == Some(Refusal::NotOurs) => {
                        let clash = Clash { me, other, name };
                        return T::read_only_holder(self, clash).await;
                    }
                    Err(e) => return Err(e.into()),
                }
                self.wecom_lib = None;
                Actor::Wecom
            }
            Side::Mall => {
                let mid = o.mall().id.clone().ok_or_else(no_id)?;
                let key = self.key(&format!("step-aside:{other}:{temp}:v{}", o.version()));
                self.mall_rename(&key, T::MALL_TARGET(&mid), &temp).await?;
                self.mall_lib = None;
                Actor::Mall
            }
        };
        if let Some(b) = o.base_on_mut(side) {
            *T::snapshot_name_mut(b) = temp.clone();
        }
        let entry = self.entry(
            actor,
            &format!("{kind}.renamed_temporarily"),
            format!("{kind}:{other}"),
            Some(json!({"name": name})),
            Some(json!({"name": temp})),
        );
        self.save(&mut o, side, vec![Write::Audit(entry)]).await?;
        let later = T::OBJECT(other.clone());
        if !self.after.contains(&later) {
            self.after.push(later);
        }
        Ok(())
    }

    /// Renames mall object `target` to `name` (a rename and nothing else), sent under `key`.
    async fn mall_rename(
        &self,
        key: &IdempotencyKey,
        target: MallTarget<'_>,
        name: &str,
    ) -> Result<(), MallError> {
        let (mall, ep) = (&self.app.mall, &self.ep);
        match target {
            MallTarget::Group(id) => {
                let patch = GroupPatch::renamed(name);
                mall.update_group(ep, key, id, &patch).await.map(drop)
            }
            MallTarget::Tag(id) => {
                let patch = TagPatch::renamed(name);
                mall.update_tag(ep, key, id, &patch).await.map(drop)
            }
        }
    }

    /// Hub object `me` wants `name` on `side`, where hub object `o` holds it, and the hub
    /// names both so in one place. If two sides created one object at once (the hub's admin
    /// and the mall, say, before either heard of the other's), they end as one
    /// ([`Cx::merge_duplicate`]). If each holds its own object on a side, they are two, and
    /// the one that came onto the name by a change has it refused. Either way the one that
    /// carries on is brought up to date, and a run of `me` that is moot ends `superseded`.
    async fn settle<T: Contested>(&mut self, me: &T::Id, o: T, side: Side, name: &str) -> Step<()> {
        let t = self.t().clone();
        let kind = T::KIND.as_str();
        let holder = o.id().clone();
        let clash = || {
            StepError::park(format!(
                "the name `{name}` is held on {side} by hub {kind} {holder}{}; two {kind}s cannot share a name — rename one of them",
                T::PLACE
            ))
        };
        let Some(x) = T::read(self.app, &t, me).await? else {
            return Err(clash());
        };
        let carried = T::carried(self, me, &holder).await?;
        let mut verdict = collision(Some(&x), &o, carried.is_some(), |_| false);
        if matches!(verdict, Collision::Refuse { .. }) {
            // A change is only refused where it can go back: where each came from, if a
            // third object holds that place now (the sides read afresh: they may have
            // changed since this job read them).
            self.wecom_lib = None;
            self.mall_lib = None;
            let mut taken = Vec::new();
            for (y, z) in [(&x, &o), (&o, &x)] {
                if let Some((_, back)) = y.came_from()
                    && self.back_taken(y, &back, z.id()).await?
                {
                    taken.push(y.id().clone());
                }
            }
            verdict = collision(Some(&x), &o, carried.is_some(), |id| taken.contains(id));
        }
        match verdict {
            Collision::Clash => Err(clash()),
            // `me` changed meanwhile (a nested run settled the clash another way): the step
            // that met the name is stale; the job starts again from what is stored now.
            Collision::Stale => Err(StepError::retry(
                format!("hub {kind} {me} changed while a clash on `{name}` was settled; again"),
                Some(std::time::Duration::from_millis(200)),
            )),
            Collision::Refuse { refused, back } => {
                let (y, other) = if &refused == x.id() {
                    (x, holder.clone())
                } else {
                    (o, me.clone())
                };
                let clash = Clash {
                    me,
                    other: &other,
                    name,
                };
                self.refuse_change(Refused { y, back, clash }).await
            }
            Collision::Merge => {
                self.merge_duplicate(x, o, carried.unwrap_or_default(), name)
                    .await
            }
        }
    }

    /// `x` was created twice: `o` takes over the side objects `x` has (never two on one
    /// side: WeCom merges same-name creates and the mall refuses them) and what `carried`
    /// moves, and `x` is retired in the hub without touching any side; `o` is brought up to
    /// date and `x`'s run ends `superseded`.
    async fn merge_duplicate<T: Contested>(
        &mut self,
        mut x: T,
        mut o: T,
        carried: Vec<Write>,
        name: &str,
    ) -> Step<()> {
        let kind = T::KIND;
        let me = x.id().clone();
        let mut writes = Vec::new();
        if let Some(w) = x.wecom().id.clone() {
            *o.wecom_mut() = x.wecom().clone();
            writes.push(Write::Relink(o.link_on(Side::Wecom, &w)));
        }
        if let Some(m) = x.mall().id.clone() {
            *o.mall_mut() = x.mall().clone();
            writes.push(Write::Relink(o.link_on(Side::Mall, &m)));
        }
        writes.extend(carried);
        let before = x.json();
        x.retire(self.now());
        let kind = kind.as_str();
        writes.push(Write::Audit(self.entry(
            Actor::Hub,
            &format!("{kind}.merged"),
            format!("{kind}:{me}"),
            Some(before),
            Some(json!({"merged_into": o.id().to_string()})),
        )));
        writes.push(x.write());
        writes.push(o.write());
        self.commit(writes).await?;
        if self.depth < 4 {
            self.bring_nested(T::OBJECT(o.id().clone()), true).await?;
        }
        Err(StepError::superseded(format!(
            "hub {kind} {me} duplicated hub {kind} {} (`{name}`) and was merged into it",
            o.id()
        )))
    }

    /// Refuses the change that brought `r.y` onto the name `r.clash.other` holds: `y` goes
    /// back (see [`Contested::go_back`]) as a hub edit, brought to its sides now. `Ok`: `y`
    /// was the holder, try again; `superseded` when `y` is `me`.
    async fn refuse_change<T: Contested>(&mut self, mut r: Refused<'_, T>) -> Step<()> {
        let before = r.y.json();
        T::go_back(self, &mut r).await?;
        let Refused { mut y, clash, .. } = r;
        // A read-only side keeps its own value; every other side is sent the hub's again.
        let pend = |state: &mut SyncState| {
            if *state != SyncState::ReadOnly {
                *state = SyncState::Pending;
            }
        };
        pend(&mut y.wecom_mut().state);
        pend(&mut y.mall_mut().state);
        let kind = T::KIND.as_str();
        let entry = self.entry(
            Actor::Hub,
            &format!("{kind}.change_refused"),
            format!("{kind}:{}", y.id()),
            Some(before),
            Some(json!({
                kind: y.json(),
                "clashed_with": clash.other.to_string(),
            })),
        );
        self.commit(vec![y.write(), Write::Audit(entry)]).await?;
        // The refused one brings its sides back; if that is `me`, this run is moot.
        if self.depth < 4 {
            self.bring_nested(T::OBJECT(y.id().clone()), false).await?;
        }
        let Clash { me, other, name } = clash;
        if y.id() == me {
            return Err(StepError::superseded(format!(
                "hub {kind} {me} came onto `{name}`, held by hub {kind} {other}: its {} was refused",
                T::REFUSED
            )));
        }
        Ok(())
    }

    /// Whether `back`, where `y` came from, is held now by an object other than `y` and
    /// `other`: a live hub object, or a side object that is not `y`'s own (the caller reads
    /// the sides afresh). Refusing `y`'s change would take it there.
    async fn back_taken<T: Contested>(
        &mut self,
        y: &T,
        back: &T::Snapshot,
        other: &T::Id,
    ) -> Step<bool> {
        let name = T::snapshot_name(back);
        let place = T::snapshot_scope(back);
        let in_hub = self.all::<T>().await?.into_iter().any(|x| {
            !x.is_deleted()
                && x.id() != y.id()
                && x.id() != other
                && x.name() == name
                && x.scope() == place
        });
        if in_hub {
            return Ok(true);
        }
        let (wecom, mall) = T::side_names(self, &place).await?;
        let on =
            |own: Option<&T::WecomId>| wecom.iter().any(|(id, n)| n == name && Some(id) != own);
        let on_mall =
            |own: Option<&T::MallId>| mall.iter().any(|(id, n)| n == name && Some(id) != own);
        Ok(on(y.wecom().id.as_ref()) || on_mall(y.mall().id.as_ref()))
    }

    /// The name and (hub) group each side shows tag `y` under now, by its ids.
    #[allow(clippy::type_complexity)]
    pub(super) async fn tag_where_shown(
        &mut self,
        y: &Tag,
    ) -> Step<(
        Option<(String, Option<HubGroupId>)>,
        Option<(String, Option<HubGroupId>)>,
    )> {
        let (wid, mid) = (y.side_id(Side::Wecom), y.side_id(Side::Mall));
        let wecom = self.wecom_tag_info(wid.as_deref()).await?;
        let wecom = wecom.map(|(g, x)| (x.name, g.to_string()));
        let mall = self.mall_tag_info(mid.as_deref()).await?;
        let mall = mall.map(|x| (x.name, x.group_id.to_string()));
        Ok((
            self.in_hub_group(Side::Wecom, wecom).await?,
            self.in_hub_group(Side::Mall, mall).await?,
        ))
    }

    /// A name and `side`'s group it shows in, the group as the hub group the id map links it
    /// to (if any).
    async fn in_hub_group(
        &self,
        side: Side,
        shown: Option<(String, String)>,
    ) -> Step<Option<(String, Option<HubGroupId>)>> {
        let Some((name, group)) = shown else {
            return Ok(None);
        };
        Ok(Some((name, self.hub_of::<TagGroup>(side, &group).await?)))
    }
}
