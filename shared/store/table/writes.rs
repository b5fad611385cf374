//! Atomic multi-item writes ([`crate::ports::Store::transact`]): each [`Write`] as the items it
//! puts or deletes, all applied in one backend transaction.

use super::encoding::{deletion, versioned_put};
use super::{TableStore, audit, claims, keys, marks, members};
use crate::ports::{StoreError, StoreResult, Write};
use crate::store::item::{Condition, Item, ItemBackend, ItemWrite};

/// The most item writes one transaction carries (DynamoDB's limit, kept by both backends).
const MAX_TRANSACTION: usize = 100;

pub(super) async fn transact<B: ItemBackend>(
    store: &TableStore<B>,
    writes: Vec<Write>,
) -> StoreResult<()> {
    let mut items = Vec::with_capacity(writes.len());
    for w in writes {
        items.extend(item_writes(w)?);
    }
    if items.len() > MAX_TRANSACTION {
        return Err(StoreError::Invalid(format!(
            "{} writes in one transaction (at most {MAX_TRANSACTION})",
            items.len()
        )));
    }
    store.backend.transact(items).await
}

fn item_writes(write: Write) -> StoreResult<Vec<ItemWrite>> {
    Ok(match write {
        Write::Group(g) => vec![versioned_put(keys::group(&g.tenant, &g.id), &g)?],
        Write::Tag(t) => vec![versioned_put(keys::tag(&t.tenant, &t.id), &t)?],
        Write::DeleteGroup {
            tenant,
            id,
            version,
        } => vec![deletion(
            keys::group(&tenant, &id),
            Condition::Version(version),
        )],
        Write::DeleteTag {
            tenant,
            id,
            version,
        } => vec![deletion(
            keys::tag(&tenant, &id),
            Condition::Version(version),
        )],
        // A link must not take a side id already mapped; a relink moves one on purpose.
        Write::Link(link) => vec![link_put(&link, Condition::Absent)?],
        Write::Relink(link) => vec![link_put(&link, Condition::None)?],
        Write::Unlink(link) => vec![deletion(keys::link_of(&link), Condition::None)],
        Write::Binding(b) => members::binding_writes(&b)?,
        Write::MemberTags(m) => vec![versioned_put(
            keys::member_tags(&m.tenant, &m.member_id),
            &m,
        )?],
        Write::Customer(c) => members::relations_writes(&c)?,
        Write::Run(r) => vec![versioned_put(keys::run(&r.tenant, &r.id), &r)?],
        Write::Audit(entry) => vec![audit::audit_put(&entry)?],
        Write::Rule(r) => vec![versioned_put(keys::rule(&r.tenant, &r.id), &r)?],
        Write::Firing(f) => vec![marks::firing_put(&f)?],
        Write::CompleteOnce {
            key,
            now,
            expires_at,
        } => vec![claims::complete_once(&key, now, expires_at)?],
    })
}

fn link_put(link: &crate::domain::IdLink, condition: Condition) -> StoreResult<ItemWrite> {
    let (pk, sk) = keys::link_of(link);
    let data = super::encoding::encode(&pk, link)?;
    Ok(ItemWrite::Put {
        item: Item::new(pk, sk, 1, data),
        condition,
    })
}
