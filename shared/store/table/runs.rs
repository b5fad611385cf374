//! The audit log and sync runs, with the parts of a run kept apart from its item.

use super::TableStore;
use super::encoding::{encode, expiring_item};
use super::keys;
use crate::domain::*;
use crate::ports::StoreResult;
use crate::store::item::{Condition, Item, ItemBackend, ItemWrite};

/// An audit entry's put: sorted by time, unique by a fresh id.
pub(super) fn audit_put(entry: &AuditEntry) -> StoreResult<ItemWrite> {
    let pk = keys::audit(&entry.tenant);
    let sk = format!("{:015}#{}", entry.at.millis().max(0), new_ordered_id());
    let data = encode(&pk, entry)?;
    Ok(ItemWrite::Put {
        item: Item::new(pk, sk, 1, data),
        condition: Condition::Absent,
    })
}

pub(super) async fn put_chain_users<B: ItemBackend>(
    store: &TableStore<B>,
    tenant: &TenantId,
    run: &RunId,
    chain: &str,
    users: &[String],
    expires_at: Timestamp,
) -> StoreResult<()> {
    let item = expiring_item(keys::run_part(tenant, run, chain), &users, expires_at)?;
    let put = ItemWrite::Put {
        item,
        condition: Condition::Absent,
    };
    match store.backend.write(put).await {
        // Written by an earlier copy of the page job: that one stands.
        Err(e) if e.is_conflict() => Ok(()),
        other => other,
    }
}
