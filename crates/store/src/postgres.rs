//! The scale-out store: PostgreSQL, with its own migrations. Commits are
//! durable when they return (`synchronous_commit` as the server has it, on by
//! default). Each batch's events go in by binary `COPY` (their seqs taken
//! first), not one statement per row; the other tables' rows with one
//! `INSERT ... SELECT FROM UNNEST(...)` each.

use postgres::{Client, NoTls};

use crate::{Batch, CheckpointMeta, Delivery, EventBody, EventRow, Identifiers, Archive, LedgerMark, MarkMeta, OrderCreated, PeriodTotals, OrderRow, PlanRow, ProfileCount, ProfileRow, Result, Store, StoreError, SubscriptionRow};

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE plans (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    document TEXT NOT NULL,
    position BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    iccid TEXT UNIQUE,
    imsi TEXT UNIQUE,
    msisdn TEXT UNIQUE,
    external_id TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    ordinal BIGSERIAL
);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    subscription TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    at BIGINT NOT NULL,
    key TEXT,
    kind TEXT NOT NULL,
    plan_id TEXT,
    plan_version BIGINT,
    bytes BIGINT,
    country TEXT,
    grant_kind TEXT,
    expires BIGINT
);
CREATE INDEX events_by_subscription ON events (subscription, seq);
CREATE UNIQUE INDEX events_by_key ON events (subscription, key) WHERE key IS NOT NULL;
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
"#, r#"
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    last_outcome TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
"#, r#"
DROP INDEX events_by_key;
DROP INDEX events_by_subscription;
CREATE UNIQUE INDEX events_by_subscription_key ON events (subscription, key);
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
    updated_at BIGINT NOT NULL
);
CREATE INDEX esim_profiles_by_state ON esim_profiles (state, iccid);
"#, r#"
ALTER TABLE events ADD COLUMN amount BIGINT;
CREATE TABLE esim_orders (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    iccid TEXT,
    subscription TEXT,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX esim_orders_by_status ON esim_orders (status, created_at);
CREATE INDEX esim_orders_by_iccid ON esim_orders (iccid, created_at);
"#, r#"
CREATE TABLE checkpoint_parts (
    upto_seq BIGINT NOT NULL,
    part BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (upto_seq, part)
);
CREATE TABLE checkpoints (
    upto_seq BIGINT PRIMARY KEY,
    format BIGINT NOT NULL,
    parts BIGINT NOT NULL,
    digest TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"#, r#"
CREATE TABLE ledger_marks (
    subscription TEXT NOT NULL,
    seq BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    at BIGINT NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (subscription, seq)
);
CREATE INDEX events_by_subscription_seq ON events (subscription, seq);
"#, r#"
CREATE TABLE ledger_floors (
    subscription TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
CREATE TABLE archived_periods (
    subscription TEXT NOT NULL,
    period BIGINT NOT NULL,
    starts BIGINT NOT NULL,
    ends BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    used_bytes BIGINT NOT NULL,
    throttled_bytes BIGINT NOT NULL,
    rejected_bytes BIGINT NOT NULL,
    granted_bytes BIGINT NOT NULL,
    carried_bytes BIGINT NOT NULL,
    forfeited_bytes BIGINT NOT NULL,
    fees_minor BIGINT NOT NULL,
    charges_minor BIGINT NOT NULL,
    PRIMARY KEY (subscription, starts)
);
"#, r#"
-- One row per shard (crate::SHARDS of them): who holds it, until when (by
-- the database's clock only), and the epoch that fences its commits.
CREATE TABLE shard_lease (
    shard_no INTEGER PRIMARY KEY,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
INSERT INTO shard_lease (shard_no) SELECT generate_series(0, 255);
"#, r#"
-- The nodes of a cluster: each says it is alive until seen_until (by the
-- database's clock); the live ones share the shards.
CREATE TABLE cluster_node (
    node TEXT PRIMARY KEY,
    seen_until TIMESTAMPTZ NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
"#, r#"
-- Each subscription's shard (crate::shard_of of its id), so that a node
-- taking a shard over reads only that shard's subscriptions and events.
-- Rows stored before this column are filled in when the store opens.
ALTER TABLE subscriptions ADD COLUMN shard INTEGER;
CREATE INDEX subscriptions_by_shard ON subscriptions (shard, id);
"#, r#"
-- Nodes of a cluster read each other's new subscriptions by ordinal.
CREATE INDEX subscriptions_by_ordinal ON subscriptions (ordinal);
"#, r#"
-- A sender claims the deliveries it is about to attempt, so that the
-- senders of several nodes never post the same one at once.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
"#, r#"
-- The cluster's audit: every epoch granted, and the epochs each fenced
-- commit was made under, numbered from one sequence. A commit is stale if
-- its epoch of a shard was not granted before it, or a later epoch was.
CREATE SEQUENCE cluster_audit_seq;
CREATE TABLE lease_grants (
    seq BIGINT PRIMARY KEY DEFAULT nextval('cluster_audit_seq'),
    shard_no INTEGER NOT NULL,
    epoch BIGINT NOT NULL,
    owner TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX lease_grants_by_shard ON lease_grants (shard_no, epoch);
CREATE TABLE fenced_commits (
    seq BIGINT PRIMARY KEY DEFAULT nextval('cluster_audit_seq'),
    shards INTEGER[] NOT NULL,
    epochs BIGINT[] NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
"#, r#"
-- The log's subscription index is built behind the log (see
-- `EventIndexer`): a commit appends its events' (subscription, seq) to
-- event_queue, a heap without indexes, and the indexer moves them into
-- event_index in large sorted batches. Two random-order indexes kept row by
-- row in the commit path cost most of each commit. Keys are checked by the
-- engine (and, for old ones, through the index), not by a unique index.
CREATE TABLE event_queue (subscription TEXT NOT NULL, seq BIGINT NOT NULL);
ALTER TABLE event_queue SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000);
CREATE TABLE event_index (subscription TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (subscription, seq));
INSERT INTO event_index (subscription, seq) SELECT subscription, seq FROM events ORDER BY subscription, seq;
DROP INDEX events_by_subscription_key;
DROP INDEX events_by_subscription_seq;
"#, r#"
-- A commit names its events to the indexer by one row, the least and the
-- greatest seq it wrote, rather than a queue row per event: the indexer
-- reads the events of each range by their key. Ranges of two nodes' commits
-- may overlap (their seqs interleave); a row is indexed once whichever
-- range brings it (ON CONFLICT DO NOTHING), and reads take each seq once.
CREATE TABLE event_pending (lo BIGINT PRIMARY KEY, hi BIGINT NOT NULL);
ALTER TABLE event_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
INSERT INTO event_index (subscription, seq) SELECT subscription, seq FROM event_queue ORDER BY subscription, seq ON CONFLICT DO NOTHING;
DROP TABLE event_queue;
"#, r#"
-- The index is keyed by a 64-bit hash of the subscription id
-- (hashtextextended(id, 0), the hash PostgreSQL's hash partitioning keeps
-- stable) rather than by the text: comparing two integers is cheaper than
-- comparing two strings, and the indexer's inserts are most of its work.
-- Two ids may share a hash; every read checks the event's subscription.
CREATE TABLE event_index_hashed (subscription_hash BIGINT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (subscription_hash, seq));
INSERT INTO event_index_hashed (subscription_hash, seq) SELECT hashtextextended(subscription, 0), seq FROM event_index ORDER BY 1, 2;
DROP TABLE event_index;
ALTER TABLE event_index_hashed RENAME TO event_index;
ALTER INDEX event_index_hashed_pkey RENAME TO event_index_pkey;
ANALYZE event_index;
"#, r#"
-- A commit takes its events' seqs in blocks of 64 (see SEQ_BLOCK): one
-- nextval a block rather than one an event. Each value the sequence gives
-- starts a block no one else is given, so seqs stay unique and grow with
-- the time they are taken; a commit leaves the rest of its last block
-- unused (seqs have gaps, as rolled-back commits always left).
-- A commit's event_pending rows are now the runs of its blocks, so no two
-- commits' ranges overlap and the indexer inserts without ON CONFLICT.
ALTER SEQUENCE events_seq_seq INCREMENT BY 64;
"#];

const PROFILE_COLUMNS: &str = "iccid, profile_type, imsi, msisdn, state, eid, matching_id, updated_at";

fn profile_from_row(row: &postgres::Row) -> ProfileRow {
    ProfileRow {
        iccid: row.get(0),
        profile_type: row.get(1),
        imsi: row.get(2),
        msisdn: row.get(3),
        state: row.get(4),
        eid: row.get(5),
        matching_id: row.get(6),
        updated_at_micros: row.get(7),
    }
}

const ORDER_COLUMNS: &str = "id, status, iccid, subscription, document, created_at, updated_at";

fn order_from_row(row: &postgres::Row) -> OrderRow {
    OrderRow {
        id: row.get(0),
        status: row.get(1),
        iccid: row.get(2),
        subscription: row.get(3),
        document: row.get(4),
        created_at_micros: row.get(5),
        updated_at_micros: row.get(6),
    }
}

/// Rows in PostgreSQL's binary `COPY` format, encoded straight into one
/// buffer: a generic row writer's per-value type checks and dispatch cost
/// more than the copy itself.
struct CopyRows {
    buf: Vec<u8>,
}

impl CopyRows {
    fn with_capacity(bytes: usize) -> CopyRows {
        let mut buf = Vec::with_capacity(bytes + 32);
        // Signature, flags (no OIDs), header extension length.
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        CopyRows { buf }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn int8(&mut self, value: Option<i64>) {
        match value {
            Some(v) => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => {
                self.buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
                self.buf.extend_from_slice(v.as_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    /// Ends the rows and sends them with `statement` (a `COPY ... FROM
    /// STDIN BINARY`).
    fn send(mut self, tx: &mut postgres::Transaction<'_>, statement: &str) -> Result<u64> {
        use std::io::Write as _;
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        let mut sink = tx.copy_in(statement).map_err(db)?;
        sink.write_all(&self.buf).map_err(|e| StoreError(format!("postgres: sending rows: {e}")))?;
        sink.finish().map_err(db)
    }
}

pub(crate) fn db(error: postgres::Error) -> StoreError {
    // The server's own message says what failed ("db error" alone does not);
    // neither it nor the driver's text holds a password.
    match error.as_db_error() {
        Some(server) => StoreError(format!("postgres: {} ({})", server.message(), server.code().code())),
        None => StoreError(format!("postgres: {error}")),
    }
}

pub struct PostgresStore {
    client: Client,
    /// How to connect again when the connection broke (the server
    /// restarted, or ended this session): the server's URL, and the
    /// statements that set a session up (the schema, timeouts).
    base: String,
    setup: String,
    /// The writer's indexer, stopped when the writer is dropped.
    indexer: Option<EventIndexer>,
}

/// Event seqs a commit takes with one `nextval` (the sequence's increment,
/// set by a migration): a commit of n events takes n / 64 rounded up.
const SEQ_BLOCK: i64 = 64;

/// Events the indexer brings into `event_index` at once (the seqs its
/// commit ranges span; one range, however large, at the least), sorted.
const INDEX_BATCH: i64 = 200_000;

/// Commit ranges the indexer looks at in one step.
const INDEX_RANGES: i64 = 4096;

/// Builds the log's subscription index behind the commits, on a thread and
/// a connection of its own: each commit leaves a row in `event_pending`
/// (its least and greatest seq), and the indexer brings those ranges'
/// events into `event_index` and deletes the rows (one transaction, so each
/// event is always found through the one or the other), up to
/// [`INDEX_BATCH`] seqs at a time. Caught up, it looks every 250 ms; behind
/// by less than a batch, it pauses as long as the step took (at most half a
/// core of PostgreSQL's); further behind, it does not pause. Several writers
/// (the nodes of a cluster) each run one: they take disjoint ranges (`SKIP
/// LOCKED`). Reads look at both.
struct EventIndexer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Seqs waiting in pending ranges, as the indexer last saw.
    lag: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl EventIndexer {
    fn start(base: String, setup: String) -> Result<EventIndexer> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lag = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut store = PostgresStore { client: Client::connect(&base, NoTls).map_err(db)?, base, setup, indexer: None };
        store.client.batch_execute(&store.setup.clone()).map_err(db)?;
        let (stopped, behind) = (stop.clone(), lag.clone());
        std::thread::Builder::new()
            .name("event-indexer".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = std::time::Instant::now();
                    match store.index_step() {
                        Ok(moved) => {
                            let pause = if moved == 0 {
                                behind.store(0, std::sync::atomic::Ordering::Relaxed);
                                std::time::Duration::from_millis(250)
                            } else if moved < INDEX_BATCH as u64 {
                                behind.store(moved, std::sync::atomic::Ordering::Relaxed);
                                started.elapsed().max(std::time::Duration::from_millis(50))
                            } else {
                                behind.store(store.queued().unwrap_or(moved), std::sync::atomic::Ordering::Relaxed);
                                std::time::Duration::ZERO
                            };
                            std::thread::sleep(pause);
                        }
                        Err(error) => {
                            eprintln!("rollover: the event indexer failed a step: {error}; retrying");
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                    }
                }
            })
            .map_err(|e| StoreError(format!("cannot start the event indexer: {e}")))?;
        Ok(EventIndexer { stop, lag })
    }
}

impl Drop for EventIndexer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The URL with an `application_name` naming the schema, unless it names
/// one: an operator (and the cluster test) can tell each store's sessions
/// apart in `pg_stat_activity`.
fn named(url: &str, schema: &str) -> String {
    if url.contains("application_name=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name=rollover_{schema}")
}

/// Splits our own `schema=NAME` parameter off a `postgres://` URL (the
/// driver does not know it). The default schema is `rollover`.
pub(crate) fn split_schema(url: &str) -> Result<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut schema = "rollover".to_string();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = name.to_string(),
            None => rest.push(pair),
        }
    }
    if schema.is_empty() || schema.len() > 63 || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(StoreError(format!("schema {schema:?}: use 1 to 63 characters of a-z, 0-9 and _")));
    }
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, schema))
}

/// How long a new writer waits for the lock of one that just went away.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl PostgresStore {
    /// Connects, creates the schema if needed and brings it up to date.
    pub fn open(url: &str) -> Result<PostgresStore> {
        let (url, schema) = split_schema(url)?;
        let url = named(&url, &schema);
        let mut client = Client::connect(&url, NoTls).map_err(db)?;
        // Nodes of a cluster start together: one creates and migrates the
        // schema while the others wait (a lock named after the schema, for
        // the transaction only).
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('rollover migrate {schema}', 0)); CREATE SCHEMA IF NOT EXISTS {schema}; COMMIT; SET search_path TO {schema};"
            ))
            .map_err(db)?;
        let mut store = PostgresStore { client, base: url, setup: format!("SET search_path TO {schema};"), indexer: None };
        store.migrate()?;
        store.fill_shards()?;
        Ok(store)
    }

    /// Sets the shard of subscriptions stored before the `shard` column.
    fn fill_shards(&mut self) -> Result<()> {
        loop {
            let rows = self.conn()?.query("SELECT id FROM subscriptions WHERE shard IS NULL LIMIT 10000", &[]).map_err(db)?;
            if rows.is_empty() {
                return Ok(());
            }
            let ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            let shards: Vec<i32> = ids.iter().map(|id| crate::shard_of(id) as i32).collect();
            self.conn()?
                .execute("UPDATE subscriptions s SET shard = u.shard FROM UNNEST($1::text[], $2::int4[]) AS u(id, shard) WHERE s.id = u.id", &[&ids, &shards])
                .map_err(db)?;
        }
    }

    /// Opens the store as one writer of a cluster: no single-writer lock,
    /// since every commit is fenced by its shards' epochs instead. A commit
    /// holds its shards' lease rows (`FOR KEY SHARE`) until it ends, so a writer
    /// paused inside one (SIGSTOP, a VM stall) would hold up every takeover
    /// of them: the server ends a transaction left idle for `idle`, and the
    /// paused writer finds its connection closed when it wakes. (Paused in
    /// the middle of a statement, its transaction is active, not idle: see
    /// [`crate::Leases::acquire`].)
    pub fn open_cluster_writer(url: &str, idle: std::time::Duration) -> Result<PostgresStore> {
        let mut store = PostgresStore::open(url)?;
        store.set_up(&format!("SET idle_in_transaction_session_timeout = {}", idle.as_millis().max(1)))?;
        store.indexer = Some(EventIndexer::start(store.base.clone(), store.setup.clone())?);
        Ok(store)
    }

    /// Opens the store as its only writer: a session advisory lock named
    /// after the schema, held by this connection while it lives, so that a
    /// second `rollover serve` on the same schema is refused.
    pub fn open_writer(url: &str) -> Result<PostgresStore> {
        let (_, schema) = split_schema(url)?;
        let mut store = PostgresStore::open(url)?;
        let key = format!("rollover writer {schema}");
        // A writer killed a moment ago may still hold the lock until its
        // backend notices the closed connection: wait a little for that.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut taken = false;
        while !taken {
            taken = store.conn()?.query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&key]).map_err(db)?.get(0);
            if !taken && std::time::Instant::now() >= deadline {
                break;
            }
            if !taken {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        if !taken {
            return Err(StoreError(format!(
                "schema {schema} is in use by another rollover process (it holds the advisory lock \"{key}\"); stop it first, or give this one another schema"
            )));
        }
        store.indexer = Some(EventIndexer::start(store.base.clone(), store.setup.clone())?);
        Ok(store)
    }

    /// A second connection for reads beside the writer.
    pub fn open_reader(url: &str) -> Result<PostgresStore> {
        let (url, schema) = split_schema(url)?;
        let (base, setup) = (named(&url, &schema), format!("SET search_path TO {schema};"));
        let mut client = Client::connect(&base, NoTls).map_err(db)?;
        client.batch_execute(&setup).map_err(db)?;
        Ok(PostgresStore { client, base, setup, indexer: None })
    }

    /// Runs `statement` (`$1` the seq to read after) page by page, visiting
    /// every event in `seq` order.
    fn visit_pages(&mut self, statement: &postgres::Statement, mut after: i64, visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        loop {
            let rows = self.conn()?.query(statement, &[&after]).map_err(db)?;
            for row in &rows {
                let event = event_from_row(row)?;
                after = event.seq;
                visit(event);
            }
            if rows.len() < PAGE {
                return Ok(());
            }
        }
    }

    /// The connection, made again first if it broke: a store outlives a
    /// restart of its server (the call that found it broken failed; the
    /// next one reconnects).
    pub(crate) fn conn(&mut self) -> Result<&mut Client> {
        if self.client.is_closed() {
            let mut client = Client::connect(&self.base, NoTls).map_err(db)?;
            client.batch_execute(&self.setup).map_err(db)?;
            self.client = client;
        }
        Ok(&mut self.client)
    }

    /// Indexes the events of pending commit ranges, oldest first, up to
    /// [`INDEX_BATCH`] seqs (at least one range), and deletes those ranges;
    /// answers how many seqs they spanned. Ranges do not overlap (each is
    /// a run of one commit's seq blocks), so each event comes once and a
    /// plain insert does: `ON CONFLICT` costs a probe, a lock and a WAL
    /// record an event. Should a seq come twice all the same (ranges that
    /// a version before the blocks wrote could overlap), the step is done
    /// again with `ON CONFLICT DO NOTHING`.
    fn index_step(&mut self) -> Result<u64> {
        match index_ranges(self.conn()?, false) {
            Err(error) if error.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => index_ranges(self.conn()?, true).map_err(db),
            other => other.map_err(db),
        }
    }

    /// How many seqs the pending commit ranges span (a bound on the events
    /// waiting for the index).
    fn queued(&mut self) -> Result<u64> {
        let row = self.conn()?.query_one("SELECT COALESCE(sum(hi - lo + 1), 0)::int8 FROM event_pending", &[]).map_err(db)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Runs `sql` to set this session up, now and after every reconnection.
    pub(crate) fn set_up(&mut self, sql: &str) -> Result<()> {
        self.conn()?.batch_execute(sql).map_err(db)?;
        self.setup.push_str(sql);
        self.setup.push(';');
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        let schema: String = tx.query_one("SELECT current_schema()", &[]).map_err(db)?.get(0);
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('rollover migrate ' || $1, 0))", &[&schema]).map_err(db)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY); LOCK TABLE schema_migrations;").map_err(db)?;
        let applied: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).map_err(db)?.get(0);
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            tx.batch_execute(migration).map_err(db)?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(index as i64 + 1)]).map_err(db)?;
        }
        tx.commit().map_err(db)
    }
}

/// One indexer step on `client` (see `PostgresStore::index_step`);
/// `overlapping` tolerates a seq that is indexed already.
fn index_ranges(client: &mut Client, overlapping: bool) -> std::result::Result<u64, postgres::Error> {
    let mut tx = client.transaction()?;
    let rows = tx.query("SELECT lo, hi FROM event_pending ORDER BY lo LIMIT $1 FOR UPDATE SKIP LOCKED", &[&INDEX_RANGES])?;
    let (mut lo, mut hi, mut spanned) = (Vec::new(), Vec::new(), 0i64);
    for row in &rows {
        let (from, to): (i64, i64) = (row.get(0), row.get(1));
        if !lo.is_empty() && spanned + (to - from + 1) > INDEX_BATCH {
            break;
        }
        spanned += to - from + 1;
        lo.push(from);
        hi.push(to);
    }
    if lo.is_empty() {
        return Ok(0);
    }
    let conflicts = if overlapping { " ON CONFLICT DO NOTHING" } else { "" };
    tx.execute(
        &format!(
            "INSERT INTO event_index (subscription_hash, seq) SELECT hashtextextended(e.subscription, 0), e.seq FROM UNNEST($1::int8[], $2::int8[]) AS r (lo, hi) \
             JOIN events e ON e.seq BETWEEN r.lo AND r.hi ORDER BY 1, 2{conflicts}"
        ),
        &[&lo, &hi],
    )?;
    tx.execute("DELETE FROM event_pending WHERE lo = ANY($1)", &[&lo])?;
    tx.commit()?;
    Ok(spanned as u64)
}

fn event_from_row(row: &postgres::Row) -> Result<EventRow> {
    let kind: String = row.get(5);
    let plan = || -> (String, u32) { (row.get(6), row.get::<_, i64>(7) as u32) };
    let body = match kind.as_str() {
        "purchase" => {
            let (plan_id, plan_version) = plan();
            EventBody::Purchase { plan_id, plan_version }
        }
        "change_plan" => {
            let (plan_id, plan_version) = plan();
            EventBody::ChangePlan { plan_id, plan_version }
        }
        "usage" => EventBody::Usage { bytes: row.get::<_, i64>(8) as u64, country: row.get(9) },
        "grant" => EventBody::Grant { kind: row.get(10), bytes: row.get::<_, i64>(8) as u64, expires_micros: row.get(11) },
        "install" => EventBody::Install,
        "first_use" => EventBody::FirstUse,
        "suspend" => EventBody::Suspend,
        "resume" => EventBody::Resume,
        "cancel" => EventBody::Cancel,
        // A network note's text lives in the grant-kind column.
        "network" => EventBody::Network { note: row.get(10) },
        // An add-on's id is in the plan column, its price in the amount.
        "addon" => EventBody::Addon {
            addon: row.get(6),
            kind: row.get(10),
            bytes: row.get::<_, i64>(8) as u64,
            expires_micros: row.get(11),
            price_minor: row.get(12),
        },
        "refund" => EventBody::Refund { minor: row.get(12), reason: row.get(10) },
        other => return Err(StoreError(format!("unknown event kind {other:?} in the store"))),
    };
    Ok(EventRow { seq: row.get(0), subscription: row.get(1), applied_at_micros: row.get(2), at_micros: row.get(3), key: row.get(4), body })
}

/// Events read in one page of a long read (start-up, a shard's load).
const PAGE: usize = 10_000;

const EVENT_COLUMNS: &str = "seq, subscription, applied_at, at, key, kind, plan_id, plan_version, bytes, country, grant_kind, expires, amount";

impl Store for PostgresStore {
    fn index_lag(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        self.indexer.as_ref().map(|indexer| indexer.lag.clone())
    }

    fn plan_count(&mut self) -> Result<usize> {
        Ok(self.conn()?.query_one("SELECT count(*) FROM plans", &[]).map_err(db)?.get::<_, i64>(0) as usize)
    }

    fn load_plans(&mut self) -> Result<Vec<PlanRow>> {
        let rows = self.conn()?.query("SELECT id, version, document, position, created_at FROM plans ORDER BY created_at, id, version", &[]).map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| PlanRow {
                id: row.get(0),
                version: row.get::<_, i64>(1) as u32,
                document: row.get(2),
                position: row.get::<_, i64>(3) as u32,
                created_at_micros: row.get(4),
            })
            .collect())
    }

    fn insert_plans(&mut self, rows: &[PlanRow]) -> Result<()> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        for row in rows {
            tx.execute(
                "INSERT INTO plans (id, version, document, position, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&row.id, &(row.version as i64), &row.document, &(row.position as i64), &row.created_at_micros],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    fn load_subscriptions(&mut self) -> Result<Vec<SubscriptionRow>> {
        let rows = self.conn()?.query("SELECT id, iccid, imsi, msisdn, external_id, created_at FROM subscriptions ORDER BY ordinal", &[]).map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| SubscriptionRow {
                id: row.get(0),
                identifiers: Identifiers { iccid: row.get(1), imsi: row.get(2), msisdn: row.get(3), external_id: row.get(4) },
                created_at_micros: row.get(5),
            })
            .collect())
    }

    fn subscriptions_after(&mut self, after: i64) -> Result<Vec<(i64, SubscriptionRow)>> {
        let rows = self.conn()?.query("SELECT ordinal, id, iccid, imsi, msisdn, external_id, created_at FROM subscriptions WHERE ordinal > $1 ORDER BY ordinal", &[&after]).map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| {
                let identifiers = Identifiers { iccid: row.get(2), imsi: row.get(3), msisdn: row.get(4), external_id: row.get(5) };
                (row.get(0), SubscriptionRow { id: row.get(1), identifiers, created_at_micros: row.get(6) })
            })
            .collect())
    }

    fn subscription(&mut self, id: &str) -> Result<Option<SubscriptionRow>> {
        let rows = self.conn()?.query("SELECT id, iccid, imsi, msisdn, external_id, created_at FROM subscriptions WHERE id = $1", &[&id]).map_err(db)?;
        Ok(rows.first().map(|row| SubscriptionRow {
            id: row.get(0),
            identifiers: Identifiers { iccid: row.get(1), imsi: row.get(2), msisdn: row.get(3), external_id: row.get(4) },
            created_at_micros: row.get(5),
        }))
    }

    fn insert_profiles(&mut self, rows: &[ProfileRow]) -> Result<Vec<String>> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        let insert = tx
            .prepare("INSERT INTO esim_profiles (iccid, profile_type, imsi, msisdn, state, eid, matching_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (iccid) DO NOTHING")
            .map_err(db)?;
        let mut present = Vec::new();
        for row in rows {
            let added = tx.execute(&insert, &[&row.iccid, &row.profile_type, &row.imsi, &row.msisdn, &row.state, &row.eid, &row.matching_id, &row.updated_at_micros]).map_err(db)?;
            if added == 0 {
                present.push(row.iccid.clone());
            }
        }
        tx.commit().map_err(db)?;
        Ok(present)
    }

    fn profiles(&mut self, state: Option<&str>, limit: usize, offset: usize) -> Result<(Vec<ProfileRow>, u64)> {
        let (limit, offset) = (limit.min(i64::MAX as usize) as i64, offset.min(i64::MAX as usize) as i64);
        let total: i64 = self.conn()?.query_one("SELECT COUNT(*) FROM esim_profiles WHERE $1::TEXT IS NULL OR state = $1", &[&state]).map_err(db)?.get(0);
        let rows = self
            .conn()?
            .query(&format!("SELECT {PROFILE_COLUMNS} FROM esim_profiles WHERE $1::TEXT IS NULL OR state = $1 ORDER BY iccid LIMIT $2 OFFSET $3"), &[&state, &limit, &offset])
            .map_err(db)?;
        Ok((rows.iter().map(profile_from_row).collect(), total as u64))
    }

    fn profile(&mut self, iccid: &str) -> Result<Option<ProfileRow>> {
        let rows = self.conn()?.query(&format!("SELECT {PROFILE_COLUMNS} FROM esim_profiles WHERE iccid = $1"), &[&iccid]).map_err(db)?;
        Ok(rows.first().map(profile_from_row))
    }

    fn profile_counts(&mut self) -> Result<Vec<ProfileCount>> {
        let rows = self.conn()?.query("SELECT state, profile_type, COUNT(*) FROM esim_profiles GROUP BY state, profile_type ORDER BY state, profile_type NULLS FIRST", &[]).map_err(db)?;
        Ok(rows.iter().map(|row| ProfileCount { state: row.get(0), profile_type: row.get(1), count: row.get::<_, i64>(2) as u64 }).collect())
    }

    fn create_order(&mut self, row: &OrderRow, profile_type: Option<&str>) -> Result<OrderCreated> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        if let Some(existing) = tx.query_opt(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE id = $1"), &[&row.id]).map_err(db)? {
            return Ok(OrderCreated::Exists(order_from_row(&existing)));
        }
        // SKIP LOCKED: two nodes ordering at once take different profiles.
        let profile = tx
            .query_opt(
                &format!(
                    "SELECT {PROFILE_COLUMNS} FROM esim_profiles WHERE state = 'available' AND ($1::text IS NULL OR profile_type = $1) \
                     ORDER BY iccid LIMIT 1 FOR UPDATE SKIP LOCKED"
                ),
                &[&profile_type],
            )
            .map_err(db)?;
        let Some(profile) = profile else { return Ok(OrderCreated::NoProfile) };
        let mut profile = profile_from_row(&profile);
        tx.execute("UPDATE esim_profiles SET state = 'allocated', updated_at = $2 WHERE iccid = $1", &[&profile.iccid, &row.created_at_micros]).map_err(db)?;
        let inserted = tx
            .execute(
                "INSERT INTO esim_orders (id, status, iccid, subscription, document, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO NOTHING",
                &[&row.id, &row.status, &profile.iccid, &row.subscription, &row.document, &row.created_at_micros, &row.updated_at_micros],
            )
            .map_err(db)?;
        if inserted == 0 {
            // Another node stored the same id first: keep its order.
            drop(tx);
            return Ok(self.order(&row.id)?.map_or(OrderCreated::NoProfile, OrderCreated::Exists));
        }
        tx.commit().map_err(db)?;
        profile.state = "allocated".into();
        Ok(OrderCreated::Created(profile))
    }

    fn update_order(&mut self, row: &OrderRow) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE esim_orders SET status = $2, subscription = $3, document = $4, updated_at = $5 WHERE id = $1",
                &[&row.id, &row.status, &row.subscription, &row.document, &row.updated_at_micros],
            )
            .map_err(db)?;
        Ok(())
    }

    fn order(&mut self, id: &str) -> Result<Option<OrderRow>> {
        Ok(self.conn()?.query_opt(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE id = $1"), &[&id]).map_err(db)?.map(|row| order_from_row(&row)))
    }

    fn order_for_iccid(&mut self, iccid: &str) -> Result<Option<OrderRow>> {
        let row = self.conn()?.query_opt(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE iccid = $1 ORDER BY created_at DESC LIMIT 1"), &[&iccid]).map_err(db)?;
        Ok(row.map(|row| order_from_row(&row)))
    }

    fn clear_iccid(&mut self, subscription: &str) -> Result<()> {
        self.conn()?.execute("UPDATE subscriptions SET iccid = NULL WHERE id = $1", &[&subscription]).map_err(db)?;
        Ok(())
    }

    fn pending_orders(&mut self) -> Result<Vec<OrderRow>> {
        let rows = self.conn()?.query(&format!("SELECT {ORDER_COLUMNS} FROM esim_orders WHERE status = 'pending' ORDER BY created_at"), &[]).map_err(db)?;
        Ok(rows.iter().map(order_from_row).collect())
    }

    fn set_profile_state(&mut self, iccid: &str, state: &str, eid: Option<&str>, updated_at_micros: i64) -> Result<bool> {
        let changed = self
            .conn()?
            .execute("UPDATE esim_profiles SET state = $2, eid = COALESCE($3, eid), updated_at = $4 WHERE iccid = $1", &[&iccid, &state, &eid, &updated_at_micros])
            .map_err(db)?;
        Ok(changed > 0)
    }

    fn load_events(&mut self, visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        self.load_events_after(0, visit)
    }

    fn load_events_after(&mut self, seq: i64, visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        // Pages by key (`seq > last ... LIMIT`), not a cursor: a cursor over
        // `seq > $1 ORDER BY seq` took 0.6 s to find nothing after a 10M
        // checkpoint (its plan, made for a fraction of a large result, did
        // not start at the index's end); a LIMIT in key order always does.
        let statement = self.conn()?.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT {PAGE}")).map_err(db)?;
        self.visit_pages(&statement, seq, visit)
    }

    fn load_shard(&mut self, shard: u32, floor: &mut dyn FnMut(LedgerMark), visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        let floors = self
            .conn()?
            .query(
                "SELECT m.subscription, m.seq, m.lines, m.at, m.state FROM subscriptions s JOIN ledger_floors f ON f.subscription = s.id \
                 JOIN ledger_marks m ON m.subscription = f.subscription AND m.seq = f.seq WHERE s.shard = $1 ORDER BY f.seq",
                &[&(shard as i32)],
            )
            .map_err(db)?;
        for row in &floors {
            floor(LedgerMark { subscription: row.get(0), seq: row.get(1), lines: row.get(2), at_micros: row.get(3), state: row.get(4) });
        }
        // The shard's seqs from the index and the pending ranges (one
        // snapshot; a seq may be in both for a moment), then
        // its events in seq order, a page of seqs at a time.
        let rows = self
            .conn()?
            .query(
                "WITH subs AS (SELECT id FROM subscriptions WHERE shard = $1) \
                 SELECT seq FROM event_index WHERE subscription_hash IN (SELECT hashtextextended(id, 0) FROM subs) \
                 UNION SELECT e.seq FROM event_pending p JOIN events e ON e.seq BETWEEN p.lo AND p.hi WHERE e.subscription IN (SELECT id FROM subs) ORDER BY 1",
                &[&(shard as i32)],
            )
            .map_err(db)?;
        let seqs: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let statement = self.conn()?.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ANY($1) ORDER BY seq")).map_err(db)?;
        for page in seqs.chunks(PAGE) {
            let rows = self.conn()?.query(&statement, &[&page]).map_err(db)?;
            for row in &rows {
                let event = event_from_row(row)?;
                // The index's hash may be shared by another shard's id.
                if crate::shard_of(&event.subscription) == shard {
                    visit(event);
                }
            }
        }
        Ok(())
    }

    fn event_at_or_after(&mut self, seq: i64) -> Result<Option<(i64, i64)>> {
        let row = self.conn()?.query_opt("SELECT seq, applied_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1", &[&seq]).map_err(db)?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    fn max_seq(&mut self) -> Result<i64> {
        Ok(self.conn()?.query_one("SELECT COALESCE(MAX(seq), 0)::int8 FROM events", &[]).map_err(db)?.get(0))
    }

    fn count_events(&mut self, after: i64, upto: i64) -> Result<i64> {
        Ok(self.conn()?.query_one("SELECT count(*) FROM events WHERE seq > $1 AND seq <= $2", &[&after, &upto]).map_err(db)?.get(0))
    }

    fn put_checkpoint_part(&mut self, upto_seq: i64, part: u32, data: &[u8]) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO checkpoint_parts (upto_seq, part, data) VALUES ($1, $2, $3) ON CONFLICT (upto_seq, part) DO UPDATE SET data = excluded.data",
                &[&upto_seq, &(part as i64), &data],
            )
            .map_err(db)?;
        Ok(())
    }

    fn finish_checkpoint(&mut self, meta: &CheckpointMeta) -> Result<()> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        tx.execute(
            "INSERT INTO checkpoints (upto_seq, format, parts, digest, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (upto_seq) DO UPDATE SET format = excluded.format, parts = excluded.parts, digest = excluded.digest, created_at = excluded.created_at",
            &[&meta.upto_seq, &(meta.format as i64), &(meta.parts as i64), &meta.digest, &meta.created_at_micros],
        )
        .map_err(db)?;
        tx.execute("DELETE FROM checkpoints WHERE upto_seq < (SELECT MAX(upto_seq) FROM checkpoints WHERE upto_seq < $1)", &[&meta.upto_seq]).map_err(db)?;
        tx.execute("DELETE FROM checkpoint_parts WHERE upto_seq NOT IN (SELECT upto_seq FROM checkpoints)", &[]).map_err(db)?;
        tx.commit().map_err(db)
    }

    fn checkpoints(&mut self) -> Result<Vec<CheckpointMeta>> {
        let rows = self.conn()?.query("SELECT upto_seq, format, parts, digest, created_at FROM checkpoints ORDER BY upto_seq DESC", &[]).map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| CheckpointMeta { upto_seq: row.get(0), format: row.get::<_, i64>(1) as u32, parts: row.get::<_, i64>(2) as u32, digest: row.get(3), created_at_micros: row.get(4) })
            .collect())
    }

    fn checkpoint_part(&mut self, upto_seq: i64, part: u32) -> Result<Option<Vec<u8>>> {
        let row = self.conn()?.query_opt("SELECT data FROM checkpoint_parts WHERE upto_seq = $1 AND part = $2", &[&upto_seq, &(part as i64)]).map_err(db)?;
        Ok(row.map(|row| row.get(0)))
    }

    fn events_between(&mut self, subscription: &str, after: i64, upto: i64) -> Result<Vec<EventRow>> {
        let rows = self
            .conn()?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM event_index WHERE subscription_hash = hashtextextended($1, 0) AND seq > $2 AND seq <= $3 \
                     UNION ALL SELECT e.seq FROM event_pending p JOIN events e ON e.seq BETWEEN p.lo AND p.hi WHERE e.subscription = $1 AND e.seq > $2 AND e.seq <= $3) \
                     AND subscription = $1 ORDER BY seq"
                ),
                &[&subscription, &after, &upto],
            )
            .map_err(db)?;
        rows.iter().map(event_from_row).collect()
    }

    fn find_keys(&mut self, wanted: &[(String, String)], since_seq: i64) -> Result<Vec<EventRow>> {
        let subscriptions: Vec<&str> = wanted.iter().map(|(s, _)| s.as_str()).collect();
        let keys: Vec<&str> = wanted.iter().map(|(_, k)| k.as_str()).collect();
        let rows = self
            .conn()?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT seq FROM event_index WHERE subscription_hash IN (SELECT hashtextextended(id, 0) FROM UNNEST($1::text[]) AS id) AND seq >= $3 \
                     UNION ALL SELECT e.seq FROM event_pending p JOIN events e ON e.seq BETWEEN p.lo AND p.hi WHERE e.subscription = ANY($1) AND e.seq >= $3) \
                     AND (subscription, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
                ),
                &[&subscriptions, &keys, &since_seq],
            )
            .map_err(db)?;
        rows.iter().map(event_from_row).collect()
    }

    fn retention_candidates(&mut self, upto_seq: i64) -> Result<Vec<(String, i64, i64)>> {
        let rows = self
            .conn()?
            .query(
                "SELECT m.subscription, MAX(m.seq), COALESCE(MAX(f.seq), 0)::int8 FROM ledger_marks m LEFT JOIN ledger_floors f ON f.subscription = m.subscription \
                 WHERE m.seq <= $1 GROUP BY m.subscription HAVING MAX(m.seq) > COALESCE(MAX(f.seq), 0) ORDER BY m.subscription",
                &[&upto_seq],
            )
            .map_err(db)?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect())
    }

    fn archive(&mut self, archive: &Archive) -> Result<()> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        let statement = tx
            .prepare(
                "INSERT INTO archived_periods (subscription, period, starts, ends, lines, used_bytes, throttled_bytes, rejected_bytes, granted_bytes, carried_bytes, forfeited_bytes, fees_minor, charges_minor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (subscription, starts) DO UPDATE SET ends = GREATEST(archived_periods.ends, excluded.ends), \
                 lines = archived_periods.lines + excluded.lines, used_bytes = archived_periods.used_bytes + excluded.used_bytes, \
                 throttled_bytes = archived_periods.throttled_bytes + excluded.throttled_bytes, rejected_bytes = archived_periods.rejected_bytes + excluded.rejected_bytes, \
                 granted_bytes = archived_periods.granted_bytes + excluded.granted_bytes, carried_bytes = archived_periods.carried_bytes + excluded.carried_bytes, \
                 forfeited_bytes = archived_periods.forfeited_bytes + excluded.forfeited_bytes, fees_minor = archived_periods.fees_minor + excluded.fees_minor, \
                 charges_minor = archived_periods.charges_minor + excluded.charges_minor",
            )
            .map_err(db)?;
        for p in &archive.periods {
            tx.execute(
                &statement,
                &[
                    &p.subscription,
                    &p.period,
                    &p.starts_micros,
                    &p.ends_micros,
                    &p.lines,
                    &p.used_bytes,
                    &p.throttled_bytes,
                    &p.rejected_bytes,
                    &p.granted_bytes,
                    &p.carried_bytes,
                    &p.forfeited_bytes,
                    &p.fees_minor,
                    &p.charges_minor,
                ],
            )
            .map_err(db)?;
        }
        for (subscription, seq) in &archive.floors {
            tx.execute("INSERT INTO ledger_floors (subscription, seq) VALUES ($1, $2) ON CONFLICT (subscription) DO UPDATE SET seq = excluded.seq", &[subscription, seq]).map_err(db)?;
            tx.execute("DELETE FROM ledger_marks WHERE subscription = $1 AND seq < $2", &[subscription, seq]).map_err(db)?;
        }
        tx.execute("DELETE FROM events WHERE seq = ANY($1)", &[&archive.seqs]).map_err(db)?;
        let subscriptions: Vec<&str> = archive.floors.iter().map(|(subscription, _)| subscription.as_str()).collect();
        tx.execute(
            "DELETE FROM event_index WHERE subscription_hash IN (SELECT hashtextextended(id, 0) FROM UNNEST($1::text[]) AS id) AND seq = ANY($2)",
            &[&subscriptions, &archive.seqs],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn ledger_floor(&mut self, subscription: &str) -> Result<Option<i64>> {
        let row = self.conn()?.query_opt("SELECT seq FROM ledger_floors WHERE subscription = $1", &[&subscription]).map_err(db)?;
        Ok(row.map(|row| row.get(0)))
    }

    fn ledger_floors(&mut self) -> Result<Vec<LedgerMark>> {
        let rows = self
            .conn()?
            .query("SELECT m.subscription, m.seq, m.lines, m.at, m.state FROM ledger_floors f JOIN ledger_marks m ON m.subscription = f.subscription AND m.seq = f.seq ORDER BY f.seq", &[])
            .map_err(db)?;
        Ok(rows.iter().map(|row| LedgerMark { subscription: row.get(0), seq: row.get(1), lines: row.get(2), at_micros: row.get(3), state: row.get(4) }).collect())
    }

    fn archived_periods(&mut self, subscription: &str) -> Result<Vec<PeriodTotals>> {
        let rows = self.conn()?.query("SELECT subscription, period, starts, ends, lines, used_bytes, throttled_bytes, rejected_bytes, granted_bytes, carried_bytes, forfeited_bytes, fees_minor, charges_minor FROM archived_periods WHERE subscription = $1 ORDER BY starts", &[&subscription]).map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| PeriodTotals {
                subscription: row.get(0),
                period: row.get(1),
                starts_micros: row.get(2),
                ends_micros: row.get(3),
                lines: row.get(4),
                used_bytes: row.get(5),
                throttled_bytes: row.get(6),
                rejected_bytes: row.get(7),
                granted_bytes: row.get(8),
                carried_bytes: row.get(9),
                forfeited_bytes: row.get(10),
                fees_minor: row.get(11),
                charges_minor: row.get(12),
            })
            .collect())
    }

    fn put_ledger_marks(&mut self, marks: &[LedgerMark]) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let subscription: Vec<&str> = marks.iter().map(|m| m.subscription.as_str()).collect();
        let seq: Vec<i64> = marks.iter().map(|m| m.seq).collect();
        let lines: Vec<i64> = marks.iter().map(|m| m.lines).collect();
        let at: Vec<i64> = marks.iter().map(|m| m.at_micros).collect();
        let state: Vec<&[u8]> = marks.iter().map(|m| m.state.as_slice()).collect();
        self.conn()?
            .execute(
                "INSERT INTO ledger_marks (subscription, seq, lines, at, state) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::bytea[]) \
                 ON CONFLICT (subscription, seq) DO UPDATE SET lines = excluded.lines, at = excluded.at, state = excluded.state",
                &[&subscription, &seq, &lines, &at, &state],
            )
            .map_err(db)?;
        Ok(())
    }

    fn ledger_marks(&mut self, subscription: &str) -> Result<Vec<MarkMeta>> {
        let rows = self.conn()?.query("SELECT seq, lines, at FROM ledger_marks WHERE subscription = $1 ORDER BY seq", &[&subscription]).map_err(db)?;
        Ok(rows.iter().map(|row| MarkMeta { seq: row.get(0), lines: row.get(1), at_micros: row.get(2) }).collect())
    }

    fn ledger_mark(&mut self, subscription: &str, seq: i64) -> Result<Option<Vec<u8>>> {
        let row = self.conn()?.query_opt("SELECT state FROM ledger_marks WHERE subscription = $1 AND seq = $2", &[&subscription, &seq]).map_err(db)?;
        Ok(row.map(|row| row.get(0)))
    }

    fn commit(&mut self, batch: &Batch) -> Result<()> {
        self.commit_fenced(batch, &[])?.map_err(|fenced| StoreError(fenced.to_string()))
    }

    fn commit_fenced(&mut self, batch: &Batch, fence: &[(u32, i64)]) -> Result<std::result::Result<(), crate::Fenced>> {
        let mut tx = self.conn()?.transaction().map_err(db)?;
        if !fence.is_empty() {
            // The first statement: the lease rows are read under a key
            // share lock, so a takeover's epoch bump (which locks its row
            // FOR UPDATE) waits for this commit, or this reads the bumped
            // epoch and writes nothing. Renewals, which change only
            // `expires_at`, take no lock this one conflicts with: they
            // never wait for commits, nor deadlock with them.
            let shards: Vec<i32> = fence.iter().map(|&(shard, _)| shard as i32).collect();
            // The audit row goes with it (its number is taken after any
            // earlier grant of these shards and before any later one).
            let epochs: Vec<i64> = fence.iter().map(|&(_, epoch)| epoch).collect();
            let rows = tx
                .query(
                    "WITH audit AS (INSERT INTO fenced_commits (shards, epochs) VALUES ($1, $2)) \
                     SELECT shard_no, epoch FROM shard_lease WHERE shard_no = ANY($1) FOR KEY SHARE",
                    &[&shards, &epochs],
                )
                .map_err(db)?;
            for &(shard, held) in fence {
                let current = rows.iter().find(|row| row.get::<_, i32>(0) == shard as i32).map_or(0, |row| row.get::<_, i64>(1));
                if current != held {
                    tx.rollback().map_err(db)?;
                    return Ok(Err(crate::Fenced { shard, held, current }));
                }
            }
        }
        if !batch.subscriptions.is_empty() {
            // One statement for the whole batch (an import brings thousands).
            let column = |get: fn(&crate::SubscriptionRow) -> Option<&str>| batch.subscriptions.iter().map(get).collect::<Vec<Option<&str>>>();
            let ids: Vec<&str> = batch.subscriptions.iter().map(|s| s.id.as_str()).collect();
            let created: Vec<i64> = batch.subscriptions.iter().map(|s| s.created_at_micros).collect();
            let shard: Vec<i32> = batch.subscriptions.iter().map(|s| crate::shard_of(&s.id) as i32).collect();
            let (iccid, imsi) = (column(|s| s.identifiers.iccid.as_deref()), column(|s| s.identifiers.imsi.as_deref()));
            let (msisdn, external) = (column(|s| s.identifiers.msisdn.as_deref()), column(|s| s.identifiers.external_id.as_deref()));
            tx.execute(
                "INSERT INTO subscriptions (id, iccid, imsi, msisdn, external_id, created_at, shard) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int4[])",
                &[&ids, &iccid, &imsi, &msisdn, &external, &created, &shard],
            )
            .map_err(db)?;
        }
        if !batch.events.is_empty() {
            let n = batch.events.len();
            // The batch's seqs first: blocks of SEQ_BLOCK, their starts in
            // one row (an array: a row each cost more to send and decode
            // than taking them), the seqs in order.
            let blocks = n.div_ceil(SEQ_BLOCK as usize);
            let mut starts: Vec<i64> = tx
                .query_one("SELECT array_agg(nextval('events_seq_seq')) FROM generate_series(1, $1::int8)", &[&(blocks as i64)])
                .map_err(db)?
                .get(0);
            if starts.len() != blocks {
                return Err(StoreError(format!("postgres: asked for {blocks} blocks of event seqs, got {}", starts.len())));
            }
            starts.sort_unstable();
            let seqs: Vec<i64> = starts.iter().flat_map(|&start| start..start + SEQ_BLOCK).take(n).collect();
            // Then the rows by binary COPY, the cheapest way in, encoded
            // here in one buffer, and their range for the indexer.
            let mut rows = CopyRows::with_capacity(n * 160);
            for (e, &seq) in batch.events.iter().zip(&seqs) {
                let (plan_id, plan_version, bytes, country, grant_kind, expires) = match &e.body {
                    EventBody::Purchase { plan_id, plan_version } | EventBody::ChangePlan { plan_id, plan_version } => {
                        (Some(plan_id.as_str()), Some(*plan_version as i64), None, None, None, None)
                    }
                    EventBody::Usage { bytes, country } => (None, None, Some(*bytes as i64), country.as_deref(), None, None),
                    EventBody::Grant { kind, bytes, expires_micros } => (None, None, Some(*bytes as i64), None, Some(kind.as_str()), Some(*expires_micros)),
                    EventBody::Addon { addon, kind, bytes, expires_micros, .. } => {
                        (Some(addon.as_str()), None, Some(*bytes as i64), None, Some(kind.as_str()), Some(*expires_micros))
                    }
                    EventBody::Network { note } | EventBody::Refund { reason: note, .. } => (None, None, None, None, Some(note.as_str()), None),
                    _ => (None, None, None, None, None, None),
                };
                let amount = match &e.body {
                    EventBody::Addon { price_minor: minor, .. } | EventBody::Refund { minor, .. } => Some(*minor),
                    _ => None,
                };
                rows.row(13);
                rows.int8(Some(seq));
                rows.text(Some(&e.subscription));
                rows.int8(Some(e.applied_at_micros));
                rows.int8(Some(e.at_micros));
                rows.text(e.key.as_deref());
                rows.text(Some(e.body.name()));
                rows.text(plan_id);
                rows.int8(plan_version);
                rows.int8(bytes);
                rows.text(country);
                rows.text(grant_kind);
                rows.int8(expires);
                rows.int8(amount);
            }
            let columns = "seq, subscription, applied_at, at, key, kind, plan_id, plan_version, bytes, country, grant_kind, expires, amount";
            rows.send(&mut tx, &format!("COPY events ({columns}) FROM STDIN BINARY"))?;
            // The runs of consecutive seqs (one, unless another node took
            // blocks between this one's), for the indexer: no two commits'
            // runs overlap.
            let (mut lo, mut hi) = (vec![seqs[0]], vec![seqs[0]]);
            for &seq in &seqs[1..] {
                match hi.last_mut() {
                    Some(last) if *last + 1 == seq => *last = seq,
                    _ => {
                        lo.push(seq);
                        hi.push(seq);
                    }
                }
            }
            tx.execute("INSERT INTO event_pending (lo, hi) SELECT * FROM UNNEST($1::int8[], $2::int8[])", &[&lo, &hi]).map_err(db)?;
        }
        for n in &batch.notifications {
            tx.execute(
                "INSERT INTO outbox (key, endpoint, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (key) DO NOTHING",
                &[&n.key, &n.endpoint, &n.payload, &n.created_at_micros],
            )
            .map_err(db)?;
        }
        if let Some(clock) = batch.clock_micros {
            tx.execute("INSERT INTO meta (name, value) VALUES ('clock', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value", &[&clock])
                .map_err(db)?;
        }
        tx.commit().map_err(db).map(Ok)
    }

    fn setting(&mut self, name: &str) -> Result<Option<String>> {
        let rows = self.conn()?.query("SELECT value FROM settings WHERE name = $1", &[&name]).map_err(db)?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn set_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.conn()?
            .execute("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value", &[&name, &value])
            .map(drop)
            .map_err(db)
    }

    fn clock(&mut self) -> Result<Option<i64>> {
        let rows = self.conn()?.query("SELECT value FROM meta WHERE name = 'clock'", &[]).map_err(db)?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn claim_deliveries(&mut self, endpoint: &str, claimer: &str, now_micros: i64, limit: usize, claim_until_micros: i64) -> Result<Vec<Delivery>> {
        // SKIP LOCKED: a sender of another node claiming at the same moment
        // takes the next ones instead of waiting for these.
        let rows = self
            .conn()?
            .query(
                "UPDATE outbox o SET claimed_by = $4, claimed_until = $5 FROM (SELECT id FROM outbox WHERE state = 'pending' AND endpoint = $3 \
                 AND next_attempt_at <= $1 AND claimed_until <= $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) c WHERE o.id = c.id \
                 RETURNING o.id, o.key, o.endpoint, o.payload, o.attempts",
                &[&now_micros, &(limit as i64), &endpoint, &claimer, &claim_until_micros],
            )
            .map_err(db)?;
        let mut due: Vec<Delivery> =
            rows.iter().map(|row| Delivery { id: row.get(0), key: row.get(1), endpoint: row.get(2), payload: row.get(3), attempts: row.get::<_, i32>(4) as u32 }).collect();
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    fn release_claims(&mut self, claimer: &str) -> Result<u64> {
        let released =
            self.conn()?.execute("UPDATE outbox SET claimed_by = NULL, claimed_until = 0 WHERE claimed_by = $1 AND state = 'pending'", &[&claimer]).map_err(db)?;
        Ok(released)
    }

    fn record_attempt(&mut self, id: i64, delivered: bool, next_attempt_micros: Option<i64>, outcome: &str) -> Result<()> {
        let state = if delivered { "delivered" } else if next_attempt_micros.is_some() { "pending" } else { "failed" };
        self.conn()?
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, state = $2, next_attempt_at = $3, last_outcome = $4, claimed_by = NULL, claimed_until = 0 WHERE id = $1",
                &[&id, &state, &next_attempt_micros.unwrap_or(i64::MAX), &outcome],
            )
            .map_err(db)?;
        Ok(())
    }

    fn backlog(&mut self) -> Result<u64> {
        let row = self.conn()?.query_one("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", &[]).map_err(db)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_parameter_is_ours() {
        assert_eq!(split_schema("postgres://u@h/db").unwrap(), ("postgres://u@h/db".into(), "rollover".into()));
        assert_eq!(split_schema("postgres://u@h/db?schema=t1&sslmode=disable").unwrap(), ("postgres://u@h/db?sslmode=disable".into(), "t1".into()));
        assert!(split_schema("postgres://u@h/db?schema=x;drop").is_err());
    }

    /// A store written by the version before the hashed index and the seq
    /// blocks (events indexed by id, commit ranges that may overlap) reads
    /// the same after its migrations, and its indexer brings in what was
    /// pending, overlap and all.
    #[test]
    fn a_store_of_the_previous_version_reads_the_same_after_migrating() {
        let schema = format!("store_upgrade_{}", std::process::id());
        let base = std::env::var("ROLLOVER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let url = format!("{base}?schema={schema}");
        let mut old = Client::connect(&base, NoTls).expect("the local PostgreSQL is running (127.0.0.1:5432, database test)");
        old.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema}; CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);"
        ))
        .unwrap();
        let previous = MIGRATIONS.len() - 2;
        for (index, migration) in MIGRATIONS[..previous].iter().enumerate() {
            old.batch_execute(migration).unwrap();
            old.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(index as i64 + 1)]).unwrap();
        }
        // Ten events a seq each, as that version took them; the first six
        // indexed by id, the rest pending, with a range over both (as two
        // nodes' commits could leave).
        let mut seqs = Vec::new();
        for k in 0..10i64 {
            let subscription = if k % 2 == 0 { "a" } else { "b" };
            let row = old
                .query_one(
                    "INSERT INTO events (subscription, applied_at, at, key, kind, bytes) VALUES ($1, $2, $2, $3, 'usage', $4) RETURNING seq",
                    &[&subscription, &(k + 1), &format!("r{k}"), &(100 + k)],
                )
                .unwrap();
            seqs.push(row.get::<_, i64>(0));
        }
        old.execute("INSERT INTO event_index (subscription, seq) SELECT subscription, seq FROM events WHERE seq <= $1", &[&seqs[5]]).unwrap();
        old.execute("INSERT INTO event_pending (lo, hi) VALUES ($1, $2), ($3, $4)", &[&seqs[6], &seqs[9], &seqs[4], &seqs[7]]).unwrap();
        let keys = |store: &mut PostgresStore, id: &str| store.events_of(id).unwrap().into_iter().map(|e| e.key.unwrap()).collect::<Vec<_>>();
        let mut store = PostgresStore::open(&url).unwrap();
        assert_eq!(keys(&mut store, "a"), ["r0", "r2", "r4", "r6", "r8"]);
        assert_eq!(keys(&mut store, "b"), ["r1", "r3", "r5", "r7", "r9"]);
        let wanted = [("a".to_string(), "r8".to_string()), ("b".to_string(), "r3".to_string()), ("a".to_string(), "r3".to_string())];
        assert_eq!(store.find_keys(&wanted, 0).unwrap().len(), 2);
        let writer = PostgresStore::open_writer(&url).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while old.query_one("SELECT count(*) FROM event_pending", &[]).unwrap().get::<_, i64>(0) > 0 {
            assert!(std::time::Instant::now() < deadline, "the pending ranges, one overlapping the other, are indexed");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(writer);
        assert_eq!(old.query_one("SELECT count(*) FROM event_index", &[]).unwrap().get::<_, i64>(0), 10, "each event indexed once");
        assert_eq!(keys(&mut store, "a"), ["r0", "r2", "r4", "r6", "r8"]);
        assert_eq!(store.find_keys(&wanted, 0).unwrap().len(), 2);
        // New commits come after the old seqs, in blocks.
        let usage = |key: &str| EventRow { seq: 0, subscription: "a".into(), applied_at_micros: 20, at_micros: 20, key: Some(key.into()), body: EventBody::Usage { bytes: 1, country: None } };
        store.commit(&Batch { events: vec![usage("n1"), usage("n2")], ..Batch::default() }).unwrap();
        let fresh: Vec<i64> = store.events_of("a").unwrap().iter().filter(|e| e.key.as_deref().is_some_and(|k| k.starts_with('n'))).map(|e| e.seq).collect();
        assert_eq!(fresh, [seqs[9] + SEQ_BLOCK, seqs[9] + SEQ_BLOCK + 1]);
        old.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    }
}
