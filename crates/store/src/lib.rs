//! The durable log behind the live service.
//!
//! The store keeps what was accepted, never what it means: plan documents,
//! subscriptions, and every event applied to a subscription (purchases,
//! usage records, grants, lifecycle events) in the order it was applied,
//! with the service clock at that moment. Balances, boundaries and the ledger
//! are a deterministic function of that log, recomputed by `rollover-core`.
//! No business rule lives here.

mod lease;
mod postgres;
mod sqlite;

use std::fmt;

pub use lease::{Audit, Fenced, Lease, Leases};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How many shards subscriptions are spread over (`shard_of` in the
/// service); in a cluster, the unit a node leases.
pub const SHARDS: u32 = 256;

/// FNV-1a, 32 bits, mod [`SHARDS`]: the shard function (the one NATS
/// subject mapping's `partition()` uses), so shards never move when nodes
/// are added.
pub fn shard_of(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

/// One version of one plan: the document it was posted in and its position
/// there (plans are re-read from their documents at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub id: String,
    pub version: u32,
    pub document: String,
    pub position: u32,
    pub created_at_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identifiers {
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    pub msisdn: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: String,
    pub identifiers: Identifiers,
    pub created_at_micros: i64,
}

/// Grant expiry as stored: an instant in microseconds, or one of these.
pub const EXPIRES_NEVER: i64 = i64::MAX;
pub const EXPIRES_PERIOD_END: i64 = i64::MIN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    Purchase { plan_id: String, plan_version: u32 },
    Usage { bytes: u64, country: Option<String> },
    Grant { kind: String, bytes: u64, expires_micros: i64 },
    /// An add-on bought: `addon` is its id in the catalog.
    Addon { addon: String, kind: String, bytes: u64, expires_micros: i64, price_minor: i64 },
    /// Fees paid back; `reason` says why (an order cancelled).
    Refund { minor: i64, reason: String },
    Install,
    FirstUse,
    ChangePlan { plan_id: String, plan_version: u32 },
    Suspend,
    Resume,
    Cancel,
    /// Something the network side did or saw that changes no balance: a
    /// RADIUS session closed with nothing left to rate, a CoA or Disconnect
    /// sent to a NAS and its answer. Kept in the log so the ledger shows it.
    Network { note: String },
}

impl EventBody {
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Purchase { .. } => "purchase",
            EventBody::Usage { .. } => "usage",
            EventBody::Grant { .. } => "grant",
            EventBody::Addon { .. } => "addon",
            EventBody::Refund { .. } => "refund",
            EventBody::Install => "install",
            EventBody::FirstUse => "first_use",
            EventBody::ChangePlan { .. } => "change_plan",
            EventBody::Suspend => "suspend",
            EventBody::Resume => "resume",
            EventBody::Cancel => "cancel",
            EventBody::Network { .. } => "network",
        }
    }
}

/// One applied event. `applied_at` is the service clock when it was applied
/// (the subscription had been brought up to that instant); `at` is the
/// event's own instant. Replaying `advance(applied_at)` then
/// `apply(event, at)` in `seq` order rebuilds the exact state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub seq: i64,
    pub subscription: String,
    pub applied_at_micros: i64,
    pub at_micros: i64,
    /// The client's idempotency key (usage record id), unique per subscription.
    pub key: Option<String>,
    pub body: EventBody,
}

/// A webhook delivery waiting in the outbox: one notification for one
/// endpoint. `key` is deterministic, so a notification made twice (after a
/// restart) is stored once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub key: String,
    pub endpoint: String,
    pub payload: String,
    pub created_at_micros: i64,
}

/// A delivery due for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub key: String,
    pub endpoint: String,
    pub payload: String,
    pub attempts: u32,
}

/// What one group commit writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub subscriptions: Vec<SubscriptionRow>,
    pub events: Vec<EventRow>,
    pub notifications: Vec<NotificationRow>,
    /// The simulated clock, when it moved.
    pub clock_micros: Option<i64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty() && self.events.is_empty() && self.notifications.is_empty() && self.clock_micros.is_none()
    }

    pub fn append(&mut self, other: Batch) {
        self.subscriptions.extend(other.subscriptions);
        self.events.extend(other.events);
        self.notifications.extend(other.notifications);
        if other.clock_micros.is_some() {
            self.clock_micros = other.clock_micros;
        }
    }
}

/// One eSIM profile in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub iccid: String,
    pub profile_type: Option<String>,
    pub imsi: Option<String>,
    pub msisdn: Option<String>,
    /// One of `rollover_esim::ProfileState`'s names.
    pub state: String,
    pub eid: Option<String>,
    pub matching_id: Option<String>,
    pub updated_at_micros: i64,
}

/// How many profiles are in one state, of one profile type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileCount {
    pub state: String,
    pub profile_type: Option<String>,
    pub count: u64,
}

/// One eSIM order: its idempotency key, where it stands, the profile it
/// holds, and the rest of it as the service's JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    /// `pending`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub iccid: Option<String>,
    pub subscription: Option<String>,
    pub document: String,
    pub created_at_micros: i64,
    pub updated_at_micros: i64,
}

/// A checkpoint: the state of every subscription after event `upto_seq`,
/// in `parts` parts whose SHA-256 over all of them is `digest` (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub upto_seq: i64,
    pub format: u32,
    pub parts: u32,
    pub digest: String,
    pub created_at_micros: i64,
}

/// A subscription's engine state right after one of its events, and how
/// many ledger lines (entries and network notes) its events up to that one
/// made: where a ledger read may start instead of the purchase. Derived
/// data, written by the checkpointer; `state` is the service's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerMark {
    pub subscription: String,
    pub seq: i64,
    pub lines: i64,
    /// How far the state was brought (microseconds).
    pub at_micros: i64,
    pub state: Vec<u8>,
}

/// A [`LedgerMark`] without its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkMeta {
    pub seq: i64,
    pub lines: i64,
    pub at_micros: i64,
}

/// What one subscription's archived events did in one of its periods:
/// what the ledger still shows once they are dropped. A period is known by
/// its start; before the first period (a plan not yet started) the start
/// is 0 and the number 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    pub subscription: String,
    pub period: i64,
    pub starts_micros: i64,
    pub ends_micros: i64,
    /// Ledger lines (entries and notes) archived.
    pub lines: i64,
    /// Drawn from buckets or accepted unmetered.
    pub used_bytes: i64,
    pub throttled_bytes: i64,
    pub rejected_bytes: i64,
    pub granted_bytes: i64,
    pub carried_bytes: i64,
    pub forfeited_bytes: i64,
    /// Fees and add-ons, less refunds; and charges for data beyond the plan.
    pub fees_minor: i64,
    pub charges_minor: i64,
}

/// One retention step, committed at once: per subscription its new floor
/// (the ledger mark its ledger now starts from), the totals of the periods
/// its dropped events fell in (added to what earlier steps archived), and
/// the seqs of the events dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    pub floors: Vec<(String, i64)>,
    pub periods: Vec<PeriodTotals>,
    pub seqs: Vec<i64>,
}

/// What [`Store::create_order`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCreated {
    /// Stored, holding this profile (now `allocated`).
    Created(ProfileRow),
    /// An order with this id was there already; nothing was changed.
    Exists(OrderRow),
    /// No profile is `available` (of the type asked for); nothing stored.
    NoProfile,
}

/// The system of record. One writer at a time; `commit` is atomic and
/// durable (fsync) when it returns.
pub trait Store: Send {
    /// How many events of the log its subscription index has not caught up
    /// with, where the index is built behind the log (SQLite); `None` where
    /// the index is kept in the commit (PostgreSQL).
    fn index_lag(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        None
    }

    fn load_plans(&mut self) -> Result<Vec<PlanRow>>;
    /// How many plan rows are stored (cheaper than loading them).
    fn plan_count(&mut self) -> Result<usize> {
        Ok(self.load_plans()?.len())
    }
    fn insert_plans(&mut self, rows: &[PlanRow]) -> Result<()>;
    fn load_subscriptions(&mut self) -> Result<Vec<SubscriptionRow>>;
    /// Subscriptions stored with an ordinal (insertion order) above `after`,
    /// with their ordinals: how nodes of a cluster learn each other's
    /// purchases. Only PostgreSQL.
    fn subscriptions_after(&mut self, _after: i64) -> Result<Vec<(i64, SubscriptionRow)>> {
        Err(StoreError("reading subscriptions by ordinal (cluster mode) needs the PostgreSQL store".into()))
    }
    /// One subscription's row: its identifiers and when it was created.
    fn subscription(&mut self, id: &str) -> Result<Option<SubscriptionRow>>;
    /// Every event, in `seq` order.
    fn load_events(&mut self, visit: &mut dyn FnMut(EventRow)) -> Result<()>;
    /// One subscription's events, in `seq` order.
    fn events_of(&mut self, subscription: &str) -> Result<Vec<EventRow>> {
        self.events_between(subscription, 0, i64::MAX)
    }
    /// One subscription's events after `after` up to `upto` (both seqs), in
    /// `seq` order.
    fn events_between(&mut self, subscription: &str, after: i64, upto: i64) -> Result<Vec<EventRow>>;
    /// The stored events with these (subscription, key) pairs, of seq
    /// `since_seq` or later: what an idempotency key's hash in memory
    /// stands for, checked.
    fn find_keys(&mut self, wanted: &[(String, String)], since_seq: i64) -> Result<Vec<EventRow>>;
    /// Per subscription with a ledger mark at or before `upto_seq` newer
    /// than its floor: (subscription, that newest mark's seq, its floor's
    /// seq or 0), what a retention step may drop up to.
    fn retention_candidates(&mut self, upto_seq: i64) -> Result<Vec<(String, i64, i64)>>;
    /// Drops archived events and sets floors, in one transaction (see
    /// [`Archive`]); marks before a new floor go too.
    fn archive(&mut self, archive: &Archive) -> Result<()>;
    /// A subscription's floor: its ledger starts at the mark of this seq.
    fn ledger_floor(&mut self, subscription: &str) -> Result<Option<i64>>;
    /// Every floor, with its mark: where start-up without a checkpoint
    /// starts each subscription whose first events were archived.
    fn ledger_floors(&mut self) -> Result<Vec<LedgerMark>>;
    /// A subscription's archived period totals, oldest first.
    fn archived_periods(&mut self, subscription: &str) -> Result<Vec<PeriodTotals>>;
    /// Stores ledger marks (a mark already there is replaced: the same
    /// events always give the same mark).
    fn put_ledger_marks(&mut self, marks: &[LedgerMark]) -> Result<()>;
    /// A subscription's ledger marks, oldest first, without their states.
    fn ledger_marks(&mut self, subscription: &str) -> Result<Vec<MarkMeta>>;
    /// One mark's state.
    fn ledger_mark(&mut self, subscription: &str, seq: i64) -> Result<Option<Vec<u8>>>;
    /// Every event after `seq`, in commit order (a checkpoint's tail).
    fn load_events_after(&mut self, seq: i64, visit: &mut dyn FnMut(EventRow)) -> Result<()>;
    /// One shard's subscriptions as a node taking the shard over reads them:
    /// first the floors of those whose first events were archived, then
    /// every event of the shard in `seq` order. Only PostgreSQL keeps
    /// subscriptions by shard.
    fn load_shard(&mut self, _shard: u32, _floor: &mut dyn FnMut(LedgerMark), _visit: &mut dyn FnMut(EventRow)) -> Result<()> {
        Err(StoreError("loading one shard (cluster mode) needs the PostgreSQL store".into()))
    }
    /// The first event at or after `seq`: its seq and `applied_at`.
    fn event_at_or_after(&mut self, seq: i64) -> Result<Option<(i64, i64)>>;
    /// The newest event's seq (0 for an empty log).
    fn max_seq(&mut self) -> Result<i64>;
    /// How many events have a seq after `after` and up to `upto` (seqs may
    /// have gaps, so their difference says only how many at most).
    fn count_events(&mut self, after: i64, upto: i64) -> Result<i64>;
    /// Stores one part of the checkpoint taken after event `upto_seq`.
    fn put_checkpoint_part(&mut self, upto_seq: i64, part: u32, data: &[u8]) -> Result<()>;
    /// Marks the checkpoint after `upto_seq` complete (its parts are all
    /// stored), and drops every older one but the newest before it, and
    /// parts no complete checkpoint owns.
    fn finish_checkpoint(&mut self, meta: &CheckpointMeta) -> Result<()>;
    /// Complete checkpoints, newest first.
    fn checkpoints(&mut self) -> Result<Vec<CheckpointMeta>>;
    fn checkpoint_part(&mut self, upto_seq: i64, part: u32) -> Result<Option<Vec<u8>>>;
    fn commit(&mut self, batch: &Batch) -> Result<()>;

    /// Commits `batch` only if each shard of `fence` still has the epoch
    /// given with it (see [`Leases`]), checked inside the same transaction;
    /// otherwise writes nothing and answers which shard was lost. Only
    /// PostgreSQL keeps shard leases.
    fn commit_fenced(&mut self, batch: &Batch, fence: &[(u32, i64)]) -> Result<std::result::Result<(), Fenced>> {
        if fence.is_empty() {
            return self.commit(batch).map(Ok);
        }
        Err(StoreError("shard leases (cluster mode) need the PostgreSQL store".into()))
    }
    fn clock(&mut self) -> Result<Option<i64>>;
    /// A text setting the store keeps about itself (`tzdata`: the version
    /// of the time-zone database its boundaries were computed with).
    fn setting(&mut self, name: &str) -> Result<Option<String>>;
    fn set_setting(&mut self, name: &str, value: &str) -> Result<()>;
    /// Claims up to `limit` deliveries for `endpoint` not yet done, due at
    /// `now` and claimed by no one (or by a claim that ran out), for
    /// `claimer` until `claim_until`: no other sender on the store takes
    /// them before then, or before [`Store::record_attempt`]. Oldest first.
    fn claim_deliveries(&mut self, endpoint: &str, claimer: &str, now_micros: i64, limit: usize, claim_until_micros: i64) -> Result<Vec<Delivery>>;
    /// Gives up every claim `claimer` holds (a sender starting again: the
    /// claims of its previous run were abandoned). Returns how many.
    fn release_claims(&mut self, claimer: &str) -> Result<u64>;
    /// Records an attempt, and ends its claim: delivered, or to retry at
    /// `next_attempt_micros` (`None`: given up).
    fn record_attempt(&mut self, id: i64, delivered: bool, next_attempt_micros: Option<i64>, outcome: &str) -> Result<()>;
    /// Deliveries neither done nor given up.
    fn backlog(&mut self) -> Result<u64>;
    /// Adds profiles in one transaction; the ICCIDs already stored are
    /// left as they are and returned.
    fn insert_profiles(&mut self, rows: &[ProfileRow]) -> Result<Vec<String>>;
    /// A page of profiles by ICCID, in one state or all, and how many there
    /// are in all.
    fn profiles(&mut self, state: Option<&str>, limit: usize, offset: usize) -> Result<(Vec<ProfileRow>, u64)>;
    fn profile(&mut self, iccid: &str) -> Result<Option<ProfileRow>>;
    /// Profiles by state and profile type.
    fn profile_counts(&mut self) -> Result<Vec<ProfileCount>>;
    /// Stores a new order and allocates it an `available` profile (of
    /// `profile_type`, when given; the lowest ICCID first), in one
    /// transaction; the row's `iccid` is set to it.
    fn create_order(&mut self, row: &OrderRow, profile_type: Option<&str>) -> Result<OrderCreated>;
    /// Replaces an order's status, subscription, document and update time.
    fn update_order(&mut self, row: &OrderRow) -> Result<()>;
    fn order(&mut self, id: &str) -> Result<Option<OrderRow>>;
    /// The newest order that holds `iccid`.
    fn order_for_iccid(&mut self, iccid: &str) -> Result<Option<OrderRow>>;
    /// Takes the ICCID off a subscription (its eSIM order was cancelled and
    /// the profile went back to the inventory, to be sold again).
    fn clear_iccid(&mut self, subscription: &str) -> Result<()>;
    /// Every order still `pending`, oldest first: what a restart resumes.
    fn pending_orders(&mut self) -> Result<Vec<OrderRow>>;
    /// Sets a profile's state (and EID, when known); false if no such profile.
    fn set_profile_state(&mut self, iccid: &str, state: &str, eid: Option<&str>, updated_at_micros: i64) -> Result<bool>;
}

/// A further connection to an open store (for a thread of its own), without
/// the writer's background work.
pub fn open_secondary(url: &str) -> Result<Box<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?))
    } else {
        Ok(Box::new(PostgresStore::open(url)?))
    }
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://...` (with an
/// optional `schema=NAME` parameter, `rollover` by default). Returns the
/// writer's store and a second connection for reads. The writer holds an
/// exclusive lock on the store (a file lock for SQLite, an advisory lock for
/// PostgreSQL) while it lives: a second writer is refused.
pub fn open(url: &str) -> Result<(Box<dyn Store>, Box<dyn Store>)> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::path::Path::new(path);
        let writer = SqliteStore::open_writer(path)?;
        let reader = SqliteStore::open_reader(path)?;
        Ok((Box::new(writer), Box::new(reader)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let writer = PostgresStore::open_writer(url)?;
        let reader = PostgresStore::open_reader(url)?;
        Ok((Box::new(writer), Box::new(reader)))
    } else {
        Err(StoreError(format!("{url:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE")))
    }
}

/// The PostgreSQL schema a store URL names (`schema=NAME`, `rollover` by
/// default): what the nodes of one cluster share.
pub fn schema_of(url: &str) -> Result<String> {
    postgres::split_schema(url).map(|(_, schema)| schema)
}

/// [`open`] for one node of a cluster: PostgreSQL only, and no
/// single-writer lock, since each node's commits are fenced by the epochs of
/// the shards it leases ([`Store::commit_fenced`]); the server ends the
/// writer's transactions left idle for `idle` (its lease time).
pub fn open_cluster(url: &str, idle: std::time::Duration) -> Result<(Box<dyn Store>, Box<dyn Store>)> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError(format!("{url:?}: cluster mode needs the PostgreSQL store (postgres://...); SQLite has one writer")));
    }
    let writer = PostgresStore::open_cluster_writer(url, idle)?;
    let reader = PostgresStore::open_reader(url)?;
    Ok((Box::new(writer), Box::new(reader)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(key: &str, subscription: &str) -> EventRow {
        EventRow {
            seq: 0,
            subscription: subscription.into(),
            applied_at_micros: 10,
            at_micros: 5,
            key: Some(key.into()),
            body: EventBody::Usage { bytes: 1 << 40, country: Some("CN".into()) },
        }
    }

    /// The contract every store keeps, checked on each implementation.
    fn check_store(open: &dyn Fn() -> Box<dyn Store>) {
        let mut store = open();
        store
            .insert_plans(&[PlanRow { id: "p".into(), version: 2, document: "doc".into(), position: 1, created_at_micros: 3 }])
            .unwrap();
        let batch = Batch {
            subscriptions: vec![SubscriptionRow {
                id: "s1".into(),
                identifiers: Identifiers { imsi: Some("460001234567890".into()), ..Identifiers::default() },
                created_at_micros: 1,
            }],
            events: vec![
                EventRow { seq: 0, subscription: "s1".into(), applied_at_micros: 1, at_micros: 1, key: None, body: EventBody::Purchase { plan_id: "p".into(), plan_version: 2 } },
                usage("r1", "s1"),
                usage("r1", "s2"),
                EventRow {
                    seq: 0,
                    subscription: "s1".into(),
                    applied_at_micros: 11,
                    at_micros: 11,
                    key: None,
                    body: EventBody::Grant { kind: "gift".into(), bytes: 7, expires_micros: EXPIRES_PERIOD_END },
                },
                EventRow { seq: 0, subscription: "s1".into(), applied_at_micros: 12, at_micros: 12, key: None, body: EventBody::Suspend },
                EventRow {
                    seq: 0,
                    subscription: "s1".into(),
                    applied_at_micros: 12,
                    at_micros: 12,
                    key: Some("addon:a1".into()),
                    body: EventBody::Addon { addon: "jp-1gb".into(), kind: "addon".into(), bytes: 1 << 30, expires_micros: EXPIRES_NEVER, price_minor: i64::MAX },
                },
                EventRow { seq: 0, subscription: "s1".into(), applied_at_micros: 12, at_micros: 12, key: None, body: EventBody::Refund { minor: 990, reason: "order o1 cancelled".into() } },
            ],
            notifications: Vec::new(),
            clock_micros: Some(99),
        };
        store.commit(&batch).unwrap();
        // Some events may be indexed behind the log and some in the tail:
        // reads see both.
        std::thread::sleep(std::time::Duration::from_millis(150));
        let note = EventBody::Network { note: "Disconnect-Request to 127.0.0.1:3799: ACK".into() };
        store.commit(&Batch { events: vec![EventRow { seq: 0, subscription: "s1".into(), applied_at_micros: 12, at_micros: 12, key: Some("acct-stop:0:s".into()), body: note }], ..Batch::default() }).unwrap();
        drop(store);

        let mut store = open();
        assert_eq!(store.clock().unwrap(), Some(99));
        assert_eq!(store.setting("tzdata").unwrap(), None);
        store.set_setting("tzdata", "2026a").unwrap();
        store.set_setting("tzdata", "2026f").unwrap();
        assert_eq!(store.setting("tzdata").unwrap().as_deref(), Some("2026f"));
        assert_eq!(store.load_plans().unwrap()[0].version, 2);
        let subscriptions = store.load_subscriptions().unwrap();
        assert_eq!(subscriptions.len(), 1);
        assert_eq!(subscriptions[0].identifiers.imsi.as_deref(), Some("460001234567890"));
        assert_eq!(store.subscription("s1").unwrap().as_ref(), subscriptions.first(), "one subscription read by its id");
        assert_eq!(store.subscription("nobody").unwrap(), None);
        let profile = |iccid: &str, kind: Option<&str>| ProfileRow {
            iccid: iccid.into(),
            profile_type: kind.map(String::from),
            imsi: None,
            msisdn: None,
            state: "available".into(),
            eid: None,
            matching_id: None,
            updated_at_micros: 7,
        };
        let rows = [profile("89445000000000000019", Some("travel")), profile("8944500000000000006", None)];
        assert_eq!(store.insert_profiles(&rows).unwrap(), Vec::<String>::new());
        let again = [profile("89445000000000000027", Some("travel")), profile("89445000000000000019", Some("other"))];
        assert_eq!(store.insert_profiles(&again).unwrap(), ["89445000000000000019"], "a stored ICCID is left as it is");
        let (page, total) = store.profiles(Some("available"), 2, 1).unwrap();
        assert_eq!(total, 3);
        assert_eq!(page.iter().map(|p| p.iccid.as_str()).collect::<Vec<_>>(), ["89445000000000000027", "8944500000000000006"], "by ICCID, as text");
        assert_eq!(store.profile("89445000000000000019").unwrap().and_then(|p| p.profile_type), Some("travel".into()));
        assert_eq!(store.profile("89445000000000000035").unwrap(), None);
        assert_eq!(store.profiles(Some("installed"), 10, 0).unwrap().1, 0);
        assert!(store.set_profile_state("89445000000000000027", "installed", Some("89049032000000000000000000001234"), 9).unwrap());
        assert!(!store.set_profile_state("89445000000000000035", "installed", None, 9).unwrap(), "no such profile");
        let installed = store.profile("89445000000000000027").unwrap().unwrap();
        assert_eq!((installed.state.as_str(), installed.eid.as_deref(), installed.updated_at_micros), ("installed", Some("89049032000000000000000000001234"), 9));
        store.set_profile_state("89445000000000000027", "available", None, 10).unwrap();
        assert_eq!(store.profile("89445000000000000027").unwrap().unwrap().eid.as_deref(), Some("89049032000000000000000000001234"), "an EID not given is kept");
        store.set_profile_state("89445000000000000027", "available", None, 10).unwrap();
        let counts = store.profile_counts().unwrap();
        assert_eq!(counts, [ProfileCount { state: "available".into(), profile_type: None, count: 1 }, ProfileCount { state: "available".into(), profile_type: Some("travel".into()), count: 2 }]);
        check_orders(store.as_mut());
        let events = store.events_of("s1").unwrap();
        assert_eq!(events.len(), 7);
        assert_eq!(events[0].body, EventBody::Purchase { plan_id: "p".into(), plan_version: 2 });
        assert_eq!(events[1].body, EventBody::Usage { bytes: 1 << 40, country: Some("CN".into()) });
        assert_eq!(events[1].key.as_deref(), Some("r1"));
        assert_eq!((events[1].applied_at_micros, events[1].at_micros), (10, 5));
        assert_eq!(events[2].body, EventBody::Grant { kind: "gift".into(), bytes: 7, expires_micros: EXPIRES_PERIOD_END });
        assert_eq!(events[3].body, EventBody::Suspend);
        assert_eq!(events[4].body, EventBody::Addon { addon: "jp-1gb".into(), kind: "addon".into(), bytes: 1 << 30, expires_micros: EXPIRES_NEVER, price_minor: i64::MAX });
        assert_eq!(events[5].body, EventBody::Refund { minor: 990, reason: "order o1 cancelled".into() });
        assert_eq!(events[6].body, EventBody::Network { note: "Disconnect-Request to 127.0.0.1:3799: ACK".into() });
        assert_eq!(events[6].key.as_deref(), Some("acct-stop:0:s"));
        assert_eq!(store.events_of("s2").unwrap().len(), 1);
        let mut all = Vec::new();
        store.load_events(&mut |e| all.push(e.seq)).unwrap();
        assert_eq!(all.len(), 8);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "events come back in commit order");

        check_checkpoints(store.as_mut(), &all);

        // A range of one subscription's events, and marks to start from.
        let s1: Vec<i64> = store.events_of("s1").unwrap().iter().map(|e| e.seq).collect();
        let between: Vec<i64> = store.events_between("s1", s1[1], s1[4]).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(between, s1[2..=4]);
        assert!(store.events_between("s1", s1[6], i64::MAX).unwrap().is_empty());
        let mark = |seq: i64, lines: i64, state: &[u8]| LedgerMark { subscription: "s1".into(), seq, lines, at_micros: seq * 10, state: state.to_vec() };
        store.put_ledger_marks(&[mark(s1[4], 9, b"b"), mark(s1[2], 4, b"a")]).unwrap();
        store.put_ledger_marks(&[mark(s1[4], 9, b"b2")]).unwrap();
        assert_eq!(store.ledger_marks("s1").unwrap(), [MarkMeta { seq: s1[2], lines: 4, at_micros: s1[2] * 10 }, MarkMeta { seq: s1[4], lines: 9, at_micros: s1[4] * 10 }]);
        assert_eq!(store.ledger_mark("s1", s1[4]).unwrap().as_deref(), Some(&b"b2"[..]));
        assert!(store.ledger_marks("s2").unwrap().is_empty());
        assert_eq!(store.ledger_mark("s1", s1[3]).unwrap(), None);

        // Keys looked up in the store, from a seq on.
        let wanted = [("s1".to_string(), "r1".to_string()), ("s1".to_string(), "nope".to_string()), ("s2".to_string(), "r9".to_string())];
        let found = store.find_keys(&wanted, 0).unwrap();
        assert_eq!(found.iter().map(|e| (e.subscription.as_str(), e.key.as_deref())).collect::<Vec<_>>(), [("s1", Some("r1"))]);
        assert_eq!(found[0].body, EventBody::Usage { bytes: 1 << 40, country: Some("CN".into()) });
        assert!(store.find_keys(&wanted, s1[1] + 1).unwrap().is_empty(), "before the window");

        // The outbox: a notification made twice is stored once.
        let note = |key: &str| NotificationRow { key: key.into(), endpoint: "hook".into(), payload: "{}".into(), created_at_micros: 1 };
        store.commit(&Batch { notifications: vec![note("n1"), note("n2")], ..Batch::default() }).unwrap();
        store.commit(&Batch { notifications: vec![note("n1")], ..Batch::default() }).unwrap();
        assert_eq!(store.backlog().unwrap(), 2);
        let due = store.claim_deliveries("hook", "a", 100, 10, 1_000).unwrap();
        assert_eq!(due.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        assert!(store.claim_deliveries("hook", "b", 100, 10, 1_000).unwrap().is_empty(), "claimed by a until 1000");
        store.record_attempt(due[0].id, true, None, "200").unwrap();
        store.record_attempt(due[1].id, false, Some(500), "503").unwrap();
        assert_eq!(store.claim_deliveries("hook", "b", 100, 10, 1_000).unwrap().len(), 0, "n1 is done, n2 waits until 500");
        assert!(store.claim_deliveries("other", "b", 500, 10, 1_000).unwrap().is_empty(), "each endpoint reads its own");
        let claimed = store.claim_deliveries("hook", "a", 500, 10, 2_000).unwrap();
        assert_eq!((claimed.len(), claimed[0].attempts), (1, 1));
        assert!(store.claim_deliveries("hook", "b", 1_999, 10, 3_000).unwrap().is_empty());
        let taken_over = store.claim_deliveries("hook", "b", 2_000, 10, 3_000).unwrap();
        assert_eq!(taken_over.len(), 1, "a claim that ran out is taken by another sender");
        assert_eq!(store.release_claims("a").unwrap(), 0, "b holds it now");
        assert_eq!(store.release_claims("b").unwrap(), 1);
        let retry = store.claim_deliveries("hook", "a", 500, 10, 1_000).unwrap();
        assert_eq!(retry.len(), 1, "released: due again at once");
        store.record_attempt(retry[0].id, false, None, "gave up").unwrap();
        assert_eq!(store.backlog().unwrap(), 0);
    }

    /// Checkpoints: parts, then the mark that makes them one; two kept;
    /// the log's tail after one.
    fn check_checkpoints(store: &mut dyn Store, seqs: &[i64]) {
        assert_eq!(store.max_seq().unwrap(), *seqs.last().unwrap());
        assert_eq!(store.count_events(seqs[5], i64::MAX).unwrap(), (seqs.len() - 6) as i64);
        assert_eq!(store.count_events(seqs[5], seqs[7]).unwrap(), 2, "none after upto");
        let mut tail = Vec::new();
        store.load_events_after(seqs[5], &mut |e| tail.push(e.seq)).unwrap();
        assert_eq!(tail, seqs[6..], "the events after one");
        let (seq, applied_at) = store.event_at_or_after(seqs[1]).unwrap().unwrap();
        assert_eq!((seq, applied_at), (seqs[1], 10));
        assert_eq!(store.event_at_or_after(seqs.last().unwrap() + 1).unwrap(), None);
        assert!(store.checkpoints().unwrap().is_empty());
        let meta = |upto_seq: i64, parts: u32| CheckpointMeta { upto_seq, format: 1, parts, digest: format!("d{upto_seq}"), created_at_micros: 5 };
        for upto in [3, 5, 7] {
            store.put_checkpoint_part(upto, 0, &[upto as u8; 3]).unwrap();
            store.put_checkpoint_part(upto, 1, b"tail").unwrap();
            store.finish_checkpoint(&meta(upto, 2)).unwrap();
        }
        // Parts of one never finished (a crash while it was written).
        store.put_checkpoint_part(9, 0, b"orphan").unwrap();
        assert_eq!(store.checkpoints().unwrap(), [meta(7, 2), meta(5, 2)], "the newest two, newest first");
        assert_eq!(store.checkpoint_part(7, 0).unwrap(), Some(vec![7u8; 3]));
        assert_eq!(store.checkpoint_part(3, 0).unwrap(), None, "an older one is dropped with its parts");
        store.put_checkpoint_part(11, 0, b"x").unwrap();
        store.finish_checkpoint(&meta(11, 1)).unwrap();
        assert_eq!(store.checkpoint_part(9, 0).unwrap(), None, "orphan parts go at the next finish");
        assert_eq!(store.checkpoints().unwrap().len(), 2);
    }

    /// Orders: one profile each, never a second for the same id.
    fn check_orders(store: &mut dyn Store) {
        let order = |id: &str, at: i64| OrderRow {
            id: id.into(),
            status: "pending".into(),
            iccid: None,
            subscription: None,
            document: format!("{{\"id\":\"{id}\"}}"),
            created_at_micros: at,
            updated_at_micros: at,
        };
        // Two available profiles of type travel, one untyped.
        let OrderCreated::Created(first) = store.create_order(&order("o1", 20), Some("travel")).unwrap() else { panic!("o1 not created") };
        assert_eq!((first.iccid.as_str(), first.state.as_str()), ("89445000000000000019", "allocated"), "the lowest ICCID of the type");
        assert_eq!(store.profile("89445000000000000019").unwrap().unwrap().state, "allocated");
        let OrderCreated::Exists(again) = store.create_order(&order("o1", 21), Some("travel")).unwrap() else { panic!("o1 created twice") };
        assert_eq!((again.iccid.as_deref(), again.created_at_micros), (Some("89445000000000000019"), 20));
        let OrderCreated::Created(second) = store.create_order(&order("o2", 22), Some("travel")).unwrap() else { panic!("o2 not created") };
        assert_eq!(second.iccid, "89445000000000000027");
        assert_eq!(store.create_order(&order("o3", 23), Some("travel")).unwrap(), OrderCreated::NoProfile, "none of the type left");
        assert_eq!(store.order("o3").unwrap(), None, "nothing stored without a profile");
        let OrderCreated::Created(untyped) = store.create_order(&order("o4", 24), None).unwrap() else { panic!("o4 not created") };
        assert_eq!(untyped.iccid, "8944500000000000006");
        let mut done = store.order("o2").unwrap().unwrap();
        (done.status, done.subscription, done.document, done.updated_at_micros) = ("completed".into(), Some("s9".into()), "{}".into(), 30);
        store.update_order(&done).unwrap();
        assert_eq!(store.order("o2").unwrap().unwrap(), done);
        assert_eq!(store.pending_orders().unwrap().iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["o1", "o4"]);
        assert_eq!(store.order_for_iccid("89445000000000000027").unwrap().map(|o| o.id), Some("o2".into()));
        assert_eq!(store.order_for_iccid("89445000000000000035").unwrap(), None);
        store.clear_iccid("s1").unwrap();
        assert_eq!(store.subscription("s1").unwrap().unwrap().identifiers.imsi.as_deref(), Some("460001234567890"), "only the ICCID goes");
        for iccid in ["89445000000000000019", "89445000000000000027", "8944500000000000006"] {
            store.set_profile_state(iccid, "available", None, 31).unwrap();
        }
    }

    #[test]
    fn sqlite_keeps_the_store_contract() {
        let dir = std::env::temp_dir().join(format!("rollover-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("rollover.db");
        check_store(&|| Box::new(SqliteStore::open_writer(&path).unwrap()));
        // The subscription index is derived: without its file, reads are the same.
        let before = SqliteStore::open_reader(&path).unwrap().events_of("s1").unwrap();
        let mut index = path.as_os_str().to_owned();
        index.push("-index");
        std::fs::remove_file(&index).unwrap();
        let mut store = SqliteStore::open_writer(&path).unwrap();
        assert_eq!(store.events_of("s1").unwrap(), before);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(store.events_of("s1").unwrap(), before, "rebuilt or not, the same events");
        // One writer at a time: a second is refused while the first lives.
        let second = SqliteStore::open_writer(&path).err().expect("a second writer is refused");
        assert!(second.0.contains("in use by another rollover process"), "{second}");
        drop(store);
        drop(SqliteStore::open_writer(&path).expect("free again once the first writer is gone"));
    }

    #[test]
    fn postgres_keeps_the_store_contract() {
        let schema = format!("store_test_{}", std::process::id());
        let base = std::env::var("ROLLOVER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let mut admin = ::postgres::Client::connect(&base, ::postgres::NoTls).expect("the local PostgreSQL is running (127.0.0.1:5432, database test)");
        admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).unwrap();
        let url = format!("{base}?schema={schema}");
        check_store(&|| Box::new(PostgresStore::open(&url).unwrap()));
        // The writer's indexer moves the log's (subscription, seq) from the
        // queue into the index; reads answer the same before and after.
        let mut store = PostgresStore::open(&url).unwrap();
        let wanted = [("s1".to_string(), "r1".to_string()), ("s2".to_string(), "r9".to_string())];
        let before = (store.events_of("s1").unwrap(), store.events_of("s2").unwrap(), store.find_keys(&wanted, 0).unwrap());
        let queued = |admin: &mut ::postgres::Client| admin.query_one(&format!("SELECT count(*) FROM {schema}.event_pending"), &[]).unwrap().get::<_, i64>(0);
        assert!(queued(&mut admin) > 0, "what the contract committed waits for the index");
        // A writer runs its indexer until nothing is pending.
        let index_all = |admin: &mut ::postgres::Client, what: &str| {
            let writer = PostgresStore::open_writer(&url).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while queued(admin) > 0 {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            drop(writer);
        };
        index_all(&mut admin, "the indexer indexes every pending range");
        let after = (store.events_of("s1").unwrap(), store.events_of("s2").unwrap(), store.find_keys(&wanted, 0).unwrap());
        assert_eq!(before, after);
        assert!(!after.0.is_empty() && !after.2.is_empty());
        // The index is keyed by a hash of the id; two ids may share one. An
        // index row that points s1's hash at s2's events (as a shared hash
        // would) changes no read: each checks the event's subscription.
        let s1_hash: i64 = admin.query_one("SELECT hashtextextended('s1', 0)", &[]).unwrap().get(0);
        for event in &after.1 {
            admin.execute(&format!("INSERT INTO {schema}.event_index (subscription_hash, seq) VALUES ($1, $2)"), &[&s1_hash, &event.seq]).unwrap();
        }
        let wanted_s2_key_as_s1 = [("s1".to_string(), after.1[0].key.clone().unwrap_or_default())];
        assert_eq!((store.events_of("s1").unwrap(), store.find_keys(&wanted, 0).unwrap()), (after.0.clone(), after.2.clone()));
        assert!(store.find_keys(&wanted_s2_key_as_s1, 0).unwrap().iter().all(|e| e.subscription == "s1"));
        let shard = crate::shard_of("s1");
        let mut loaded = Vec::new();
        store.load_shard(shard, &mut |_| {}, &mut |e| loaded.push(e)).unwrap();
        assert!(loaded.iter().all(|e| crate::shard_of(&e.subscription) == shard), "another shard's events are not loaded");
        assert_eq!(loaded.iter().filter(|e| e.subscription == "s1").cloned().collect::<Vec<_>>(), after.0);
        // A range indexed already (as ranges written before the seq blocks
        // could overlap) is indexed again without a fault, and changes
        // nothing.
        let (first, last) = (after.0[0].seq, after.0[after.0.len() - 1].seq);
        admin.execute(&format!("INSERT INTO {schema}.event_pending (lo, hi) VALUES ($1, $2)"), &[&first, &last]).unwrap();
        index_all(&mut admin, "an overlapping range is indexed all the same");
        assert_eq!((store.events_of("s1").unwrap(), store.find_keys(&wanted, 0).unwrap()), (after.0.clone(), after.2.clone()));
        // Seqs come in blocks of 64: a commit's events in their order, and
        // a later commit's after all of an earlier one's, across blocks.
        for n in [1, 70, 64] {
            let events = (0..n).map(|k| usage(&format!("block-{n}-{k}"), "s3")).collect();
            store.commit(&Batch { events, ..Batch::default() }).unwrap();
        }
        let keys: Vec<String> = store.events_of("s3").unwrap().into_iter().map(|e| e.key.unwrap()).collect();
        let expected: Vec<String> = [1, 70, 64].into_iter().flat_map(|n| (0..n).map(move |k| format!("block-{n}-{k}"))).collect();
        assert_eq!(keys, expected, "in commit order, each commit's in its own order");
        // One writer per schema at a time.
        let writer = PostgresStore::open_writer(&url).unwrap();
        let second = PostgresStore::open_writer(&url).err().expect("a second writer is refused");
        assert!(second.0.contains("in use by another rollover process"), "{second}");
        drop(writer);
        drop(PostgresStore::open_writer(&url).expect("free again once the first writer is gone"));
        // Senders of two nodes claiming at once never take one delivery both.
        let mut store = PostgresStore::open(&url).unwrap();
        let notes: Vec<NotificationRow> =
            (0..300).map(|n| NotificationRow { key: format!("race-{n}"), endpoint: "race".into(), payload: "{}".into(), created_at_micros: 1 }).collect();
        store.commit(&Batch { notifications: notes, ..Batch::default() }).unwrap();
        let claimers: Vec<_> = ["x", "y", "z"]
            .into_iter()
            .map(|claimer| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut store = PostgresStore::open(&url).unwrap();
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store.claim_deliveries("race", claimer, 10, 7, i64::MAX).unwrap();
                        if claimed.is_empty() {
                            return mine;
                        }
                        mine.extend(claimed.into_iter().map(|d| d.key));
                    }
                })
            })
            .collect();
        let mut all: Vec<String> = claimers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        assert_eq!(all.len(), 300, "each delivery claimed once");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 300);
        admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    }

    /// A node that lost its shard cannot commit for it, whatever it
    /// believes; a takeover waits for a commit already under way; renewing,
    /// releasing and taking again each do what the lease table says.
    #[test]
    fn shard_leases_fence_a_node_that_lost_its_shard() {
        use std::time::Duration;
        let schema = format!("lease_test_{}", std::process::id());
        let base = std::env::var("ROLLOVER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let mut admin = ::postgres::Client::connect(&base, ::postgres::NoTls).expect("the local PostgreSQL is running (127.0.0.1:5432, database test)");
        admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).unwrap();
        let url = format!("{base}?schema={schema}");
        let (mut a, mut b) = (Leases::open(&url, "a").unwrap(), Leases::open(&url, "b").unwrap());
        let (mut store_a, mut store_b) = (PostgresStore::open(&url).unwrap(), PostgresStore::open(&url).unwrap());
        let long = Duration::from_secs(60);
        assert_eq!(a.all().unwrap().len(), SHARDS as usize, "a row for every shard");
        let first = a.acquire(3, long).unwrap().expect("a free shard is taken");
        assert_eq!(b.acquire(3, long).unwrap(), None, "not while another node holds it");
        assert!(a.acquire(SHARDS, long).is_err(), "no shard past the last");
        let batch = |key: &str| Batch { events: vec![usage(key, "s1")], ..Batch::default() };
        store_a.commit_fenced(&batch("r1"), &[(3, first)]).unwrap().expect("the holder commits");
        // A lease that runs out is taken over, and its old holder is fenced.
        let short = a.acquire(3, Duration::from_millis(1)).unwrap().expect("taken again by its holder");
        assert_eq!(short, first + 1, "taking again bumps the epoch");
        std::thread::sleep(Duration::from_millis(20));
        let second = b.acquire(3, long).unwrap().expect("an expired lease is taken over");
        assert_eq!(second, short + 1);
        assert_eq!(a.renew(&[(3, short)], long).unwrap(), vec![3], "the old holder's renewal is refused");
        let fenced = store_a.commit_fenced(&batch("r2"), &[(3, short), (4, 0)]).unwrap().expect_err("a stale epoch commits nothing");
        assert_eq!(fenced, Fenced { shard: 3, held: short, current: second });
        assert_eq!(store_a.events_of("s1").unwrap().len(), 1, "nothing of the fenced batch was written");
        assert!(SqliteStore::open(&std::env::temp_dir().join(format!("lease-{}.db", std::process::id()))).unwrap().commit_fenced(&batch("r3"), &[(3, 1)]).is_err(), "SQLite keeps no leases");
        // A commit under way holds the lease row: the takeover waits for it.
        assert!(b.release(3, second).unwrap());
        let mut open = ::postgres::Client::connect(&base, ::postgres::NoTls).unwrap();
        let six = b.acquire(6, long).unwrap().expect("a free shard");
        open.batch_execute(&format!("SET search_path TO {schema}; BEGIN; SELECT epoch FROM shard_lease WHERE shard_no IN (3, 5, 6) FOR KEY SHARE")).unwrap();
        let five = Leases::open(&url, "d").unwrap().acquire(5, long).err();
        assert!(five.is_some_and(|e| e.to_string().contains("lock timeout")), "taking a shard waits for the commit under way, and gives up after lock_timeout");
        let taker = std::thread::spawn(move || a.acquire(3, long).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        assert!(!taker.is_finished(), "the bump waits for the commit under way");
        assert_eq!(b.renew(&[(6, six)], long).unwrap(), Vec::<u32>::new(), "a renewal does not wait for a commit");
        let seen: i64 = open.query_one("SELECT epoch FROM shard_lease WHERE shard_no = 3", &[]).unwrap().get(0);
        assert_eq!(seen, second, "the commit under way still sees its epoch");
        open.batch_execute("COMMIT").unwrap();
        assert_eq!(taker.join().unwrap(), Some(second + 1), "a released lease is taken at once, by the epoch after");
        assert_eq!(b.renew(&[(3, second)], long).unwrap(), vec![3]);
        store_b.commit_fenced(&batch("r4"), &[(3, second)]).unwrap().expect_err("the releasing node is fenced too");
        let leases = b.all().unwrap();
        assert_eq!((leases[3].owner.as_deref(), leases[3].epoch), (Some("a"), second + 1));
        assert!(leases[3].remaining_ms > 50_000 && leases[4].remaining_ms < 0, "{:?} {:?}", leases[3], leases[4]);
        // Membership: a heartbeat keeps a node live until it runs out or
        // the node leaves.
        let mut c = Leases::open(&url, "c").unwrap();
        assert_eq!(b.live_nodes().unwrap(), Vec::<String>::new(), "no node has said it is alive");
        b.heartbeat(long).unwrap();
        c.heartbeat(long).unwrap();
        assert_eq!(b.live_nodes().unwrap(), ["b", "c"]);
        c.heartbeat(Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.live_nodes().unwrap(), ["b"], "a heartbeat that ran out is not live");
        c.heartbeat(long).unwrap();
        assert_eq!(b.live_nodes().unwrap(), ["b", "c"], "a node that beats again is live again");
        b.leave().unwrap();
        assert_eq!(c.live_nodes().unwrap(), ["c"], "a node that left is gone at once");
        // The audit: the one commit that went through was under its epoch;
        // a commit under an epoch taken over since is found.
        assert_eq!(c.audit().unwrap(), Audit { commits: 1, stale: 0 }, "fenced commits roll their audit row back with them");
        admin.execute(&format!("INSERT INTO {schema}.fenced_commits (shards, epochs) VALUES ('{{3}}', '{{{first}}}')"), &[]).unwrap();
        assert_eq!(c.audit().unwrap(), Audit { commits: 2, stale: 1 });
        assert_eq!(c.prune_audit(Duration::from_secs(3600)).unwrap(), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.prune_audit(Duration::from_millis(10)).unwrap(), 2);
        // A node stalled in the middle of a commit's statement (a COPY half
        // sent: its transaction active, waiting for its client) holds its
        // lease rows; a takeover that times out on one ends that session,
        // and the next try takes the shard. An idle transaction of another
        // client is left alone.
        let mut stalled = PostgresStore::open(&url).unwrap();
        let client = stalled.conn().unwrap();
        client.batch_execute("BEGIN; SELECT epoch FROM shard_lease WHERE shard_no = 9 FOR KEY SHARE").unwrap();
        let copy = client.copy_in("COPY event_pending (lo, hi) FROM STDIN BINARY").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let refused = c.acquire(9, Duration::from_millis(200)).unwrap_err().to_string();
        assert!(refused.contains("lock timeout") && refused.contains("1 stalled session(s) of this store ended"), "{refused}");
        assert!(c.acquire(9, long).unwrap().is_some(), "taken once the stalled session is gone");
        drop(copy);
        assert!(stalled.conn().unwrap().is_closed() || stalled.conn().unwrap().batch_execute("SELECT 1").is_err(), "the stalled session was ended");
        open.batch_execute("BEGIN; SELECT epoch FROM shard_lease WHERE shard_no = 10 FOR KEY SHARE").unwrap();
        let refused = c.acquire(10, Duration::from_millis(200)).unwrap_err().to_string();
        assert!(refused.contains("0 stalled session(s)"), "{refused}");
        open.batch_execute("ROLLBACK").unwrap();
        admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    }
}
