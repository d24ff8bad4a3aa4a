//! The worked example: a customer's first period on the plan, with numbers
//! the engine computes by running it, told in either language.

use rollover_core::catalog::{Catalog, PlanIx};
use rollover_core::engine::{Event, Outcome, Subscription};
use rollover_core::ledger::{Cause, Change, Entry, Source};
use rollover_core::names::Kind;
use rollover_core::plan::{Anchor, Exhausted, Period, Plan, Starts};
use rollover_core::time::{Instant, Length, MICROS_PER_DAY, MICROS_PER_HOUR};

use crate::words::{EXAMPLE_YEAR, Words};

/// The numbers of the worked example, computed by running the engine.
pub struct Example {
    start: Instant,
    /// The first period's end (the pass's end for `once` plans).
    first_end: Instant,
    used_bytes: u64,
    /// What carried at the first boundary, and until when.
    carry: Option<(u64, Instant)>,
    /// What a cap cut from the first carry.
    cut_bytes: u64,
    /// Usable data just after the first boundary.
    total_after: u64,
    second_allowance: Option<u64>,
    /// For plans with a daily cap: a day's usage of 1.5 x the cap, split
    /// into what went at full speed and what was throttled.
    daily: Option<(u64, u64, u64)>,
    /// For overage plans: usage of the allowance plus 70% of a block or unit
    /// pack, and what it cost.
    overage: Option<(u64, i64)>,
}

fn example_start(plan: &Plan) -> Instant {
    let day = match plan.period {
        Period::Monthly(Anchor::Start) => 15,
        _ => 1,
    };
    let midnight = plan.zone.start_of(jiff::civil::date(EXAMPLE_YEAR, 10, day));
    match plan.period {
        // A pass bought by a traveller starts when they land, not at midnight.
        Period::Once(Length::Exact(_)) => midnight.plus_micros(15 * MICROS_PER_HOUR),
        _ => midnight,
    }
}

/// A subscription bought (and started, for plans that wait) at `start`.
fn started(catalog: &Catalog, plan: &Plan, start: Instant, ledger: &mut Vec<Entry>) -> Subscription {
    // The example's catalog holds its plan alone.
    let ix = PlanIx(0);
    let mut subscription = Subscription::purchase(catalog, ix, start, ledger);
    let event = match plan.starts {
        Starts::Purchase => None,
        Starts::Install => Some(Event::Install),
        Starts::FirstUse => Some(Event::FirstUse),
    };
    if let Some(event) = event {
        subscription.apply(catalog, event, start, ledger);
    }
    subscription
}

pub fn compute(plan: &Plan) -> Example {
    let mut catalog = Catalog::new();
    catalog.add(plan.clone());
    let start = example_start(plan);
    let mut ledger = Vec::new();
    let mut subscription = started(&catalog, plan, start, &mut ledger);
    let (_, _, first_end) = subscription.period(&catalog).expect("the example plan has started");
    let allowance = subscription.buckets().iter().find(|bucket| bucket.kind == Kind::ALLOWANCE).map(|bucket| bucket.granted_bytes);
    // Use three fifths of the allowance halfway through the first period.
    let used_bytes = allowance.map_or(0, |allowance| allowance - allowance * 2 / 5);
    if used_bytes > 0 {
        let mid = Instant::from_micros(start.micros() + (first_end.micros() - start.micros()) / 2);
        subscription.apply(&catalog, Event::Usage { bytes: used_bytes, country: None }, mid, &mut ledger);
    }
    let mark = ledger.len();
    subscription.advance(&catalog, first_end, &mut ledger);
    let mut carry = None;
    let mut cut_bytes = 0;
    let mut second_allowance = None;
    for entry in &ledger[mark..] {
        match entry.change {
            Change::Granted { bytes, expires, source: Source::Carry } => carry = Some((bytes, expires)),
            Change::Granted { bytes, source: Source::Period(_), .. } => second_allowance = Some(bytes),
            Change::Forfeited { bytes, cause: Cause::Cap } => cut_bytes += bytes,
            _ => {}
        }
    }
    let total_after = subscription.total_bytes();
    let daily = plan.daily_cap.map(|cap| {
        let bytes = cap.bytes + cap.bytes / 2;
        match used_on_a_fresh_one(&catalog, plan, start, bytes, start.plus_micros(MICROS_PER_HOUR)).0 {
            Outcome::Rated(rated) => (bytes, rated.drawn_bytes + rated.unmetered_bytes, rated.throttled_bytes),
            _ => (bytes, 0, 0),
        }
    });
    let overage = match (plan.exhausted, allowance) {
        (Exhausted::ExtraBlocks { block_bytes: pack, .. } | Exhausted::PayAsYouGo { unit_bytes: pack, .. }, Some(allowance)) => {
            let bytes = allowance + pack * 7 / 10;
            Some((bytes, used_on_a_fresh_one(&catalog, plan, start, bytes, start.plus_micros(MICROS_PER_DAY)).1))
        }
        _ => None,
    };
    Example { start, first_end, used_bytes, carry, cut_bytes, total_after, second_allowance, daily, overage }
}

/// Uses `bytes` at `at` on a subscription of its own; what the engine said,
/// and what was charged for it.
fn used_on_a_fresh_one(catalog: &Catalog, plan: &Plan, start: Instant, bytes: u64, at: Instant) -> (Outcome, i64) {
    let mut ledger = Vec::new();
    let mut subscription = started(catalog, plan, start, &mut ledger);
    let before = subscription.charges_minor();
    let outcome = subscription.apply(catalog, Event::Usage { bytes, country: None }, at, &mut ledger);
    (outcome, subscription.charges_minor() - before)
}

/// The example as a paragraph, under its heading.
pub fn text(w: &Words, ex: &Example) -> String {
    let plan = w.plan;
    let (lang, zone, noun) = (w.lang, &w.zone, &w.noun);
    let at = w.start(ex.start);
    let begin = match plan.starts {
        Starts::Purchase => say!(lang, "You buy the plan {at}", "您于 {at} 购买"),
        Starts::Install => say!(lang, "You install the eSIM {at}", "您于 {at} 安装 eSIM"),
        Starts::FirstUse => say!(lang, "Your eSIM first connects {at}", "您的 eSIM 于 {at} 首次连网"),
    };
    let end = w.end(ex.first_end);
    let mut out = say!(lang, "\nExample\n", "\n举例\n");
    out += &match plan.allowance_bytes {
        _ if plan.is_once() => pass(w, ex, &begin),
        Some(allowance) => first_period(w, ex, &begin, allowance),
        None => say!(lang, "{begin} ({zone}); the {noun} renews at {end}.", "{begin}（{zone}），于 {end} 续订。"),
    };
    if let Some((used, fast, slow)) = ex.daily {
        let (used, fast, slow) = (w.data(used), w.data(fast), w.data(slow));
        out += &say!(
            lang,
            " If you use {used} in one day, {fast} is at full speed and the other {slow} at reduced speed.",
            "如果一天内用了 {used}，其中 {fast} 为高速，其余 {slow} 为降速。"
        );
    }
    if let Some((used, cost)) = ex.overage {
        let (used, cost) = (w.data(used), w.money(cost));
        out += &match plan.period {
            Period::Once(_) => say!(lang, " If you use {used} during the pass, the overage costs {cost}.", "如果有效期内用了 {used}，超出部分收费 {cost}。"),
            Period::Monthly(_) => say!(lang, " If you use {used} in a {noun}, the overage costs {cost}.", "如果一个月内用了 {used}，超出部分收费 {cost}。"),
            Period::Days(_) => say!(lang, " If you use {used} in a {noun}, the overage costs {cost}.", "如果一个周期内用了 {used}，超出部分收费 {cost}。"),
        };
    }
    out + "\n"
}

/// A one-time pass: when it ends, and what is left then.
fn pass(w: &Words, ex: &Example, begin: &str) -> String {
    let (lang, zone, end) = (w.lang, &w.zone, w.end(ex.first_end));
    let mut out = say!(lang, "{begin} ({zone}): the pass runs until {end}.", "{begin}（{zone}），套餐有效至 {end}。");
    if let Some(allowance) = w.plan.allowance_bytes {
        let (used, all, left) = (w.data(ex.used_bytes), w.data(allowance), w.data(allowance - ex.used_bytes));
        out += &say!(lang, " If you use {used} of your {all}, the other {left} expires then.", "如果 {all} 中只用了 {used}，剩余的 {left} 届时清零。");
    }
    out
}

/// A periodic plan's first period: what is used, then what carries over or
/// expires at its end, and what the customer has after it.
fn first_period(w: &Words, ex: &Example, begin: &str, allowance: u64) -> String {
    let plan = w.plan;
    let (lang, zone, noun) = (w.lang, &w.zone, &w.noun);
    let (end, first_month, next_month, next_day) = (w.end(ex.first_end), w.month(ex.start), w.month(ex.first_end), w.day(ex.first_end));
    let (this, next) = match plan.period {
        Period::Monthly(Anchor::Calendar) => (say!(lang, "in {first_month}", "{first_month}底前"), next_month),
        _ => (say!(lang, "by {end}", "{end} 前"), say!(lang, "the {noun} from {next_day}", "自 {next_day} 起的新周期")),
    };
    // Prorated plans get less in a short first month; the example starts on
    // the 1st, so usually the full amount.
    let first_allowance = plan.first_period_amounts(ex.start).0.unwrap_or(0);
    let (used, granted, left) = (w.data(ex.used_bytes), w.data(first_allowance), w.data(first_allowance - ex.used_bytes));
    let mut out = say!(lang, "{begin} and use {used} of your {granted} {this}.", "{begin}，{this}用了 {granted} 中的 {used}。");
    let Some((carried_bytes, expires)) = ex.carry else {
        let again = w.data(ex.second_allowance.unwrap_or(allowance));
        return out + &say!(lang, " The remaining {left} expires at {end} ({zone}), and you start again with {again}.", "剩余的 {left} 于 {end}（{zone}）清零，随后重新获得 {again}。");
    };
    let carried = w.data(carried_bytes);
    out += &if expires.is_never() {
        say!(lang, " {carried} carries into {next} and stays usable while the plan lasts.", "{carried} 将结转到{next}，套餐有效期间一直可用。")
    } else {
        let usable_until = w.end(expires);
        say!(lang, " {carried} carries into {next} and is usable until {usable_until} ({zone}).", "{carried} 将结转到{next}，可用至 {usable_until}（{zone}）。")
    };
    if ex.cut_bytes > 0 {
        let cut = w.data(ex.cut_bytes);
        out += &say!(lang, " The other {cut} is over the plan's carry-over limit and is forfeited.", "另外 {cut} 超出结转上限，作废。");
    }
    let (second, total) = (w.data(ex.second_allowance.unwrap_or(0)), w.data(ex.total_after));
    let order = match plan.rank(Kind::CARRY).cmp(&plan.rank(Kind::ALLOWANCE)) {
        std::cmp::Ordering::Less => say!(lang, "the {carried} carried over is used first, then the new {second}", "先用结转的 {carried}，再用新的 {second}"),
        std::cmp::Ordering::Greater => say!(lang, "the new {second} is used first, then the {carried} carried over", "先用新的 {second}，再用结转的 {carried}"),
        std::cmp::Ordering::Equal => say!(lang, "whichever expires first is used first", "先到期的先用"),
    };
    out + &say!(lang, " You then have {total}: {order}.", "届时您共有 {total}：{order}。")
}
