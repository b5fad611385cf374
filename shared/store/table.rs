//! The typed store over the single-table item layout. The key schema lives here and nowhere
//! else, so both backends lay entities out identically:
//!
//! | entity | pk | sk |
//! |---|---|---|
//! | tenant / its last accepted event | `TENANT#{t}` (GSI `TENANTS` / `{t}`) | `META` / `LAST_EVENT` |
//! | tag group / tag | `LIB#{t}` | `G#{hub id}` / `T#{hub id}` |
//! | id map entry | `LINK#{t}#{side}#{kind}#{side id}` | `MAP` |
//! | member binding / member tags | `MEMBER#{t}#{member}` | `BINDING` / `TAGS` |
//! | customer relations / customer→member marker | `CUST#{t}#{external userid}` | `RELATIONS` / `BINDING` |
//! | index of customers with relations | `CUSTS#{t}` | `{external userid}` |
//! | customer index entry (issue 15; DynamoDB only, SQLite has tables: `customers.rs`) | `CUST#{t}#{external userid}` | `INDEX` |
//! | its copy under each facet (tag, state, staff member, bound) and under `all` | `CIDX#{t}#{facet}` | `{external userid}` |
//! | audit entry | `AUDIT#{t}` | `{at ms, 15 digits}#{id}` |
//! | sync run | `RUN#{t}` | `{run id}` (time-ordered) |
//! | a run's part kept apart from it (a relations chain's member list) | `RUNPART#{t}#{run id}` | `{chain}` |
//! | idempotency record | `IDEMP#{key}` | `-` |
//! | lease | `LEASE#{name}` | `-` |
//! | counter (a rate budget's window, `wecom::budget`) | `COUNT#{name}` | `-` |
//! | access token | `TOKEN#{corp}#{secret fingerprint}` | `-` |
//! | the key record of sealed secrets (`sealing.rs`) | `SEALING` | `KEY` |
//! | queue mark (a tenant's queued job, counted on SQS) | `QUEUE#{t}` | `{job id}` |
//! | rule / channel code | `RULE#{t}` / `CHAN#{t}` | `{rule id}` / `{channel id}` |
//! | rule firing (expires after [`FIRING_TTL_SECS`]) | `FIRE#{t}#{rule id}` | `{firing id}` (time-ordered) |
//! | the corp's directory (departments and staff, one item) | `DIR#{t}` | `CURRENT` |
//! | operator role / session (by token hash, expiring) / sign-in state (expiring) | `OPER#{t}` / `SESSION#{hash}` / `LOGIN#{state}` | `{userid}` / `-` / `-` |
//!
//! Tenant secrets and access tokens are sealed (see [`super::sealing`]) when the store has a
//! sealer; every other field is stored as it is.

use super::item::{Condition, Direction, Item, ItemBackend, ItemWrite, Query};
use super::sealing::{KeyRecord, KeySource, SealError, Sealer, SecretPaths};
use crate::domain::*;
use crate::ports::{Claim, Page, Store, StoreError, StoreResult, Write};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How many items one page of an internal "list everything" walk asks for.
const LIST_PAGE: usize = 500;

pub struct TableStore<B> {
    backend: B,
    /// When this process last wrote each tenant's last-event time: a burst of events writes
    /// it once per [`LAST_EVENT_RESOLUTION_MS`], not once per event.
    last_event_written: std::sync::Mutex<std::collections::HashMap<TenantId, Timestamp>>,
    /// Seals tenant secrets and access tokens; without one (tests of the layout) they are
    /// stored as they are.
    sealer: Option<Sealer>,
}

/// A tenant's secrets: every member of `secrets`, present and future.
const TENANT_SECRETS: SecretPaths = SecretPaths(&["/secrets/*"]);
/// A cached WeCom access token.
const TOKEN_SECRETS: SecretPaths = SecretPaths(&["/token"]);
/// Where the key record lives.
const KEY_RECORD: (&str, &str) = ("SEALING", "KEY");

/// How fresh `last_event_at` is kept (the status route shows it; a second is plenty).
const LAST_EVENT_RESOLUTION_MS: i64 = 1000;

impl<B: ItemBackend> TableStore<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            last_event_written: Default::default(),
            sealer: None,
        }
    }
    pub fn backend(&self) -> &B {
        &self.backend
    }

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
        for listed in self.query_all("TENANTS".into(), "", true).await? {
            // Where the listing shows nothing plain, nothing is left to do (the usual case: a
            // cold start costs one query). Otherwise the item is re-read, since the listing
            // comes from the index (eventually consistent in DynamoDB).
            if !has_plain(&listed.data) {
                continue;
            }
            let Some(item) = self.backend.get(&listed.pk, &listed.sk).await? else {
                continue;
            };
            let mut json: serde_json::Value =
                serde_json::from_str(&item.data).map_err(|e| StoreError::Corrupt {
                    key: item.key(),
                    message: e.to_string(),
                })?;
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
            match self
                .backend
                .write(ItemWrite::Put {
                    item: next,
                    condition: Condition::Version(item.version),
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

    /// An item's value with its secrets at `paths` opened (plain ones, from before sealing,
    /// are taken as they are).
    fn decode_sealed<T: DeserializeOwned>(
        &self,
        item: &Item,
        paths: SecretPaths,
    ) -> StoreResult<T> {
        let corrupt = |message: String| StoreError::Corrupt {
            key: item.key(),
            message,
        };
        let mut json: serde_json::Value =
            serde_json::from_str(&item.data).map_err(|e| corrupt(e.to_string()))?;
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
        serde_json::from_value(json).map_err(|e| corrupt(e.to_string()))
    }

    /// A versioned put whose secrets at `paths` are sealed.
    fn sealed_put<T: Serialize>(
        &self,
        pk: String,
        sk: String,
        value: &T,
        version: u64,
        paths: SecretPaths,
    ) -> StoreResult<ItemWrite> {
        let data = self.encode_sealed(&pk, &sk, value, paths)?;
        Ok(ItemWrite::Put {
            item: Item::new(pk, sk, version + 1, data),
            condition: version_condition(version),
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

mod keys {
    use crate::domain::*;
    pub fn tenant(t: &TenantId) -> (String, String) {
        (format!("TENANT#{t}"), "META".into())
    }
    pub fn library(t: &TenantId) -> String {
        format!("LIB#{t}")
    }
    pub fn group(t: &TenantId, id: &HubGroupId) -> (String, String) {
        (library(t), format!("G#{id}"))
    }
    pub fn tag(t: &TenantId, id: &HubTagId) -> (String, String) {
        (library(t), format!("T#{id}"))
    }
    pub fn link(t: &TenantId, side: Side, kind: EntityKind, side_id: &str) -> (String, String) {
        (
            format!("LINK#{t}#{}#{}#{side_id}", side.as_str(), kind.as_str()),
            "MAP".into(),
        )
    }
    pub fn member(t: &TenantId, m: &MemberId) -> String {
        format!("MEMBER#{t}#{m}")
    }
    pub fn customer(t: &TenantId, c: &ExternalUserId) -> String {
        format!("CUST#{t}#{c}")
    }
    pub fn customers(t: &TenantId) -> String {
        format!("CUSTS#{t}")
    }
    pub fn audit(t: &TenantId) -> String {
        format!("AUDIT#{t}")
    }
    pub fn run(t: &TenantId) -> String {
        format!("RUN#{t}")
    }
    /// Parts of a run kept apart from its item (a chain's member list), by part name.
    pub fn run_part(t: &TenantId, run: &RunId) -> String {
        format!("RUNPART#{t}#{run}")
    }
    pub fn idempotency(key: &str) -> (String, String) {
        (format!("IDEMP#{key}"), "-".into())
    }
    pub fn lease(name: &str) -> (String, String) {
        (format!("LEASE#{name}"), "-".into())
    }
    pub fn counter(name: &str) -> (String, String) {
        (format!("COUNT#{name}"), "-".into())
    }
    pub fn token(corp: &CorpId, fp: &str) -> (String, String) {
        (format!("TOKEN#{corp}#{fp}"), "-".into())
    }
    pub fn queue_marks(t: &TenantId) -> String {
        format!("QUEUE#{t}")
    }
    pub fn rules(t: &TenantId) -> String {
        format!("RULE#{t}")
    }
    pub fn firings(t: &TenantId, rule: &RuleId) -> String {
        format!("FIRE#{t}#{rule}")
    }
    pub fn channels(t: &TenantId) -> String {
        format!("CHAN#{t}")
    }
    pub fn directory(t: &TenantId) -> (String, String) {
        (format!("DIR#{t}"), "CURRENT".into())
    }
    pub fn operators(t: &TenantId) -> String {
        format!("OPER#{t}")
    }
    pub fn session(id_hash: &str) -> (String, String) {
        (format!("SESSION#{id_hash}"), "-".into())
    }
    pub fn login(state: &str) -> (String, String) {
        (format!("LOGIN#{state}"), "-".into())
    }
}

/// How long a firing is kept: the contract asks for at least 30 days (undo reads them).
pub const FIRING_TTL_SECS: i64 = 90 * 24 * 3600;

/// A firing's versioned put, expiring [`FIRING_TTL_SECS`] after it fired.
fn firing_put(f: &Firing) -> StoreResult<ItemWrite> {
    let mut write = versioned_put(
        keys::firings(&f.tenant, &f.rule_id),
        f.id.to_string(),
        f,
        f.version,
    )?;
    if let ItemWrite::Put { item, .. } = &mut write {
        item.expiration = Some(f.at.plus_secs(FIRING_TTL_SECS).secs());
    }
    Ok(write)
}

/// A queue mark's item at `version`, expiring with the mark.
fn mark_item(mark: &QueueMark, version: u64) -> StoreResult<Item> {
    let pk = keys::queue_marks(&mark.tenant);
    let data = encode(&pk, mark)?;
    let mut item = Item::new(pk, mark.job.to_string(), version, data);
    item.expiration = Some(mark.expires_at.secs());
    Ok(item)
}

fn encode<T: Serialize>(key: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(item: &Item) -> StoreResult<T> {
    serde_json::from_str(&item.data).map_err(|e| StoreError::Corrupt {
        key: item.key(),
        message: e.to_string(),
    })
}

/// Decodes every item of a listing, each with its stored version.
fn decode_all<T: DeserializeOwned>(
    items: &[Item],
    set_version: impl Fn(&mut T, u64),
) -> StoreResult<Vec<T>> {
    items
        .iter()
        .map(|i| {
            let mut value: T = decode(i)?;
            set_version(&mut value, i.version);
            Ok(value)
        })
        .collect()
}

/// The condition for writing an entity whose in-memory version is `version`.
fn version_condition(version: u64) -> Condition {
    if version == 0 {
        Condition::Absent
    } else {
        Condition::Version(version)
    }
}

/// Builds the put of a versioned entity: stored with `version + 1`, checked against `version`.
fn versioned_put<T: Serialize>(
    pk: String,
    sk: String,
    value: &T,
    version: u64,
) -> StoreResult<ItemWrite> {
    let data = encode(&format!("{pk}|{sk}"), value)?;
    Ok(ItemWrite::Put {
        item: Item::new(pk, sk, version + 1, data),
        condition: version_condition(version),
    })
}

/// An audit entry's put: sorted by time, unique by a fresh id.
fn audit_put(entry: &AuditEntry) -> StoreResult<ItemWrite> {
    let pk = keys::audit(&entry.tenant);
    let sk = format!("{:015}#{}", entry.at.millis().max(0), new_ordered_id());
    let data = encode(&pk, entry)?;
    Ok(ItemWrite::Put {
        item: Item::new(pk, sk, 1, data),
        condition: Condition::Absent,
    })
}

/// An idempotency key's record, completed until `expires_at` (its lock cleared).
fn completed_item(key: &str, expires_at: Timestamp) -> StoreResult<Item> {
    let (pk, sk) = keys::idempotency(key);
    let data = encode(
        &pk,
        &IdempotencyRecord {
            status: IdempotencyStatus::Completed,
        },
    )?;
    let mut item = Item::new(pk, sk, 2, data);
    item.expiration = Some(expires_at.secs());
    Ok(item)
}

#[derive(Serialize, serde::Deserialize)]
struct IdempotencyRecord {
    status: IdempotencyStatus,
}

#[derive(Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IdempotencyStatus {
    InProgress,
    Completed,
}

#[derive(Serialize, serde::Deserialize)]
struct CustomerMarker {
    member_id: MemberId,
}

impl<B: ItemBackend> TableStore<B> {
    async fn get_entity<T: DeserializeOwned>(
        &self,
        (pk, sk): (String, String),
        set_version: impl FnOnce(&mut T, u64),
    ) -> StoreResult<Option<T>> {
        match self.backend.get(&pk, &sk).await? {
            None => Ok(None),
            Some(item) => {
                let mut value: T = decode(&item)?;
                set_version(&mut value, item.version);
                Ok(Some(value))
            }
        }
    }

    /// Every item of a partition with the given sort-key prefix, walking pages.
    async fn query_all(&self, pk: String, sk_prefix: &str, on_gsi: bool) -> StoreResult<Vec<Item>> {
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

    fn item_writes(write: Write) -> StoreResult<Vec<ItemWrite>> {
        Ok(match write {
            Write::Group(g) => {
                let (pk, sk) = keys::group(&g.tenant, &g.id);
                vec![versioned_put(pk, sk, &g, g.version)?]
            }
            Write::Tag(t) => {
                let (pk, sk) = keys::tag(&t.tenant, &t.id);
                vec![versioned_put(pk, sk, &t, t.version)?]
            }
            Write::DeleteGroup {
                tenant,
                id,
                version,
            } => {
                let (pk, sk) = keys::group(&tenant, &id);
                vec![ItemWrite::Delete {
                    pk,
                    sk,
                    condition: Condition::Version(version),
                }]
            }
            Write::DeleteTag {
                tenant,
                id,
                version,
            } => {
                let (pk, sk) = keys::tag(&tenant, &id);
                vec![ItemWrite::Delete {
                    pk,
                    sk,
                    condition: Condition::Version(version),
                }]
            }
            Write::Link(link) => {
                let (pk, sk) = keys::link(&link.tenant, link.side, link.kind, &link.side_id);
                let data = encode(&pk, &link)?;
                vec![ItemWrite::Put {
                    item: Item::new(pk, sk, 1, data),
                    condition: Condition::Absent,
                }]
            }
            Write::Relink(link) => {
                let (pk, sk) = keys::link(&link.tenant, link.side, link.kind, &link.side_id);
                let data = encode(&pk, &link)?;
                vec![ItemWrite::Put {
                    item: Item::new(pk, sk, 1, data),
                    condition: Condition::None,
                }]
            }
            Write::Unlink(link) => {
                let (pk, sk) = keys::link(&link.tenant, link.side, link.kind, &link.side_id);
                vec![ItemWrite::Delete {
                    pk,
                    sk,
                    condition: Condition::None,
                }]
            }
            Write::Binding(b) => {
                let mut writes = vec![versioned_put(
                    keys::member(&b.tenant, &b.member_id),
                    "BINDING".into(),
                    &b,
                    b.version,
                )?];
                if let Some(customer) = &b.external_userid {
                    // The marker is the reverse lookup; a stale marker (the member was rebound)
                    // is detected on read, so it is written without a condition.
                    let pk = keys::customer(&b.tenant, customer);
                    let data = encode(
                        &pk,
                        &CustomerMarker {
                            member_id: b.member_id.clone(),
                        },
                    )?;
                    writes.push(ItemWrite::Put {
                        item: Item::new(pk, "BINDING", 1, data),
                        condition: Condition::None,
                    });
                }
                writes
            }
            Write::MemberTags(m) => vec![versioned_put(
                keys::member(&m.tenant, &m.member_id),
                "TAGS".into(),
                &m,
                m.version,
            )?],
            Write::Customer(c) => {
                // The index entry lets a tag move find every relation that carried the tag;
                // it holds nothing but the key, so it is written without a condition.
                let index = keys::customers(&c.tenant);
                let data = encode(&index, &serde_json::json!({}))?;
                vec![
                    versioned_put(
                        keys::customer(&c.tenant, &c.external_userid),
                        "RELATIONS".into(),
                        &c,
                        c.version,
                    )?,
                    ItemWrite::Put {
                        item: Item::new(index, c.external_userid.to_string(), 1, data),
                        condition: Condition::None,
                    },
                ]
            }
            Write::Run(r) => vec![versioned_put(
                keys::run(&r.tenant),
                r.id.to_string(),
                &r,
                r.version,
            )?],
            Write::Audit(entry) => vec![audit_put(&entry)?],
            Write::Rule(r) => vec![versioned_put(
                keys::rules(&r.tenant),
                r.id.to_string(),
                &r,
                r.version,
            )?],
            Write::Firing(f) => vec![firing_put(&f)?],
            Write::CompleteOnce {
                key,
                now,
                expires_at,
            } => {
                vec![ItemWrite::Put {
                    item: completed_item(&key, expires_at)?,
                    condition: Condition::Claimable {
                        now_millis: now.millis(),
                        owner: None,
                    },
                }]
            }
        })
    }

    async fn put_one(&self, write: ItemWrite, version: &mut u64) -> StoreResult<()> {
        self.backend.write(write).await?;
        *version += 1;
        Ok(())
    }
}

#[async_trait]
impl<B: ItemBackend> Store for TableStore<B> {
    async fn check(&self) -> StoreResult<()> {
        self.backend.get("HEALTH", "-").await.map(|_| ())
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let (pk, sk) = keys::tenant(id);
        match self.backend.get(&pk, &sk).await? {
            None => Ok(None),
            Some(item) => {
                let mut t: Tenant = self.decode_sealed(&item, TENANT_SECRETS)?;
                t.version = item.version;
                Ok(Some(t))
            }
        }
    }

    async fn put_tenant(&self, tenant: &mut Tenant) -> StoreResult<()> {
        let (pk, sk) = keys::tenant(&tenant.id);
        let mut write = self.sealed_put(pk, sk, &*tenant, tenant.version, TENANT_SECRETS)?;
        if let ItemWrite::Put { item, .. } = &mut write {
            item.gsi1pk = Some("TENANTS".into());
            item.gsi1sk = Some(tenant.id.to_string());
        }
        self.put_one(write, &mut tenant.version).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        // The GSI is eventually consistent in DynamoDB; a tenant created a moment ago may be
        // missing from one nightly listing and is picked up by the next.
        let items = self.query_all("TENANTS".into(), "", true).await?;
        items
            .iter()
            .map(|i| {
                let mut t: Tenant = self.decode_sealed(i, TENANT_SECRETS)?;
                t.version = i.version;
                Ok(t)
            })
            .collect()
    }

    async fn touch_last_event(&self, tenant: &TenantId, at: Timestamp) -> StoreResult<()> {
        {
            let mut written = self
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
        let (pk, _) = keys::tenant(tenant);
        let data = encode(&pk, &at)?;
        self.backend
            .write(ItemWrite::Put {
                item: Item::new(pk, "LAST_EVENT", 1, data),
                condition: Condition::None,
            })
            .await
    }

    async fn last_event_at(&self, tenant: &TenantId) -> StoreResult<Option<Timestamp>> {
        let (pk, _) = keys::tenant(tenant);
        match self.backend.get(&pk, "LAST_EVENT").await? {
            None => Ok(None),
            Some(item) => Ok(Some(decode(&item)?)),
        }
    }

    async fn get_group(&self, tenant: &TenantId, id: &HubGroupId) -> StoreResult<Option<TagGroup>> {
        self.get_entity(keys::group(tenant, id), |g: &mut TagGroup, v| g.version = v)
            .await
    }

    async fn list_groups(&self, tenant: &TenantId) -> StoreResult<Vec<TagGroup>> {
        let items = self.query_all(keys::library(tenant), "G#", false).await?;
        decode_all(&items, |g: &mut TagGroup, v| g.version = v)
    }

    async fn put_group(&self, group: &mut TagGroup) -> StoreResult<()> {
        let (pk, sk) = keys::group(&group.tenant, &group.id);
        let write = versioned_put(pk, sk, &*group, group.version)?;
        self.put_one(write, &mut group.version).await
    }

    async fn get_tag(&self, tenant: &TenantId, id: &HubTagId) -> StoreResult<Option<Tag>> {
        self.get_entity(keys::tag(tenant, id), |t: &mut Tag, v| t.version = v)
            .await
    }

    async fn list_tags(&self, tenant: &TenantId) -> StoreResult<Vec<Tag>> {
        let items = self.query_all(keys::library(tenant), "T#", false).await?;
        decode_all(&items, |t: &mut Tag, v| t.version = v)
    }

    async fn put_tag(&self, tag: &mut Tag) -> StoreResult<()> {
        let (pk, sk) = keys::tag(&tag.tenant, &tag.id);
        let write = versioned_put(pk, sk, &*tag, tag.version)?;
        self.put_one(write, &mut tag.version).await
    }

    async fn lookup_link(
        &self,
        tenant: &TenantId,
        side: Side,
        kind: EntityKind,
        side_id: &str,
    ) -> StoreResult<Option<String>> {
        let (pk, sk) = keys::link(tenant, side, kind, side_id);
        match self.backend.get(&pk, &sk).await? {
            None => Ok(None),
            Some(item) => Ok(Some(decode::<IdLink>(&item)?.hub_id)),
        }
    }

    async fn get_binding(
        &self,
        tenant: &TenantId,
        member: &MemberId,
    ) -> StoreResult<Option<MemberBinding>> {
        self.get_entity(
            (keys::member(tenant, member), "BINDING".into()),
            |b: &mut MemberBinding, v| b.version = v,
        )
        .await
    }

    async fn binding_by_customer(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<MemberBinding>> {
        let Some(marker) = self
            .backend
            .get(&keys::customer(tenant, customer), "BINDING")
            .await?
        else {
            return Ok(None);
        };
        let marker: CustomerMarker = decode(&marker)?;
        let binding = self.get_binding(tenant, &marker.member_id).await?;
        Ok(binding.filter(|b| b.external_userid.as_ref() == Some(customer)))
    }

    async fn get_member_tags(
        &self,
        tenant: &TenantId,
        member: &MemberId,
    ) -> StoreResult<Option<MemberTags>> {
        self.get_entity(
            (keys::member(tenant, member), "TAGS".into()),
            |m: &mut MemberTags, v| m.version = v,
        )
        .await
    }

    async fn list_customers(&self, tenant: &TenantId) -> StoreResult<Vec<ExternalUserId>> {
        let items = self.query_all(keys::customers(tenant), "", false).await?;
        Ok(items
            .into_iter()
            .map(|i| ExternalUserId::new_unchecked(i.sk))
            .collect())
    }

    async fn get_customer(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerRelations>> {
        self.get_entity(
            (keys::customer(tenant, customer), "RELATIONS".into()),
            |c: &mut CustomerRelations, v| c.version = v,
        )
        .await
    }

    async fn get_customer_entry(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerEntry>> {
        self.backend.get_customer_entry(tenant, customer).await
    }

    async fn put_customer_entry(&self, entry: &mut CustomerEntry) -> StoreResult<()> {
        self.backend.put_customer_entry(entry).await
    }

    async fn query_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<CustomerPage> {
        self.backend
            .query_customers(tenant, filter, cursor, limit)
            .await
    }

    async fn matching_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
    ) -> StoreResult<Vec<ExternalUserId>> {
        self.backend.matching_customers(tenant, filter).await
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            items.extend(Self::item_writes(w)?);
        }
        if items.len() > 100 {
            return Err(StoreError::Invalid(format!(
                "{} writes in one transaction (at most 100)",
                items.len()
            )));
        }
        self.backend.transact(items).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let pk = keys::audit(&entry.tenant);
        let sk = format!("{:015}#{}", entry.at.millis().max(0), new_ordered_id());
        let data = encode(&pk, entry)?;
        self.backend
            .write(ItemWrite::Put {
                item: Item::new(pk, sk, 1, data),
                condition: Condition::Absent,
            })
            .await
    }

    async fn list_audit(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<AuditEntry>> {
        let limit = limit.clamp(1, 500);
        let items = self
            .backend
            .query(&Query {
                pk: keys::audit(tenant),
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
        let items = items
            .iter()
            .map(decode)
            .collect::<StoreResult<Vec<AuditEntry>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn get_run(&self, tenant: &TenantId, id: &RunId) -> StoreResult<Option<SyncRun>> {
        self.get_entity((keys::run(tenant), id.to_string()), |r: &mut SyncRun, v| {
            r.version = v
        })
        .await
    }

    async fn put_run(&self, run: &mut SyncRun) -> StoreResult<()> {
        let write = versioned_put(
            keys::run(&run.tenant),
            run.id.to_string(),
            &*run,
            run.version,
        )?;
        self.put_one(write, &mut run.version).await
    }

    async fn put_chain_users(
        &self,
        tenant: &TenantId,
        run: &RunId,
        chain: &str,
        users: &[String],
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        let pk = keys::run_part(tenant, run);
        let data = encode(&format!("{pk}|{chain}"), &users)?;
        let mut item = Item::new(pk, chain, 1, data);
        item.expiration = Some(expires_at.secs());
        let put = ItemWrite::Put {
            item,
            condition: Condition::Absent,
        };
        match self.backend.write(put).await {
            // Written by an earlier copy of the page job: that one stands.
            Err(e) if e.is_conflict() => Ok(()),
            other => other,
        }
    }

    async fn get_chain_users(
        &self,
        tenant: &TenantId,
        run: &RunId,
        chain: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        match self
            .backend
            .get(&keys::run_part(tenant, run), chain)
            .await?
        {
            None => Ok(None),
            Some(item) => decode(&item).map(Some),
        }
    }

    async fn list_runs(&self, tenant: &TenantId, limit: usize) -> StoreResult<Vec<SyncRun>> {
        let items = self
            .backend
            .query(&Query {
                pk: keys::run(tenant),
                sk_prefix: String::new(),
                start_after: None,
                limit: limit.clamp(1, 500),
                direction: Direction::Descending,
                on_gsi: false,
            })
            .await?;
        decode_all(&items, |r: &mut SyncRun, v| r.version = v)
    }

    async fn claim(
        &self,
        key: &str,
        now: Timestamp,
        lock_until: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Claim> {
        let (pk, sk) = keys::idempotency(key);
        let data = encode(
            &pk,
            &IdempotencyRecord {
                status: IdempotencyStatus::InProgress,
            },
        )?;
        let mut item = Item::new(pk.clone(), sk.clone(), 1, data);
        item.expiration = Some(expires_at.secs());
        item.lock_until = Some(lock_until.millis());
        let put = ItemWrite::Put {
            item,
            condition: Condition::Claimable {
                now_millis: now.millis(),
                owner: None,
            },
        };
        match self.backend.write(put).await {
            Ok(()) => Ok(Claim::Acquired),
            Err(e) if e.is_conflict() => match self.backend.get(&pk, &sk).await? {
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

    async fn complete(&self, key: &str, expires_at: Timestamp) -> StoreResult<()> {
        let (pk, sk) = keys::idempotency(key);
        let data = encode(
            &pk,
            &IdempotencyRecord {
                status: IdempotencyStatus::Completed,
            },
        )?;
        let mut item = Item::new(pk, sk, 2, data);
        item.expiration = Some(expires_at.secs());
        self.backend
            .write(ItemWrite::Put {
                item,
                condition: Condition::None,
            })
            .await
    }

    async fn release(&self, key: &str) -> StoreResult<()> {
        let (pk, sk) = keys::idempotency(key);
        self.backend
            .write(ItemWrite::Delete {
                pk,
                sk,
                condition: Condition::None,
            })
            .await
    }

    async fn acquire_lease(
        &self,
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
        match self.backend.write(put).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn count_up(
        &self,
        name: &str,
        by: u64,
        limit: u64,
        expires_at: Timestamp,
    ) -> StoreResult<Option<u64>> {
        let (pk, sk) = keys::counter(name);
        self.backend
            .count_up(&pk, &sk, by, limit, expires_at.secs())
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let (pk, sk) = keys::lease(name);
        match self
            .backend
            .write(ItemWrite::Delete {
                pk,
                sk,
                condition: Condition::OwnedBy(holder.to_string()),
            })
            .await
        {
            Err(e) if e.is_conflict() => Ok(()),
            other => other,
        }
    }

    async fn get_token(
        &self,
        corp: &CorpId,
        secret_fingerprint: &str,
    ) -> StoreResult<Option<AccessToken>> {
        let (pk, sk) = keys::token(corp, secret_fingerprint);
        match self.backend.get(&pk, &sk).await? {
            None => Ok(None),
            Some(item) => {
                let mut t: AccessToken = self.decode_sealed(&item, TOKEN_SECRETS)?;
                t.version = item.version;
                Ok(Some(t))
            }
        }
    }

    async fn put_token(&self, token: &mut AccessToken) -> StoreResult<()> {
        let (pk, sk) = keys::token(&token.corp_id, &token.secret_fingerprint);
        let write = self.sealed_put(pk, sk, &*token, token.version, TOKEN_SECRETS)?;
        self.put_one(write, &mut token.version).await
    }

    async fn invalidate_token(
        &self,
        corp: &CorpId,
        secret_fingerprint: &str,
        token: &str,
    ) -> StoreResult<()> {
        let Some(current) = self.get_token(corp, secret_fingerprint).await? else {
            return Ok(());
        };
        if current.token.expose() != token {
            return Ok(());
        }
        let (pk, sk) = keys::token(corp, secret_fingerprint);
        match self
            .backend
            .write(ItemWrite::Delete {
                pk,
                sk,
                condition: Condition::Version(current.version),
            })
            .await
        {
            // Someone replaced it meanwhile: that newer token stays.
            Err(e) if e.is_conflict() => Ok(()),
            other => other,
        }
    }

    async fn get_rule(&self, tenant: &TenantId, id: &RuleId) -> StoreResult<Option<Rule>> {
        self.get_entity((keys::rules(tenant), id.to_string()), |r: &mut Rule, v| {
            r.version = v
        })
        .await
    }

    async fn list_rules(&self, tenant: &TenantId) -> StoreResult<Vec<Rule>> {
        let items = self.query_all(keys::rules(tenant), "", false).await?;
        decode_all(&items, |r: &mut Rule, v| r.version = v)
    }

    async fn put_rule(&self, rule: &mut Rule) -> StoreResult<()> {
        let write = versioned_put(
            keys::rules(&rule.tenant),
            rule.id.to_string(),
            &*rule,
            rule.version,
        )?;
        self.put_one(write, &mut rule.version).await
    }

    async fn delete_rule(&self, tenant: &TenantId, id: &RuleId, version: u64) -> StoreResult<()> {
        self.backend
            .write(ItemWrite::Delete {
                pk: keys::rules(tenant),
                sk: id.to_string(),
                condition: Condition::Version(version),
            })
            .await
    }

    async fn list_firings(
        &self,
        tenant: &TenantId,
        rule: &RuleId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Firing>> {
        let limit = limit.clamp(1, 500);
        let items = self
            .backend
            .query(&Query {
                pk: keys::firings(tenant, rule),
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
        let items = decode_all(&items, |f: &mut Firing, v| f.version = v)?;
        Ok(Page { items, next_cursor })
    }

    async fn put_firing(&self, firing: &mut Firing) -> StoreResult<()> {
        let write = firing_put(firing)?;
        self.put_one(write, &mut firing.version).await
    }

    async fn get_channel(&self, tenant: &TenantId, id: &ChannelId) -> StoreResult<Option<Channel>> {
        self.get_entity(
            (keys::channels(tenant), id.to_string()),
            |c: &mut Channel, v| c.version = v,
        )
        .await
    }

    async fn list_channels(&self, tenant: &TenantId) -> StoreResult<Vec<Channel>> {
        let items = self.query_all(keys::channels(tenant), "", false).await?;
        decode_all(&items, |c: &mut Channel, v| c.version = v)
    }

    async fn put_channel(&self, channel: &mut Channel) -> StoreResult<()> {
        let write = versioned_put(
            keys::channels(&channel.tenant),
            channel.id.to_string(),
            &*channel,
            channel.version,
        )?;
        self.put_one(write, &mut channel.version).await
    }

    async fn delete_channel(&self, tenant: &TenantId, id: &ChannelId) -> StoreResult<()> {
        self.backend
            .write(ItemWrite::Delete {
                pk: keys::channels(tenant),
                sk: id.to_string(),
                condition: Condition::None,
            })
            .await
    }

    async fn get_directory(&self, tenant: &TenantId) -> StoreResult<Option<Directory>> {
        self.get_entity(keys::directory(tenant), |d: &mut Directory, v| {
            d.version = v
        })
        .await
    }

    async fn put_directory(&self, directory: &mut Directory) -> StoreResult<()> {
        let (pk, sk) = keys::directory(&directory.tenant);
        let write = versioned_put(pk, sk, &*directory, directory.version)?;
        self.put_one(write, &mut directory.version).await
    }

    async fn get_operator(
        &self,
        tenant: &TenantId,
        userid: &str,
    ) -> StoreResult<Option<OperatorRole>> {
        self.get_entity(
            (keys::operators(tenant), userid.to_owned()),
            |o: &mut OperatorRole, v| o.version = v,
        )
        .await
    }

    async fn list_operators(&self, tenant: &TenantId) -> StoreResult<Vec<OperatorRole>> {
        let items = self.query_all(keys::operators(tenant), "", false).await?;
        decode_all(&items, |o: &mut OperatorRole, v| o.version = v)
    }

    async fn put_operator(&self, role: &mut OperatorRole) -> StoreResult<()> {
        let write = versioned_put(
            keys::operators(&role.tenant),
            role.userid.clone(),
            &*role,
            role.version,
        )?;
        self.put_one(write, &mut role.version).await
    }

    async fn delete_operator(
        &self,
        tenant: &TenantId,
        userid: &str,
        version: u64,
    ) -> StoreResult<()> {
        self.backend
            .write(ItemWrite::Delete {
                pk: keys::operators(tenant),
                sk: userid.to_owned(),
                condition: Condition::Version(version),
            })
            .await
    }

    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
        self.get_entity(keys::session(id_hash), |_: &mut Session, _| {})
            .await
    }

    async fn put_session(&self, session: &Session) -> StoreResult<()> {
        let (pk, sk) = keys::session(&session.id_hash);
        let data = encode(&pk, session)?;
        let mut item = Item::new(pk, sk, 1, data);
        item.expiration = Some(session.expires_at.secs());
        self.backend
            .write(ItemWrite::Put {
                item,
                condition: Condition::Absent,
            })
            .await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let (pk, sk) = keys::session(id_hash);
        self.backend
            .write(ItemWrite::Delete {
                pk,
                sk,
                condition: Condition::None,
            })
            .await
    }

    async fn put_login_state(&self, login: &LoginState) -> StoreResult<()> {
        let (pk, sk) = keys::login(&login.state);
        let data = encode(&pk, login)?;
        let mut item = Item::new(pk, sk, 1, data);
        item.expiration = Some(login.expires_at.secs());
        self.backend
            .write(ItemWrite::Put {
                item,
                condition: Condition::Absent,
            })
            .await
    }

    async fn take_login_state(&self, state: &str) -> StoreResult<Option<LoginState>> {
        let (pk, sk) = keys::login(state);
        let Some(item) = self.backend.get(&pk, &sk).await? else {
            return Ok(None);
        };
        // The delete decides who took it: only one of two racing takes finds the version.
        match self
            .backend
            .write(ItemWrite::Delete {
                pk,
                sk,
                condition: Condition::Version(item.version),
            })
            .await
        {
            Ok(()) => Ok(Some(decode(&item)?)),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_queue_marks(&self, marks: &[QueueMark]) -> StoreResult<()> {
        // In transactions of at most 100 (one send is at most a few hundred jobs): far fewer
        // round trips than one write each.
        for chunk in marks.chunks(100) {
            let writes = chunk
                .iter()
                .map(|m| {
                    Ok(ItemWrite::Put {
                        item: mark_item(m, 1)?,
                        condition: Condition::None,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
            self.backend.transact(writes).await?;
        }
        Ok(())
    }

    async fn update_queue_mark(&self, mark: &QueueMark) -> StoreResult<bool> {
        let pk = keys::queue_marks(&mark.tenant);
        let sk = mark.job.to_string();
        // Read, then write only over what was read: a delete in between wins.
        for _ in 0..5 {
            let Some(current) = self.backend.get(&pk, &sk).await? else {
                return Ok(false);
            };
            let put = ItemWrite::Put {
                item: mark_item(mark, current.version + 1)?,
                condition: Condition::Version(current.version),
            };
            match self.backend.write(put).await {
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

    async fn delete_queue_mark(&self, tenant: &TenantId, job: &JobId) -> StoreResult<()> {
        self.backend
            .write(ItemWrite::Delete {
                pk: keys::queue_marks(tenant),
                sk: job.to_string(),
                condition: Condition::None,
            })
            .await
    }

    async fn list_queue_marks(&self, tenant: &TenantId) -> StoreResult<Vec<QueueMark>> {
        let items = self.query_all(keys::queue_marks(tenant), "", false).await?;
        items.iter().map(decode).collect()
    }
}
