//! The plan advisor. A history of daily usage (`date,bytes[,country]`) is
//! replayed through the engine on every plan of a catalog, each bought at
//! the same start, exactly as the service would rate it; then the plan that
//! fits best is chosen and the choice said in a sentence.
//!
//! Rules, as `docs/advisor.md` states them for users:
//! - A day's bytes are used at that day's local midnight in each plan's own
//!   zone (in pieces small enough that one record never needs more than
//!   `MAX_BLOCKS_PER_RECORD` extra blocks). A plan that starts at install is
//!   installed at the start; one that starts at first use starts with the
//!   first day that has usage.
//! - The replay ends at the end of the last date; a boundary at that very
//!   instant (a new period's fee, an expiry) is not counted.
//! - Best: the cheapest plan that served every byte at full speed; if none
//!   did, the one that left the fewest bytes unserved (throttled or
//!   rejected), then the cheapest. Costs are compared only within one
//!   currency: among the plans that tie on bytes unserved, the currency of
//!   the first in catalog order is the one ranked, and plans in another are
//!   listed, not ranked.

use std::fmt;

use jiff::civil::Date;
use rollover_core::amount::parse_bytes;
use rollover_core::engine::MAX_BLOCKS_PER_RECORD;
use rollover_core::ledger::{Cause, Change, Entry};
use rollover_core::plan::{Exhausted, Starts};
use rollover_core::{Catalog, Country, Event, Instant, PlanIx, Subscription};
use rollover_explain::Lang;

/// Most rows a usage file may have: ten years of days.
pub const MAX_DAYS: usize = 3660;

/// The dates a usage file may hold: a replay stays within what the engine
/// and the time-zone database cover.
pub const EARLIEST: Date = jiff::civil::date(2000, 1, 1);
pub const LATEST: Date = jiff::civil::date(2199, 12, 31);

/// Most bytes one day may report: 1 TiB, as one usage record.
pub const MAX_DAY_BYTES: u64 = 1 << 40;

/// One day of usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub date: Date,
    pub bytes: u64,
    pub country: Option<Country>,
}

/// A row of a usage file that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for UsageError {}

/// Reads a usage file: a header `date,bytes[,country]`, then one row per
/// day in date order, each date at most once.
pub fn parse_usage(file: &str, text: &str) -> Result<Vec<Day>, UsageError> {
    let error = |line: usize, message: String| UsageError { file: file.to_string(), line, message };
    let mut lines = text.lines().enumerate().map(|(index, line)| (index + 1, line.trim_end_matches('\r'))).filter(|(_, line)| !line.trim().is_empty());
    let Some((number, header)) = lines.next() else { return Err(error(1, "the file is empty: it needs the header date,bytes[,country] and a row per day".into())) };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns != ["date", "bytes"] && columns != ["date", "bytes", "country"] {
        return Err(error(number, format!("the header is {header:?}: write date,bytes or date,bytes,country")));
    }
    let mut days: Vec<Day> = Vec::new();
    for (number, line) in lines {
        if days.len() == MAX_DAYS {
            return Err(error(number, format!("more than {MAX_DAYS} days (ten years)")));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 2 || fields.len() > columns.len() {
            return Err(error(number, format!("{} fields where the header has {}", fields.len(), columns.len())));
        }
        let date: Date = fields[0].parse().ok().filter(|_| fields[0].len() == 10).ok_or_else(|| error(number, format!("date {:?}: write YYYY-MM-DD", fields[0])))?;
        let bytes = match fields[1].parse::<u64>() {
            Ok(bytes) => bytes,
            Err(_) => parse_bytes(fields[1]).map_err(|e| error(number, format!("bytes {:?}: {e}", fields[1])))?,
        };
        if bytes > MAX_DAY_BYTES {
            return Err(error(number, format!("bytes {:?}: more than 1 TiB in one day", fields[1])));
        }
        let country = match fields.get(2).filter(|c| !c.is_empty()) {
            Some(code) => Some(Country::parse(code).map_err(|e| error(number, format!("country: {e}")))?),
            None => None,
        };
        if date < EARLIEST || date > LATEST {
            return Err(error(number, format!("date {date}: use a date from {EARLIEST} to {LATEST}")));
        }
        if let Some(last) = days.last()
            && date <= last.date
        {
            return Err(error(number, format!("date {date} is not after {}: one row per day, in date order", last.date)));
        }
        if let Some(first) = days.first()
            && first.date.until(date).map_or(true, |span| span.get_days() as usize >= MAX_DAYS)
        {
            return Err(error(number, format!("date {date} is more than {MAX_DAYS} days after the first, {}", first.date)));
        }
        days.push(Day { date, bytes, country });
    }
    if days.is_empty() {
        return Err(error(number, "no rows after the header".into()));
    }
    Ok(days)
}

/// A subscription's own history as days: what it used on each local date
/// (in `zone`) from `first` to `last`, days without use included. The
/// ledger does not keep countries, so these days have none.
pub fn days_of(ledger: &[Entry], zone: &rollover_core::Zone, first: Date, last: Date) -> Vec<Day> {
    let mut by_day: std::collections::BTreeMap<Date, u64> = std::collections::BTreeMap::new();
    for entry in ledger {
        let bytes = match entry.change {
            Change::Drawn { bytes } | Change::Unmetered { bytes } | Change::Throttled { bytes, .. } | Change::Rejected { bytes, .. } => bytes,
            _ => continue,
        };
        let date = zone.date_of(entry.at);
        if date >= first && date <= last {
            *by_day.entry(date).or_default() += bytes;
        }
    }
    let mut days = Vec::new();
    let mut date = first;
    while date <= last && days.len() < MAX_DAYS {
        days.push(Day { date, bytes: by_day.get(&date).copied().unwrap_or(0), country: None });
        let Ok(next) = date.tomorrow() else { break };
        date = next;
    }
    days
}

/// Days of a subscription's own history the advice looks at, at most.
pub const HISTORY_DAYS: i64 = 90;

/// How far back a ledger read must reach for [`history_days`]: the
/// history's days, and one more for the zone's offset.
pub fn history_start(now: Instant) -> Instant {
    now.plus_micros(-(HISTORY_DAYS + 2) * 86_400_000_000)
}

/// A subscription's history for advice: its last whole days (at most
/// [`HISTORY_DAYS`]) up to yesterday, or today alone on its first day, in
/// `zone`; `entries` is its ledger, from at least [`history_start`] on.
pub fn history_days(entries: &[Entry], zone: &rollover_core::Zone, now: Instant, purchased_at: Instant) -> Vec<Day> {
    let today = zone.date_of(now);
    let bought = zone.date_of(purchased_at);
    let yesterday = today.yesterday().unwrap_or(today);
    let earliest = today.checked_sub(jiff::Span::new().days(HISTORY_DAYS)).unwrap_or(today);
    let (first, last) = if bought >= today { (today, today) } else { (bought.max(earliest), yesterday) };
    days_of(entries, zone, first, last)
}

/// What one plan would have done with the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub plan: PlanIx,
    /// Fees and charges, in the plan's currency's minor units.
    pub cost_minor: i64,
    pub expired_bytes: u64,
    /// Expired bytes by cause: expired, cut by a cap, a plan change, a cancellation.
    pub expired_by_cause: Vec<(Cause, u64)>,
    pub throttled_bytes: u64,
    pub throttled_days: u32,
    pub rejected_bytes: u64,
    pub rejected_days: u32,
}

impl Outcome {
    /// Bytes not served at full speed.
    pub fn unserved_bytes(&self) -> u64 {
        self.throttled_bytes.saturating_add(self.rejected_bytes)
    }
}

/// The advice: each plan's outcome in catalog order, and the best one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub outcomes: Vec<Outcome>,
    pub best: Option<PlanIx>,
    /// Bytes the usage asked for in all.
    pub used_bytes: u64,
    pub days: usize,
}

/// Replays `days` on every plan of `catalog`, each bought at `start` (by
/// default the first date's local midnight in that plan's zone).
pub fn advise(catalog: &Catalog, days: &[Day], start: Option<Instant>) -> Advice {
    let outcomes: Vec<Outcome> = (0..catalog.plans().len()).map(|ix| replay(catalog, PlanIx(ix as u32), days, start)).collect();
    let best = choose(catalog, &outcomes);
    Advice { best, used_bytes: days.iter().map(|d| d.bytes).sum(), days: days.len(), outcomes }
}

fn replay(catalog: &Catalog, ix: PlanIx, days: &[Day], start: Option<Instant>) -> Outcome {
    let plan = catalog.get(ix);
    let zone = &plan.zone;
    let first = days.first().map(|d| zone.start_of(d.date));
    let start = start.or(first).unwrap_or(Instant::from_micros(0));
    let end = days.last().and_then(|d| d.date.tomorrow().ok()).map_or(start, |next| zone.start_of(next));
    let mut ledger: Vec<Entry> = Vec::new();
    let mut subscription = Subscription::purchase(catalog, ix, start, &mut ledger);
    if plan.starts == Starts::Install {
        subscription.apply(catalog, Event::Install, start, &mut ledger);
    }
    // One record may buy at most MAX_BLOCKS_PER_RECORD blocks; a day is
    // sent in pieces that never need more, as a network would send it.
    let piece = match plan.exhausted {
        Exhausted::ExtraBlocks { block_bytes, .. } => block_bytes.saturating_mul(MAX_BLOCKS_PER_RECORD).max(1),
        _ => u64::MAX,
    };
    let (mut throttled_days, mut rejected_days) = (0, 0);
    for day in days {
        let at = zone.start_of(day.date);
        if at >= end {
            break;
        }
        let mark = ledger.len();
        let mut left = day.bytes;
        while left > 0 {
            let bytes = left.min(piece);
            subscription.apply(catalog, Event::Usage { bytes, country: day.country }, at, &mut ledger);
            left -= bytes;
        }
        let during = &ledger[mark..];
        throttled_days += u32::from(during.iter().any(|e| matches!(e.change, Change::Throttled { bytes, .. } if bytes > 0)));
        rejected_days += u32::from(during.iter().any(|e| matches!(e.change, Change::Rejected { bytes, .. } if bytes > 0)));
    }
    // The end of the last date itself is not replayed: a fee or an expiry
    // at that instant belongs to the next day.
    subscription.advance(catalog, end.plus_micros(-1), &mut ledger);
    let mut expired_by_cause: Vec<(Cause, u64)> = Vec::new();
    for entry in &ledger {
        if let Change::Forfeited { bytes, cause } = entry.change {
            match expired_by_cause.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, total)) => *total += bytes,
                None => expired_by_cause.push((cause, bytes)),
            }
        }
    }
    Outcome {
        plan: ix,
        cost_minor: subscription.fees_minor().saturating_add(subscription.charges_minor()),
        expired_bytes: expired_by_cause.iter().map(|(_, bytes)| bytes).sum(),
        expired_by_cause,
        throttled_bytes: subscription.throttled_bytes(),
        throttled_days,
        rejected_bytes: subscription.rejected_bytes(),
        rejected_days,
    }
}

/// The best outcome: fewest bytes unserved, then the cheapest within the
/// currency of the first plan (in catalog order) among those that tie.
fn choose(catalog: &Catalog, outcomes: &[Outcome]) -> Option<PlanIx> {
    let fewest = outcomes.iter().map(Outcome::unserved_bytes).min()?;
    let tied: Vec<&Outcome> = outcomes.iter().filter(|o| o.unserved_bytes() == fewest).collect();
    let currency = catalog.get(tied[0].plan).currency.code();
    tied.iter().filter(|o| catalog.get(o.plan).currency.code() == currency).min_by_key(|o| o.cost_minor).map(|o| o.plan)
}

/// Why the best plan is best, in a sentence.
pub fn reason(catalog: &Catalog, advice: &Advice, lang: Lang) -> String {
    let Some(best) = advice.best else {
        return match lang {
            Lang::En => "There is no plan to compare.".into(),
            Lang::Zh => "没有可比较的套餐。".into(),
        };
    };
    let plan = catalog.get(best);
    let outcome = &advice.outcomes[best.0 as usize];
    let cost = rollover_explain::words::money(plan, outcome.cost_minor, lang);
    let words = rollover_explain::words::Words::new(plan, lang);
    let (name, days) = (&plan.name, advice.days);
    if outcome.unserved_bytes() == 0 {
        match lang {
            Lang::En => format!("{name} ({}) is the cheapest plan that served every byte of these {days} days at full speed: {cost} in all.", plan.id),
            Lang::Zh => format!("{name}（{}）是能以全速满足这 {days} 天全部用量的最便宜的套餐：共 {cost}。", plan.id),
        }
    } else {
        let unserved = words.data(outcome.unserved_bytes());
        match lang {
            Lang::En => format!("No plan served every byte at full speed; {name} ({}) left the least unserved ({unserved}), for {cost} in all.", plan.id),
            Lang::Zh => format!("没有套餐能以全速满足全部用量；{name}（{}）未能全速满足的流量最少（{unserved}），共 {cost}。", plan.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_files_are_read_strictly() {
        let ok = parse_usage("u.csv", "date,bytes,country\n2026-03-01,1.5GiB,CN\n2026-03-02,1024\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].bytes, 3 << 29);
        assert_eq!(ok[1].country, None);
        let cases = [
            ("", 1, "empty"),
            ("day,bytes\n", 1, "header"),
            ("date,bytes\n", 1, "no rows"),
            ("date,bytes\n2026-3-1,5\n", 2, "YYYY-MM-DD"),
            ("date,bytes\n2026-03-01,lots\n", 2, "bytes \"lots\""),
            ("date,bytes\n2026-03-01,-5MB\n", 2, "negative"),
            ("date,bytes\n2026-03-02,5\n2026-03-01,5\n", 3, "not after"),
            ("date,bytes\n2026-03-01,5\n2026-03-01,5\n", 3, "not after"),
            ("date,bytes,country\n2026-03-01,5,XX\n", 2, "country"),
            ("date,bytes\n2026-03-01,5,CN\n", 2, "3 fields"),
            ("date,bytes\n2026-03-01,2TiB\n", 2, "1 TiB"),
            ("date,bytes\n9999-12-30,1\n", 2, "use a date from 2000-01-01 to 2199-12-31"),
            ("date,bytes\n2000-01-01,1\n2199-12-29,1\n", 3, "more than 3660 days after the first"),
        ];
        for (text, line, says) in cases {
            let error = parse_usage("u.csv", text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(says), "{text:?}: {error}");
        }
    }
}
