//! Ledger lines for support staff: one line per entry, in English, with the
//! exact byte counts.

use rollover_core::amount::format_exact;
use rollover_core::catalog::{Catalog, PlanIx};
use rollover_core::ledger::{Change, Entry, Lifecycle, Source, ThrottleReason};

/// One line per ledger entry, for support staff: when, which bucket, what.
/// Instants are shown in the first plan's zone and money in its currency.
pub fn ledger_lines(catalog: &Catalog, ledger: &[Entry]) -> Vec<String> {
    let Some(first) = catalog.plans().first() else { return Vec::new() };
    let zone = &first.zone;
    let money = |minor: i64| format!("{} {}", first.currency.format(minor), first.currency.code());
    let plan_id = |ix: PlanIx| catalog.get(ix).id.clone();
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
                        Source::Addon => "add-on".to_string(),
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
                Change::AddonFee { minor } => format!("fee {} for an add-on", money(minor)),
                Change::Refunded { minor } => format!("refunded {}", money(minor)),
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
