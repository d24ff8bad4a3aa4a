//! The live engine: the same `rollover-core` state machine that `simulate`
//! runs, driven by a clock, owned by single-threaded shard workers, and made
//! durable by group commit to a [`rollover_store::Store`].
//!
//! Flow of a write: the caller sends a command to the worker that owns the
//! subscription (FNV-1a of its id, mod 256 shards, shards spread over the
//! workers); the worker applies it in memory and hands the rows to the
//! writer thread; the writer commits many workers' rows in one transaction
//! and only then releases the caller's acknowledgment. A failed commit stops
//! the process: memory would no longer match the store, and a restart
//! rebuilds memory from the store.

mod api;
mod clock;
mod config;
mod error;
pub mod notify;
mod sender;
pub mod metrics;
mod plans;
mod replay;
mod worker;
mod writer;

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use rollover_core::engine::Event;
use rollover_core::{Country, Instant};
use rollover_store::{Batch, EventBody, Identifiers, PlanRow, Store, SubscriptionRow};
use tokio::sync::oneshot;

pub use api::*;
pub use clock::{Clock, wall_micros};
pub use config::Config;
pub use error::ServiceError;
pub use plans::{PlanVersion, Plans, SharedPlans};
pub use replay::replay_subscription;
pub use rollover_store::Identifiers as SubscriptionIdentifiers;

use worker::{Command, Worker};
use writer::{Write, Writer};

/// Most plan versions the catalog holds; an upload past it is refused.
pub const MAX_PLAN_VERSIONS: usize = 10_000;

/// Number of logical shards; a subscription's shard never changes.
pub const SHARDS: u32 = 256;

/// FNV-1a, 32 bits: the shard function (the one NATS subject mapping's
/// `partition()` uses), so shards never move when nodes are added.
pub fn shard_of(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

/// A handle on the running engine; cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    clock: Arc<Clock>,
    plans: Arc<SharedPlans>,
    /// Held across one plan upload, from the version check to the publish:
    /// two uploads of the same plan id never pick the same version.
    plan_upload: tokio::sync::Mutex<()>,
    plan_rows: RwLock<Vec<PlanRow>>,
    workers: Vec<SyncSender<Command>>,
    writer: SyncSender<Write>,
    reader: Mutex<Box<dyn Store>>,
    identifiers: Mutex<HashMap<String, String>>,
    /// Open sessions: session id to subscription id.
    sessions: Mutex<HashMap<String, String>>,
    metrics: Arc<metrics::Metrics>,
    /// More exposition text, from the network listeners.
    metric_sources: RwLock<Vec<MetricSource>>,
    /// Subscriptions in the store when the service started.
    subscription_count: std::sync::atomic::AtomicUsize,
}

/// Appends metrics in the Prometheus text format.
pub type MetricSource = Box<dyn Fn(&mut String) + Send + Sync>;

fn identifier_keys(identifiers: &Identifiers) -> Vec<(&'static str, String)> {
    let mut keys = Vec::new();
    for (name, value) in [
        ("identifiers.iccid", &identifiers.iccid),
        ("identifiers.imsi", &identifiers.imsi),
        ("identifiers.msisdn", &identifiers.msisdn),
        ("identifiers.external_id", &identifiers.external_id),
    ] {
        if let Some(value) = value {
            keys.push((name, format!("{name}={value}")));
        }
    }
    keys
}

impl Service {
    /// Opens the store at `url` (`sqlite://PATH` or `postgres://...`),
    /// rebuilds every subscription from it, and starts the workers and the
    /// writer.
    pub fn start_url(url: &str, clock: Clock, config: Config) -> Result<Service, String> {
        let (store, reader) = rollover_store::open(url).map_err(|e| e.to_string())?;
        let senders = config.notify.endpoints.iter().map(|_| rollover_store::open_secondary(url).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
        Service::start(store, reader, senders, clock, config)
    }

    /// Whether the store holds nothing yet (no plan, no subscription).
    pub fn is_empty(&self) -> bool {
        self.plans().catalog.plans().is_empty() && self.subscription_count() == 0
    }

    fn subscription_count(&self) -> usize {
        self.inner.subscription_count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts on open stores: the writer's, one for reads, and one per
    /// webhook endpoint for its sender thread.
    pub fn start(mut store: Box<dyn Store>, reader: Box<dyn Store>, senders: Vec<Box<dyn Store>>, clock: Clock, config: Config) -> Result<Service, String> {
        let clock = Arc::new(match (clock, store.clock().map_err(|e| e.to_string())?) {
            // A simulated clock resumes where it stopped.
            (Clock::Simulated(_), Some(stored)) => Clock::simulated(Instant::from_micros(stored)),
            (clock, _) => clock,
        });
        let mut plans = Plans::default();
        let plan_rows = store.load_plans().map_err(|e| e.to_string())?;
        for row in &plan_rows {
            let parsed = rollover_terms::parse_plans(&format!("plan {} version {}", row.id, row.version), &row.document)
                .map_err(|e| format!("stored plan no longer reads: {e}"))?;
            let plan = parsed.into_iter().nth(row.position as usize).ok_or_else(|| format!("stored plan {} is missing from its document", row.id))?;
            plans.insert(row.version, plan);
        }
        let plans = Arc::new(SharedPlans::new(plans));

        let (writer_tx, writer_rx) = sync_channel::<Write>(config.queue_bound);
        let mut identifiers = HashMap::new();
        let subscription_rows = store.load_subscriptions().map_err(|e| e.to_string())?;
        let subscription_count = subscription_rows.len();
        for row in subscription_rows {
            for (_, key) in identifier_keys(&row.identifiers) {
                identifiers.insert(key, row.id.clone());
            }
        }
        let metrics = Arc::new(metrics::Metrics::default());
        let notify = (!config.notify.endpoints.is_empty()).then(|| Arc::new(config.notify.clone()));
        let mut workers = Vec::with_capacity(config.workers);
        let mut handles = Vec::with_capacity(config.workers);
        for n in 0..config.workers.max(1) {
            let (tx, rx) = sync_channel::<Command>(config.queue_bound);
            let worker = Worker::new(n, plans.clone(), clock.clone(), writer_tx.clone(), config.clone(), metrics.clone(), notify.clone());
            handles.push(std::thread::Builder::new().name(format!("shard-worker-{n}")).spawn(move || worker.run(rx)).map_err(|e| e.to_string())?);
            workers.push(tx);
        }
        // Rebuild: every event, in commit order, to the worker that owns it.
        let mut failure = None;
        store
            .load_events(&mut |row| {
                let worker = &workers[shard_of(&row.subscription) as usize % workers.len()];
                if worker.send(Command::Replay(row)).is_err() {
                    failure = Some("a worker stopped during start-up".to_string());
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        let mut waits = Vec::new();
        for worker in &workers {
            let (tx, rx) = oneshot::channel();
            worker.send(Command::Tick { reply: Some(tx) }).map_err(|_| "a worker stopped during start-up")?;
            waits.push(rx);
        }
        for wait in waits {
            wait.blocking_recv().map_err(|_| "a worker stopped during start-up")?;
        }
        if let Some(notify) = &notify {
            for (endpoint, sender) in senders.into_iter().enumerate().take(notify.endpoints.len()) {
                let (notify, sender_metrics) = (notify.clone(), metrics.clone());
                std::thread::Builder::new()
                    .name(format!("webhook-sender-{endpoint}"))
                    .spawn(move || sender::run(sender, notify, endpoint, sender_metrics))
                    .map_err(|e| e.to_string())?;
            }
        }
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || Writer::new(store, writer_metrics).run(writer_rx))
            .map_err(|e| e.to_string())?;
        Ok(Service {
            inner: Arc::new(Inner {
                config,
                clock,
                plans,
                plan_upload: tokio::sync::Mutex::new(()),
                plan_rows: RwLock::new(plan_rows),
                workers,
                writer: writer_tx,
                reader: Mutex::new(reader),
                identifiers: Mutex::new(identifiers),
                sessions: Mutex::new(HashMap::new()),
                metrics,
                metric_sources: RwLock::new(Vec::new()),
                subscription_count: std::sync::atomic::AtomicUsize::new(subscription_count),
            }),
        })
    }

    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    pub fn clock_is_simulated(&self) -> bool {
        self.inner.clock.is_simulated()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A snapshot of the catalog: holding it blocks nobody.
    pub fn plans(&self) -> Arc<Plans> {
        self.inner.plans.snapshot()
    }

    pub fn plan_document(&self, id: &str, version: u32) -> Option<String> {
        let rows = self.inner.plan_rows.read().expect("plan rows lock");
        rows.iter().find(|r| r.id == id && r.version == version).map(|r| r.document.clone())
    }

    fn worker_for(&self, subscription: &str) -> &SyncSender<Command> {
        &self.inner.workers[shard_of(subscription) as usize % self.inner.workers.len()]
    }

    fn send(&self, subscription: &str, command: Command) -> Result<(), ServiceError> {
        match self.worker_for(subscription).try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ServiceError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ServiceError::Unavailable("a shard worker has stopped".into())),
        }
    }

    async fn write(&self, write: Write) -> Result<(), ServiceError> {
        let writer = self.inner.writer.clone();
        match writer.try_send(write) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ServiceError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ServiceError::Unavailable("the store writer has stopped".into())),
        }
    }

    /// Adds plans from a plan document (TOML). An unchanged plan keeps its
    /// version; a changed one gets the next. Returns `(id, version)` per plan.
    /// Uploads run one at a time, so that concurrent uploads of one plan id
    /// get consecutive versions; readers are never blocked by one.
    pub async fn add_plans(&self, document: &str) -> Result<Vec<(String, u32)>, ServiceError> {
        let parsed = rollover_terms::parse_plan_texts("body", document).map_err(|e| ServiceError::Invalid { field: e.field.clone(), message: e.to_string() })?;
        let _upload = self.inner.plan_upload.lock().await;
        let now = self.now();
        let current = self.plans();
        let mut next: Option<Plans> = None;
        let mut rows = Vec::new();
        let mut result = Vec::new();
        for (plan, text) in parsed {
            let catalog = next.as_ref().unwrap_or(&current);
            match catalog.latest(&plan.id) {
                Some(latest) if catalog.catalog.get(latest.ix) == &plan => result.push((plan.id.clone(), latest.version)),
                latest => {
                    if catalog.catalog.plans().len() >= MAX_PLAN_VERSIONS {
                        return Err(ServiceError::LimitReached {
                            field: "plan",
                            message: format!("the catalog holds {MAX_PLAN_VERSIONS} plan versions, the most it may"),
                        });
                    }
                    let version = latest.map_or(1, |l| l.version + 1);
                    rows.push(PlanRow { id: plan.id.clone(), version, document: text, position: 0, created_at_micros: now.micros() });
                    result.push((plan.id.clone(), version));
                    next.get_or_insert_with(|| (*current).clone()).insert(version, plan);
                }
            }
        }
        let Some(next) = next else { return Ok(result) };
        let (tx, rx) = oneshot::channel();
        self.write(Write::Plans { rows: rows.clone(), done: tx }).await?;
        rx.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))?.map_err(ServiceError::Unavailable)?;
        self.inner.plans.publish(next);
        self.inner.plan_rows.write().expect("plan rows lock").extend(rows);
        Ok(result)
    }

    /// The purchase: creates a subscription on the newest version of `plan`.
    pub async fn create_subscription(&self, new: NewSubscription) -> Result<String, ServiceError> {
        let plan = self.plans().latest(&new.plan).ok_or_else(|| ServiceError::NotFound { field: "plan", message: format!("unknown plan \"{}\"", new.plan) })?;
        let keys = identifier_keys(&new.identifiers);
        {
            let mut taken = self.inner.identifiers.lock().expect("identifier lock");
            for (field, key) in &keys {
                if let Some(owner) = taken.get(key) {
                    return Err(ServiceError::Conflict { field, message: format!("already belongs to subscription \"{owner}\"") });
                }
            }
            for (_, key) in &keys {
                taken.insert(key.clone(), new.id.clone());
            }
        }
        let (tx, rx) = oneshot::channel();
        let command = Command::Create {
            row: SubscriptionRow { id: new.id.clone(), identifiers: new.identifiers.clone(), created_at_micros: self.now().micros() },
            plan,
            at: new.at,
            reply: tx,
        };
        let release = |service: &Service| {
            let mut taken = service.inner.identifiers.lock().expect("identifier lock");
            for (_, key) in &keys {
                taken.remove(key);
            }
        };
        if let Err(e) = self.send(&new.id, command) {
            release(self);
            return Err(e);
        }
        match rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))? {
            Ok(committed) => {
                committed.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))?;
                Ok(new.id)
            }
            Err(e) => {
                release(self);
                Err(e)
            }
        }
    }

    pub async fn apply_event(&self, subscription: &str, event: LifecycleEvent, at: Option<Instant>) -> Result<EventOutcome, ServiceError> {
        let (event, body) = match event {
            LifecycleEvent::Install => (Event::Install, EventBody::Install),
            LifecycleEvent::FirstUse => (Event::FirstUse, EventBody::FirstUse),
            LifecycleEvent::Suspend => (Event::Suspend, EventBody::Suspend),
            LifecycleEvent::Resume => (Event::Resume, EventBody::Resume),
            LifecycleEvent::Cancel => (Event::Cancel, EventBody::Cancel),
            LifecycleEvent::Grant { kind, bytes, expires } => {
                let expires_micros = match expires {
                    rollover_core::GrantExpiry::At(at) => at.micros(),
                    rollover_core::GrantExpiry::PeriodEnd => rollover_store::EXPIRES_PERIOD_END,
                    rollover_core::GrantExpiry::Never => rollover_store::EXPIRES_NEVER,
                };
                (Event::Grant { kind, bytes, expires }, EventBody::Grant { kind: kind.name(), bytes, expires_micros })
            }
            LifecycleEvent::ChangePlan(id) => {
                let plan = self.plans().latest(&id).ok_or_else(|| ServiceError::NotFound { field: "change_plan", message: format!("unknown plan \"{id}\"") })?;
                (Event::ChangePlan(plan.ix), EventBody::ChangePlan { plan_id: plan.id, plan_version: plan.version })
            }
        };
        let (tx, rx) = oneshot::channel();
        self.send(subscription, Command::Event { id: subscription.to_string(), event, body, at, reply: tx })?;
        let (outcome, committed) = rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))??;
        if let Some(committed) = committed {
            committed.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))?;
        }
        Ok(outcome)
    }

    /// Rates a batch of usage records; answers after every accepted record is
    /// committed. Results are in the order of `records`.
    pub async fn record_usage(&self, records: Vec<UsageRecord>) -> Result<Vec<UsageResult>, ServiceError> {
        let count = records.len();
        let mut per_worker: Vec<Vec<(usize, UsageRecord)>> = vec![Vec::new(); self.inner.workers.len()];
        for (index, record) in records.into_iter().enumerate() {
            per_worker[shard_of(&record.subscription) as usize % self.inner.workers.len()].push((index, record));
        }
        let mut replies = Vec::new();
        for (n, records) in per_worker.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            match self.inner.workers[n].try_send(Command::Usage { records, reply: tx }) {
                Ok(()) => replies.push(rx),
                Err(TrySendError::Full(_)) if replies.is_empty() => return Err(ServiceError::Busy),
                Err(TrySendError::Full(Command::Usage { records, reply })) => {
                    // Part of the batch is already on its way: wait for room
                    // rather than answer for only part of it.
                    let worker = self.inner.workers[n].clone();
                    tokio::task::spawn_blocking(move || worker.send(Command::Usage { records, reply }).map_err(|_| ()))
                        .await
                        .map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?
                        .map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?;
                    replies.push(rx);
                }
                Err(_) => return Err(ServiceError::Unavailable("a shard worker has stopped".into())),
            }
        }
        let mut results = vec![UsageResult::Duplicate; count];
        for reply in replies {
            let (rated, committed) = reply.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?;
            if let Some(committed) = committed {
                committed.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))?;
            }
            for (index, result) in rated {
                results[index] = result;
            }
        }
        Ok(results)
    }

    pub async fn balance(&self, subscription: &str) -> Result<Balance, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.send(subscription, Command::Balance { id: subscription.to_string(), reply: tx })?;
        rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?
    }

    /// The subscription's ledger, recomputed from its stored events (the same
    /// engine, the same order), brought up to the clock's now.
    pub async fn ledger(&self, subscription: &str) -> Result<Ledger, ServiceError> {
        let service = self.clone();
        let id = subscription.to_string();
        tokio::task::spawn_blocking(move || {
            let events = service.inner.reader.lock().expect("reader lock").events_of(&id).map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            if events.is_empty() {
                return Err(ServiceError::NotFound { field: "id", message: format!("unknown subscription \"{id}\"") });
            }
            // A snapshot: a long replay holds no lock that others wait for.
            let plans = service.plans();
            let (mut subscription, mut entries, mut late) = replay_subscription(&plans, &events).map_err(ServiceError::Unavailable)?;
            subscription.advance(&plans.catalog, service.now(), &mut entries);
            late.resize(entries.len(), false);
            let notes = events
                .iter()
                .filter_map(|row| match &row.body {
                    EventBody::Network { note } => Some((Instant::from_micros(row.at_micros), note.clone())),
                    _ => None,
                })
                .collect();
            Ok(Ledger { entries, late, plan: subscription.plan(), notes })
        })
        .await
        .map_err(|_| ServiceError::Unavailable("the ledger reader stopped".into()))?
    }

    /// Opens, updates or ends an online charging session. A session's
    /// reservation is held in memory by the subscription's worker: bytes it
    /// holds are not available to other sessions of the subscription. Usage
    /// reported by a session is rated and committed like any usage record
    /// (idempotency key `session:{id}:{request_number}`).
    pub async fn session(&self, session: &str, subscription: Option<&str>, op: SessionOp, at: Option<Instant>) -> Result<SessionAnswer, ServiceError> {
        self.session_in(session, subscription, op, at, None).await
    }

    /// [`Service::session`] in a visited country: usage is rated there, and
    /// nothing is granted where the plan does not cover it.
    pub async fn session_in(
        &self,
        session: &str,
        subscription: Option<&str>,
        op: SessionOp,
        at: Option<Instant>,
        country: Option<Country>,
    ) -> Result<SessionAnswer, ServiceError> {
        let owner = {
            let mut sessions = self.inner.sessions.lock().expect("session lock");
            match (op, subscription) {
                (SessionOp::Start { .. }, Some(subscription)) => {
                    if sessions.contains_key(session) {
                        return Err(ServiceError::Conflict { field: "id", message: format!("session \"{session}\" is already open") });
                    }
                    sessions.insert(session.to_string(), subscription.to_string());
                    subscription.to_string()
                }
                (SessionOp::Start { .. }, None) => return Err(ServiceError::Invalid { field: "subscription".into(), message: "is required".into() }),
                _ => sessions
                    .get(session)
                    .cloned()
                    .ok_or_else(|| ServiceError::NotFound { field: "id", message: format!("no open session \"{session}\"") })?,
            }
        };
        let (tx, rx) = oneshot::channel();
        let sent = self.send(&owner, Command::Session { subscription: owner.clone(), session: session.to_string(), op, at, country, reply: tx });
        let answer = match sent {
            Ok(()) => rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?,
            Err(e) => Err(e),
        };
        let forget = matches!(
            (&answer, op),
            (Err(_), SessionOp::Start { .. }) | (Ok(_), SessionOp::End { .. }) | (Err(ServiceError::NotFound { .. }), _)
        );
        if forget {
            self.inner.sessions.lock().expect("session lock").remove(session);
        }
        let (answer, committed) = answer?;
        if let Some(committed) = committed {
            committed.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))?;
        }
        Ok(answer)
    }

    /// The subscription that holds an identifier: `field` is one of `iccid`,
    /// `imsi`, `msisdn`, `external_id`.
    pub fn subscription_by(&self, field: &str, value: &str) -> Option<String> {
        let key = format!("identifiers.{field}={value}");
        self.inner.identifiers.lock().expect("identifier lock").get(&key).cloned()
    }

    /// Writes a network note into a subscription's log (and so its ledger):
    /// a CoA or Disconnect sent and how the NAS answered. Returns once
    /// committed.
    pub async fn note(&self, subscription: &str, note: String) -> Result<(), ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.send(subscription, Command::Note { id: subscription.to_string(), note, reply: tx })?;
        let committed = rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))??;
        committed.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))
    }

    /// Counter sessions that have not stopped and were heard of within the
    /// maximum age: what the RADIUS listener knows again after a restart.
    pub async fn open_counters(&self) -> Result<Vec<OpenCounter>, ServiceError> {
        let mut open = Vec::new();
        for worker in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            let worker = worker.clone();
            tokio::task::spawn_blocking(move || worker.send(Command::OpenCounters { reply: tx }).map_err(|_| ()))
                .await
                .map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?
                .map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?;
            open.extend(rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?);
        }
        Ok(open)
    }

    /// The Prometheus exposition text: counters, latencies and subscriptions
    /// by status (counted by each worker over its own subscriptions).
    pub async fn metrics_text(&self) -> Result<String, ServiceError> {
        let mut totals: Vec<(&'static str, u64)> = Vec::new();
        for worker in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            worker.try_send(Command::Statuses { reply: tx }).map_err(|_| ServiceError::Busy)?;
            for (status, count) in rx.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))? {
                match totals.iter_mut().find(|(s, _)| *s == status) {
                    Some((_, total)) => *total += count,
                    None => totals.push((status, count)),
                }
            }
        }
        totals.sort();
        let mut text = self.inner.metrics.render(&totals);
        for source in self.inner.metric_sources.read().expect("metric sources lock").iter() {
            source(&mut text);
        }
        Ok(text)
    }

    /// Adds a source of metrics to `/metrics` (the RADIUS and Diameter
    /// listeners register theirs).
    pub fn add_metrics(&self, source: MetricSource) {
        self.inner.metric_sources.write().expect("metric sources lock").push(source);
    }

    /// Moves the simulated clock to `to`, running every boundary on the way
    /// in every worker before returning.
    pub async fn set_clock(&self, to: Instant) -> Result<Instant, ServiceError> {
        if !self.inner.clock.is_simulated() {
            return Err(ServiceError::Invalid { field: "now".into(), message: "the clock is the wall clock; start with --clock simulated to move it".into() });
        }
        if !self.inner.clock.set(to) {
            return Err(ServiceError::Invalid {
                field: "now".into(),
                message: format!("the clock cannot move backwards (it is at {} µs)", self.now().micros()),
            });
        }
        let mut waits = Vec::new();
        for worker in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            let worker = worker.clone();
            tokio::task::spawn_blocking(move || worker.send(Command::Tick { reply: Some(tx) }).map_err(|_| ()))
                .await
                .map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?
                .map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?;
            waits.push(rx);
        }
        for wait in waits {
            wait.await.map_err(|_| ServiceError::Unavailable("a shard worker has stopped".into()))?;
        }
        let (tx, rx) = oneshot::channel();
        self.write(Write::Batch { batch: Batch { clock_micros: Some(to.micros()), ..Batch::default() }, done: tx }).await?;
        rx.await.map_err(|_| ServiceError::Unavailable("the store writer has stopped".into()))?;
        Ok(self.now())
    }
}
