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
    /// An add-on bought.
    Addon,
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RejectReason {
    NotStarted,
    NotCovered,
    Suspended,
    Ended,
    /// No data left and the plan blocks at exhaustion.
    Exhausted,
    /// Stamped before the subscription was bought.
    BeforePurchase,
    /// The part of one record that would need more extra blocks than one
    /// record may buy ([`crate::engine::MAX_BLOCKS_PER_RECORD`]).
    BlockLimit,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::NotStarted,
        RejectReason::NotCovered,
        RejectReason::Suspended,
        RejectReason::Ended,
        RejectReason::Exhausted,
        RejectReason::BeforePurchase,
        RejectReason::BlockLimit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RejectReason::NotStarted => "not_started",
            RejectReason::NotCovered => "not_covered",
            RejectReason::Suspended => "suspended",
            RejectReason::Ended => "ended",
            RejectReason::Exhausted => "exhausted",
            RejectReason::BeforePurchase => "before_purchase",
            RejectReason::BlockLimit => "block_limit",
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Refusal {
    Ended,
    NoCurrentPeriod,
    ExpiryNotAfterGrant,
    NotSuspended,
    AlreadySuspended,
    SamePlan,
    /// Stamped before the subscription was bought.
    BeforePurchase,
    /// The subscription already holds [`crate::engine::MAX_LIVE_BUCKETS`]
    /// live buckets; a grant would add one more.
    TooManyBuckets,
    /// A refund of nothing, or of more than the fees charged so far.
    RefundOverFees,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Ended,
        Refusal::NoCurrentPeriod,
        Refusal::ExpiryNotAfterGrant,
        Refusal::NotSuspended,
        Refusal::AlreadySuspended,
        Refusal::SamePlan,
        Refusal::BeforePurchase,
        Refusal::TooManyBuckets,
        Refusal::RefundOverFees,
    ];

    /// The stable code clients branch on.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Ended => "ended",
            Refusal::NoCurrentPeriod => "no_current_period",
            Refusal::ExpiryNotAfterGrant => "expiry_not_after_grant",
            Refusal::NotSuspended => "not_suspended",
            Refusal::AlreadySuspended => "already_suspended",
            Refusal::SamePlan => "same_plan",
            Refusal::BeforePurchase => "before_purchase",
            Refusal::TooManyBuckets => "too_many_buckets",
            Refusal::RefundOverFees => "refund_over_fees",
        }
    }

    /// Why the event was refused, in a sentence for people.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Ended => "the subscription has ended",
            Refusal::NoCurrentPeriod => "\"period_end\" needs a started plan",
            Refusal::ExpiryNotAfterGrant => "the expiry is not after the grant",
            Refusal::NotSuspended => "the subscription is not suspended",
            Refusal::AlreadySuspended => "the subscription is already suspended",
            Refusal::SamePlan => "the subscription is already on that plan",
            Refusal::BeforePurchase => "the event is stamped before the purchase",
            Refusal::TooManyBuckets => "the subscription already holds the most live buckets allowed",
            Refusal::RefundOverFees => "a refund must be more than nothing and at most the fees charged",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Granted { bytes: u64, expires: Instant, source: Source },
    Drawn { bytes: u64 },
    CarriedOut { bytes: u64, into: u32 },
    Forfeited { bytes: u64, cause: Cause },
    Fee { minor: i64, period: u32 },
    /// The price of an add-on, charged with its grant (a fee).
    AddonFee { minor: i64 },
    /// Fees paid back (an order cancelled before download).
    Refunded { minor: i64 },
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
                Change::Fee { minor, .. } | Change::AddonFee { minor } => totals.fees_minor += minor,
                Change::Refunded { minor } => totals.fees_minor -= minor,
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
