//! SQLite backend of the store (and home of the queue's table): one file in the data
//! directory, WAL mode, used by `tagsync serve`.
//!
//! One connection behind a std `Mutex`, used from `spawn_blocking`: SQLite serialises writers
//! anyway, each statement is short, and a single connection keeps transactions simple.

use super::item::{Condition, Direction, Item, ItemBackend, ItemWrite, Query};
use super::table::TableStore;
use crate::ports::{StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The shared SQLite database of a data directory (store and queue). Every write runs in an
/// IMMEDIATE transaction: it takes the write lock up front, so a second process on the same
/// file (the CLI beside `serve`) waits for the busy timeout instead of failing at once with
/// "database is locked" when a deferred read would have had to upgrade.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    expiration INTEGER,
    gsi1pk TEXT,
    gsi1sk TEXT,
    lock_until INTEGER,
    owner TEXT,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk) WHERE gsi1pk IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    tenant TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL,            -- 'ready' or 'dead'
    visible_at INTEGER NOT NULL,    -- epoch ms; a ready job is deliverable when visible_at <= now
    receipt TEXT,                   -- set while received and not yet acked/retried
    receive_count INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    parked_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, visible_at);
";

fn unavailable(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Unavailable {
        op,
        message: e.to_string(),
    }
}

impl SqliteDb {
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(unavailable("open"))?;
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes
        // (only an OS crash may lose the last transactions), which is what `serve` needs.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable("open"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable("open"))?;
        conn.execute_batch(SCHEMA).map_err(unavailable("migrate"))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens (creating as needed) `dir/tagsync.db`.
    pub fn open_in_dir(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
            op: "open",
            message: format!("{}: {e}", dir.display()),
        })?;
        Self::open(&dir.join("tagsync.db"))
    }

    /// Runs `f` on the connection off the async threads.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> T {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection itself is still
            // consistent (SQLite rolled back the open transaction), so keep using it.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .expect("sqlite task panicked")
    }
}

pub struct SqliteItems {
    db: SqliteDb,
}

pub type SqliteStore = TableStore<SqliteItems>;

impl SqliteItems {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

/// Opens the store of a data directory.
pub fn open_store(db: &SqliteDb) -> SqliteStore {
    TableStore::new(SqliteItems::new(db.clone()))
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn read_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        pk: row.get(0)?,
        sk: row.get(1)?,
        version: row.get::<_, i64>(2)? as u64,
        data: row.get(3)?,
        expiration: row.get(4)?,
        gsi1pk: row.get(5)?,
        gsi1sk: row.get(6)?,
        lock_until: row.get(7)?,
        owner: row.get(8)?,
    })
}

const COLUMNS: &str = "pk, sk, version, data, expiration, gsi1pk, gsi1sk, lock_until, owner";

fn get_raw(conn: &Connection, pk: &str, sk: &str) -> rusqlite::Result<Option<Item>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM items WHERE pk = ?1 AND sk = ?2"),
        params![pk, sk],
        read_item,
    )
    .optional()
}

fn is_expired(item: &Item, now_ms: i64) -> bool {
    item.expiration.is_some_and(|e| e < now_ms.div_euclid(1000))
}

/// Whether `cond` holds for the stored `current` item.
fn holds(cond: &Condition, current: Option<&Item>) -> Result<(), String> {
    match (cond, current) {
        (Condition::None, _) => Ok(()),
        (Condition::Absent, None) => Ok(()),
        (Condition::Absent, Some(_)) => Err("item already exists".into()),
        (Condition::Version(_), None) => Err("item does not exist".into()),
        (Condition::Version(v), Some(i)) if i.version == *v => Ok(()),
        (Condition::Version(v), Some(i)) => Err(format!("version is {}, expected {v}", i.version)),
        (Condition::Claimable { .. }, None) => Ok(()),
        (Condition::Claimable { now_millis, owner }, Some(i)) => {
            let expired = i
                .expiration
                .is_some_and(|e| e < now_millis.div_euclid(1000));
            let lapsed = i.lock_until.is_some_and(|l| l < *now_millis);
            let mine = owner.is_some() && i.owner == *owner;
            if expired || lapsed || mine {
                Ok(())
            } else {
                Err("held by another claimant".into())
            }
        }
        (Condition::OwnedBy(_), None) => Err("item does not exist".into()),
        (Condition::OwnedBy(o), Some(i)) if i.owner.as_deref() == Some(o.as_str()) => Ok(()),
        (Condition::OwnedBy(_), Some(_)) => Err("owned by someone else".into()),
    }
}

fn apply(conn: &Connection, write: &ItemWrite) -> rusqlite::Result<()> {
    match write {
        ItemWrite::Put { item, .. } => {
            conn.execute(
                &format!("INSERT OR REPLACE INTO items ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    item.pk,
                    item.sk,
                    item.version as i64,
                    item.data,
                    item.expiration,
                    item.gsi1pk,
                    item.gsi1sk,
                    item.lock_until,
                    item.owner
                ],
            )?;
        }
        ItemWrite::Delete { pk, sk, .. } => {
            conn.execute(
                "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                params![pk, sk],
            )?;
        }
    }
    Ok(())
}

fn condition_of(write: &ItemWrite) -> &Condition {
    match write {
        ItemWrite::Put { condition, .. } | ItemWrite::Delete { condition, .. } => condition,
    }
}

/// The stored item as conditions see it: the raw item, expired or not — as in DynamoDB,
/// where an expired item stays until TTL deletes it (lazily). Expiry matters to conditions
/// only through `Claimable`, which checks it explicitly.
fn current_for_condition(conn: &Connection, write: &ItemWrite) -> rusqlite::Result<Option<Item>> {
    let (pk, sk) = match write {
        ItemWrite::Put { item, .. } => (item.pk.as_str(), item.sk.as_str()),
        ItemWrite::Delete { pk, sk, .. } => (pk.as_str(), sk.as_str()),
    };
    get_raw(conn, pk, sk)
}

#[async_trait]
impl ItemBackend for SqliteItems {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let (pk, sk) = (pk.to_string(), sk.to_string());
        let now = now_millis();
        self.db
            .with(move |c| get_raw(c, &pk, &sk))
            .await
            .map(|o| o.filter(|i| !is_expired(i, now)))
            .map_err(unavailable("get"))
    }

    async fn query(&self, q: &Query) -> StoreResult<Vec<Item>> {
        let q = q.clone();
        let now_secs = now_millis().div_euclid(1000);
        self.db
            .with(move |c| -> rusqlite::Result<Vec<Item>> {
                let (pk_col, sk_col) = if q.on_gsi { ("gsi1pk", "gsi1sk") } else { ("pk", "sk") };
                let (cmp, order) = match q.direction {
                    Direction::Ascending => (">", "ASC"),
                    Direction::Descending => ("<", "DESC"),
                };
                // Prefix match as a range: [prefix, prefix + U+10FFFF) in byte order. Expired
                // items are left out before the LIMIT, so a page is full when more exist.
                let upper = format!("{}\u{10FFFF}", q.sk_prefix);
                let after = q.start_after.as_ref().map(|_| format!(" AND {sk_col} {cmp} ?5")).unwrap_or_default();
                let sql = format!(
                    "SELECT {COLUMNS} FROM items WHERE {pk_col} = ?1 AND {sk_col} >= ?2 AND {sk_col} < ?3
                     AND (expiration IS NULL OR expiration >= ?4){after} ORDER BY {sk_col} {order} LIMIT {}",
                    q.limit
                );
                let mut stmt = c.prepare_cached(&sql)?;
                match &q.start_after {
                    Some(a) => stmt.query_map(params![q.pk, q.sk_prefix, upper, now_secs, a], read_item)?.collect(),
                    None => stmt.query_map(params![q.pk, q.sk_prefix, upper, now_secs], read_item)?.collect(),
                }
            })
            .await
            .map_err(unavailable("query"))
    }

    async fn write(&self, write: ItemWrite) -> StoreResult<()> {
        self.db
            .with(move |c| -> StoreResult<()> {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(unavailable("write"))?;
                let current = current_for_condition(&tx, &write).map_err(unavailable("write"))?;
                holds(condition_of(&write), current.as_ref()).map_err(|reason| {
                    StoreError::Conflict {
                        key: write.key(),
                        reason,
                    }
                })?;
                apply(&tx, &write).map_err(unavailable("write"))?;
                tx.commit().map_err(unavailable("write"))
            })
            .await
    }

    async fn transact(&self, writes: Vec<ItemWrite>) -> StoreResult<()> {
        self.db
            .with(move |c| -> StoreResult<()> {
                let mut seen = std::collections::HashSet::new();
                for w in &writes {
                    if !seen.insert(w.key()) {
                        return Err(StoreError::Invalid(format!(
                            "two writes on {} in one transaction",
                            w.key()
                        )));
                    }
                }
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(unavailable("transact"))?;
                let mut failed = Vec::new();
                for (i, w) in writes.iter().enumerate() {
                    let current = current_for_condition(&tx, w).map_err(unavailable("transact"))?;
                    if let Err(reason) = holds(condition_of(w), current.as_ref()) {
                        failed.push((i, w.key(), reason));
                    }
                }
                if !failed.is_empty() {
                    // Dropping the transaction rolls it back: nothing was written.
                    return Err(StoreError::TransactionConflict { failed });
                }
                for w in &writes {
                    apply(&tx, w).map_err(unavailable("transact"))?;
                }
                tx.commit().map_err(unavailable("transact"))
            })
            .await
    }
}
