//! Checkpoints: the state of every subscription after one event of the log,
//! so that start-up replays only the events after it.
//!
//! A checkpoint is derived data. The checkpointer thread builds the next
//! one from the last (or from nothing) and the log's tail, on a store
//! connection of its own, the way start-up rebuilds state: the same replay
//! functions, in commit order. It is written in parts of at most
//! [`PART_BYTES`] through the store's one writer, and counts only once the
//! mark naming its parts and their SHA-256 is committed (`finish_checkpoint`),
//! so a crash while one is written leaves the previous one. At start-up, a
//! checkpoint whose digest, format or content does not check is skipped
//! with a warning and the one before it (or the whole log) is used: it is
//! never trusted over the log.
//!
//! Layout (format [`FORMAT`], little endian): `RLCP`, the format, the last
//! event's seq, the maximum age its keys were kept for, the plans as
//! `(index, id, version)`, then each subscription: its id, how far it was
//! brought, its ledger lines and events since its last ledger mark, its
//! RADIUS counters, its idempotency keys as `(hash, instant, fingerprint)`
//! (`keys.rs`), and its engine state in `rollover_core::engine::codec`'s
//! layout. Plans are named by id and version, so a catalog loaded in another
//! order reads the same.
//!
//! With the keys in it, start-up reads nothing of the log before the
//! checkpoint; only when the service now keeps keys longer than the
//! checkpoint did are the rows of the longer window read again for theirs.

use std::collections::HashMap;

use rollover_core::engine::codec;
use rollover_core::{Instant, PlanIx, Subscription};
use rollover_store::{CheckpointMeta, EventRow, LedgerMark, Store};
use sha2::{Digest, Sha256};

use crate::ServiceError;
use crate::keys::{Key, Keys, Stamp};
use crate::plans::Plans;
use crate::replay;

/// The layout's version; a checkpoint of another is skipped, not misread.
pub const FORMAT: u32 = 2;

/// A subscription gets a ledger mark after this many of its events since
/// its last one: a ledger read replays at most this many events before the
/// lines it returns (and as many after the newest mark, for the total).
pub const MARK_EVERY: u32 = 256;

/// Largest part of a checkpoint, in bytes.
pub const PART_BYTES: usize = 4 << 20;

const MAGIC: &[u8; 4] = b"RLCP";

/// The last report of one RADIUS session's counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CounterState {
    pub(crate) total: u64,
    pub(crate) stopped: bool,
    /// The report's own instant: sessions silent for longer than the
    /// maximum age are forgotten.
    pub(crate) at_micros: i64,
}

/// Counters of a subscription's sessions. Boxed: most subscriptions have
/// none, and a box costs 8 bytes where an empty map costs 48.
#[allow(clippy::box_collection)]
pub(crate) type Counters = Option<Box<HashMap<String, CounterState>>>;

pub(crate) fn counter(counters: &Counters, session: &str) -> CounterState {
    counters.as_ref().and_then(|m| m.get(session)).copied().unwrap_or_default()
}

pub(crate) fn set_counter(counters: &mut Counters, session: &str, state: CounterState, now: Instant, max_age_micros: i64) {
    let map = counters.get_or_insert_with(Default::default);
    map.insert(session.to_string(), state);
    if map.len() > 64 {
        let oldest = now.micros() - max_age_micros;
        map.retain(|_, c| c.at_micros >= oldest);
    }
}

/// What a stored row does to a subscription's counters, as start-up and
/// the checkpointer both replay it.
pub(crate) fn replay_counter(counters: &mut Counters, row: &EventRow, max_age_micros: i64) {
    if let Some(key) = &row.key
        && let Key::Counter { session, total, stop } = Key::decode(key)
    {
        let last = counter(counters, session);
        let state = CounterState { total: total.max(last.total), stopped: stop || last.stopped, at_micros: row.at_micros };
        set_counter(counters, session, state, Instant::from_micros(row.applied_at_micros), max_age_micros);
    }
}

/// One subscription as a checkpoint holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rebuilt {
    pub(crate) id: String,
    pub(crate) subscription: Subscription,
    pub(crate) advanced_to: Instant,
    pub(crate) counters: Counters,
    /// Ledger lines (entries and network notes) its events made so far.
    pub(crate) lines: u64,
    /// Its events since its last ledger mark.
    pub(crate) since_mark: u32,
    /// Its idempotency keys a retry could still hit.
    pub(crate) keys: Keys,
}

/// Every subscription after some event, by id, in order of first purchase.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) upto_seq: i64,
    /// The maximum age its keys were kept for: a service that accepts
    /// older records needs the keys of the rows before it read again.
    pub(crate) max_age_micros: i64,
    /// The newest `applied_at` replayed: keys stamped more than the
    /// maximum age before it are not written (no retry can hit them).
    pub(crate) applied_upto_micros: i64,
    pub(crate) subscriptions: Vec<Rebuilt>,
    index: HashMap<String, usize>,
    /// Ledger marks made while replaying (only when building: start-up
    /// never makes them).
    pub(crate) marks: Vec<LedgerMark>,
}

impl State {
    /// Applies one stored row as start-up would, and as a ledger read
    /// would: brought to the moment it was applied, then applied. Every
    /// [`MARK_EVERY`] events of a subscription it leaves a ledger mark.
    pub(crate) fn replay(&mut self, plans: &Plans, row: &EventRow, max_age_micros: i64, scratch: &mut Vec<rollover_core::ledger::Entry>) -> Result<(), ServiceError> {
        scratch.clear();
        let reached = Instant::from_micros(row.applied_at_micros.max(row.at_micros));
        let slot = match self.index.get(&row.subscription) {
            None => {
                let subscription = replay::purchase(plans, row, scratch)?;
                self.index.insert(row.subscription.clone(), self.subscriptions.len());
                self.subscriptions.push(Rebuilt { id: row.subscription.clone(), subscription, advanced_to: reached, counters: None, lines: 0, since_mark: 0, keys: Keys::default() });
                self.subscriptions.len() - 1
            }
            Some(&slot) => {
                let one = &mut self.subscriptions[slot];
                one.subscription.advance(&plans.catalog, Instant::from_micros(row.applied_at_micros), scratch);
                replay::apply_row(plans, &mut one.subscription, row, scratch)?;
                one.advanced_to = one.advanced_to.max(reached);
                replay_counter(&mut one.counters, row, max_age_micros);
                one.keys.replay(row, max_age_micros);
                slot
            }
        };
        let one = &mut self.subscriptions[slot];
        one.lines += scratch.len() as u64 + matches!(row.body, rollover_store::EventBody::Network { .. }) as u64;
        one.since_mark += 1;
        if one.since_mark >= MARK_EVERY {
            one.since_mark = 0;
            self.marks.push(LedgerMark {
                subscription: one.id.clone(),
                seq: row.seq,
                lines: one.lines as i64,
                at_micros: one.advanced_to.micros(),
                state: encode_mark(&one.subscription, one.advanced_to, row.seq, one.lines as i64, plans),
            });
        }
        self.upto_seq = self.upto_seq.max(row.seq);
        self.applied_upto_micros = self.applied_upto_micros.max(row.applied_at_micros);
        Ok(())
    }
}

/// The layout of a ledger mark's state; another is not read (the read
/// starts further back instead).
const MARK_FORMAT: u8 = 1;

fn put_plan(out: &mut Vec<u8>, plans: &Plans, ix: PlanIx) {
    out.extend_from_slice(&ix.0.to_le_bytes());
    put_str(out, &plans.catalog.get(ix).id);
    out.extend_from_slice(&plans.version_of(ix).to_le_bytes());
}

/// A ledger mark's state: the format, the event it follows and the lines
/// made up to it (as its row says), how far it was brought, its plan (and a
/// pending plan) by id and version, the engine state, and the first 8 bytes
/// of the SHA-256 of all that.
pub(crate) fn encode_mark(subscription: &Subscription, advanced_to: Instant, seq: i64, lines: i64, plans: &Plans) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(MARK_FORMAT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&lines.to_le_bytes());
    out.extend_from_slice(&advanced_to.micros().to_le_bytes());
    put_plan(&mut out, plans, subscription.plan());
    match subscription.pending_plan() {
        Some(ix) => {
            out.push(1);
            put_plan(&mut out, plans, ix);
        }
        None => out.push(0),
    }
    codec::encode(subscription, &mut out);
    let check = Sha256::digest(&out);
    out.extend_from_slice(&check[..8]);
    out
}

/// Reads a ledger mark's state (and how far it was brought), checked
/// against its row's seq, line count and instant; an error says why it does
/// not check.
pub(crate) fn decode_mark(bytes: &[u8], meta: &rollover_store::MarkMeta, plans: &Plans) -> Result<(Subscription, Instant), String> {
    let (body, check) = bytes.split_at_checked(bytes.len().saturating_sub(8)).ok_or_else(|| "it is empty".to_string())?;
    if check.len() != 8 || Sha256::digest(body)[..8] != *check {
        return Err("its checksum does not match".into());
    }
    let mut r = Reader(body);
    let format = r.u8()?;
    if format != MARK_FORMAT {
        return Err(format!("format {format}; this build reads {MARK_FORMAT}"));
    }
    let (seq, lines) = (r.i64()?, r.i64()?);
    if (seq, lines) != (meta.seq, meta.lines) {
        return Err(format!("it says event {seq} and {lines} lines, its row says event {} and {} lines", meta.seq, meta.lines));
    }
    let advanced_to = Instant::from_micros(r.i64()?);
    if advanced_to.micros() != meta.at_micros {
        return Err(format!("it was brought to {}, its row says {}", advanced_to.micros(), meta.at_micros));
    }
    let plan = |r: &mut Reader| -> Result<(u32, Option<PlanIx>), String> { Ok((r.u32()?, plans.get(&r.text()?, r.u32()?))) };
    let (written, now) = plan(&mut r)?;
    let pending = match r.u8()? {
        0 => None,
        1 => Some(plan(&mut r)?),
        _ => return Err("the pending plan's marker".into()),
    };
    let plan_of = |ix: u32| if ix == written { now } else { pending.and_then(|(w, p)| if w == ix { p } else { None }) };
    let subscription = codec::decode_one(r.0, &plan_of).map_err(|e| e.to_string())?;
    Ok((subscription, advanced_to))
}

impl State {
    /// Adds a subscription rebuilt elsewhere (a floor).
    fn insert(&mut self, one: Rebuilt) {
        self.index.insert(one.id.clone(), self.subscriptions.len());
        self.subscriptions.push(one);
    }
}

/// Every subscription whose first events retention archived, at its floor:
/// where a rebuild without a checkpoint starts it. A floor whose mark does
/// not check cannot be rebuilt from the log (its events are in the export
/// files): the error names it.
pub(crate) fn floors(store: &mut dyn Store, plans: &Plans) -> Result<Vec<Rebuilt>, ServiceError> {
    store.ledger_floors()?.into_iter().map(|mark| floor(mark, plans)).collect()
}

/// A subscription whose first events were archived, as its floor's mark
/// holds it.
pub(crate) fn floor(mark: rollover_store::LedgerMark, plans: &Plans) -> Result<Rebuilt, ServiceError> {
    let meta = rollover_store::MarkMeta { seq: mark.seq, lines: mark.lines, at_micros: mark.at_micros };
    let (subscription, advanced_to) = decode_mark(&mark.state, &meta, plans).map_err(|why| ServiceError::Corrupt {
        message: format!("subscription {}: the ledger mark of its floor (event {}) does not check: {why}; its earlier events are in the export files", mark.subscription, mark.seq),
    })?;
    Ok(Rebuilt { id: mark.subscription, subscription, advanced_to, counters: None, lines: mark.lines as u64, since_mark: 0, keys: Keys::default() })
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The checkpoint's bytes (all parts, in order).
pub(crate) fn encode(state: &State, plans: &Plans) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + state.subscriptions.len() * 160);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&state.upto_seq.to_le_bytes());
    out.extend_from_slice(&state.max_age_micros.to_le_bytes());
    let count = plans.catalog.plans().len();
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for ix in 0..count {
        let plan = plans.catalog.get(PlanIx(ix as u32));
        out.extend_from_slice(&(ix as u32).to_le_bytes());
        put_str(&mut out, &plan.id);
        out.extend_from_slice(&plans.version_of(PlanIx(ix as u32)).to_le_bytes());
    }
    out.extend_from_slice(&(state.subscriptions.len() as u64).to_le_bytes());
    for one in &state.subscriptions {
        put_str(&mut out, &one.id);
        out.extend_from_slice(&one.advanced_to.micros().to_le_bytes());
        out.extend_from_slice(&one.lines.to_le_bytes());
        out.extend_from_slice(&one.since_mark.to_le_bytes());
        let mut counters: Vec<(&String, &CounterState)> = one.counters.iter().flat_map(|m| m.iter()).collect();
        counters.sort_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(&(counters.len() as u32).to_le_bytes());
        for (session, c) in counters {
            put_str(&mut out, session);
            out.extend_from_slice(&c.total.to_le_bytes());
            out.push(c.stopped as u8);
            out.extend_from_slice(&c.at_micros.to_le_bytes());
        }
        let oldest = state.applied_upto_micros.saturating_sub(state.max_age_micros);
        let mut keys: Vec<(u64, Stamp)> = one.keys.iter().filter(|(_, stamp)| stamp.at_micros >= oldest).collect();
        keys.sort_by_key(|(hash, _)| *hash);
        out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        for (hash, stamp) in keys {
            out.extend_from_slice(&hash.to_le_bytes());
            out.extend_from_slice(&stamp.at_micros.to_le_bytes());
            out.extend_from_slice(&stamp.fingerprint.to_le_bytes());
        }
        codec::encode(&one.subscription, &mut out);
    }
    out
}

/// Hex SHA-256.
pub(crate) fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("it ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn text(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

/// Reads a checkpoint's bytes against the service's catalog.
pub(crate) fn decode(bytes: &[u8], plans: &Plans) -> Result<State, String> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err("not a checkpoint".into());
    }
    let format = r.u32()?;
    if format != FORMAT {
        return Err(format!("format {format}; this build reads {FORMAT}"));
    }
    let upto_seq = r.i64()?;
    let max_age_micros = r.i64()?;
    let mut remap = HashMap::new();
    for _ in 0..r.u32()? {
        let (ix, id, version) = (r.u32()?, r.text()?, r.u32()?);
        if let Some(now) = plans.get(&id, version) {
            remap.insert(ix, now);
        }
    }
    let count = r.u64()?;
    let mut state = State { upto_seq, max_age_micros, ..State::default() };
    for _ in 0..count {
        let id = r.text()?;
        let advanced_to = Instant::from_micros(r.i64()?);
        let (lines, since_mark) = (r.u64()?, r.u32()?);
        let sessions = r.u32()?;
        let mut counters: Counters = None;
        for _ in 0..sessions {
            let session = r.text()?;
            let (total, stopped, at_micros) = (r.u64()?, r.u8()?, r.i64()?);
            if stopped > 1 {
                return Err(format!("subscription {id}: a counter's stopped flag"));
            }
            counters.get_or_insert_with(Default::default).insert(session, CounterState { total, stopped: stopped == 1, at_micros });
        }
        let mut keys = Keys::default();
        for _ in 0..r.u32()? {
            let (hash, at_micros, fingerprint) = (r.u64()?, r.i64()?, r.u64()?);
            keys.restore(hash, Stamp { at_micros, fingerprint });
        }
        let (subscription, rest) = codec::decode(r.0, &|ix| remap.get(&ix).copied()).map_err(|e| format!("subscription {id}: {e}"))?;
        r.0 = rest;
        if state.index.insert(id.clone(), state.subscriptions.len()).is_some() {
            return Err(format!("subscription {id} is in it twice"));
        }
        state.subscriptions.push(Rebuilt { id, subscription, advanced_to, counters, lines, since_mark, keys });
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the last subscription", r.0.len()));
    }
    Ok(state)
}

/// The newest checkpoint that checks, read whole; `None` when there is none
/// (or none checks: each that does not is logged and skipped).
pub(crate) fn load_latest(store: &mut dyn Store, plans: &Plans) -> Result<Option<State>, ServiceError> {
    for meta in store.checkpoints()? {
        match read(store, &meta, plans) {
            Ok(state) => return Ok(Some(state)),
            Err(why) => tracing::warn!(upto_seq = meta.upto_seq, %why, "a checkpoint does not check; the one before it, or the log, is used instead"),
        }
    }
    Ok(None)
}

fn read(store: &mut dyn Store, meta: &CheckpointMeta, plans: &Plans) -> Result<State, String> {
    if meta.format != FORMAT {
        return Err(format!("format {}; this build reads {FORMAT}", meta.format));
    }
    let started = std::time::Instant::now();
    let mut bytes = Vec::new();
    for part in 0..meta.parts {
        let data = store.checkpoint_part(meta.upto_seq, part).map_err(|e| e.to_string())?.ok_or_else(|| format!("part {part} is missing"))?;
        bytes.extend_from_slice(&data);
    }
    let fetched = started.elapsed().as_secs_f64();
    let found = digest(&bytes);
    if found != meta.digest {
        return Err(format!("its SHA-256 is {found}, the mark says {}", meta.digest));
    }
    let checked = started.elapsed().as_secs_f64() - fetched;
    let state = decode(&bytes, plans)?;
    let decoded = started.elapsed().as_secs_f64() - fetched - checked;
    tracing::info!(upto_seq = meta.upto_seq, bytes = bytes.len(), parts = meta.parts, fetch_seconds = fetched, digest_seconds = checked, decode_seconds = decoded, "checkpoint read");
    if state.upto_seq != meta.upto_seq {
        return Err(format!("it says it is after event {}, the mark says {}", state.upto_seq, meta.upto_seq));
    }
    Ok(state)
}

/// The events counted since the last checkpoint (`after`), up to `upto`:
/// the checkpointer asks every second, and counts only what is new.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    after: i64,
    upto: i64,
    events: i64,
}

/// Builds the next checkpoint: the last one that checks (or nothing) and the
/// events after it, read on `store`. `None` when fewer than `min_events`
/// events came after the last one.
pub(crate) fn build(store: &mut dyn Store, shared: &crate::plans::SharedPlans, max_age_micros: i64, min_events: i64, counted: &mut Counted) -> Result<Option<(State, Vec<u8>)>, ServiceError> {
    let newest = store.max_seq()?;
    let last = store.checkpoints()?.first().map_or(0, |m| m.upto_seq);
    // Seqs come in blocks on PostgreSQL, so their difference only bounds
    // the events; past it they are counted.
    let min_events = min_events.max(1);
    if newest - last < min_events {
        return Ok(None);
    }
    if counted.after != last {
        *counted = Counted { after: last, upto: last, events: 0 };
    }
    if newest > counted.upto {
        counted.events += store.count_events(counted.upto, newest)?;
        counted.upto = newest;
    }
    if counted.events < min_events {
        return Ok(None);
    }
    // After the log's end is read: every plan an event up to it names was
    // published before that event was made.
    let plans = shared.snapshot();
    let mut state = match load_latest(store, &plans)? {
        // Keys it dropped after a shorter age are not back.
        Some(state) => State { max_age_micros: state.max_age_micros.min(max_age_micros), ..state },
        None => {
            let mut state = State { max_age_micros, ..State::default() };
            for one in floors(store, &plans)? {
                state.insert(one);
            }
            state
        }
    };
    let mut scratch = Vec::new();
    let mut failed = None;
    store.load_events_after(state.upto_seq, &mut |row| {
        if failed.is_none()
            && row.seq <= newest
            && let Err(e) = state.replay(&plans, &row, max_age_micros, &mut scratch)
        {
            failed = Some(e);
        }
    })?;
    if let Some(error) = failed {
        return Err(error);
    }
    state.upto_seq = state.upto_seq.max(newest);
    let bytes = encode(&state, &plans);
    Ok(Some((state, bytes)))
}

/// The first seq whose event was applied at or after `since` (microseconds),
/// within `upto`: a binary search over the log, which is in commit order and
/// so in `applied_at` order up to the commit latency (the caller leaves a
/// margin for that).
pub(crate) fn first_applied_since(store: &mut dyn Store, since: i64, upto: i64) -> Result<i64, ServiceError> {
    let (mut low, mut high) = (1i64, upto + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        match store.event_at_or_after(middle)? {
            Some((seq, applied_at)) if seq <= upto && applied_at < since => low = seq + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}
