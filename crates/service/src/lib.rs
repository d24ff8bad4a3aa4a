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
mod keys;
pub mod ledger;
mod retention;
pub mod notify;
pub mod orders;
mod sender;
pub mod metrics;
mod plans;
mod ownership;
pub mod remote;
mod replay;
mod start;
pub mod cluster;
mod checkpoint;
#[cfg(test)]
mod tests;
mod worker;
mod writer;

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

use rollover_core::engine::Event;
use rollover_core::{Country, Instant};
use rollover_store::{Batch, EventBody, Identifiers, PlanRow, Store, SubscriptionRow};
use tokio::sync::oneshot;

pub use api::*;
pub use clock::{Clock, wall_micros};
pub use checkpoint::MARK_EVERY;

/// Whether the crash tests asked the process to stop at `name`
/// (`ROLLOVER_FAILPOINT`); see docs/history.md. Read where a crash must
/// leave the store consistent.
pub(crate) fn failpoint(name: &str) -> bool {
    std::env::var("ROLLOVER_FAILPOINT").is_ok_and(|v| v == name)
}
pub use config::Config;
pub use ledger::{Archived, LedgerPage, LedgerQuery, Line, LineFilter};
pub use retention::Retention;
pub use rollover_store::PeriodTotals;
pub use error::ServiceError;

/// Cluster mode: the deepest a list of subscriptions reaches (`offset +
/// limit`). Each node sends the first this many of its own, so an answer
/// stays well under a NATS message (1 MiB) whatever the ids.
pub const CLUSTER_LIST_DEPTH: usize = 2000;
pub use ownership::Ownership;
pub use plans::{PlanVersion, Plans, SharedPlans};
pub use rollover_store::Identifiers as SubscriptionIdentifiers;
pub use rollover_store::{ProfileCount, ProfileRow};

use worker::{Command, Committed};
use writer::Write;

/// Most plan versions the catalog holds; an upload past it is refused.
pub const MAX_PLAN_VERSIONS: usize = 10_000;

/// Number of logical shards; a subscription's shard never changes.
pub use rollover_store::SHARDS;

pub use rollover_store::shard_of;

/// What a plan document upload stored: `(id, version)` of each plan and
/// each add-on, unchanged ones with the version they had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    pub plans: Vec<(String, u32)>,
    pub addons: Vec<(String, u32)>,
}

/// Purchases an import sends to the workers at once.
pub const IMPORT_CHUNK: usize = 1024;

/// What importing one subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Created,
    /// It was there, with the same plan and identifiers.
    Unchanged,
}

/// What buying an add-on did.
#[derive(Debug, Clone)]
pub struct AddonPurchase {
    pub addon: rollover_core::Addon,
    /// The same purchase was made before: nothing was bought now.
    pub repeated: bool,
    pub outcome: EventOutcome,
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
    plan_upload: Arc<tokio::sync::Mutex<()>>,
    /// Held across one add-on purchase, from its idempotency check to its commit.
    addon_purchases: tokio::sync::Mutex<()>,
    plan_rows: Arc<RwLock<Vec<PlanRow>>>,
    workers: Vec<SyncSender<Command>>,
    writer: SyncSender<Write>,
    reader: Mutex<Box<dyn Store>>,
    identifiers: Arc<Mutex<HashMap<String, String>>>,
    /// Open sessions: session id to subscription id.
    sessions: Mutex<HashMap<String, String>>,
    metrics: Arc<metrics::Metrics>,
    /// More exposition text, from the network listeners.
    metric_sources: RwLock<Vec<MetricSource>>,
    /// Subscriptions in the store when the service started.
    subscription_count: std::sync::atomic::AtomicUsize,
    /// Cluster mode: this node's leases and the shards it serves.
    membership: Option<cluster::Membership>,
    /// Cluster mode: how calls reach the node serving a shard.
    transport: std::sync::OnceLock<Arc<dyn remote::Transport>>,
}

/// Appends metrics in the Prometheus text format.
pub type MetricSource = Box<dyn Fn(&mut String) + Send + Sync>;

/// How many of `summaries` are on each plan version.
pub(crate) fn count_by_version(summaries: &[SubscriptionSummary]) -> std::collections::BTreeMap<(String, u32), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for summary in summaries {
        *counts.entry((summary.plan.id.clone(), summary.plan.version)).or_insert(0) += 1;
    }
    counts
}

pub(crate) fn identifier_keys(identifiers: &Identifiers) -> Vec<(&'static str, String)> {
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
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    pub fn clock_is_simulated(&self) -> bool {
        self.inner.clock.is_simulated()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Cluster mode: the shards this node serves and their epochs (`None`
    /// for a node that runs alone).
    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.inner.membership.as_ref().map(|m| &m.ownership)
    }

    /// Cluster mode: this node's id.
    pub fn node_id(&self) -> Option<&str> {
        self.inner.membership.as_ref().map(|m| m.node.as_str())
    }

    /// Cluster mode: the nodes, every shard's lease, and what this node
    /// serves (`None` for a node that runs alone).
    pub async fn cluster_status(&self) -> Result<Option<cluster::ClusterStatus>, ServiceError> {
        if self.inner.membership.is_none() {
            return Ok(None);
        }
        let service = self.clone();
        tokio::task::spawn_blocking(move || service.inner.membership.as_ref().map(|m| m.status()).transpose().map_err(ServiceError::from))
            .await
            .map_err(|_| ServiceError::Stopped { what: "the lease reader" })?
    }

    /// Cluster mode: how many usage records wait in the stream for their
    /// owners, in all and by shard (`rollover-cluster` reads it every few
    /// seconds).
    pub fn report_stream_lag(&self, messages: u64, by_shard: std::collections::HashMap<u32, u64>) {
        if let Some(membership) = &self.inner.membership {
            membership.stats.stream_lag.store(messages, std::sync::atomic::Ordering::Relaxed);
            *membership.stats.shard_lag.lock().expect("shard lag lock") = Some(by_shard);
        }
    }

    /// Cluster mode: the lease manager's counters.
    pub fn cluster_stats(&self) -> Option<&cluster::Stats> {
        self.inner.membership.as_ref().map(|m| &*m.stats)
    }

    /// Cluster mode: calls `listener` whenever this node starts or stops
    /// serving a shard (with the shards served now, at once).
    pub fn on_shard_change(&self, listener: cluster::ShardListener) {
        if let Some(membership) = &self.inner.membership {
            // Under the lock, so that no change falls between the two.
            let mut listeners = membership.listeners.write().expect("listeners lock");
            for (shard, _) in membership.ownership.served() {
                listener(shard, true);
            }
            listeners.push(listener);
        }
    }

    /// Cluster mode: gives every shard up (each committed and released for
    /// another node to take at once) and leaves the cluster. A graceful
    /// stop calls this; a node that runs alone has nothing to do.
    pub fn leave_cluster(&self) {
        if let Some(membership) = &self.inner.membership {
            membership.leave();
        }
    }

    /// Cluster mode: adds the plans other nodes uploaded to the catalog now
    /// (the lease manager also does every `lease_ttl / 6`).
    pub async fn refresh_catalog(&self) -> Result<(), ServiceError> {
        if self.inner.membership.is_none() {
            return Ok(());
        }
        let service = self.clone();
        tokio::task::spawn_blocking(move || {
            let catalog = start::SharedCatalog { plans: service.inner.plans.clone(), rows: service.inner.plan_rows.clone(), upload: service.inner.plan_upload.clone() };
            catalog.refresh(service.inner.reader.lock().expect("reader lock").as_mut()).map(drop)
        })
        .await
        .map_err(|_| ServiceError::Stopped { what: "the store reader" })?
    }

    /// A snapshot of the catalog: holding it blocks nobody.
    pub fn plans(&self) -> Arc<Plans> {
        self.inner.plans.snapshot()
    }

    /// Whether the store holds nothing yet (no plan, no subscription).
    pub fn is_empty(&self) -> bool {
        self.plans().catalog.plans().is_empty() && self.inner.subscription_count.load(std::sync::atomic::Ordering::Relaxed) == 0
    }

    pub fn plan_document(&self, id: &str, version: u32) -> Option<String> {
        let rows = self.inner.plan_rows.read().expect("plan rows lock");
        rows.iter().find(|r| r.id == id && r.version == version).map(|r| r.document.clone())
    }

    fn worker_for(&self, subscription: &str) -> &SyncSender<Command> {
        &self.inner.workers[shard_of(subscription) as usize % self.inner.workers.len()]
    }

    /// Sends a command to the worker that owns `subscription`; a full queue
    /// answers [`ServiceError::Busy`] at once.
    fn send(&self, subscription: &str, command: Command) -> Result<(), ServiceError> {
        match self.worker_for(subscription).try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ServiceError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ServiceError::worker_stopped()),
        }
    }

    /// Sends the command `make` builds around a reply channel to the worker
    /// that owns `subscription`, and waits for the worker's answer.
    async fn ask<T>(&self, subscription: &str, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.send(subscription, make(tx))?;
        rx.await.map_err(|_| ServiceError::worker_stopped())
    }

    /// Sends the command `make` builds to every worker, waiting for room in
    /// full queues, and gathers the answers in worker order.
    async fn ask_every_worker<T: Send + 'static>(&self, make: impl Fn(oneshot::Sender<T>) -> Command) -> Result<Vec<T>, ServiceError> {
        let mut replies = Vec::with_capacity(self.inner.workers.len());
        for worker in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            send_waiting(worker.clone(), make(tx)).await?;
            replies.push(rx);
        }
        let mut answers = Vec::with_capacity(replies.len());
        for reply in replies {
            answers.push(reply.await.map_err(|_| ServiceError::worker_stopped())?);
        }
        Ok(answers)
    }

    async fn write(&self, write: Write) -> Result<(), ServiceError> {
        match self.inner.writer.try_send(write) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ServiceError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ServiceError::writer_stopped()),
        }
    }

    /// Adds plans from a plan document (TOML). An unchanged plan keeps its
    /// version; a changed one gets the next. Returns `(id, version)` per plan.
    /// Uploads run one at a time, so that concurrent uploads of one plan id
    /// get consecutive versions; readers are never blocked by one.
    pub async fn add_plans(&self, document: &str) -> Result<Uploaded, ServiceError> {
        // Another node's upload of the same plan takes the next version first.
        self.refresh_catalog().await?;
        let _upload = self.inner.plan_upload.lock().await;
        let current = self.plans();
        let currency_of = |id: &str| current.latest(id).map(|p| current.catalog.get(p.ix).currency);
        let parsed = rollover_terms::parse_document("body", document, Some(&currency_of)).map_err(|e| ServiceError::InvalidPlan { field: e.field.clone(), message: e.to_string() })?;
        let now = self.now();
        let mut next: Option<Plans> = None;
        let mut rows = Vec::new();
        let mut result = Uploaded::default();
        for (plan, text) in parsed.plans {
            let catalog = next.as_ref().unwrap_or(&current);
            match catalog.latest(&plan.id) {
                Some(latest) if catalog.catalog.get(latest.ix) == &plan => result.plans.push((plan.id.clone(), latest.version)),
                latest => {
                    if catalog.catalog.plans().len() >= MAX_PLAN_VERSIONS {
                        return Err(ServiceError::CatalogFull);
                    }
                    let version = latest.map_or(1, |l| l.version + 1);
                    rows.push(PlanRow { id: plan.id.clone(), version, document: text, position: 0, created_at_micros: now.micros() });
                    result.plans.push((plan.id.clone(), version));
                    next.get_or_insert_with(|| (*current).clone()).insert(version, plan);
                }
            }
        }
        for (addon, text) in parsed.addons {
            let catalog = next.as_ref().unwrap_or(&current);
            match catalog.addon(&addon.id) {
                Some((version, held)) if *held == addon => result.addons.push((addon.id.clone(), version)),
                held => {
                    let version = held.map_or(1, |(v, _)| v + 1);
                    let id = format!("{}{}", start::ADDON_ROW_PREFIX, addon.id);
                    rows.push(PlanRow { id, version, document: text, position: 0, created_at_micros: now.micros() });
                    result.addons.push((addon.id.clone(), version));
                    next.get_or_insert_with(|| (*current).clone()).insert_addon(version, addon);
                }
            }
        }
        let Some(next) = next else { return Ok(result) };
        let (tx, rx) = oneshot::channel();
        self.write(Write::Plans { rows: rows.clone(), done: tx }).await?;
        rx.await.map_err(|_| ServiceError::writer_stopped())??;
        self.inner.plans.publish(next);
        self.inner.plan_rows.write().expect("plan rows lock").extend(rows);
        Ok(result)
    }

    /// A purchase another node forwarded: made here, never forwarded again.
    pub(crate) async fn create_here(&self, new: NewSubscription) -> Result<String, ServiceError> {
        match self.inner.membership.as_ref().map(|m| m.ownership.serving(shard_of(&new.id))) {
            Some(false) => Err(ServiceError::ShardMoving { shard: shard_of(&new.id) }),
            _ => self.create_subscription(new).await,
        }
    }

    /// The purchase: creates a subscription on the newest version of `plan`.
    pub async fn create_subscription(&self, new: NewSubscription) -> Result<String, ServiceError> {
        if self.plans().latest(&new.plan).is_none() {
            // A plan just uploaded at another node of a cluster.
            self.refresh_catalog().await?;
        }
        let plan = self.plans().latest(&new.plan).ok_or_else(|| ServiceError::UnknownReference { field: "plan", message: format!("no plan \"{}\" in the catalog", new.plan) })?;
        let keys = identifier_keys(&new.identifiers);
        self.forget_released(&keys, &new.id).await?;
        // The same purchase again (a retry after an answer was lost): the
        // owner says whether the first is committed; its identifiers stay.
        let mut again = false;
        {
            let mut taken = self.inner.identifiers.lock().expect("identifier lock");
            for (field, key) in &keys {
                match taken.get(key) {
                    Some(owner) if *owner == new.id => again = true,
                    Some(owner) => return Err(ServiceError::IdentifierTaken { field, owner: owner.clone() }),
                    None => {}
                }
            }
            if !again {
                for (_, key) in &keys {
                    taken.insert(key.clone(), new.id.clone());
                }
            }
        }
        let created = match self.remote_shard(&new.id) {
            Some(shard) => {
                let i = &new.identifiers;
                let call = remote::Call::Create { id: new.id.clone(), plan: new.plan.clone(), at: new.at, identifiers: [i.iccid.clone(), i.imsi.clone(), i.msisdn.clone(), i.external_id.clone()] };
                self.forward(shard, call).await.map(|_| None)
            }
            None => {
                let row = SubscriptionRow { id: new.id.clone(), identifiers: new.identifiers.clone(), created_at_micros: self.now().micros() };
                self.ask(&new.id, |reply| Command::Create { row, plan, at: new.at, reply }).await.and_then(|created| created).map(Some)
            }
        };
        match created {
            Ok(committed) => {
                wait_commit(committed).await?;
                Ok(new.id)
            }
            Err(e) => {
                // Not bought: the identifiers are free again, unless they
                // are an existing purchase's.
                if !again && !matches!(e, ServiceError::SubscriptionExists { .. }) {
                    let mut taken = self.inner.identifiers.lock().expect("identifier lock");
                    for (_, key) in &keys {
                        taken.remove(key);
                    }
                }
                Err(e)
            }
        }
    }

    /// Buys many subscriptions, as an operator moving an existing base
    /// does: in order, a result each. Idempotent by id: one that exists
    /// with the same plan and identifiers is `Unchanged`; with others, it is
    /// `SubscriptionExists`. Purchases go to the workers [`IMPORT_CHUNK`] at
    /// a time, so they share group commits.
    pub async fn import_subscriptions(&self, list: Vec<NewSubscription>) -> Vec<Result<Imported, ServiceError>> {
        let mut results = Vec::with_capacity(list.len());
        let mut chunk: Vec<NewSubscription> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for new in list {
            // A line that shares an id or identifier with an earlier one of
            // the chunk waits for it: the earlier line wins, as in the file.
            let mut keys = identifier_keys(&new.identifiers).into_iter().map(|(_, key)| key).collect::<Vec<_>>();
            keys.push(format!("id={}", new.id));
            if chunk.len() == IMPORT_CHUNK || keys.iter().any(|k| seen.contains(k)) {
                results.extend(self.import_chunk(std::mem::take(&mut chunk)).await);
                seen.clear();
            }
            seen.extend(keys);
            chunk.push(new);
        }
        results.extend(self.import_chunk(chunk).await);
        results
    }

    /// Buys a chunk of subscriptions at once; results in order.
    async fn import_chunk(&self, chunk: Vec<NewSubscription>) -> Vec<Result<Imported, ServiceError>> {
        let count = chunk.len();
        let mut set = tokio::task::JoinSet::new();
        for (index, new) in chunk.into_iter().enumerate() {
            let service = self.clone();
            set.spawn(async move { (index, service.import_one(new).await) });
        }
        let mut results: Vec<Option<Result<Imported, ServiceError>>> = (0..count).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((index, result)) => results[index] = Some(result),
                Err(_) => tracing::error!("an import task panicked"),
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Err(ServiceError::Stopped { what: "an import task" }))).collect()
    }

    async fn import_one(&self, new: NewSubscription) -> Result<Imported, ServiceError> {
        let (id, plan, identifiers) = (new.id.clone(), new.plan.clone(), new.identifiers.clone());
        let mut attempt = 0;
        loop {
            let new = NewSubscription { id: id.clone(), plan: plan.clone(), at: new.at, identifiers: identifiers.clone() };
            match self.create_subscription(new).await {
                Ok(_) => return Ok(Imported::Created),
                Err(ServiceError::SubscriptionExists { .. }) => return self.same_as_stored(&id, &plan, &identifiers).await,
                Err(ServiceError::IdentifierTaken { owner, .. }) if owner == id => return self.same_as_stored(&id, &plan, &identifiers).await,
                // A full queue: wait a moment rather than refuse a line.
                Err(ServiceError::Busy) if attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn same_as_stored(&self, id: &str, plan: &str, identifiers: &Identifiers) -> Result<Imported, ServiceError> {
        let (stored, _) = self.identifiers(id).await?;
        let bought = self.balance(id).await?.plan.id;
        if bought == plan && stored == *identifiers { Ok(Imported::Unchanged) } else { Err(ServiceError::SubscriptionExists { id: id.to_string() }) }
    }

    pub async fn apply_event(&self, subscription: &str, event: LifecycleEvent, at: Option<Instant>) -> Result<EventOutcome, ServiceError> {
        self.apply_keyed(subscription, event, at, None).await
    }

    /// Buys add-on `addon` for `subscription` now: its grant and its fee.
    /// `purchase` is the idempotency key: the same purchase again answers
    /// what the first did and buys nothing; the same key for another add-on
    /// is refused. Purchases run one at a time.
    pub async fn buy_addon(&self, subscription: &str, purchase: &str, addon: &str) -> Result<AddonPurchase, ServiceError> {
        let _one_at_a_time = self.inner.addon_purchases.lock().await;
        let plans = self.plans();
        let (_, held) = plans.addon(addon).ok_or_else(|| ServiceError::UnknownReference { field: "addon", message: format!("no add-on \"{addon}\" in the catalog") })?;
        let held = held.clone();
        let balance = self.balance(subscription).await?;
        let plan = plans.catalog.get(balance.plan.ix);
        held.fits(plan).map_err(|message| ServiceError::Invalid { field: "addon", message })?;
        let key = format!("#addon:{purchase}");
        let (id, wanted) = (subscription.to_string(), key.clone());
        let earlier = self
            .read_store(move |store| Ok(store.events_of(&id)?.into_iter().find(|e| e.key.as_deref() == Some(wanted.as_str()))))
            .await?;
        if let Some(earlier) = earlier {
            return match earlier.body {
                EventBody::Addon { addon: bought, .. } if bought == addon => Ok(AddonPurchase { addon: held, repeated: true, outcome: EventOutcome::Applied }),
                _ => Err(ServiceError::PurchaseConflict { id: purchase.to_string() }),
            };
        }
        let expires = held.expiry(self.now().max(balance.at), &plan.zone);
        let event = LifecycleEvent::Addon { addon: held.id.clone(), kind: held.kind, bytes: held.bytes, expires, price_minor: held.price_minor };
        let outcome = self.apply_keyed(subscription, event, None, Some(key)).await?;
        Ok(AddonPurchase { addon: held, repeated: false, outcome })
    }

    async fn apply_keyed(&self, subscription: &str, event: LifecycleEvent, at: Option<Instant>, key: Option<String>) -> Result<EventOutcome, ServiceError> {
        if let Some(shard) = self.remote_shard(subscription) {
            return match self.forward(shard, remote::Call::Event { subscription: subscription.to_string(), event, at, key }).await? {
                remote::Answer::Event(outcome) => Ok(outcome),
                _ => Err(ServiceError::ShardMoving { shard }),
            };
        }
        self.apply_keyed_here(subscription, event, at, key).await
    }

    pub(crate) async fn apply_keyed_here(&self, subscription: &str, event: LifecycleEvent, at: Option<Instant>, key: Option<String>) -> Result<EventOutcome, ServiceError> {
        let (event, body) = match event {
            LifecycleEvent::Install => (Event::Install, EventBody::Install),
            LifecycleEvent::FirstUse => (Event::FirstUse, EventBody::FirstUse),
            LifecycleEvent::Suspend => (Event::Suspend, EventBody::Suspend),
            LifecycleEvent::Resume => (Event::Resume, EventBody::Resume),
            LifecycleEvent::Cancel => (Event::Cancel, EventBody::Cancel),
            LifecycleEvent::Grant { kind, bytes, expires } => {
                (Event::Grant { kind, bytes, expires }, EventBody::Grant { kind: kind.name(), bytes, expires_micros: replay::expiry_micros(expires) })
            }
            LifecycleEvent::Addon { addon, kind, bytes, expires, price_minor } => (
                Event::Addon { kind, bytes, expires, price_minor },
                EventBody::Addon { addon, kind: kind.name(), bytes, expires_micros: replay::expiry_micros(expires), price_minor },
            ),
            LifecycleEvent::Refund { minor, reason } => (Event::Refund { minor }, EventBody::Refund { minor, reason }),
            LifecycleEvent::ChangePlan(id) => {
                let plan = self.plans().latest(&id).ok_or_else(|| ServiceError::UnknownReference { field: "change_plan", message: format!("no plan \"{id}\" in the catalog") })?;
                (Event::ChangePlan(plan.ix), EventBody::ChangePlan { plan_id: plan.id, plan_version: plan.version })
            }
        };
        let id = subscription.to_string();
        let (outcome, committed) = self.ask(subscription, |reply| Command::Event { id, event, body, at, key, reply }).await??;
        wait_commit(committed).await?;
        Ok(outcome)
    }

    /// Rates a batch of usage records; answers after every accepted record is
    /// committed. Results are in the order of `records`.
    pub async fn record_usage(&self, records: Vec<UsageRecord>) -> Result<Vec<UsageResult>, ServiceError> {
        if self.inner.transport.get().is_none() || records.iter().all(|r| self.remote_shard(&r.subscription).is_none()) {
            return self.record_usage_here(records).await;
        }
        // Cluster mode: the records of shards served here are rated here,
        // the others at their owners, a call per shard, all at once.
        let count = records.len();
        let mut here: Vec<(usize, UsageRecord)> = Vec::new();
        let mut away: Vec<(u32, Vec<(usize, UsageRecord)>)> = Vec::new();
        for (index, record) in records.into_iter().enumerate() {
            match self.remote_shard(&record.subscription) {
                None => here.push((index, record)),
                Some(shard) => match away.iter_mut().find(|(s, list)| *s == shard && list.len() < remote::RECORDS_PER_CALL) {
                    Some((_, list)) => list.push((index, record)),
                    None => away.push((shard, vec![(index, record)])),
                },
            }
        }
        let calls = away.into_iter().map(|(shard, list)| {
            let (indexes, records): (Vec<usize>, Vec<UsageRecord>) = list.into_iter().unzip();
            async move {
                let mut records = records;
                let mut indexes = indexes;
                let mut done: Vec<(usize, UsageResult)> = Vec::new();
                if let Some(transport) = self.inner.transport.get()
                    && let Some(streamed) = transport.usage(shard, records.clone()).await
                {
                    let streamed = streamed?;
                    if streamed.len() != indexes.len() {
                        return Err(ServiceError::ShardMoving { shard });
                    }
                    // What the stream answered; the rest is asked directly.
                    let (mut left_records, mut left_indexes) = (Vec::new(), Vec::new());
                    for ((index, record), result) in indexes.into_iter().zip(records).zip(streamed) {
                        match result {
                            Some(result) => done.push((index, result)),
                            None => {
                                left_records.push(record);
                                left_indexes.push(index);
                            }
                        }
                    }
                    if left_records.is_empty() {
                        return Ok(done);
                    }
                    (records, indexes) = (left_records, left_indexes);
                }
                match self.forward(shard, remote::Call::Usage(records)).await? {
                    remote::Answer::Usage(results) if results.len() == indexes.len() => {
                        done.extend(indexes.into_iter().zip(results));
                        Ok(done)
                    }
                    _ => Err(ServiceError::ShardMoving { shard }),
                }
            }
        });
        let (indexes, local): (Vec<usize>, Vec<UsageRecord>) = here.into_iter().unzip();
        let (local, remote) = tokio::join!(async { if local.is_empty() { Ok(Vec::new()) } else { self.record_usage_here(local).await } }, futures_join_all(calls));
        let mut results = vec![UsageResult::Duplicate; count];
        for (index, result) in indexes.into_iter().zip(local?) {
            results[index] = result;
        }
        for part in remote {
            for (index, result) in part? {
                results[index] = result;
            }
        }
        Ok(results)
    }

    /// [`Service::record_usage`] for the shards served here (and a node
    /// running alone): never forwarded. Records of a shard not served here
    /// answer [`ServiceError::ShardMoving`].
    pub async fn record_usage_here(&self, records: Vec<UsageRecord>) -> Result<Vec<UsageResult>, ServiceError> {
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
                Ok(()) => {}
                Err(TrySendError::Full(_)) if replies.is_empty() => return Err(ServiceError::Busy),
                // Part of the batch is already on its way: wait for room
                // rather than answer for only part of it.
                Err(TrySendError::Full(command)) => send_waiting(self.inner.workers[n].clone(), command).await?,
                Err(TrySendError::Disconnected(_)) => return Err(ServiceError::worker_stopped()),
            }
            replies.push(rx);
        }
        let mut results = vec![UsageResult::Duplicate; count];
        for reply in replies {
            let (rated, committed) = reply.await.map_err(|_| ServiceError::worker_stopped())??;
            wait_commit(committed).await?;
            for (index, result) in rated {
                results[index] = result;
            }
        }
        Ok(results)
    }

    pub async fn balance(&self, subscription: &str) -> Result<Balance, ServiceError> {
        if let Some(shard) = self.remote_shard(subscription) {
            return match self.forward(shard, remote::Call::Balance(subscription.to_string())).await? {
                remote::Answer::Balance(balance) => self.local_balance(balance),
                _ => Err(ServiceError::ShardMoving { shard }),
            };
        }
        self.balance_here(subscription).await
    }

    pub(crate) async fn balance_here(&self, subscription: &str) -> Result<Balance, ServiceError> {
        let id = subscription.to_string();
        self.ask(subscription, |reply| Command::Balance { id, reply }).await?
    }

    /// The rest of the current period at `daily_bytes` a day from now, as
    /// the engine rates it on a copy ([`rollover_core::Subscription::project`]);
    /// `None` before the start and after the end.
    pub async fn projection(&self, subscription: &str, daily_bytes: u64) -> Result<Option<rollover_core::Projection>, ServiceError> {
        if let Some(shard) = self.remote_shard(subscription) {
            return match self.forward(shard, remote::Call::Projection { subscription: subscription.to_string(), daily_bytes }).await? {
                remote::Answer::Projection(projection) => Ok(projection),
                _ => Err(ServiceError::ShardMoving { shard }),
            };
        }
        self.projection_here(subscription, daily_bytes).await
    }

    pub(crate) async fn projection_here(&self, subscription: &str, daily_bytes: u64) -> Result<Option<rollover_core::Projection>, ServiceError> {
        let id = subscription.to_string();
        self.ask(subscription, |reply| Command::Project { id, daily_bytes, reply }).await?
    }

    /// The subscription's whole ledger, recomputed from its stored events
    /// (the same engine, the same order), brought up to the clock's now. Its
    /// cost follows the subscription's life: pages use [`Service::ledger_page`]
    /// and [`Service::ledger_since`].
    pub async fn ledger(&self, subscription: &str) -> Result<Ledger, ServiceError> {
        self.ledger_from(subscription, None).await
    }

    /// The ledger from at least `from` to now (it may begin a little
    /// earlier): replayed from the last ledger mark before `from`, so its
    /// cost follows the window, not the subscription's life.
    pub async fn ledger_since(&self, subscription: &str, from: Instant) -> Result<Ledger, ServiceError> {
        self.ledger_from(subscription, Some(from)).await
    }

    async fn ledger_from(&self, subscription: &str, from: Option<Instant>) -> Result<Ledger, ServiceError> {
        let (service, id) = (self.clone(), subscription.to_string());
        tokio::task::spawn_blocking(move || {
            let (plans, now, skew) = (service.plans(), service.now(), service.inner.config.future_skew_micros);
            let mut reader = service.inner.reader.lock().expect("reader lock");
            ledger::since(reader.as_mut(), &plans, &id, from, now, skew)
        })
        .await
        .map_err(|_| ServiceError::Stopped { what: "the ledger reader" })?
    }

    /// A page of the ledger by offset, or the lines of a window that pass a
    /// filter (see [`ledger`](crate::ledger)): it costs the lines it returns
    /// and at most [`MARK_EVERY`](crate::MARK_EVERY) events before them and
    /// after the newest mark.
    pub async fn ledger_page(&self, subscription: &str, query: LedgerQuery) -> Result<LedgerPage, ServiceError> {
        let (service, id) = (self.clone(), subscription.to_string());
        tokio::task::spawn_blocking(move || {
            let (plans, now, skew) = (service.plans(), service.now(), service.inner.config.future_skew_micros);
            let mut reader = service.inner.reader.lock().expect("reader lock");
            ledger::page(reader.as_mut(), &plans, &id, &query, now, skew)
        })
        .await
        .map_err(|_| ServiceError::Stopped { what: "the ledger reader" })?
    }

    /// Opens, updates or ends an online charging session. A session's
    /// reservation is held in memory by the subscription's worker: bytes it
    /// holds are not available to other sessions of the subscription. Usage
    /// reported by a session is rated and committed like any usage record
    /// (idempotency key `#session:{request_number}:{id}`, see `keys.rs`).
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
        self.session_at(session, subscription, op, at, country, true).await
    }

    /// A session step another node forwarded: run here, never forwarded.
    pub(crate) async fn session_here(&self, session: &str, subscription: Option<&str>, op: SessionOp, at: Option<Instant>, country: Option<Country>) -> Result<SessionAnswer, ServiceError> {
        self.session_at(session, subscription, op, at, country, false).await
    }

    async fn session_at(&self, session: &str, subscription: Option<&str>, op: SessionOp, at: Option<Instant>, country: Option<Country>, may_forward: bool) -> Result<SessionAnswer, ServiceError> {
        let owner = match (op, subscription) {
            // A later step that names its subscription: forwarded by the
            // node that knows the session, or from a Gy peer that moved to
            // this node when its own went away.
            (SessionOp::Update { .. } | SessionOp::End { .. }, Some(subscription)) => {
                self.inner.sessions.lock().expect("session lock").entry(session.to_string()).or_insert_with(|| subscription.to_string()).clone()
            }
            _ => self.session_owner(session, subscription, op)?,
        };
        let (subscription, name) = (owner.clone(), session.to_string());
        let answer = match self.remote_shard(&owner).filter(|_| may_forward) {
            Some(shard) => {
                // The owner learns the session's subscription with each step,
                // so that later steps may reach it through any node.
                let call = remote::Call::Session { session: name, subscription: Some(subscription), op, at, country };
                match self.forward(shard, call).await {
                    Ok(remote::Answer::Session(answer)) => Ok((answer, None)),
                    Ok(_) => Err(ServiceError::ShardMoving { shard }),
                    Err(error) => Err(error),
                }
            }
            None => self.ask(&owner, |reply| Command::Session { subscription, session: name, op, at, country, reply }).await.and_then(|answer| answer),
        };
        // At the start the subscription is named by the body, not the path.
        let answer = match (answer, op) {
            (Err(ServiceError::UnknownSubscription { id }), SessionOp::Start { .. }) => {
                Err(ServiceError::UnknownReference { field: "subscription", message: format!("no subscription \"{id}\"") })
            }
            (answer, _) => answer,
        };
        let forget = matches!(
            (&answer, op),
            (Err(_), SessionOp::Start { .. }) | (Ok(_), SessionOp::End { .. }) | (Err(ServiceError::UnknownSession { .. } | ServiceError::UnknownSubscription { .. } | ServiceError::UnknownReference { .. }), _)
        );
        if forget {
            self.inner.sessions.lock().expect("session lock").remove(session);
        }
        let (answer, committed) = answer?;
        wait_commit(committed).await?;
        Ok(answer)
    }

    /// The subscription a session belongs to: given at the start (and then
    /// remembered), looked up for every later step.
    fn session_owner(&self, session: &str, subscription: Option<&str>, op: SessionOp) -> Result<String, ServiceError> {
        let mut sessions = self.inner.sessions.lock().expect("session lock");
        match (op, subscription) {
            (SessionOp::Start { .. }, Some(subscription)) => {
                if sessions.contains_key(session) {
                    return Err(ServiceError::SessionOpen { id: session.to_string() });
                }
                sessions.insert(session.to_string(), subscription.to_string());
                Ok(subscription.to_string())
            }
            (SessionOp::Start { .. }, None) => Err(ServiceError::Invalid { field: "subscription", message: "is required".into() }),
            _ => sessions.get(session).cloned().ok_or_else(|| ServiceError::UnknownSession { id: session.to_string() }),
        }
    }

    /// Subscriptions that pass `filter`, sorted by id: `limit` of them from
    /// `offset`, and how many pass in all. Every worker is asked, so this
    /// costs a pass over all subscriptions. In cluster mode, every node is
    /// asked for its shards' (see [`Service::list_cluster`]), and a list
    /// reaches at most [`CLUSTER_LIST_DEPTH`] deep (`offset + limit`).
    pub async fn subscriptions(&self, filter: SubscriptionFilter, offset: usize, limit: usize) -> Result<(Vec<SubscriptionSummary>, usize), ServiceError> {
        if self.lists_cluster() {
            let depth = offset.saturating_add(limit);
            if depth > CLUSTER_LIST_DEPTH {
                return Err(ServiceError::Invalid { field: "offset", message: format!("offset + limit is {depth}; in cluster mode a list reaches at most {CLUSTER_LIST_DEPTH} deep: narrow it by status or plan") });
            }
            let (found, whole) = self.list_cluster(&filter, depth).await?;
            return Ok((found.into_iter().skip(offset).collect(), whole.total));
        }
        let lists = self.ask_every_worker(|reply| Command::List { filter: filter.clone(), reply }).await?;
        let total = lists.iter().map(Vec::len).sum();
        let mut all: Vec<SubscriptionSummary> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((all.into_iter().skip(offset).take(limit).collect(), total))
    }

    /// How many subscriptions are on each plan version (of the whole
    /// cluster, in cluster mode).
    pub async fn plan_counts(&self) -> Result<HashMap<(String, u32), usize>, ServiceError> {
        if self.lists_cluster() {
            let (_, whole) = self.list_cluster(&SubscriptionFilter::default(), 0).await?;
            return Ok(whole.by_version.into_iter().map(|(plan, version, n)| ((plan, version), n)).collect());
        }
        let lists = self.ask_every_worker(|reply| Command::List { filter: SubscriptionFilter::default(), reply }).await?;
        Ok(count_by_version(&lists.concat()).into_iter().collect())
    }

    /// Whether lists are of the whole cluster: cluster mode, with a way to
    /// reach the other nodes.
    pub fn lists_cluster(&self) -> bool {
        self.inner.membership.is_some() && self.inner.transport.get().is_some()
    }

    /// A subscription's identifiers and when it was created, read from the
    /// store.
    pub async fn identifiers(&self, subscription: &str) -> Result<(SubscriptionIdentifiers, Instant), ServiceError> {
        let service = self.clone();
        let id = subscription.to_string();
        tokio::task::spawn_blocking(move || {
            let row = service.inner.reader.lock().expect("reader lock").subscription(&id)?;
            row.map(|row| (row.identifiers, Instant::from_micros(row.created_at_micros))).ok_or(ServiceError::UnknownSubscription { id })
        })
        .await
        .map_err(|_| ServiceError::Stopped { what: "the store reader" })?
    }

    /// Adds eSIM profiles to the inventory, `available`, in one commit;
    /// answers the ICCIDs that were there already (not added again).
    /// Imports run one at a time.
    pub async fn add_profiles(&self, profiles: Vec<rollover_esim::inventory::NewProfile>) -> Result<Vec<String>, ServiceError> {
        let _one_at_a_time = self.inner.plan_upload.lock().await;
        let now = self.now().micros();
        let rows = profiles
            .into_iter()
            .map(|p| ProfileRow {
                iccid: p.iccid.as_str().to_string(),
                profile_type: p.profile_type,
                imsi: p.imsi,
                msisdn: p.msisdn,
                state: rollover_esim::ProfileState::Available.name().to_string(),
                eid: None,
                matching_id: None,
                updated_at_micros: now,
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        self.write(Write::Profiles { rows, done: tx }).await?;
        Ok(rx.await.map_err(|_| ServiceError::writer_stopped())??)
    }

    /// A page of the inventory (by ICCID), in one state or all; how many in
    /// all; and the counts by state and profile type.
    pub async fn profiles(&self, state: Option<rollover_esim::ProfileState>, limit: usize, offset: usize) -> Result<(Vec<ProfileRow>, u64, Vec<ProfileCount>), ServiceError> {
        self.read_store(move |store| {
            let (rows, total) = store.profiles(state.map(|s| s.name()), limit, offset)?;
            Ok((rows, total, store.profile_counts()?))
        })
        .await
    }

    pub async fn profile(&self, iccid: &rollover_esim::Iccid) -> Result<Option<ProfileRow>, ServiceError> {
        let iccid = iccid.as_str().to_string();
        self.read_store(move |store| Ok(store.profile(&iccid)?)).await
    }

    /// Sets a profile's state (and its EID, when known), committed when this
    /// returns; false when no profile has that ICCID.
    pub async fn set_profile_state(&self, iccid: &rollover_esim::Iccid, state: rollover_esim::ProfileState, eid: Option<&str>) -> Result<bool, ServiceError> {
        let (tx, rx) = oneshot::channel();
        let write = Write::ProfileState { iccid: iccid.as_str().to_string(), state: state.name(), eid: eid.map(str::to_string), at_micros: self.now().micros(), done: tx };
        self.write(write).await?;
        Ok(rx.await.map_err(|_| ServiceError::writer_stopped())??)
    }

    /// Runs `work` on the writer's connection, in order with every other
    /// write; answers what it returns.
    pub(crate) async fn write_store<T: Send + 'static>(&self, work: impl FnOnce(&mut dyn rollover_store::Store) -> Result<T, rollover_store::StoreError> + Send + 'static) -> Result<T, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.write(Write::Run(Box::new(move |store| {
            let _ = tx.send(work(store).inspect_err(|e| tracing::error!(error = %e, "a store write failed")));
        })))
        .await?;
        Ok(rx.await.map_err(|_| ServiceError::writer_stopped())??)
    }

    /// Sends a webhook of type `kind` that belongs to no subscription's log
    /// (an order that failed before it bought one), once per `key`.
    pub async fn tell(&self, kind: &'static str, key: &str, subscription: Option<&str>, data: serde_json::Value) -> Result<(), ServiceError> {
        let notify = &self.inner.config.notify;
        if notify.endpoints.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let rows = notify::rows(notify, subscription.unwrap_or(""), vec![notify::Found::keyed(format!("{kind}/{key}"), kind, now, data)], now);
        let (tx, rx) = oneshot::channel();
        self.write(Write::Batch { batch: rollover_store::Batch { notifications: rows, ..rollover_store::Batch::default() }, done: tx, fence: Vec::new() }).await?;
        rx.await.map_err(|_| ServiceError::writer_stopped())?
    }

    /// Runs `read` on the reader's connection, off the async threads.
    async fn read_store<T: Send + 'static>(&self, read: impl FnOnce(&mut dyn rollover_store::Store) -> Result<T, ServiceError> + Send + 'static) -> Result<T, ServiceError> {
        let service = self.clone();
        tokio::task::spawn_blocking(move || read(service.inner.reader.lock().expect("reader lock").as_mut()))
            .await
            .map_err(|_| ServiceError::Stopped { what: "the store reader" })?
    }

    /// Takes the ICCID off a subscription, in the store and in the index of
    /// identifiers, so that its profile can be sold again.
    pub async fn release_iccid(&self, subscription: &str) -> Result<(), ServiceError> {
        let id = subscription.to_string();
        self.write_store(move |store| store.clear_iccid(&id)).await?;
        self.inner.identifiers.lock().expect("identifier lock").retain(|key, owner| !(owner == subscription && key.starts_with("identifiers.iccid=")));
        Ok(())
    }

    /// Cluster mode: of `keys` (see [`identifier_keys`]), forgets those this
    /// node's index gives to a subscription other than `except` that no
    /// longer holds them in the store: an ICCID released at another node (a
    /// cancelled order), which this node would otherwise refuse to sell
    /// again until it restarts. The store is asked only about such keys.
    pub(crate) async fn forget_released(&self, keys: &[(&'static str, String)], except: &str) -> Result<(), ServiceError> {
        if self.inner.membership.is_none() {
            return Ok(());
        }
        let held: Vec<(String, String)> = {
            let taken = self.inner.identifiers.lock().expect("identifier lock");
            keys.iter().filter_map(|(_, key)| taken.get(key).filter(|owner| *owner != except).map(|owner| (key.clone(), owner.clone()))).collect()
        };
        for (key, owner) in held {
            let id = owner.clone();
            let row = self.read_store(move |store| Ok(store.subscription(&id)?)).await?;
            // No row: a purchase on its way to the store, which holds it.
            let still = row.is_none_or(|row| identifier_keys(&row.identifiers).iter().any(|(_, k)| *k == key));
            if !still {
                let mut taken = self.inner.identifiers.lock().expect("identifier lock");
                if taken.get(&key) == Some(&owner) {
                    taken.remove(&key);
                }
            }
        }
        Ok(())
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
        self.note_at(subscription, note, None).await
    }

    async fn note_at(&self, subscription: &str, note: String, webhook: Option<(&'static str, String, serde_json::Value)>) -> Result<(), ServiceError> {
        if let Some(shard) = self.remote_shard(subscription) {
            let webhook = webhook.map(|(kind, key, data)| (kind.to_string(), key, data));
            return self.forward(shard, remote::Call::Note { subscription: subscription.to_string(), note, webhook }).await.map(drop);
        }
        self.note_here(subscription, note, webhook).await
    }

    pub(crate) async fn note_here(&self, subscription: &str, note: String, webhook: Option<(&'static str, String, serde_json::Value)>) -> Result<(), ServiceError> {
        let id = subscription.to_string();
        let committed = self.ask(subscription, |reply| Command::Note { id, note, webhook, reply }).await??;
        wait_commit(Some(committed)).await
    }

    /// [`Service::note`] with a webhook of type `kind` committed with it
    /// (for each configured endpoint), keyed by `discriminator` so that the
    /// same one twice is sent once.
    pub async fn note_and_tell(&self, subscription: &str, note: String, kind: &'static str, discriminator: String, data: serde_json::Value) -> Result<(), ServiceError> {
        self.note_at(subscription, note, Some((kind, discriminator, data))).await
    }

    /// Counter sessions that have not stopped and were heard of within the
    /// maximum age: what the RADIUS listener knows again after a restart.
    pub async fn open_counters(&self) -> Result<Vec<OpenCounter>, ServiceError> {
        Ok(self.ask_every_worker(|reply| Command::OpenCounters { reply }).await?.into_iter().flatten().collect())
    }

    /// The Prometheus exposition text: counters, latencies and subscriptions
    /// by status (counted by each worker over its own subscriptions).
    pub async fn metrics_text(&self) -> Result<String, ServiceError> {
        let mut totals: Vec<(&'static str, u64)> = Vec::new();
        for worker in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            worker.try_send(Command::Statuses { reply: tx }).map_err(|_| ServiceError::Busy)?;
            for (status, count) in rx.await.map_err(|_| ServiceError::worker_stopped())? {
                match totals.iter_mut().find(|(s, _)| *s == status) {
                    Some((_, total)) => *total += count,
                    None => totals.push((status, count)),
                }
            }
        }
        totals.sort();
        let mut text = self.inner.metrics.render(&totals);
        if let Some(membership) = &self.inner.membership {
            cluster::render_metrics(membership, &mut text);
        }
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
            return Err(ServiceError::ClockNotSimulated);
        }
        // One step runs every boundary up to `to` in every subscription:
        // bounded like a backdated purchase is.
        let max_step = self.inner.config.max_backdate_micros;
        if to.micros() > self.now().micros().saturating_add(max_step) {
            let days = max_step / 86_400_000_000;
            return Err(ServiceError::InstantOutOfRange { field: "now", message: format!("is more than {days} days ahead of the clock; move it in steps") });
        }
        if !self.inner.clock.set(to) {
            return Err(ServiceError::ClockBackwards { now_micros: self.now().micros() });
        }
        self.ask_every_worker(|reply| Command::Tick { reply: Some(reply) }).await?;
        let (tx, rx) = oneshot::channel();
        self.write(Write::Batch { batch: Batch { clock_micros: Some(to.micros()), ..Batch::default() }, done: tx, fence: Vec::new() }).await?;
        rx.await.map_err(|_| ServiceError::writer_stopped())??;
        Ok(self.now())
    }
}

/// Sends to a worker whose queue may be full, waiting on a blocking thread
/// for room rather than on the runtime.
async fn send_waiting(worker: SyncSender<Command>, command: Command) -> Result<(), ServiceError> {
    tokio::task::spawn_blocking(move || worker.send(command).map_err(|_| ()))
        .await
        .map_err(|_| ServiceError::worker_stopped())?
        .map_err(|_| ServiceError::worker_stopped())
}

/// Runs the futures together and answers their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future is done")).collect()
}

/// Waits until the rows a worker handed to the writer are committed.
async fn wait_commit(committed: Option<Committed>) -> Result<(), ServiceError> {
    match committed {
        Some(committed) => committed.await.map_err(|_| ServiceError::writer_stopped())?,
        None => Ok(()),
    }
}
