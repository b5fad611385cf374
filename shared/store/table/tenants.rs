//! Tenants and access tokens, the items holding secrets: sealed on write and opened on read
//! when the store has a sealer ([`TableStore::unlock`]); and a tenant's last accepted event.

use super::TableStore;
use super::encoding::{Versioned, decode, encode, version_condition};
use super::keys::{self, KEY_RECORD, Key, TENANTS};
use crate::domain::*;
use crate::ports::{StoreError, StoreResult};
use crate::store::item::{Condition, Item, ItemBackend, ItemWrite};
use crate::store::sealing::{KeyRecord, KeySource, SealError, Sealer, SecretPaths};
use serde::Serialize;

/// A tenant's secrets: every member of `secrets`, present and future.
const TENANT_SECRETS: SecretPaths = SecretPaths(&["/secrets/*"]);
/// A cached WeCom access token.
const TOKEN_SECRETS: SecretPaths = SecretPaths(&["/token"]);

/// How fresh `last_event_at` is kept (the status route shows it; a second is plenty).
const LAST_EVENT_RESOLUTION_MS: i64 = 1000;

impl<B: ItemBackend> TableStore<B> {
    /// The store with its secrets sealed by `source`'s key: reads the key record, or writes
    /// it when the store has none yet (its first start), and refuses a key that is not the
    /// record's. Then seals what an older version left plain ([`Self::seal_plain_records`]).
    pub async fn unlock(mut self, source: &KeySource) -> Result<Self, SealError> {
        let (pk, sk) = KEY_RECORD;
        // Two first starts at once (two Lambda sandboxes): one record wins, the other reads it.
        for _ in 0..3 {
            if let Some(item) = self.backend.get(pk, sk).await? {
                let record: KeyRecord = decode(&item)?;
                self.sealer = Some(Sealer::new(&source.key_for(&record).await?));
                return Ok(self);
            }
            let (record, key) = source.new_record().await?;
            let write = ItemWrite::Put {
                item: Item::new(pk, sk, 1, encode(pk, &record)?),
                condition: Condition::Absent,
            };
            match self.backend.write(write).await {
                Ok(()) => {
                    self.sealer = Some(Sealer::new(&key));
                    return Ok(self);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SealError::Store(StoreError::Unavailable {
            op: "key record",
            message: "written and gone again three times".into(),
        }))
    }

    /// Seals tenant secrets stored plain (by a version before sealing); answers how many
    /// tenants it sealed. Safe to run from several processes at once (versioned writes).
    /// Access tokens cached plain are sealed when next refreshed (within two hours).
    pub async fn seal_plain_records(&self) -> StoreResult<usize> {
        let Some(sealer) = &self.sealer else {
            return Ok(0);
        };
        let mut sealed = 0;
        for listed in self.query_all(TENANTS.into(), "", true).await? {
            // Where the listing shows nothing plain, nothing is left to do (the usual case: a
            // cold start costs one query). Otherwise the item is re-read, since the listing
            // comes from the index (eventually consistent in DynamoDB).
            if !has_plain(&listed.data) {
                continue;
            }
            let Some(item) = self.backend.get(&listed.pk, &listed.sk).await? else {
                continue;
            };
            let mut json: serde_json::Value = decode(&item)?;
            let mut plain = false;
            let at = format!("{}|{}", item.pk, item.sk);
            TENANT_SECRETS
                .for_each(&mut json, |path, value| {
                    if !Sealer::is_sealed(value) {
                        *value = sealer.seal(&format!("{at}|{path}"), value)?;
                        plain = true;
                    }
                    Ok(())
                })
                .map_err(|e| sealing_corrupt(&item.key(), e))?;
            if !plain {
                continue;
            }
            let mut next = item.clone();
            next.version = item.version + 1;
            next.data = encode(&at, &json)?;
            let condition = Condition::Version(item.version);
            match self
                .backend
                .write(ItemWrite::Put {
                    item: next,
                    condition,
                })
                .await
            {
                Ok(()) => sealed += 1,
                // Rewritten meanwhile: the writer sealed it.
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sealed)
    }

    /// `value` as stored at `pk`/`sk`, its secrets at `paths` sealed.
    fn encode_sealed<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        paths: SecretPaths,
    ) -> StoreResult<String> {
        let at = format!("{pk}|{sk}");
        let mut json = serde_json::to_value(value).map_err(|e| StoreError::Corrupt {
            key: at.clone(),
            message: e.to_string(),
        })?;
        if let Some(sealer) = &self.sealer {
            paths
                .for_each(&mut json, |path, v| {
                    if !Sealer::is_sealed(v) {
                        *v = sealer.seal(&format!("{at}|{path}"), v)?;
                    }
                    Ok(())
                })
                .map_err(|e| sealing_corrupt(&at, e))?;
        }
        encode(&at, &json)
    }

    /// An item's entity with its secrets at `paths` opened (plain ones, from before sealing,
    /// are taken as they are), and with the item's version.
    fn open_versioned<T: Versioned>(&self, item: &Item, paths: SecretPaths) -> StoreResult<T> {
        let corrupt = |message: String| StoreError::Corrupt {
            key: item.key(),
            message,
        };
        let mut json: serde_json::Value = decode(item)?;
        let at = format!("{}|{}", item.pk, item.sk);
        paths
            .for_each(&mut json, |path, v| {
                if Sealer::is_sealed(v) {
                    let sealer = self.sealer.as_ref().ok_or_else(|| SealError::Open {
                        at: format!("{at}|{path}"),
                        reason: "this store was opened without a secret key".into(),
                    })?;
                    *v = sealer.open(&format!("{at}|{path}"), v)?;
                }
                Ok(())
            })
            .map_err(|e| sealing_corrupt(&item.key(), e))?;
        let mut value: T = serde_json::from_value(json).map_err(|e| corrupt(e.to_string()))?;
        value.set_version(item.version);
        Ok(value)
    }

    /// A versioned put whose secrets at `paths` are sealed.
    fn sealed_put<T: Versioned>(
        &self,
        (pk, sk): Key,
        value: &T,
        paths: SecretPaths,
    ) -> StoreResult<ItemWrite> {
        let data = self.encode_sealed(&pk, &sk, value, paths)?;
        Ok(ItemWrite::Put {
            item: Item::new(pk, sk, value.version() + 1, data),
            condition: version_condition(value.version()),
        })
    }
}

/// Whether a stored tenant has a secret that is not sealed (an unreadable item counts: the
/// re-read reports it).
fn has_plain(data: &str) -> bool {
    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(data) else {
        return true;
    };
    let mut plain = false;
    let _ = TENANT_SECRETS.for_each(&mut json, |_, v| {
        plain |= !Sealer::is_sealed(v);
        Ok(())
    });
    plain
}

fn sealing_corrupt(key: &str, e: SealError) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    }
}

pub(super) async fn get<B: ItemBackend>(
    store: &TableStore<B>,
    id: &TenantId,
) -> StoreResult<Option<Tenant>> {
    let (pk, sk) = keys::tenant(id);
    let item = store.backend.get(&pk, &sk).await?;
    item.map(|i| store.open_versioned(&i, TENANT_SECRETS))
        .transpose()
}

pub(super) async fn put<B: ItemBackend>(
    store: &TableStore<B>,
    tenant: &mut Tenant,
) -> StoreResult<()> {
    let key = keys::tenant(&tenant.id);
    let mut write = store.sealed_put(key, &*tenant, TENANT_SECRETS)?;
    if let ItemWrite::Put { item, .. } = &mut write {
        item.gsi1pk = Some(TENANTS.into());
        item.gsi1sk = Some(tenant.id.to_string());
    }
    store.put_bumping(write, tenant).await
}

pub(super) async fn list<B: ItemBackend>(store: &TableStore<B>) -> StoreResult<Vec<Tenant>> {
    // The GSI is eventually consistent in DynamoDB; a tenant created a moment ago may be
    // missing from one nightly listing and is picked up by the next.
    let items = store.query_all(TENANTS.into(), "", true).await?;
    items
        .iter()
        .map(|i| store.open_versioned(i, TENANT_SECRETS))
        .collect()
}

pub(super) async fn touch_last_event<B: ItemBackend>(
    store: &TableStore<B>,
    tenant: &TenantId,
    at: Timestamp,
) -> StoreResult<()> {
    {
        let mut written = store
            .last_event_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match written.get(tenant) {
            Some(last) if at.millis() - last.millis() < LAST_EVENT_RESOLUTION_MS => {
                return Ok(());
            }
            _ => {
                written.insert(tenant.clone(), at);
            }
        }
    }
    let (pk, sk) = keys::last_event(tenant);
    let data = encode(&pk, &at)?;
    store
        .backend
        .write(ItemWrite::Put {
            item: Item::new(pk, sk, 1, data),
            condition: Condition::None,
        })
        .await
}

pub(super) async fn get_token<B: ItemBackend>(
    store: &TableStore<B>,
    corp: &CorpId,
    secret_fingerprint: &str,
) -> StoreResult<Option<AccessToken>> {
    let (pk, sk) = keys::token(corp, secret_fingerprint);
    let item = store.backend.get(&pk, &sk).await?;
    item.map(|i| store.open_versioned(&i, TOKEN_SECRETS))
        .transpose()
}

pub(super) async fn put_token<B: ItemBackend>(
    store: &TableStore<B>,
    token: &mut AccessToken,
) -> StoreResult<()> {
    let key = keys::token(&token.corp_id, &token.secret_fingerprint);
    let write = store.sealed_put(key, &*token, TOKEN_SECRETS)?;
    store.put_bumping(write, token).await
}

pub(super) async fn invalidate_token<B: ItemBackend>(
    store: &TableStore<B>,
    corp: &CorpId,
    secret_fingerprint: &str,
    token: &str,
) -> StoreResult<()> {
    let Some(current) = get_token(store, corp, secret_fingerprint).await? else {
        return Ok(());
    };
    if current.token.expose() != token {
        return Ok(());
    }
    let key = keys::token(corp, secret_fingerprint);
    match store.delete(key, Condition::Version(current.version)).await {
        // Someone replaced it meanwhile: that newer token stays.
        Err(e) if e.is_conflict() => Ok(()),
        other => other,
    }
}
