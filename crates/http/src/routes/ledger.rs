//! `GET /v1/subscriptions/{id}/ledger`: the entries recomputed from the
//! log, merged with network notes, filtered and paged.

use axum::extract::{Path, State};
use rollover_service::Service;
use serde_json::{Value, json};

use super::{ApiResult, ok};
use crate::json;
use crate::problem::{Code, Problem};
use axum::extract::Query;
use rollover_core::Instant;
use rollover_core::ledger::{Change, Lifecycle, Source, ThrottleReason};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LedgerQuery {
    cause: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    entry_type: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

const LEDGER_PAGE_MAX: usize = 1000;

/// Largest ledger offset: far past any ledger, and small enough that
/// `offset + limit` cannot wrap.
const LEDGER_OFFSET_MAX: usize = 1 << 40;

/// The `type` of every ledger entry, as `?type=` takes it.
const ENTRY_TYPES: [&str; 11] =
    ["granted", "drawn", "carried_out", "forfeited", "fee", "charged", "accepted_unmetered", "throttled", "rejected", "lifecycle", "network"];

pub(super) async fn get_ledger(State(service): State<Service>, Path(id): Path<String>, query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>) -> ApiResult {
    let Query(query) = query.map_err(|e| Problem::new(Code::InvalidQuery, format!("bad query: {e}"), None))?;
    let cause = query
        .cause
        .as_deref()
        .map(|c| rollover_core::Cause::parse(c).ok_or_else(|| Problem::about(Code::InvalidQuery, "cause", format!("\"{c}\" is not a cause: expired, cap, plan_change, cancelled"))))
        .transpose()?;
    let from = query.from.as_deref().map(|t| Instant::parse_rfc3339(t).map_err(|e| Problem::about(Code::InvalidQuery, "from", e))).transpose()?;
    let to = query.to.as_deref().map(|t| Instant::parse_rfc3339(t).map_err(|e| Problem::about(Code::InvalidQuery, "to", e))).transpose()?;
    if let Some(entry_type) = query.entry_type.as_deref()
        && !ENTRY_TYPES.contains(&entry_type)
    {
        return Err(Problem::about(Code::InvalidQuery, "type", format!("\"{entry_type}\" is not an entry type: {}", ENTRY_TYPES.join(", "))));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > LEDGER_PAGE_MAX {
        return Err(Problem::about(Code::InvalidQuery, "limit", format!("must be 1 to {LEDGER_PAGE_MAX}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > LEDGER_OFFSET_MAX {
        return Err(Problem::about(Code::InvalidQuery, "offset", format!("must be 0 to {LEDGER_OFFSET_MAX}")));
    }
    let ledger = service.ledger(&id).await?;
    let (entries, late) = (ledger.entries, ledger.late);
    let plans = service.plans();
    let plan = plans.catalog.get(ledger.plan);
    let zone = &plan.zone;
    let money = |minor: i64| plan.currency.format(minor);
    // Network notes go after the entries of their instant.
    let mut notes = ledger.notes.into_iter().peekable();
    let mut merged: Vec<(Instant, Value)> = Vec::with_capacity(entries.len());
    for (e, late) in entries.iter().zip(late) {
        while let Some((at, _)) = notes.peek()
            && *at < e.at
        {
            let (at, note) = notes.next().expect("peeked");
            merged.push((at, json!({"type": "network", "note": note})));
        }
        if cause.is_some_and(|c| !matches!(e.change, Change::Forfeited { cause, .. } if cause == c)) {
            continue;
        }
        merged.push((e.at, entry_json(e, late, zone, &money)));
    }
    merged.extend(notes.map(|(at, note)| (at, json!({"type": "network", "note": note}))));
    let selected: Vec<Value> = merged
        .into_iter()
        .filter(|(at, v)| from.is_none_or(|f| *at >= f) && to.is_none_or(|t| *at < t) && (cause.is_none() || v["type"] != "network"))
        .map(|(at, mut v)| {
            v["at"] = json!(at.to_rfc3339(zone));
            v
        })
        .filter(|v| query.entry_type.as_deref().is_none_or(|t| v["type"] == t))
        .collect();
    let total = selected.len();
    let page: Vec<Value> = selected.into_iter().skip(offset).take(limit).collect();
    let mut out = json!({"entries": page, "total": total});
    if offset + limit < total {
        out["next_offset"] = json!(offset + limit);
    }
    Ok(ok(out))
}

fn entry_json(e: &rollover_core::ledger::Entry, late: bool, zone: &rollover_core::Zone, money: &dyn Fn(i64) -> String) -> Value {
    let mut v = match e.change {
        Change::Granted { bytes, expires, source } => json!({
            "type": "granted", "bytes": bytes, "expires_at": json::show(expires, zone),
            "source": match source { Source::Period(_) => "period", Source::Grant => "grant", Source::ExtraBlock => "extra_block", Source::Carry => "carry" },
        }),
        Change::Drawn { bytes } => json!({"type": "drawn", "bytes": bytes}),
        Change::CarriedOut { bytes, into } => json!({"type": "carried_out", "bytes": bytes, "into_bucket": into}),
        Change::Forfeited { bytes, cause } => json!({"type": "forfeited", "bytes": bytes, "cause": cause.name()}),
        Change::Fee { minor, period } => json!({"type": "fee", "amount": money(minor), "period": period}),
        Change::Charged { minor, bytes } => json!({"type": "charged", "amount": money(minor), "bytes": bytes}),
        Change::Unmetered { bytes } => json!({"type": "accepted_unmetered", "bytes": bytes}),
        Change::Throttled { bytes, reason } => json!({"type": "throttled", "bytes": bytes, "reason": match reason { ThrottleReason::DailyCap => "daily_cap", ThrottleReason::Exhausted => "exhausted" }}),
        Change::Rejected { bytes, reason } => json!({"type": "rejected", "bytes": bytes, "reason": reason.name()}),
        Change::Lifecycle(event) => json!({"type": "lifecycle", "event": lifecycle_name(event)}),
    };
    if late {
        v["late"] = json!(true);
    }
    if let Some(kind) = e.kind {
        v["bucket"] = json!(e.bucket);
        v["kind"] = json!(kind.name());
    }
    v
}

fn lifecycle_name(event: Lifecycle) -> &'static str {
    match event {
        Lifecycle::Purchased(_) => "purchased",
        Lifecycle::Installed => "installed",
        Lifecycle::FirstUse => "first_use",
        Lifecycle::Started => "started",
        Lifecycle::Lapsed => "lapsed",
        Lifecycle::Expired => "expired",
        Lifecycle::Suspended => "suspended",
        Lifecycle::Resumed => "resumed",
        Lifecycle::Cancelled => "cancelled",
        Lifecycle::PlanChangeScheduled(_) => "plan_change_scheduled",
        Lifecycle::PlanChanged { .. } => "plan_changed",
        Lifecycle::Refused(_) => "refused",
    }
}
