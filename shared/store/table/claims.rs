//! The items whose conditions decide between racing processes: idempotency keys, leases,
//! shared counters and sign-in states taken once.

use super::TableStore;
use super::encoding::{decode, expiring_item};
use super::keys;
use crate::domain::*;
use crate::ports::{Claim, StoreResult};
use crate::store::item::{Condition, Item, ItemBackend, ItemWrite};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct IdempotencyRecord {
    status: IdempotencyStatus,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IdempotencyStatus {
    InProgress,
    Completed,
}

/// An idempotency key's record in `status`, expiring at `expires_at`.
fn record_item(key: &str, status: IdempotencyStatus, expires_at: Timestamp) -> StoreResult<Item> {
    expiring_item(
        keys::idempotency(key),
        &IdempotencyRecord { status },
        expires_at,
    )
}

/// An idempotency key's record, completed until `expires_at` (its lock cleared): version 2,
/// the claim's being 1.
fn completed_item(key: &str, expires_at: Timestamp) -> StoreResult<Item> {
    let mut item = record_item(key, IdempotencyStatus::Completed, expires_at)?;
    item.version = 2;
    Ok(item)
}

/// Completes `key` in a transaction unless it is completed, or claimed and still locked.
pub(super) fn complete_once(
    key: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> StoreResult<ItemWrite> {
    Ok(ItemWrite::Put {
        item: completed_item(key, expires_at)?,
        condition: Condition::Claimable {
            now_millis: now.millis(),
            owner: None,
        },
    })
}

pub(super) async fn claim<B: ItemBackend>(
    store: &TableStore<B>,
    key: &str,
    now: Timestamp,
    lock_until: Timestamp,
    expires_at: Timestamp,
) -> StoreResult<Claim> {
    let mut item = record_item(key, IdempotencyStatus::InProgress, expires_at)?;
    item.lock_until = Some(lock_until.millis());
    let (pk, sk) = (item.pk.clone(), item.sk.clone());
    let put = ItemWrite::Put {
        item,
        condition: Condition::Claimable {
            now_millis: now.millis(),
            owner: None,
        },
    };
    match store.backend.write(put).await {
        Ok(()) => Ok(Claim::Acquired),
        Err(e) if e.is_conflict() => match store.backend.get(&pk, &sk).await? {
            // Deleted (released) between our write and our read: the caller may try again.
            None => Ok(Claim::InProgress),
            Some(existing) => match decode::<IdempotencyRecord>(&existing)?.status {
                IdempotencyStatus::Completed => Ok(Claim::Completed),
                IdempotencyStatus::InProgress => Ok(Claim::InProgress),
            },
        },
        Err(e) => Err(e),
    }
}

pub(super) async fn complete<B: ItemBackend>(
    store: &TableStore<B>,
    key: &str,
    expires_at: Timestamp,
) -> StoreResult<()> {
    let item = completed_item(key, expires_at)?;
    let condition = Condition::None;
    store
        .backend
        .write(ItemWrite::Put { item, condition })
        .await
}

pub(super) async fn acquire_lease<B: ItemBackend>(
    store: &TableStore<B>,
    name: &str,
    holder: &str,
    now: Timestamp,
    until: Timestamp,
) -> StoreResult<bool> {
    let (pk, sk) = keys::lease(name);
    let mut item = Item::new(pk, sk, 1, "{}".into());
    item.owner = Some(holder.to_string());
    item.lock_until = Some(until.millis());
    // Kept an hour past the lease so a crashed holder's item is cleaned up by TTL.
    item.expiration = Some(until.secs() + 3600);
    let put = ItemWrite::Put {
        item,
        condition: Condition::Claimable {
            now_millis: now.millis(),
            owner: Some(holder.to_string()),
        },
    };
    match store.backend.write(put).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) async fn release_lease<B: ItemBackend>(
    store: &TableStore<B>,
    name: &str,
    holder: &str,
) -> StoreResult<()> {
    let owned = Condition::OwnedBy(holder.to_string());
    match store.delete(keys::lease(name), owned).await {
        // Someone else holds it now (ours lapsed): theirs stays.
        Err(e) if e.is_conflict() => Ok(()),
        other => other,
    }
}

pub(super) async fn take_login_state<B: ItemBackend>(
    store: &TableStore<B>,
    state: &str,
) -> StoreResult<Option<LoginState>> {
    let (pk, sk) = keys::login(state);
    let Some(item) = store.backend.get(&pk, &sk).await? else {
        return Ok(None);
    };
    // The delete decides who took it: only one of two racing takes finds the version.
    match store
        .delete((pk, sk), Condition::Version(item.version))
        .await
    {
        Ok(()) => Ok(Some(decode(&item)?)),
        Err(e) if e.is_conflict() => Ok(None),
        Err(e) => Err(e),
    }
}
