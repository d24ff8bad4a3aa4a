//! Ledger reads that cost what they return, not the subscription's life.
//!
//! A ledger is recomputed from the log: the same engine, the same order.
//! Rather than from the purchase, a read starts at a ledger mark (the
//! subscription's state after one of its events, with the number of lines
//! made up to it; the checkpointer leaves one every
//! [`MARK_EVERY`](crate::checkpoint::MARK_EVERY) events of a subscription)
//! and replays only the events after it:
//!
//! - a page by offset replays from the last mark at or before the offset to
//!   the first mark past the page, plus the events after the newest mark
//!   (for the total and the lines since);
//! - a window (`from`) replays from the last mark whose state is before the
//!   window (by more than the future skew, since a record may be stamped
//!   that far ahead of the moment it was applied) to now.
//!
//! A mark that does not check (checksum, format, its row's seq and line
//! count, a plan the catalog lacks) is passed over for the one before it,
//! down to the purchase: marks are derived, never trusted over the log.
//! Once retention archived a subscription's first events, its floor mark
//! stands for the purchase: nothing before it can be read, and offsets
//! count from it (`retention.rs`).
//!
//! Lines are in log order: the entries of each event (and of the boundaries
//! the engine ran before it), and a network note where its event is.

use std::sync::Arc;

use rollover_core::ledger::Entry;
use rollover_core::{Instant, PlanIx, Subscription};
use rollover_store::{EventBody, EventRow, MarkMeta, PeriodTotals, Store};

use crate::plans::Plans;
use crate::{Ledger, Origin, ServiceError, checkpoint, replay, retention};

/// One line of a ledger: an entry of the engine's, or a network note.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Entry {
        entry: Entry,
        /// It rates a usage record that arrived late (stamped before a
        /// boundary the subscription had already crossed).
        late: bool,
        /// The stored event that caused it, if one did.
        origin: Option<Origin>,
    },
    Note { at: Instant, note: String },
}

impl Line {
    pub fn at(&self) -> Instant {
        match self {
            Line::Entry { entry, .. } => entry.at,
            Line::Note { at, .. } => *at,
        }
    }
}

/// A further test of a line (an entry type, a cause).
pub type LineFilter = Arc<dyn Fn(&Line) -> bool + Send + Sync>;

/// Which lines a read wants; every field may be left out.
#[derive(Clone, Default)]
pub struct LedgerQuery {
    pub offset: usize,
    pub limit: usize,
    /// Lines at or after this instant.
    pub from: Option<Instant>,
    /// Lines before this instant.
    pub to: Option<Instant>,
    /// A further test (an entry type, a cause).
    pub filter: Option<LineFilter>,
}

/// A page of a ledger: its lines, how many lines the query matches in all
/// (after the floor), the plan the subscription is on now, and what was
/// archived before the floor.
#[derive(Debug, Clone)]
pub struct LedgerPage {
    pub lines: Vec<Line>,
    pub total: usize,
    pub plan: PlanIx,
    pub archived: Option<Archived>,
}

/// The lines a subscription's archived events made, and their totals by
/// period: what the ledger shows of them once they are dropped.
#[derive(Debug, Clone)]
pub struct Archived {
    pub lines: usize,
    /// The floor: lines before this instant were archived.
    pub before: Instant,
    pub periods: Vec<PeriodTotals>,
}

/// Replays `rows` from `start` (a mark's state), or from the purchase (the
/// first row) when there is none, into lines.
pub(crate) fn replay_lines(plans: &Plans, start: Option<Subscription>, rows: &[EventRow]) -> Result<(Subscription, Vec<Line>), ServiceError> {
    replay_observed(plans, start, rows, &mut |_, _| {})
}

/// [`replay_lines`], telling `observe` each line with the subscription as
/// it is right after the step that made it.
pub(crate) fn replay_observed(plans: &Plans, start: Option<Subscription>, rows: &[EventRow], observe: &mut dyn FnMut(&Subscription, &Line)) -> Result<(Subscription, Vec<Line>), ServiceError> {
    let mut scratch = Vec::new();
    let mut lines = Vec::with_capacity(rows.len() * 2);
    let (mut subscription, rest) = match start {
        Some(subscription) => (subscription, rows),
        None => {
            let (first, rest) = rows.split_first().ok_or_else(|| ServiceError::Corrupt { message: "no stored events".into() })?;
            let subscription = replay::purchase(plans, first, &mut scratch)?;
            for (n, entry) in scratch.drain(..).enumerate() {
                lines.push(Line::Entry { entry, late: false, origin: (n == 0).then(|| origin(first)) });
            }
            (subscription, rest)
        }
    };
    let mut told = 0;
    let mut tell = |subscription: &Subscription, lines: &[Line], told: &mut usize| {
        for line in &lines[*told..] {
            observe(subscription, line);
        }
        *told = lines.len();
    };
    tell(&subscription, &lines, &mut told);
    for row in rest {
        subscription.advance(&plans.catalog, Instant::from_micros(row.applied_at_micros), &mut scratch);
        lines.extend(scratch.drain(..).map(|entry| Line::Entry { entry, late: false, origin: None }));
        tell(&subscription, &lines, &mut told);
        let late = matches!(row.body, EventBody::Usage { .. }) && subscription.period(&plans.catalog).is_some_and(|(_, start, _)| row.at_micros < start.micros());
        replay::apply_row(plans, &mut subscription, row, &mut scratch)?;
        let origin = origin(row);
        lines.extend(scratch.drain(..).map(|entry| Line::Entry { entry, late, origin: Some(origin.clone()) }));
        if let EventBody::Network { note } = &row.body {
            lines.push(Line::Note { at: Instant::from_micros(row.at_micros), note: note.clone() });
        }
        tell(&subscription, &lines, &mut told);
    }
    Ok((subscription, lines))
}

fn origin(row: &EventRow) -> Origin {
    let country = match &row.body {
        EventBody::Usage { country, .. } => country.clone(),
        _ => None,
    };
    Origin { applied_at: Instant::from_micros(row.applied_at_micros), key: row.key.clone(), country }
}

/// Brings the replayed state up to `now`: the boundaries since its last event.
fn up_to(plans: &Plans, subscription: &mut Subscription, now: Instant, lines: &mut Vec<Line>) {
    let mut scratch = Vec::new();
    subscription.advance(&plans.catalog, now, &mut scratch);
    lines.extend(scratch.into_iter().map(|entry| Line::Entry { entry, late: false, origin: None }));
}

/// Where a subscription's ledger may start: its floor when earlier events
/// were archived (the floor mark's row, and its state), else the purchase.
struct Floor {
    meta: Option<MarkMeta>,
    state: Option<Subscription>,
}

impl Floor {
    fn read(store: &mut dyn Store, plans: &Plans, id: &str, marks: &[MarkMeta]) -> Result<Floor, ServiceError> {
        let Some(seq) = store.ledger_floor(id)? else { return Ok(Floor { meta: None, state: None }) };
        let meta = marks.iter().find(|m| m.seq == seq).copied();
        let state = retention::floor_state(store, plans, id, seq)?;
        Ok(Floor { meta, state: Some(state) })
    }

    fn seq(&self) -> i64 {
        self.meta.map_or(0, |m| m.seq)
    }

    fn lines(&self) -> usize {
        self.meta.map_or(0, |m| m.lines as usize)
    }
}

/// A mark to start from, with its state: the last at or after the floor
/// that `fits` and checks; else the floor (`None` with no floor: the
/// purchase).
fn start_at(store: &mut dyn Store, plans: &Plans, id: &str, marks: &[MarkMeta], floor: &Floor, fits: impl Fn(&MarkMeta) -> bool) -> Result<Option<(MarkMeta, Subscription)>, ServiceError> {
    for meta in marks.iter().rev().filter(|m| m.seq > floor.seq() && fits(m)) {
        let Some(bytes) = store.ledger_mark(id, meta.seq)? else { continue };
        match checkpoint::decode_mark(&bytes, meta, plans) {
            Ok((subscription, _)) => return Ok(Some((*meta, subscription))),
            Err(why) => tracing::warn!(subscription = id, seq = meta.seq, %why, "a ledger mark does not check; an earlier one, or the purchase, is used instead"),
        }
    }
    Ok(floor.meta.zip(floor.state.clone()))
}

/// A page of the ledger, by offset or by window (see the module's text).
/// Offsets count from the floor when earlier lines were archived.
pub(crate) fn page(store: &mut dyn Store, plans: &Plans, id: &str, query: &LedgerQuery, now: Instant, future_skew_micros: i64) -> Result<LedgerPage, ServiceError> {
    let marks = store.ledger_marks(id)?;
    let floor = Floor::read(store, plans, id, &marks)?;
    let archived = match floor.meta {
        Some(meta) => Some(Archived { lines: meta.lines as usize, before: Instant::from_micros(meta.at_micros), periods: store.archived_periods(id)? }),
        None => None,
    };
    if query.from.is_some() || query.to.is_some() || query.filter.is_some() {
        let (mut subscription, mut lines) = window(store, plans, id, &marks, &floor, query.from, future_skew_micros)?;
        up_to(plans, &mut subscription, now, &mut lines);
        let wanted = |line: &Line| {
            let at = line.at();
            query.from.is_none_or(|f| at >= f) && query.to.is_none_or(|t| at < t) && query.filter.as_ref().is_none_or(|f| f(line))
        };
        let mut total = 0;
        let mut page = Vec::with_capacity(query.limit.min(1024));
        for line in lines {
            if wanted(&line) {
                if total >= query.offset && page.len() < query.limit {
                    page.push(line);
                }
                total += 1;
            }
        }
        return Ok(LedgerPage { lines: page, total, plan: subscription.plan(), archived });
    }
    let offset = query.offset.saturating_add(floor.lines());
    // The newest mark and the lines after it: the total, and the last page.
    let base = start_at(store, plans, id, &marks, &floor, |_| true)?;
    let base_seq = base.as_ref().map_or(0, |(m, _)| m.seq);
    let base_lines = base.as_ref().map_or(0, |(m, _)| m.lines as usize);
    let rows = store.events_between(id, base_seq, i64::MAX)?;
    if base.is_none() && rows.is_empty() {
        return Err(ServiceError::UnknownSubscription { id: id.to_string() });
    }
    let (mut subscription, mut tail) = replay_lines(plans, base.map(|(_, s)| s), &rows)?;
    up_to(plans, &mut subscription, now, &mut tail);
    let total = base_lines + tail.len() - floor.lines();
    let plan = subscription.plan();
    if offset >= base_lines {
        let lines = tail.into_iter().skip(offset - base_lines).take(query.limit).collect();
        return Ok(LedgerPage { lines, total, plan, archived });
    }
    // The page starts before the newest mark: from the last mark at or
    // before its first line to the first mark past its last.
    let start = start_at(store, plans, id, &marks, &floor, |m| m.seq < base_seq && m.lines as usize <= offset)?;
    let (start_seq, start_lines) = start.as_ref().map_or((0, 0), |(m, _)| (m.seq, m.lines as usize));
    let wanted_end = offset.saturating_add(query.limit);
    let end_seq = marks.iter().find(|m| m.seq > start_seq && m.seq <= base_seq && m.lines as usize >= wanted_end).map_or(base_seq, |m| m.seq);
    let rows = store.events_between(id, start_seq, end_seq)?;
    let (_, mut lines) = replay_lines(plans, start.as_ref().map(|(_, s)| s.clone()), &rows)?;
    if end_seq != base_seq && start_lines + lines.len() < wanted_end {
        // The end mark's row says more lines than its events make: read on
        // to the newest mark (marks are never trusted over the log).
        let rows = store.events_between(id, start_seq, base_seq)?;
        lines = replay_lines(plans, start.map(|(_, s)| s), &rows)?.1;
        lines.extend(tail);
    } else if end_seq == base_seq {
        lines.extend(tail);
    }
    let lines = lines.into_iter().skip(offset - start_lines).take(query.limit).collect();
    Ok(LedgerPage { lines, total, plan, archived })
}

/// The subscription replayed from the last mark before `from` (by more
/// than the future skew), or from its floor or purchase.
fn window(store: &mut dyn Store, plans: &Plans, id: &str, marks: &[MarkMeta], floor: &Floor, from: Option<Instant>, future_skew_micros: i64) -> Result<(Subscription, Vec<Line>), ServiceError> {
    let start = match from {
        Some(from) => start_at(store, plans, id, marks, floor, |m| m.at_micros.saturating_add(future_skew_micros) <= from.micros())?,
        None => floor.meta.zip(floor.state.clone()),
    };
    let rows = store.events_between(id, start.as_ref().map_or(0, |(m, _)| m.seq), i64::MAX)?;
    if start.is_none() && rows.is_empty() {
        return Err(ServiceError::UnknownSubscription { id: id.to_string() });
    }
    replay_lines(plans, start.map(|(_, s)| s), &rows)
}

/// The ledger from at least `from` (it may begin a little earlier, at the
/// mark it starts from; never before the floor) up to now, as pages and the
/// advisor read it.
pub(crate) fn since(store: &mut dyn Store, plans: &Plans, id: &str, from: Option<Instant>, now: Instant, future_skew_micros: i64) -> Result<Ledger, ServiceError> {
    let marks = store.ledger_marks(id)?;
    let floor = Floor::read(store, plans, id, &marks)?;
    let (mut subscription, mut lines) = window(store, plans, id, &marks, &floor, from, future_skew_micros)?;
    up_to(plans, &mut subscription, now, &mut lines);
    let mut ledger = Ledger { entries: Vec::with_capacity(lines.len()), late: Vec::new(), plan: subscription.plan(), notes: Vec::new(), origins: Vec::new(), purchased_at: subscription.purchased_at() };
    for line in lines {
        match line {
            Line::Entry { entry, late, origin } => {
                ledger.entries.push(entry);
                ledger.late.push(late);
                ledger.origins.push(origin);
            }
            Line::Note { at, note } => ledger.notes.push((at, note)),
        }
    }
    Ok(ledger)
}
