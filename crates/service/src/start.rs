//! Start-up: open the store, read the catalog and the identifiers, start the
//! threads, and rebuild every subscription by replaying the log in commit
//! order through the workers that own them.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use rollover_core::Instant;
use rollover_store::{PlanRow, Store};
use tokio::sync::oneshot;

use crate::plans::{Plans, SharedPlans};
use crate::worker::{Command, Worker};
use crate::writer::{Write, Writer};
use crate::{Clock, Config, Inner, Service, ServiceError, identifier_keys, metrics, sender, shard_of};

fn spawn(name: String, work: impl FnOnce() + Send + 'static) -> Result<(), ServiceError> {
    std::thread::Builder::new().name(name.clone()).spawn(work).map(drop).map_err(|e| ServiceError::Corrupt { message: format!("cannot start the thread {name}: {e}") })
}

/// Records the built-in time-zone database's version in the store, and warns
/// when a restart brings a different one: boundaries already run stay as
/// they were computed, later ones follow the new rules.
fn check_tzdata(store: &mut dyn Store) -> Result<(), ServiceError> {
    let bundled = rollover_core::time::TZDATA_VERSION;
    match store.setting("tzdata")? {
        Some(stored) if stored == bundled => return Ok(()),
        Some(stored) => tracing::warn!(
            stored = %stored,
            bundled,
            "the store was last run with time-zone database {stored}; this binary has {bundled}: local midnights and month starts after now follow {bundled}"
        ),
        None => tracing::info!(bundled, "time-zone database recorded in the store"),
    }
    store.set_setting("tzdata", bundled)?;
    Ok(())
}

impl Service {
    /// Opens the store at `url` (`sqlite://PATH` or `postgres://...`),
    /// rebuilds every subscription from it, and starts the workers and the
    /// writer.
    pub fn start_url(url: &str, clock: Clock, config: Config) -> Result<Service, ServiceError> {
        let (store, reader) = rollover_store::open(url)?;
        let senders = config.notify.endpoints.iter().map(|_| rollover_store::open_secondary(url)).collect::<Result<Vec<_>, _>>()?;
        Service::start(store, reader, senders, clock, config)
    }

    /// Starts on open stores: the writer's, one for reads, and one per
    /// webhook endpoint for its sender thread.
    pub fn start(mut store: Box<dyn Store>, reader: Box<dyn Store>, senders: Vec<Box<dyn Store>>, clock: Clock, config: Config) -> Result<Service, ServiceError> {
        let clock = Arc::new(match (clock, store.clock()?) {
            // A simulated clock resumes where it stopped.
            (Clock::Simulated(_), Some(stored)) => Clock::simulated(Instant::from_micros(stored)),
            (clock, _) => clock,
        });
        check_tzdata(store.as_mut())?;
        let plan_rows = store.load_plans()?;
        let plans = Arc::new(SharedPlans::new(catalog_of(&plan_rows)?));
        let (identifiers, subscription_count) = identifiers_of(store.as_mut())?;
        let metrics = Arc::new(metrics::Metrics::default());
        let notify = (!config.notify.endpoints.is_empty()).then(|| Arc::new(config.notify.clone()));
        let (writer_tx, writer_rx) = sync_channel::<Write>(config.queue_bound);
        let mut workers = Vec::with_capacity(config.workers);
        for n in 0..config.workers.max(1) {
            let (tx, rx) = sync_channel::<Command>(config.queue_bound);
            let worker = Worker::new(n, plans.clone(), clock.clone(), writer_tx.clone(), config.clone(), metrics.clone(), notify.clone());
            spawn(format!("shard-worker-{n}"), move || worker.run(rx))?;
            workers.push(tx);
        }
        replay(store.as_mut(), &workers)?;
        if let Some(notify) = &notify {
            for (endpoint, sender) in senders.into_iter().enumerate().take(notify.endpoints.len()) {
                let (notify, sender_metrics) = (notify.clone(), metrics.clone());
                spawn(format!("webhook-sender-{endpoint}"), move || sender::run(sender, notify, endpoint, sender_metrics))?;
            }
        }
        let index_lag = store.index_lag();
        let writer_metrics = metrics.clone();
        spawn("store-writer".into(), move || Writer::new(store, writer_metrics).run(writer_rx))?;
        let service = Service {
            inner: Arc::new(Inner {
                config,
                clock,
                plans,
                plan_upload: tokio::sync::Mutex::new(()),
                addon_purchases: tokio::sync::Mutex::new(()),
                plan_rows: RwLock::new(plan_rows),
                workers,
                writer: writer_tx,
                reader: Mutex::new(reader),
                identifiers: Mutex::new(identifiers),
                sessions: Mutex::new(HashMap::new()),
                metrics,
                metric_sources: RwLock::new(Vec::new()),
                subscription_count: AtomicUsize::new(subscription_count),
            }),
        };
        if let Some(lag) = index_lag {
            service.add_metrics(Box::new(move |out| {
                let behind = lag.load(std::sync::atomic::Ordering::Relaxed);
                if behind == u64::MAX {
                    return;
                }
                out.push_str("# HELP rollover_store_index_lag_events Events of the log the subscription index (SQLite, built behind the log) has not indexed yet; ledger reads scan that many at most.\n# TYPE rollover_store_index_lag_events gauge\n");
                out.push_str(&format!("rollover_store_index_lag_events {behind}\n"));
            }));
        }
        Ok(service)
    }
}

/// The catalog from the stored plan rows: each row's plan read again from
/// its own document.
/// Add-ons are stored beside plans, their row ids prefixed so that no plan
/// id (a-z, 0-9, '-') can be one.
pub(crate) const ADDON_ROW_PREFIX: &str = "addon:";

fn catalog_of(plan_rows: &[PlanRow]) -> Result<Plans, ServiceError> {
    let mut plans = Plans::default();
    for row in plan_rows {
        if let Some(id) = row.id.strip_prefix(ADDON_ROW_PREFIX) {
            let addon = rollover_terms::parse_stored_addon(&format!("add-on {id} version {}", row.version), &row.document)
                .map_err(|e| ServiceError::Corrupt { message: format!("a stored add-on no longer reads: {e}") })?;
            plans.insert_addon(row.version, addon);
            continue;
        }
        let parsed = rollover_terms::parse_plans(&format!("plan {} version {}", row.id, row.version), &row.document)
            .map_err(|e| ServiceError::Corrupt { message: format!("a stored plan no longer reads: {e}") })?;
        let plan = parsed
            .into_iter()
            .nth(row.position as usize)
            .ok_or_else(|| ServiceError::Corrupt { message: format!("stored plan {} is missing from its document", row.id) })?;
        plans.insert(row.version, plan);
    }
    Ok(plans)
}

/// Every subscription's identifiers (ICCID, IMSI, ...) to its id, and how
/// many subscriptions there are.
fn identifiers_of(store: &mut dyn Store) -> Result<(HashMap<String, String>, usize), ServiceError> {
    let mut identifiers = HashMap::new();
    let rows = store.load_subscriptions()?;
    for row in &rows {
        for (_, key) in identifier_keys(&row.identifiers) {
            identifiers.insert(key, row.id.clone());
        }
    }
    Ok((identifiers, rows.len()))
}

/// Rebuilds the workers' state: every event, in commit order, to the worker
/// that owns it; then waits until each has applied all it was sent.
fn replay(store: &mut dyn Store, workers: &[SyncSender<Command>]) -> Result<(), ServiceError> {
    let mut stopped = false;
    store.load_events(&mut |row| {
        let worker = &workers[shard_of(&row.subscription) as usize % workers.len()];
        stopped |= worker.send(Command::Replay(row)).is_err();
    })?;
    if stopped {
        return Err(ServiceError::worker_stopped());
    }
    let mut waits = Vec::new();
    for worker in workers {
        let (tx, rx) = oneshot::channel();
        worker.send(Command::Tick { reply: Some(tx) }).map_err(|_| ServiceError::worker_stopped())?;
        waits.push(rx);
    }
    for wait in waits {
        wait.blocking_recv().map_err(|_| ServiceError::worker_stopped())?;
    }
    Ok(())
}
