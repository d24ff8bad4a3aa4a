//! A shard worker: one thread that alone owns its subscriptions. It applies
//! commands in arrival order, keeps each subscription's recent idempotency
//! keys, runs boundaries from an index of next-boundary instants (never by
//! scanning), and hands rows to the writer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rollover_core::engine::{Event, Outcome, Rating};
use std::sync::atomic::Ordering::Relaxed;
use rollover_core::ledger::Entry;
use rollover_core::{Instant, Subscription};
use rollover_store::{Batch, EventBody, EventRow, SubscriptionRow};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::notify::{self, NotifyConfig, Snapshot};
use rollover_store::NotificationRow;
use crate::metrics::{Metrics, RejectReason};
use crate::plans::{PlanVersion, Plans, SharedPlans};
use crate::keys::{Key, Keys, Stamp, fingerprint, key_hash, stamp_of};
use crate::replay;
use crate::checkpoint::{self, CounterState, Counters, Rebuilt};
use crate::writer::Write;
use crate::{
    Balance, BalanceBucket, Config, SubscriptionFilter, SubscriptionSummary, EventOutcome, FinalAction, MAX_RECORD_BYTES, OpenCounter, ServiceError, SessionAnswer, SessionOp, StatusChange, UsageRecord, UsageRejection,
    UsageResult,
};
use rollover_core::{Country, Status};

/// Answered once the rows are committed, or with why they never will be
/// (cluster mode: the shard moved on).
pub(crate) type Committed = oneshot::Receiver<Result<(), ServiceError>>;
pub(crate) type UsageReply = oneshot::Sender<Result<(Vec<(usize, UsageResult)>, Option<Committed>), ServiceError>>;

pub(crate) enum Command {
    Create {
        row: SubscriptionRow,
        plan: PlanVersion,
        at: Option<Instant>,
        reply: oneshot::Sender<Result<Committed, ServiceError>>,
    },
    Event {
        id: String,
        event: Event,
        body: EventBody,
        at: Option<Instant>,
        /// Stored with the event: what makes it idempotent (an add-on's purchase id).
        key: Option<String>,
        reply: oneshot::Sender<Result<(EventOutcome, Option<Committed>), ServiceError>>,
    },
    Usage {
        records: Vec<(usize, UsageRecord)>,
        reply: UsageReply,
    },
    Balance {
        id: String,
        reply: oneshot::Sender<Result<Balance, ServiceError>>,
    },
    Project {
        id: String,
        daily_bytes: u64,
        reply: oneshot::Sender<Result<Option<rollover_core::Projection>, ServiceError>>,
    },
    Session {
        subscription: String,
        session: String,
        op: SessionOp,
        at: Option<Instant>,
        country: Option<Country>,
        reply: oneshot::Sender<Result<(SessionAnswer, Option<Committed>), ServiceError>>,
    },
    /// Write a network note into the subscription's log.
    Note {
        id: String,
        note: String,
        /// A webhook to send with it: its type, what tells it apart from
        /// others of its type (its key), and its data.
        webhook: Option<(&'static str, String, serde_json::Value)>,
        reply: oneshot::Sender<Result<Committed, ServiceError>>,
    },
    /// Run every boundary due by the clock's now.
    Tick { reply: Option<oneshot::Sender<()>> },
    /// Start-up or a shard taken over: one stored row, in commit order.
    Replay(EventRow),
    /// Cluster mode: forget every subscription of these shards (lost, given
    /// up, or about to be loaded again).
    Unload { shards: Vec<u32>, reply: Option<oneshot::Sender<()>> },
    /// Start-up: a subscription as a checkpoint holds it.
    Restore(Box<Rebuilt>),
    /// Start-up: a row the checkpoint already holds, for its idempotency key.
    ReplayKey(EventRow),
    /// Subscriptions by status, for `/metrics`.
    Statuses { reply: oneshot::Sender<Vec<(&'static str, u64)>> },
    /// The worker's subscriptions that pass the filter, sorted by id.
    List { filter: SubscriptionFilter, reply: oneshot::Sender<Vec<SubscriptionSummary>> },
    /// Counter sessions not stopped, heard of within the maximum age.
    OpenCounters { reply: oneshot::Sender<Vec<OpenCounter>> },
    /// Tests: holds the hash of `key` for a subscription, with `stamp`, and
    /// no record behind it, as another key of the same hash would.
    #[cfg(test)]
    HoldHash { subscription: String, key: String, stamp: Stamp, reply: oneshot::Sender<()> },
}

struct Live {
    id: String,
    subscription: Subscription,
    /// Idempotency keys of accepted usage records.
    keys: Keys,
    /// The instant this subscription is filed under in the timer index.
    timer: Instant,
    /// How far the subscription has been brought (its own clock).
    advanced_to: Instant,
    /// Open online charging sessions. Boxed: most subscriptions have none,
    /// and a box costs 8 bytes where an empty map costs 48.
    #[allow(clippy::box_collection)]
    sessions: Option<Box<HashMap<String, Reservation>>>,
    /// Cumulative counters of RADIUS sessions, by session name.
    counters: Counters,
}

impl Live {
    fn counter(&self, session: &str) -> CounterState {
        checkpoint::counter(&self.counters, session)
    }

    fn set_counter(&mut self, session: &str, state: CounterState, now: Instant, max_age_micros: i64) {
        checkpoint::set_counter(&mut self.counters, session, state, now, max_age_micros);
    }

}

struct Reservation {
    reserved_bytes: u64,
    expires_at: Instant,
    /// The last request and its answer: a repeated request number gets the
    /// same answer, not a second rating.
    last: Option<(u32, SessionAnswer)>,
}

pub(crate) struct Worker {
    number: usize,
    plans: Arc<SharedPlans>,
    /// This worker's copy of the newest catalog, refreshed before each
    /// command (see [`SharedPlans::refresh`]).
    catalog: Arc<Plans>,
    catalog_version: u64,
    clock: Arc<Clock>,
    writer: SyncSender<Write>,
    config: Config,
    metrics: Arc<Metrics>,
    /// Set when webhooks are configured.
    notify: Option<Arc<NotifyConfig>>,
    /// Cluster mode: the shards this node serves, and their epochs.
    ownership: Option<Arc<crate::ownership::Ownership>>,
    /// Notifications found by the current command, committed with its rows.
    outbox: Vec<NotificationRow>,
    subscriptions: Vec<Live>,
    /// Slots by subscription id (foldhash, seeded per process: faster than
    /// the standard SipHash on the hot path, and ids are the operator's).
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    timers: BTreeSet<(Instant, usize)>,
    /// Ledger entries of the current command; the store keeps events, and the
    /// ledger is recomputed from them, so these are scratch.
    scratch: Vec<Entry>,
}

impl Worker {
    // Each is a part of the service the worker is wired to at start.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        number: usize,
        plans: Arc<SharedPlans>,
        clock: Arc<Clock>,
        writer: SyncSender<Write>,
        config: Config,
        metrics: Arc<Metrics>,
        notify: Option<Arc<NotifyConfig>>,
        ownership: Option<Arc<crate::ownership::Ownership>>,
    ) -> Worker {
        Worker {
            ownership,
            number,
            catalog: plans.snapshot(),
            catalog_version: u64::MAX,
            plans,
            clock,
            writer,
            config,
            metrics,
            notify,
            outbox: Vec::new(),
            subscriptions: Vec::new(),
            index: HashMap::default(),
            timers: BTreeSet::new(),
            scratch: Vec::with_capacity(256),
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        loop {
            let wait = match (&*self.clock, self.timers.first()) {
                (Clock::Wall, Some((next, _))) => {
                    let micros = (next.micros() - self.clock.now().micros()).clamp(0, 1_000_000);
                    Duration::from_micros(micros as u64)
                }
                _ => Duration::from_secs(1),
            };
            match rx.recv_timeout(wait) {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if !self.clock.is_simulated() {
                self.run_timers(self.clock.now());
            }
        }
    }

    fn handle(&mut self, command: Command) {
        self.plans.refresh(&mut self.catalog, &mut self.catalog_version);
        match command {
            Command::Create { row, plan, at, reply } => {
                let _ = reply.send(self.served(&row.id).and_then(|()| self.create(row, plan, at)));
            }
            Command::Event { id, event, body, at, key, reply } => {
                let _ = reply.send(self.served(&id).and_then(|()| self.event(&id, event, body, at, key)));
            }
            Command::Usage { records, reply } => {
                let refused = records.iter().find_map(|(_, record)| self.served(&record.subscription).err());
                let _ = reply.send(match refused {
                    Some(error) => Err(error),
                    None => Ok(self.usage(records)),
                });
            }
            Command::Balance { id, reply } => {
                let _ = reply.send(self.served(&id).and_then(|()| self.balance(&id)));
            }
            Command::Project { id, daily_bytes, reply } => {
                let _ = reply.send(self.served(&id).and_then(|()| self.project(&id, daily_bytes)));
            }
            Command::Session { subscription, session, op, at, country, reply } => {
                let _ = reply.send(self.served(&subscription).and_then(|()| self.session(&subscription, &session, op, at, country)));
            }
            Command::Note { id, note, webhook, reply } => {
                let _ = reply.send(self.served(&id).and_then(|()| self.note(&id, note, webhook)));
            }
            Command::Unload { shards, reply } => {
                self.unload(&shards);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Tick { reply } => {
                self.run_timers(self.clock.now());
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            #[cfg(test)]
            Command::HoldHash { subscription, key, stamp, reply } => {
                if let Some(&slot) = self.index.get(&subscription) {
                    let now = self.clock.now();
                    self.subscriptions[slot].keys.insert(key_hash(&key), stamp, now, self.config.max_age_micros);
                }
                let _ = reply.send(());
            }
            Command::OpenCounters { reply } => {
                let oldest = self.clock.now().micros() - self.config.max_age_micros;
                let mut open = Vec::new();
                for live in &self.subscriptions {
                    for (session, state) in live.counters.iter().flat_map(|m| m.iter()) {
                        if !state.stopped && state.at_micros >= oldest {
                            open.push(OpenCounter { subscription: live.id.clone(), session: session.clone(), total: state.total });
                        }
                    }
                }
                let _ = reply.send(open);
            }
            Command::Statuses { reply } => {
                let now = self.clock.now();
                let plans = &*self.catalog;
                let mut counts: Vec<(&'static str, u64)> = Vec::new();
                let (mut keys, mut key_bytes) = (0u64, 0u64);
                for live in &self.subscriptions {
                    keys += live.keys.len() as u64;
                    key_bytes += live.keys.heap_bytes() as u64;
                    let status = live.subscription.status(&plans.catalog, now.max(live.advanced_to)).name();
                    match counts.iter_mut().find(|(s, _)| *s == status) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((status, 1)),
                    }
                }
                self.metrics.set_keys(self.number, keys, key_bytes);
                let _ = reply.send(counts);
            }
            Command::List { filter, reply } => {
                let now = self.clock.now();
                let plans = &*self.catalog;
                let mut found: Vec<SubscriptionSummary> = self
                    .subscriptions
                    .iter()
                    .filter_map(|live| {
                        let s = &live.subscription;
                        let status = s.status(&plans.catalog, now.max(live.advanced_to));
                        let plan = &plans.catalog.get(s.plan()).id;
                        let wanted = filter.status.is_none_or(|w| w == status) && filter.plan.as_ref().is_none_or(|p| p == plan);
                        wanted.then(|| SubscriptionSummary { id: live.id.clone(), plan: PlanVersion { id: plan.clone(), version: plans.version_of(s.plan()), ix: s.plan() }, status })
                    })
                    .collect();
                found.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(found);
            }
            Command::Replay(row) => {
                if let Err(e) = self.replay(&row) {
                    eprintln!("rollover: worker {}: cannot rebuild from the store: {e}", self.number);
                    std::process::abort();
                }
            }
            Command::Restore(one) => {
                let Rebuilt { id, subscription, advanced_to, counters, keys, .. } = *one;
                let slot = self.subscriptions.len();
                self.index.insert(id.clone(), slot);
                self.subscriptions.push(Live { id, subscription, keys, timer: Instant::NEVER, advanced_to, sessions: None, counters });
                self.refile(slot);
            }
            Command::ReplayKey(row) => {
                if let Some(&slot) = self.index.get(&row.subscription) {
                    self.subscriptions[slot].keys.replay(&row, self.config.max_age_micros);
                }
            }
        }
    }

    /// `Ok` unless this is a node of a cluster that does not serve the
    /// subscription's shard now: checked on every command, so that nothing
    /// is answered from the memory of a shard being taken over or lost.
    fn served(&self, subscription: &str) -> Result<(), ServiceError> {
        match &self.ownership {
            Some(ownership) => ownership.check(subscription),
            None => Ok(()),
        }
    }

    /// Forgets the subscriptions of `shards`, keeping the others (their
    /// slots, index and timers built again).
    fn unload(&mut self, shards: &[u32]) {
        let kept = std::mem::take(&mut self.subscriptions);
        self.index.clear();
        self.timers.clear();
        for mut live in kept {
            if shards.contains(&crate::shard_of(&live.id)) {
                continue;
            }
            live.timer = Instant::NEVER;
            let slot = self.subscriptions.len();
            self.index.insert(live.id.clone(), slot);
            self.subscriptions.push(live);
            self.refile(slot);
        }
    }

    fn replay(&mut self, row: &EventRow) -> Result<(), ServiceError> {
        let plans = &*self.catalog;
        self.scratch.clear();
        match self.index.get(&row.subscription) {
            None => {
                let subscription = replay::purchase(plans, row, &mut self.scratch)?;
                let advanced_to = Instant::from_micros(row.applied_at_micros.max(row.at_micros));
                let slot = self.subscriptions.len();
                self.subscriptions.push(Live { id: row.subscription.clone(), subscription, keys: Keys::default(), timer: Instant::NEVER, advanced_to, sessions: None, counters: None });
                self.index.insert(row.subscription.clone(), slot);
                self.refile(slot);
            }
            Some(&slot) => {
                let live = &mut self.subscriptions[slot];
                replay::apply_row(plans, &mut live.subscription, row, &mut self.scratch)?;
                live.advanced_to = live.advanced_to.max(Instant::from_micros(row.applied_at_micros.max(row.at_micros)));
                checkpoint::replay_counter(&mut live.counters, row, self.config.max_age_micros);
                live.keys.replay(row, self.config.max_age_micros);
                self.refile(slot);
            }
        }
        Ok(())
    }

    /// Files the subscription under its next boundary in the timer index.
    fn refile(&mut self, slot: usize) {
        let plans = &*self.catalog;
        let live = &mut self.subscriptions[slot];
        let mut next = live.subscription.next_boundary(&plans.catalog);
        if let Some(notify) = &self.notify {
            next = next.min(notify::next_notice(&live.subscription, &plans.catalog, live.advanced_to, notify.notice_micros));
        }
        if next != live.timer {
            self.timers.remove(&(live.timer, slot));
            if !next.is_never() {
                self.timers.insert((next, slot));
            }
            live.timer = next;
        }
    }

    fn run_timers(&mut self, now: Instant) {
        self.plans.refresh(&mut self.catalog, &mut self.catalog_version);
        while let Some(&(at, slot)) = self.timers.first() {
            if at > now {
                break;
            }
            if self.served(&self.subscriptions[slot].id).is_err() {
                // A shard being lost or given up: its next owner runs this.
                self.timers.remove(&(at, slot));
                self.subscriptions[slot].timer = Instant::NEVER;
                continue;
            }
            self.bring_up(slot, now);
        }
        self.flush_outbox();
    }

    /// Commits notifications found outside any command (boundaries, reads);
    /// nobody waits for these.
    fn flush_outbox(&mut self) {
        if !self.outbox.is_empty() {
            let notifications = std::mem::take(&mut self.outbox);
            drop(self.submit(Batch { notifications, ..Batch::default() }));
        }
    }

    fn before(&self, slot: usize, at: Instant) -> Option<Snapshot> {
        self.notify.as_ref()?;
        let plans = &*self.catalog;
        let live = &self.subscriptions[slot];
        Some(notify::snapshot(&live.subscription, &plans.catalog, at, live.advanced_to))
    }

    /// Compares with `before` and queues what changed; the ledger of the
    /// change is in `self.scratch`.
    fn after(&mut self, slot: usize, before: Option<Snapshot>, now: Instant, key_instant: Instant) {
        let (Some(before), Some(notify)) = (before, &self.notify) else { return };
        let plans = &*self.catalog;
        let live = &self.subscriptions[slot];
        let found = notify::changes(&live.id, before, &live.subscription, &plans.catalog, now, key_instant, &self.scratch, notify.notice_micros);
        if !found.is_empty() {
            self.outbox.extend(notify::rows(notify, &live.id, found, now));
        }
    }

    /// Brings one subscription up to `now` and refiles it. What boundaries
    /// change is named by the first boundary crossed.
    fn bring_up(&mut self, slot: usize, now: Instant) {
        let before = self.before(slot, self.subscriptions[slot].advanced_to);
        let status_before = self.watched(slot, self.subscriptions[slot].advanced_to);
        let key_instant;
        {
            let plans = &*self.catalog;
            let live = &mut self.subscriptions[slot];
            key_instant = live.subscription.next_boundary(&plans.catalog).min(live.timer);
            self.scratch.clear();
            live.subscription.advance(&plans.catalog, now, &mut self.scratch);
            live.advanced_to = live.advanced_to.max(now);
        }
        self.after(slot, before, now, key_instant);
        self.report_status(slot, status_before, now);
        self.refile(slot);
    }

    /// The subscription's status at `at`, when something watches statuses.
    fn watched(&self, slot: usize, at: Instant) -> Option<Status> {
        self.config.status_changes.as_ref()?;
        let plans = &*self.catalog;
        Some(self.subscriptions[slot].subscription.status(&plans.catalog, at))
    }

    /// Tells the watcher when the status at `at` differs from `before`.
    fn report_status(&self, slot: usize, before: Option<Status>, at: Instant) {
        let (Some(from), Some(watch)) = (before, &self.config.status_changes) else { return };
        let plans = &*self.catalog;
        let live = &self.subscriptions[slot];
        let to = live.subscription.status(&plans.catalog, at);
        if to != from {
            let _ = watch.send(status_change(&live.id, &live.subscription, &plans.catalog, from, to, at));
        }
    }

    fn note(&mut self, id: &str, note: String, webhook: Option<(&'static str, String, serde_json::Value)>) -> Result<Committed, ServiceError> {
        let slot = self.slot(id)?;
        let now = self.clock.now();
        let at = now.max(self.subscriptions[slot].advanced_to);
        if let (Some(notify), Some((kind, discriminator, data))) = (self.notify.as_ref(), webhook) {
            // Committed with the note, keyed so that the same one twice is stored once.
            self.outbox.extend(notify::rows(notify, id, vec![notify::Found::new(id, kind, discriminator, at, data)], now));
        }
        let row = EventRow { seq: 0, subscription: id.to_string(), applied_at_micros: at.micros(), at_micros: at.micros(), key: None, body: EventBody::Network { note } };
        Ok(self.submit(Batch { events: vec![row], ..Batch::default() }))
    }

    fn submit(&mut self, mut batch: Batch) -> Committed {
        batch.notifications.append(&mut self.outbox);
        let mut fence: Vec<(u32, i64)> = Vec::new();
        if let Some(ownership) = &self.ownership {
            let ids = batch.events.iter().map(|e| e.subscription.as_str()).chain(batch.subscriptions.iter().map(|s| s.id.as_str()));
            for shard in ids.map(crate::shard_of) {
                if !fence.iter().any(|&(s, _)| s == shard) {
                    fence.push((shard, ownership.epoch(shard)));
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Write::Batch { batch, done: tx, fence }).is_err() {
            eprintln!("rollover: the store writer has stopped; stopping");
            std::process::abort();
        }
        rx
    }

    fn create(&mut self, row: SubscriptionRow, plan: PlanVersion, at: Option<Instant>) -> Result<Committed, ServiceError> {
        if self.index.contains_key(&row.id) {
            // A retry while the first purchase may still be on its way to
            // the store: say it exists only once what was queued before is
            // committed. In a cluster that commit may be refused, and then
            // the shard is not served here any more.
            if let Some(ownership) = &self.ownership {
                let (tx, rx) = oneshot::channel();
                let committed = self.writer.send(Write::Batch { batch: Batch::default(), done: tx, fence: Vec::new() }).is_ok() && matches!(rx.blocking_recv(), Ok(Ok(())));
                if !committed || !ownership.serving(crate::shard_of(&row.id)) {
                    return Err(ServiceError::ShardMoving { shard: crate::shard_of(&row.id) });
                }
            }
            return Err(ServiceError::SubscriptionExists { id: row.id });
        }
        let (now, at) = self.now_and(at, self.config.max_backdate_micros)?;
        let plans = &*self.catalog;
        self.scratch.clear();
        let mut subscription = Subscription::purchase(&plans.catalog, plan.ix, at, &mut self.scratch);
        let applied_at = now.max(at);
        subscription.advance(&plans.catalog, applied_at, &mut self.scratch);
        let event = EventRow {
            seq: 0,
            subscription: row.id.clone(),
            applied_at_micros: applied_at.micros(),
            at_micros: at.micros(),
            key: None,
            body: EventBody::Purchase { plan_id: plan.id.clone(), plan_version: plan.version },
        };
        let slot = self.subscriptions.len();
        self.index.insert(row.id.clone(), slot);
        self.subscriptions.push(Live { id: row.id.clone(), subscription, keys: Keys::default(), timer: Instant::NEVER, advanced_to: applied_at, sessions: None, counters: None });
        self.refile(slot);
        Ok(self.submit(Batch { subscriptions: vec![row], events: vec![event], ..Batch::default() }))
    }

    /// The clock's now, and an event's instant (now when not given), which
    /// may not lie further ahead than the allowed skew.
    /// The clock's now, and an instant a client gave (now when not given),
    /// which may lie at most `max_back_micros` before now and no further
    /// ahead than the allowed skew: this bounds the boundaries one request
    /// can make the worker run.
    fn now_and(&self, at: Option<Instant>, max_back_micros: i64) -> Result<(Instant, Instant), ServiceError> {
        let now = self.clock.now();
        let at = at.unwrap_or(now);
        if at.micros() > now.micros() + self.config.future_skew_micros {
            let skew = self.config.future_skew_micros / 1_000_000;
            return Err(ServiceError::InstantOutOfRange { field: "at", message: format!("is in the future (more than {skew} s ahead of the service clock)") });
        }
        if at.micros() < now.micros().saturating_sub(max_back_micros) {
            let days = max_back_micros / 86_400_000_000;
            return Err(ServiceError::InstantOutOfRange { field: "at", message: format!("is more than {days} days before the service clock") });
        }
        Ok((now, at))
    }

    /// [`Worker::now_and`] for an event of an existing subscription, which
    /// also may not be stamped before its purchase.
    fn event_instant(&self, slot: usize, at: Option<Instant>, max_back_micros: i64) -> Result<(Instant, Instant), ServiceError> {
        let (now, at) = self.now_and(at, max_back_micros)?;
        if at < self.subscriptions[slot].subscription.purchased_at() {
            return Err(ServiceError::InstantOutOfRange { field: "at", message: "is before the subscription's purchase".into() });
        }
        Ok((now, at))
    }

    fn slot(&self, id: &str) -> Result<usize, ServiceError> {
        self.index.get(id).copied().ok_or_else(|| ServiceError::UnknownSubscription { id: id.to_string() })
    }

    fn event(&mut self, id: &str, event: Event, body: EventBody, at: Option<Instant>, key: Option<String>) -> Result<(EventOutcome, Option<Committed>), ServiceError> {
        let slot = self.slot(id)?;
        let (now, at) = self.event_instant(slot, at, self.config.max_backdate_micros)?;
        self.bring_up(slot, now);
        let before = self.before(slot, now.max(at));
        let status_before = self.watched(slot, now.max(at));
        let plans = &*self.catalog;
        let live = &mut self.subscriptions[slot];
        self.scratch.clear();
        let outcome = live.subscription.apply(&plans.catalog, event, at, &mut self.scratch);
        live.advanced_to = live.advanced_to.max(at);
        let row = EventRow { seq: 0, subscription: id.to_string(), applied_at_micros: now.micros(), at_micros: at.micros(), key, body };
        self.after(slot, before, now.max(at), at);
        self.report_status(slot, status_before, now.max(at));
        self.refile(slot);
        let committed = self.submit(Batch { events: vec![row], ..Batch::default() });
        let outcome = match outcome {
            Outcome::Refused(refusal) => EventOutcome::Refused(refusal),
            _ => EventOutcome::Applied,
        };
        Ok((outcome, Some(committed)))
    }

    fn usage(&mut self, records: Vec<(usize, UsageRecord)>) -> (Vec<(usize, UsageResult)>, Option<Committed>) {
        let now = self.clock.now();
        // Each record's slot, looked up once.
        let slots: Vec<Option<usize>> = records.iter().map(|(_, record)| self.index.get(&record.subscription).copied()).collect();
        // Boundaries first, so that what they change is named by them.
        let mut seen: HashSet<usize, foldhash::fast::RandomState> = HashSet::with_capacity_and_hasher(records.len(), Default::default());
        for &slot in slots.iter().flatten() {
            if seen.insert(slot) {
                self.bring_up(slot, now);
            }
        }
        // Record ids whose hashes memory holds: asked of the store at once.
        let suspects: Vec<(usize, String)> = records
            .iter()
            .zip(&slots)
            .filter(|((_, record), _)| record.counter.is_none())
            .filter_map(|((_, record), slot)| slot.map(|slot| (slot, record)))
            .filter(|(slot, record)| self.subscriptions[*slot].keys.contains(key_hash(&record.id)))
            .map(|(slot, record)| (slot, Key::Record(&record.id).encode()))
            .collect();
        let confirmed = self.confirm(suspects, now);
        let plans = self.catalog.clone();
        let mut batch = UsageBatch {
            now,
            results: Vec::with_capacity(records.len()),
            rows: Vec::new(),
            found: Vec::new(),
            touched: Vec::new(),
            status_changes: Vec::new(),
            keys: HashMap::with_capacity_and_hasher(records.len(), Default::default()),
            rating: self.metrics.rating_seconds.tally(),
            rated_bytes: 0,
        };
        for ((index, record), slot) in records.into_iter().zip(slots) {
            let result = match self.admit(&record, slot, now, &batch.keys, &confirmed) {
                Ok(admitted) => self.rate(&plans, record, admitted, &mut batch),
                Err(result) => result,
            };
            batch.results.push((index, result));
        }
        // The batch's figures, added at once.
        if batch.rating.count() > 0 {
            self.metrics.rating_seconds.add(&batch.rating);
            self.metrics.accepted.fetch_add(batch.rating.count(), Relaxed);
            self.metrics.usage(batch.rated_bytes, now.micros());
        }
        if let Some(watch) = &self.config.status_changes {
            for change in batch.status_changes.drain(..) {
                let _ = watch.send(change);
            }
        }
        drop(plans);
        if let Some(notify) = &self.notify {
            for (slot, changes) in batch.found.drain(..) {
                self.outbox.extend(notify::rows(notify, &self.subscriptions[slot].id, changes, now));
            }
        }
        for slot in batch.touched.drain(..) {
            self.refile(slot);
        }
        let committed = (!batch.rows.is_empty()).then(|| self.submit(Batch { events: std::mem::take(&mut batch.rows), ..Batch::default() }));
        self.flush_outbox();
        (batch.results, committed)
    }

    /// Asks the store about keys whose hashes memory holds: the stamp of the
    /// stored record with that key (within the key window), or `None` when
    /// none is stored (another key shares the hash). It runs on the
    /// writer's connection after every batch this worker sent before is
    /// committed, so a record rated a moment ago is found. Should the store
    /// not answer, the stamps in memory decide, as they would have alone.
    fn confirm(&mut self, suspects: Vec<(usize, String)>, now: Instant) -> Confirmed {
        let mut confirmed = Confirmed::default();
        if suspects.is_empty() {
            return confirmed;
        }
        self.metrics.key_lookups.fetch_add(suspects.len() as u64, Relaxed);
        let wanted: Vec<(String, String)> = suspects.iter().map(|(slot, key)| (self.subscriptions[*slot].id.clone(), key.clone())).collect();
        let since = crate::start::key_window_start(now, &self.config);
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = self.writer.send(Write::Run(Box::new(move |store| {
            let found = (|| -> Result<Vec<EventRow>, ServiceError> {
                let upto = store.max_seq()?;
                let since_seq = checkpoint::first_applied_since(store, since, upto)?;
                Ok(store.find_keys(&wanted, since_seq)?)
            })();
            let _ = tx.send(found);
        })));
        match (sent, rx.recv()) {
            (Ok(()), Ok(Ok(rows))) => {
                for (slot, key) in suspects {
                    confirmed.insert((slot, key), None);
                }
                for row in rows {
                    if let (Some(&slot), Some(key)) = (self.index.get(&row.subscription), row.key.clone()) {
                        confirmed.insert((slot, key), Some(stamp_of(&row)));
                    }
                }
                self.metrics.key_collisions.fetch_add(confirmed.values().filter(|v| v.is_none()).count() as u64, Relaxed);
            }
            (_, answer) => {
                let why = match answer {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the writer did not answer".into(),
                };
                tracing::error!(%why, "idempotency keys could not be checked in the store; the stamps in memory decide");
                for (slot, key) in suspects {
                    let stamp = self.subscriptions[slot].keys.get(key_hash(&key));
                    confirmed.insert((slot, key), stamp);
                }
            }
        }
        confirmed
    }

    /// Checks one record before rating: its subscription, its key (a repeat,
    /// or the same id saying something else), its counter and its instant.
    /// A record that passes is rated as `bytes` under `key`. A record's id
    /// is a repeat when this batch rated it, or when its hash is held and
    /// the store has it (`confirmed`); a counter's report when the counter
    /// has passed it and its hash is held.
    fn admit(&mut self, record: &UsageRecord, slot: Option<usize>, now: Instant, in_batch: &InBatch, confirmed: &Confirmed) -> Result<Admitted, UsageResult> {
        let Some(slot) = slot else {
            self.metrics.reject(RejectReason::UnknownSubscription);
            return Err(UsageResult::Rejected(UsageRejection::UnknownSubscription(record.subscription.clone())));
        };
        let live = &self.subscriptions[slot];
        let stamp = Stamp { at_micros: record.at.micros(), fingerprint: fingerprint(record.bytes, record.country.as_ref().map(Country::as_str)) };
        // A counter report becomes a record of the counter's growth.
        let (key, bytes) = match &record.counter {
            None => {
                let key = Key::Record(&record.id).encode();
                let earlier = match in_batch.get(&(slot, key.clone())) {
                    Some(stamp) => Some(*stamp),
                    None if live.keys.contains(key_hash(&key)) => confirmed.get(&(slot, key.clone())).copied().flatten(),
                    None => None,
                };
                if let Some(earlier) = earlier {
                    if earlier != stamp {
                        self.metrics.conflict.fetch_add(1, Relaxed);
                        return Err(UsageResult::Conflict);
                    }
                    self.metrics.duplicate.fetch_add(1, Relaxed);
                    return Err(UsageResult::Duplicate);
                }
                (key, record.bytes)
            }
            Some(counter) => {
                let key = Key::Counter { session: &counter.session, total: counter.total, stop: counter.stop }.encode();
                let last = live.counter(&counter.session);
                // Growth is counted from the counter, so a report it has
                // passed holds none: a hash shared with another key cannot
                // lose usage here (a stop not yet seen is never one).
                let passed = counter.total <= last.total && (!counter.stop || last.stopped);
                if passed && live.keys.contains(key_hash(&key)) {
                    self.metrics.duplicate.fetch_add(1, Relaxed);
                    return Err(UsageResult::Duplicate);
                }
                if last.stopped {
                    self.metrics.reject(RejectReason::Counter);
                    return Err(UsageResult::Rejected(UsageRejection::SessionStopped { session: counter.session.clone() }));
                }
                if counter.total < last.total {
                    self.metrics.reject(RejectReason::Counter);
                    let (from, to) = (last.total, counter.total);
                    return Err(UsageResult::Rejected(UsageRejection::CounterBackwards { session: counter.session.clone(), from, to }));
                }
                (key, counter.total - last.total)
            }
        };
        if record.at.micros() < now.micros() - self.config.max_age_micros {
            self.metrics.reject(RejectReason::TooOld);
            return Err(UsageResult::Rejected(UsageRejection::TooOld));
        }
        if record.at.micros() > now.micros() + self.config.future_skew_micros {
            self.metrics.reject(RejectReason::Future);
            return Err(UsageResult::Rejected(UsageRejection::InFuture));
        }
        if bytes > MAX_RECORD_BYTES {
            self.metrics.reject(RejectReason::TooLarge);
            return Err(UsageResult::Rejected(UsageRejection::TooLarge { bytes }));
        }
        Ok(Admitted { slot, key, bytes, stamp })
    }

    /// Rates one admitted record and queues its row.
    fn rate(&mut self, plans: &Plans, record: UsageRecord, admitted: Admitted, batch: &mut UsageBatch) -> UsageResult {
        let Admitted { slot, key, bytes, stamp } = admitted;
        let now = batch.now;
        let max_age_micros = self.config.max_age_micros;
        let notice_micros = self.notify.as_ref().map(|n| n.notice_micros);
        let watching = self.config.status_changes.is_some();
        let live = &mut self.subscriptions[slot];
        if let Some(counter) = &record.counter {
            let state = CounterState { total: counter.total, stopped: counter.stop, at_micros: record.at.micros() };
            live.set_counter(&counter.session, state, now, max_age_micros);
            if bytes == 0 {
                // Nothing to rate. A stop is kept all the same, so that the
                // session stays closed after a restart.
                if counter.stop {
                    live.keys.insert(key_hash(&key), stamp, now, max_age_micros);
                    batch.keys.insert((slot, key.clone()), stamp);
                    let note = format!("RADIUS session {} stopped at {} octets", counter.session, counter.total);
                    batch.rows.push(keyed_row(record.subscription, now, record.at, key, EventBody::Network { note }));
                }
                return UsageResult::Accepted { drawn_bytes: 0, throttled_bytes: 0, rejected_bytes: 0, late: false, rejected_reason: None };
            }
        }
        let rating_started = std::time::Instant::now();
        let catalog = &plans.catalog;
        let effective = now.max(record.at);
        self.scratch.clear();
        let before = notice_micros.map(|_| notify::snapshot(&live.subscription, catalog, effective, live.advanced_to));
        let status_before = watching.then(|| live.subscription.status(catalog, effective));
        let late = record.at < live.advanced_to.min(now) && boundary_between(&live.subscription, plans, record.at, now);
        let outcome = live.subscription.apply(catalog, Event::Usage { bytes, country: record.country }, record.at, &mut self.scratch);
        live.advanced_to = live.advanced_to.max(effective);
        if let (Some(before), Some(notice_micros)) = (before, notice_micros) {
            let changes = notify::changes(&live.id, before, &live.subscription, catalog, effective, record.at, &self.scratch, notice_micros);
            if !changes.is_empty() {
                batch.found.push((slot, changes));
            }
        }
        if let Some(from) = status_before {
            let to = live.subscription.status(catalog, effective);
            if to != from {
                batch.status_changes.push(status_change(&live.id, &live.subscription, catalog, from, to, effective));
            }
        }
        let Outcome::Rated(rating) = outcome else { unreachable!("usage is always rated") };
        batch.rating.observe(rating_started.elapsed().as_secs_f64());
        batch.rated_bytes += bytes;
        live.keys.insert(key_hash(&key), stamp, now, max_age_micros);
        batch.keys.insert((slot, key.clone()), stamp);
        let body = EventBody::Usage { bytes, country: record.country.map(|c| c.as_str().to_string()) };
        batch.rows.push(keyed_row(record.subscription, now, record.at, key, body));
        batch.touched.push(slot);
        accepted(&rating, late)
    }

    fn project(&mut self, id: &str, daily_bytes: u64) -> Result<Option<rollover_core::Projection>, ServiceError> {
        let slot = self.slot(id)?;
        let now = self.clock.now();
        self.bring_up(slot, now);
        self.flush_outbox();
        Ok(self.subscriptions[slot].subscription.project(&self.catalog.catalog, now, daily_bytes))
    }

    fn balance(&mut self, id: &str) -> Result<Balance, ServiceError> {
        let slot = self.slot(id)?;
        let now = self.clock.now();
        self.bring_up(slot, now);
        self.flush_outbox();
        let plans = &*self.catalog;
        let live = &self.subscriptions[slot];
        let s = &live.subscription;
        let catalog = &plans.catalog;
        let ix = s.plan();
        let plan = catalog.get(ix);
        let buckets = s
            .buckets()
            .iter()
            .map(|b| {
                let carry = s.carry_outlook(catalog, b);
                BalanceBucket {
                    id: b.id,
                    kind: b.kind.name(),
                    granted_bytes: b.granted_bytes,
                    remaining_bytes: b.remaining_bytes(),
                    expires_at: (!b.expires.is_never()).then_some(b.expires),
                    rolls_over: carry.is_some(),
                    carry_expires_at: carry.filter(|c| !c.is_never()),
                }
            })
            .collect();
        Ok(Balance {
            id: live.id.clone(),
            plan: PlanVersion { id: plan.id.clone(), version: plans.version_of(ix), ix },
            at: now,
            status: s.status(catalog, now),
            total_bytes: s.total_bytes(),
            daily_remaining_bytes: s.daily_remaining_bytes(catalog, now),
            expires_at: s.expires(catalog),
            buckets,
            period_end: s.period_end_preview(catalog),
            lapses_at: s.lapses_at(catalog),
            charges_minor: s.charges_minor(),
            fees_minor: s.fees_minor(),
            throttled_bytes: s.throttled_bytes(),
            rejected_bytes: s.rejected_bytes(),
        })
    }
}

impl Worker {
    fn session(&mut self, id: &str, session: &str, op: SessionOp, at: Option<Instant>, country: Option<Country>) -> Result<(SessionAnswer, Option<Committed>), ServiceError> {
        let slot = self.slot(id)?;
        let (now, at) = self.event_instant(slot, at, self.config.max_age_micros)?;
        if let SessionOp::Update { used_bytes, .. } | SessionOp::End { used_bytes, .. } = op
            && used_bytes > MAX_RECORD_BYTES
        {
            return Err(ServiceError::Invalid { field: "used_bytes", message: format!("is more than {MAX_RECORD_BYTES} bytes (1 TiB) in one report") });
        }
        self.bring_up(slot, now);
        // A report whose key's hash is held is a repeat only if the store has it.
        let repeated_report = match op.parts().1 {
            Some((_, number)) => {
                let key = Key::Session { session, number }.encode();
                self.subscriptions[slot].keys.contains(key_hash(&key)) && self.confirm(vec![(slot, key)], now).into_values().next().flatten().is_some()
            }
            None => false,
        };
        let before = self.before(slot, now.max(at));
        let status_before = self.watched(slot, now.max(at));
        let plans = &*self.catalog;
        let catalog = &plans.catalog;
        let live = &mut self.subscriptions[slot];
        let sessions = live.sessions.get_or_insert_with(Default::default);
        sessions.retain(|_, r| r.expires_at > now);
        let mut rows = Vec::new();
        let (requested, report) = op.parts();
        if let Some(repeated) = repeated_or_refused(sessions, session, op)? {
            return Ok((repeated, None));
        }
        self.scratch.clear();
        // An attach starts a plan that starts at first use (as does a
        // session's report where no reservation was opened here).
        let opening = matches!(op, SessionOp::Start { .. }) || !sessions.contains_key(session);
        if opening && live.subscription.first_use_pending(catalog, now) {
            live.subscription.apply(catalog, Event::FirstUse, at, &mut self.scratch);
            rows.push(EventRow { seq: 0, subscription: id.to_string(), applied_at_micros: now.micros(), at_micros: at.micros(), key: None, body: EventBody::FirstUse });
        }
        let used = report.map(|(used_bytes, number)| {
            let report = Report { subscription: id, session, number, used_bytes, country, at, now };
            rate_report(&mut live.subscription, &mut live.keys, repeated_report, catalog, &mut self.scratch, report, self.config.max_age_micros, &mut rows)
        });
        live.advanced_to = live.advanced_to.max(now).max(at);
        let held_by_others: u64 = sessions.iter().filter(|(name, _)| name.as_str() != session).map(|(_, r)| r.reserved_bytes).sum();
        let ending = matches!(op, SessionOp::End { .. });
        let wanted = requested.unwrap_or(self.config.session_max_grant_bytes).min(self.config.session_max_grant_bytes);
        let grant = grant(&live.subscription, catalog, now, country, wanted, held_by_others, ending);
        let granted = grant.granted_bytes;
        let answer = SessionAnswer {
            session: session.to_string(),
            subscription: id.to_string(),
            granted_bytes: granted,
            validity_seconds: self.config.session_validity_seconds,
            credit_limit_reached: grant.credit_limit_reached,
            final_unit: grant.final_unit,
            used,
            status: live.subscription.status(catalog, now),
            not_covered: grant.not_covered,
        };
        if ending {
            sessions.remove(session);
        } else {
            let expires_at = now.plus_micros(self.config.session_validity_seconds as i64 * 1_000_000);
            let last = report.map(|(_, number)| (number, answer.clone()));
            sessions.insert(session.to_string(), Reservation { reserved_bytes: granted, expires_at, last });
        }
        if sessions.is_empty() {
            live.sessions = None;
        }
        self.after(slot, before, now.max(at), at);
        self.report_status(slot, status_before, now.max(at));
        self.refile(slot);
        let committed = (!rows.is_empty()).then(|| self.submit(Batch { events: rows, ..Batch::default() }));
        self.flush_outbox();
        Ok((answer, committed))
    }
}

/// A usage record that passed [`Worker::admit`].
struct Admitted {
    slot: usize,
    key: String,
    bytes: u64,
    stamp: Stamp,
}

/// What rating one batch of usage gathers for after it.
struct UsageBatch {
    now: Instant,
    results: Vec<(usize, UsageResult)>,
    rows: Vec<EventRow>,
    found: Vec<(usize, Vec<notify::Found>)>,
    touched: Vec<usize>,
    status_changes: Vec<StatusChange>,
    /// Keys rated in this batch, exactly (a repeat inside one batch is
    /// told without the store).
    keys: InBatch,
    /// Each rated record's time to rate, and their bytes.
    rating: crate::metrics::Tally,
    rated_bytes: u64,
}

/// The keys one usage batch rated, by slot, with their stamps.
type InBatch = HashMap<(usize, String), Stamp, foldhash::fast::RandomState>;

/// What the store said of keys whose hashes memory holds (see
/// `Worker::confirm`).
type Confirmed = HashMap<(usize, String), Option<Stamp>, foldhash::fast::RandomState>;

fn accepted(rating: &Rating, late: bool) -> UsageResult {
    UsageResult::Accepted {
        drawn_bytes: rating.drawn_bytes + rating.unmetered_bytes,
        throttled_bytes: rating.throttled_bytes,
        rejected_bytes: rating.rejected_bytes,
        late,
        rejected_reason: rating.reject_reason,
    }
}

/// The stored row of a keyed record, applied at `now`.
fn keyed_row(subscription: String, now: Instant, at: Instant, key: String, body: EventBody) -> EventRow {
    EventRow { seq: 0, subscription, applied_at_micros: now.micros(), at_micros: at.micros(), key: Some(key), body }
}

fn status_change(id: &str, subscription: &Subscription, catalog: &rollover_core::Catalog, from: Status, to: Status, at: Instant) -> StatusChange {
    let throttle_kbps = match (to, availability(subscription, catalog, at).2) {
        (Status::Throttled, FinalAction::Throttle { throttle_kbps }) => throttle_kbps,
        _ => None,
    };
    StatusChange { subscription: id.to_string(), from, to, at, throttle_kbps }
}

/// One numbered report of a session's usage.
struct Report<'a> {
    subscription: &'a str,
    session: &'a str,
    number: u32,
    used_bytes: u64,
    country: Option<Country>,
    at: Instant,
    now: Instant,
}

/// Rates a session's report once, under its key: a report already rated
/// (`repeated`) is a duplicate. Its row joins `rows`.
#[allow(clippy::too_many_arguments)]
fn rate_report(
    subscription: &mut Subscription,
    keys: &mut Keys,
    repeated: bool,
    catalog: &rollover_core::Catalog,
    ledger: &mut Vec<Entry>,
    report: Report,
    max_age_micros: i64,
    rows: &mut Vec<EventRow>,
) -> UsageResult {
    let Report { subscription: id, session, number, used_bytes, country, at, now } = report;
    let key = Key::Session { session, number }.encode();
    if repeated {
        return UsageResult::Duplicate;
    }
    let outcome = subscription.apply(catalog, Event::Usage { bytes: used_bytes, country }, at, ledger);
    let Outcome::Rated(rating) = outcome else { unreachable!("usage is always rated") };
    let stamp = Stamp { at_micros: at.micros(), fingerprint: fingerprint(used_bytes, country.as_ref().map(Country::as_str)) };
    keys.insert(key_hash(&key), stamp, now, max_age_micros);
    let body = EventBody::Usage { bytes: used_bytes, country: country.map(|c| c.as_str().to_string()) };
    rows.push(keyed_row(id.to_string(), now, at, key, body));
    accepted(&rating, false)
}

/// What one session step grants.
struct Grant {
    granted_bytes: u64,
    credit_limit_reached: bool,
    final_unit: Option<FinalAction>,
    not_covered: bool,
}

/// The grant for `wanted` bytes (already capped at the most one grant may
/// be) when other sessions of the subscription hold `held_by_others`: what is
/// available in the visited country, whether that is the last of it, and
/// what happens then. An ending step asks for nothing more.
fn grant(subscription: &Subscription, catalog: &rollover_core::Catalog, now: Instant, country: Option<Country>, wanted: u64, held_by_others: u64, ending: bool) -> Grant {
    let not_covered = !catalog.get(subscription.plan()).covers(country);
    let (available, unbounded, action) = if not_covered { (0, false, FinalAction::Terminate) } else { availability(subscription, catalog, now) };
    let available = available.saturating_sub(held_by_others);
    let granted_bytes = if unbounded { wanted } else { wanted.min(available) };
    Grant {
        granted_bytes,
        credit_limit_reached: !ending && granted_bytes == 0 && wanted > 0,
        final_unit: (!ending && !unbounded && granted_bytes >= available).then_some(action),
        not_covered,
    }
}

/// Full-speed data a session may reserve now, whether the plan can always
/// buy more (extra blocks, pay as you go), and what happens at the end.
fn availability(subscription: &Subscription, catalog: &rollover_core::Catalog, now: Instant) -> (u64, bool, FinalAction) {
    use rollover_core::Status;
    use rollover_core::plan::Exhausted;
    let plan = catalog.get(subscription.plan());
    let exhausted_action = match plan.exhausted {
        Exhausted::Throttle { throttle_kbps } => FinalAction::Throttle { throttle_kbps: Some(throttle_kbps) },
        _ => FinalAction::Terminate,
    };
    match subscription.status(catalog, now) {
        Status::Cancelled | Status::Lapsed | Status::Expired | Status::Suspended | Status::Pending => return (0, false, FinalAction::Terminate),
        _ => {}
    }
    let total = subscription.total_bytes();
    let room = subscription.daily_remaining_bytes(catalog, now);
    let cap_action = FinalAction::Throttle { throttle_kbps: plan.daily_cap.and_then(|c| c.throttle_kbps) };
    if plan.is_unlimited() {
        return (room.unwrap_or(0).saturating_add(total), false, cap_action);
    }
    let buys_more = matches!(plan.exhausted, Exhausted::ExtraBlocks { .. } | Exhausted::PayAsYouGo { .. });
    match room {
        Some(room) if buys_more => (room, false, cap_action),
        Some(room) if room < total => (room, false, cap_action),
        Some(_) => (total, false, exhausted_action),
        None => (total, buys_more, exhausted_action),
    }
}

/// Whether a period boundary of `subscription` lies in `(at, now]`: a record
/// stamped before it is rated in the current period and marked late.
fn boundary_between(subscription: &Subscription, plans: &Plans, at: Instant, now: Instant) -> bool {
    match subscription.period(&plans.catalog) {
        Some((_, start, _)) => at < start && start <= now,
        None => false,
    }
}

/// Refuses a start on an open session; a report whose number was answered
/// last gets that answer again. A report on a session with no reservation
/// here (it expired, or went with the node that held it) is rated under its
/// key like any other, and an update opens the reservation again.
fn repeated_or_refused(sessions: &HashMap<String, Reservation>, session: &str, op: SessionOp) -> Result<Option<SessionAnswer>, ServiceError> {
    let number = match op {
        SessionOp::Start { .. } if sessions.contains_key(session) => return Err(ServiceError::SessionOpen { id: session.to_string() }),
        SessionOp::Start { .. } => return Ok(None),
        SessionOp::Update { request_number, .. } | SessionOp::End { request_number, .. } => request_number,
    };
    Ok(sessions.get(session).and_then(|reservation| reservation.last.as_ref()).filter(|(last, _)| *last == number).map(|(_, answer)| answer.clone()))
}
