//! SQLite backend of the store (and home of the queue's table): one file in the data
//! directory, WAL mode, used by `tagsync serve`.
//!
//! Writes go through one writer thread that commits them in groups: each write runs in its
//! own savepoint (its conditions and effects are atomic on their own), and every write that
//! arrived while the previous group was committing shares the next transaction. Callers hear
//! back only after that transaction committed, so "Ok" still means durable; but a burst of
//! 200 callbacks costs a handful of commits instead of 800. Reads use a second connection,
//! which WAL lets run beside the writer.

use super::customers;
use super::item::{Condition, CountUp, Direction, Item, ItemBackend, ItemWrite, Query};
use super::table::TableStore;
use crate::domain::{CustomerEntry, CustomerFilter, CustomerPage, ExternalUserId, TenantId};
use crate::ports::store::CustomerIndex;
use crate::ports::{StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

/// The shared SQLite database of a data directory (store and queue).
#[derive(Clone)]
pub struct SqliteDb {
    inner: Arc<Inner>,
}

struct Inner {
    /// A few read connections, so concurrent reads (every request reads its tenant) do not
    /// queue behind one lock; WAL lets them all read beside the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    writer: Mutex<mpsc::Sender<WriteOp>>,
}

const READERS: usize = 4;

/// A write failed as a whole: the group's transaction could not commit, or the writer is gone.
#[derive(Debug, Clone)]
pub struct WriteFailed(pub String);

impl From<WriteFailed> for StoreError {
    fn from(e: WriteFailed) -> Self {
        StoreError::Unavailable {
            op: "sqlite commit",
            message: e.0,
        }
    }
}

/// For writes whose closures speak rusqlite's error type (the queue's).
impl From<WriteFailed> for rusqlite::Error {
    fn from(e: WriteFailed) -> Self {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            Some(e.0),
        )
    }
}

/// Work on a connection, run off the async threads ([`SqliteDb::read`], [`SqliteDb::write`]).
pub trait DbWork<T, E>: FnOnce(&Connection) -> Result<T, E> + Send + 'static {}
impl<F, T, E> DbWork<T, E> for F where F: FnOnce(&Connection) -> Result<T, E> + Send + 'static {}

/// The error of such work: it can also say that the database failed it as a whole.
pub trait DbError: From<WriteFailed> + Send + 'static {}
impl<E: From<WriteFailed> + Send + 'static> DbError for E {}

/// Called once the group's transaction ended: `Ok` when it committed.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One write: runs inside its savepoint and says whether to keep its effects.
type WriteOp = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// Most writes one transaction carries.
const GROUP: usize = 512;

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
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, state);
";

fn unavailable(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Unavailable {
        op,
        message: e.to_string(),
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // WAL: readers never block the writer; NORMAL sync is durable across process crashes
    // (only an OS crash may lose the last transactions), which is what `serve` needs.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Deleted and overwritten content is zeroed, so an old plain secret (or any record the
    // store replaced) does not linger in free pages of a copied file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Another process on the same file (the CLI beside `serve`) waits rather than fails.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The database file of a data directory.
pub const DB_FILE: &str = "tagsync.db";

/// A database that cannot be used as it is: SQLite says it is not a database, or
/// `PRAGMA quick_check` finds damage. Names the file and what to do.
fn damaged(path: &Path, detail: &str) -> StoreError {
    StoreError::Corrupt {
        key: path.display().to_string(),
        message: format!(
            "the database is damaged ({detail}); tagsync will not start on it: restore \
             {} from a backup, or move it away to start with an empty store",
            path.display()
        ),
    }
}

/// SQLite's verdicts that mean "this file is not a (sound) database".
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Runs `PRAGMA quick_check` (a full scan of pages and indexes, without the slower
/// cross-checks of `integrity_check`): `Ok` when it answers `ok`.
fn quick_check(conn: &Connection) -> rusqlite::Result<Result<(), String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let problems: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(Ok(()))
    } else {
        let mut shown: Vec<String> = problems.iter().take(3).cloned().collect();
        if problems.len() > 3 {
            shown.push(format!("and {} more", problems.len() - 3));
        }
        Ok(Err(format!("quick_check: {}", shown.join("; "))))
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Creates `dir` (and its missing parents) if needed. A directory created here is 0700 —
/// exactly, whatever the umask — since it holds the store; an existing one keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    set_mode(dir, 0o700)
}

/// The database file, created empty if missing, and its WAL and shared-memory files if they
/// exist: all 0600, whatever the umask (SQLite gives the WAL files the database's mode).
fn private_db_files(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    drop(opts.open(path)?);
    set_mode(path, 0o600)?;
    for suffix in ["-wal", "-shm"] {
        let side = path.with_file_name(format!("{DB_FILE}{suffix}"));
        if side.exists() {
            set_mode(&side, 0o600)?;
        }
    }
    Ok(())
}

impl SqliteDb {
    /// Opens the database at `path` (created if missing) and checks it: a file that is not a
    /// database or fails `PRAGMA quick_check` is refused with [`StoreError::Corrupt`].
    pub fn open(path: &Path) -> StoreResult<Self> {
        let open_err = |op: &'static str| {
            move |e: rusqlite::Error| {
                if is_damage(&e) {
                    damaged(path, &e.to_string())
                } else {
                    StoreError::Unavailable {
                        op,
                        message: format!("{}: {e}", path.display()),
                    }
                }
            }
        };
        let writer = connect(path).map_err(open_err("open"))?;
        quick_check(&writer)
            .map_err(open_err("quick_check"))?
            .map_err(|detail| damaged(path, &detail))?;
        writer.execute_batch(SCHEMA).map_err(open_err("migrate"))?;
        writer
            .execute_batch(customers::SQLITE_SCHEMA)
            .map_err(open_err("migrate"))?;
        let readers = (0..READERS)
            .map(|_| connect(path).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(open_err("open"))?;
        let (tx, rx) = mpsc::channel::<WriteOp>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_groups(writer, rx))
            .map_err(|e| StoreError::Unavailable {
                op: "open",
                message: format!("writer thread: {e}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                readers,
                next_reader: Default::default(),
                writer: Mutex::new(tx),
            }),
        })
    }

    /// Opens (creating as needed) `dir/tagsync.db`: the directory 0700 when created here, the
    /// database files 0600.
    pub fn open_in_dir(dir: &Path) -> StoreResult<Self> {
        let io = |e: std::io::Error| StoreError::Unavailable {
            op: "open",
            message: format!("{}: {e}", dir.display()),
        };
        create_private_dir(dir).map_err(io)?;
        let path = dir.join(DB_FILE);
        private_db_files(&path).map_err(io)?;
        Self::open(&path)
    }

    /// Moves every committed write from the WAL into the database file and empties the WAL,
    /// so page images from before (e.g. plain secrets just sealed) leave the disk.
    pub async fn checkpoint(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
            .await
            .map_err(unavailable("checkpoint"))
    }

    /// Whether `dir` holds a store (the operator's CLI works only on an existing one).
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(DB_FILE).is_file()
    }

    /// Runs a read on the reader connection, off the async threads.
    pub async fn read<T: Send + 'static, E: DbError>(&self, f: impl DbWork<T, E>) -> Result<T, E> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let n = inner
                .next_reader
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % inner.readers.len();
            // A panic while holding the lock poisons it; the connection itself is fine.
            let conn = inner.readers[n].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        // The read's thread panicked or the runtime is shutting down: a failed read.
        .unwrap_or_else(|e| Err(E::from(WriteFailed(format!("sqlite read: {e}")))))
    }

    /// Runs a write atomically (in its own savepoint) and answers once it is committed. An
    /// `Err` from `f` rolls back what `f` did and is returned as is.
    pub async fn write<T: Send + 'static, E: DbError>(&self, f: impl DbWork<T, E>) -> Result<T, E> {
        let (done, answer) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let op: WriteOp = Box::new(move |conn| {
            let result = f(conn);
            let keep = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = done.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(E::from(WriteFailed(e))),
                });
            });
            (keep, reply)
        });
        let sent = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(op);
        if sent.is_err() {
            return Err(E::from(WriteFailed("the sqlite writer has stopped".into())));
        }
        answer.await.unwrap_or_else(|_| {
            Err(E::from(WriteFailed(
                "the write was abandoned (its group failed)".into(),
            )))
        })
    }
}

/// The writer thread: takes every write waiting, runs each in a savepoint of one IMMEDIATE
/// transaction, commits, then answers them all. Ends when every `SqliteDb` is dropped.
fn write_groups(mut conn: Connection, ops: mpsc::Receiver<WriteOp>) {
    while let Ok(first) = ops.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for op in group.drain(..) {
                let sp = tx.savepoint()?;
                let (keep, reply) = op(&sp);
                replies.push(reply);
                if keep {
                    sp.commit()?;
                }
                // Dropping an uncommitted savepoint rolls it back.
            }
            tx.commit()
        })();
        // Writes that never ran (their savepoint could not open) drop their reply channel:
        // their callers hear "abandoned".
        let outcome = outcome.map_err(|e| e.to_string());
        for reply in replies {
            reply(outcome.clone());
        }
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
    if matches!(condition_of(write), Condition::None) {
        // Nothing to check: spare the read.
        return Ok(None);
    }
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
            .read(move |c| get_raw(c, &pk, &sk))
            .await
            .map(|o| o.filter(|i| !is_expired(i, now)))
            .map_err(unavailable("get"))
    }

    async fn query(&self, q: &Query) -> StoreResult<Vec<Item>> {
        let q = q.clone();
        let now_secs = now_millis().div_euclid(1000);
        self.db
            .read(move |c| -> rusqlite::Result<Vec<Item>> {
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
            .write(move |c| -> StoreResult<()> {
                let current = current_for_condition(c, &write).map_err(unavailable("write"))?;
                holds(condition_of(&write), current.as_ref()).map_err(|reason| {
                    StoreError::Conflict {
                        key: write.key(),
                        reason,
                    }
                })?;
                apply(c, &write).map_err(unavailable("write"))
            })
            .await
    }

    async fn count_up(&self, step: CountUp) -> StoreResult<Option<u64>> {
        let CountUp {
            pk,
            sk,
            by,
            limit,
            expiration,
        } = step;
        if limit == 0 {
            return Ok(None);
        }
        let (by, limit) = (
            by.min(i64::MAX as u64) as i64,
            limit.min(i64::MAX as u64) as i64,
        );
        self.db
            .write(move |c| -> StoreResult<Option<u64>> {
                // One statement: the writer thread serialises writes, and the WHERE keeps a
                // full counter as it is (no row returned).
                c.query_row(
                    "INSERT INTO items (pk, sk, version, data, expiration) VALUES (?1, ?2, ?3, '{}', ?5)
                     ON CONFLICT (pk, sk) DO UPDATE SET version = version + ?3, expiration = ?5
                     WHERE version < ?4
                     RETURNING version",
                    params![pk, sk, by, limit, expiration],
                    |row| row.get::<_, i64>(0),
                )
                .optional()
                .map(|v| v.map(|v| v as u64))
                .map_err(unavailable("count_up"))
            })
            .await
    }

    async fn transact(&self, writes: Vec<ItemWrite>) -> StoreResult<()> {
        let mut seen = std::collections::HashSet::new();
        for w in &writes {
            if !seen.insert(w.key()) {
                return Err(StoreError::Invalid(format!(
                    "two writes on {} in one transaction",
                    w.key()
                )));
            }
        }
        self.db
            .write(move |c| -> StoreResult<()> {
                let mut failed = Vec::new();
                for (i, w) in writes.iter().enumerate() {
                    let current = current_for_condition(c, w).map_err(unavailable("transact"))?;
                    if let Err(reason) = holds(condition_of(w), current.as_ref()) {
                        failed.push((i, w.key(), reason));
                    }
                }
                if !failed.is_empty() {
                    // Nothing was written yet; the error rolls the savepoint back anyway.
                    return Err(StoreError::TransactionConflict { failed });
                }
                for w in &writes {
                    apply(c, w).map_err(unavailable("transact"))?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl CustomerIndex for SqliteItems {
    async fn get_customer_entry(
        &self,
        tenant: &TenantId,
        customer: &ExternalUserId,
    ) -> StoreResult<Option<CustomerEntry>> {
        let (t, c) = (tenant.to_string(), customer.to_string());
        let row = self
            .db
            .read(move |conn| {
                conn.query_row(
                    "SELECT data, version FROM customer_index WHERE tenant = ?1 AND external_userid = ?2",
                    params![t, c],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()
            })
            .await
            .map_err(unavailable("get customer entry"))?;
        row.map(|(data, v)| customers::decode_row(customer.as_str(), &data, v as u64))
            .transpose()
    }

    async fn put_customer_entry(&self, entry: &mut CustomerEntry) -> StoreResult<()> {
        let data = serde_json::to_string(&*entry).map_err(|e| StoreError::Corrupt {
            key: entry.external_userid.to_string(),
            message: e.to_string(),
        })?;
        let (t, c) = (entry.tenant.to_string(), entry.external_userid.to_string());
        let (search, facets, expected) = (
            entry.search_text(),
            customers::facet_keys(entry),
            entry.version as i64,
        );
        self.db
            .write(move |conn| -> StoreResult<()> {
                let stored: Option<i64> = conn
                    .query_row(
                        "SELECT version FROM customer_index WHERE tenant = ?1 AND external_userid = ?2",
                        params![t, c],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable("put customer entry"))?;
                if stored.unwrap_or(0) != expected {
                    return Err(StoreError::Conflict {
                        key: format!("customer index {t}/{c}"),
                        reason: format!("version is {}, expected {expected}", stored.unwrap_or(0)),
                    });
                }
                let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
                    conn.execute(sql, p).map_err(unavailable("put customer entry"))
                };
                run(
                    "INSERT OR REPLACE INTO customer_index (tenant, external_userid, version, search, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    &[&t, &c, &(expected + 1), &search, &data],
                )?;
                run(
                    "DELETE FROM customer_facets WHERE tenant = ?1 AND external_userid = ?2",
                    &[&t, &c],
                )?;
                for f in &facets {
                    run(
                        "INSERT INTO customer_facets (tenant, facet, external_userid) VALUES (?1, ?2, ?3)",
                        &[&t, f, &c],
                    )?;
                }
                Ok(())
            })
            .await?;
        entry.version += 1;
        Ok(())
    }

    async fn matching_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
    ) -> StoreResult<Vec<ExternalUserId>> {
        let (cond, args) = customers::sql_where(tenant, filter);
        let ids = self
            .db
            .read(move |conn| -> rusqlite::Result<Vec<String>> {
                conn.prepare_cached(&format!(
                    "SELECT c.external_userid FROM customer_index c WHERE {cond} ORDER BY c.external_userid"
                ))?
                .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?
                .collect()
            })
            .await
            .map_err(unavailable("matching customers"))?;
        Ok(ids.into_iter().map(ExternalUserId::new_unchecked).collect())
    }

    async fn query_customers(
        &self,
        tenant: &TenantId,
        filter: &CustomerFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<CustomerPage> {
        let limit = limit.clamp(1, customers::MAX_PAGE);
        let (cond, mut args) = customers::sql_where(tenant, filter);
        let cursor = cursor.map(str::to_string);
        let (total, rows) = self
            .db
            .read(move |conn| -> rusqlite::Result<(i64, Vec<(String, String, i64)>)> {
                // One snapshot for the count and the page.
                let tx = conn.unchecked_transaction()?;
                let total = tx
                    .prepare_cached(&format!("SELECT COUNT(*) FROM customer_index c WHERE {cond}"))?
                    .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
                let after = match cursor {
                    Some(c) => {
                        args.push(c);
                        format!(" AND c.external_userid > ?{}", args.len())
                    }
                    None => String::new(),
                };
                let rows = tx
                    .prepare_cached(&format!(
                        "SELECT c.external_userid, c.data, c.version FROM customer_index c WHERE {cond}{after} \
                         ORDER BY c.external_userid LIMIT {}",
                        limit + 1
                    ))?
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                tx.finish()?;
                Ok((total, rows))
            })
            .await
            .map_err(unavailable("query customers"))?;
        let more = rows.len() > limit;
        let customers = rows
            .into_iter()
            .take(limit)
            .map(|(id, data, v)| customers::decode_row(&id, &data, v as u64))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(CustomerPage {
            next_cursor: more
                .then(|| customers.last().map(|c| c.external_userid.to_string()))
                .flatten(),
            customers,
            total: total as u64,
        })
    }
}
