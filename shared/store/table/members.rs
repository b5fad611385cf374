//! Members and customers: a binding and its reverse lookup (the customer→member marker), a
//! customer's relations and the index of customers that have any.

use super::TableStore;
use super::encoding::{encode, versioned_put};
use super::keys;
use crate::domain::*;
use crate::ports::StoreResult;
use crate::store::item::{Condition, Item, ItemBackend, ItemWrite};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct CustomerMarker {
    member_id: MemberId,
}

/// A binding's put, and its customer's marker when it names one.
pub(super) fn binding_writes(b: &MemberBinding) -> StoreResult<Vec<ItemWrite>> {
    let mut writes = vec![versioned_put(keys::binding(&b.tenant, &b.member_id), b)?];
    if let Some(customer) = &b.external_userid {
        // The marker is the reverse lookup; a stale marker (the member was rebound) is
        // detected on read, so it is written without a condition.
        let (pk, sk) = keys::customer_marker(&b.tenant, customer);
        let marker = CustomerMarker {
            member_id: b.member_id.clone(),
        };
        let data = encode(&pk, &marker)?;
        writes.push(ItemWrite::Put {
            item: Item::new(pk, sk, 1, data),
            condition: Condition::None,
        });
    }
    Ok(writes)
}

/// A customer's relations' put, and its entry in the index of customers with relations.
pub(super) fn relations_writes(c: &CustomerRelations) -> StoreResult<Vec<ItemWrite>> {
    // The index entry lets a tag move find every relation that carried the tag; it holds
    // nothing but the key, so it is written without a condition.
    let index = keys::customers(&c.tenant);
    let data = encode(&index, &serde_json::json!({}))?;
    Ok(vec![
        versioned_put(keys::relations(&c.tenant, &c.external_userid), c)?,
        ItemWrite::Put {
            item: Item::new(index, c.external_userid.to_string(), 1, data),
            condition: Condition::None,
        },
    ])
}

pub(super) async fn binding_by_customer<B: ItemBackend>(
    store: &TableStore<B>,
    tenant: &TenantId,
    customer: &ExternalUserId,
) -> StoreResult<Option<MemberBinding>> {
    let marker: Option<CustomerMarker> = store
        .get_decoded(keys::customer_marker(tenant, customer))
        .await?;
    let Some(marker) = marker else {
        return Ok(None);
    };
    let binding: Option<MemberBinding> = store
        .get_versioned(keys::binding(tenant, &marker.member_id))
        .await?;
    Ok(binding.filter(|b| b.external_userid.as_ref() == Some(customer)))
}

pub(super) async fn list_customers<B: ItemBackend>(
    store: &TableStore<B>,
    tenant: &TenantId,
) -> StoreResult<Vec<ExternalUserId>> {
    let items = store.query_all(keys::customers(tenant), "", false).await?;
    Ok(items
        .into_iter()
        .map(|i| ExternalUserId::new_unchecked(i.sk))
        .collect())
}
