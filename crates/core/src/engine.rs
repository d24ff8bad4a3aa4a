//! The subscription state machine: buckets, rating, boundaries, lifecycle.
//!
//! Time is always an argument. Callers bring a subscription up to an instant
//! with [`Subscription::advance`] (which runs every boundary at or before it,
//! in order) and then apply the event stamped at that instant. An instant on a
//! boundary belongs to the new window: boundaries run before events stamped at
//! the same instant.

use crate::catalog::{Catalog, PlanIx};
use crate::ledger::{Cause, Change, Entry, Lifecycle, Refusal, RejectReason, Source, ThrottleReason};
use crate::names::{Country, Kind};
use crate::plan::{Exhausted, OnPlanChange, Plan, Rollover, Starts, Window};
use crate::time::{Instant, Length, MICROS_PER_DAY};

/// A bucket of data. Live buckets are kept sorted in consumption order, and a
/// bucket leaves the list when it is used up, forfeited or carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub id: u32,
    pub kind: Kind,
    pub granted_bytes: u64,
    pub used_bytes: u64,
    /// Exclusive end of the bucket's window; `Instant::NEVER` for none.
    pub expires: Instant,
    /// Position of `kind` in the current plan's order (unlisted kinds last).
    rank: u8,
}

impl Bucket {
    pub fn remaining_bytes(&self) -> u64 {
        self.granted_bytes - self.used_bytes
    }

    fn order_key(&self) -> (u8, Instant, u32) {
        (self.rank, self.expires, self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Status {
    Pending,
    Active,
    Throttled,
    Depleted,
    Suspended,
    Expired,
    Lapsed,
    Cancelled,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Throttled => "throttled",
            Status::Depleted => "depleted",
            Status::Suspended => "suspended",
            Status::Expired => "expired",
            Status::Lapsed => "lapsed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "active" => Status::Active,
            "throttled" => Status::Throttled,
            "depleted" => Status::Depleted,
            "suspended" => Status::Suspended,
            "expired" => Status::Expired,
            "lapsed" => Status::Lapsed,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }
}

/// When a granted bucket expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GrantExpiry {
    At(Instant),
    /// The end of the current period.
    PeriodEnd,
    Never,
}

/// What happens to a subscription. `Purchase` is not here: it creates the
/// subscription ([`Subscription::purchase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Install,
    FirstUse,
    Usage { bytes: u64, country: Option<Country> },
    Grant { kind: Kind, bytes: u64, expires: GrantExpiry },
    /// An add-on bought: a grant of `bytes` of `kind` and its price, a fee
    /// charged now.
    Addon { kind: Kind, bytes: u64, expires: GrantExpiry, price_minor: i64 },
    /// Money paid back: at most the fees charged so far (an eSIM order
    /// cancelled before its profile was downloaded refunds the purchase).
    Refund { minor: i64 },
    ChangePlan(PlanIx),
    Suspend,
    Resume,
    Cancel,
}

/// How one usage record was rated. `drawn + unmetered + throttled + rejected`
/// equals the record's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rating {
    /// Bytes paid from buckets (including extra blocks bought for it).
    pub drawn_bytes: u64,
    /// Bytes accepted without a bucket: under an unlimited plan's daily cap,
    /// or pay-as-you-go.
    pub unmetered_bytes: u64,
    pub throttled_bytes: u64,
    pub rejected_bytes: u64,
    pub reject_reason: Option<RejectReason>,
    pub charged_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Rated(Rating),
    Applied,
    Refused(Refusal),
}

/// Most extra blocks one usage record may buy: the work of rating a record
/// stays bounded however small a plan's block. The part of a record that
/// would need more is rejected (`block_limit`).
pub const MAX_BLOCKS_PER_RECORD: u64 = 1024;

/// Most live buckets a grant may join: a grant to a subscription that holds
/// this many is refused (`too_many_buckets`). Buckets the plan creates
/// itself (allowance, carry, extra blocks) are not refused: their number is
/// bounded by the periods that have passed and by
/// [`MAX_BLOCKS_PER_RECORD`].
pub const MAX_LIVE_BUCKETS: usize = 1000;

const STARTED: u8 = 1;
const SUSPENDED: u8 = 2;
const CANCELLED: u8 = 4;
const LAPSED: u8 = 8;
const EXPIRED: u8 = 16;
const ENDED: u8 = CANCELLED | LAPSED | EXPIRED;

/// What the end of the current period would do if no more data were used
/// before it ([`Subscription::period_end_preview`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeriodEndPreview {
    /// The period's end: the next month or period, or a pass's end.
    pub at: Instant,
    /// What would carry into the next period (after any cap), and until when.
    pub carries_bytes: u64,
    pub carry_expires: Option<Instant>,
    /// What would expire unused or be cut there.
    pub forfeits_bytes: u64,
    /// The next period's allowance and fee, for plans that renew.
    pub next_allowance_bytes: Option<u64>,
    pub next_fee_minor: i64,
}

/// The days [`Subscription::project`] walks at most.
pub const MAX_PROJECTED_DAYS: usize = 400;

/// The rest of a period at a steady daily pace ([`Subscription::project`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Projection {
    pub daily_bytes: u64,
    /// When the data would run out before the period ends, for plans that
    /// block or throttle then.
    pub runs_out_at: Option<Instant>,
    /// What the period's end would then do.
    pub period_end: Option<PeriodEndPreview>,
}

/// One subscription's state. Kept small: a service holds millions in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    buckets: Vec<Bucket>,
    plan: PlanIx,
    pending_plan: Option<PlanIx>,
    next_bucket_id: u32,
    period_index: u32,
    flags: u8,
    purchased_at: Instant,
    /// Start of period 1 of the current period sequence.
    origin: Instant,
    period_end: Instant,
    /// End of the current daily-cap window (`NEVER` without a daily cap).
    window_end: Instant,
    window_used_bytes: u64,
    payg_period_bytes: u64,
    throttled_bytes: u64,
    rejected_bytes: u64,
    charges_minor: i64,
    fees_minor: i64,
}

impl Subscription {
    /// Buys `plan` at `at`: the first period's fee is charged now, and the plan
    /// starts now when it starts at purchase.
    pub fn purchase(catalog: &Catalog, plan_ix: PlanIx, at: Instant, ledger: &mut Vec<Entry>) -> Subscription {
        let plan = catalog.get(plan_ix);
        let mut subscription = Subscription {
            buckets: Vec::new(),
            plan: plan_ix,
            pending_plan: None,
            next_bucket_id: 1,
            period_index: 0,
            flags: 0,
            purchased_at: at,
            origin: Instant::NEVER,
            period_end: Instant::NEVER,
            window_end: Instant::NEVER,
            window_used_bytes: 0,
            payg_period_bytes: 0,
            throttled_bytes: 0,
            rejected_bytes: 0,
            charges_minor: 0,
            fees_minor: 0,
        };
        ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(Lifecycle::Purchased(plan_ix)) });
        // With daily proration and a later start, the fee is prorated on the
        // start day, so it is charged at the start together with the data.
        let fee_at_start = plan.prorate_daily && plan.starts != Starts::Purchase;
        if !fee_at_start {
            let (_, fee) = if plan.starts == Starts::Purchase { plan.first_period_amounts(at) } else { (None, plan.price_minor) };
            subscription.charge_fee(fee, 1, at, ledger);
        }
        if plan.starts == Starts::Purchase {
            subscription.start(catalog, at, fee_at_start, ledger);
        }
        subscription
    }

    pub fn plan(&self) -> PlanIx {
        self.plan
    }

    pub fn pending_plan(&self) -> Option<PlanIx> {
        self.pending_plan
    }

    /// Live buckets in consumption order (only buckets with data left).
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    pub fn purchased_at(&self) -> Instant {
        self.purchased_at
    }

    /// Whether the plan waits for its first use and has not lapsed: an
    /// attach or a first record starts it.
    pub fn first_use_pending(&self, catalog: &Catalog, at: Instant) -> bool {
        !self.is_started() && catalog.get(self.plan).starts == Starts::FirstUse && self.status(catalog, at) == Status::Pending
    }

    pub fn is_started(&self) -> bool {
        self.flags & STARTED != 0
    }

    pub fn fees_minor(&self) -> i64 {
        self.fees_minor
    }

    pub fn charges_minor(&self) -> i64 {
        self.charges_minor
    }

    pub fn throttled_bytes(&self) -> u64 {
        self.throttled_bytes
    }

    pub fn rejected_bytes(&self) -> u64 {
        self.rejected_bytes
    }

    /// Index and window of the current period, once started.
    pub fn period(&self, catalog: &Catalog) -> Option<(u32, Instant, Instant)> {
        let start = catalog.get(self.plan).period_start(self.origin, self.period_index);
        self.is_started().then_some((self.period_index, start, self.period_end))
    }

    /// The allowance the current period granted (prorated in a first
    /// period), once started; `None` for a plan without an allowance.
    pub fn period_allowance_bytes(&self, catalog: &Catalog) -> Option<u64> {
        let plan = catalog.get(self.plan);
        if !self.is_started() {
            return None;
        }
        if self.period_index == 1 { plan.first_period_amounts(self.origin).0 } else { plan.allowance_bytes }
    }

    /// Sum of usable data left.
    pub fn total_bytes(&self) -> u64 {
        self.buckets.iter().fold(0u64, |sum, b| sum.saturating_add(b.remaining_bytes()))
    }

    /// When the subscription itself ends: only `once` plans have an end.
    pub fn expires(&self, catalog: &Catalog) -> Option<Instant> {
        (self.is_started() && self.flags & (CANCELLED | LAPSED) == 0 && catalog.get(self.plan).is_once())
            .then_some(self.period_end)
    }

    /// Full-speed data left in the day window containing `at`, for plans with
    /// a daily cap. Call after [`Subscription::advance`] to `at`.
    pub fn daily_remaining_bytes(&self, catalog: &Catalog, at: Instant) -> Option<u64> {
        let cap = catalog.get(self.plan).daily_cap?;
        if !self.is_started() {
            return Some(cap.bytes);
        }
        if at >= self.window_end {
            return Some(cap.bytes);
        }
        Some(cap.bytes.saturating_sub(self.window_used_bytes))
    }

    /// The status at `at`, after [`Subscription::advance`] to `at`.
    pub fn status(&self, catalog: &Catalog, at: Instant) -> Status {
        if self.flags & CANCELLED != 0 {
            return Status::Cancelled;
        }
        if self.flags & LAPSED != 0 {
            return Status::Lapsed;
        }
        if self.flags & EXPIRED != 0 {
            return Status::Expired;
        }
        if self.flags & SUSPENDED != 0 {
            return Status::Suspended;
        }
        if !self.is_started() {
            return Status::Pending;
        }
        let plan = catalog.get(self.plan);
        if !plan.is_unlimited() && self.total_bytes() == 0 {
            match plan.exhausted {
                Exhausted::Block => return Status::Depleted,
                Exhausted::Throttle { .. } => return Status::Throttled,
                Exhausted::ExtraBlocks { .. } | Exhausted::PayAsYouGo { .. } => {}
            }
        }
        if self.daily_remaining_bytes(catalog, at) == Some(0) {
            return Status::Throttled;
        }
        Status::Active
    }

    /// The next instant at which a boundary changes this subscription: a
    /// period turn, a bucket expiry, a day window's end, or a lapse.
    /// `Instant::NEVER` when nothing is scheduled.
    pub fn next_boundary(&self, catalog: &Catalog) -> Instant {
        if self.flags & ENDED != 0 {
            return Instant::NEVER;
        }
        let mut next = Instant::NEVER;
        for bucket in &self.buckets {
            next = next.min(bucket.expires);
        }
        if self.is_started() {
            next.min(self.period_end).min(self.window_end)
        } else {
            next.min(self.lapse_at(catalog))
        }
    }

    /// What the end of the current period would do if no more data were
    /// used before it: the engine runs a copy of the subscription to that
    /// instant. `None` before the start and after the end.
    pub fn period_end_preview(&self, catalog: &Catalog) -> Option<PeriodEndPreview> {
        if !self.is_started() || self.flags & ENDED != 0 {
            return None;
        }
        let at = self.period_end;
        let mut copy = self.clone();
        let mut ledger = Vec::new();
        copy.advance(catalog, at, &mut ledger);
        let mut preview = PeriodEndPreview { at, carries_bytes: 0, carry_expires: None, forfeits_bytes: 0, next_allowance_bytes: None, next_fee_minor: 0 };
        for entry in ledger.iter().filter(|entry| entry.at == at) {
            match entry.change {
                Change::Granted { bytes, expires, source: Source::Carry } => {
                    preview.carries_bytes = preview.carries_bytes.saturating_add(bytes);
                    preview.carry_expires = Some(expires);
                }
                Change::Granted { bytes, source: Source::Period(_), .. } => preview.next_allowance_bytes = Some(bytes),
                Change::Forfeited { bytes, .. } => preview.forfeits_bytes = preview.forfeits_bytes.saturating_add(bytes),
                Change::Fee { minor, .. } => preview.next_fee_minor = preview.next_fee_minor.saturating_add(minor),
                _ => {}
            }
        }
        Some(preview)
    }

    /// The rest of the current period at a steady pace: `daily_bytes` used
    /// every 24 hours from `from`, rated by the engine on a copy of the
    /// subscription. When the data would run out (plans that block or
    /// throttle), and what the period's end would then do.
    pub fn project(&self, catalog: &Catalog, from: Instant, daily_bytes: u64) -> Option<Projection> {
        if !self.is_started() || self.flags & ENDED != 0 {
            return None;
        }
        let plan = catalog.get(self.plan);
        let runs_out_counts = !plan.is_unlimited() && matches!(plan.exhausted, Exhausted::Block | Exhausted::Throttle { .. });
        let (mut copy, mut ledger) = (self.clone(), Vec::new());
        let end = self.period_end;
        let mut at = from.max(self.purchased_at);
        let mut runs_out_at = None;
        // A pass lasts at most a few hundred days; bound the walk all the same.
        for _ in 0..MAX_PROJECTED_DAYS {
            if daily_bytes == 0 || at >= end {
                break;
            }
            let before = copy.total_bytes();
            copy.apply(catalog, Event::Usage { bytes: daily_bytes, country: None }, at, &mut ledger);
            if runs_out_counts && runs_out_at.is_none() && copy.total_bytes() == 0 {
                // Within the day, in proportion to what was left of it.
                let into_day = (u128::from(before.min(daily_bytes)) * MICROS_PER_DAY as u128 / u128::from(daily_bytes)) as i64;
                runs_out_at = Some(at.plus_micros(into_day).min(end));
            }
            at = at.plus_micros(MICROS_PER_DAY);
        }
        Some(Projection { daily_bytes, runs_out_at, period_end: copy.period_end_preview(catalog) })
    }

    /// For a live bucket: whether its leftover will roll over when it expires
    /// (if it expires at a period boundary under a plan that rolls its kind),
    /// and until when the resulting carry would last. Cuts by `cap` or
    /// `max_per_period` may still reduce what carries.
    pub fn carry_outlook(&self, catalog: &Catalog, bucket: &Bucket) -> Option<Instant> {
        let plan = catalog.get(self.plan);
        let rollover = plan.rollover.as_ref()?;
        if !self.is_started() || self.flags & ENDED != 0 || plan.is_once() || !plan.rolls(bucket.kind) {
            return None;
        }
        if self.pending_plan.is_some() && rollover.on_plan_change == OnPlanChange::Forfeit {
            return None;
        }
        // Only buckets that end on a period boundary roll; count the periods
        // from the current one to find which boundary that is.
        let mut index = self.period_index;
        let mut end = self.period_end;
        while end < bucket.expires && index < self.period_index + 1200 {
            index += 1;
            end = plan.period_end(self.origin, index);
        }
        if end != bucket.expires {
            return None;
        }
        Some(match rollover.expires_after {
            Length::Periods(n) => plan.period_start(self.origin, index + 1 + n),
            other => other.end_from(end, &plan.zone),
        })
    }

    /// When a plan that waits for install or first use lapses if it has
    /// not started by then; `None` once started, ended, or without a limit.
    pub fn lapses_at(&self, catalog: &Catalog) -> Option<Instant> {
        let waits = !self.is_started() && self.flags & ENDED == 0 && catalog.get(self.plan).activate_within.is_some();
        waits.then(|| self.lapse_at(catalog))
    }

    fn lapse_at(&self, catalog: &Catalog) -> Instant {
        let plan = catalog.get(self.plan);
        match plan.activate_within {
            Some(length) => length.end_from(self.purchased_at, &plan.zone),
            None => Instant::NEVER,
        }
    }

    /// Runs every boundary at or before `to`, in time order.
    pub fn advance(&mut self, catalog: &Catalog, to: Instant, ledger: &mut Vec<Entry>) {
        loop {
            let boundary = self.next_boundary(catalog);
            if boundary > to {
                return;
            }
            self.run_boundary(catalog, boundary, ledger);
            debug_assert!(self.next_boundary(catalog) > boundary, "a boundary must not repeat");
        }
    }

    fn run_boundary(&mut self, catalog: &Catalog, at: Instant, ledger: &mut Vec<Entry>) {
        if !self.is_started() {
            if self.lapse_at(catalog) == at {
                self.forfeit_all(at, Cause::Expired, ledger);
                self.flags |= LAPSED;
                self.pending_plan = None;
                ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(Lifecycle::Lapsed) });
                return;
            }
            self.expire_due(at, ledger);
            return;
        }
        if self.period_end == at {
            self.turn_period(catalog, at, ledger);
        } else {
            self.expire_due(at, ledger);
        }
        if self.window_end == at {
            self.window_used_bytes = 0;
            self.window_end = self.window_end_after(catalog, at);
        }
        self.check_invariants();
    }

    /// Forfeits buckets that expire at `at` between period boundaries.
    fn expire_due(&mut self, at: Instant, ledger: &mut Vec<Entry>) {
        let mut i = 0;
        while i < self.buckets.len() {
            if self.buckets[i].expires == at {
                let bucket = self.buckets.remove(i);
                push_forfeit(ledger, at, &bucket, bucket.remaining_bytes(), Cause::Expired);
            } else {
                i += 1;
            }
        }
    }

    fn forfeit_all(&mut self, at: Instant, cause: Cause, ledger: &mut Vec<Entry>) {
        for bucket in std::mem::take(&mut self.buckets) {
            push_forfeit(ledger, at, &bucket, bucket.remaining_bytes(), cause);
        }
    }

    /// A period boundary: expire, roll over, grant (section 1.3), with a
    /// pending plan change taking effect here.
    fn turn_period(&mut self, catalog: &Catalog, at: Instant, ledger: &mut Vec<Entry>) {
        let old_plan = catalog.get(self.plan);
        let change = self.pending_plan.take();
        if old_plan.is_once() && change.is_none() {
            self.forfeit_all(at, Cause::Expired, ledger);
            self.flags |= EXPIRED;
            ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(Lifecycle::Expired) });
            return;
        }

        let rolling = self.take_ending(old_plan, at, ledger);
        let forfeit_for_change = change.is_some() && old_plan.rollover.as_ref().is_none_or(|r| r.on_plan_change == OnPlanChange::Forfeit);
        if forfeit_for_change {
            for bucket in &rolling {
                push_forfeit(ledger, at, bucket, bucket.remaining_bytes(), Cause::PlanChange);
            }
            for bucket in self.buckets.extract_if(.., |b| b.kind == Kind::CARRY) {
                push_forfeit(ledger, at, &bucket, bucket.remaining_bytes(), Cause::PlanChange);
            }
        } else if let Some(rollover) = &old_plan.rollover {
            self.roll_over(catalog, old_plan, rollover, &rolling, at, ledger);
        } else {
            // No rollover: nothing can be in `rolling`.
            debug_assert!(rolling.is_empty());
        }
        if let Some(new_ix) = change {
            let new_plan = catalog.get(new_ix);
            let continues = old_plan.same_periods(new_plan);
            let from = self.plan;
            self.plan = new_ix;
            ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(Lifecycle::PlanChanged { from, to: new_ix }) });
            self.rerank(catalog);
            if !continues {
                self.begin_sequence(catalog, at, true, ledger);
                return;
            }
        }
        self.next_period(catalog, at, ledger);
    }

    /// Step 1 of a boundary: takes out the buckets ending at `at`. Those the
    /// plan rolls are returned (in consumption order, as the live list is
    /// sorted); the rest expire.
    fn take_ending(&mut self, plan: &Plan, at: Instant, ledger: &mut Vec<Entry>) -> Vec<Bucket> {
        let mut rolling = Vec::new();
        for bucket in self.buckets.extract_if(.., |b| b.expires == at) {
            if plan.rolls(bucket.kind) {
                rolling.push(bucket);
            } else {
                push_forfeit(ledger, at, &bucket, bucket.remaining_bytes(), Cause::Expired);
            }
        }
        rolling
    }

    /// Step 2 of a boundary: what `rolling` holds carries into one new carry
    /// bucket, less what the per-period maximum and the cap cut (taken from
    /// the last-consumed buckets first).
    fn roll_over(&mut self, catalog: &Catalog, plan: &Plan, rollover: &Rollover, rolling: &[Bucket], at: Instant, ledger: &mut Vec<Entry>) {
        let pooled: u64 = rolling.iter().map(Bucket::remaining_bytes).sum();
        let after_max = rollover.max_per_period_bytes.map_or(pooled, |max| pooled.min(max));
        let live_carry: u64 = self.buckets.iter().filter(|b| b.kind == Kind::CARRY).map(Bucket::remaining_bytes).sum();
        let carried = rollover.cap_bytes.map_or(after_max, |cap| after_max.min(cap.saturating_sub(live_carry)));
        let mut cut = pooled - carried;
        let mut carry_parts: Vec<u64> = vec![0; rolling.len()];
        for (index, bucket) in rolling.iter().enumerate().rev() {
            let remaining = bucket.remaining_bytes();
            let cut_here = cut.min(remaining);
            cut -= cut_here;
            push_forfeit(ledger, at, bucket, cut_here, Cause::Cap);
            carry_parts[index] = remaining - cut_here;
        }
        if carried == 0 {
            return;
        }
        let carry_id = self.next_bucket_id;
        for (bucket, &bytes) in rolling.iter().zip(&carry_parts) {
            if bytes > 0 {
                ledger.push(Entry { at, bucket: bucket.id, kind: Some(bucket.kind), change: Change::CarriedOut { bytes, into: carry_id } });
            }
        }
        let expires = match rollover.expires_after {
            Length::Periods(n) => plan.period_start(self.origin, self.period_index + 1 + n),
            other => other.end_from(at, &plan.zone),
        };
        self.add_bucket(catalog, Kind::CARRY, carried, expires, Source::Carry, at, ledger);
    }

    /// Step 3 of a boundary: the next period of the current plan, its
    /// allowance and its fee.
    fn next_period(&mut self, catalog: &Catalog, at: Instant, ledger: &mut Vec<Entry>) {
        self.period_index += 1;
        let plan = catalog.get(self.plan);
        self.period_end = plan.period_end(self.origin, self.period_index);
        self.payg_period_bytes = 0;
        if let Some(bytes) = plan.allowance_bytes {
            let expires = self.period_end;
            self.add_bucket(catalog, Kind::ALLOWANCE, bytes, expires, Source::Period(self.period_index), at, ledger);
        }
        self.charge_fee(plan.price_minor, self.period_index, at, ledger);
    }

    /// Starts period 1 of the current plan at `at`.
    fn start(&mut self, catalog: &Catalog, at: Instant, charge_fee: bool, ledger: &mut Vec<Entry>) {
        self.flags |= STARTED;
        ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(Lifecycle::Started) });
        self.begin_sequence(catalog, at, charge_fee, ledger);
    }

    /// Period 1 of a new period sequence at `at`: prorated allowance and,
    /// when asked, the prorated fee; a fresh day window.
    fn begin_sequence(&mut self, catalog: &Catalog, at: Instant, charge_fee: bool, ledger: &mut Vec<Entry>) {
        let plan = catalog.get(self.plan);
        self.origin = at;
        self.period_index = 1;
        self.period_end = plan.period_end(at, 1);
        self.payg_period_bytes = 0;
        self.window_used_bytes = 0;
        self.window_end = self.window_end_after(catalog, at);
        let (allowance, fee) = plan.first_period_amounts(at);
        if let Some(bytes) = allowance {
            let expires = self.period_end;
            self.add_bucket(catalog, Kind::ALLOWANCE, bytes, expires, Source::Period(1), at, ledger);
        }
        if charge_fee {
            self.charge_fee(fee, 1, at, ledger);
        }
    }

    /// End of the day window that contains `at`.
    fn window_end_after(&self, catalog: &Catalog, at: Instant) -> Instant {
        let plan = catalog.get(self.plan);
        let Some(cap) = plan.daily_cap else { return Instant::NEVER };
        let end = match cap.window {
            Window::CalendarDay => plan.zone.next_midnight(at),
            Window::Rolling24h => {
                let elapsed = at.micros() - self.origin.micros();
                self.origin.plus_micros((elapsed.div_euclid(MICROS_PER_DAY) + 1) * MICROS_PER_DAY)
            }
        };
        if plan.is_once() { end.min(self.period_end) } else { end }
    }

    fn charge_fee(&mut self, minor: i64, period: u32, at: Instant, ledger: &mut Vec<Entry>) {
        self.fees_minor = self.fees_minor.saturating_add(minor);
        ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Fee { minor, period } });
    }

    #[allow(clippy::too_many_arguments)]
    fn add_bucket(
        &mut self,
        catalog: &Catalog,
        kind: Kind,
        bytes: u64,
        expires: Instant,
        source: Source,
        at: Instant,
        ledger: &mut Vec<Entry>,
    ) -> u32 {
        let id = self.next_bucket_id;
        self.next_bucket_id += 1;
        ledger.push(Entry { at, bucket: id, kind: Some(kind), change: Change::Granted { bytes, expires, source } });
        if bytes == 0 {
            return id;
        }
        let rank = catalog.get(self.plan).rank(kind);
        let bucket = Bucket { id, kind, granted_bytes: bytes, used_bytes: 0, expires, rank };
        // Grow one bucket at a time: millions of subscriptions stay in memory,
        // and doubling would leave most of them with unused room.
        if self.buckets.len() == self.buckets.capacity() {
            self.buckets.reserve_exact(1);
        }
        let position = self.buckets.partition_point(|b| b.order_key() < bucket.order_key());
        self.buckets.insert(position, bucket);
        id
    }

    fn rerank(&mut self, catalog: &Catalog) {
        let plan = catalog.get(self.plan);
        for bucket in &mut self.buckets {
            bucket.rank = plan.rank(bucket.kind);
        }
        self.buckets.sort_by_key(Bucket::order_key);
    }

    /// Draws up to `bytes` from live buckets in consumption order; returns
    /// the bytes drawn.
    fn draw(&mut self, bytes: u64, at: Instant, ledger: &mut Vec<Entry>) -> u64 {
        let mut need = bytes;
        // Buckets are drawn in order and emptied before the next is touched,
        // so the emptied ones are a prefix: removed at once, in linear time.
        let mut emptied = 0;
        for bucket in self.buckets.iter_mut() {
            if need == 0 {
                break;
            }
            let take = need.min(bucket.remaining_bytes());
            bucket.used_bytes += take;
            need -= take;
            ledger.push(Entry { at, bucket: bucket.id, kind: Some(bucket.kind), change: Change::Drawn { bytes: take } });
            if bucket.remaining_bytes() == 0 {
                emptied += 1;
            }
        }
        self.buckets.drain(..emptied);
        bytes - need
    }

    /// Applies an event stamped `at`. Runs the boundaries up to `at` first.
    pub fn apply(&mut self, catalog: &Catalog, event: Event, at: Instant, ledger: &mut Vec<Entry>) -> Outcome {
        self.advance(catalog, at, ledger);
        if at < self.purchased_at && !matches!(event, Event::Usage { .. }) {
            return self.refuse(Refusal::BeforePurchase, at, ledger);
        }
        let outcome = match event {
            Event::Usage { bytes, country } => Outcome::Rated(self.rate(catalog, bytes, country, at, ledger)),
            Event::Install => self.begin_by(catalog, Starts::Install, Lifecycle::Installed, at, ledger),
            Event::FirstUse => self.begin_by(catalog, Starts::FirstUse, Lifecycle::FirstUse, at, ledger),
            Event::Grant { kind, bytes, expires } => self.grant(catalog, kind, bytes, expires, Source::Grant, at, ledger),
            Event::Addon { kind, bytes, expires, price_minor } => {
                let outcome = self.grant(catalog, kind, bytes, expires, Source::Addon, at, ledger);
                if outcome == Outcome::Applied {
                    self.fees_minor = self.fees_minor.saturating_add(price_minor);
                    ledger.push(Entry { at, bucket: 0, kind: None, change: Change::AddonFee { minor: price_minor } });
                }
                outcome
            }
            Event::Refund { minor } => {
                if minor <= 0 || minor > self.fees_minor {
                    self.refuse(Refusal::RefundOverFees, at, ledger)
                } else {
                    self.fees_minor -= minor;
                    ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Refunded { minor } });
                    Outcome::Applied
                }
            }
            Event::ChangePlan(to) => self.change_plan(catalog, to, at, ledger),
            Event::Suspend => {
                if self.flags & ENDED != 0 {
                    self.refuse(Refusal::Ended, at, ledger)
                } else if self.flags & SUSPENDED != 0 {
                    self.refuse(Refusal::AlreadySuspended, at, ledger)
                } else {
                    self.flags |= SUSPENDED;
                    self.lifecycle(Lifecycle::Suspended, at, ledger)
                }
            }
            Event::Resume => {
                if self.flags & ENDED != 0 {
                    self.refuse(Refusal::Ended, at, ledger)
                } else if self.flags & SUSPENDED == 0 {
                    self.refuse(Refusal::NotSuspended, at, ledger)
                } else {
                    self.flags &= !SUSPENDED;
                    self.lifecycle(Lifecycle::Resumed, at, ledger)
                }
            }
            Event::Cancel => {
                if self.flags & ENDED != 0 {
                    self.refuse(Refusal::Ended, at, ledger)
                } else {
                    self.forfeit_all(at, Cause::Cancelled, ledger);
                    self.flags |= CANCELLED;
                    self.pending_plan = None;
                    self.lifecycle(Lifecycle::Cancelled, at, ledger)
                }
            }
        };
        self.check_invariants();
        outcome
    }

    fn lifecycle(&mut self, event: Lifecycle, at: Instant, ledger: &mut Vec<Entry>) -> Outcome {
        ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(event) });
        Outcome::Applied
    }

    fn refuse(&mut self, refusal: Refusal, at: Instant, ledger: &mut Vec<Entry>) -> Outcome {
        ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Lifecycle(Lifecycle::Refused(refusal)) });
        Outcome::Refused(refusal)
    }

    fn begin_by(&mut self, catalog: &Catalog, by: Starts, event: Lifecycle, at: Instant, ledger: &mut Vec<Entry>) -> Outcome {
        if self.flags & ENDED != 0 {
            return self.refuse(Refusal::Ended, at, ledger);
        }
        self.lifecycle(event, at, ledger);
        let plan = catalog.get(self.plan);
        if !self.is_started() && plan.starts == by {
            self.start(catalog, at, plan.prorate_daily, ledger);
        }
        Outcome::Applied
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(&mut self, catalog: &Catalog, kind: Kind, bytes: u64, expires: GrantExpiry, source: Source, at: Instant, ledger: &mut Vec<Entry>) -> Outcome {
        if self.flags & ENDED != 0 {
            return self.refuse(Refusal::Ended, at, ledger);
        }
        let expires = match expires {
            GrantExpiry::At(instant) => instant,
            GrantExpiry::Never => Instant::NEVER,
            GrantExpiry::PeriodEnd if self.is_started() => self.period_end,
            GrantExpiry::PeriodEnd => return self.refuse(Refusal::NoCurrentPeriod, at, ledger),
        };
        if expires <= at {
            return self.refuse(Refusal::ExpiryNotAfterGrant, at, ledger);
        }
        if self.buckets.len() >= MAX_LIVE_BUCKETS {
            return self.refuse(Refusal::TooManyBuckets, at, ledger);
        }
        self.add_bucket(catalog, kind, bytes, expires, source, at, ledger);
        Outcome::Applied
    }

    fn change_plan(&mut self, catalog: &Catalog, to: PlanIx, at: Instant, ledger: &mut Vec<Entry>) -> Outcome {
        if self.flags & ENDED != 0 {
            return self.refuse(Refusal::Ended, at, ledger);
        }
        if to == self.plan {
            // Asking for the current plan withdraws a scheduled change.
            if self.pending_plan.take().is_some() {
                return self.lifecycle(Lifecycle::PlanChangeScheduled(to), at, ledger);
            }
            return self.refuse(Refusal::SamePlan, at, ledger);
        }
        if !self.is_started() {
            // Nothing has started, so there is no boundary to wait for: the
            // new plan replaces the old one at once, with its own start rule.
            let from = self.plan;
            self.plan = to;
            self.rerank(catalog);
            self.lifecycle(Lifecycle::PlanChanged { from, to }, at, ledger);
            if catalog.get(to).starts == Starts::Purchase {
                self.start(catalog, at, false, ledger);
            }
            return Outcome::Applied;
        }
        self.pending_plan = Some(to);
        self.lifecycle(Lifecycle::PlanChangeScheduled(to), at, ledger)
    }

    /// Rates one usage record (section 1.4).
    fn rate(&mut self, catalog: &Catalog, bytes: u64, country: Option<Country>, at: Instant, ledger: &mut Vec<Entry>) -> Rating {
        if let Some(reason) = self.admit(catalog, country, at, ledger) {
            let mut rating = Rating::default();
            self.reject(bytes, reason, at, &mut rating, ledger);
            return rating;
        }
        let plan = catalog.get(self.plan);
        let room = match plan.daily_cap {
            Some(cap) => cap.bytes.saturating_sub(self.window_used_bytes),
            None => u64::MAX,
        };
        let under_cap = bytes.min(room);
        let over_cap = bytes - under_cap;
        if plan.is_unlimited() {
            return self.rate_unlimited(under_cap, over_cap, at, ledger);
        }
        let mut rating = Rating { drawn_bytes: self.draw(under_cap, at, ledger), ..Rating::default() };
        let unpaid = under_cap - rating.drawn_bytes;
        if unpaid > 0 {
            self.run_out(catalog, plan.exhausted, unpaid, at, &mut rating, ledger);
        }
        self.window_used_bytes = self.window_used_bytes.saturating_add(rating.drawn_bytes + rating.unmetered_bytes);
        self.throttle(over_cap, ThrottleReason::DailyCap, at, ledger);
        rating.throttled_bytes += over_cap;
        rating
    }

    /// Whether usage at `at` may be rated: `None` if so (starting a plan
    /// that waits for its first use), else why not.
    fn admit(&mut self, catalog: &Catalog, country: Option<Country>, at: Instant, ledger: &mut Vec<Entry>) -> Option<RejectReason> {
        let plan = catalog.get(self.plan);
        let refused = if at < self.purchased_at {
            Some(RejectReason::BeforePurchase)
        } else if self.flags & ENDED != 0 {
            Some(RejectReason::Ended)
        } else if self.flags & SUSPENDED != 0 {
            Some(RejectReason::Suspended)
        } else if !plan.covers(country) {
            Some(RejectReason::NotCovered)
        } else if !self.is_started() && plan.starts != Starts::FirstUse {
            Some(RejectReason::NotStarted)
        } else {
            None
        };
        if refused.is_none() && !self.is_started() {
            self.lifecycle(Lifecycle::FirstUse, at, ledger);
            self.start(catalog, at, plan.prorate_daily, ledger);
        }
        refused
    }

    fn reject(&mut self, bytes: u64, reason: RejectReason, at: Instant, rating: &mut Rating, ledger: &mut Vec<Entry>) {
        self.rejected_bytes = self.rejected_bytes.saturating_add(bytes);
        ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Rejected { bytes, reason } });
        rating.rejected_bytes = bytes;
        rating.reject_reason = Some(reason);
    }

    /// An unlimited plan: free up to the day's cap; past it, granted
    /// buckets pay at full speed first, and the rest is throttled.
    fn rate_unlimited(&mut self, under_cap: u64, over_cap: u64, at: Instant, ledger: &mut Vec<Entry>) -> Rating {
        if under_cap > 0 {
            ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Unmetered { bytes: under_cap } });
        }
        let drawn_bytes = self.draw(over_cap, at, ledger);
        let rating = Rating { unmetered_bytes: under_cap, drawn_bytes, throttled_bytes: over_cap - drawn_bytes, ..Rating::default() };
        self.window_used_bytes = self.window_used_bytes.saturating_add(under_cap + drawn_bytes);
        self.throttle(rating.throttled_bytes, ThrottleReason::DailyCap, at, ledger);
        rating
    }

    /// What the plan does with `unpaid` bytes no bucket could pay for.
    fn run_out(&mut self, catalog: &Catalog, exhausted: Exhausted, unpaid: u64, at: Instant, rating: &mut Rating, ledger: &mut Vec<Entry>) {
        match exhausted {
            Exhausted::Block => self.reject(unpaid, RejectReason::Exhausted, at, rating, ledger),
            Exhausted::Throttle { .. } => {
                self.throttle(unpaid, ThrottleReason::Exhausted, at, ledger);
                rating.throttled_bytes += unpaid;
            }
            Exhausted::ExtraBlocks { block_bytes, price_minor } => self.buy_blocks(catalog, block_bytes, price_minor, unpaid, at, rating, ledger),
            Exhausted::PayAsYouGo { unit_bytes, price_minor } => {
                // In i128: units times price cannot overflow there, and the
                // total saturates rather than wraps.
                let cost = |b: u64| b.div_ceil(unit_bytes) as i128 * price_minor as i128;
                let before = cost(self.payg_period_bytes);
                self.payg_period_bytes = self.payg_period_bytes.saturating_add(unpaid);
                let charged = i64::try_from(cost(self.payg_period_bytes) - before).unwrap_or(i64::MAX);
                self.charges_minor = self.charges_minor.saturating_add(charged);
                rating.charged_minor = rating.charged_minor.saturating_add(charged);
                rating.unmetered_bytes += unpaid;
                ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Unmetered { bytes: unpaid } });
                if charged > 0 {
                    ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Charged { minor: charged, bytes: unpaid } });
                }
            }
        }
    }

    /// Buys the extra blocks that pay for `unpaid` (at most
    /// `MAX_BLOCKS_PER_RECORD`; the rest is rejected `block_limit`) and draws
    /// from them.
    #[allow(clippy::too_many_arguments)]
    fn buy_blocks(&mut self, catalog: &Catalog, block_bytes: u64, price_minor: i64, unpaid: u64, at: Instant, rating: &mut Rating, ledger: &mut Vec<Entry>) {
        let blocks = unpaid.div_ceil(block_bytes).min(MAX_BLOCKS_PER_RECORD);
        let payable = unpaid.min(blocks.saturating_mul(block_bytes));
        for _ in 0..blocks {
            let expires = self.period_end;
            let id = self.add_bucket(catalog, Kind::EXTRA, block_bytes, expires, Source::ExtraBlock, at, ledger);
            self.charges_minor = self.charges_minor.saturating_add(price_minor);
            rating.charged_minor = rating.charged_minor.saturating_add(price_minor);
            ledger.push(Entry { at, bucket: id, kind: Some(Kind::EXTRA), change: Change::Charged { minor: price_minor, bytes: block_bytes } });
        }
        let drawn = self.draw(payable, at, ledger);
        debug_assert_eq!(drawn, payable, "the blocks just bought pay for the rest");
        rating.drawn_bytes += drawn;
        let refused = unpaid - payable;
        if refused > 0 {
            self.reject(refused, RejectReason::BlockLimit, at, rating, ledger);
        }
    }

    fn throttle(&mut self, bytes: u64, reason: ThrottleReason, at: Instant, ledger: &mut Vec<Entry>) {
        if bytes > 0 {
            self.throttled_bytes = self.throttled_bytes.saturating_add(bytes);
            ledger.push(Entry { at, bucket: 0, kind: None, change: Change::Throttled { bytes, reason } });
        }
    }

    /// Crashes rather than continue from a state that breaks a rule. Only in
    /// debug builds: the checks walk the buckets.
    fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            for pair in self.buckets.windows(2) {
                assert!(pair[0].order_key() < pair[1].order_key(), "buckets out of consumption order");
            }
            for bucket in &self.buckets {
                assert!(bucket.used_bytes < bucket.granted_bytes, "a live bucket has data left");
            }
            assert!(self.fees_minor >= 0 && self.charges_minor >= 0);
        }
    }
}

fn push_forfeit(ledger: &mut Vec<Entry>, at: Instant, bucket: &Bucket, bytes: u64, cause: Cause) {
    if bytes > 0 {
        ledger.push(Entry { at, bucket: bucket.id, kind: Some(bucket.kind), change: Change::Forfeited { bytes, cause } });
    }
}

/// The checkpoint form of a subscription's state: a fixed layout, little
/// endian, that reads back to exactly the same state. Plans are written as
/// their catalog index; the reader maps them to its own catalog
/// (`plan_of`), so a catalog loaded in another order reads the same.
pub mod codec {
    use super::*;

    /// The layout's version, first byte of every encoding. A reader meets
    /// only versions it knows; any other is refused, never guessed.
    pub const FORMAT: u8 = 1;

    /// Why bytes do not read back as a subscription.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum CodecError {
        Version(u8),
        Truncated,
        TrailingBytes(usize),
        /// A value no subscription can hold (a plan unknown to the reader,
        /// buckets out of order, more used than granted, ...).
        Invalid(&'static str),
    }

    impl std::fmt::Display for CodecError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                CodecError::Version(v) => write!(f, "format version {v}, this build reads {FORMAT}"),
                CodecError::Truncated => write!(f, "the state ends early"),
                CodecError::TrailingBytes(n) => write!(f, "{n} bytes after the state"),
                CodecError::Invalid(what) => write!(f, "not a state a subscription can be in: {what}"),
            }
        }
    }

    impl std::error::Error for CodecError {}

    /// Appends `s` to `out`.
    pub fn encode(s: &Subscription, out: &mut Vec<u8>) {
        out.push(FORMAT);
        out.extend_from_slice(&s.plan.0.to_le_bytes());
        match s.pending_plan {
            Some(ix) => {
                out.push(1);
                out.extend_from_slice(&ix.0.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&s.next_bucket_id.to_le_bytes());
        out.extend_from_slice(&s.period_index.to_le_bytes());
        out.push(s.flags);
        for instant in [s.purchased_at, s.origin, s.period_end, s.window_end] {
            out.extend_from_slice(&instant.micros().to_le_bytes());
        }
        for value in [s.window_used_bytes, s.payg_period_bytes, s.throttled_bytes, s.rejected_bytes] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&s.charges_minor.to_le_bytes());
        out.extend_from_slice(&s.fees_minor.to_le_bytes());
        out.extend_from_slice(&(s.buckets.len() as u32).to_le_bytes());
        for b in &s.buckets {
            out.extend_from_slice(&b.id.to_le_bytes());
            out.extend_from_slice(&b.kind.packed().to_le_bytes());
            out.extend_from_slice(&b.granted_bytes.to_le_bytes());
            out.extend_from_slice(&b.used_bytes.to_le_bytes());
            out.extend_from_slice(&b.expires.micros().to_le_bytes());
            out.push(b.rank);
        }
    }

    struct Reader<'a>(&'a [u8]);

    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
            let (head, rest) = self.0.split_first_chunk::<N>().ok_or(CodecError::Truncated)?;
            self.0 = rest;
            Ok(*head)
        }
        fn u8(&mut self) -> Result<u8, CodecError> {
            Ok(self.take::<1>()?[0])
        }
        fn u32(&mut self) -> Result<u32, CodecError> {
            Ok(u32::from_le_bytes(self.take()?))
        }
        fn u64(&mut self) -> Result<u64, CodecError> {
            Ok(u64::from_le_bytes(self.take()?))
        }
        fn i64(&mut self) -> Result<i64, CodecError> {
            Ok(i64::from_le_bytes(self.take()?))
        }
    }

    /// Reads one state from the front of `bytes`; returns it and the rest.
    /// `plan_of` maps a written plan index to the reader's (`None`: the
    /// reader does not have that plan, and the state is refused).
    pub fn decode<'a>(bytes: &'a [u8], plan_of: &dyn Fn(u32) -> Option<PlanIx>) -> Result<(Subscription, &'a [u8]), CodecError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != FORMAT {
            return Err(CodecError::Version(version));
        }
        let plan = plan_of(r.u32()?).ok_or(CodecError::Invalid("an unknown plan"))?;
        let pending_plan = match r.u8()? {
            0 => None,
            1 => Some(plan_of(r.u32()?).ok_or(CodecError::Invalid("an unknown pending plan"))?),
            _ => return Err(CodecError::Invalid("the pending plan's marker")),
        };
        let (next_bucket_id, period_index, flags) = (r.u32()?, r.u32()?, r.u8()?);
        if flags & !(STARTED | SUSPENDED | ENDED) != 0 {
            return Err(CodecError::Invalid("unknown flags"));
        }
        let [purchased_at, origin, period_end, window_end] = [r.i64()?, r.i64()?, r.i64()?, r.i64()?].map(Instant::from_micros);
        let [window_used_bytes, payg_period_bytes, throttled_bytes, rejected_bytes] = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let (charges_minor, fees_minor) = (r.i64()?, r.i64()?);
        if charges_minor < 0 || fees_minor < 0 {
            return Err(CodecError::Invalid("negative money"));
        }
        let count = r.u32()? as usize;
        if count > MAX_LIVE_BUCKETS + 8 {
            return Err(CodecError::Invalid("more buckets than a subscription may hold"));
        }
        let mut buckets: Vec<Bucket> = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.u32()?;
            let kind = Kind::from_packed(r.u64()?).ok_or(CodecError::Invalid("a bucket kind"))?;
            let (granted_bytes, used_bytes, expires, rank) = (r.u64()?, r.u64()?, Instant::from_micros(r.i64()?), r.u8()?);
            if used_bytes >= granted_bytes || id >= next_bucket_id {
                return Err(CodecError::Invalid("a bucket with no data left, or an id not yet given"));
            }
            let bucket = Bucket { id, kind, granted_bytes, used_bytes, expires, rank };
            if buckets.last().is_some_and(|last| last.order_key() >= bucket.order_key()) {
                return Err(CodecError::Invalid("buckets out of consumption order"));
            }
            buckets.push(bucket);
        }
        let subscription = Subscription {
            buckets,
            plan,
            pending_plan,
            next_bucket_id,
            period_index,
            flags,
            purchased_at,
            origin,
            period_end,
            window_end,
            window_used_bytes,
            payg_period_bytes,
            throttled_bytes,
            rejected_bytes,
            charges_minor,
            fees_minor,
        };
        Ok((subscription, r.0))
    }

    /// Reads exactly one state from `bytes`.
    pub fn decode_one(bytes: &[u8], plan_of: &dyn Fn(u32) -> Option<PlanIx>) -> Result<Subscription, CodecError> {
        let (subscription, rest) = decode(bytes, plan_of)?;
        if !rest.is_empty() {
            return Err(CodecError::TrailingBytes(rest.len()));
        }
        Ok(subscription)
    }
}

/// Used by tests and benchmarks that build states directly.
impl Subscription {
    pub fn plan_of<'a>(&self, catalog: &'a Catalog) -> &'a Plan {
        catalog.get(self.plan)
    }
}

/// Table-driven checks of the engine's bounds and boundary rules: a plan
/// drafted in code, events in order, and what each must leave behind.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{AllowanceDraft, ExhaustedDraft, OrderDraft, PeriodDraft, PlanDraft, RolloverDraft};

    const MIB: u64 = 1 << 20;

    fn plan(exhausted: Option<(&str, &str, &str)>, price: &str) -> Catalog {
        let draft = PlanDraft {
            id: Some("p".into()),
            name: Some("P".into()),
            currency: Some("USD".into()),
            price: Some(price.into()),
            timezone: Some("UTC".into()),
            period: Some(PeriodDraft { kind: Some("monthly".into()), ..Default::default() }),
            allowance: Some(AllowanceDraft { data: Some("1MiB".into()) }),
            exhausted: exhausted.map(|(action, block, price)| ExhaustedDraft {
                action: Some(action.into()),
                block: (action == "extra_blocks").then(|| block.into()),
                unit: (action == "pay_as_you_go").then(|| block.into()),
                price: Some(price.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut catalog = Catalog::new();
        catalog.add(Plan::from_draft(&draft).expect("a valid plan"));
        catalog
    }

    fn at(text: &str) -> Instant {
        Instant::parse_rfc3339(text).unwrap()
    }

    /// Buys the plan on 2026-05-01, applies `events` and returns the
    /// subscription and the last outcome.
    fn run(catalog: &Catalog, events: &[(&str, Event)]) -> (Subscription, Outcome) {
        let mut ledger = Vec::new();
        let mut s = Subscription::purchase(catalog, PlanIx(0), at("2026-05-01T00:00:00Z"), &mut ledger);
        let mut last = Outcome::Applied;
        for (when, event) in events {
            last = s.apply(catalog, *event, at(when), &mut ledger);
        }
        (s, last)
    }

    fn usage(bytes: u64) -> Event {
        Event::Usage { bytes, country: None }
    }

    fn rating(outcome: Outcome) -> Rating {
        let Outcome::Rated(rating) = outcome else { panic!("{outcome:?} is not a rating") };
        rating
    }

    #[test]
    fn one_record_buys_at_most_the_block_limit() {
        let catalog = plan(Some(("extra_blocks", "1B", "0.01")), "1.00");
        let cases: [(u64, u64, u64, i64); 4] = [
            // (record bytes, drawn, rejected, charges in cents)
            (MIB, MIB, 0, 0),
            (MIB + 1, MIB + 1, 0, 1),
            (MIB + MAX_BLOCKS_PER_RECORD, MIB + MAX_BLOCKS_PER_RECORD, 0, MAX_BLOCKS_PER_RECORD as i64),
            (MIB + MAX_BLOCKS_PER_RECORD + 5, MIB + MAX_BLOCKS_PER_RECORD, 5, MAX_BLOCKS_PER_RECORD as i64),
        ];
        for (bytes, drawn, rejected, charges) in cases {
            let (s, outcome) = run(&catalog, &[("2026-05-02T00:00:00Z", usage(bytes))]);
            let r = rating(outcome);
            assert_eq!((r.drawn_bytes, r.rejected_bytes, s.charges_minor()), (drawn, rejected, charges), "{bytes} bytes");
            assert_eq!(r.reject_reason, (rejected > 0).then_some(RejectReason::BlockLimit), "{bytes} bytes");
        }
    }

    #[test]
    fn nothing_counts_before_the_purchase() {
        let catalog = plan(None, "1.00");
        let (s, outcome) = run(&catalog, &[("2026-04-30T23:59:59Z", usage(10))]);
        let r = rating(outcome);
        assert_eq!((r.drawn_bytes, r.rejected_bytes, r.reject_reason), (0, 10, Some(RejectReason::BeforePurchase)));
        assert_eq!(s.total_bytes(), MIB);
        let (s, outcome) = run(&catalog, &[("2026-04-30T00:00:00Z", Event::Suspend)]);
        assert_eq!(outcome, Outcome::Refused(Refusal::BeforePurchase));
        assert!(s.flags & SUSPENDED == 0);
    }

    #[test]
    fn grants_stop_at_the_live_bucket_limit() {
        let catalog = plan(None, "1.00");
        let gift = Event::Grant { kind: Kind::parse("gift").unwrap(), bytes: 1, expires: GrantExpiry::Never };
        let grants: Vec<(&str, Event)> = (0..MAX_LIVE_BUCKETS).map(|_| ("2026-05-02T00:00:00Z", gift)).collect();
        let (s, outcome) = run(&catalog, &grants);
        assert_eq!(s.buckets().len(), MAX_LIVE_BUCKETS, "the allowance and 999 gifts");
        assert_eq!(outcome, Outcome::Refused(Refusal::TooManyBuckets), "the 1,000th gift does not fit");
    }

    #[test]
    fn totals_saturate_instead_of_wrapping() {
        // The most a price may be, and pay-as-you-go units of one byte.
        let catalog = plan(Some(("pay_as_you_go", "1B", "10000000000.00")), "10000000000.00");
        let events: Vec<(&str, Event)> = (0..20).map(|_| ("2026-05-02T00:00:00Z", usage(1 << 40))).collect();
        let (s, _) = run(&catalog, &events);
        assert_eq!(s.charges_minor(), i64::MAX, "20 TiB at 10^12 cents a byte is far past i64");
        assert!(s.fees_minor() > 0);
    }

    /// A monthly 1 MiB plan (UTC) with the rollover section given.
    fn rolling_plan(rollover: Option<RolloverDraft>) -> Catalog {
        let draft = PlanDraft {
            id: Some("r".into()),
            name: Some("R".into()),
            currency: Some("USD".into()),
            price: Some("1.00".into()),
            timezone: Some("UTC".into()),
            period: Some(PeriodDraft { kind: Some("monthly".into()), ..Default::default() }),
            allowance: Some(AllowanceDraft { data: Some("1MiB".into()) }),
            order: rollover.as_ref().map(|_| OrderDraft { kinds: Some(vec!["carry".into(), "allowance".into()]) }),
            rollover,
            ..Default::default()
        };
        let mut catalog = Catalog::new();
        catalog.add(Plan::from_draft(&draft).expect("a valid plan"));
        catalog
    }

    fn rollover(from: &[&str], expires_after: &str, cap: Option<&str>, max_per_period: Option<&str>) -> Option<RolloverDraft> {
        Some(RolloverDraft {
            from: Some(from.iter().map(|k| k.to_string()).collect()),
            expires_after: Some(expires_after.into()),
            cap: cap.map(String::from),
            max_per_period: max_per_period.map(String::from),
            on_plan_change: None,
        })
    }

    /// Usage in May and June on a 1 MiB monthly plan bought May 1, then the
    /// state on July 1 and August 1: what carried, what was cut, what
    /// expired, under each rollover rule.
    #[test]
    fn boundaries_carry_cut_and_expire_by_the_plan_rules() {
        const KIB: u64 = 1 << 10;
        struct Case {
            name: &'static str,
            rollover: Option<RolloverDraft>,
            /// Bytes used in May and in June.
            used: (u64, u64),
            /// Carry bucket remaining on June 1, July 1 and August 1 (none: no carry bucket).
            carry: [Option<u64>; 3],
            /// Bytes forfeited by cause over the three boundaries: (expired, cap).
            forfeited: (u64, u64),
        }
        let cases = [
            Case { name: "no rollover", rollover: None, used: (MIB / 4, 0), carry: [None, None, None], forfeited: (MIB * 3 - MIB / 4, 0) },
            Case {
                name: "one more month, once",
                rollover: rollover(&["allowance"], "1 period", None, None),
                used: (MIB / 4, MIB / 2),
                // June: 768 KiB carried; June's usage draws carry first (512 KiB), so 256 KiB
                // of it expires on July 1 while June's untouched allowance carries whole.
                carry: [Some(768 * KIB), Some(MIB), Some(MIB)],
                forfeited: (256 * KIB + MIB, 0),
            },
            Case {
                name: "a cap on what is held",
                rollover: rollover(&["allowance"], "2 periods", Some("1MiB"), None),
                used: (0, 0),
                // June: all 1 MiB carries. July: the cap leaves no room, so June's MiB is cut.
                carry: [Some(MIB), Some(MIB), Some(MIB)],
                forfeited: (MIB, MIB),
            },
            Case {
                name: "a maximum per period",
                rollover: rollover(&["allowance"], "1 period", None, Some("100KiB")),
                used: (0, MIB),
                // June's usage empties the carry and leaves 100 KiB of June's allowance,
                // which carries whole on July 1; August's carry cuts again.
                carry: [Some(100 * KIB), Some(100 * KIB), Some(100 * KIB)],
                forfeited: (100 * KIB, (MIB - 100 * KIB) * 2),
            },
            Case {
                name: "carry again",
                rollover: rollover(&["allowance", "carry"], "1 period", None, None),
                used: (0, 0),
                carry: [Some(MIB), Some(2 * MIB), Some(3 * MIB)],
                forfeited: (0, 0),
            },
        ];
        for case in cases {
            let catalog = rolling_plan(case.rollover);
            let mut ledger = Vec::new();
            let mut s = Subscription::purchase(&catalog, PlanIx(0), at("2026-05-01T00:00:00Z"), &mut ledger);
            s.apply(&catalog, usage(case.used.0), at("2026-05-15T00:00:00Z"), &mut ledger);
            let carry_on = |s: &Subscription| s.buckets().iter().find(|b| b.kind == Kind::CARRY).map(|b| b.remaining_bytes());
            s.advance(&catalog, at("2026-06-01T00:00:00Z"), &mut ledger);
            let june = carry_on(&s);
            s.apply(&catalog, usage(case.used.1), at("2026-06-15T00:00:00Z"), &mut ledger);
            s.advance(&catalog, at("2026-07-01T00:00:00Z"), &mut ledger);
            let july = carry_on(&s);
            s.advance(&catalog, at("2026-08-01T00:00:00Z"), &mut ledger);
            let august = carry_on(&s);
            assert_eq!([june, july, august], case.carry, "{}: carry bucket on June 1, July 1, August 1", case.name);
            let forfeited = |cause: Cause| -> u64 {
                ledger.iter().filter_map(|e| match e.change { Change::Forfeited { bytes, cause: c } if c == cause => Some(bytes), _ => None }).sum()
            };
            assert_eq!((forfeited(Cause::Expired), forfeited(Cause::Cap)), case.forfeited, "{}: forfeited (expired, cap)", case.name);
        }
    }

    /// The preview of the period's end and the projection at a pace are
    /// the engine's own boundary, run on a copy: the subscription itself
    /// does not move.
    #[test]
    fn previews_and_projections_run_on_a_copy() {
        const KIB: u64 = 1 << 10;
        let catalog = rolling_plan(rollover(&["allowance"], "1 period", None, None));
        let mut ledger = Vec::new();
        let mut s = Subscription::purchase(&catalog, PlanIx(0), at("2026-05-01T00:00:00Z"), &mut ledger);
        s.apply(&catalog, usage(256 * KIB), at("2026-05-15T00:00:00Z"), &mut ledger);
        let before = s.clone();
        let preview = s.period_end_preview(&catalog).unwrap();
        assert_eq!(
            preview,
            PeriodEndPreview {
                at: at("2026-06-01T00:00:00Z"),
                carries_bytes: 768 * KIB,
                carry_expires: Some(at("2026-07-01T00:00:00Z")),
                forfeits_bytes: 0,
                next_allowance_bytes: Some(MIB),
                next_fee_minor: 100,
            }
        );
        let cases: [(u64, Option<&str>, u64); 3] = [
            // (bytes a day from May 15, when the data runs out, what carries on June 1)
            (0, None, 768 * KIB),
            (10 * KIB, None, 768 * KIB - 17 * 10 * KIB),
            // 768 KiB at 100 KiB a day: seven whole days, then 68 KiB of the eighth.
            (100 * KIB, Some("2026-05-22T16:19:12Z"), 0),
        ];
        for (daily, runs_out, carries) in cases {
            let projection = s.project(&catalog, at("2026-05-15T00:00:00Z"), daily).unwrap();
            assert_eq!(projection.runs_out_at, runs_out.map(at), "{daily} a day");
            assert_eq!(projection.period_end.map(|p| p.carries_bytes), Some(carries), "{daily} a day");
        }
        assert_eq!(s, before, "the subscription itself is untouched");
        let (ended, _) = run(&catalog, &[("2026-05-02T00:00:00Z", Event::Cancel)]);
        assert_eq!(ended.period_end_preview(&catalog), None, "nothing is ahead of an ended plan");
    }
}
