//! Replaying a scenario in virtual time and checking its expects.

use rollover_core::amount::{format_exact, format_in_unit};
use rollover_core::ledger::{Change, Entry};
use rollover_core::{Catalog, Instant, Subscription, Zone};
use serde::Serialize;

use crate::file::{ExpectedBucket, ExpectedForfeit, Expect, Scenario};

/// One field of an expect that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub field: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketState {
    pub id: u32,
    pub kind: String,
    pub remaining: u64,
    pub granted: u64,
    pub used: u64,
    pub expires: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForfeitState {
    pub at: String,
    pub bucket: u32,
    pub kind: String,
    pub data: u64,
    pub cause: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodState {
    pub index: u32,
    pub start: String,
    pub end: Option<String>,
}

/// The full state of the subscription at an instant, as `--json` prints it.
/// Amounts are integer bytes; money is a decimal string in the plan's
/// currency; instants are RFC 3339 in the plan's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    pub plan: String,
    pub pending_plan: Option<String>,
    pub status: &'static str,
    pub total: u64,
    pub buckets: Vec<BucketState>,
    /// Forfeits stamped after the previous expect, up to this one.
    pub forfeited: Vec<ForfeitState>,
    pub currency: String,
    pub charges: String,
    pub fees: String,
    pub throttled: u64,
    pub rejected: u64,
    pub daily_remaining: Option<u64>,
    pub expires: Option<String>,
    pub period: Option<PeriodState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectResult {
    pub number: usize,
    pub at: String,
    pub ok: bool,
    pub mismatches: Vec<Mismatch>,
    pub state: State,
}

/// The outcome of a replay: one result per expect, in time order (expects
/// at the same instant in file order), and the whole ledger.
#[derive(Debug, Clone)]
pub struct Report {
    pub ok: bool,
    pub expects: Vec<ExpectResult>,
    pub ledger: Vec<Entry>,
    pub subscription: Subscription,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    expects: &'a [ExpectResult],
}

impl Report {
    /// One line per mismatch: `expect #N at T: FIELD expected X, got Y`.
    pub fn mismatch_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for result in &self.expects {
            for m in &result.mismatches {
                lines.push(format!("expect #{} at {}: {} expected {}, got {}", result.number, result.at, m.field, m.expected, m.got));
            }
        }
        lines
    }

    /// `{"ok": bool, "expects": [{"at", "ok", "mismatches", "state"}]}`,
    /// byte-identical for the same input.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&JsonReport { ok: self.ok, expects: &self.expects }).expect("reports serialize")
    }
}

/// Replays a scenario: the purchase, then events and expects in time order
/// (an expect sees every event stamped at or before its instant).
pub fn run(scenario: &Scenario) -> Report {
    let catalog = &scenario.catalog;
    let mut ledger = Vec::new();
    let mut subscription = Subscription::purchase(catalog, scenario.purchase, scenario.purchased_at, &mut ledger);
    let mut order: Vec<&Expect> = scenario.expects.iter().collect();
    order.sort_by_key(|e| (e.at, e.number));
    let mut next_event = 0;
    let mut forfeits_from = 0;
    let mut results = Vec::with_capacity(order.len());
    for expect in order {
        while let Some(event) = scenario.events.get(next_event).filter(|e| e.at <= expect.at) {
            subscription.apply(catalog, event.event, event.at, &mut ledger);
            next_event += 1;
        }
        subscription.advance(catalog, expect.at, &mut ledger);
        let state = state_at(catalog, &subscription, &ledger[forfeits_from..], expect.at);
        forfeits_from = ledger.len();
        let mismatches = check(catalog, &subscription, &state, &ledger_forfeits(&state), expect);
        results.push(ExpectResult { number: expect.number, at: expect.at_text.clone(), ok: mismatches.is_empty(), mismatches, state });
    }
    for event in &scenario.events[next_event..] {
        subscription.apply(catalog, event.event, event.at, &mut ledger);
    }
    Report { ok: results.iter().all(|r| r.ok), expects: results, ledger, subscription }
}

fn ledger_forfeits(state: &State) -> Vec<(String, u64, &'static str)> {
    state.forfeited.iter().map(|f| (f.kind.clone(), f.data, f.cause)).collect()
}

/// The state of `subscription` at `at`; `recent` is the ledger since the
/// previous expect.
pub fn state_at(catalog: &Catalog, subscription: &Subscription, recent: &[Entry], at: Instant) -> State {
    let plan = subscription.plan_of(catalog);
    let zone = &plan.zone;
    let show = |instant: Instant| (!instant.is_never()).then(|| instant.to_rfc3339(zone));
    let buckets = subscription
        .buckets()
        .iter()
        .map(|b| BucketState {
            id: b.id,
            kind: b.kind.name(),
            remaining: b.remaining_bytes(),
            granted: b.granted_bytes,
            used: b.used_bytes,
            expires: show(b.expires),
        })
        .collect();
    let forfeited = recent
        .iter()
        .filter_map(|entry| match entry.change {
            Change::Forfeited { bytes, cause } => Some(ForfeitState {
                at: entry.at.to_rfc3339(zone),
                bucket: entry.bucket,
                kind: entry.kind.map(|k| k.name()).unwrap_or_default(),
                data: bytes,
                cause: cause.name(),
            }),
            _ => None,
        })
        .collect();
    State {
        plan: plan.id.clone(),
        pending_plan: subscription.pending_plan().map(|p| catalog.get(p).id.clone()),
        status: subscription.status(catalog, at).name(),
        total: subscription.total_bytes(),
        buckets,
        forfeited,
        currency: plan.currency.code().to_string(),
        charges: plan.currency.format(subscription.charges_minor()),
        fees: plan.currency.format(subscription.fees_minor()),
        throttled: subscription.throttled_bytes(),
        rejected: subscription.rejected_bytes(),
        daily_remaining: subscription.daily_remaining_bytes(catalog, at),
        expires: subscription.expires(catalog).and_then(show),
        period: subscription.period(catalog).map(|(index, start, end)| PeriodState { index, start: start.to_rfc3339(zone), end: show(end) }),
    }
}

fn show_amount(bytes: u64, unit: Option<u64>) -> String {
    match unit {
        Some(unit) => format_in_unit(bytes, unit),
        None => format_exact(bytes),
    }
}

fn check(
    catalog: &Catalog,
    subscription: &Subscription,
    state: &State,
    forfeits: &[(String, u64, &'static str)],
    expect: &Expect,
) -> Vec<Mismatch> {
    let plan = subscription.plan_of(catalog);
    let zone = &plan.zone;
    let mut out = Vec::new();
    let mut mismatch = |field: &str, expected: String, got: String| {
        out.push(Mismatch { field: field.to_string(), expected, got });
    };
    if let Some(status) = expect.status
        && status.name() != state.status
    {
        mismatch("status", status.name().into(), state.status.into());
    }
    for (field, expected, got) in [
        ("total", expect.total, Some(state.total)),
        ("throttled", expect.throttled, Some(state.throttled)),
        ("rejected", expect.rejected, Some(state.rejected)),
        ("daily_remaining", expect.daily_remaining, state.daily_remaining),
    ] {
        if let Some(expected) = expected
            && Some(expected.bytes) != got
        {
            let got = got.map_or("none".to_string(), |g| show_amount(g, Some(expected.unit_bytes)));
            mismatch(field, show_amount(expected.bytes, Some(expected.unit_bytes)), got);
        }
    }
    if let Some(charges) = &expect.charges
        && charges.minor != subscription.charges_minor()
    {
        mismatch("charges", charges.text.clone(), state.charges.clone());
    }
    if let Some(fees) = &expect.fees
        && fees.minor != subscription.fees_minor()
    {
        mismatch("fees", fees.text.clone(), state.fees.clone());
    }
    if let Some(expires) = expect.expires {
        let got = subscription.expires(catalog);
        if got != Some(expires) {
            mismatch("expires", expires.to_rfc3339(zone), got.map_or("none".into(), |g| g.to_rfc3339(zone)));
        }
    }
    out.extend(expect.buckets.as_deref().and_then(|expected| check_buckets(subscription, zone, expected)));
    out.extend(expect.forfeited.as_deref().and_then(|expected| check_forfeits(forfeits, expected)));
    out
}

/// The buckets held, against the expected ones in any order; a mismatch
/// lists both sides.
fn check_buckets(subscription: &Subscription, zone: &Zone, expected: &[ExpectedBucket]) -> Option<Mismatch> {
    let unit = expected.iter().find_map(|b| b.remaining.map(|r| r.unit_bytes));
    let actual: Vec<(String, u64, Option<Instant>)> =
        subscription.buckets().iter().map(|b| (b.kind.name(), b.remaining_bytes(), (!b.expires.is_never()).then_some(b.expires))).collect();
    let fits = |want: &ExpectedBucket, have: &(String, u64, Option<Instant>)| {
        want.kind.is_none_or(|k| k.name() == have.0) && want.remaining.is_none_or(|r| r.bytes == have.1) && want.expires.is_none_or(|e| Some(e) == have.2)
    };
    if matches_exactly(expected, &actual, fits) {
        return None;
    }
    let show_expected = expected.iter().map(|b| {
        let parts = [
            b.kind.map(|kind| format!("kind={kind}")),
            b.remaining.map(|r| format!("remaining={}", show_amount(r.bytes, Some(r.unit_bytes)))),
            b.expires.map(|e| format!("expires={}", e.to_rfc3339(zone))),
        ];
        parts.into_iter().flatten().collect()
    });
    let show_actual = actual.iter().map(|(kind, remaining, expires)| {
        let expires = expires.map_or("never".to_string(), |e| e.to_rfc3339(zone));
        vec![format!("kind={kind}"), format!("remaining={}", show_amount(*remaining, unit)), format!("expires={expires}")]
    });
    Some(Mismatch { field: "buckets".into(), expected: show_list(show_expected), got: show_list(show_actual) })
}

/// The forfeits at the expect's instant, against the expected ones in any
/// order.
fn check_forfeits(forfeits: &[(String, u64, &'static str)], expected: &[ExpectedForfeit]) -> Option<Mismatch> {
    let unit = expected.iter().find_map(|f| f.data.map(|d| d.unit_bytes));
    let fits = |want: &ExpectedForfeit, have: &(String, u64, &'static str)| {
        want.kind.is_none_or(|k| k.name() == have.0) && want.data.is_none_or(|d| d.bytes == have.1) && want.cause.is_none_or(|c| c.name() == have.2)
    };
    if matches_exactly(expected, forfeits, fits) {
        return None;
    }
    let show_expected = expected.iter().map(|f| {
        let parts = [
            f.kind.map(|kind| format!("kind={kind}")),
            f.data.map(|d| format!("data={}", show_amount(d.bytes, Some(d.unit_bytes)))),
            f.cause.map(|c| format!("cause={}", c.name())),
        ];
        parts.into_iter().flatten().collect()
    });
    let show_actual = forfeits.iter().map(|(kind, data, cause)| vec![format!("kind={kind}"), format!("data={}", show_amount(*data, unit)), format!("cause={cause}")]);
    Some(Mismatch { field: "forfeited".into(), expected: show_list(show_expected), got: show_list(show_actual) })
}

/// `[{a, b}, {c}]`: items of `key=value` parts, as mismatch lines show them.
fn show_list(items: impl Iterator<Item = Vec<String>>) -> String {
    let items: Vec<String> = items.map(|parts| format!("{{{}}}", parts.join(", "))).collect();
    format!("[{}]", items.join(", "))
}

/// Whether `expected` and `actual` pair up one to one (any order) so that
/// every expected item fits its partner. Small lists: plain backtracking.
fn matches_exactly<E, A>(expected: &[E], actual: &[A], fits: impl Fn(&E, &A) -> bool) -> bool {
    fn search<E, A>(expected: &[E], actual: &[A], used: &mut Vec<bool>, fits: &impl Fn(&E, &A) -> bool) -> bool {
        let Some((first, rest)) = expected.split_first() else { return true };
        for i in 0..actual.len() {
            if !used[i] && fits(first, &actual[i]) {
                used[i] = true;
                if search(rest, actual, used, fits) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    expected.len() == actual.len() && search(expected, actual, &mut vec![false; actual.len()], &fits)
}
