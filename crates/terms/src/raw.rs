//! The TOML shapes of plan and scenario files, every value with its span so
//! that errors can name the line.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub title: Option<S<String>>,
    #[serde(default)]
    pub plan: Vec<S<RawPlan>>,
    #[serde(default)]
    pub addon: Vec<S<RawAddon>>,
    #[serde(default)]
    pub event: Vec<S<RawEvent>>,
    #[serde(default)]
    pub expect: Vec<S<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAddon {
    pub id: Option<S<String>>,
    pub name: Option<S<String>>,
    pub currency: Option<S<String>>,
    pub price: Option<S<String>>,
    pub data: Option<S<String>>,
    pub kind: Option<S<String>>,
    pub expires: Option<S<String>>,
    pub plans: Option<S<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub id: Option<S<String>>,
    pub name: Option<S<String>>,
    pub currency: Option<S<String>>,
    pub price: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub period: Option<S<RawPeriod>>,
    pub allowance: Option<S<RawAllowance>>,
    pub rollover: Option<S<RawRollover>>,
    pub order: Option<S<RawOrder>>,
    pub daily_cap: Option<S<RawDailyCap>>,
    pub exhausted: Option<S<RawExhausted>>,
    pub coverage: Option<S<RawCoverage>>,
    pub profile_type: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeriod {
    pub kind: Option<S<String>>,
    pub anchor: Option<S<String>>,
    pub days: Option<S<i64>>,
    pub length: Option<S<String>>,
    pub starts: Option<S<String>>,
    pub activate_within: Option<S<String>>,
    pub proration: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowance {
    pub data: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollover {
    pub from: Option<S<Vec<String>>>,
    pub expires_after: Option<S<String>>,
    pub cap: Option<S<String>>,
    pub max_per_period: Option<S<String>>,
    pub on_plan_change: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrder {
    pub kinds: Option<S<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDailyCap {
    pub data: Option<S<String>>,
    pub window: Option<S<String>>,
    pub throttle_kbps: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExhausted {
    pub action: Option<S<String>>,
    pub throttle_kbps: Option<S<i64>>,
    pub block: Option<S<String>>,
    pub price: Option<S<String>>,
    pub unit: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoverage {
    pub countries: Option<S<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub at: Option<S<String>>,
    pub purchase: Option<S<String>>,
    pub usage: Option<S<String>>,
    pub country: Option<S<String>>,
    pub grant: Option<S<RawGrant>>,
    pub install: Option<S<bool>>,
    pub first_use: Option<S<bool>>,
    pub change_plan: Option<S<String>>,
    pub suspend: Option<S<bool>>,
    pub resume: Option<S<bool>>,
    pub cancel: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    pub kind: Option<S<String>>,
    pub data: Option<S<String>>,
    pub expires: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub at: Option<S<String>>,
    pub status: Option<S<String>>,
    pub total: Option<S<String>>,
    pub buckets: Option<S<Vec<S<RawBucket>>>>,
    pub forfeited: Option<S<Vec<S<RawForfeit>>>>,
    pub charges: Option<S<String>>,
    pub fees: Option<S<String>>,
    pub throttled: Option<S<String>>,
    pub rejected: Option<S<String>>,
    pub daily_remaining: Option<S<String>>,
    pub expires: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub kind: Option<S<String>>,
    pub remaining: Option<S<String>>,
    pub expires: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForfeit {
    pub kind: Option<S<String>>,
    pub data: Option<S<String>>,
    pub cause: Option<S<String>>,
}
