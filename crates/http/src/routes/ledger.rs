//! `GET /v1/subscriptions/{id}/ledger`: the entries recomputed from the
//! log, with network notes where their events are, filtered and paged;
//! [`Service::ledger_page`] replays only from the ledger mark before them.

use axum::extract::{Path, State};
use rollover_service::Service;

use super::{ApiResult, ok};
use crate::{json, wire};
use crate::problem::{Code, Problem};
use axum::extract::Query;
use rollover_core::Instant;
use rollover_core::ledger::{Change, Lifecycle, Source, ThrottleReason};
use rollover_service::{LedgerQuery as Wanted, Line, LineFilter};
use std::sync::Arc;
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

/// The `type` of every ledger entry, as `?type=` takes it.
const ENTRY_TYPES: [&str; 13] =
    ["granted", "drawn", "carried_out", "forfeited", "fee", "addon_fee", "refunded", "charged", "accepted_unmetered", "throttled", "rejected", "lifecycle", "network"];

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
    let (limit, offset) = super::page(query.limit, query.offset, LEDGER_PAGE_MAX)?;
    let entry_type = query.entry_type.clone();
    let filter: Option<LineFilter> = (cause.is_some() || entry_type.is_some()).then(|| {
        Arc::new(move |line: &Line| {
            let of_cause = match (cause, line) {
                (None, _) => true,
                (Some(c), Line::Entry { entry, .. }) => matches!(entry.change, Change::Forfeited { cause, .. } if cause == c),
                (Some(_), Line::Note { .. }) => false,
            };
            of_cause && entry_type.as_deref().is_none_or(|t| self::entry_type(line) == t)
        }) as LineFilter
    });
    let page = service.ledger_page(&id, Wanted { offset, limit, from, to, filter }).await?;
    let plans = service.plans();
    let plan = plans.catalog.get(page.plan);
    let total = page.total;
    let entries = page.lines.into_iter().map(|line| out(line, plan)).collect();
    let next_offset = (offset.saturating_add(limit) < total).then_some(offset + limit);
    let archived = page.archived.map(|a| wire::ArchivedOut {
        lines: a.lines,
        before: a.before.to_rfc3339(&plan.zone),
        periods: a
            .periods
            .iter()
            .map(|p| wire::ArchivedPeriodOut {
                period: p.period,
                starts_at: (p.period > 0).then(|| Instant::from_micros(p.starts_micros).to_rfc3339(&plan.zone)),
                ends_at: Instant::from_micros(p.ends_micros).to_rfc3339(&plan.zone),
                lines: p.lines,
                used_bytes: p.used_bytes,
                throttled_bytes: p.throttled_bytes,
                rejected_bytes: p.rejected_bytes,
                granted_bytes: p.granted_bytes,
                carried_bytes: p.carried_bytes,
                forfeited_bytes: p.forfeited_bytes,
                fees: plan.currency.format(p.fees_minor),
                charges: plan.currency.format(p.charges_minor),
            })
            .collect(),
    });
    Ok(ok(wire::LedgerOut { entries, total, next_offset, archived }))
}

fn entry_type(line: &Line) -> &'static str {
    let Line::Entry { entry: e, .. } = line else { return "network" };
    match e.change {
        Change::Granted { .. } => "granted",
        Change::Drawn { .. } => "drawn",
        Change::CarriedOut { .. } => "carried_out",
        Change::Forfeited { .. } => "forfeited",
        Change::Fee { .. } => "fee",
        Change::AddonFee { .. } => "addon_fee",
        Change::Refunded { .. } => "refunded",
        Change::Charged { .. } => "charged",
        Change::Unmetered { .. } => "accepted_unmetered",
        Change::Throttled { .. } => "throttled",
        Change::Rejected { .. } => "rejected",
        Change::Lifecycle(_) => "lifecycle",
    }
}

fn out(line: Line, plan: &rollover_core::Plan) -> wire::LedgerEntryOut {
    let zone = &plan.zone;
    let at = line.at().to_rfc3339(zone);
    let entry_type = entry_type(&line);
    let (e, late) = match line {
        Line::Note { note, .. } => return wire::LedgerEntryOut { at, entry_type, note: Some(note), ..Default::default() },
        Line::Entry { entry, late, .. } => (entry, late),
    };
    let mut out = wire::LedgerEntryOut { at, entry_type, late, ..Default::default() };
    if let Some(kind) = e.kind {
        out.bucket = Some(e.bucket);
        out.bucket_kind = Some(kind.name());
    }
    match e.change {
        Change::Granted { bytes, expires, source } => {
            out.bytes = Some(bytes);
            out.expires_at = Some(json::show(expires, zone));
            out.source = Some(match source {
                Source::Period(_) => "period",
                Source::Grant => "grant",
                Source::Addon => "addon",
                Source::ExtraBlock => "extra_block",
                Source::Carry => "carry",
            });
        }
        Change::Drawn { bytes } | Change::Unmetered { bytes } => out.bytes = Some(bytes),
        Change::CarriedOut { bytes, into } => (out.bytes, out.into_bucket) = (Some(bytes), Some(into)),
        Change::Forfeited { bytes, cause } => (out.bytes, out.cause) = (Some(bytes), Some(cause.name())),
        Change::Fee { minor, period } => (out.amount, out.period) = (Some(plan.currency.format(minor)), Some(period)),
        Change::AddonFee { minor } | Change::Refunded { minor } => out.amount = Some(plan.currency.format(minor)),
        Change::Charged { minor, bytes } => (out.amount, out.bytes) = (Some(plan.currency.format(minor)), Some(bytes)),
        Change::Throttled { bytes, reason } => {
            out.bytes = Some(bytes);
            out.reason = Some(match reason {
                ThrottleReason::DailyCap => "daily_cap",
                ThrottleReason::Exhausted => "exhausted",
            });
        }
        Change::Rejected { bytes, reason } => (out.bytes, out.reason) = (Some(bytes), Some(reason.name())),
        Change::Lifecycle(event) => out.event = Some(lifecycle_name(event)),
    }
    out
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
