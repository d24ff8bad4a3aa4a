//! The response bodies, typed: each is the shape the OpenAPI document's
//! schema of the same name describes (a test checks every answer against
//! it). Domain values are converted here, at the edge; none of them is
//! serialized directly.

use rollover_explain::{Lang, explain_plan};
use rollover_core::{Instant, Plan, Zone};
use rollover_service::{Balance, EventOutcome, FinalAction, SessionAnswer, UsageResult};
use serde::Serialize;

use crate::json;

/// `{"id"}`: what a creation answers.
#[derive(Serialize)]
pub struct Created<'a> {
    pub id: &'a str,
}

#[derive(Serialize)]
pub struct PlanVersion {
    pub id: String,
    pub version: u32,
}

/// `POST /v1/plans`.
#[derive(Serialize)]
pub struct PlanVersions {
    pub plans: Vec<PlanVersion>,
    /// The add-ons the document held, with their versions.
    pub addons: Vec<PlanVersion>,
}

#[derive(Serialize)]
pub struct PlanSummary<'a> {
    pub id: &'a str,
    pub version: u32,
    pub name: &'a str,
    pub currency: &'a str,
    pub price: String,
}

impl<'a> PlanSummary<'a> {
    pub fn of(plan: &'a Plan, version: u32) -> PlanSummary<'a> {
        PlanSummary { id: &plan.id, version, name: &plan.name, currency: plan.currency.code(), price: plan.currency.format(plan.price_minor) }
    }
}

/// `GET /v1/plans`.
#[derive(Serialize)]
pub struct PlanList<'a> {
    pub plans: Vec<PlanSummary<'a>>,
}

#[derive(Serialize)]
pub struct Explanation {
    pub en: String,
    pub zh: String,
}

/// `GET /v1/plans/{id}`.
#[derive(Serialize)]
pub struct PlanOut<'a> {
    #[serde(flatten)]
    pub summary: PlanSummary<'a>,
    pub timezone: &'a str,
    pub document: Option<String>,
    pub explanation: Explanation,
}

impl<'a> PlanOut<'a> {
    pub fn of(plan: &'a Plan, version: u32, document: Option<String>) -> PlanOut<'a> {
        let explanation = Explanation { en: explain_plan(plan, Lang::En), zh: explain_plan(plan, Lang::Zh) };
        PlanOut { summary: PlanSummary::of(plan, version), timezone: plan.zone.name(), document, explanation }
    }
}

/// `POST /v1/subscriptions/{id}/events`.
#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventOutcomeOut {
    Applied,
    Refused { reason: &'static str, detail: &'static str },
}

impl From<EventOutcome> for EventOutcomeOut {
    fn from(outcome: EventOutcome) -> EventOutcomeOut {
        match outcome {
            EventOutcome::Applied => EventOutcomeOut::Applied,
            EventOutcome::Refused(refusal) => EventOutcomeOut::Refused { reason: refusal.code(), detail: refusal.text() },
        }
    }
}

#[derive(Serialize)]
pub struct BucketOut {
    pub kind: String,
    pub granted_bytes: u64,
    pub remaining_bytes: u64,
    pub expires_at: Option<String>,
    pub rolls_over: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carry_expires_at: Option<String>,
}

/// `GET /v1/subscriptions/{id}/balance`: instants and money in the plan's
/// zone and currency.
#[derive(Serialize)]
pub struct BalanceOut {
    pub id: String,
    pub plan: PlanVersion,
    pub as_of: String,
    pub status: &'static str,
    pub total_bytes: u64,
    pub buckets: Vec<BucketOut>,
    pub currency: String,
    pub charges: String,
    pub fees: String,
    pub throttled_bytes: u64,
    pub rejected_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_remaining_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_end: Option<PeriodEndOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lapses_at: Option<String>,
}

/// What the end of the current period would do if no more data were used.
#[derive(Serialize)]
pub struct PeriodEndOut {
    pub at: String,
    pub carries_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carry_expires_at: Option<String>,
    pub forfeits_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_allowance_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fee: Option<String>,
}

impl BalanceOut {
    pub fn of(balance: Balance, plan: &Plan) -> BalanceOut {
        let zone = &plan.zone;
        let buckets = balance
            .buckets
            .into_iter()
            .map(|b| BucketOut {
                kind: b.kind,
                granted_bytes: b.granted_bytes,
                remaining_bytes: b.remaining_bytes,
                expires_at: b.expires_at.and_then(|e| json::show(e, zone)),
                rolls_over: b.rolls_over,
                carry_expires_at: b.carry_expires_at.and_then(|e| json::show(e, zone)),
            })
            .collect();
        BalanceOut {
            id: balance.id,
            plan: PlanVersion { id: balance.plan.id, version: balance.plan.version },
            as_of: balance.at.to_rfc3339(zone),
            status: balance.status.name(),
            total_bytes: balance.total_bytes,
            buckets,
            currency: plan.currency.code().to_string(),
            charges: plan.currency.format(balance.charges_minor),
            fees: plan.currency.format(balance.fees_minor),
            throttled_bytes: balance.throttled_bytes,
            rejected_bytes: balance.rejected_bytes,
            daily_remaining_bytes: balance.daily_remaining_bytes,
            expires_at: balance.expires_at.map(|e| e.to_rfc3339(zone)),
            lapses_at: balance.lapses_at.map(|at| at.to_rfc3339(zone)),
            period_end: balance.period_end.map(|p| PeriodEndOut {
                at: p.at.to_rfc3339(zone),
                carries_bytes: p.carries_bytes,
                carry_expires_at: p.carry_expires.and_then(|e| json::show(e, zone)),
                forfeits_bytes: p.forfeits_bytes,
                next_allowance_bytes: p.next_allowance_bytes,
                next_fee: (!plan.is_once()).then(|| plan.currency.format(p.next_fee_minor)),
            }),
        }
    }
}

/// `POST /v1/subscriptions/{id}/tokens`.
#[derive(Serialize)]
pub struct TokenOut<'a> {
    pub token: String,
    /// The customer's page, opened by this token.
    pub url: String,
    pub subscription: &'a str,
    pub expires_at: String,
}

/// `GET` and `POST /v1/clock`.
#[derive(Serialize)]
pub struct ClockOut {
    pub now: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated: Option<bool>,
}

impl ClockOut {
    pub fn at(now: Instant, simulated: Option<bool>) -> ClockOut {
        ClockOut { now: now.to_rfc3339(&Zone::utc()), simulated }
    }
}

/// How one usage record (or a session's report) was taken. The `id` is left
/// out inside a session answer.
#[derive(Serialize)]
pub struct UsageOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drawn_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_bytes: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<&'static str>,
}

const CONFLICT_DETAIL: &str = "this id was accepted before with other bytes, another instant or another country; the record is not rated";

impl<'a> UsageOut<'a> {
    pub fn of(id: Option<&'a str>, result: &UsageResult) -> UsageOut<'a> {
        let bare = |status| UsageOut {
            id,
            status,
            reason: None,
            detail: None,
            drawn_bytes: None,
            throttled_bytes: None,
            rejected_bytes: None,
            late: false,
            rejected_reason: None,
        };
        match result {
            UsageResult::Accepted { drawn_bytes, throttled_bytes, rejected_bytes, late, rejected_reason } => UsageOut {
                drawn_bytes: Some(*drawn_bytes),
                throttled_bytes: Some(*throttled_bytes),
                rejected_bytes: Some(*rejected_bytes),
                late: *late,
                rejected_reason: rejected_reason.map(|r| r.name()),
                ..bare("accepted")
            },
            UsageResult::Duplicate => bare("duplicate"),
            UsageResult::Conflict => UsageOut { reason: Some("id_reused"), detail: Some(CONFLICT_DETAIL.into()), ..bare("conflict") },
            UsageResult::Rejected(rejection) => UsageOut { reason: Some(rejection.code()), detail: Some(rejection.to_string()), ..bare("rejected") },
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FinalUnitOut {
    Terminate,
    Throttle { throttle_kbps: Option<u32> },
}

/// An online charging session's answer.
#[derive(Serialize)]
pub struct SessionOut<'a> {
    pub id: &'a str,
    pub subscription: &'a str,
    pub result: &'static str,
    pub granted_bytes: u64,
    pub validity_seconds: u64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_unit: Option<FinalUnitOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<UsageOut<'a>>,
}

impl<'a> SessionOut<'a> {
    pub fn of(answer: &'a SessionAnswer) -> SessionOut<'a> {
        let result = if answer.not_covered {
            "not_covered"
        } else if answer.credit_limit_reached {
            "credit_limit_reached"
        } else {
            "ok"
        };
        SessionOut {
            id: &answer.session,
            subscription: &answer.subscription,
            result,
            granted_bytes: answer.granted_bytes,
            validity_seconds: answer.validity_seconds,
            status: answer.status.name(),
            final_unit: answer.final_unit.map(|action| match action {
                FinalAction::Terminate => FinalUnitOut::Terminate,
                FinalAction::Throttle { throttle_kbps } => FinalUnitOut::Throttle { throttle_kbps },
            }),
            used: answer.used.as_ref().map(|used| UsageOut::of(None, used)),
        }
    }
}

/// One line of `GET /v1/subscriptions/{id}/ledger`: a ledger entry or a
/// network note, with the fields its `type` has.
#[derive(Serialize, Default)]
pub struct LedgerEntryOut {
    pub at: String,
    #[serde(rename = "type")]
    pub entry_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u32>,
    #[serde(rename = "kind", skip_serializing_if = "Option::is_none")]
    pub bucket_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// For `granted`: `null` when the bucket never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub into_bucket: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

/// A page of the ledger.
#[derive(Serialize)]
pub struct LedgerOut {
    pub entries: Vec<LedgerEntryOut>,
    pub total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// What retention archived before these lines, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<ArchivedOut>,
}

/// The lines retention archived (dropped from the log after exporting
/// them), and their totals by period.
#[derive(Serialize)]
pub struct ArchivedOut {
    pub lines: usize,
    /// Lines before this instant were archived; `entries` start after it.
    pub before: String,
    pub periods: Vec<ArchivedPeriodOut>,
}

#[derive(Serialize)]
pub struct ArchivedPeriodOut {
    /// The period's number (0: before the plan started).
    pub period: i64,
    /// Its start (null before the plan started) and end.
    pub starts_at: Option<String>,
    pub ends_at: String,
    pub lines: i64,
    pub used_bytes: i64,
    pub throttled_bytes: i64,
    pub rejected_bytes: i64,
    pub granted_bytes: i64,
    pub carried_bytes: i64,
    pub forfeited_bytes: i64,
    /// Fees and add-ons less refunds, and charges, in the plan's currency.
    pub fees: String,
    pub charges: String,
}

/// `POST /v1/advice` and `rollover advise --json`.
#[derive(Serialize)]
pub struct AdviceOut {
    pub best: Option<String>,
    pub reason: String,
    pub days: usize,
    pub used_bytes: u64,
    pub plans: Vec<AdvicePlanOut>,
}

#[derive(Serialize)]
pub struct AdvicePlanOut {
    pub plan: String,
    pub currency: String,
    /// Fees and charges over the days, a decimal string.
    pub cost: String,
    pub expired_bytes: u64,
    pub throttled_bytes: u64,
    pub throttled_days: u32,
    pub rejected_bytes: u64,
    pub rejected_days: u32,
}

impl AdviceOut {
    pub fn of(catalog: &rollover_core::Catalog, advice: &rollover_advise::Advice, lang: rollover_explain::Lang) -> AdviceOut {
        let plans = advice
            .outcomes
            .iter()
            .map(|o| {
                let plan = catalog.get(o.plan);
                AdvicePlanOut {
                    plan: plan.id.clone(),
                    currency: plan.currency.code().to_string(),
                    cost: plan.currency.format(o.cost_minor),
                    expired_bytes: o.expired_bytes,
                    throttled_bytes: o.throttled_bytes,
                    throttled_days: o.throttled_days,
                    rejected_bytes: o.rejected_bytes,
                    rejected_days: o.rejected_days,
                }
            })
            .collect();
        AdviceOut {
            best: advice.best.map(|ix| catalog.get(ix).id.clone()),
            reason: rollover_advise::reason(catalog, advice, lang),
            days: advice.days,
            used_bytes: advice.used_bytes,
            plans,
        }
    }
}

/// `GET /v1/subscriptions`.
#[derive(Serialize)]
pub struct SubscriptionListOut {
    pub subscriptions: Vec<SubscriptionSummaryOut>,
    /// How many pass the filter in all.
    pub total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

#[derive(Serialize)]
pub struct SubscriptionSummaryOut {
    pub id: String,
    pub plan: PlanVersion,
    pub status: &'static str,
}

/// `POST /v1/esim/profiles`.
#[derive(Serialize)]
pub struct ProfileImportOut {
    pub added: usize,
    pub errors: Vec<LineError>,
}

#[derive(Serialize)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// One eSIM profile.
#[derive(Serialize)]
pub struct ProfileOut {
    pub iccid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imsi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    pub updated_at: String,
}

impl ProfileOut {
    pub fn of(row: rollover_service::ProfileRow) -> ProfileOut {
        ProfileOut {
            iccid: row.iccid,
            profile_type: row.profile_type,
            imsi: row.imsi,
            msisdn: row.msisdn,
            state: row.state,
            eid: row.eid,
            updated_at: Instant::from_micros(row.updated_at_micros).to_rfc3339(&rollover_core::Zone::utc()),
        }
    }
}

/// `GET /v1/esim/profiles`.
#[derive(Serialize)]
pub struct ProfileListOut {
    pub profiles: Vec<ProfileOut>,
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    pub counts: Vec<ProfileCountOut>,
}

#[derive(Serialize)]
pub struct ProfileCountOut {
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<String>,
    pub count: u64,
}

/// `GET /v1/packages`.
#[derive(Serialize)]
pub struct PackagesOut {
    pub packages: Vec<PackageOut>,
}

#[derive(Serialize)]
pub struct PackageOut {
    pub id: String,
    pub name: String,
    /// Data each period (or for the whole pass); absent for unlimited plans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<u64>,
    pub unlimited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_full_speed_bytes: Option<u64>,
    pub validity: Validity,
    /// "purchase", "install" or "first_use".
    pub starts: &'static str,
    pub price: String,
    pub currency: String,
    pub carries_over: bool,
    pub carry_over: Explanation,
    /// The countries it works in; absent: everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    /// The add-ons sold for it.
    pub addons: Vec<PackageAddon>,
}

/// An add-on as a reseller lists it: `POST /v1/subscriptions/{id}/addons`
/// buys one.
#[derive(Serialize)]
pub struct PackageAddon {
    pub id: String,
    pub name: String,
    pub data_bytes: u64,
    pub price: String,
    /// "period_end", "never" or a length ("7 days").
    pub expires: String,
}

#[derive(Serialize)]
pub struct Validity {
    /// "monthly", "days" (renews every N days) or "once" (a pass).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// In words: "renews monthly", "7 days", "8 calendar days".
    pub text: String,
}

/// `GET /v1/esims/{iccid}`.
#[derive(Serialize)]
pub struct EsimOut {
    pub iccid: String,
    /// Absent when the ICCID is not in this seller's inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<EsimSubscriptionOut>,
}

#[derive(Serialize)]
pub struct EsimSubscriptionOut {
    pub id: String,
    pub plan: String,
    pub status: &'static str,
    pub remaining_bytes: u64,
    /// What the live buckets held when granted.
    pub total_bytes: u64,
    pub unlimited: bool,
    /// When a pass ends, or when the current period ends (then it renews).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub renews: bool,
}

/// An eSIM order (`POST /v1/orders`, `GET /v1/orders/{id}`).
#[derive(Serialize)]
pub struct OrderOut {
    pub id: String,
    pub status: &'static str,
    pub plan: String,
    pub iccid: String,
    pub eid: Option<String>,
    pub subscription: Option<String>,
    /// `LPA:1$<SM-DP+ address>$<matching id>`, once completed.
    pub activation_code: Option<String>,
    pub links: Option<OrderLinks>,
    pub failure: Option<OrderFailure>,
    pub last_error: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub refunded: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize)]
pub struct OrderLinks {
    pub qr_svg: String,
    pub qr_png: String,
    pub ios: String,
    pub android: String,
}

#[derive(Serialize)]
pub struct OrderFailure {
    pub function: String,
    pub status: String,
    pub subject_code: String,
    pub reason_code: String,
    pub message: String,
}

/// `POST /v1/subscriptions/{id}/addons`.
#[derive(Serialize)]
pub struct AddonPurchaseOut {
    pub id: String,
    pub addon: String,
    pub data_bytes: u64,
    pub fee: String,
    #[serde(flatten)]
    pub outcome: EventOutcomeOut,
}

/// `POST /v1/subscriptions/batch`.
#[derive(Serialize)]
pub struct ImportOut {
    pub created: usize,
    pub results: Vec<ImportResult>,
}

/// One line of an import: `created`, `unchanged` or `rejected`.
#[derive(Serialize)]
pub struct ImportResult {
    pub id: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImportResult {
    pub fn done(id: String, status: &'static str) -> ImportResult {
        ImportResult { id: Some(id), status, code: None, field: None, detail: None }
    }

    pub fn rejected(id: Option<&str>, problem: &crate::Problem) -> ImportResult {
        ImportResult { id: id.map(str::to_string), status: "rejected", code: Some(problem.code), field: problem.field.clone(), detail: Some(problem.detail.clone()) }
    }
}
