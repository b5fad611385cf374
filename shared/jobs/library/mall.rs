//! The mall leg of group and tag jobs: creates (adopting a same-name object nobody maps),
//! updates and moves (a name another hub object holds there makes it step aside first),
//! deletes, each with an idempotency key named after the job's step.

use super::group::g_name;
use super::persist::Stored;
use super::{Cx, Step, StepError, StepFailure, vanished};
use crate::domain::*;
use crate::mall::client::{GroupPatch, MallError, TagPatch};
use crate::ports::Write;
use crate::sync::library::{LibraryOp, SidePlan};
use serde_json::json;

impl Cx<'_> {
    /// Group `g`'s mall leg: the planned operation (a name another hub group holds there
    /// makes that group step aside first, once), then `g` saved with what the mall confirmed;
    /// `seen`: what this job read there.
    pub(super) async fn group_mall_leg(
        &mut self,
        g: &mut TagGroup,
        plan: &SidePlan<MallGroupId, GroupSnapshot>,
        seen: Option<&GroupSnapshot>,
    ) -> Step<()> {
        let id = g.id.clone();
        let mall_op = plan.op.clone();
        if matches!(mall_op, LibraryOp::Nothing | LibraryOp::MarkReadOnly) {
            return Ok(());
        }
        let before = seen.map(|s| json!(s));
        let after = plan.base_after.clone();
        let result = self.mall_group_write(g, &mall_op).await?;
        let mut writes = Vec::new();
        match result {
            Ok(created) => {
                if let Some(mid) = created {
                    writes.push(Write::Link(g.link_on(Side::Mall, &mid)));
                    g.mall.id = Some(mid);
                }
                if matches!(mall_op, LibraryOp::Delete { .. }) {
                    if let Some(mid) = &g.mall.id {
                        writes.push(Write::Unlink(g.link_on(Side::Mall, mid)));
                    }
                    g.mall = SideLink::default();
                    g.mall.synced(None);
                } else {
                    g.mall.synced(after.clone());
                }
                let action = match mall_op {
                    LibraryOp::Create { .. } => "group.created",
                    LibraryOp::Delete { .. } => "group.deleted",
                    _ => "group.updated",
                };
                writes.push(Write::Audit(self.entry(
                    Actor::Mall,
                    action,
                    format!("group:{id}"),
                    before,
                    after.as_ref().map(|s| json!(s)),
                )));
            }
            Err(e) if e.is_not_found() && !matches!(mall_op, LibraryOp::Create { .. }) => {
                return Err(vanished(Side::Mall));
            }
            Err(e) if e.existing_id().is_some() => {
                let name = g_name(&after);
                let why = format!(
                    "the mall already has a tag group named `{name}` (id {}), managed as another hub group; rename one of them",
                    e.existing_id().unwrap_or_default()
                );
                return self.fail(g.clone(), Side::Mall, StepError::park(why)).await;
            }
            Err(e) => return self.fail(g.clone(), Side::Mall, e).await,
        }
        self.save_group(g, Side::Mall, writes).await?;
        self.mall_lib = None;
        Ok(())
    }

    /// The mall call for group `g`'s operation `op`. A name another hub group holds in the
    /// mall makes it step aside first (once); the mall's last answer is returned.
    async fn mall_group_write(
        &mut self,
        g: &TagGroup,
        op: &LibraryOp<MallGroupId, GroupSnapshot>,
    ) -> Step<Result<Option<MallGroupId>, MallError>> {
        let id = g.id.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.mall_group_op(g, op, attempt).await?;
            let wanted = match op {
                LibraryOp::Create { after } => Some(after.name.clone()),
                LibraryOp::Update { name, .. } => name.clone(),
                _ => None,
            };
            if let (Err(e), Some(name), 1) = (&r, wanted, attempt)
                && let Some(existing) = e.existing_id()
            {
                match self.hub_of::<TagGroup>(Side::Mall, existing).await? {
                    Some(other) if other != id => {
                        self.step_aside::<TagGroup>(Side::Mall, &id, &other, &name)
                            .await?;
                        continue;
                    }
                    Some(_) => {}
                    // As for tags (`mall_update`): every mall group is synced, so one the
                    // hub does not know is most likely on its way in (its webhook still
                    // coming; a create adopted it already if nobody maps it). Retried, and
                    // parked if it never comes (made without a webhook).
                    None => {
                        let why = StepError::retry_shown(
                            format!(
                                "the name `{name}` is taken in the mall by tag group {existing} which tagsync does not manage (yet); rename or delete it"
                            ),
                            None,
                        );
                        return self.fail(g.clone(), Side::Mall, why).await;
                    }
                }
            }
            return Ok(r);
        }
    }

    /// One mall call for group `g`'s planned operation (`attempt` keys a second try after a
    /// sibling stepped aside, which the mall must not answer from its record of the first).
    pub(super) async fn mall_group_op(
        &mut self,
        g: &TagGroup,
        op: &LibraryOp<MallGroupId, GroupSnapshot>,
        attempt: u32,
    ) -> Step<Result<Option<MallGroupId>, MallError>> {
        let id = g.id.clone();
        Ok(match op {
            LibraryOp::Nothing | LibraryOp::MarkReadOnly | LibraryOp::Move { .. } => Ok(None),
            LibraryOp::Create { after: s } => {
                match self
                    .app
                    .mall
                    .create_group(
                        &self.ep,
                        &self.key(&format!("create-group:{id}:v{}:{attempt}", g.version)),
                        &s.name,
                        Some(s.order),
                    )
                    .await
                {
                    Ok(created) => Ok(Some(created.id)),
                    Err(e) => match e.existing_id() {
                        // Adopt a same-name group nobody maps (a retried or crashed create).
                        Some(existing)
                            if self
                                .hub_of::<TagGroup>(Side::Mall, existing)
                                .await?
                                .is_none() =>
                        {
                            let existing = MallGroupId::new_unchecked(existing);
                            self.app
                                .mall
                                .update_group(
                                    &self.ep,
                                    &self.key(&format!("adopt-group:{id}:v{}", g.version)),
                                    &existing,
                                    &GroupPatch {
                                        name: None,
                                        order: Some(s.order),
                                    },
                                )
                                .await
                                .map(|_| Some(existing))
                        }
                        _ => Err(e),
                    },
                }
            }
            LibraryOp::Update {
                id: mid,
                name,
                order,
            } => self
                .app
                .mall
                .update_group(
                    &self.ep,
                    &self.key(&format!("update-group:{id}:v{}:{attempt}", g.version)),
                    mid,
                    &GroupPatch {
                        name: name.clone(),
                        order: *order,
                    },
                )
                .await
                .map(|_| None),
            LibraryOp::Delete { id: mid } => {
                let key = self.key(&format!("delete-group:{id}:v{}", g.version));
                let deleted = self.app.mall.delete_group(&self.ep, &key, mid).await;
                deleted.map(|_| None)
            }
        })
    }

    pub(super) async fn apply_mall_tag(
        &mut self,
        mut x: Tag,
        op: LibraryOp<MallTagId, TagSnapshot>,
        after: Option<TagSnapshot>,
        seen: Option<TagSnapshot>,
    ) -> Step<Tag> {
        let id = x.id.clone();
        let entity = format!("tag:{id}");
        let before = seen.as_ref().map(|s| json!(s));
        let mut writes = Vec::new();
        let action = match &op {
            LibraryOp::Create { .. } => "tag.created",
            LibraryOp::Move { .. } => "tag.moved",
            LibraryOp::Delete { .. } => "tag.deleted",
            _ => "tag.updated",
        };
        let result: Result<(), StepFailure> = async {
            match &op {
                LibraryOp::Create { after: s } => {
                    let mid = self.mall_create(&x, s).await?;
                    writes.push(Write::Link(x.link_on(Side::Mall, &mid)));
                    x.mall.id = Some(mid);
                }
                LibraryOp::Update {
                    id: mid,
                    name,
                    order,
                } => {
                    let patch = TagPatch {
                        name: name.clone(),
                        order: *order,
                        group_id: None,
                    };
                    self.mall_update(&x, mid, patch).await?;
                }
                LibraryOp::Move {
                    id: mid,
                    to_group,
                    name,
                    order,
                    ..
                } => {
                    let gid = self.mall_group_id(to_group).await?;
                    let patch = TagPatch {
                        name: name.clone(),
                        order: *order,
                        group_id: Some(gid),
                    };
                    self.mall_update(&x, mid, patch).await?;
                }
                LibraryOp::Delete { id: mid } => {
                    let key = self.key(&format!("delete-tag:{id}:v{}", x.version));
                    let deleted = self.app.mall.delete_tag(&self.ep, &key, mid).await;
                    deleted.map_err(StepError::from)?;
                    writes.push(Write::Unlink(x.link_on(Side::Mall, mid)));
                    x.mall.id = None;
                }
                LibraryOp::Nothing | LibraryOp::MarkReadOnly => {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            return self.fail(x, Side::Mall, e).await;
        }
        x.mall.synced(after.clone());
        writes.push(Write::Audit(self.entry(
            Actor::Mall,
            action,
            entity,
            before,
            after.as_ref().map(|s| json!(s)),
        )));
        self.save_tag(&mut x, Side::Mall, writes).await?;
        self.mall_lib = None;
        Ok(x)
    }

    /// The mall id of hub group `g`, creating the group in the mall first if needed.
    pub(super) async fn mall_group_id(
        &mut self,
        g: &HubGroupId,
    ) -> Result<MallGroupId, StepFailure> {
        let t = self.t().clone();
        let group = self.group_for_create(g).await?;
        if let Some(m) = group.mall.id {
            return Ok(m);
        }
        Box::pin(self.group(g.clone(), Hint::from(self.origin), false)).await?;
        self.app
            .store
            .get_group(&t, g)
            .await?
            .and_then(|x| x.mall.id)
            .ok_or_else(|| {
                StepError::retry(format!("hub group {g} is not in the mall yet"), None).into()
            })
    }

    pub(super) async fn mall_create(
        &mut self,
        x: &Tag,
        s: &TagSnapshot,
    ) -> Result<MallTagId, StepFailure> {
        let gid = self.mall_group_id(&s.group_id).await?;
        for attempt in 0..2 {
            let key = self.key(&format!("create-tag:{}:v{}:{attempt}", x.id, x.version));
            match self
                .app
                .mall
                .create_tag(&self.ep, &key, &gid, &s.name, Some(s.order))
                .await
            {
                Ok(created) => return Ok(created.id),
                // The group was deleted in the mall meanwhile: the next try reads that, and
                // the deletion (which takes the group's tags) wins over the create.
                Err(e) if e.is_not_found() => return Err(vanished(Side::Mall).into()),
                Err(e) => match e.existing_id().map(str::to_owned) {
                    Some(existing) => {
                        match self.hub_of::<Tag>(Side::Mall, &existing).await? {
                            // Nobody maps it: adopt it (a retried or crashed create).
                            None => {
                                let existing = MallTagId::new_unchecked(existing);
                                self.app
                                    .mall
                                    .update_tag(
                                        &self.ep,
                                        &self.key(&format!("adopt-tag:{}:v{}", x.id, x.version)),
                                        &existing,
                                        &TagPatch {
                                            order: Some(s.order),
                                            ..TagPatch::default()
                                        },
                                    )
                                    .await
                                    .map_err(StepError::from)?;
                                return Ok(existing);
                            }
                            Some(h) if h == x.id => {
                                return Ok(MallTagId::new_unchecked(existing));
                            }
                            Some(h) if attempt == 0 => {
                                self.step_aside::<Tag>(Side::Mall, &x.id, &h, &s.name)
                                    .await?;
                            }
                            Some(_) => return Err(StepError::from(e).into()),
                        }
                    }
                    None => return Err(StepError::from(e).into()),
                },
            }
        }
        Err(StepError::park("the mall refused the create twice").into())
    }

    pub(super) async fn mall_update(
        &mut self,
        x: &Tag,
        mid: &MallTagId,
        patch: TagPatch,
    ) -> Result<(), StepFailure> {
        for attempt in 0..2 {
            let key = self.key(&format!("update-tag:{}:v{}:{attempt}", x.id, x.version));
            match self.app.mall.update_tag(&self.ep, &key, mid, &patch).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Err(vanished(Side::Mall).into()),
                Err(e) => match e.existing_id().map(str::to_owned) {
                    Some(existing) if attempt == 0 => {
                        let name = patch.name.clone().unwrap_or_else(|| x.name.clone());
                        match self.hub_of::<Tag>(Side::Mall, &existing).await? {
                            Some(h) => self.step_aside::<Tag>(Side::Mall, &x.id, &h, &name).await?,
                            // Every mall tag is synced: one the hub does not know is most
                            // likely on its way in (its webhook still coming). Retried, and
                            // parked if it never comes (made without a webhook).
                            None => {
                                return Err(StepError::retry_shown(
                                    format!(
                                        "the name `{name}` is taken in the mall by tag {existing} which tagsync does not manage (yet); rename or delete it"
                                    ),
                                    None,
                                )
                                .into());
                            }
                        }
                    }
                    _ => return Err(StepError::from(e).into()),
                },
            }
        }
        Err(StepError::park("the mall refused the update twice").into())
    }
}
