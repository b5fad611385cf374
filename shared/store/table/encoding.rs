//! How entities become items and back: JSON in `data`, the item's version checked on write and
//! handed back on read, listings walked page by page. Every seam of the table store builds and
//! reads its items with these, so each of those things is done one way.

use super::TableStore;
use super::keys::Key;
use crate::domain::*;
use crate::ports::{Page, StoreError, StoreResult};
use crate::store::item::{Condition, Direction, Item, ItemBackend, ItemWrite, Query};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How many items one page of an internal "list everything" walk asks for.
const LIST_PAGE: usize = 500;
/// The most items one page of a listing answers (audit, runs, firings).
const MAX_PAGE: usize = 500;

/// An entity stored with optimistic concurrency: its `version` is its item's (0: not stored).
pub(super) trait Versioned: Serialize + DeserializeOwned {
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
}

macro_rules! versioned {
    ($($entity:ty),* $(,)?) => {$(
        impl Versioned for $entity {
            fn version(&self) -> u64 {
                self.version
            }
            fn set_version(&mut self, version: u64) {
                self.version = version;
            }
        }
    )*};
}

versioned!(
    Tenant,
    AccessToken,
    TagGroup,
    Tag,
    MemberBinding,
    MemberTags,
    CustomerRelations,
    SyncRun,
    Rule,
    Firing,
    Channel,
    Directory,
    OperatorRole,
);

pub(super) fn encode<T: Serialize>(key: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn decode<T: DeserializeOwned>(item: &Item) -> StoreResult<T> {
    serde_json::from_str(&item.data).map_err(|e| StoreError::Corrupt {
        key: item.key(),
        message: e.to_string(),
    })
}

/// An item's entity, with the item's version.
pub(super) fn decode_versioned<T: Versioned>(item: &Item) -> StoreResult<T> {
    let mut value: T = decode(item)?;
    value.set_version(item.version);
    Ok(value)
}

/// The condition for writing an entity whose in-memory version is `version`.
pub(super) fn version_condition(version: u64) -> Condition {
    if version == 0 {
        Condition::Absent
    } else {
        Condition::Version(version)
    }
}

/// The put of a versioned entity: stored with its version + 1, checked against its version.
pub(super) fn versioned_put<T: Versioned>((pk, sk): Key, value: &T) -> StoreResult<ItemWrite> {
    let data = encode(&format!("{pk}|{sk}"), value)?;
    Ok(ItemWrite::Put {
        item: Item::new(pk, sk, value.version() + 1, data),
        condition: version_condition(value.version()),
    })
}

/// An item holding `value` at version 1, expiring at `expires_at`.
pub(super) fn expiring_item<T: Serialize>(
    (pk, sk): Key,
    value: &T,
    expires_at: Timestamp,
) -> StoreResult<Item> {
    let data = encode(&format!("{pk}|{sk}"), value)?;
    let mut item = Item::new(pk, sk, 1, data);
    item.expiration = Some(expires_at.secs());
    Ok(item)
}

pub(super) fn deletion((pk, sk): Key, condition: Condition) -> ItemWrite {
    ItemWrite::Delete { pk, sk, condition }
}

impl<B: ItemBackend> TableStore<B> {
    /// The value at `key` (an entity without a version: a session, a marker).
    pub(super) async fn get_decoded<T: DeserializeOwned>(
        &self,
        (pk, sk): Key,
    ) -> StoreResult<Option<T>> {
        self.backend
            .get(&pk, &sk)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// The entity at `key`, with its stored version.
    pub(super) async fn get_versioned<T: Versioned>(
        &self,
        (pk, sk): Key,
    ) -> StoreResult<Option<T>> {
        let item = self.backend.get(&pk, &sk).await?;
        item.as_ref().map(decode_versioned).transpose()
    }

    /// Every entity of partition `pk` whose sort key starts with `sk_prefix`, with its version.
    pub(super) async fn list_versioned<T: Versioned>(
        &self,
        pk: String,
        sk_prefix: &str,
    ) -> StoreResult<Vec<T>> {
        let items = self.query_all(pk, sk_prefix, false).await?;
        items.iter().map(decode_versioned).collect()
    }

    /// Writes `value` at `key` if its stored version is still `value`'s; then bumps `value`'s.
    pub(super) async fn put_versioned<T: Versioned>(
        &self,
        key: Key,
        value: &mut T,
    ) -> StoreResult<()> {
        let write = versioned_put(key, &*value)?;
        self.put_bumping(write, value).await
    }

    /// Applies `write` (a versioned put of `value`), then bumps `value`'s version to match.
    pub(super) async fn put_bumping<T: Versioned>(
        &self,
        write: ItemWrite,
        value: &mut T,
    ) -> StoreResult<()> {
        self.backend.write(write).await?;
        value.set_version(value.version() + 1);
        Ok(())
    }

    /// Stores `value` at `key` until `expires_at`; an item already there is a conflict.
    pub(super) async fn put_new_expiring<T: Serialize>(
        &self,
        key: Key,
        value: &T,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        let item = expiring_item(key, value, expires_at)?;
        let condition = Condition::Absent;
        self.backend.write(ItemWrite::Put { item, condition }).await
    }

    pub(super) async fn delete(&self, key: Key, condition: Condition) -> StoreResult<()> {
        self.backend.write(deletion(key, condition)).await
    }

    /// Every item of a partition with the given sort-key prefix, walking pages.
    pub(super) async fn query_all(
        &self,
        pk: String,
        sk_prefix: &str,
        on_gsi: bool,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start_after = None;
        loop {
            let page = self
                .backend
                .query(&Query {
                    pk: pk.clone(),
                    sk_prefix: sk_prefix.to_string(),
                    start_after: start_after.clone(),
                    limit: LIST_PAGE,
                    direction: Direction::Ascending,
                    on_gsi,
                })
                .await?;
            let full = page.len() == LIST_PAGE;
            start_after = page.last().map(|i| {
                if on_gsi {
                    i.gsi1sk.clone().unwrap_or_default()
                } else {
                    i.sk.clone()
                }
            });
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// One page of partition `pk`, highest sort key (newest) first, after `cursor`: at most
    /// `limit` (clamped to 1..=500) items, and the cursor of the next page when it was full.
    pub(super) async fn newest_first<T>(
        &self,
        pk: String,
        cursor: Option<&str>,
        limit: usize,
        decode: impl Fn(&Item) -> StoreResult<T>,
    ) -> StoreResult<Page<T>> {
        let limit = limit.clamp(1, MAX_PAGE);
        let items = self
            .backend
            .query(&Query {
                pk,
                sk_prefix: String::new(),
                start_after: cursor.map(str::to_string),
                limit,
                direction: Direction::Descending,
                on_gsi: false,
            })
            .await?;
        let next_cursor = if items.len() == limit {
            items.last().map(|i| i.sk.clone())
        } else {
            None
        };
        let items = items.iter().map(decode).collect::<StoreResult<Vec<T>>>()?;
        Ok(Page { items, next_cursor })
    }
}
