//! The durable log behind the live service.
//!
//! The store keeps what was accepted, never what it means: plan documents,
//! subscriptions, and every event applied to a subscription (purchases,
//! usage records, grants, lifecycle events) in the order it was applied,
//! with the service clock at that moment. Balances, boundaries and the ledger
//! are a deterministic function of that log, recomputed by `rollover-core`.
//! No business rule lives here.

mod sqlite;

use std::fmt;

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
    Install,
    FirstUse,
    ChangePlan { plan_id: String, plan_version: u32 },
    Suspend,
    Resume,
    Cancel,
}

impl EventBody {
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Purchase { .. } => "purchase",
            EventBody::Usage { .. } => "usage",
            EventBody::Grant { .. } => "grant",
            EventBody::Install => "install",
            EventBody::FirstUse => "first_use",
            EventBody::ChangePlan { .. } => "change_plan",
            EventBody::Suspend => "suspend",
            EventBody::Resume => "resume",
            EventBody::Cancel => "cancel",
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

/// What one group commit writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub subscriptions: Vec<SubscriptionRow>,
    pub events: Vec<EventRow>,
    /// The simulated clock, when it moved.
    pub clock_micros: Option<i64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty() && self.events.is_empty() && self.clock_micros.is_none()
    }

    pub fn append(&mut self, other: Batch) {
        self.subscriptions.extend(other.subscriptions);
        self.events.extend(other.events);
        if other.clock_micros.is_some() {
            self.clock_micros = other.clock_micros;
        }
    }
}

/// The system of record. One writer at a time; `commit` is atomic and
/// durable (fsync) when it returns.
pub trait Store: Send {
    fn load_plans(&mut self) -> Result<Vec<PlanRow>>;
    fn insert_plans(&mut self, rows: &[PlanRow]) -> Result<()>;
    fn load_subscriptions(&mut self) -> Result<Vec<SubscriptionRow>>;
    /// Every event, in `seq` order.
    fn load_events(&mut self, visit: &mut dyn FnMut(EventRow)) -> Result<()>;
    /// One subscription's events, in `seq` order.
    fn events_of(&mut self, subscription: &str) -> Result<Vec<EventRow>>;
    fn commit(&mut self, batch: &Batch) -> Result<()>;
    fn clock(&mut self) -> Result<Option<i64>>;
}
