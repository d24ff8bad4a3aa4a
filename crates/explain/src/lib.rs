//! Plain-language explanations of plans, in English and Chinese, answering
//! first what customers ask, with a worked example whose numbers the engine
//! itself computes; and readable ledger lines for support staff.
//!
//! English and Chinese are written separately, not translated word for word.

use std::fmt::Write as _;

use jiff::civil::Date;

use rollover_core::amount::{UnitBase, format_exact, format_human};
use rollover_core::catalog::Catalog;
use rollover_core::engine::{Event, Subscription};
use rollover_core::ledger::{Cause, Change, Entry, Lifecycle};
use rollover_core::names::Kind;
use rollover_core::plan::{Anchor, Exhausted, OnPlanChange, Period, Plan, Starts, Window};
use rollover_core::time::{Instant, Length, MICROS_PER_DAY, MICROS_PER_HOUR, Zone};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

/// The year the worked examples are set in; fixed so that explanations are
/// the same every time they are printed.
const EXAMPLE_YEAR: i16 = 2026;

fn zone_label(zone: &Zone, lang: Lang) -> String {
    let known: &[(&str, &str, &str)] = &[
        ("Asia/Shanghai", "Beijing time", "北京时间"),
        ("Asia/Chongqing", "Beijing time", "北京时间"),
        ("Asia/Hong_Kong", "Hong Kong time", "香港时间"),
        ("Asia/Macau", "Macau time", "澳门时间"),
        ("Asia/Taipei", "Taipei time", "台北时间"),
        ("Asia/Tokyo", "Tokyo time", "东京时间"),
        ("Asia/Seoul", "Seoul time", "首尔时间"),
        ("Asia/Singapore", "Singapore time", "新加坡时间"),
        ("Asia/Bangkok", "Bangkok time", "曼谷时间"),
        ("Europe/London", "UK time", "英国时间"),
        ("Europe/Paris", "Paris time", "巴黎时间"),
        ("Europe/Berlin", "Berlin time", "柏林时间"),
        ("America/New_York", "New York time", "纽约时间"),
        ("America/Los_Angeles", "Los Angeles time", "洛杉矶时间"),
        ("Australia/Sydney", "Sydney time", "悉尼时间"),
        ("UTC", "UTC", "UTC 时间"),
        ("Etc/UTC", "UTC", "UTC 时间"),
    ];
    match known.iter().find(|(name, _, _)| *name == zone.name()) {
        Some((_, en, zh)) => if lang == Lang::En { en.to_string() } else { zh.to_string() },
        None => if lang == Lang::En { format!("{} time", zone.name()) } else { format!("{} 时间", zone.name()) },
    }
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

fn month_name(date: Date, lang: Lang) -> String {
    match lang {
        Lang::En => MONTHS[date.month() as usize - 1].to_string(),
        Lang::Zh => format!("{}月", date.month()),
    }
}

/// A day as people write it; the year is added when it is not the example's.
fn day_name(date: Date, lang: Lang) -> String {
    let other_year = date.year() != EXAMPLE_YEAR;
    match (lang, other_year) {
        (Lang::En, false) => format!("{} {}", MONTHS[date.month() as usize - 1], date.day()),
        (Lang::En, true) => format!("{} {}, {}", MONTHS[date.month() as usize - 1], date.day(), date.year()),
        (Lang::Zh, false) => format!("{}月{}日", date.month(), date.day()),
        (Lang::Zh, true) => format!("{}年{}月{}日", date.year(), date.month(), date.day()),
    }
}

/// An exclusive end shown the way people read it: a local midnight as the
/// end of the day before ("the end of November 30" / "11月30日 24:00"),
/// anything else as a time on a day.
fn end_text(at: Instant, zone: &Zone, lang: Lang) -> String {
    let datetime = zone.tz().to_datetime(at.timestamp());
    let date = datetime.date();
    if zone.start_of(date) == at {
        let day = date.yesterday().expect("dates stay in range");
        match lang {
            Lang::En => format!("the end of {}", day_name(day, lang)),
            Lang::Zh => format!("{} 24:00", day_name(day, lang)),
        }
    } else {
        match lang {
            Lang::En => format!("{:02}:{:02} on {}", datetime.hour(), datetime.minute(), day_name(date, lang)),
            Lang::Zh => format!("{} {:02}:{:02}", day_name(date, lang), datetime.hour(), datetime.minute()),
        }
    }
}

fn start_text(at: Instant, zone: &Zone, lang: Lang) -> String {
    let datetime = zone.tz().to_datetime(at.timestamp());
    let date = datetime.date();
    if zone.start_of(date) == at {
        day_name(date, lang)
    } else {
        match lang {
            Lang::En => format!("{:02}:{:02} on {}", datetime.hour(), datetime.minute(), day_name(date, lang)),
            Lang::Zh => format!("{} {:02}:{:02}", day_name(date, lang), datetime.hour(), datetime.minute()),
        }
    }
}

fn money(plan: &Plan, minor: i64, lang: Lang) -> String {
    let amount = plan.currency.format(minor);
    let zh_names: &[(&str, &str)] = &[
        ("CNY", "元"), ("USD", "美元"), ("EUR", "欧元"), ("GBP", "英镑"), ("AUD", "澳元"), ("HKD", "港元"),
        ("JPY", "日元"), ("KRW", "韩元"), ("SGD", "新加坡元"), ("TWD", "新台币"), ("MOP", "澳门元"), ("THB", "泰铢"),
    ];
    if lang == Lang::Zh
        && let Some((_, name)) = zh_names.iter().find(|(code, _)| *code == plan.currency.code())
    {
        return format!("{amount} {name}");
    }
    match (lang, plan.currency.code(), plan.currency.symbol()) {
        (_, _, Some(symbol)) => format!("{symbol}{amount}"),
        (_, code, None) => format!("{amount} {code}"),
    }
}

fn data(plan: &Plan, bytes: u64) -> String {
    format_human(bytes, plan.unit_base)
}

/// What customers call each kind of data.
fn kind_words(kind: Kind, lang: Lang) -> String {
    let known: &[(Kind, &str, &str)] = &[
        (Kind::ALLOWANCE, "plan data", "套餐内流量"),
        (Kind::CARRY, "carried-over data", "结转流量"),
        (Kind::EXTRA, "extra data blocks", "超额流量包"),
    ];
    if let Some((_, en, zh)) = known.iter().find(|(k, _, _)| *k == kind) {
        return if lang == Lang::En { en.to_string() } else { zh.to_string() };
    }
    let named: &[(&str, &str, &str)] = &[
        ("gift", "gift data", "赠送流量"),
        ("addon", "add-on packs", "加油包"),
        ("boost", "data boosts", "加速包"),
        ("bonus", "bonus data", "奖励流量"),
        ("topup", "top-up data", "充值流量"),
    ];
    let name = kind.name();
    match named.iter().find(|(n, _, _)| *n == name) {
        Some((_, en, zh)) => if lang == Lang::En { en.to_string() } else { zh.to_string() },
        None => if lang == Lang::En { format!("\"{name}\" data") } else { format!("“{name}”流量") },
    }
}

fn join_en(items: &[String], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., final_item] => format!("{} {last} {final_item}", rest.join(", ")),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

/// The words for one period of the plan: "month", "30-day period", or the
/// pass itself.
fn period_noun(plan: &Plan, lang: Lang) -> String {
    match (&plan.period, lang) {
        (Period::Monthly(_), Lang::En) => "month".into(),
        (Period::Monthly(_), Lang::Zh) => "月".into(),
        (Period::Days(days), Lang::En) => format!("{days}-day period"),
        (Period::Days(days), Lang::Zh) => format!("{days} 天周期"),
        (Period::Once(_), Lang::En) => "pass".into(),
        (Period::Once(_), Lang::Zh) => "有效期".into(),
    }
}

/// The numbers of the worked example, computed by running the engine.
struct Example {
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
    /// For plans with a daily cap: a day's usage of 1.5 x the cap, split.
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
    let date = jiff::civil::date(EXAMPLE_YEAR, 10, day);
    let midnight = plan.zone.start_of(date);
    match plan.period {
        // A pass bought by a traveller starts when they land, not at midnight.
        Period::Once(Length::Exact(_)) => midnight.plus_micros(15 * MICROS_PER_HOUR),
        _ => midnight,
    }
}

fn compute_example(plan: &Plan) -> Example {
    let mut catalog = Catalog::new();
    let ix = catalog.add(plan.clone());
    let start = example_start(plan);
    let mut ledger = Vec::new();
    let fresh = |ledger: &mut Vec<Entry>| {
        let mut subscription = Subscription::purchase(&catalog, ix, start, ledger);
        match plan.starts {
            Starts::Purchase => {}
            Starts::Install => {
                subscription.apply(&catalog, Event::Install, start, ledger);
            }
            Starts::FirstUse => {
                subscription.apply(&catalog, Event::FirstUse, start, ledger);
            }
        }
        subscription
    };
    let mut subscription = fresh(&mut ledger);
    let (_, _, first_end) = subscription.period(&catalog).expect("the example plan has started");
    let allowance = subscription.buckets().iter().find(|b| b.kind == Kind::ALLOWANCE).map(|b| b.granted_bytes);
    let used_bytes = allowance.map_or(0, |a| a - a * 2 / 5);
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
            Change::Granted { bytes, expires, source: rollover_core::ledger::Source::Carry } => carry = Some((bytes, expires)),
            Change::Granted { bytes, source: rollover_core::ledger::Source::Period(_), .. } => second_allowance = Some(bytes),
            Change::Forfeited { bytes, cause: Cause::Cap } => cut_bytes += bytes,
            _ => {}
        }
    }
    let total_after = subscription.total_bytes();

    let daily = plan.daily_cap.map(|cap| {
        let mut ledger = Vec::new();
        let mut day = fresh(&mut ledger);
        let bytes = cap.bytes + cap.bytes / 2;
        let at = start.plus_micros(MICROS_PER_HOUR);
        match day.apply(&catalog, Event::Usage { bytes, country: None }, at, &mut ledger) {
            rollover_core::engine::Outcome::Rated(r) => (bytes, r.drawn_bytes + r.unmetered_bytes, r.throttled_bytes),
            _ => (bytes, 0, 0),
        }
    });

    let overage = match (plan.exhausted, allowance) {
        (Exhausted::ExtraBlocks { block_bytes: pack, .. } | Exhausted::PayAsYouGo { unit_bytes: pack, .. }, Some(allowance)) => {
            let mut ledger = Vec::new();
            let mut over = fresh(&mut ledger);
            let bytes = allowance + pack * 7 / 10;
            let at = start.plus_micros(MICROS_PER_DAY);
            let before = over.charges_minor();
            over.apply(&catalog, Event::Usage { bytes, country: None }, at, &mut ledger);
            Some((bytes, over.charges_minor() - before))
        }
        _ => None,
    };

    Example { start, first_end, used_bytes, carry, cut_bytes, total_after, second_allowance, daily, overage }
}

/// Explains `plan` in `lang`, answering first whether unused data carries over.
pub fn explain_plan(plan: &Plan, lang: Lang) -> String {
    let example = compute_example(plan);
    match lang {
        Lang::En => explain_en(plan, &example),
        Lang::Zh => explain_zh(plan, &example),
    }
}

fn order_kinds(plan: &Plan) -> Vec<Kind> {
    if plan.order.is_empty() {
        return Vec::new();
    }
    plan.order.clone()
}

fn explain_en(plan: &Plan, ex: &Example) -> String {
    let lang = Lang::En;
    let zone = label_for(plan, lang);
    let noun = period_noun(plan, lang);
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", plan.name, plan.id);
    let price = money(plan, plan.price_minor, lang);
    let unit_note = match plan.unit_base {
        UnitBase::Binary => "1 GB = 1024 MB",
        UnitBase::Decimal => "1 GB = 1000 MB",
    };
    match (&plan.period, plan.allowance_bytes) {
        (Period::Once(length), Some(bytes)) => {
            let _ = writeln!(out, "{price} once; {} of data for {} ({unit_note}).", data(plan, bytes), length_en(*length));
        }
        (Period::Once(length), None) => {
            let _ = writeln!(out, "{price} once; valid for {}.", length_en(*length));
        }
        (_, Some(bytes)) => {
            let _ = writeln!(out, "{price} a {noun}; {} of data each {noun} ({unit_note}).", data(plan, bytes));
        }
        (_, None) => {
            let _ = writeln!(out, "{price} a {noun}.");
        }
    }
    if let Some(cap) = plan.daily_cap {
        let speed = cap.throttle_kbps.map_or("a reduced speed".to_string(), |k| format!("{k} kbps"));
        let until = match cap.window {
            Window::CalendarDay => format!("until midnight ({zone})"),
            Window::Rolling24h => "until 24 hours after that day's window began".to_string(),
        };
        if plan.is_unlimited() {
            let _ = writeln!(out, "Unlimited data: {} a day at full speed, then {speed} {until}.", data(plan, cap.bytes));
        } else {
            let _ = writeln!(out, "At most {} a day at full speed; after that {speed} {until}.", data(plan, cap.bytes));
        }
    }

    // 1. The question customers ask first.
    let question = match plan.period {
        Period::Monthly(_) => "Does unused data carry over to next month?".to_string(),
        Period::Days(days) => format!("Does unused data carry over to the next {days}-day period?"),
        Period::Once(_) => "Does unused data carry over?".to_string(),
    };
    let _ = writeln!(out, "\n{question}");
    match (&plan.rollover, &plan.period) {
        (_, Period::Once(_)) => {
            let _ = writeln!(out, "No. This is a one-time pass: whatever is left when it ends expires.");
        }
        (None, _) => {
            let _ = writeln!(out, "No. Data you haven't used by the end of each {noun} expires; the next {noun} starts fresh.");
        }
        (Some(rollover), _) => {
            let kinds: Vec<String> = rollover.from.iter().filter(|k| **k != Kind::CARRY).map(|k| kind_words(*k, lang)).collect();
            let what = if kinds.is_empty() { "Carried-over data".to_string() } else { capitalize(&join_en(&kinds, "and")) };
            let _ = write!(out, "Yes. {what} you don't use by the end of the {noun} carries over into the next one.");
            if let Some(max) = rollover.max_per_period_bytes {
                let _ = write!(out, " At most {} carries over at each {noun} end.", data(plan, max));
            }
            if let Some(cap) = rollover.cap_bytes {
                let _ = write!(out, " You can hold at most {} of carried-over data at a time; anything above that is forfeited.", data(plan, cap));
            }
            let _ = writeln!(out);
            let grants: Vec<String> =
                ["gift", "addon"].iter().filter_map(|n| Kind::parse(n).ok()).filter(|k| !plan.rolls(*k)).map(|k| kind_words(k, lang)).collect();
            if !grants.is_empty() {
                let _ = writeln!(out, "{} don't carry over; they expire on their own date.", capitalize(&join_en(&grants, "and")));
            }

            // 2. How long carried data lasts.
            let _ = writeln!(out, "\nHow long does carried-over data last?");
            let lifetime = match rollover.expires_after {
                Length::Periods(1) => format!("Until the end of the following {noun}."),
                Length::Periods(n) => format!("For {n} more {noun}s: it expires at the end of the {}th {noun} after it carried over.", n),
                Length::Months(n) => format!("For {n} month{} from the day it carries over.", if n == 1 { "" } else { "s" }),
                _ => "It doesn't expire while your plan is active.".to_string(),
            };
            let again = if plan.rolls(Kind::CARRY) {
                "Carried-over data that is still unused can carry over again."
            } else {
                "It carries over only once: whatever is left of it then expires."
            };
            let _ = writeln!(out, "{lifetime} {again}");
        }
    }

    // 3. Which data is used first.
    let _ = writeln!(out, "\nWhich data is used first?");
    let order = order_kinds(plan);
    if order.is_empty() {
        let _ = writeln!(out, "Whatever expires first is used first.");
    } else {
        let mut names: Vec<String> = order.iter().map(|k| kind_words(*k, lang)).collect();
        names.push("any other data, earliest expiry first".into());
        let _ = writeln!(out, "{}.", capitalize(&names.join(", then ")));
    }

    // 4. What happens at exhaustion.
    let _ = writeln!(out, "\nWhat happens when the data runs out?");
    if plan.is_unlimited() {
        let _ = writeln!(out, "It doesn't run out: past the day's full-speed data you stay online at reduced speed, at no extra charge.");
    } else {
        let next = if plan.is_once() { "the pass ends".to_string() } else { format!("the next {noun} starts") };
        match plan.exhausted {
            Exhausted::Block => {
                let _ = writeln!(out, "You can't use data until {next} or you add data.");
            }
            Exhausted::Throttle { throttle_kbps } => {
                let _ = writeln!(out, "Your speed is reduced to {throttle_kbps} kbps until {next} or you add data. There is no extra charge.");
            }
            Exhausted::ExtraBlocks { block_bytes, price_minor } => {
                let _ = writeln!(
                    out,
                    "An extra {} is added automatically for {} each time you run out. Extra data lasts until the end of the {noun} and doesn't carry over.",
                    data(plan, block_bytes),
                    money(plan, price_minor, lang)
                );
            }
            Exhausted::PayAsYouGo { unit_bytes, price_minor } => {
                let _ = writeln!(
                    out,
                    "You keep using data at {} per {}; each {noun} a started {} counts as a whole one.",
                    money(plan, price_minor, lang),
                    data(plan, unit_bytes),
                    data(plan, unit_bytes)
                );
            }
        }
    }

    // 5. When validity starts and ends.
    let _ = writeln!(out, "\nWhen does it start and end?");
    let starts = match plan.starts {
        Starts::Purchase => "The plan starts when you buy it.",
        Starts::Install => "The plan starts when you install the eSIM.",
        Starts::FirstUse => "The plan starts when your eSIM first connects to a network.",
    };
    let _ = write!(out, "{starts}");
    if let Some(within) = plan.activate_within
        && plan.starts != Starts::Purchase
    {
        let _ = write!(out, " If it hasn't started within {within} of purchase, it lapses and can no longer be used.");
    }
    let shape = match plan.period {
        Period::Monthly(Anchor::Calendar) => format!(" Each month runs from 00:00 on the 1st to the end of the month's last day ({zone})."),
        Period::Monthly(Anchor::Start) => format!(
            " Each month runs from 00:00 on the day of the month you started to the same day the next month ({zone}); in shorter months it turns on the last day."
        ),
        Period::Days(days) => format!(" Each period lasts exactly {days} days ({days} × 24 hours) from the moment the plan starts."),
        Period::Once(Length::CalendarDays(n)) => {
            format!(" It lasts {n} calendar day{}, counting the start day as day 1, and ends at midnight ({zone}).", if n == 1 { "" } else { "s" })
        }
        Period::Once(length) => format!(" It lasts {} from the moment it starts, to the minute.", length_en(length)),
    };
    let _ = write!(out, "{shape}");
    if plan.is_once() {
        let _ = writeln!(out, " One payment of {price}.");
    } else {
        let _ = writeln!(out, " It renews every {noun} until you cancel; each {noun}'s {price} is charged at its start.");
    }
    if plan.prorate_daily {
        let _ = writeln!(out, "If you start partway through a month, the first month's fee and data are prorated by day, counting the start day.");
    }
    if let Some(countries) = &plan.coverage {
        let list: Vec<&str> = countries.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(out, "Works in: {}. Data used elsewhere is not allowed.", list.join(", "));
    }
    if let Some(rollover) = &plan.rollover {
        match rollover.on_plan_change {
            OnPlanChange::Forfeit => {
                let _ = writeln!(out, "A plan change takes effect at the next {noun}; carried-over data and this {noun}'s leftover are then lost.");
            }
            OnPlanChange::Keep => {
                let _ = writeln!(out, "A plan change takes effect at the next {noun}; carried-over data keeps its expiry date.");
            }
        }
    } else if !plan.is_once() {
        let _ = writeln!(out, "A plan change takes effect at the next {noun}.");
    }

    // 6. The worked example.
    let _ = writeln!(out, "\nExample");
    let _ = writeln!(out, "{}", example_en(plan, ex, &zone));
    out
}

fn label_for(plan: &Plan, lang: Lang) -> String {
    zone_label(&plan.zone, lang)
}

fn length_en(length: Length) -> String {
    match length {
        Length::Exact(micros) if micros % MICROS_PER_DAY == 0 => {
            let n = micros / MICROS_PER_DAY;
            format!("{n} day{} ({} hours)", if n == 1 { "" } else { "s" }, n * 24)
        }
        other => other.to_string(),
    }
}

fn example_en(plan: &Plan, ex: &Example, zone: &str) -> String {
    let lang = Lang::En;
    let z = &plan.zone;
    let mut s = String::new();
    let begin = match plan.starts {
        Starts::Purchase => format!("You buy the plan on {}", start_text(ex.start, z, lang)),
        Starts::Install => format!("You install the eSIM at {}", start_text(ex.start, z, lang)),
        Starts::FirstUse => format!("Your eSIM first connects at {}", start_text(ex.start, z, lang)),
    };
    if plan.is_once() {
        let _ = write!(s, "{begin} ({zone}): the pass runs until {}.", end_text(ex.first_end, z, lang));
        if let Some(allowance) = plan.allowance_bytes {
            let left = allowance - ex.used_bytes;
            let _ = write!(s, " If you use {} of your {}, the other {} expires then.", data(plan, ex.used_bytes), data(plan, allowance), data(plan, left));
        }
    } else if let Some(allowance) = plan.allowance_bytes {
        let first_month = month_name(z.date_of(ex.start), lang);
        let next_month = month_name(z.date_of(ex.first_end), lang);
        let (this, next) = match plan.period {
            Period::Monthly(Anchor::Calendar) => (format!("in {first_month}"), next_month.clone()),
            _ => (format!("by {}", end_text(ex.first_end, z, lang)), format!("the {} from {}", period_noun(plan, lang), day_name(z.date_of(ex.first_end), lang))),
        };
        let first_allowance = allowance_granted(plan, ex);
        let left = first_allowance - ex.used_bytes;
        let _ = write!(s, "{begin} and use {} of your {} {this}.", data(plan, ex.used_bytes), data(plan, first_allowance));
        match ex.carry {
            Some((carried, expires)) => {
                let _ = write!(s, " {} carries into {next} and is usable until {} ({zone}).", data(plan, carried), end_text(expires, z, lang));
                if ex.cut_bytes > 0 {
                    let _ = write!(s, " The other {} is over the plan's carry-over limit and is forfeited.", data(plan, ex.cut_bytes));
                }
                let second = ex.second_allowance.unwrap_or(0);
                let first_used = if plan.rank(Kind::CARRY) < plan.rank(Kind::ALLOWANCE) {
                    format!("the {} carried over is used first, then the new {}", data(plan, carried), data(plan, second))
                } else if plan.rank(Kind::CARRY) > plan.rank(Kind::ALLOWANCE) {
                    format!("the new {} is used first, then the {} carried over", data(plan, second), data(plan, carried))
                } else {
                    "whichever expires first is used first".to_string()
                };
                let _ = write!(s, " You then have {}: {first_used}.", data(plan, ex.total_after));
            }
            None => {
                let _ = write!(
                    s,
                    " The remaining {} expires at {} ({zone}), and you start again with {}.",
                    data(plan, left),
                    end_text(ex.first_end, z, lang),
                    data(plan, ex.second_allowance.unwrap_or(allowance))
                );
            }
        }
    } else {
        let _ = write!(s, "{begin} ({zone}); the {} renews at {}.", period_noun(plan, lang), end_text(ex.first_end, z, lang));
    }
    if let Some((used, fast, slow)) = ex.daily {
        let _ = write!(
            s,
            " If you use {} in one day, {} is at full speed and the other {} at reduced speed.",
            data(plan, used),
            data(plan, fast),
            data(plan, slow)
        );
    }
    if let Some((used, cost)) = ex.overage {
        let _ = write!(s, " If you use {} in a {}, the overage costs {}.", data(plan, used), period_noun(plan, lang), money(plan, cost, lang));
    }
    s
}

/// The allowance granted for the example's first period (prorated plans get
/// less in a short first month; the example starts on the 1st, so usually
/// the full amount).
fn allowance_granted(plan: &Plan, ex: &Example) -> u64 {
    plan.first_period_amounts(ex.start).0.unwrap_or(0)
}

fn explain_zh(plan: &Plan, ex: &Example) -> String {
    let lang = Lang::Zh;
    let zone = label_for(plan, lang);
    let noun = period_noun(plan, lang);
    let mut out = String::new();
    let _ = writeln!(out, "{}（{}）", plan.name, plan.id);
    let price = money(plan, plan.price_minor, lang);
    let unit_note = match plan.unit_base {
        UnitBase::Binary => "1 GB = 1024 MB",
        UnitBase::Decimal => "1 GB = 1000 MB",
    };
    let per = match plan.period {
        Period::Monthly(_) => "每月".to_string(),
        Period::Days(days) => format!("每 {days} 天"),
        Period::Once(_) => String::new(),
    };
    match (&plan.period, plan.allowance_bytes) {
        (Period::Once(length), Some(bytes)) => {
            let _ = writeln!(out, "一次性付费 {price}，{}内共 {} 流量（{unit_note}）。", length_zh(*length), data(plan, bytes));
        }
        (Period::Once(length), None) => {
            let _ = writeln!(out, "一次性付费 {price}，有效期 {}。", length_zh(*length));
        }
        (_, Some(bytes)) => {
            let _ = writeln!(out, "{per} {price}，{per}含 {} 流量（{unit_note}）。", data(plan, bytes));
        }
        (_, None) => {
            let _ = writeln!(out, "{per} {price}。");
        }
    }
    if let Some(cap) = plan.daily_cap {
        let speed = cap.throttle_kbps.map_or("低速".to_string(), |k| format!("{k} kbps"));
        let until = match cap.window {
            Window::CalendarDay => format!("每天 24:00（{zone}）恢复高速"),
            Window::Rolling24h => "自当日计费窗口开始满 24 小时后恢复高速".to_string(),
        };
        if plan.is_unlimited() {
            let _ = writeln!(out, "不限流量：每天前 {} 为高速流量，超出后降速至 {speed}，{until}。", data(plan, cap.bytes));
        } else {
            let _ = writeln!(out, "每天最多 {} 高速流量，超出后降速至 {speed}，{until}。", data(plan, cap.bytes));
        }
    }

    let question = match plan.period {
        Period::Monthly(_) => "流量可以结转到下个月吗？".to_string(),
        Period::Days(days) => format!("未用完的流量可以结转到下一个 {days} 天周期吗？"),
        Period::Once(_) => "未用完的流量可以结转吗？".to_string(),
    };
    let _ = writeln!(out, "\n{question}");
    let next_period = match plan.period {
        Period::Monthly(_) => "下个月".to_string(),
        _ => "下一个周期".to_string(),
    };
    match (&plan.rollover, &plan.period) {
        (_, Period::Once(_)) => {
            let _ = writeln!(out, "不可以。这是一次性套餐，到期时剩余流量自动清零。");
        }
        (None, _) => {
            let end = if matches!(plan.period, Period::Monthly(_)) { "月底" } else { "周期结束时" };
            let _ = writeln!(out, "不可以。未用完的流量在{end}清零，{next_period}重新计算。");
        }
        (Some(rollover), _) => {
            let kinds: Vec<String> = rollover.from.iter().filter(|k| **k != Kind::CARRY).map(|k| kind_words(*k, lang)).collect();
            let what = if kinds.is_empty() { "结转流量".to_string() } else { kinds.join("和") };
            let end = if matches!(plan.period, Period::Monthly(_)) { "当月月底" } else { "本周期结束时" };
            let _ = write!(out, "可以。{what}{end}未用完的部分，自动结转到{next_period}。");
            if let Some(max) = rollover.max_per_period_bytes {
                let _ = write!(out, "每次最多结转 {}。", data(plan, max));
            }
            if let Some(cap) = rollover.cap_bytes {
                let _ = write!(out, "结转流量最多累计 {}，超出部分作废。", data(plan, cap));
            }
            let _ = writeln!(out);
            let grants: Vec<String> =
                ["gift", "addon"].iter().filter_map(|n| Kind::parse(n).ok()).filter(|k| !plan.rolls(*k)).map(|k| kind_words(k, lang)).collect();
            if !grants.is_empty() {
                let _ = writeln!(out, "{}不参与结转，按各自的有效期到期。", grants.join("和"));
            }

            let _ = writeln!(out, "\n结转的流量能用多久？");
            let lifetime = match (rollover.expires_after, &plan.period) {
                (Length::Periods(1), Period::Monthly(_)) => "可用至次月月底。".to_string(),
                (Length::Periods(1), _) => "可用至下一个周期结束。".to_string(),
                (Length::Periods(n), Period::Monthly(_)) => format!("结转后可再用 {n} 个月。"),
                (Length::Periods(n), _) => format!("结转后可再用 {n} 个周期。"),
                (Length::Months(n), _) => format!("自结转之日起 {n} 个月内有效。"),
                _ => "套餐有效期间不会过期。".to_string(),
            };
            let again = if plan.rolls(Kind::CARRY) {
                "结转流量到期仍未用完的，可以再次结转。"
            } else {
                "结转流量只能结转一次，到期未用完将自动清零。"
            };
            let _ = writeln!(out, "{lifetime}{again}");
        }
    }

    let _ = writeln!(out, "\n先扣哪部分流量？");
    let order = order_kinds(plan);
    match order.as_slice() {
        [] => {
            let _ = writeln!(out, "先到期的流量先使用。");
        }
        [only] => {
            let _ = writeln!(out, "先扣减{}，再按到期时间先后使用其他流量。", kind_words(*only, lang));
        }
        [first, second] => {
            let _ = writeln!(out, "先扣减{}，用完后再使用{}，最后按到期时间先后使用其他流量。", kind_words(*first, lang), kind_words(*second, lang));
        }
        many => {
            let names: Vec<String> = many.iter().map(|k| kind_words(*k, lang)).collect();
            let _ = writeln!(out, "依次扣减：{}，最后按到期时间先后使用其他流量。", names.join("、"));
        }
    }

    let _ = writeln!(out, "\n流量用完后会怎样？");
    if plan.is_unlimited() {
        let _ = writeln!(out, "不会用完：当天高速流量用完后仍可低速上网，不额外收费。");
    } else {
        let next = if plan.is_once() { "套餐到期".to_string() } else { format!("{next_period}开始") };
        match plan.exhausted {
            Exhausted::Block => {
                let _ = writeln!(out, "将暂停上网，直到{next}或您加购流量。");
            }
            Exhausted::Throttle { throttle_kbps } => {
                let _ = writeln!(out, "网速降至 {throttle_kbps} kbps，直到{next}或您加购流量，不额外收费。");
            }
            Exhausted::ExtraBlocks { block_bytes, price_minor } => {
                let _ = writeln!(
                    out,
                    "每次用完将自动加购 {} 流量包，每个 {}。流量包当{noun}有效，不参与结转。",
                    data(plan, block_bytes),
                    money(plan, price_minor, lang)
                );
            }
            Exhausted::PayAsYouGo { unit_bytes, price_minor } => {
                let _ = writeln!(
                    out,
                    "可继续使用，超出部分按每 {} {} 计费，不足 {} 按 {} 计。",
                    data(plan, unit_bytes),
                    money(plan, price_minor, lang),
                    data(plan, unit_bytes),
                    data(plan, unit_bytes)
                );
            }
        }
    }

    let _ = writeln!(out, "\n套餐何时生效、何时结束？");
    let starts = match plan.starts {
        Starts::Purchase => "购买后立即生效。",
        Starts::Install => "安装 eSIM 后生效。",
        Starts::FirstUse => "eSIM 首次连网时生效。",
    };
    let _ = write!(out, "{starts}");
    if let Some(within) = plan.activate_within
        && plan.starts != Starts::Purchase
    {
        let _ = write!(out, "如购买后 {} 内未生效，套餐将失效，无法再使用。", plain_length_zh(within));
    }
    let shape = match plan.period {
        Period::Monthly(Anchor::Calendar) => format!("每个月从 1 日 00:00 起，至当月最后一天 24:00 止（{zone}）。"),
        Period::Monthly(Anchor::Start) => {
            format!("每个计费月从开通日 00:00 起，至下月同一日 00:00 止（{zone}）；下月没有这一天时，在当月最后一天切换。")
        }
        Period::Days(days) => format!("每个周期自生效时刻起，正好 {days} 天（{days}×24 小时）。"),
        Period::Once(Length::CalendarDays(n)) => format!("有效期 {n} 个自然日，生效当天算第 1 天，于最后一天 24:00（{zone}）结束。"),
        Period::Once(length) => format!("自生效时刻起 {} 有效，精确到分钟。", length_zh(length)),
    };
    let _ = write!(out, "{shape}");
    if plan.is_once() {
        let _ = writeln!(out);
    } else {
        let renew = match plan.period {
            Period::Monthly(Anchor::Calendar) => "套餐按月自动续订，每月费用在月初扣取".to_string(),
            Period::Monthly(Anchor::Start) => "套餐按月自动续订，费用在每个计费月开始时扣取".to_string(),
            _ => format!("套餐每 {noun}自动续订，费用在周期开始时扣取"),
        };
        let _ = writeln!(out, "{renew}（{price}）。");
    }
    if plan.prorate_daily {
        let _ = writeln!(out, "月中开通时，首月费用和流量按剩余天数折算（开通当天计入）。");
    }
    if let Some(countries) = &plan.coverage {
        let list: Vec<&str> = countries.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(out, "适用地区：{}。在其他地区无法使用。", list.join("、"));
    }
    if let Some(rollover) = &plan.rollover {
        match rollover.on_plan_change {
            OnPlanChange::Forfeit => {
                let _ = writeln!(out, "变更套餐从下个{noun}生效；届时结转流量和当{noun}剩余流量不再保留。");
            }
            OnPlanChange::Keep => {
                let _ = writeln!(out, "变更套餐从下个{noun}生效；已结转的流量保留原有效期。");
            }
        }
    } else if !plan.is_once() {
        let _ = writeln!(out, "变更套餐从下个{noun}生效。");
    }

    let _ = writeln!(out, "\n举例");
    let _ = writeln!(out, "{}", example_zh(plan, ex, &zone));
    out
}

/// A length in Chinese; exact days also say their hours, so that "7 天" is
/// not read as 7 calendar days.
fn length_zh(length: Length) -> String {
    match length {
        Length::Exact(micros) if micros % MICROS_PER_DAY == 0 => {
            let n = micros / MICROS_PER_DAY;
            format!("{n} 天（{} 小时）", n * 24)
        }
        other => plain_length_zh(other),
    }
}

fn plain_length_zh(length: Length) -> String {
    match length {
        Length::Exact(micros) if micros % MICROS_PER_DAY == 0 => format!("{} 天", micros / MICROS_PER_DAY),
        Length::Exact(micros) => format!("{} 小时", micros / MICROS_PER_HOUR),
        Length::CalendarDays(n) => format!("{n} 个自然日"),
        Length::Months(n) => format!("{n} 个月"),
        Length::Periods(n) => format!("{n} 个周期"),
        Length::Never => "长期".to_string(),
    }
}

fn example_zh(plan: &Plan, ex: &Example, zone: &str) -> String {
    let lang = Lang::Zh;
    let z = &plan.zone;
    let mut s = String::new();
    let begin = match plan.starts {
        Starts::Purchase => format!("您于 {} 购买", start_text(ex.start, z, lang)),
        Starts::Install => format!("您于 {} 安装 eSIM", start_text(ex.start, z, lang)),
        Starts::FirstUse => format!("您的 eSIM 于 {} 首次连网", start_text(ex.start, z, lang)),
    };
    if plan.is_once() {
        let _ = write!(s, "{begin}（{zone}），套餐有效至 {}。", end_text(ex.first_end, z, lang));
        if let Some(allowance) = plan.allowance_bytes {
            let left = allowance - ex.used_bytes;
            let _ = write!(s, "如果 {} 中只用了 {}，剩余的 {} 届时清零。", data(plan, allowance), data(plan, ex.used_bytes), data(plan, left));
        }
    } else if let Some(allowance) = plan.allowance_bytes {
        let first_month = month_name(z.date_of(ex.start), lang);
        let next_month = month_name(z.date_of(ex.first_end), lang);
        let (this, next) = match plan.period {
            Period::Monthly(Anchor::Calendar) => (format!("{first_month}底前"), next_month.clone()),
            _ => (format!("{} 前", end_text(ex.first_end, z, lang)), format!("自 {} 起的新周期", day_name(z.date_of(ex.first_end), lang))),
        };
        let first_allowance = allowance_granted(plan, ex);
        let left = first_allowance - ex.used_bytes;
        let _ = write!(s, "{begin}，{this}用了 {} 中的 {}。", data(plan, first_allowance), data(plan, ex.used_bytes));
        match ex.carry {
            Some((carried, expires)) => {
                let _ = write!(s, "{} 将结转到{next}，可用至 {}（{zone}）。", data(plan, carried), end_text(expires, z, lang));
                if ex.cut_bytes > 0 {
                    let _ = write!(s, "另外 {} 超出结转上限，作废。", data(plan, ex.cut_bytes));
                }
                let second = ex.second_allowance.unwrap_or(0);
                let first_used = if plan.rank(Kind::CARRY) < plan.rank(Kind::ALLOWANCE) {
                    format!("先用结转的 {}，再用新的 {}", data(plan, carried), data(plan, second))
                } else if plan.rank(Kind::CARRY) > plan.rank(Kind::ALLOWANCE) {
                    format!("先用新的 {}，再用结转的 {}", data(plan, second), data(plan, carried))
                } else {
                    "先到期的先用".to_string()
                };
                let _ = write!(s, "届时您共有 {}：{first_used}。", data(plan, ex.total_after));
            }
            None => {
                let _ = write!(
                    s,
                    "剩余的 {} 于 {}（{zone}）清零，随后重新获得 {}。",
                    data(plan, left),
                    end_text(ex.first_end, z, lang),
                    data(plan, ex.second_allowance.unwrap_or(allowance))
                );
            }
        }
    } else {
        let _ = write!(s, "{begin}（{zone}），于 {} 续订。", end_text(ex.first_end, z, lang));
    }
    if let Some((used, fast, slow)) = ex.daily {
        let _ = write!(s, "如果一天内用了 {}，其中 {} 为高速，其余 {} 为降速。", data(plan, used), data(plan, fast), data(plan, slow));
    }
    if let Some((used, cost)) = ex.overage {
        let unit = match plan.period {
            Period::Monthly(_) => "一个月".to_string(),
            _ => "一个周期".to_string(),
        };
        let _ = write!(s, "如果{unit}内用了 {}，超出部分收费 {}。", data(plan, used), money(plan, cost, lang));
    }
    s
}

/// One line per ledger entry, for support staff: when, which bucket, what.
/// Instants are shown in the first plan's zone and money in its currency.
pub fn ledger_lines(catalog: &Catalog, ledger: &[Entry]) -> Vec<String> {
    use rollover_core::ledger::{Source, ThrottleReason};
    let Some(first) = catalog.plans().first() else { return Vec::new() };
    let zone = &first.zone;
    let money = |minor: i64| format!("{} {}", first.currency.format(minor), first.currency.code());
    let plan_id = |ix: rollover_core::catalog::PlanIx| catalog.get(ix).id.clone();
    ledger
        .iter()
        .map(|entry| {
            let at = entry.at.to_rfc3339(zone);
            let bucket = match entry.kind {
                Some(kind) => format!("bucket {} ({kind})", entry.bucket),
                None => "subscription".to_string(),
            };
            let what = match entry.change {
                Change::Granted { bytes, expires, source } => {
                    let source = match source {
                        Source::Period(n) => format!("period {n} allowance"),
                        Source::Grant => "grant".to_string(),
                        Source::ExtraBlock => "extra block".to_string(),
                        Source::Carry => "carry".to_string(),
                    };
                    let until = if expires.is_never() { "no expiry".to_string() } else { format!("until {}", expires.to_rfc3339(zone)) };
                    format!("granted {} ({source}), {until}", format_exact(bytes))
                }
                Change::Drawn { bytes } => format!("drew {}", format_exact(bytes)),
                Change::CarriedOut { bytes, into } => format!("carried {} into bucket {into}", format_exact(bytes)),
                Change::Forfeited { bytes, cause } => format!("forfeited {} ({})", format_exact(bytes), cause.name()),
                Change::Fee { minor, period } => format!("fee {} for period {period}", money(minor)),
                Change::Charged { minor, bytes } => format!("charged {} for {}", money(minor), format_exact(bytes)),
                Change::Unmetered { bytes } => format!("accepted {} without drawing from a bucket", format_exact(bytes)),
                Change::Throttled { bytes, reason: ThrottleReason::DailyCap } => format!("throttled {} (daily cap)", format_exact(bytes)),
                Change::Throttled { bytes, reason: ThrottleReason::Exhausted } => format!("throttled {} (no data left)", format_exact(bytes)),
                Change::Rejected { bytes, reason } => format!("rejected {} ({})", format_exact(bytes), reason.name()),
                Change::Lifecycle(event) => match event {
                    Lifecycle::Purchased(ix) => format!("purchased {}", plan_id(ix)),
                    Lifecycle::Installed => "installed".to_string(),
                    Lifecycle::FirstUse => "first use".to_string(),
                    Lifecycle::Started => "started".to_string(),
                    Lifecycle::Lapsed => "lapsed: not started in time".to_string(),
                    Lifecycle::Expired => "expired".to_string(),
                    Lifecycle::Suspended => "suspended".to_string(),
                    Lifecycle::Resumed => "resumed".to_string(),
                    Lifecycle::Cancelled => "cancelled".to_string(),
                    Lifecycle::PlanChangeScheduled(ix) => format!("plan change to {} scheduled for the next boundary", plan_id(ix)),
                    Lifecycle::PlanChanged { from, to } => format!("plan changed from {} to {}", plan_id(from), plan_id(to)),
                    Lifecycle::Refused(refusal) => format!("event refused: {}", refusal.text()),
                },
            };
            format!("{at}  {bucket}: {what}")
        })
        .collect()
}
