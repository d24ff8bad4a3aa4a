//! Ledger entries: every grant, draw, carry, forfeit, fee and charge, so that
//! any balance can be explained byte by byte.
//!
//! Per bucket, `granted = used + remaining + forfeited + carried_out`; in
//! total, the bytes granted from outside (periods, grants, extra blocks) equal
//! the bytes drawn, forfeited and still remaining, because carry grants only
//! move bytes that a carry-out took from another bucket.

use crate::catalog::PlanIx;
use crate::names::Kind;
use crate::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: Instant,
    /// The bucket the entry is about, or 0 for subscription-level entries.
    pub bucket: u32,
    pub kind: Option<Kind>,
    pub change: Change,
}

/// Where a bucket's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The allowance of period `n` (1-based, counted on the current period sequence).
    Period(u32),
    /// A `grant` event.
    Grant,
    /// An automatically bought overage block.
    ExtraBlock,
    /// Leftovers carried at a boundary.
    Carry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    Expired,
    Cap,
    PlanChange,
    Cancelled,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Expired => "expired",
            Cause::Cap => "cap",
            Cause::PlanChange => "plan_change",
            Cause::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Cause> {
        Some(match text {
            "expired" => Cause::Expired,
            "cap" => Cause::Cap,
            "plan_change" => Cause::PlanChange,
            "cancelled" => Cause::Cancelled,
            _ => return None,
        })
    }
}

/// Why usage was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    NotStarted,
    NotCovered,
    Suspended,
    Ended,
    /// No data left and the plan blocks at exhaustion.
    Exhausted,
}

impl RejectReason {
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::NotStarted => "not_started",
            RejectReason::NotCovered => "not_covered",
            RejectReason::Suspended => "suspended",
            RejectReason::Ended => "ended",
            RejectReason::Exhausted => "exhausted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    DailyCap,
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Purchased(PlanIx),
    Installed,
    FirstUse,
    Started,
    Lapsed,
    Expired,
    Suspended,
    Resumed,
    Cancelled,
    PlanChangeScheduled(PlanIx),
    PlanChanged { from: PlanIx, to: PlanIx },
    /// An event that could not take effect in the subscription's state (a
    /// grant after cancellation, a resume while not suspended, ...).
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Ended,
    NoCurrentPeriod,
    ExpiryNotAfterGrant,
    NotSuspended,
    AlreadySuspended,
    SamePlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Granted { bytes: u64, expires: Instant, source: Source },
    Drawn { bytes: u64 },
    CarriedOut { bytes: u64, into: u32 },
    Forfeited { bytes: u64, cause: Cause },
    Fee { minor: i64, period: u32 },
    /// Money charged for overage: an extra block, or pay-as-you-go bytes.
    Charged { minor: i64, bytes: u64 },
    /// Usage accepted without drawing from a bucket: under an unlimited
    /// plan's daily cap, or pay-as-you-go.
    Unmetered { bytes: u64 },
    Throttled { bytes: u64, reason: ThrottleReason },
    Rejected { bytes: u64, reason: RejectReason },
    Lifecycle(Lifecycle),
}

/// Totals over a ledger, for conservation checks and explanations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes granted from outside: periods, grants, extra blocks.
    pub granted_bytes: u64,
    /// Bytes granted to carry buckets; always equal to `carried_out_bytes`.
    pub carried_in_bytes: u64,
    pub carried_out_bytes: u64,
    pub drawn_bytes: u64,
    pub forfeited_bytes: u64,
    pub unmetered_bytes: u64,
    pub throttled_bytes: u64,
    pub rejected_bytes: u64,
    pub fees_minor: i64,
    pub charges_minor: i64,
}

impl Totals {
    pub fn of(entries: &[Entry]) -> Totals {
        let mut totals = Totals::default();
        for entry in entries {
            match entry.change {
                Change::Granted { bytes, source: Source::Carry, .. } => totals.carried_in_bytes += bytes,
                Change::Granted { bytes, .. } => totals.granted_bytes += bytes,
                Change::Drawn { bytes } => totals.drawn_bytes += bytes,
                Change::CarriedOut { bytes, .. } => totals.carried_out_bytes += bytes,
                Change::Forfeited { bytes, .. } => totals.forfeited_bytes += bytes,
                Change::Fee { minor, .. } => totals.fees_minor += minor,
                Change::Charged { minor, .. } => totals.charges_minor += minor,
                Change::Unmetered { bytes } => totals.unmetered_bytes += bytes,
                Change::Throttled { bytes, .. } => totals.throttled_bytes += bytes,
                Change::Rejected { bytes, .. } => totals.rejected_bytes += bytes,
                Change::Lifecycle(_) => {}
            }
        }
        totals
    }
}
