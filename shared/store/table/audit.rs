//! The audit log's entries: sorted by time, each unique.

use super::encoding::encode;
use super::keys;
use crate::domain::*;
use crate::ports::StoreResult;
use crate::store::item::{Condition, Item, ItemWrite};

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
