//! Entries that expire by themselves: rule firings (kept [`FIRING_TTL_SECS`]) and queue marks
//! (a tenant's queued jobs, for a queue that cannot count them).

use super::TableStore;
use super::encoding::{expiring_item, versioned_put};
use super::keys;
use crate::domain::*;
use crate::ports::{StoreError, StoreResult};
use crate::store::item::{Condition, Item, ItemBackend, ItemWrite};

/// How long a firing is kept: the contract asks for at least 30 days (undo reads them).
pub const FIRING_TTL_SECS: i64 = 90 * 24 * 3600;

/// How many marks one transaction writes: one send is at most a few hundred jobs, so far
/// fewer round trips than one write each.
const MARKS_PER_TRANSACTION: usize = 100;

/// A firing's versioned put, expiring [`FIRING_TTL_SECS`] after it fired.
pub(super) fn firing_put(f: &Firing) -> StoreResult<ItemWrite> {
    let mut write = versioned_put(keys::firing(f), f)?;
    if let ItemWrite::Put { item, .. } = &mut write {
        item.expiration = Some(f.at.plus_secs(FIRING_TTL_SECS).secs());
    }
    Ok(write)
}

/// A queue mark's item at `version`, expiring with the mark.
fn mark_item(mark: &QueueMark, version: u64) -> StoreResult<Item> {
    let key = keys::queue_mark(&mark.tenant, &mark.job);
    let mut item = expiring_item(key, mark, mark.expires_at)?;
    item.version = version;
    Ok(item)
}

pub(super) async fn put_queue_marks<B: ItemBackend>(
    store: &TableStore<B>,
    marks: &[QueueMark],
) -> StoreResult<()> {
    for chunk in marks.chunks(MARKS_PER_TRANSACTION) {
        let writes = chunk
            .iter()
            .map(|m| {
                Ok(ItemWrite::Put {
                    item: mark_item(m, 1)?,
                    condition: Condition::None,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        store.backend.transact(writes).await?;
    }
    Ok(())
}

pub(super) async fn update_queue_mark<B: ItemBackend>(
    store: &TableStore<B>,
    mark: &QueueMark,
) -> StoreResult<bool> {
    let (pk, sk) = keys::queue_mark(&mark.tenant, &mark.job);
    // Read, then write only over what was read: a delete in between wins.
    for _ in 0..5 {
        let Some(current) = store.backend.get(&pk, &sk).await? else {
            return Ok(false);
        };
        let put = ItemWrite::Put {
            item: mark_item(mark, current.version + 1)?,
            condition: Condition::Version(current.version),
        };
        match store.backend.write(put).await {
            Ok(()) => return Ok(true),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict {
        key: format!("{pk}|{sk}"),
        reason: "the queue mark kept changing".into(),
    })
}
