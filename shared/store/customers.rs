//! The customer index in both backends (issue 15). Filters need more than the single-table
//! layout's key lookups, so each backend answers them its own way, held to one contract
//! (`tests/contract`, `store_cases::customer_index_*`) and to one definition of a match,
//! [`CustomerFilter::matches`]:
//!
//! - **SQLite** keeps two tables beside `items`: `customer_index` (one row per customer: its
//!   entry as JSON, whether it is bound, the lowercased text `q` searches) and
//!   `customer_facets` (one row per tag, `state`, staff member and bound-ness of a customer,
//!   indexed both ways). Every filter is one SQL query over them plus one `COUNT(*)`.
//! - **DynamoDB** (the items layout, below) files a copy of the entry under each of its
//!   facets: partition `CIDX#{t}#{facet}`, sort key the external userid, and one more copy
//!   under `CIDX#{t}#all`. A query reads only the partition of the filter's narrowing facet
//!   ([`CustomerFilter::narrowing_facet`]: `userid`, else `state`, else the first tag of
//!   `tag_mode=all` or a single `any` tag, else `bound`) and checks the rest of the filter on
//!   the copies it reads. A filter with none of those (only `q`, `tag_mode=none`, several
//!   `any` tags) pages through `CIDX#{t}#all`, the whole tenant's index. `total` is exact, so
//!   the partition is read to its end on every page.
//!
//! Entries are versioned like every entity: a write of a stale copy is a conflict.

use super::item::{Condition, Direction, Item, ItemBackend, ItemWrite, Query};
use crate::domain::*;
use crate::ports::{StoreError, StoreResult};
use std::collections::BTreeSet;

/// The most customers one page of the admin API lists (`CustomerIndex::query_customers`).
pub const MAX_PAGE: usize = 200;

fn corrupt(key: String) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        key,
        message: e.to_string(),
    }
}

fn encode(entry: &CustomerEntry) -> StoreResult<String> {
    serde_json::to_string(entry).map_err(corrupt(entry.external_userid.to_string()))
}

/// An entry as a backend stored it (`key` names it in an error).
pub fn decode_row(key: &str, data: &str, version: u64) -> StoreResult<CustomerEntry> {
    decode(key, data, version)
}

fn decode(key: &str, data: &str, version: u64) -> StoreResult<CustomerEntry> {
    let mut e: CustomerEntry = serde_json::from_str(data).map_err(corrupt(key.to_string()))?;
    e.version = version;
    Ok(e)
}

// ---------------------------------------------------------------------------------------
// The items layout (DynamoDB).

fn entry_key(t: &TenantId, c: &ExternalUserId) -> (String, String) {
    (format!("CUST#{t}#{c}"), "INDEX".into())
}

fn partition(t: &TenantId, facet: Option<&Facet>) -> String {
    match facet {
        Some(f) => format!("CIDX#{t}#{}", f.key()),
        None => format!("CIDX#{t}#all"),
    }
}

/// How many items one page of a partition walk asks for.
const WALK_PAGE: usize = 500;
/// DynamoDB's limit of writes in one transaction.
const TRANSACTION: usize = 100;

pub async fn items_get<B: ItemBackend + ?Sized>(
    b: &B,
    t: &TenantId,
    c: &ExternalUserId,
) -> StoreResult<Option<CustomerEntry>> {
    let (pk, sk) = entry_key(t, c);
    match b.get(&pk, &sk).await? {
        None => Ok(None),
        Some(i) => decode(&i.key(), &i.data, i.version).map(Some),
    }
}

/// The entry item (checked against the version read) and its copies, in one transaction when
/// they fit (a customer with fewer than about 98 tags, states and staff members together);
/// beyond that the further copies follow in more transactions.
pub async fn items_put<B: ItemBackend + ?Sized>(
    b: &B,
    entry: &mut CustomerEntry,
) -> StoreResult<()> {
    let t = entry.tenant.clone();
    let c = entry.external_userid.clone();
    let old = items_get(b, &t, &c).await?;
    let old_facets = old.as_ref().map(CustomerEntry::facets).unwrap_or_default();
    let new_facets = entry.facets();
    let data = encode(entry)?;
    let (pk, sk) = entry_key(&t, &c);
    let mut writes = vec![ItemWrite::Put {
        item: Item::new(pk, sk, entry.version + 1, data.clone()),
        condition: if entry.version == 0 {
            Condition::Absent
        } else {
            Condition::Version(entry.version)
        },
    }];
    let copies = std::iter::once(None).chain(new_facets.iter().map(Some));
    for f in copies {
        writes.push(ItemWrite::Put {
            item: Item::new(partition(&t, f), c.to_string(), 1, data.clone()),
            condition: Condition::None,
        });
    }
    for f in old_facets.difference(&new_facets) {
        writes.push(ItemWrite::Delete {
            pk: partition(&t, Some(f)),
            sk: c.to_string(),
            condition: Condition::None,
        });
    }
    let rest = writes.split_off(writes.len().min(TRANSACTION));
    b.transact(writes).await.map_err(|e| match e {
        StoreError::TransactionConflict { failed } => StoreError::Conflict {
            key: format!("customer index {c}"),
            reason: format!("{failed:?}"),
        },
        e => e,
    })?;
    entry.version += 1;
    for chunk in rest.chunks(TRANSACTION) {
        b.transact(chunk.to_vec()).await?;
    }
    Ok(())
}

/// Walks the partition `filter` reads ([`CustomerFilter::narrowing_facet`]) in external-userid
/// order, handing `each` every copy that matches the whole filter, with its sort key.
async fn for_each_match<B: ItemBackend + ?Sized>(
    b: &B,
    t: &TenantId,
    filter: &CustomerFilter,
    mut each: impl FnMut(&str, CustomerEntry),
) -> StoreResult<()> {
    let pk = partition(t, filter.narrowing_facet().as_ref());
    let mut start_after: Option<String> = None;
    loop {
        let items = b
            .query(&Query {
                pk: pk.clone(),
                sk_prefix: String::new(),
                start_after: start_after.clone(),
                limit: WALK_PAGE,
                direction: Direction::Ascending,
                on_gsi: false,
            })
            .await?;
        start_after = items.last().map(|i| i.sk.clone());
        for i in &items {
            let e = decode(&i.key(), &i.data, 0)?;
            if filter.matches(&e) {
                each(&i.sk, e);
            }
        }
        if items.len() < WALK_PAGE {
            return Ok(());
        }
    }
}

pub async fn items_matching<B: ItemBackend + ?Sized>(
    b: &B,
    t: &TenantId,
    filter: &CustomerFilter,
) -> StoreResult<Vec<ExternalUserId>> {
    let mut out = Vec::new();
    for_each_match(b, t, filter, |_, e| out.push(e.external_userid)).await?;
    Ok(out)
}

pub async fn items_query<B: ItemBackend + ?Sized>(
    b: &B,
    t: &TenantId,
    filter: &CustomerFilter,
    cursor: Option<&str>,
    limit: usize,
) -> StoreResult<CustomerPage> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut page = CustomerPage::default();
    // `total` is exact: the partition is read to its end on every page.
    for_each_match(b, t, filter, |sk, e| {
        page.total += 1;
        let after_cursor = cursor.is_none_or(|c| sk > c);
        if after_cursor && page.customers.len() < limit {
            page.customers.push(e);
        } else if after_cursor && page.next_cursor.is_none() {
            page.next_cursor = page.customers.last().map(|x| x.external_userid.to_string());
        }
    })
    .await?;
    // The copies carry no version; the listing is for reading, a writer reads the entry.
    Ok(page)
}

// ---------------------------------------------------------------------------------------
// SQLite.

pub const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS customer_index (
    tenant TEXT NOT NULL,
    external_userid TEXT NOT NULL,
    version INTEGER NOT NULL,
    search TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (tenant, external_userid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS customer_facets (
    tenant TEXT NOT NULL,
    facet TEXT NOT NULL,
    external_userid TEXT NOT NULL,
    PRIMARY KEY (tenant, facet, external_userid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS customer_facets_of ON customer_facets (tenant, external_userid);
";

/// The SQL `WHERE` of a filter (over `customer_index c`) and its parameters, `?1` being the
/// tenant.
pub fn sql_where(t: &TenantId, filter: &CustomerFilter) -> (String, Vec<String>) {
    let mut params = vec![t.to_string()];
    let mut conds = vec!["c.tenant = ?1".to_string()];
    let bind = |params: &mut Vec<String>, v: String| {
        params.push(v);
        format!("?{}", params.len())
    };
    let in_facets = |params: &mut Vec<String>, keys: Vec<String>, negate: bool| {
        let marks: Vec<String> = keys.into_iter().map(|k| bind(params, k)).collect();
        format!(
            "c.external_userid {}IN (SELECT f.external_userid FROM customer_facets f \
             WHERE f.tenant = ?1 AND f.facet IN ({}))",
            if negate { "NOT " } else { "" },
            marks.join(", ")
        )
    };
    let tag_key = |t: &HubTagId| Facet::Tag(t.as_str().to_string()).key();
    if !filter.tags.is_empty() {
        match filter.tag_mode {
            TagMode::Any => {
                let keys = filter.tags.iter().map(tag_key).collect();
                conds.push(in_facets(&mut params, keys, false));
            }
            TagMode::All => {
                for tag in &filter.tags {
                    conds.push(in_facets(&mut params, vec![tag_key(tag)], false));
                }
            }
            TagMode::None => {
                let keys = filter.tags.iter().map(tag_key).collect();
                conds.push(in_facets(&mut params, keys, true));
            }
        }
    }
    if let Some(s) = &filter.state {
        conds.push(in_facets(
            &mut params,
            vec![Facet::State(s.clone()).key()],
            false,
        ));
    }
    if let Some(u) = &filter.userid {
        conds.push(in_facets(
            &mut params,
            vec![Facet::User(u.as_str().to_string()).key()],
            false,
        ));
    }
    if let Some(b) = filter.bound {
        conds.push(in_facets(&mut params, vec![Facet::Bound(b).key()], false));
    }
    if let Some(q) = &filter.q {
        params.push(q.to_lowercase());
        conds.push(format!("instr(c.search, ?{}) > 0", params.len()));
    }
    (conds.join(" AND "), params)
}

/// A set of facets as store keys.
pub fn facet_keys(e: &CustomerEntry) -> BTreeSet<String> {
    e.facets().iter().map(Facet::key).collect()
}
