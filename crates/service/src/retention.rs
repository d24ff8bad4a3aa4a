//! Retention: raw events older than the newest checkpoint and than
//! `months` calendar months (UTC) are written to JSON-lines files and then
//! dropped from the log, one subscription's oldest events at a time.
//!
//! A subscription's events are dropped only up to one of its ledger marks,
//! which becomes its **floor**: its ledger, start-up without a checkpoint
//! and the checkpointer all start it from that mark from then on, and the
//! marks before it go. The periods the dropped events fell in keep their
//! totals (`archived_periods`), which the ledger shows beside its lines.
//! A subscription with no mark (fewer than
//! [`MARK_EVERY`](crate::checkpoint::MARK_EVERY) events) keeps all of its.
//!
//! Order, so that nothing is lost: the file is written, flushed to disk and
//! renamed into place (and the directory flushed) before the one store
//! transaction that sets the floors, adds the totals and deletes the events.
//! A crash before that transaction leaves the events in the log, to be
//! exported again by the next pass (so an event may be in two files; its
//! `seq` tells them apart); a crash after it loses nothing that is not in a
//! file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use rollover_core::ledger::Change;
use rollover_core::{Instant, Subscription, Zone};
use rollover_store::{Archive, EventBody, EventRow, PeriodTotals, Store};
use serde_json::{Value, json};

use crate::ledger::{self, Line};
use crate::plans::Plans;
use crate::writer::Write;
use crate::{ServiceError, checkpoint};

/// How long raw events are kept, and where they go before they are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Calendar months (UTC) an event is kept at least; 0 keeps everything.
    pub months: u32,
    /// Directory the JSON-lines files are written to.
    pub export_dir: PathBuf,
}

/// Subscriptions per file and per store transaction.
const CHUNK: usize = 1_000;

/// The instant `months` calendar months (UTC) before `now`.
pub(crate) fn cutoff(now: Instant, months: u32) -> Instant {
    Zone::utc().add_months(now, -(months as i64))
}

fn failed(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Corrupt { message: format!("retention: {e}") }
}

/// One retention pass after the checkpoint of `checkpoint_seq`: reads on
/// `store` (the checkpointer's connection), writes files, and commits
/// through the writer. Returns how many events were dropped.
pub(crate) fn run(store: &mut dyn Store, writer: &SyncSender<Write>, plans: &Plans, retention: &Retention, now: Instant, checkpoint_seq: i64) -> Result<u64, ServiceError> {
    if retention.months == 0 || checkpoint_seq <= 0 {
        return Ok(0);
    }
    let newest = store.max_seq()?;
    let young = checkpoint::first_applied_since(store, cutoff(now, retention.months).micros(), newest)?;
    let cut = checkpoint_seq.min(young - 1);
    if cut <= 0 {
        return Ok(0);
    }
    let candidates = store.retention_candidates(cut)?;
    let mut dropped = 0u64;
    for chunk in candidates.chunks(CHUNK) {
        let mut archive = Archive::default();
        let mut text = String::new();
        for (id, new_floor, old_floor) in chunk {
            let start = match *old_floor {
                0 => None,
                floor => Some(floor_state(store, plans, id, floor)?),
            };
            let rows = store.events_between(id, *old_floor, *new_floor)?;
            if rows.is_empty() {
                continue;
            }
            archive.periods.extend(period_totals(plans, id, start, &rows)?);
            for row in &rows {
                text.push_str(&export_line(row).to_string());
                text.push('\n');
            }
            archive.seqs.extend(rows.iter().map(|r| r.seq));
            archive.floors.push((id.clone(), *new_floor));
        }
        if archive.seqs.is_empty() {
            continue;
        }
        let (first, last) = (archive.seqs.iter().min().copied().unwrap_or(0), archive.seqs.iter().max().copied().unwrap_or(0));
        let path = retention.export_dir.join(format!("events-{first:012}-{last:012}-{}.jsonl", now.micros()));
        write_durably(&path, text.as_bytes()).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        // A crash here, for the crash tests: exported, not yet dropped.
        if crate::failpoint("retention-exported") {
            eprintln!("rollover: failpoint retention-exported: stopping");
            std::process::abort();
        }
        let count = archive.seqs.len() as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        writer
            .send(Write::Run(Box::new(move |store| {
                let _ = tx.send(store.archive(&archive));
            })))
            .map_err(|_| ServiceError::Stopped { what: "the store writer" })?;
        rx.recv().map_err(|_| ServiceError::Stopped { what: "the store writer" })??;
        tracing::info!(events = count, file = %path.display(), "archived events exported and dropped");
        dropped += count;
    }
    Ok(dropped)
}

/// A subscription's state at its floor: its ledger must start there.
pub(crate) fn floor_state(store: &mut dyn Store, plans: &Plans, id: &str, floor: i64) -> Result<Subscription, ServiceError> {
    let meta = store.ledger_marks(id)?.into_iter().find(|m| m.seq == floor);
    let bytes = store.ledger_mark(id, floor)?;
    let (Some(meta), Some(bytes)) = (meta, bytes) else {
        return Err(ServiceError::Corrupt { message: format!("subscription {id}: the ledger mark of its floor (event {floor}) is missing; its earlier events are in the export files") });
    };
    checkpoint::decode_mark(&bytes, &meta, plans)
        .map(|(subscription, _)| subscription)
        .map_err(|why| ServiceError::Corrupt { message: format!("subscription {id}: the ledger mark of its floor (event {floor}) does not check: {why}; its earlier events are in the export files") })
}

/// The totals, per period, of the lines `rows` make from `start`. A line
/// belongs to the period the subscription is in right after the step that
/// made it: what a boundary does (a fee, a carry, a forfeit) counts in the
/// period it opens.
fn period_totals(plans: &Plans, id: &str, start: Option<Subscription>, rows: &[EventRow]) -> Result<Vec<PeriodTotals>, ServiceError> {
    let mut periods: BTreeMap<i64, PeriodTotals> = BTreeMap::new();
    let mut observe = |subscription: &Subscription, line: &Line| {
        let (number, starts, ends) = match subscription.period(&plans.catalog) {
            Some((n, starts, ends)) => (n as i64, starts.micros(), ends.micros()),
            None => (0, 0, line.at().micros()),
        };
        let t = periods.entry(starts).or_insert_with(|| PeriodTotals { subscription: id.to_string(), period: number, starts_micros: starts, ends_micros: ends, ..PeriodTotals::default() });
        t.ends_micros = t.ends_micros.max(ends);
        t.lines += 1;
        let Line::Entry { entry, .. } = line else { return };
        let b = |bytes: u64| bytes.min(i64::MAX as u64) as i64;
        match entry.change {
            Change::Drawn { bytes } | Change::Unmetered { bytes } => t.used_bytes += b(bytes),
            Change::Throttled { bytes, .. } => t.throttled_bytes += b(bytes),
            Change::Rejected { bytes, .. } => t.rejected_bytes += b(bytes),
            Change::Granted { bytes, .. } => t.granted_bytes += b(bytes),
            Change::CarriedOut { bytes, .. } => t.carried_bytes += b(bytes),
            Change::Forfeited { bytes, .. } => t.forfeited_bytes += b(bytes),
            Change::Fee { minor, .. } | Change::AddonFee { minor } => t.fees_minor += minor,
            Change::Refunded { minor } => t.fees_minor -= minor,
            Change::Charged { minor, .. } => t.charges_minor += minor,
            Change::Lifecycle(_) => {}
        }
    };
    ledger::replay_observed(plans, start, rows, &mut observe)?;
    Ok(periods.into_values().collect())
}

/// One archived event as a JSON object: the log's own columns, instants
/// both as RFC 3339 (UTC) and in microseconds.
pub(crate) fn export_line(row: &EventRow) -> Value {
    let utc = Zone::utc();
    let mut line = json!({
        "seq": row.seq,
        "subscription": row.subscription,
        "applied_at": Instant::from_micros(row.applied_at_micros).to_rfc3339(&utc),
        "applied_at_micros": row.applied_at_micros,
        "at": Instant::from_micros(row.at_micros).to_rfc3339(&utc),
        "at_micros": row.at_micros,
        "key": row.key,
        "kind": row.body.name(),
    });
    let expiry = |micros: i64| match micros {
        rollover_store::EXPIRES_NEVER => json!("never"),
        rollover_store::EXPIRES_PERIOD_END => json!("period_end"),
        micros => json!(Instant::from_micros(micros).to_rfc3339(&utc)),
    };
    let body = match &row.body {
        EventBody::Purchase { plan_id, plan_version } | EventBody::ChangePlan { plan_id, plan_version } => json!({"plan": plan_id, "plan_version": plan_version}),
        EventBody::Usage { bytes, country } => json!({"bytes": bytes, "country": country}),
        EventBody::Grant { kind, bytes, expires_micros } => json!({"bucket_kind": kind, "bytes": bytes, "expires": expiry(*expires_micros)}),
        EventBody::Addon { addon, kind, bytes, expires_micros, price_minor } => {
            json!({"addon": addon, "bucket_kind": kind, "bytes": bytes, "expires": expiry(*expires_micros), "price_minor": price_minor})
        }
        EventBody::Refund { minor, reason } => json!({"amount_minor": minor, "reason": reason}),
        EventBody::Network { note } => json!({"note": note}),
        EventBody::Install | EventBody::FirstUse | EventBody::Suspend | EventBody::Resume | EventBody::Cancel => json!({}),
    };
    if let (Value::Object(line), Value::Object(body)) = (&mut line, body) {
        line.extend(body);
    }
    line
}

/// Writes `bytes` to `path` so that it is whole on disk when this returns:
/// a temporary file, flushed, renamed into place, the directory flushed.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let partial = path.with_extension("jsonl.partial");
    {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&partial, path)?;
    std::fs::File::open(dir)?.sync_all()
}
