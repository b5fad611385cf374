//! Scoped groups' WeCom side: their tags live in a WeCom rule group (customer strategy,
//! wecom-api.md §1.4) instead of the corp library. The library a job reads holds both; writes
//! go to the API of the library the object lives in (`*_strategy_tag` or `*_corp_tag`); a
//! scoped group's first create makes its rule group (with its range) if it has none yet, and
//! a group job keeps the rule group's name and range as the hub says. The mall has no scopes:
//! a scoped group with `carry_to_mall` off has no mall leg.

use super::persist::Stored;
use super::{Cx, Step, StepError};
use crate::domain::*;
use crate::ports::Write;
use crate::wecom::client::{
    AddTarget, DeleteOutcome, EditTarget, NewTag, TagGroupInfo, WecomError,
};
use crate::wecom::strategy::RangeNode;
use serde_json::json;
use std::collections::BTreeSet;

/// The range WeCom should hold for `scope`: its staff and departments, with every
/// sub-department of those (as directory `dir` shows the tree) when `include_sub` is on:
/// WeCom's ranges do not inherit, so each level is listed.
pub(super) fn wanted_range(scope: &GroupScope, dir: Option<&Directory>) -> BTreeSet<RangeNode> {
    let departments: BTreeSet<u32> = match (scope.include_sub, dir) {
        (true, Some(d)) => d.expand(scope.departments.iter().copied()),
        _ => scope.departments.iter().copied().collect(),
    };
    departments
        .into_iter()
        .map(RangeNode::Party)
        .chain(scope.users.iter().cloned().map(RangeNode::User))
        .collect()
}

impl Cx<'_> {
    /// The range WeCom should hold for `scope` (see [`wanted_range`]). A scope with
    /// sub-departments reads the stored directory, or WeCom's when none is stored yet.
    async fn range_of(&self, scope: &GroupScope) -> Step<BTreeSet<RangeNode>> {
        if !scope.include_sub {
            return Ok(wanted_range(scope, None));
        }
        let dir = match self.app.store.get_directory(self.t()).await? {
            Some(d) => d,
            None => crate::jobs::directory::refresh(self.app, self.tenant).await?,
        };
        Ok(wanted_range(scope, Some(&dir)))
    }

    /// WeCom's whole tag library: the corp's and every rule group's.
    pub(super) async fn read_wecom_lib(&self) -> Step<Vec<TagGroupInfo>> {
        let mut lib = self
            .app
            .wecom
            .get_corp_tag_list(&self.creds, &[], &[])
            .await?;
        lib.extend(
            self.app
                .wecom
                .get_strategy_tag_list(&self.creds, None, &[], &[])
                .await?,
        );
        Ok(lib)
    }

    /// The rule group WeCom shows the group or tag `id` in (`None`: the corp library, or not
    /// shown at all — then the corp API answers "unknown id" as before).
    async fn strategy_of(&mut self, id: &str) -> Step<Option<u32>> {
        let find = |lib: &Vec<TagGroupInfo>| {
            lib.iter()
                .find(|g| g.group_id.as_str() == id || g.tag.iter().any(|t| t.id.as_str() == id))
                .map(|g| g.strategy_id)
        };
        if let Some(found) = self.wecom_lib.as_ref().and_then(find) {
            return Ok(found);
        }
        self.wecom_lib = None;
        Ok(find(self.wecom_lib().await?).flatten())
    }

    /// `edit_corp_tag` or `edit_strategy_tag`, whichever library holds the target.
    pub(super) async fn wecom_edit_call(
        &mut self,
        target: EditTarget<'_>,
        name: Option<&str>,
        order: Option<u32>,
    ) -> Step<Result<(), WecomError>> {
        let id = match target {
            EditTarget::Tag(t) => t.as_str(),
            EditTarget::Group(g) => g.as_str(),
        };
        let w = &self.app.wecom;
        Ok(match self.strategy_of(id).await? {
            Some(_) => w.edit_strategy_tag(&self.creds, target, name, order).await,
            None => w.edit_corp_tag(&self.creds, target, name, order).await,
        })
    }

    /// `del_corp_tag` or `del_strategy_tag`, whichever library holds the (one) target.
    pub(super) async fn wecom_del_call(
        &mut self,
        tags: &[WecomTagId],
        groups: &[WecomGroupId],
    ) -> Step<Result<DeleteOutcome, WecomError>> {
        let id = tags
            .first()
            .map(|t| t.as_str().to_owned())
            .or_else(|| groups.first().map(|g| g.as_str().to_owned()))
            .unwrap_or_default();
        let w = &self.app.wecom;
        Ok(match self.strategy_of(&id).await? {
            Some(_) => w.del_strategy_tag(&self.creds, tags, groups).await,
            None => w.del_corp_tag(&self.creds, tags, groups).await,
        })
    }

    /// `add_corp_tag`, or for a scoped group `add_strategy_tag` into its rule group.
    pub(super) async fn wecom_add_call(
        &self,
        group: &TagGroup,
        target: AddTarget<'_>,
        tags: &[NewTag],
    ) -> Result<TagGroupInfo, WecomError> {
        match group.scope.as_ref().and_then(|s| s.strategy_id) {
            Some(sid) => {
                self.app
                    .wecom
                    .add_strategy_tag(&self.creds, sid, target, tags)
                    .await
            }
            None => self.app.wecom.add_corp_tag(&self.creds, target, tags).await,
        }
    }

    /// A scoped group's rule group, made in WeCom (with the group's range) if it has none
    /// yet; the group is saved with its id. A rule group of the same name that no hub group
    /// holds is adopted instead (a retry after a create whose answer was lost must not make a
    /// second one).
    pub(super) async fn with_strategy(&mut self, mut group: TagGroup) -> Step<TagGroup> {
        let Some(scope) = group.scope.clone() else {
            return Ok(group);
        };
        if scope.strategy_id.is_some() {
            return Ok(group);
        }
        let groups: Vec<TagGroup> = self.all().await?;
        let held: BTreeSet<u32> = groups
            .iter()
            .filter_map(|g| g.scope.as_ref().and_then(|s| s.strategy_id))
            .collect();
        let mut found = None;
        for sid in self.app.wecom.strategy_ids(&self.creds).await? {
            if held.contains(&sid) {
                continue;
            }
            let info = self.app.wecom.strategy_get(&self.creds, sid).await?;
            if info.parent_id == 0 && info.strategy_name == scope.name {
                found = Some(sid);
                break;
            }
        }
        let sid = match found {
            Some(sid) => sid,
            None => {
                let range = self.range_of(&scope).await?;
                match self
                    .app
                    .wecom
                    .strategy_create(&self.creds, None, &scope.name, &range)
                    .await
                {
                    Ok(sid) => sid,
                    Err(e) if e.retryable() => return Err(e.into()),
                    Err(e) => {
                        return Err(StepError::park(format!(
                            "WeCom refused to create rule group `{}`: {e}",
                            scope.name
                        )));
                    }
                }
            }
        };
        if let Some(s) = group.scope.as_mut() {
            s.strategy_id = Some(sid);
        }
        let entry = self.entry(
            Actor::Wecom,
            "rule_group.linked",
            format!("group:{}", group.id),
            None,
            Some(json!({"strategy_id": sid, "name": scope.name})),
        );
        self.commit(vec![Write::Group(group.clone()), Write::Audit(entry)])
            .await?;
        group.version += 1;
        Ok(group)
    }

    /// Brings a scoped group's rule group to the hub's name and range (the hub is where
    /// ranges are edited). A refusal (a range WeCom will not take) marks the WeCom side
    /// failed with WeCom's reason.
    pub(super) async fn strategy_range_leg(&mut self, g: &mut TagGroup) -> Step<()> {
        let Some(scope) = g.scope.clone() else {
            return Ok(());
        };
        let Some(sid) = scope.strategy_id else {
            return Ok(());
        };
        if g.deleted_at.is_some() || g.wecom.state == SyncState::ReadOnly {
            return Ok(());
        }
        let w = &self.app.wecom;
        let info = w.strategy_get(&self.creds, sid).await?;
        let shown = w.strategy_range(&self.creds, sid).await?;
        let wanted = self.range_of(&scope).await?;
        let add: BTreeSet<RangeNode> = wanted.difference(&shown).cloned().collect();
        let del: BTreeSet<RangeNode> = shown.difference(&wanted).cloned().collect();
        let rename = (info.strategy_name != scope.name).then_some(scope.name.as_str());
        if add.is_empty() && del.is_empty() && rename.is_none() {
            return Ok(());
        }
        match w.strategy_edit(&self.creds, sid, rename, &add, &del).await {
            Ok(()) => {
                let entry = self.entry(
                    Actor::Wecom,
                    "rule_group.updated",
                    format!("group:{}", g.id),
                    Some(json!({"name": info.strategy_name, "range": shown})),
                    Some(json!({"name": scope.name, "range": wanted})),
                );
                self.commit(vec![Write::Audit(entry)]).await?;
                Ok(())
            }
            Err(e) if e.retryable() => Err(e.into()),
            Err(e) => {
                let why = format!("WeCom refused the rule group's range: {e}");
                self.fail(g.clone(), Side::Wecom, StepError::park(why))
                    .await
            }
        }
    }

    /// A hub group new from WeCom whose WeCom group lives in a rule group takes that rule
    /// group as its scope (name and range as WeCom has them).
    pub(super) async fn scope_from_wecom(&mut self, wecom_group: &str) -> Step<Option<GroupScope>> {
        let Some(sid) = self.strategy_of(wecom_group).await? else {
            return Ok(None);
        };
        let w = &self.app.wecom;
        let info = w.strategy_get(&self.creds, sid).await?;
        let range = w.strategy_range(&self.creds, sid).await?;
        let mut scope = GroupScope {
            strategy_id: Some(sid),
            name: info.strategy_name,
            departments: Vec::new(),
            users: Vec::new(),
            include_sub: false,
        };
        for node in range {
            match node {
                RangeNode::Party(p) => scope.departments.push(p),
                RangeNode::User(u) => scope.users.push(u),
            }
        }
        Ok(Some(scope))
    }
}

impl Cx<'_> {
    /// Tag `x`'s group was switched off the mall: it forgets its mall copy (link and base), so
    /// the mall no longer has a say about it (its copy goes with the mall group, see
    /// [`Cx::leave_mall`]). Done tag by tag before the mall group is deleted: a tag still
    /// linked to a mall tag that is gone would read as deleted in the mall.
    pub(super) async fn forget_mall_tag(&self, x: &mut Tag) -> Step<()> {
        let Some(mid) = x.mall.id.clone() else {
            return Ok(());
        };
        let id = x.id.clone();
        let writes = vec![
            Write::Unlink(x.link_on(Side::Mall, &mid)),
            Write::Audit(self.entry(
                Actor::Mall,
                "tag.left_mall",
                format!("tag:{id}"),
                Some(json!({"mall_id": mid})),
                None,
            )),
        ];
        x.mall = SideLink::default();
        self.save_tag(x, Side::Mall, writes).await
    }

    /// A scoped group whose `carry_to_mall` was switched off after it reached the mall: its
    /// tags forget their mall copies, then the mall group is deleted (its tags and their
    /// member marks go with it there), then the group forgets it. The hub and WeCom keep
    /// everything (docs/scoped-groups.md, "Choices").
    pub(super) async fn leave_mall(&mut self, g: &mut TagGroup) -> Step<()> {
        let Some(mid) = g.mall.id.clone() else {
            return Ok(());
        };
        let t = self.t().clone();
        for mut x in self.app.store.list_tags(&t).await? {
            if x.group_id == g.id && x.mall.id.is_some() {
                self.forget_mall_tag(&mut x).await?;
            }
        }
        let key = self.key(&format!("leave-mall:{}:{mid}", g.id));
        if let Err(e) = self.app.mall.delete_group(&self.ep, &key, &mid).await {
            return self.fail(g.clone(), Side::Mall, e).await;
        }
        let writes = vec![
            Write::Unlink(g.link_on(Side::Mall, &mid)),
            Write::Audit(self.entry(
                Actor::Mall,
                "group.left_mall",
                format!("group:{}", g.id),
                Some(json!({"mall_id": mid})),
                None,
            )),
        ];
        g.mall = SideLink::default();
        self.save_group(g, Side::Mall, writes).await?;
        self.mall_lib = None;
        Ok(())
    }
}
