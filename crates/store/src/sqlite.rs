//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`,
//! so that a committed transaction survives a crash or power loss.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Batch, CheckpointMeta, Delivery, EventBody, EventRow, Identifiers, Archive, LedgerMark, MarkMeta, OrderCreated, PeriodTotals, OrderRow, PlanRow, ProfileCount, ProfileRow, Result, Store, StoreError, SubscriptionRow};

const PROFILE_COLUMNS: &str = "iccid, profile_type, imsi, msisdn, state, eid, matching_id, updated_at";

fn profile_from_row(row: &rusqlite::Row) -> rusqlite::Result<ProfileRow> {
    Ok(ProfileRow {
        iccid: row.get(0)?,
        profile_type: row.get(1)?,
        imsi: row.get(2)?,
        msisdn: row.get(3)?,
        state: row.get(4)?,
        eid: row.get(5)?,
        matching_id: row.get(6)?,
        updated_at_micros: row.get(7)?,
    })
}

const ORDER_COLUMNS: &str = "id, status, iccid, subscription, document, created_at, updated_at";

fn order_from_row(row: &rusqlite::Row) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        id: row.get(0)?,
        status: row.get(1)?,
        iccid: row.get(2)?,
        subscription: row.get(3)?,
        document: row.get(4)?,
        created_at_micros: row.get(5)?,
        updated_at_micros: row.get(6)?,
    })
}

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE plans (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    iccid TEXT UNIQUE,
    imsi TEXT UNIQUE,
    msisdn TEXT UNIQUE,
    external_id TEXT UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    subscription TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    at INTEGER NOT NULL,
    key TEXT,
    kind TEXT NOT NULL,
    plan_id TEXT,
    plan_version INTEGER,
    bytes INTEGER,
    country TEXT,
    grant_kind TEXT,
    expires INTEGER
);
CREATE INDEX events_by_subscription ON events (subscription, seq);
CREATE UNIQUE INDEX events_by_key ON events (subscription, key) WHERE key IS NOT NULL;
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#, r#"
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    last_outcome TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
"#, r#"
DROP INDEX events_by_key;
DROP INDEX events_by_subscription;
CREATE UNIQUE INDEX events_by_subscription_key ON events (subscription, key);
"#, r#"
DROP INDEX events_by_subscription_key;
CREATE TABLE event_index (
    subscription TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (subscription, seq)
) WITHOUT ROWID;
INSERT INTO event_index (subscription, seq) SELECT subscription, seq FROM events;
INSERT OR REPLACE INTO meta (name, value) SELECT 'indexed_upto', COALESCE(MAX(seq), 0) FROM events;
"#, r#"
DROP TABLE event_index;
DELETE FROM meta WHERE name = 'indexed_upto';
"#, r#"
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#, r#"
CREATE TABLE esim_profiles (
    iccid TEXT PRIMARY KEY,
    profile_type TEXT,
    imsi TEXT,
    msisdn TEXT,
    state TEXT NOT NULL,
    eid TEXT,
    matching_id TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX esim_profiles_by_state ON esim_profiles (state, iccid);
"#, r#"
ALTER TABLE events ADD COLUMN amount INTEGER;
CREATE TABLE esim_orders (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    iccid TEXT,
    subscription TEXT,
    document TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX esim_orders_by_status ON esim_orders (status, created_at);
CREATE INDEX esim_orders_by_iccid ON esim_orders (iccid, created_at);
"#, r#"
CREATE TABLE checkpoint_parts (
    upto_seq INTEGER NOT NULL,
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (upto_seq, part)
);
CREATE TABLE checkpoints (
    upto_seq INTEGER PRIMARY KEY,
    format INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#, r#"
CREATE TABLE ledger_marks (
    subscription TEXT NOT NULL,
    seq INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    at INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (subscription, seq)
) WITHOUT ROWID;
"#, r#"
CREATE TABLE ledger_floors (
    subscription TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE archived_periods (
    subscription TEXT NOT NULL,
    period INTEGER NOT NULL,
    starts INTEGER NOT NULL,
    ends INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    used_bytes INTEGER NOT NULL,
    throttled_bytes INTEGER NOT NULL,
    rejected_bytes INTEGER NOT NULL,
    granted_bytes INTEGER NOT NULL,
    carried_bytes INTEGER NOT NULL,
    forfeited_bytes INTEGER NOT NULL,
    fees_minor INTEGER NOT NULL,
    charges_minor INTEGER NOT NULL,
    PRIMARY KEY (subscription, starts)
);
"#, r#"
-- A sender claims the deliveries it is about to attempt, so that two
-- senders on one store never post the same one at once.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
"#];

/// The subscription index of the event log lives in a second file beside the
/// log (`PATH-index`), built behind the log in large batches by a thread of
/// its own: a random-order index maintained row by row in the commit path
/// costs most of each commit (every commit rewrites hundreds of index
/// pages), and in its own file it does not hold the log's write lock. It is
/// derived data: lost or behind, it is rebuilt from the log. Reads look at
/// the index and at the short unindexed tail.
const INDEX_BATCH: i64 = 100_000;

const INDEX_SCHEMA: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 67108864; \
    CREATE TABLE IF NOT EXISTS event_index (subscription TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (subscription, seq)) WITHOUT ROWID; \
    CREATE TABLE IF NOT EXISTS progress (indexed_upto INTEGER NOT NULL); \
    INSERT INTO progress (indexed_upto) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM progress);";

fn index_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-index");
    std::path::PathBuf::from(name)
}

/// Attaches the index file as `ix` (read side).
fn attach_index(connection: &Connection, path: &Path) -> Result<()> {
    connection.execute("ATTACH DATABASE ?1 AS ix", [index_path(path).to_string_lossy().as_ref()]).map_err(db)?;
    Ok(())
}

/// Indexes the log until `stop` is set, publishing in `lag` how many
/// events are not indexed yet. Runs on its own thread with its own
/// connections.
fn run_indexer(path: std::path::PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>, lag: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    // A lower priority (nice 10), not the idle class: rating, commits and
    // reads go first, but a machine kept busy cannot starve the index, and
    // with it ledger reads, into scanning the log.
    // SAFETY: setpriority on this thread's own id changes only its nice
    // value, and reads nothing but the arguments passed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
    let connect = || -> Result<(Connection, Connection)> {
        let log = Connection::open(&path).map_err(db)?;
        log.execute_batch("PRAGMA busy_timeout = 5000;").map_err(db)?;
        let index = Connection::open(index_path(&path)).map_err(db)?;
        index.execute_batch("PRAGMA busy_timeout = 5000;").map_err(db)?;
        index.execute_batch(INDEX_SCHEMA).map_err(db)?;
        Ok((log, index))
    };
    let (log, mut index) = match connect() {
        Ok(connections) => connections,
        Err(e) => {
            eprintln!("rollover: the event indexer cannot start: {e}; ledger reads will scan the log");
            return;
        }
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = std::time::Instant::now();
        match index_step(&log, &mut index) {
            Ok(behind) => {
                lag.store(behind, std::sync::atomic::Ordering::Relaxed);
                // Caught up: look again shortly. A little behind: pause as
                // long as the step took (at most half a core). Far behind
                // (more than `INDEX_FAR` events): no pause, catch up.
                match behind {
                    0 => std::thread::sleep(std::time::Duration::from_millis(50)),
                    n if n < INDEX_FAR => std::thread::sleep(started.elapsed()),
                    _ => {}
                }
            }
            Err(e) => {
                eprintln!("rollover: the event indexer failed a step: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// How far behind the log the index may fall before it stops pausing.
const INDEX_FAR: u64 = 4 * INDEX_BATCH as u64;

/// Indexes up to `INDEX_BATCH` more events; returns how many events of the
/// log are still not indexed.
fn index_step(log: &Connection, index: &mut Connection) -> Result<u64> {
    let upto: i64 = index.query_row("SELECT indexed_upto FROM progress", [], |row| row.get(0)).map_err(db)?;
    let newest: i64 = log.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0)).map_err(db)?;
    let mut statement = log.prepare_cached("SELECT subscription, seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2").map_err(db)?;
    let rows = statement
        .query_map(params![upto, INDEX_BATCH], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    let Some(&(_, last)) = rows.last() else { return Ok(0) };
    let tx = index.transaction().map_err(db)?;
    {
        let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO event_index (subscription, seq) VALUES (?1, ?2)").map_err(db)?;
        for (subscription, seq) in &rows {
            insert.execute(params![subscription, seq]).map_err(db)?;
        }
    }
    tx.execute("UPDATE progress SET indexed_upto = ?1", [last]).map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(newest.saturating_sub(last).max(0) as u64)
}

fn db(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

pub struct SqliteStore {
    connection: Connection,
    /// Set on drop to stop this store's indexer, if it started one.
    stop_indexer: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Events of the log the indexer has not indexed yet, as it last saw.
    index_lag: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// The writer's exclusive lock on `PATH.lock`, held while it lives.
    _lock: Option<std::fs::File>,
}

/// Takes the exclusive lock that makes one process the store's only writer:
/// `flock` on `PATH.lock`, released by the kernel when the process ends,
/// however it ends. A second `rollover serve` on the same file is refused.
fn lock_exclusively(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| StoreError(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError(format!("cannot open {}: {e}", lock_path.display())))?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        return Err(StoreError(format!(
            "{} is in use by another rollover process (it holds {}); stop it first, or give this one another store",
            path.display(),
            lock_path.display()
        )));
    }
    Ok(file)
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop_indexer {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError(format!("cannot create {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path).map_err(db)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                 PRAGMA cache_size = -262144; PRAGMA wal_autocheckpoint = 16384; PRAGMA temp_store = MEMORY;",
            )
            .map_err(db)?;
        let mut store = SqliteStore { connection, stop_indexer: None, index_lag: None, _lock: None };
        store.migrate()?;
        let index = Connection::open(index_path(path)).map_err(db)?;
        index.execute_batch("PRAGMA busy_timeout = 5000;").map_err(db)?;
        index.execute_batch(INDEX_SCHEMA).map_err(db)?;
        drop(index);
        attach_index(&store.connection, path)?;
        Ok(store)
    }

    /// Opens the store as its writer and starts the thread that indexes the
    /// log behind it (stopped when the store is dropped).
    pub fn open_writer(path: &Path) -> Result<SqliteStore> {
        let lock = lock_exclusively(path)?;
        let mut store = SqliteStore::open(path)?;
        store._lock = Some(lock);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Unknown (u64::MAX) until the indexer's first step.
        let lag = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let (thread_path, thread_stop, thread_lag) = (path.to_path_buf(), stop.clone(), lag.clone());
        std::thread::Builder::new()
            .name("event-indexer".into())
            .spawn(move || run_indexer(thread_path, thread_stop, thread_lag))
            .map_err(|e| StoreError(format!("cannot start the event indexer: {e}")))?;
        store.stop_indexer = Some(stop);
        store.index_lag = Some(lag);
        Ok(store)
    }

    /// A second connection to the same file for reads that must not wait for
    /// the writer (WAL readers see the last committed state).
    pub fn open_reader(path: &Path) -> Result<SqliteStore> {
        let connection = Connection::open(path).map_err(db)?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;").map_err(db)?;
        attach_index(&connection, path)?;
        Ok(SqliteStore { connection, stop_indexer: None, index_lag: None, _lock: None })
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self.connection.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(db)?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.connection.transaction().map_err(db)?;
            tx.execute_batch(migration).map_err(db)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1)).map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(())
    }
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let kind: String = row.get(5)?;
    let plan = || -> rusqlite::Result<(String, u32)> { Ok((row.get(6)?, row.get(7)?)) };
    let body = match kind.as_str() {
        "purchase" => {
            let (plan_id, plan_version) = plan()?;
            EventBody::Purchase { plan_id, plan_version }
        }
        "change_plan" => {
            let (plan_id, plan_version) = plan()?;
            EventBody::ChangePlan { plan_id, plan_version }
        }
        "usage" => EventBody::Usage { bytes: row.get::<_, i64>(8)? as u64, country: row.get(9)? },
        "grant" => EventBody::Grant { kind: row.get(10)?, bytes: row.get::<_, i64>(8)? as u64, expires_micros: row.get(11)? },
        "install" => EventBody::Install,
        "first_use" => EventBody::FirstUse,
        "suspend" => EventBody::Suspend,
        "resume" => EventBody::Resume,
        "cancel" => EventBody::Cancel,
        // A network note's text lives in the grant-kind column.
        "network" => EventBody::Network { note: row.get(10)? },
        // An add-on's id is in the plan column, its price in the amount.
        "addon" => EventBody::Addon {
            addon: row.get(6)?,
            kind: row.get(10)?,
            bytes: row.get::<_, i64>(8)? as u64,
            expires_micros: row.get(11)?,
            price_minor: row.get(12)?,
        },
        "refund" => EventBody::Refund { minor: row.get(12)?, reason: row.get(10)? },
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown event kind {other:?}").into(),
            ));
        }
    };
    Ok(EventRow { seq: row.get(0)?, subscription: row.get(1)?, applied_at_micros: row.get(2)?, at_micros: row.get(3)?, key: row.get(4)?, body })
}

/// The optional columns of an event row.
#[derive(Default)]
struct Columns<'a> {
    plan_id: Option<&'a str>,
    plan_version: Option<u32>,
    bytes: Option<i64>,
    country: Option<&'a str>,
    grant_kind: Option<&'a str>,
    expires: Option<i64>,
    amount: Option<i64>,
}

impl<'a> Columns<'a> {
    fn of(body: &'a EventBody) -> Columns<'a> {
        match body {
            EventBody::Purchase { plan_id, plan_version } | EventBody::ChangePlan { plan_id, plan_version } => {
                Columns { plan_id: Some(plan_id), plan_version: Some(*plan_version), ..Columns::default() }
            }
            EventBody::Usage { bytes, country } => Columns { bytes: Some(*bytes as i64), country: country.as_deref(), ..Columns::default() },
            EventBody::Grant { kind, bytes, expires_micros } => {
                Columns { bytes: Some(*bytes as i64), grant_kind: Some(kind), expires: Some(*expires_micros), ..Columns::default() }
            }
            EventBody::Network { note } => Columns { grant_kind: Some(note), ..Columns::default() },
            EventBody::Addon { addon, kind, bytes, expires_micros, price_minor } => Columns {
                plan_id: Some(addon),
                bytes: Some(*bytes as i64),
                grant_kind: Some(kind),
                expires: Some(*expires_micros),
                amount: Some(*price_minor),
                ..Columns::default()
            },
            EventBody::Refund { minor, reason } => Columns { grant_kind: Some(reason), amount: Some(*minor), ..Columns::default() },
            _ => Columns::default(),
        }
    }
}

const EVENT_COLUMNS: &str = "seq, subscription, applied_at, at, key, kind, plan_id, plan_version, bytes, country, grant_kind, expires, amount";

impl Store for SqliteStore {
    fn index_lag(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        self.index_lag.clone()
    }

    fn load_plans(&mut self) -> Result<Vec<PlanRow>> {
        let mut statement = self
            .connection
            .prepare("SELECT id, version, document, position, created_at FROM plans ORDER BY created_at, id, version")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok(PlanRow { id: row.get(0)?, version: row.get(1)?, document: row.get(2)?, position: row.get(3)?, created_at_micros: row.get(4)? })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn insert_plans(&mut self, rows: &[PlanRow]) -> Result<()> {
        let tx = self.connection.transaction().map_err(db)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO plans (id, version, document, position, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db)?;
            for row in rows {
                insert.execute(params![row.id, row.version, row.document, row.position, row.created_at_micros]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn insert_profiles(&mut self, rows: &[ProfileRow]) -> Result<Vec<String>> {
        let tx = self.connection.transaction().map_err(db)?;
        let mut present = Vec::new();
        {
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO esim_profiles (iccid, profile_type, imsi, msisdn, state, eid, matching_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(db)?;
            for row in rows {
                let added = insert.execute(params![row.iccid, row.profile_type, row.imsi, row.msisdn, row.state, row.eid, row.matching_id, row.updated_at_micros]).map_err(db)?;
                if added == 0 {
                    present.push(row.iccid.clone());
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(present)
    }

    fn profiles(&mut self, state: Option<&str>, limit: usize, offset: usize) -> Result<(Vec<ProfileRow>, u64)> {
        let (limit, offset) = (limit.min(i64::MAX as usize) as i64, offset.min(i64::MAX as usize) as i64);
        let total: i64 = self.connection.query_row("SELECT COUNT(*) FROM esim_profiles WHERE ?1 IS NULL OR state = ?1", params![state], |row| row.get(0)).map_err(db)?;
        let mut statement = self
            .connection
            .prepare_cached(&format!("SELECT {PROFILE_COLUMNS} FROM esim_profiles WHERE ?1 IS NULL OR state = ?1 ORDER BY iccid LIMIT ?2 OFFSET ?3"))
            .map_err(db)?;
        let rows = statement.query_map(params![state, limit, offset], profile_from_row).map_err(db)?;
        Ok((rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?, total as u64))
    }

    fn profile(&mut self, iccid: &str) -> Result<Option<ProfileRow>> {
        let mut statement = self.connection.prepare_cached(&format!("SELECT {PROFILE_COLUMNS} FROM esim_profiles WHERE iccid = ?1")).map_err(db)?;
        let mut rows = statement.query_map([iccid], profile_from_row).map_err(db)?;
        rows.next().transpose().map_err(db)
    }

    fn profile_counts(&mut self) -> Result<Vec<ProfileCount>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT state, profile_type, COUNT(*) FROM esim_profiles GROUP BY state, profile_type ORDER BY state, profile_type")
            .map_err(db)?;
        let rows = statement.query_map([], |row| Ok(ProfileCount { state: row.get(0)?, profile_type: row.get(1)?, count: row.get::<_, i64>(2)? as u64 })).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn create_order(&mut self, row: &OrderRow, profile_type: Option<&str>) -> Result<OrderCreated> {
        let tx = self.connection.transaction().map_err(db)?;
        if let Some(existing) = tx.query_row(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE id = ?1"), [&row.id], order_from_row).optional().map_err(db)? {
            return Ok(OrderCreated::Exists(existing));
        }
        let profile = tx
            .query_row(
                &format!("SELECT {PROFILE_COLUMNS} FROM esim_profiles WHERE state = 'available' AND (?1 IS NULL OR profile_type = ?1) ORDER BY iccid LIMIT 1"),
                [profile_type],
                profile_from_row,
            )
            .optional()
            .map_err(db)?;
        let Some(mut profile) = profile else { return Ok(OrderCreated::NoProfile) };
        tx.execute("UPDATE esim_profiles SET state = 'allocated', updated_at = ?2 WHERE iccid = ?1", params![profile.iccid, row.created_at_micros]).map_err(db)?;
        tx.execute(
            "INSERT INTO esim_orders (id, status, iccid, subscription, document, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![row.id, row.status, profile.iccid, row.subscription, row.document, row.created_at_micros, row.updated_at_micros],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        profile.state = "allocated".into();
        Ok(OrderCreated::Created(profile))
    }

    fn update_order(&mut self, row: &OrderRow) -> Result<()> {
        self.connection
            .execute(
                "UPDATE esim_orders SET status = ?2, subscription = ?3, document = ?4, updated_at = ?5 WHERE id = ?1",
                params![row.id, row.status, row.subscription, row.document, row.updated_at_micros],
            )
            .map_err(db)?;
        Ok(())
    }

    fn order(&mut self, id: &str) -> Result<Option<OrderRow>> {
        self.connection.query_row(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE id = ?1"), [id], order_from_row).optional().map_err(db)
    }

    fn order_for_iccid(&mut self, iccid: &str) -> Result<Option<OrderRow>> {
        self.connection
            .query_row(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE iccid = ?1 ORDER BY created_at DESC LIMIT 1"), [iccid], order_from_row)
            .optional()
            .map_err(db)
    }

    fn clear_iccid(&mut self, subscription: &str) -> Result<()> {
        self.connection.execute("UPDATE subscriptions SET iccid = NULL WHERE id = ?1", [subscription]).map_err(db)?;
        Ok(())
    }

    fn pending_orders(&mut self) -> Result<Vec<OrderRow>> {
        let mut statement = self.connection.prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE status = 'pending' ORDER BY created_at")).map_err(db)?;
        let rows = statement.query_map([], order_from_row).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn set_profile_state(&mut self, iccid: &str, state: &str, eid: Option<&str>, updated_at_micros: i64) -> Result<bool> {
        let changed = self
            .connection
            .execute("UPDATE esim_profiles SET state = ?2, eid = COALESCE(?3, eid), updated_at = ?4 WHERE iccid = ?1", params![iccid, state, eid, updated_at_micros])
            .map_err(db)?;
        Ok(changed > 0)
    }

    fn load_subscriptions(&mut self) -> Result<Vec<SubscriptionRow>> {
        let mut statement = self
            .connection
            .prepare("SELECT id, iccid, imsi, msisdn, external_id, created_at FROM subscriptions ORDER BY rowid")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok(SubscriptionRow {
                    id: row.get(0)?,
                    identifiers: Identifiers { iccid: row.get(1)?, imsi: row.get(2)?, msisdn: row.get(3)?, external_id: row.get(4)? },
                    created_at_micros: row.get(5)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn subscription(&mut self, id: &str) -> Result<Option<SubscriptionRow>> {
        let mut statement = self.connection.prepare_cached("SELECT id, iccid, imsi, msisdn, external_id, created_at FROM subscriptions WHERE id = ?1").map_err(db)?;
        let mut rows = statement
            .query_map([id], |row| {
                Ok(SubscriptionRow {
                    id: row.get(0)?,
                    identifiers: Identifiers { iccid: row.get(1)?, imsi: row.get(2)?, msisdn: row.get(3)?, external_id: row.get(4)? },
                    created_at_micros: row.get(5)?,
                })
            })
            .map_err(db)?;
        rows.next().transpose().map_err(db)
    }

    fn load_events(&mut self, visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        self.load_events_after(0, visit)
    }

    fn load_events_after(&mut self, seq: i64, visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        let mut statement = self.connection.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq")).map_err(db)?;
        let mut rows = statement.query([seq]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            visit(event_from_row(row).map_err(db)?);
        }
        Ok(())
    }

    fn event_at_or_after(&mut self, seq: i64) -> Result<Option<(i64, i64)>> {
        self.connection
            .query_row("SELECT seq, applied_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1", [seq], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(db)
    }

    fn max_seq(&mut self) -> Result<i64> {
        self.connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0)).map_err(db)
    }

    fn count_events(&mut self, after: i64, upto: i64) -> Result<i64> {
        self.connection.query_row("SELECT count(*) FROM events WHERE seq > ?1 AND seq <= ?2", params![after, upto], |row| row.get(0)).map_err(db)
    }

    fn put_checkpoint_part(&mut self, upto_seq: i64, part: u32, data: &[u8]) -> Result<()> {
        self.connection.execute("INSERT OR REPLACE INTO checkpoint_parts (upto_seq, part, data) VALUES (?1, ?2, ?3)", params![upto_seq, part, data]).map_err(db)?;
        Ok(())
    }

    fn finish_checkpoint(&mut self, meta: &CheckpointMeta) -> Result<()> {
        let tx = self.connection.transaction().map_err(db)?;
        tx.execute(
            "INSERT OR REPLACE INTO checkpoints (upto_seq, format, parts, digest, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![meta.upto_seq, meta.format, meta.parts, meta.digest, meta.created_at_micros],
        )
        .map_err(db)?;
        // Keep this one and the newest before it.
        tx.execute("DELETE FROM checkpoints WHERE upto_seq < (SELECT MAX(upto_seq) FROM checkpoints WHERE upto_seq < ?1)", [meta.upto_seq]).map_err(db)?;
        tx.execute("DELETE FROM checkpoint_parts WHERE upto_seq NOT IN (SELECT upto_seq FROM checkpoints)", []).map_err(db)?;
        tx.commit().map_err(db)
    }

    fn checkpoints(&mut self) -> Result<Vec<CheckpointMeta>> {
        let mut statement = self.connection.prepare("SELECT upto_seq, format, parts, digest, created_at FROM checkpoints ORDER BY upto_seq DESC").map_err(db)?;
        let rows = statement
            .query_map([], |row| Ok(CheckpointMeta { upto_seq: row.get(0)?, format: row.get(1)?, parts: row.get(2)?, digest: row.get(3)?, created_at_micros: row.get(4)? }))
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn checkpoint_part(&mut self, upto_seq: i64, part: u32) -> Result<Option<Vec<u8>>> {
        self.connection.query_row("SELECT data FROM checkpoint_parts WHERE upto_seq = ?1 AND part = ?2", params![upto_seq, part], |row| row.get(0)).optional().map_err(db)
    }

    fn events_between(&mut self, subscription: &str, after: i64, upto: i64) -> Result<Vec<EventRow>> {
        // One read transaction that looks at the index first and the log
        // second: the log's snapshot is then at least as new as the index's,
        // so every indexed event is there to read. Past the index, the
        // short unindexed tail is scanned.
        let tx = self.connection.transaction().map_err(db)?;
        let indexed: i64 = tx.query_row("SELECT indexed_upto FROM ix.progress", [], |row| row.get(0)).map_err(db)?;
        let rows = {
            let mut statement = tx
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM ix.event_index WHERE subscription = ?1 AND seq > ?2 AND seq <= MIN(?3, ?4)) \
                     UNION ALL \
                     SELECT {EVENT_COLUMNS} FROM events WHERE seq > MAX(?2, ?4) AND seq <= ?3 AND subscription = ?1 \
                     ORDER BY seq"
                ))
                .map_err(db)?;
            let rows = statement.query_map(params![subscription, after, upto, indexed], event_from_row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?
        };
        tx.commit().map_err(db)?;
        Ok(rows)
    }

    fn find_keys(&mut self, wanted: &[(String, String)], since_seq: i64) -> Result<Vec<EventRow>> {
        // Each subscription's events in the window through the index, then
        // the unindexed tail once: no index on keys slows the commits.
        let mut by_subscription: std::collections::HashMap<&str, std::collections::HashSet<&str>> = std::collections::HashMap::new();
        for (subscription, key) in wanted {
            by_subscription.entry(subscription.as_str()).or_default().insert(key.as_str());
        }
        let tx = self.connection.transaction().map_err(db)?;
        let indexed: i64 = tx.query_row("SELECT indexed_upto FROM ix.progress", [], |row| row.get(0)).map_err(db)?;
        let mut found = Vec::new();
        {
            let mut statement = tx
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM ix.event_index WHERE subscription = ?1 AND seq >= ?2 AND seq <= ?3) AND key IS NOT NULL"
                ))
                .map_err(db)?;
            for (subscription, keys) in &by_subscription {
                let rows = statement.query_map(params![subscription, since_seq, indexed], event_from_row).map_err(db)?;
                for row in rows {
                    let row = row.map_err(db)?;
                    if row.key.as_deref().is_some_and(|k| keys.contains(k)) {
                        found.push(row);
                    }
                }
            }
            let mut tail = tx.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > MAX(?1, ?2 - 1) AND key IS NOT NULL")).map_err(db)?;
            let rows = tail.query_map(params![indexed, since_seq], event_from_row).map_err(db)?;
            for row in rows {
                let row = row.map_err(db)?;
                if by_subscription.get(row.subscription.as_str()).is_some_and(|keys| row.key.as_deref().is_some_and(|k| keys.contains(k))) {
                    found.push(row);
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(found)
    }

    fn retention_candidates(&mut self, upto_seq: i64) -> Result<Vec<(String, i64, i64)>> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT m.subscription, MAX(m.seq), COALESCE(MAX(f.seq), 0) FROM ledger_marks m LEFT JOIN ledger_floors f ON f.subscription = m.subscription \
                 WHERE m.seq <= ?1 GROUP BY m.subscription HAVING MAX(m.seq) > COALESCE(MAX(f.seq), 0) ORDER BY m.subscription",
            )
            .map_err(db)?;
        let rows = statement.query_map([upto_seq], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn archive(&mut self, archive: &Archive) -> Result<()> {
        let tx = self.connection.transaction().map_err(db)?;
        {
            let mut period = tx
                .prepare_cached(
                    "INSERT INTO archived_periods (subscription, period, starts, ends, lines, used_bytes, throttled_bytes, rejected_bytes, granted_bytes, carried_bytes, forfeited_bytes, fees_minor, charges_minor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     ON CONFLICT (subscription, starts) DO UPDATE SET ends = MAX(ends, excluded.ends), lines = lines + excluded.lines, \
                     used_bytes = used_bytes + excluded.used_bytes, throttled_bytes = throttled_bytes + excluded.throttled_bytes, rejected_bytes = rejected_bytes + excluded.rejected_bytes, \
                     granted_bytes = granted_bytes + excluded.granted_bytes, carried_bytes = carried_bytes + excluded.carried_bytes, forfeited_bytes = forfeited_bytes + excluded.forfeited_bytes, \
                     fees_minor = fees_minor + excluded.fees_minor, charges_minor = charges_minor + excluded.charges_minor",
                )
                .map_err(db)?;
            for p in &archive.periods {
                period
                    .execute(params![
                        p.subscription,
                        p.period,
                        p.starts_micros,
                        p.ends_micros,
                        p.lines,
                        p.used_bytes,
                        p.throttled_bytes,
                        p.rejected_bytes,
                        p.granted_bytes,
                        p.carried_bytes,
                        p.forfeited_bytes,
                        p.fees_minor,
                        p.charges_minor
                    ])
                    .map_err(db)?;
            }
            let mut floor = tx.prepare_cached("INSERT OR REPLACE INTO ledger_floors (subscription, seq) VALUES (?1, ?2)").map_err(db)?;
            let mut marks = tx.prepare_cached("DELETE FROM ledger_marks WHERE subscription = ?1 AND seq < ?2").map_err(db)?;
            for (subscription, seq) in &archive.floors {
                floor.execute(params![subscription, seq]).map_err(db)?;
                marks.execute(params![subscription, seq]).map_err(db)?;
            }
            let mut event = tx.prepare_cached("DELETE FROM events WHERE seq = ?1").map_err(db)?;
            for seq in &archive.seqs {
                event.execute([seq]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        // The index is derived: its entries for dropped events only cost
        // room, and go after the log's commit.
        let tx = self.connection.transaction().map_err(db)?;
        {
            let mut entry = tx.prepare_cached("DELETE FROM ix.event_index WHERE subscription = ?1 AND seq <= ?2").map_err(db)?;
            for (subscription, seq) in &archive.floors {
                entry.execute(params![subscription, seq]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn ledger_floor(&mut self, subscription: &str) -> Result<Option<i64>> {
        self.connection.prepare_cached("SELECT seq FROM ledger_floors WHERE subscription = ?1").map_err(db)?.query_row([subscription], |row| row.get(0)).optional().map_err(db)
    }

    fn ledger_floors(&mut self) -> Result<Vec<LedgerMark>> {
        let mut statement = self
            .connection
            .prepare("SELECT m.subscription, m.seq, m.lines, m.at, m.state FROM ledger_floors f JOIN ledger_marks m ON m.subscription = f.subscription AND m.seq = f.seq ORDER BY f.seq")
            .map_err(db)?;
        let rows = statement.query_map([], |row| Ok(LedgerMark { subscription: row.get(0)?, seq: row.get(1)?, lines: row.get(2)?, at_micros: row.get(3)?, state: row.get(4)? })).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn archived_periods(&mut self, subscription: &str) -> Result<Vec<PeriodTotals>> {
        let mut statement = self.connection.prepare_cached("SELECT subscription, period, starts, ends, lines, used_bytes, throttled_bytes, rejected_bytes, granted_bytes, carried_bytes, forfeited_bytes, fees_minor, charges_minor FROM archived_periods WHERE subscription = ?1 ORDER BY starts").map_err(db)?;
        let rows = statement
            .query_map([subscription], |row| {
                Ok(PeriodTotals {
                    subscription: row.get(0)?,
                    period: row.get(1)?,
                    starts_micros: row.get(2)?,
                    ends_micros: row.get(3)?,
                    lines: row.get(4)?,
                    used_bytes: row.get(5)?,
                    throttled_bytes: row.get(6)?,
                    rejected_bytes: row.get(7)?,
                    granted_bytes: row.get(8)?,
                    carried_bytes: row.get(9)?,
                    forfeited_bytes: row.get(10)?,
                    fees_minor: row.get(11)?,
                    charges_minor: row.get(12)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn put_ledger_marks(&mut self, marks: &[LedgerMark]) -> Result<()> {
        let tx = self.connection.transaction().map_err(db)?;
        {
            let mut insert = tx.prepare_cached("INSERT OR REPLACE INTO ledger_marks (subscription, seq, lines, at, state) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(db)?;
            for m in marks {
                insert.execute(params![m.subscription, m.seq, m.lines, m.at_micros, m.state]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn ledger_marks(&mut self, subscription: &str) -> Result<Vec<MarkMeta>> {
        let mut statement = self.connection.prepare_cached("SELECT seq, lines, at FROM ledger_marks WHERE subscription = ?1 ORDER BY seq").map_err(db)?;
        let rows = statement.query_map([subscription], |row| Ok(MarkMeta { seq: row.get(0)?, lines: row.get(1)?, at_micros: row.get(2)? })).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn ledger_mark(&mut self, subscription: &str, seq: i64) -> Result<Option<Vec<u8>>> {
        self.connection
            .prepare_cached("SELECT state FROM ledger_marks WHERE subscription = ?1 AND seq = ?2")
            .map_err(db)?
            .query_row(params![subscription, seq], |row| row.get(0))
            .optional()
            .map_err(db)
    }

    fn commit(&mut self, batch: &Batch) -> Result<()> {
        let tx = self.connection.transaction().map_err(db)?;
        {
            let mut insert_subscription = tx
                .prepare_cached("INSERT INTO subscriptions (id, iccid, imsi, msisdn, external_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(db)?;
            for s in &batch.subscriptions {
                let i = &s.identifiers;
                insert_subscription.execute(params![s.id, i.iccid, i.imsi, i.msisdn, i.external_id, s.created_at_micros]).map_err(db)?;
            }
            let mut insert_event = tx
                .prepare_cached(
                    "INSERT INTO events (subscription, applied_at, at, key, kind, plan_id, plan_version, bytes, country, grant_kind, expires, amount) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(db)?;
            for e in &batch.events {
                let c = Columns::of(&e.body);
                let (plan_id, plan_version, bytes, country, grant_kind, expires, amount) = (c.plan_id, c.plan_version, c.bytes, c.country, c.grant_kind, c.expires, c.amount);
                insert_event
                    .execute(params![
                        e.subscription,
                        e.applied_at_micros,
                        e.at_micros,
                        e.key,
                        e.body.name(),
                        plan_id,
                        plan_version,
                        bytes,
                        country,
                        grant_kind,
                        expires,
                        amount
                    ])
                    .map_err(db)?;
            }
            let mut insert_notification = tx
                .prepare_cached("INSERT INTO outbox (key, endpoint, payload, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT (key) DO NOTHING")
                .map_err(db)?;
            for n in &batch.notifications {
                insert_notification.execute(params![n.key, n.endpoint, n.payload, n.created_at_micros]).map_err(db)?;
            }
            if let Some(clock) = batch.clock_micros {
                tx.execute("INSERT INTO meta (name, value) VALUES ('clock', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value", [clock])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn setting(&mut self, name: &str) -> Result<Option<String>> {
        self.connection.query_row("SELECT value FROM settings WHERE name = ?1", [name], |row| row.get(0)).optional().map_err(db)
    }

    fn set_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.connection
            .execute("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value", [name, value])
            .map(drop)
            .map_err(db)
    }

    fn clock(&mut self) -> Result<Option<i64>> {
        self.connection.query_row("SELECT value FROM meta WHERE name = 'clock'", [], |row| row.get(0)).optional().map_err(db)
    }

    fn claim_deliveries(&mut self, endpoint: &str, claimer: &str, now_micros: i64, limit: usize, claim_until_micros: i64) -> Result<Vec<Delivery>> {
        let mut statement = self
            .connection
            .prepare_cached(
                "UPDATE outbox SET claimed_by = ?4, claimed_until = ?5 WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND endpoint = ?3 \
                 AND next_attempt_at <= ?1 AND claimed_until <= ?1 ORDER BY id LIMIT ?2) RETURNING id, key, endpoint, payload, attempts",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(params![now_micros, limit as i64, endpoint, claimer, claim_until_micros], |row| {
                Ok(Delivery { id: row.get(0)?, key: row.get(1)?, endpoint: row.get(2)?, payload: row.get(3)?, attempts: row.get(4)? })
            })
            .map_err(db)?;
        let mut due = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?;
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    fn release_claims(&mut self, claimer: &str) -> Result<u64> {
        let released = self
            .connection
            .execute("UPDATE outbox SET claimed_by = NULL, claimed_until = 0 WHERE claimed_by = ?1 AND state = 'pending'", params![claimer])
            .map_err(db)?;
        Ok(released as u64)
    }

    fn record_attempt(&mut self, id: i64, delivered: bool, next_attempt_micros: Option<i64>, outcome: &str) -> Result<()> {
        let state = if delivered { "delivered" } else if next_attempt_micros.is_some() { "pending" } else { "failed" };
        self.connection
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_attempt_at = ?3, last_outcome = ?4, claimed_by = NULL, claimed_until = 0 WHERE id = ?1",
                params![id, state, next_attempt_micros.unwrap_or(i64::MAX), outcome],
            )
            .map_err(db)?;
        Ok(())
    }

    fn backlog(&mut self) -> Result<u64> {
        self.connection.query_row("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", [], |row| row.get::<_, i64>(0)).map(|n| n as u64).map_err(db)
    }
}
