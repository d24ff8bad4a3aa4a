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

use crate::checkpoint;
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
        let opened = std::time::Instant::now();
        let (store, reader) = rollover_store::open(url)?;
        tracing::info!(seconds = opened.elapsed().as_secs_f64(), "store opened");
        let senders = config.notify.endpoints.iter().map(|_| rollover_store::open_secondary(url)).collect::<Result<Vec<_>, _>>()?;
        let checkpointer = if config.checkpoint_every_events > 0 { Some(rollover_store::open_secondary(url)?) } else { None };
        Service::start(store, reader, senders, checkpointer, clock, config)
    }

    /// Starts one node of a cluster on the PostgreSQL store at `url` (see
    /// [`crate::cluster`]): it serves no shard until the lease manager takes
    /// its share, loading each shard as it takes it. The clock is the wall
    /// clock; no checkpoints are written (a shard taken over is replayed
    /// from the log).
    pub fn start_cluster(url: &str, config: Config, cluster: crate::cluster::ClusterConfig) -> Result<Service, ServiceError> {
        if cluster.lease_ttl < std::time::Duration::from_millis(500) {
            return Err(ServiceError::Invalid { field: "cluster.lease_ttl_ms", message: "must be at least 500".into() });
        }
        let (store, reader) = rollover_store::open_cluster(url, cluster.lease_ttl)?;
        let leases = rollover_store::Leases::open(url, &cluster.node_id)?;
        let status = rollover_store::Leases::open(url, &cluster.node_id)?;
        let loader = rollover_store::open_secondary(url)?;
        let senders = config.notify.endpoints.iter().map(|_| rollover_store::open_secondary(url)).collect::<Result<Vec<_>, _>>()?;
        let reopen_url = url.to_string();
        let ttl = cluster.lease_ttl;
        let reopen: crate::writer::Reopen = Box::new(move || rollover_store::open_cluster(&reopen_url, ttl).map(|(writer, _)| writer));
        let parts = crate::cluster::Parts { leases, status, loader, config: cluster };
        Service::start_with(store, reader, senders, None, Clock::Wall, config, Some((parts, reopen)))
    }

    /// Starts on open stores: the writer's, one for reads, and one per
    /// webhook endpoint for its sender thread.
    pub fn start(store: Box<dyn Store>, reader: Box<dyn Store>, senders: Vec<Box<dyn Store>>, checkpointer: Option<Box<dyn Store>>, clock: Clock, config: Config) -> Result<Service, ServiceError> {
        Service::start_with(store, reader, senders, checkpointer, clock, config, None)
    }

    fn start_with(
        mut store: Box<dyn Store>,
        reader: Box<dyn Store>,
        senders: Vec<Box<dyn Store>>,
        checkpointer: Option<Box<dyn Store>>,
        clock: Clock,
        config: Config,
        cluster: Option<(crate::cluster::Parts, crate::writer::Reopen)>,
    ) -> Result<Service, ServiceError> {
        let clock = Arc::new(match (clock, store.clock()?) {
            // A simulated clock resumes where it stopped.
            (Clock::Simulated(_), Some(stored)) => Clock::simulated(Instant::from_micros(stored)),
            (clock, _) => clock,
        });
        let began = std::time::Instant::now();
        check_tzdata(store.as_mut())?;
        let plan_rows = store.load_plans()?;
        let plans = Arc::new(SharedPlans::new(catalog_of(&plan_rows)?));
        let plan_rows = Arc::new(RwLock::new(plan_rows));
        let plan_upload = Arc::new(tokio::sync::Mutex::new(()));
        let (identifiers, subscription_count) = identifiers_of(store.as_mut())?;
        let identifiers = Arc::new(Mutex::new(identifiers));
        let metrics = Arc::new(metrics::Metrics::default());
        let notify = (!config.notify.endpoints.is_empty()).then(|| Arc::new(config.notify.clone()));
        let (writer_tx, writer_rx) = sync_channel::<Write>(config.queue_bound);
        let ownership = cluster.as_ref().map(|_| Arc::new(crate::Ownership::default()));
        let mut workers = Vec::with_capacity(config.workers);
        for n in 0..config.workers.max(1) {
            let (tx, rx) = sync_channel::<Command>(config.queue_bound);
            let worker = Worker::new(n, plans.clone(), clock.clone(), writer_tx.clone(), config.clone(), metrics.clone(), notify.clone(), ownership.clone());
            spawn(format!("shard-worker-{n}"), move || worker.run(rx))?;
            workers.push(tx);
        }
        let catalog_seconds = began.elapsed().as_secs_f64();
        // A node of a cluster loads each shard as it takes it over.
        let restored = if cluster.is_none() { checkpoint::load_latest(store.as_mut(), &plans.snapshot())? } else { None };
        let checkpoint_seconds = began.elapsed().as_secs_f64() - catalog_seconds;
        let from = restored.as_ref().map(|state| state.upto_seq);
        let replayed = if cluster.is_none() { replay(store.as_mut(), &plans.snapshot(), &workers, restored, key_window_start(clock.now(), &config), config.max_age_micros)? } else { 0 };
        metrics.startup_checkpoint_seq.store(from.unwrap_or(0) as u64, std::sync::atomic::Ordering::Relaxed);
        metrics.startup_replayed_events.store(replayed, std::sync::atomic::Ordering::Relaxed);
        let replay_seconds = began.elapsed().as_secs_f64() - catalog_seconds - checkpoint_seconds;
        tracing::info!(upto_seq = from.unwrap_or(0), replayed, catalog_seconds, checkpoint_seconds, replay_seconds, "state rebuilt (from the checkpoint after upto_seq, 0: none, and the events after it)");
        if let Some(notify) = &notify {
            for (endpoint, sender) in senders.into_iter().enumerate().take(notify.endpoints.len()) {
                let (notify, sender_metrics) = (notify.clone(), metrics.clone());
                let claimer = cluster.as_ref().map_or_else(|| "(single)".to_string(), |(parts, _)| parts.config.node_id.clone());
                spawn(format!("webhook-sender-{endpoint}"), move || sender::run(sender, notify, endpoint, claimer, sender_metrics))?;
            }
        }
        if let Some(reader) = checkpointer.filter(|_| config.checkpoint_every_events > 0 && cluster.is_none()) {
            let (plans, writer, clock, every, max_age, metrics) = (plans.clone(), writer_tx.clone(), clock.clone(), config.checkpoint_every_events, config.max_age_micros, metrics.clone());
            let retention = config.retention.clone();
            spawn("checkpointer".into(), move || run_checkpointer(reader, plans, writer, every, max_age, retention, clock, metrics))?;
        }
        let index_lag = store.index_lag();
        let writer_metrics = metrics.clone();
        let membership = match (cluster, &ownership) {
            (Some((parts, reopen)), Some(ownership)) => {
                let writer = Writer::clustered(store, writer_metrics, ownership.clone(), reopen);
                spawn("store-writer".into(), move || writer.run(writer_rx))?;
                let catalog = SharedCatalog { plans: plans.clone(), rows: plan_rows.clone(), upload: plan_upload.clone() };
                Some(crate::cluster::start(parts, ownership.clone(), workers.clone(), writer_tx.clone(), catalog, identifiers.clone())?)
            }
            _ => {
                spawn("store-writer".into(), move || Writer::new(store, writer_metrics).run(writer_rx))?;
                None
            }
        };
        let service = Service {
            inner: Arc::new(Inner {
                config,
                clock,
                plans,
                plan_upload,
                addon_purchases: tokio::sync::Mutex::new(()),
                plan_rows,
                workers,
                writer: writer_tx,
                reader: Mutex::new(reader),
                identifiers,
                sessions: Mutex::new(HashMap::new()),
                metrics,
                metric_sources: RwLock::new(Vec::new()),
                subscription_count: AtomicUsize::new(subscription_count),
                membership,
                transport: std::sync::OnceLock::new(),
            }),
        };
        if let Some(lag) = index_lag {
            service.add_metrics(Box::new(move |out| {
                let behind = lag.load(std::sync::atomic::Ordering::Relaxed);
                if behind == u64::MAX {
                    return;
                }
                out.push_str("# HELP rollover_store_index_lag_events Events of the log the subscription index (built behind the log) has not indexed yet; ledger reads scan that many at most (PostgreSQL: about, as its indexer last saw).\n# TYPE rollover_store_index_lag_events gauge\n");
                out.push_str(&format!("rollover_store_index_lag_events {behind}\n"));
            }));
        }
        Ok(service)
    }
}

/// The catalog from the stored plan rows: each row's plan read again from
/// its own document.
/// Builds and writes checkpoints until the writer stops: every second it
/// looks whether `every` events came after the last one.
#[allow(clippy::too_many_arguments)]
fn run_checkpointer(
    mut store: Box<dyn Store>,
    plans: Arc<SharedPlans>,
    writer: SyncSender<Write>,
    every: i64,
    max_age_micros: i64,
    retention: Option<crate::Retention>,
    clock: Arc<Clock>,
    metrics: Arc<metrics::Metrics>,
) {
    let mut last_retention: Option<std::time::Instant> = None;
    let mut counted = checkpoint::Counted::default();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let mut checkpointed = false;
        'write: {
            let started = std::time::Instant::now();
            let built = match checkpoint::build(store.as_mut(), &plans, max_age_micros, every, &mut counted) {
                Ok(Some(built)) => built,
                Ok(None) => break 'write,
                Err(error) => {
                    tracing::warn!(%error, "a checkpoint could not be built; the log still holds everything");
                    break 'write;
                }
            };
            let (mut state, bytes) = built;
            let marks = std::mem::take(&mut state.marks);
            let meta = rollover_store::CheckpointMeta {
                upto_seq: state.upto_seq,
                format: checkpoint::FORMAT,
                parts: bytes.chunks(checkpoint::PART_BYTES).count().max(1) as u32,
                digest: checkpoint::digest(&bytes),
                created_at_micros: clock.now().micros(),
            };
            drop(state);
            let mut parts: Vec<Vec<u8>> = bytes.chunks(checkpoint::PART_BYTES).map(<[u8]>::to_vec).collect();
            if parts.is_empty() {
                parts.push(Vec::new());
            }
            let upto = meta.upto_seq;
            type StoreWrite = Box<dyn FnOnce(&mut dyn Store) -> rollover_store::Result<()> + Send>;
            let mut writes: Vec<StoreWrite> = Vec::new();
            // The ledger marks first: they are right whether or not the
            // checkpoint after them is ever finished.
            for chunk in marks.chunks(4096) {
                let chunk = chunk.to_vec();
                writes.push(Box::new(move |store: &mut dyn Store| store.put_ledger_marks(&chunk)));
            }
            for (n, part) in parts.into_iter().enumerate() {
                writes.push(Box::new(move |store: &mut dyn Store| store.put_checkpoint_part(upto, n as u32, &part)));
            }
            if crate::failpoint("checkpoint-parts") {
                // A crash with the parts (and marks) written, the mark not.
                writes.push(Box::new(|_: &mut dyn Store| -> rollover_store::Result<()> {
                    eprintln!("rollover: failpoint checkpoint-parts: stopping");
                    std::process::abort()
                }));
            }
            let finished = meta.clone();
            writes.push(Box::new(move |store: &mut dyn Store| store.finish_checkpoint(&finished)));
            let mut written = true;
            for work in writes {
                let (tx, rx) = std::sync::mpsc::channel();
                let sent = writer.send(Write::Run(Box::new(move |store| {
                    let _ = tx.send(work(store));
                })));
                match (sent, rx.recv()) {
                    (Ok(()), Ok(Ok(()))) => {}
                    (Err(_), _) | (_, Err(_)) => return,
                    (_, Ok(Err(error))) => {
                        tracing::warn!(%error, "a checkpoint could not be written; the log still holds everything");
                        written = false;
                        break;
                    }
                }
            }
            if !written {
                break 'write;
            }
            metrics.checkpoint_upto_seq.store(meta.upto_seq as u64, std::sync::atomic::Ordering::Relaxed);
            metrics.checkpoint_millis.store(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(upto_seq = meta.upto_seq, bytes = bytes.len(), ledger_marks = marks.len(), seconds = started.elapsed().as_secs_f64(), "checkpoint written");
            checkpointed = true;
        }
        // Retention at the start, after each checkpoint, and hourly: it
        // drops only what the newest checkpoint holds.
        if let Some(retention) = &retention
            && (checkpointed || last_retention.is_none_or(|t: std::time::Instant| t.elapsed() >= RETENTION_EVERY))
        {
            last_retention = Some(std::time::Instant::now());
            let upto = store.checkpoints().ok().and_then(|all| all.first().map(|m| m.upto_seq)).unwrap_or(0);
            match crate::retention::run(store.as_mut(), &writer, &plans.snapshot(), retention, clock.now(), upto) {
                Ok(dropped) => {
                    metrics.archived_events.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
                    metrics.retention_passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(%error, "a retention pass failed; nothing it had not exported was dropped"),
            }
        }
    }
}

/// How often retention looks again when no checkpoint was written.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Add-ons are stored beside plans, their row ids prefixed so that no plan
/// id (a-z, 0-9, '-') can be one.
pub(crate) const ADDON_ROW_PREFIX: &str = "addon:";

fn catalog_of(plan_rows: &[PlanRow]) -> Result<Plans, ServiceError> {
    let mut plans = Plans::default();
    add_rows(&mut plans, plan_rows)?;
    Ok(plans)
}

/// The catalog as a node of a cluster shares it: what other nodes uploaded
/// since this node last looked. New rows are added after the ones held, so
/// that every plan index in use stays valid.
pub(crate) struct SharedCatalog {
    pub(crate) plans: Arc<SharedPlans>,
    pub(crate) rows: Arc<RwLock<Vec<PlanRow>>>,
    /// The lock uploads hold: a refresh never interleaves with one.
    pub(crate) upload: Arc<tokio::sync::Mutex<()>>,
}

impl SharedCatalog {
    /// Adds the plan rows stored since; answers how many. Blocking.
    pub(crate) fn refresh(&self, store: &mut dyn Store) -> Result<usize, ServiceError> {
        if store.plan_count()? == self.rows.read().expect("plan rows lock").len() {
            return Ok(0);
        }
        let _upload = self.upload.blocking_lock();
        let stored = store.load_plans()?;
        let mut rows = self.rows.write().expect("plan rows lock");
        let new: Vec<PlanRow> = stored.into_iter().filter(|s| !rows.iter().any(|r| r.id == s.id && r.version == s.version)).collect();
        if new.is_empty() {
            return Ok(0);
        }
        let mut plans = (*self.plans.snapshot()).clone();
        add_rows(&mut plans, &new)?;
        self.plans.publish(plans);
        let count = new.len();
        rows.extend(new);
        tracing::info!(rows = count, "plans uploaded at other nodes added to the catalog");
        Ok(count)
    }
}

fn add_rows(plans: &mut Plans, plan_rows: &[PlanRow]) -> Result<(), ServiceError> {
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
    Ok(())
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

/// How long before a checkpoint's events are read again for their
/// idempotency keys, beyond the maximum age and the future skew: commits
/// reach the log in about the order they were applied, give or take this.
const KEY_MARGIN_MICROS: i64 = 10 * 60 * 1_000_000;

/// The `applied_at` from which stored rows' keys are kept at start-up: a
/// record stamped before `now - max_age` is refused as too old whatever its
/// key, and one applied before this was stamped before that.
pub(crate) fn key_window_start(now: Instant, config: &Config) -> i64 {
    now.micros().saturating_sub(config.max_age_micros).saturating_sub(config.future_skew_micros).saturating_sub(KEY_MARGIN_MICROS)
}

/// Rebuilds the workers' state: from a checkpoint when there is one (its
/// subscriptions and their keys; when it kept keys for less than
/// `max_age_micros`, the keys of the rows it holds that were applied since
/// `keys_since` as well), and every event after it, in commit order, to the
/// worker that owns it; then waits until each has applied all it was sent.
fn replay(store: &mut dyn Store, plans: &Plans, workers: &[SyncSender<Command>], restored: Option<checkpoint::State>, keys_since: i64, max_age_micros: i64) -> Result<u64, ServiceError> {
    let mut replayed = 0u64;
    let mut stopped = false;
    let owner = |id: &str| &workers[shard_of(id) as usize % workers.len()];
    let (after, upto) = match restored {
        // Subscriptions whose first events were archived start at their floors.
        None => {
            for one in checkpoint::floors(store, plans)? {
                stopped |= owner(&one.id).send(Command::Restore(Box::new(one))).is_err();
            }
            (0, 0)
        }
        Some(state) => {
            let upto = state.upto_seq;
            let keys_held = state.max_age_micros >= max_age_micros;
            for one in state.subscriptions {
                stopped |= owner(&one.id).send(Command::Restore(Box::new(one))).is_err();
            }
            // The checkpoint holds the keys a retry could hit, unless it was
            // built keeping them for less time than now asked.
            let after = if keys_held { upto } else { checkpoint::first_applied_since(store, keys_since, upto)? - 1 };
            (after, upto)
        }
    };
    let phase = std::time::Instant::now();
    store.load_events_after(after, &mut |row| {
        let command = if row.seq <= upto {
            Command::ReplayKey(row)
        } else {
            replayed += 1;
            Command::Replay(row)
        };
        let worker = match &command {
            Command::ReplayKey(row) | Command::Replay(row) => owner(&row.subscription),
            _ => unreachable!("a replay command"),
        };
        stopped |= worker.send(command).is_err();
    })?;
    if stopped {
        return Err(ServiceError::worker_stopped());
    }
    let read_seconds = phase.elapsed().as_secs_f64();
    let mut waits = Vec::new();
    for worker in workers {
        let (tx, rx) = oneshot::channel();
        worker.send(Command::Tick { reply: Some(tx) }).map_err(|_| ServiceError::worker_stopped())?;
        waits.push(rx);
    }
    for wait in waits {
        wait.blocking_recv().map_err(|_| ServiceError::worker_stopped())?;
    }
    tracing::info!(after, read_seconds, workers_seconds = phase.elapsed().as_secs_f64() - read_seconds, "log read after the checkpoint, and the workers caught up");
    Ok(replayed)
}
