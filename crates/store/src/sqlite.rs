//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`,
//! so that a committed transaction survives a crash or power loss.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Batch, Delivery, EventBody, EventRow, Identifiers, PlanRow, Result, Store, StoreError, SubscriptionRow};

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
"#];

/// The subscription index of the event log is built behind the log, in
/// large batches: a random-order index maintained row by row in the commit
/// path costs most of the commit (every commit rewrites hundreds of index
/// pages). Reads look at the index and at the short unindexed tail.
const INDEX_BATCH: i64 = 100_000;

fn db(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

pub struct SqliteStore {
    connection: Connection,
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
        let mut store = SqliteStore { connection };
        store.migrate()?;
        Ok(store)
    }

    /// A second connection to the same file for reads that must not wait for
    /// the writer (WAL readers see the last committed state).
    pub fn open_reader(path: &Path) -> Result<SqliteStore> {
        let connection = Connection::open(path).map_err(db)?;
        connection.execute_batch("PRAGMA busy_timeout = 5000;").map_err(db)?;
        Ok(SqliteStore { connection })
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
            _ => Columns::default(),
        }
    }
}

const EVENT_COLUMNS: &str = "seq, subscription, applied_at, at, key, kind, plan_id, plan_version, bytes, country, grant_kind, expires";

impl Store for SqliteStore {
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

    fn load_events(&mut self, visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        let mut statement = self.connection.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")).map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            visit(event_from_row(row).map_err(db)?);
        }
        Ok(())
    }

    fn events_of(&mut self, subscription: &str) -> Result<Vec<EventRow>> {
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM event_index WHERE subscription = ?1) \
                 UNION ALL \
                 SELECT {EVENT_COLUMNS} FROM events WHERE seq > (SELECT value FROM meta WHERE name = 'indexed_upto') AND subscription = ?1 \
                 ORDER BY seq"
            ))
            .map_err(db)?;
        let rows = statement.query_map([subscription], event_from_row).map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
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
                    "INSERT INTO events (subscription, applied_at, at, key, kind, plan_id, plan_version, bytes, country, grant_kind, expires) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(db)?;
            for e in &batch.events {
                let c = Columns::of(&e.body);
                let (plan_id, plan_version, bytes, country, grant_kind, expires) = (c.plan_id, c.plan_version, c.bytes, c.country, c.grant_kind, c.expires);
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
                        expires
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

    fn clock(&mut self) -> Result<Option<i64>> {
        self.connection.query_row("SELECT value FROM meta WHERE name = 'clock'", [], |row| row.get(0)).optional().map_err(db)
    }

    fn maintain(&mut self) -> Result<bool> {
        let tx = self.connection.transaction().map_err(db)?;
        let upto: i64 = tx.query_row("SELECT value FROM meta WHERE name = 'indexed_upto'", [], |row| row.get(0)).map_err(db)?;
        let last: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0)).map_err(db)?;
        if last <= upto {
            return Ok(false);
        }
        let until = last.min(upto + INDEX_BATCH);
        tx.execute("INSERT INTO event_index (subscription, seq) SELECT subscription, seq FROM events WHERE seq > ?1 AND seq <= ?2", params![upto, until])
            .map_err(db)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'indexed_upto'", [until]).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(until < last)
    }

    fn due_deliveries(&mut self, now_micros: i64, limit: usize) -> Result<Vec<Delivery>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT id, key, endpoint, payload, attempts FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2")
            .map_err(db)?;
        let rows = statement
            .query_map(params![now_micros, limit as i64], |row| {
                Ok(Delivery { id: row.get(0)?, key: row.get(1)?, endpoint: row.get(2)?, payload: row.get(3)?, attempts: row.get(4)? })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    fn record_attempt(&mut self, id: i64, delivered: bool, next_attempt_micros: Option<i64>, outcome: &str) -> Result<()> {
        let state = if delivered { "delivered" } else if next_attempt_micros.is_some() { "pending" } else { "failed" };
        self.connection
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_attempt_at = ?3, last_outcome = ?4 WHERE id = ?1",
                params![id, state, next_attempt_micros.unwrap_or(i64::MAX), outcome],
            )
            .map_err(db)?;
        Ok(())
    }

    fn backlog(&mut self) -> Result<u64> {
        self.connection.query_row("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", [], |row| row.get::<_, i64>(0)).map(|n| n as u64).map_err(db)
    }
}
