//! Plan terms: the validated form of section 1 of the plan-terms contract.
//!
//! A [`PlanDraft`] holds a plan as written (strings, before any rule is
//! checked); [`Plan::from_draft`] checks every field and every cross-field
//! rule and names the field that breaks one. File formats (TOML, JSON) fill
//! drafts; they never build a [`Plan`] another way.

use std::fmt;

use crate::amount::{UnitBase, parse_bytes, parse_bytes_with_unit};
use crate::money::{Currency, prorate_half_up};
use crate::names::{Country, Kind};
use crate::time::{Instant, Length, MICROS_PER_DAY, Zone, add_months_to_date};

/// A plan as written, every value still text. `None` means the key was absent.
#[derive(Debug, Clone, Default)]
pub struct PlanDraft {
    pub id: Option<String>,
    pub name: Option<String>,
    pub currency: Option<String>,
    pub price: Option<String>,
    pub timezone: Option<String>,
    pub period: Option<PeriodDraft>,
    pub allowance: Option<AllowanceDraft>,
    pub rollover: Option<RolloverDraft>,
    pub order: Option<OrderDraft>,
    pub daily_cap: Option<DailyCapDraft>,
    pub exhausted: Option<ExhaustedDraft>,
    pub coverage: Option<CoverageDraft>,
    pub profile_type: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PeriodDraft {
    pub kind: Option<String>,
    pub anchor: Option<String>,
    pub days: Option<i64>,
    pub length: Option<String>,
    pub starts: Option<String>,
    pub activate_within: Option<String>,
    pub proration: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AllowanceDraft {
    pub data: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RolloverDraft {
    pub from: Option<Vec<String>>,
    pub expires_after: Option<String>,
    pub cap: Option<String>,
    pub max_per_period: Option<String>,
    pub on_plan_change: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct OrderDraft {
    pub kinds: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct DailyCapDraft {
    pub data: Option<String>,
    pub window: Option<String>,
    pub throttle_kbps: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ExhaustedDraft {
    pub action: Option<String>,
    pub throttle_kbps: Option<i64>,
    pub block: Option<String>,
    pub price: Option<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CoverageDraft {
    pub countries: Option<Vec<String>>,
}

/// A rule a plan breaks: the field (dotted path inside `[[plan]]`, e.g.
/// `rollover.cap`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for PlanError {}

fn error(field: &str, message: impl Into<String>) -> PlanError {
    PlanError { field: field.to_string(), message: message.into() }
}

fn required<'a, T>(value: &'a Option<T>, field: &str) -> Result<&'a T, PlanError> {
    value.as_ref().ok_or_else(|| error(field, "is required"))
}

fn one_of<'a>(value: &str, field: &str, allowed: &[&'a str]) -> Result<&'a str, PlanError> {
    allowed.iter().copied().find(|a| *a == value).ok_or_else(|| {
        let list = allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
        error(field, format!("\"{value}\" is not one of {list}"))
    })
}

fn amount(text: &str, field: &str) -> Result<u64, PlanError> {
    parse_bytes(text).map_err(|e| error(field, format!("\"{text}\": {e}")))
}

fn positive_amount(text: &str, field: &str) -> Result<u64, PlanError> {
    let bytes = amount(text, field)?;
    if bytes == 0 {
        return Err(error(field, "must be more than zero"));
    }
    Ok(bytes)
}

fn kbps(value: i64, field: &str) -> Result<u32, PlanError> {
    if !(1..=100_000_000).contains(&value) {
        return Err(error(field, format!("{value} is out of range: use 1 to 100000000 kbps")));
    }
    Ok(value as u32)
}

fn kinds(list: &[String], field: &str) -> Result<Vec<Kind>, PlanError> {
    let mut kinds = Vec::with_capacity(list.len());
    for name in list {
        let kind = Kind::parse(name).map_err(|e| error(field, e))?;
        if kinds.contains(&kind) {
            return Err(error(field, format!("\"{name}\" is listed twice")));
        }
        kinds.push(kind);
    }
    Ok(kinds)
}

/// An `[[addon]]` table as written: data sold on top of a plan.
#[derive(Debug, Clone, Default)]
pub struct AddonDraft {
    pub id: Option<String>,
    pub name: Option<String>,
    pub currency: Option<String>,
    pub price: Option<String>,
    pub data: Option<String>,
    pub kind: Option<String>,
    pub expires: Option<String>,
    pub plans: Option<Vec<String>>,
}

/// When an add-on's data expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddonExpiry {
    /// With the period it was bought in.
    PeriodEnd,
    Never,
    /// This long after it was bought (days, hours, calendar days or months,
    /// in the plan's zone).
    After(Length),
}

/// Data sold on top of a plan: a grant and its price, a fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addon {
    pub id: String,
    pub name: String,
    pub currency: Currency,
    pub price_minor: i64,
    pub bytes: u64,
    pub kind: Kind,
    pub expires: AddonExpiry,
    /// The plans it may be bought for, by id.
    pub plans: Vec<String>,
}

/// What plans and add-ons both have: an id (a-z, 0-9 and '-'), a name, a
/// currency and a price in it.
fn offer_of(id: &Option<String>, name: &Option<String>, currency: &Option<String>, price: &Option<String>) -> Result<(String, String, Currency, i64), PlanError> {
    let id = required(id, "id")?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(error("id", format!("\"{id}\" must be 1 to 64 characters of a-z, 0-9 and '-'")));
    }
    let name = required(name, "name")?;
    if name.trim().is_empty() {
        return Err(error("name", "must not be empty"));
    }
    let currency_code = required(currency, "currency")?;
    let currency = Currency::parse(currency_code).map_err(|e| error("currency", e.to_string()))?;
    let price_text = required(price, "price")?;
    let price_minor = currency.parse_price(price_text).map_err(|e| error("price", format!("\"{price_text}\": {e}")))?;
    Ok((id.clone(), name.clone(), currency, price_minor))
}

/// Most plans one add-on may name.
pub const MAX_ADDON_PLANS: usize = 100;

impl Addon {
    /// Checks every field of an `[[addon]]` table; the error names the field.
    pub fn from_draft(draft: &AddonDraft) -> Result<Addon, PlanError> {
        let (id, name, currency, price_minor) = offer_of(&draft.id, &draft.name, &draft.currency, &draft.price)?;
        let data = required(&draft.data, "data")?;
        let bytes = amount(data, "data")?;
        if bytes == 0 {
            return Err(error("data", "must be more than zero"));
        }
        let kind_name = draft.kind.as_deref().unwrap_or("addon");
        let kind = Kind::parse(kind_name).map_err(|e| error("kind", e))?;
        if kind.is_reserved() {
            return Err(error("kind", format!("\"{kind_name}\" is reserved for data the plan itself creates; use e.g. \"addon\", \"boost\" or \"topup\"")));
        }
        let expires = match required(&draft.expires, "expires")?.as_str() {
            "period_end" => AddonExpiry::PeriodEnd,
            "never" => AddonExpiry::Never,
            text => match Length::parse(text).map_err(|e| error("expires", format!("{e}, or \"period_end\" or \"never\"")))? {
                length @ (Length::Exact(_) | Length::CalendarDays(_) | Length::Months(_)) => AddonExpiry::After(length),
                _ => return Err(error("expires", format!("\"{text}\": use \"period_end\", \"never\", \"N days\", \"N hours\", \"N calendar days\" or \"N months\""))),
            },
        };
        let plans = required(&draft.plans, "plans")?;
        if plans.is_empty() || plans.len() > MAX_ADDON_PLANS {
            return Err(error("plans", format!("must name 1 to {MAX_ADDON_PLANS} plans it may be bought for")));
        }
        for (index, plan) in plans.iter().enumerate() {
            if plans[..index].contains(plan) {
                return Err(error("plans", format!("\"{plan}\" is listed twice")));
            }
        }
        Ok(Addon { id, name, currency, price_minor, bytes, kind, expires, plans: plans.clone() })
    }

    /// Whether it may be bought for `plan`: named by it, and in its currency.
    pub fn fits(&self, plan: &Plan) -> Result<(), String> {
        if !self.plans.contains(&plan.id) {
            return Err(format!("add-on \"{}\" is not sold for plan \"{}\" (only for {})", self.id, plan.id, self.plans.join(", ")));
        }
        if self.currency != plan.currency {
            return Err(format!("add-on \"{}\" is priced in {}, plan \"{}\" in {}", self.id, self.currency.code(), plan.id, plan.currency.code()));
        }
        Ok(())
    }

    /// The grant's expiry when bought at `at` on a plan in `zone`.
    pub fn expiry(&self, at: Instant, zone: &Zone) -> crate::GrantExpiry {
        match self.expires {
            AddonExpiry::PeriodEnd => crate::GrantExpiry::PeriodEnd,
            AddonExpiry::Never => crate::GrantExpiry::Never,
            AddonExpiry::After(length) => crate::GrantExpiry::At(length.end_from(at, zone)),
        }
    }
}

/// When a monthly plan's periods start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Periods start on the 1st at local midnight.
    Calendar,
    /// Periods start on the start date's day of month (clamped), at local midnight.
    Start,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Period {
    Monthly(Anchor),
    /// Every period is exactly `days` x 24 h from the start instant.
    Days(u32),
    /// One window from the start: `N days`, `N hours` or `N calendar days`.
    Once(Length),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starts {
    Purchase,
    Install,
    FirstUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPlanChange {
    Forfeit,
    Keep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rollover {
    pub from: Vec<Kind>,
    /// `Periods`, `Months` or `Never`.
    pub expires_after: Length,
    pub cap_bytes: Option<u64>,
    pub max_per_period_bytes: Option<u64>,
    pub on_plan_change: OnPlanChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    CalendarDay,
    Rolling24h,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCap {
    pub bytes: u64,
    pub window: Window,
    pub throttle_kbps: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Block,
    Throttle { throttle_kbps: u32 },
    ExtraBlocks { block_bytes: u64, price_minor: i64 },
    PayAsYouGo { unit_bytes: u64, price_minor: i64 },
}

/// A validated plan. Fields are public for reading; the only way to make one
/// is [`Plan::from_draft`]. Two plans are equal when their terms are.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub currency: Currency,
    pub price_minor: i64,
    pub zone: Zone,
    pub period: Period,
    pub starts: Starts,
    pub activate_within: Option<Length>,
    pub prorate_daily: bool,
    pub allowance_bytes: Option<u64>,
    pub rollover: Option<Rollover>,
    /// Consumption order by kind; kinds not listed come after all listed ones.
    pub order: Vec<Kind>,
    pub daily_cap: Option<DailyCap>,
    pub exhausted: Exhausted,
    pub coverage: Option<Vec<Country>>,
    /// The eSIM profile type an order for this plan takes from the
    /// inventory; none: any available profile.
    pub profile_type: Option<String>,
    /// The unit base the plan was sold in, from the units its amounts use.
    pub unit_base: UnitBase,
}

const MAX_ORDER_KINDS: usize = 64;

impl Plan {
    /// Checks every field of a drafted plan and every rule between fields,
    /// naming the field that breaks one. Each section has its own reader.
    pub fn from_draft(draft: &PlanDraft) -> Result<Plan, PlanError> {
        let (id, name, currency, price_minor) = offer_of(&draft.id, &draft.name, &draft.currency, &draft.price)?;
        let zone_name = required(&draft.timezone, "timezone")?;
        let zone = Zone::parse(zone_name).map_err(|e| error("timezone", e))?;
        let (period, starts, activate_within, prorate_daily) = period_of(required(&draft.period, "period")?)?;

        let mut units_seen = Vec::new();
        let allowance_bytes = match &draft.allowance {
            None => None,
            Some(allowance) => {
                let text = required(&allowance.data, "allowance.data")?;
                let (bytes, unit) = parse_bytes_with_unit(text).map_err(|e| error("allowance.data", format!("\"{text}\": {e}")))?;
                if bytes == 0 {
                    return Err(error("allowance.data", "must be more than zero"));
                }
                units_seen.push(unit);
                Some(bytes)
            }
        };
        let rollover = draft.rollover.as_ref().map(rollover_of).transpose()?;
        let order = match &draft.order {
            None => Vec::new(),
            Some(order) => {
                let list = required(&order.kinds, "order.kinds")?;
                if list.len() > MAX_ORDER_KINDS {
                    return Err(error("order.kinds", format!("lists more than {MAX_ORDER_KINDS} kinds")));
                }
                kinds(list, "order.kinds")?
            }
        };
        let daily_cap = draft.daily_cap.as_ref().map(|cap| daily_cap_of(cap, &mut units_seen)).transpose()?;
        let exhausted = draft.exhausted.as_ref().map(|e| exhausted_of(e, &currency)).transpose()?.unwrap_or(Exhausted::Block);
        let coverage = draft.coverage.as_ref().map(coverage_of).transpose()?;
        let profile_type = draft.profile_type.clone();
        if let Some(kind) = &profile_type
            && (kind.is_empty() || kind.len() > 64 || kind.chars().any(char::is_control))
        {
            return Err(error("profile_type", format!("{kind:?} must be 1 to 64 characters, none of them a control character")));
        }

        let unit_base = units_seen.first().map(|u| UnitBase::of_unit(*u)).unwrap_or(UnitBase::Binary);
        Ok(Plan {
            id,
            name,
            currency,
            price_minor,
            zone,
            period,
            starts,
            activate_within,
            prorate_daily,
            allowance_bytes,
            rollover,
            order,
            daily_cap,
            exhausted,
            coverage,
            profile_type,
            unit_base,
        })
    }

    /// "Unlimited": a daily cap and no allowance. Such a plan is never depleted.
    pub fn is_unlimited(&self) -> bool {
        self.daily_cap.is_some() && self.allowance_bytes.is_none()
    }

    /// Position of `kind` in the consumption order; unlisted kinds share the
    /// last position.
    pub fn rank(&self, kind: Kind) -> u8 {
        self.order.iter().position(|k| *k == kind).unwrap_or(self.order.len()) as u8
    }

    pub fn rolls(&self, kind: Kind) -> bool {
        self.rollover.as_ref().is_some_and(|r| r.from.contains(&kind))
    }

    pub fn covers(&self, country: Option<Country>) -> bool {
        match (&self.coverage, country) {
            (Some(countries), Some(country)) => countries.contains(&country),
            _ => true,
        }
    }

    pub fn is_once(&self) -> bool {
        matches!(self.period, Period::Once(_))
    }

    /// Start of period `n` (1-based) of a sequence whose period 1 starts at
    /// `origin`. Monthly periods after the first start at local midnight;
    /// start-anchored ones are computed as anchor + (n-1) months, clamped.
    pub fn period_start(&self, origin: Instant, n: u32) -> Instant {
        if n <= 1 {
            return origin;
        }
        match self.period {
            Period::Monthly(Anchor::Calendar) => {
                let first = self.zone.date_of(origin).first_of_month();
                self.zone.start_of(add_months_to_date(first, n as i64 - 1))
            }
            Period::Monthly(Anchor::Start) => {
                let anchor = self.zone.date_of(origin);
                self.zone.start_of(add_months_to_date(anchor, n as i64 - 1))
            }
            Period::Days(days) => origin.plus_micros((n as i64 - 1) * days as i64 * MICROS_PER_DAY),
            Period::Once(_) => Instant::NEVER,
        }
    }

    /// End of period `n`: the next period's start, or for a `once` plan the
    /// end of its single window.
    pub fn period_end(&self, origin: Instant, n: u32) -> Instant {
        match self.period {
            Period::Once(length) => length.end_from(origin, &self.zone),
            _ => self.period_start(origin, n + 1),
        }
    }

    /// Whether a plan change from `self` to `other` keeps counting the same
    /// periods (same kind, anchor and zone); otherwise the new plan's periods
    /// are counted from the change instant.
    pub fn same_periods(&self, other: &Plan) -> bool {
        self.period == other.period && self.zone == other.zone && !self.is_once()
    }

    /// First-period allowance and fee for a plan started at `start`: the whole
    /// amounts, or with daily proration `ceil(allowance x rd / dim)` and
    /// `round_half_up(price x rd / dim)`, `rd` counting the start day.
    pub fn first_period_amounts(&self, start: Instant) -> (Option<u64>, i64) {
        if !self.prorate_daily {
            return (self.allowance_bytes, self.price_minor);
        }
        let date = self.zone.date_of(start);
        let days_in_month = date.days_in_month() as u64;
        let remaining_days = days_in_month - date.day() as u64 + 1;
        let allowance = self.allowance_bytes.map(|bytes| {
            let product = bytes as u128 * remaining_days as u128;
            product.div_ceil(days_in_month as u128) as u64
        });
        let fee = prorate_half_up(self.price_minor, remaining_days as i64, days_in_month as i64);
        (allowance, fee)
    }
}

/// `[plan.period]`: the period, when period 1 starts, the activation window,
/// and whether the first period is prorated.
fn period_of(period_draft: &PeriodDraft) -> Result<(Period, Starts, Option<Length>, bool), PlanError> {
    let kind = one_of(required(&period_draft.kind, "period.kind")?, "period.kind", &["monthly", "days", "once"])?;
    if kind != "monthly" && period_draft.anchor.is_some() {
        return Err(error("period.anchor", "is only for kind = \"monthly\""));
    }
    if kind != "days" && period_draft.days.is_some() {
        return Err(error("period.days", "is only for kind = \"days\""));
    }
    if kind != "once" && period_draft.length.is_some() {
        return Err(error("period.length", "is only for kind = \"once\""));
    }
    let period = match kind {
        "monthly" => Period::Monthly(match period_draft.anchor.as_deref() {
            None => Anchor::Calendar,
            Some(text) => match one_of(text, "period.anchor", &["calendar", "start"])? {
                "calendar" => Anchor::Calendar,
                _ => Anchor::Start,
            },
        }),
        "days" => {
            let days = *required(&period_draft.days, "period.days")?;
            if !(1..=3660).contains(&days) {
                return Err(error("period.days", format!("{days} is out of range: use 1 to 3660")));
            }
            Period::Days(days as u32)
        }
        _ => Period::Once(length_of(required(&period_draft.length, "period.length")?, "period.length", false)?),
    };
    let starts = match period_draft.starts.as_deref() {
        None => Starts::Purchase,
        Some(text) => match one_of(text, "period.starts", &["purchase", "install", "first_use"])? {
            "purchase" => Starts::Purchase,
            "install" => Starts::Install,
            _ => Starts::FirstUse,
        },
    };
    let activate_within = period_draft.activate_within.as_deref().map(|text| length_of(text, "period.activate_within", true)).transpose()?;
    let prorate_daily = match period_draft.proration.as_deref() {
        None => false,
        Some(text) => one_of(text, "period.proration", &["none", "daily"])? == "daily",
    };
    if period_draft.proration.is_some() && period != Period::Monthly(Anchor::Calendar) {
        return Err(error("period.proration", "is only for kind = \"monthly\" with anchor = \"calendar\""));
    }
    Ok((period, starts, activate_within, prorate_daily))
}

/// A pass's length (days, hours or calendar days) or, with `months`, how
/// long a plan may wait to start (months too).
fn length_of(text: &str, field: &str, months: bool) -> Result<Length, PlanError> {
    let length = Length::parse(text).map_err(|e| error(field, e))?;
    match length {
        Length::Exact(_) | Length::CalendarDays(_) => Ok(length),
        Length::Months(_) if months => Ok(length),
        _ if months => Err(error(field, format!("\"{text}\": use \"N days\", \"N hours\", \"N calendar days\" or \"N months\""))),
        _ => Err(error(field, format!("\"{text}\": use \"N days\", \"N hours\" or \"N calendar days\""))),
    }
}

/// `[plan.rollover]`.
fn rollover_of(rollover: &RolloverDraft) -> Result<Rollover, PlanError> {
    let from_list = required(&rollover.from, "rollover.from")?;
    if from_list.is_empty() {
        return Err(error("rollover.from", "must name at least one bucket kind (or leave out [plan.rollover])"));
    }
    let from = kinds(from_list, "rollover.from")?;
    let expires_after = match rollover.expires_after.as_deref() {
        None => Length::Periods(1),
        Some(text) => match Length::parse(text).map_err(|e| error("rollover.expires_after", e))? {
            length @ (Length::Periods(_) | Length::Months(_) | Length::Never) => length,
            _ => {
                return Err(error(
                    "rollover.expires_after",
                    format!("\"{text}\": use \"N periods\", \"N months\" or \"never\""),
                ));
            }
        },
    };
    let cap_bytes = rollover.cap.as_deref().map(|t| positive_amount(t, "rollover.cap")).transpose()?;
    let max_per_period_bytes =
        rollover.max_per_period.as_deref().map(|t| positive_amount(t, "rollover.max_per_period")).transpose()?;
    let on_plan_change = match rollover.on_plan_change.as_deref() {
        None => OnPlanChange::Forfeit,
        Some(text) => match one_of(text, "rollover.on_plan_change", &["forfeit", "keep"])? {
            "forfeit" => OnPlanChange::Forfeit,
            _ => OnPlanChange::Keep,
        },
    };
    Ok(Rollover { from, expires_after, cap_bytes, max_per_period_bytes, on_plan_change })
}

/// `[plan.daily_cap]`; the unit its amount is written in joins `units_seen`.
fn daily_cap_of(cap: &DailyCapDraft, units_seen: &mut Vec<u64>) -> Result<DailyCap, PlanError> {
    let text = required(&cap.data, "daily_cap.data")?;
    let (bytes, unit) = parse_bytes_with_unit(text).map_err(|e| error("daily_cap.data", format!("\"{text}\": {e}")))?;
    if bytes == 0 {
        return Err(error("daily_cap.data", "must be more than zero"));
    }
    units_seen.push(unit);
    let window = match cap.window.as_deref() {
        None => Window::CalendarDay,
        Some(text) => match one_of(text, "daily_cap.window", &["calendar_day", "rolling_24h"])? {
            "calendar_day" => Window::CalendarDay,
            _ => Window::Rolling24h,
        },
    };
    let throttle_kbps = cap.throttle_kbps.map(|v| kbps(v, "daily_cap.throttle_kbps")).transpose()?;
    Ok(DailyCap { bytes, window, throttle_kbps })
}

/// `[plan.exhausted]`: prices are in the plan's currency.
fn exhausted_of(exhausted: &ExhaustedDraft, currency: &Currency) -> Result<Exhausted, PlanError> {
    let action = one_of(
        required(&exhausted.action, "exhausted.action")?,
        "exhausted.action",
        &["block", "throttle", "extra_blocks", "pay_as_you_go"],
    )?;
    let only = |present: bool, field: &str, actions: &str| {
        if present { Err(error(field, format!("is only for action = {actions}"))) } else { Ok(()) }
    };
    only(exhausted.throttle_kbps.is_some() && action != "throttle", "exhausted.throttle_kbps", "\"throttle\"")?;
    only(exhausted.block.is_some() && action != "extra_blocks", "exhausted.block", "\"extra_blocks\"")?;
    only(exhausted.unit.is_some() && action != "pay_as_you_go", "exhausted.unit", "\"pay_as_you_go\"")?;
    only(
        exhausted.price.is_some() && action != "extra_blocks" && action != "pay_as_you_go",
        "exhausted.price",
        "\"extra_blocks\" or \"pay_as_you_go\"",
    )?;
    let price = |field: &str| -> Result<i64, PlanError> {
        let text = required(&exhausted.price, field)?;
        currency.parse_price(text).map_err(|e| error(field, format!("\"{text}\": {e}")))
    };
    Ok(match action {
        "block" => Exhausted::Block,
        "throttle" => Exhausted::Throttle {
            throttle_kbps: kbps(*required(&exhausted.throttle_kbps, "exhausted.throttle_kbps")?, "exhausted.throttle_kbps")?,
        },
        "extra_blocks" => {
            let block_bytes = positive_amount(required(&exhausted.block, "exhausted.block")?, "exhausted.block")?;
            Exhausted::ExtraBlocks { block_bytes, price_minor: price("exhausted.price")? }
        }
        _ => {
            let unit_bytes = positive_amount(required(&exhausted.unit, "exhausted.unit")?, "exhausted.unit")?;
            Exhausted::PayAsYouGo { unit_bytes, price_minor: price("exhausted.price")? }
        }
    })
}

/// `[plan.coverage]`.
fn coverage_of(coverage: &CoverageDraft) -> Result<Vec<Country>, PlanError> {
    let list = required(&coverage.countries, "coverage.countries")?;
    if list.is_empty() {
        return Err(error("coverage.countries", "must name at least one country (or leave out [plan.coverage])"));
    }
    let mut countries = Vec::with_capacity(list.len());
    for code in list {
        let country = Country::parse(code).map_err(|e| error("coverage.countries", e))?;
        if countries.contains(&country) {
            return Err(error("coverage.countries", format!("\"{code}\" is listed twice")));
        }
        countries.push(country);
    }
    Ok(countries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> PlanDraft {
        PlanDraft {
            id: Some("cn-30g".into()),
            name: Some("30 GB".into()),
            currency: Some("CNY".into()),
            price: Some("58.00".into()),
            timezone: Some("Asia/Shanghai".into()),
            period: Some(PeriodDraft { kind: Some("monthly".into()), ..Default::default() }),
            allowance: Some(AllowanceDraft { data: Some("30GiB".into()) }),
            ..Default::default()
        }
    }

    #[track_caller]
    fn check_error(change: impl FnOnce(&mut PlanDraft), field: &str, message_part: &str) {
        let mut d = draft();
        change(&mut d);
        let err = Plan::from_draft(&d).expect_err("the draft breaks a rule");
        assert_eq!(err.field, field, "{err}");
        assert!(err.message.contains(message_part), "{err}");
    }

    #[test]
    fn accepts_a_plain_plan() {
        let plan = Plan::from_draft(&draft()).unwrap();
        assert_eq!(plan.allowance_bytes, Some(30 << 30));
        assert_eq!(plan.period, Period::Monthly(Anchor::Calendar));
        assert_eq!(plan.exhausted, Exhausted::Block);
    }

    #[test]
    fn names_the_field_that_breaks_a_rule() {
        check_error(|d| d.id = Some("CN_30".into()), "id", "a-z");
        check_error(|d| d.currency = Some("RMB".into()), "currency", "unknown currency");
        check_error(|d| d.price = Some("58.001".into()), "price", "decimal places");
        check_error(|d| d.timezone = Some("Mars/Olympus".into()), "timezone", "unknown time zone");
        check_error(|d| d.period.as_mut().unwrap().kind = Some("weekly".into()), "period.kind", "not one of");
        check_error(|d| d.period.as_mut().unwrap().days = Some(30), "period.days", "only for");
        check_error(|d| d.period.as_mut().unwrap().length = Some("7 days".into()), "period.length", "only for");
        check_error(
            |d| d.period = Some(PeriodDraft { kind: Some("days".into()), anchor: Some("start".into()), days: Some(30), ..Default::default() }),
            "period.anchor",
            "only for",
        );
        check_error(
            |d| d.period = Some(PeriodDraft { kind: Some("monthly".into()), anchor: Some("start".into()), proration: Some("daily".into()), ..Default::default() }),
            "period.proration",
            "only for",
        );
        check_error(|d| d.allowance = Some(AllowanceDraft { data: Some("0B".into()) }), "allowance.data", "more than zero");
        check_error(
            |d| d.exhausted = Some(ExhaustedDraft { action: Some("pay_as_you_go".into()), price: Some("1.00".into()), ..Default::default() }),
            "exhausted.unit",
            "required",
        );
        check_error(
            |d| d.exhausted = Some(ExhaustedDraft { action: Some("throttle".into()), ..Default::default() }),
            "exhausted.throttle_kbps",
            "required",
        );
        check_error(
            |d| d.order = Some(OrderDraft { kinds: Some(vec!["carry".into(), "carry".into()]) }),
            "order.kinds",
            "twice",
        );
        check_error(
            |d| d.coverage = Some(CoverageDraft { countries: Some(vec!["CHN".into()]) }),
            "coverage.countries",
            "ISO 3166-1",
        );
    }

    #[test]
    fn prorates_the_first_month() {
        let mut d = draft();
        d.period.as_mut().unwrap().proration = Some("daily".into());
        let plan = Plan::from_draft(&d).unwrap();
        // Started on Jan 15: 17 of 31 days.
        let start = Instant::parse_rfc3339("2026-01-15T10:00:00+08:00").unwrap();
        let (allowance, fee) = plan.first_period_amounts(start);
        assert_eq!(allowance, Some(((30u128 << 30) * 17).div_ceil(31) as u64));
        assert_eq!(fee, 3181);
    }
}
