//! The values the service takes and answers with: what the HTTP API and the
//! network gateway build and read.

use rollover_core::engine::Status;
use rollover_core::ledger::{Entry, Refusal, RejectReason};
use rollover_core::{Country, Instant, PlanIx};
use rollover_store::Identifiers;

use crate::plans::PlanVersion;

#[derive(Debug, Clone)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct UsageRecord {
    pub id: String,
    pub subscription: String,
    pub at: Instant,
    pub bytes: u64,
    pub country: Option<Country>,
    /// A cumulative counter report (RADIUS accounting). When set, `id` and
    /// `bytes` are not read: the worker rates the counter's growth since the
    /// session's last report, under the key `acct:{total}:{session}`
    /// (`acct-stop:` for a Stop), so a report is rated once however often it
    /// is sent, and the counters survive a restart with the log.
    pub counter: Option<Counter>,
}

impl UsageRecord {
    pub fn counter(subscription: String, at: Instant, country: Option<Country>, counter: Counter) -> UsageRecord {
        UsageRecord { id: String::new(), subscription, at, bytes: 0, country, counter: Some(counter) }
    }
}

/// One report of a session's cumulative octet counter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Counter {
    /// The session's name, unique per network element (rollover uses
    /// `{NAS address}/{Acct-Session-Id}`).
    pub session: String,
    /// Octets so far in the session, both directions.
    pub total: u64,
    /// The session ends with this report; later reports are not rated.
    pub stop: bool,
}

/// A counter session that has not stopped, as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCounter {
    pub subscription: String,
    /// The session's name as reported (`{NAS}/{Acct-Session-Id}` for RADIUS).
    pub session: String,
    pub total: u64,
}

/// A subscription's status changed: sent to the watcher named in
/// [`Config::status_changes`] (the RADIUS enforcement task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub subscription: String,
    pub from: Status,
    pub to: Status,
    pub at: Instant,
    /// For a change to `throttled`: the rate the plan allows, in kbit/s.
    pub throttle_kbps: Option<u32>,
}

/// The most bytes one usage record, session report or counter growth may
/// carry (1 TiB): anything larger is a counter error, not usage.
pub const MAX_RECORD_BYTES: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum UsageResult {
    /// Stored and rated. `rejected_bytes` were refused by the plan (not
    /// covered, suspended, exhausted, ...), for `rejected_reason`.
    Accepted { drawn_bytes: u64, throttled_bytes: u64, rejected_bytes: u64, late: bool, rejected_reason: Option<RejectReason> },
    /// The same record was accepted before: nothing changes.
    Duplicate,
    /// The id was accepted before with other bytes, another instant or
    /// another country: the new record is not rated.
    Conflict,
    /// Not stored and not rated.
    Rejected(UsageRejection),
}

/// Why a usage record was not accepted at all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum UsageRejection {
    UnknownSubscription(String),
    /// Stamped further back than the maximum age.
    TooOld,
    /// Stamped further ahead than the allowed clock skew.
    InFuture,
    /// More than [`MAX_RECORD_BYTES`] in one record.
    TooLarge { bytes: u64 },
    /// A counter report after the session's Stop.
    SessionStopped { session: String },
    /// A cumulative counter lower than the last report's.
    CounterBackwards { session: String, from: u64, to: u64 },
}

impl UsageRejection {
    /// Every code a rejected record may have, and `id_reused` of a conflict.
    pub const CODES: [&'static str; 7] = ["unknown_subscription", "too_old", "in_future", "too_large", "session_stopped", "counter_backwards", "id_reused"];

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            UsageRejection::UnknownSubscription(_) => "unknown_subscription",
            UsageRejection::TooOld => "too_old",
            UsageRejection::InFuture => "in_future",
            UsageRejection::TooLarge { .. } => "too_large",
            UsageRejection::SessionStopped { .. } => "session_stopped",
            UsageRejection::CounterBackwards { .. } => "counter_backwards",
        }
    }
}

impl std::fmt::Display for UsageRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageRejection::UnknownSubscription(id) => write!(f, "unknown subscription \"{id}\""),
            UsageRejection::TooOld => write!(f, "too old: stamped before the maximum age"),
            UsageRejection::InFuture => write!(f, "in the future beyond the allowed clock skew"),
            UsageRejection::TooLarge { bytes } => write!(f, "{bytes} bytes in one record; at most {MAX_RECORD_BYTES} (1 TiB)"),
            UsageRejection::SessionStopped { session } => write!(f, "session {session} has already stopped; the report is not rated"),
            UsageRejection::CounterBackwards { session, from, to } => {
                write!(f, "the counter of session {session} went backwards, from {from} to {to} octets; not rated")
            }
        }
    }
}

/// A lifecycle event for `POST /v1/subscriptions/{id}/events`.
#[derive(Debug, Clone)]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum LifecycleEvent {
    Install,
    FirstUse,
    Grant { kind: rollover_core::Kind, bytes: u64, expires: rollover_core::GrantExpiry },
    /// An add-on of the catalog bought (`addon` is its id).
    Addon { addon: String, kind: rollover_core::Kind, bytes: u64, expires: rollover_core::GrantExpiry, price_minor: i64 },
    /// Fees paid back, and why.
    Refund { minor: i64, reason: String },
    ChangePlan(String),
    Suspend,
    Resume,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum EventOutcome {
    Applied,
    /// Stored, but the subscription's state did not allow it.
    Refused(Refusal),
}

#[derive(Debug, Clone)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BalanceBucket {
    pub id: u32,
    pub kind: String,
    pub granted_bytes: u64,
    pub remaining_bytes: u64,
    pub expires_at: Option<Instant>,
    pub rolls_over: bool,
    pub carry_expires_at: Option<Instant>,
}

/// A subscription's balance at the service clock's "now": the same numbers
/// `simulate` prints.
#[derive(Debug, Clone)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Balance {
    pub id: String,
    pub plan: PlanVersion,
    pub at: Instant,
    pub status: Status,
    pub total_bytes: u64,
    pub daily_remaining_bytes: Option<u64>,
    pub expires_at: Option<Instant>,
    pub buckets: Vec<BalanceBucket>,
    /// What the current period's end would do if no more data were used.
    pub period_end: Option<rollover_core::PeriodEndPreview>,
    /// When a plan still waiting to start lapses if it has not started.
    pub lapses_at: Option<Instant>,
    pub charges_minor: i64,
    pub fees_minor: i64,
    pub throttled_bytes: u64,
    pub rejected_bytes: u64,
}

/// One step of an online charging session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum SessionOp {
    Start { requested_bytes: Option<u64> },
    /// Report bytes used since the last report and ask for more.
    Update { used_bytes: u64, requested_bytes: Option<u64>, request_number: u32 },
    /// Report the last bytes used and release the rest.
    End { used_bytes: u64, request_number: u32 },
}

impl SessionOp {
    /// The bytes asked for (none is the most a session may hold; an end
    /// asks for nothing), and the usage reported with its request number.
    pub fn parts(self) -> (Option<u64>, Option<(u64, u32)>) {
        match self {
            SessionOp::Start { requested_bytes } => (requested_bytes, None),
            SessionOp::Update { used_bytes, requested_bytes, request_number } => (requested_bytes, Some((used_bytes, request_number))),
            SessionOp::End { used_bytes, request_number } => (Some(0), Some((used_bytes, request_number))),
        }
    }
}

/// What the gateway must do when the grant is the last one (or nothing is
/// granted): the plan's exhaustion action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum FinalAction {
    Terminate,
    Throttle { throttle_kbps: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SessionAnswer {
    pub session: String,
    pub subscription: String,
    pub granted_bytes: u64,
    pub validity_seconds: u64,
    /// Nothing could be granted: the data is used up, or the subscription
    /// cannot use data now.
    pub credit_limit_reached: bool,
    /// Set on the last grant: what happens when it is used up.
    pub final_unit: Option<FinalAction>,
    /// How the reported usage was rated, for updates and ends.
    pub used: Option<UsageResult>,
    pub status: Status,
    /// The plan does not cover the country the session is in.
    pub not_covered: bool,
}

/// A subscription's ledger as replayed from its log.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    /// Per entry: whether it rates a usage record that arrived late.
    pub late: Vec<bool>,
    /// The plan the subscription is on now.
    pub plan: PlanIx,
    /// Network notes (CoA, Disconnect, sessions closed) with their instants,
    /// in log order.
    pub notes: Vec<(Instant, String)>,
    /// Per entry: the stored event that caused it, if one did.
    pub origins: Vec<Option<Origin>>,
    /// When the subscription was bought (a windowed ledger may not reach back to it).
    pub purchased_at: Instant,
}

pub struct NewSubscription {
    pub id: String,
    pub plan: String,
    pub at: Option<Instant>,
    pub identifiers: Identifiers,
}

/// Which subscriptions a list asks for.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub status: Option<Status>,
    /// A plan id: its subscribers on any version.
    pub plan: Option<String>,
}

/// One subscription in a list.
#[derive(Debug, Clone)]
pub struct SubscriptionSummary {
    pub id: String,
    pub plan: PlanVersion,
    pub status: Status,
}

/// Where a ledger entry came from: the stored event that caused it (a
/// boundary the engine ran on its own has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// When the service applied the event (rated it, for usage).
    pub applied_at: Instant,
    /// The event's idempotency key: a usage record's id, a RADIUS counter
    /// (`#acct:...`) or a Gy report (`#session:...`).
    pub key: Option<String>,
    /// The country usage was reported from, if the network said.
    pub country: Option<String>,
}
