//! Cluster mode: several nodes on one PostgreSQL store, each subscription
//! still owned by one node at a time. The unit of ownership is the shard
//! ([`crate::shard_of`]); a node serves a shard only while it holds its
//! lease ([`rollover_store::Leases`]), and every commit it makes is fenced
//! by the lease's epoch, checked inside the commit's own transaction.
//!
//! The lease manager is one thread per node. Every `ttl / 6` it:
//! - adds plans other nodes uploaded to the catalog;
//! - reloads the shards whose commit was refused (their memory may be
//!   ahead of the store);
//! - every `ttl / 3`, says the node is alive and renews its leases, dropping
//!   the ones it no longer holds; when no renewal has succeeded for
//!   `ttl - ttl / 6` (the store is unreachable) it stops serving every
//!   shard, since another node may take them once they expire;
//! - shares the shards out over the live nodes ([`assign`]): gives up the
//!   ones that belong to another node now, and takes the free ones that
//!   belong to it.
//!
//! Taking a shard: bump its epoch (the acquire commits), then read the
//! shard's subscriptions from the store, replay them into their worker, and
//! only then serve. Giving one up: stop serving, let the worker and the
//! writer finish what they hold, release the lease, forget the shard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant as Monotonic};

use rollover_store::{Leases, SHARDS, Store};
use tokio::sync::oneshot;

use crate::checkpoint;
use crate::ownership::Ownership;
use crate::start::SharedCatalog;
use crate::worker::Command;
use crate::writer::Write;

/// How many refreshes of the identifiers a subscription row may commit
/// behind one with a higher ordinal and still be read (at `lease_ttl / 6`
/// a refresh, 20 cover 10 s at the default lease time; a commit holds no
/// longer than the lease time, see `idle_in_transaction_session_timeout`).
const IDENTIFIER_LOOKBACK: usize = 20;

/// The audit of fenced commits (`fenced_commits`, see
/// [`rollover_store::Leases::audit`]) keeps the last hour; each node prunes
/// it once a minute.
const AUDIT_KEEP: Duration = Duration::from_secs(3600);
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What a node of a cluster is started with.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster (1 to 64 characters).
    pub node_id: String,
    /// How long a lease lasts without renewal, by the store's clock.
    pub lease_ttl: Duration,
}

/// Told when this node starts (`true`) or stops (`false`) serving a shard:
/// what routes requests to owners subscribes to it.
pub type ShardListener = Box<dyn Fn(u32, bool) + Send + Sync>;

/// The cluster as one node sees it (`GET /v1/cluster`).
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub node: String,
    /// Live nodes (heartbeat not run out), by id.
    pub nodes: Vec<String>,
    /// Every shard's lease, by shard.
    pub leases: Vec<rollover_store::Lease>,
    /// Shards this node serves now.
    pub serving: usize,
    /// Usage records waiting in the stream for their owners, as last read.
    pub stream_lag: Option<u64>,
    /// The same by shard, as last read (a shard not named holds none).
    pub shard_lag: Option<std::collections::HashMap<u32, u64>>,
}

impl ClusterStatus {
    /// Every node that is live or holds an unexpired lease, by id: whether
    /// its heartbeat is current, and how many shards' leases it holds now.
    pub fn holders(&self) -> Vec<(String, bool, usize)> {
        let mut ids: Vec<&str> = self.nodes.iter().map(String::as_str).collect();
        for owner in self.leases.iter().filter(|l| l.remaining_ms > 0).filter_map(|l| l.owner.as_deref()) {
            if !ids.contains(&owner) {
                ids.push(owner);
            }
        }
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let shards = self.leases.iter().filter(|l| l.remaining_ms > 0 && l.owner.as_deref() == Some(id)).count();
                (id.to_string(), self.nodes.iter().any(|n| n == id), shards)
            })
            .collect()
    }
}

/// The running cluster membership of a node, held by the service.
pub(crate) struct Membership {
    pub(crate) node: String,
    /// A connection of its own, to read the leases for status pages.
    pub(crate) status: Mutex<Leases>,
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) listeners: Arc<RwLock<Vec<ShardListener>>>,
    pub(crate) stats: Arc<Stats>,
    /// Set to stop: the manager then gives every shard up and leaves.
    stop: Arc<AtomicBool>,
    /// Answered when the manager has left.
    stopped: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// Counters of the lease manager, for `/metrics` and `/v1/cluster`.
#[derive(Default)]
pub struct Stats {
    pub taken: AtomicU64,
    pub given_up: AtomicU64,
    pub lost: AtomicU64,
    /// Milliseconds the last shard taken took to load, and the most.
    pub last_load_millis: AtomicU64,
    pub max_load_millis: AtomicU64,
    /// Usage records in the stream not yet committed by their owners, as
    /// last read (`u64::MAX`: not known, no stream).
    pub stream_lag: AtomicU64,
    /// The same by shard (a shard not named holds none); empty until read.
    pub shard_lag: Mutex<Option<std::collections::HashMap<u32, u64>>>,
}

impl Membership {
    /// Reads the leases and the live nodes. Blocking.
    pub(crate) fn status(&self) -> rollover_store::Result<ClusterStatus> {
        let mut leases = self.status.lock().expect("status lock");
        let read = |leases: &mut Leases| -> rollover_store::Result<(Vec<String>, Vec<rollover_store::Lease>)> { Ok((leases.live_nodes()?, leases.all()?)) };
        let (nodes, all) = match read(&mut leases) {
            Ok(read) => read,
            Err(_) => {
                leases.reconnect()?;
                read(&mut leases)?
            }
        };
        let lag = self.stats.stream_lag.load(Ordering::Relaxed);
        let shard_lag = self.stats.shard_lag.lock().expect("shard lag lock").clone();
        Ok(ClusterStatus { node: self.node.clone(), nodes, leases: all, serving: self.ownership.served().len(), stream_lag: (lag != u64::MAX).then_some(lag), shard_lag })
    }

    /// Gives every shard up and leaves the cluster; returns when done.
    pub(crate) fn leave(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(stopped) = self.stopped.lock().expect("membership lock").take() {
            let _ = stopped.recv();
        }
    }
}

/// The lease manager's figures in the Prometheus text format.
pub(crate) fn render_metrics(membership: &Membership, out: &mut String) {
    let stats = &membership.stats;
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
    };
    out.push_str(&format!(
        "# HELP rollover_cluster_shards_served Shards this node serves now (of {SHARDS}).\n# TYPE rollover_cluster_shards_served gauge\nrollover_cluster_shards_served {}\n",
        membership.ownership.served().len()
    ));
    counter(out, "rollover_cluster_shards_taken_total", "Shards this node took over and loaded.", stats.taken.load(Ordering::Relaxed));
    counter(out, "rollover_cluster_shards_given_up_total", "Shards this node handed over (a rebalance or a graceful stop).", stats.given_up.load(Ordering::Relaxed));
    counter(out, "rollover_cluster_shards_lost_total", "Shards this node dropped: another node took the lease, a renewal failed for the lease time, or a commit was refused.", stats.lost.load(Ordering::Relaxed));
    let lag = stats.stream_lag.load(Ordering::Relaxed);
    if lag != u64::MAX {
        out.push_str(&format!(
            "# HELP rollover_cluster_usage_stream_messages Usage records in the stream not yet committed by their owners (the stream's lag), as last read.\n# TYPE rollover_cluster_usage_stream_messages gauge\nrollover_cluster_usage_stream_messages {lag}\n"
        ));
    }
    if let Some(by_shard) = stats.shard_lag.lock().expect("shard lag lock").as_ref() {
        // One series, not 256: which shard lags is in `GET /v1/cluster`.
        out.push_str(&format!(
            "# HELP rollover_cluster_usage_stream_shard_messages_max The most usage records any one shard has waiting in the stream, as last read.\n# TYPE rollover_cluster_usage_stream_shard_messages_max gauge\nrollover_cluster_usage_stream_shard_messages_max {}\n",
            by_shard.values().copied().max().unwrap_or(0)
        ));
    }
    out.push_str(&format!(
        "# HELP rollover_cluster_shard_load_seconds_max The longest a shard took to load here (epoch bump to serving).\n# TYPE rollover_cluster_shard_load_seconds_max gauge\nrollover_cluster_shard_load_seconds_max {}\n",
        stats.max_load_millis.load(Ordering::Relaxed) as f64 / 1000.0
    ));
}

/// Which shards `node` should hold when `live` (sorted) are the live nodes:
/// each node gets the floor or the ceiling of `SHARDS / live` (the first
/// `SHARDS % live` nodes one more), each shard going to the node that ranks
/// it highest (rendezvous hashing) among those with room left, so that a
/// node joining or leaving moves few shards besides its own.
pub fn assign(live: &[String], node: &str) -> Vec<u32> {
    if live.is_empty() {
        return Vec::new();
    }
    let n = live.len() as u32;
    let mut room: Vec<u32> = (0..n).map(|i| SHARDS / n + u32::from(i < SHARDS % n)).collect();
    let mut mine = Vec::new();
    for shard in 0..SHARDS {
        let mut ranked: Vec<usize> = (0..live.len()).collect();
        ranked.sort_by_key(|&i| std::cmp::Reverse((rank(&live[i], shard), i)));
        if let Some(&i) = ranked.iter().find(|&&i| room[i] > 0) {
            room[i] -= 1;
            if live[i] == node {
                mine.push(shard);
            }
        }
    }
    mine
}

/// FNV-1a of the node's name and the shard: a node's preference for a shard.
fn rank(node: &str, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain(shard.to_le_bytes()) {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub(crate) struct Parts {
    pub(crate) leases: Leases,
    pub(crate) status: Leases,
    pub(crate) loader: Box<dyn Store>,
    pub(crate) config: ClusterConfig,
}

pub(crate) fn start(
    parts: Parts,
    ownership: Arc<Ownership>,
    workers: Vec<SyncSender<Command>>,
    writer: SyncSender<Write>,
    catalog: SharedCatalog,
    identifiers: Arc<Mutex<std::collections::HashMap<String, String>>>,
) -> Result<Membership, crate::ServiceError> {
    let listeners: Arc<RwLock<Vec<ShardListener>>> = Arc::new(RwLock::new(Vec::new()));
    let stats = Arc::new(Stats { stream_lag: AtomicU64::new(u64::MAX), ..Stats::default() });
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let node = parts.config.node_id.clone();
    let mut manager = Manager {
        leases: parts.leases,
        loader: parts.loader,
        ttl: parts.config.lease_ttl,
        node: node.clone(),
        ownership: ownership.clone(),
        workers,
        writer,
        catalog,
        identifiers,
        seen_ordinals: std::collections::VecDeque::new(),
        held: Vec::new(),
        renewed: Monotonic::now(),
        listeners: listeners.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
    };
    std::thread::Builder::new()
        .name("lease-manager".into())
        .spawn(move || {
            manager.run();
            let _ = done_tx.send(());
        })
        .map_err(|e| crate::ServiceError::Corrupt { message: format!("cannot start the lease manager: {e}") })?;
    Ok(Membership { node, status: Mutex::new(parts.status), ownership, listeners, stats, stop, stopped: Mutex::new(Some(done_rx)) })
}

struct Manager {
    leases: Leases,
    loader: Box<dyn Store>,
    ttl: Duration,
    node: String,
    ownership: Arc<Ownership>,
    workers: Vec<SyncSender<Command>>,
    writer: SyncSender<Write>,
    /// The plans, refreshed with what other nodes upload.
    catalog: SharedCatalog,
    /// Identifiers (ICCID, IMSI, ...) to subscription ids, refreshed with
    /// the subscriptions other nodes create.
    identifiers: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// The highest subscription ordinal each recent refresh saw, oldest
    /// first: a refresh reads again from the oldest, since a row inserted
    /// with a lower ordinal may commit after one with a higher.
    seen_ordinals: std::collections::VecDeque<i64>,
    /// Leases held, with their epochs (served, or being loaded).
    held: Vec<(u32, i64)>,
    /// When the last renewal that succeeded was sent.
    renewed: Monotonic,
    listeners: Arc<RwLock<Vec<ShardListener>>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Manager {
    fn run(&mut self) {
        let step = self.ttl / 6;
        let mut last_renew: Option<Monotonic> = None;
        let mut last_prune = Monotonic::now();
        loop {
            if self.stop.load(Ordering::Acquire) {
                self.leave();
                return;
            }
            if let Err(error) = self.catalog.refresh(self.loader.as_mut()) {
                tracing::warn!(%error, "reading the plans other nodes uploaded failed; trying again");
            }
            if let Err(error) = self.refresh_identifiers() {
                tracing::warn!(%error, "reading the subscriptions other nodes created failed; trying again");
            }
            for shard in self.ownership.take_lost() {
                self.drop_shard(shard, "a commit of it was refused");
            }
            if last_renew.is_none_or(|t| t.elapsed() >= self.ttl / 3) {
                last_renew = Some(Monotonic::now());
                self.renew();
            }
            if self.renewed.elapsed() > self.ttl - step && !self.held.is_empty() {
                // Self-fence: past this, another node may hold these leases.
                tracing::warn!(shards = self.held.len(), "no lease renewal succeeded within the lease time; serving nothing until the store answers");
                for (shard, _) in self.held.clone() {
                    self.drop_shard(shard, "its lease could not be renewed");
                }
            }
            if let Err(error) = self.rebalance() {
                tracing::warn!(%error, "sharing the shards out failed; trying again");
            }
            if last_prune.elapsed() >= AUDIT_PRUNE_EVERY {
                last_prune = Monotonic::now();
                if let Err(error) = self.leases.prune_audit(AUDIT_KEEP) {
                    tracing::warn!(%error, "forgetting old fenced commits failed; trying again later");
                }
            }
            std::thread::sleep(step);
        }
    }

    /// Adds the identifiers of subscriptions created since the refresh
    /// [`IDENTIFIER_LOOKBACK`] refreshes ago.
    fn refresh_identifiers(&mut self) -> rollover_store::Result<()> {
        let from = self.seen_ordinals.front().copied().unwrap_or(0);
        let rows = self.loader.subscriptions_after(from)?;
        let highest = rows.iter().map(|(ordinal, _)| *ordinal).max().unwrap_or(from).max(self.seen_ordinals.back().copied().unwrap_or(0));
        if !rows.is_empty() {
            let mut identifiers = self.identifiers.lock().expect("identifier lock");
            for (_, row) in &rows {
                for (_, key) in crate::identifier_keys(&row.identifiers) {
                    identifiers.insert(key, row.id.clone());
                }
            }
        }
        self.seen_ordinals.push_back(highest);
        if self.seen_ordinals.len() > IDENTIFIER_LOOKBACK {
            self.seen_ordinals.pop_front();
        }
        Ok(())
    }

    fn renew(&mut self) {
        let sent = Monotonic::now();
        let renewed = self.leases.heartbeat(self.ttl).and_then(|()| self.leases.renew(&self.held, self.ttl));
        match renewed {
            Ok(lost) => {
                self.renewed = sent;
                for shard in lost {
                    self.drop_shard(shard, "another node took its lease");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "renewing the leases failed; reconnecting");
                if let Err(error) = self.leases.reconnect() {
                    tracing::warn!(%error, "the lease connection cannot reconnect yet");
                }
            }
        }
    }

    fn rebalance(&mut self) -> rollover_store::Result<()> {
        let live = self.leases.live_nodes()?;
        if !live.contains(&self.node) {
            return Ok(());
        }
        let mine = assign(&live, &self.node);
        for (shard, _) in self.held.clone() {
            if !mine.contains(&shard) {
                self.give_up(shard)?;
            }
        }
        let leases = self.leases.all()?;
        for lease in leases {
            let held = self.held.iter().any(|&(s, _)| s == lease.shard);
            let free = lease.remaining_ms <= 0 || lease.owner.as_deref() == Some(self.node.as_str());
            if !held && free && mine.contains(&lease.shard) {
                if self.stop.load(Ordering::Acquire) {
                    break;
                }
                self.take(lease.shard)?;
            }
        }
        Ok(())
    }

    fn worker(&self, shard: u32) -> &SyncSender<Command> {
        &self.workers[shard as usize % self.workers.len()]
    }

    /// Takes `shard` if it is free: bumps the epoch, loads the shard, serves.
    fn take(&mut self, shard: u32) -> rollover_store::Result<()> {
        let began = Monotonic::now();
        let Some(epoch) = self.leases.acquire(shard, self.ttl)? else { return Ok(()) };
        self.held.push((shard, epoch));
        self.ownership.set_epoch(shard, epoch);
        let worker = self.worker(shard).clone();
        let _ = worker.send(Command::Unload { shards: vec![shard], reply: None });
        let plans = self.catalog.plans.snapshot();
        let mut broken: Option<crate::ServiceError> = None;
        let mut events = 0u64;
        let loaded = self.loader.load_shard(
            shard,
            &mut |mark| match checkpoint::floor(mark, &plans) {
                Ok(one) => {
                    let _ = worker.send(Command::Restore(Box::new(one)));
                }
                Err(error) => broken = Some(error),
            },
            &mut |row| {
                events += 1;
                let _ = worker.send(Command::Replay(row));
            },
        );
        if let Err(error) = loaded {
            // The store went away mid-load: forget the part loaded; the
            // lease is taken again (a new epoch) at the next scan.
            self.held.retain(|&(s, _)| s != shard);
            let _ = worker.send(Command::Unload { shards: vec![shard], reply: None });
            return Err(error);
        }
        if let Some(error) = broken {
            // A floor that does not read: the shard stays unserved here.
            tracing::error!(shard, %error, "a shard cannot be loaded");
            self.held.retain(|&(s, _)| s != shard);
            let _ = worker.send(Command::Unload { shards: vec![shard], reply: None });
            let _ = self.leases.release(shard, epoch);
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        if worker.send(Command::Tick { reply: Some(tx) }).is_err() || rx.blocking_recv().is_err() {
            return Ok(());
        }
        self.ownership.serve(shard, true);
        self.tell(shard, true);
        let millis = began.elapsed().as_millis() as u64;
        self.stats.taken.fetch_add(1, Ordering::Relaxed);
        self.stats.last_load_millis.store(millis, Ordering::Relaxed);
        self.stats.max_load_millis.fetch_max(millis, Ordering::Relaxed);
        tracing::info!(shard, epoch, events, millis, "lease_acquired: shard taken and loaded");
        Ok(())
    }

    /// Gives `shard` up for another node: stops serving, lets the worker and
    /// the writer finish what they hold, releases the lease, forgets it.
    fn give_up(&mut self, shard: u32) -> rollover_store::Result<()> {
        let Some(&(_, epoch)) = self.held.iter().find(|&&(s, _)| s == shard) else { return Ok(()) };
        self.ownership.serve(shard, false);
        self.tell(shard, false);
        let (tx, rx) = oneshot::channel();
        if self.worker(shard).send(Command::Tick { reply: Some(tx) }).is_ok() {
            let _ = rx.blocking_recv();
        }
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Write::Batch { batch: rollover_store::Batch::default(), done: tx, fence: Vec::new() }).is_ok() {
            let _ = rx.blocking_recv();
        }
        self.leases.release(shard, epoch)?;
        self.held.retain(|&(s, _)| s != shard);
        let _ = self.worker(shard).send(Command::Unload { shards: vec![shard], reply: None });
        self.stats.given_up.fetch_add(1, Ordering::Relaxed);
        tracing::info!(shard, epoch, "lease_released: shard given up");
        Ok(())
    }

    /// Stops serving `shard` at once and forgets it, without touching its
    /// lease (lost, or no longer renewable).
    fn drop_shard(&mut self, shard: u32, why: &str) {
        self.ownership.serve(shard, false);
        self.tell(shard, false);
        self.held.retain(|&(s, _)| s != shard);
        let _ = self.worker(shard).send(Command::Unload { shards: vec![shard], reply: None });
        self.stats.lost.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(shard, why, "ownership_lost: shard dropped");
    }

    fn tell(&self, shard: u32, serving: bool) {
        for listener in self.listeners.read().expect("listeners lock").iter() {
            listener(shard, serving);
        }
    }

    fn leave(&mut self) {
        for (shard, _) in self.held.clone() {
            if let Err(error) = self.give_up(shard) {
                tracing::warn!(shard, %error, "a shard could not be given up; it frees itself when its lease runs out");
                self.drop_shard(shard, "stopping");
            }
        }
        if let Err(error) = self.leases.leave() {
            tracing::warn!(%error, "leaving the cluster failed; the others notice when the heartbeat runs out");
        }
        tracing::info!(node = %self.node, "left the cluster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_shared_evenly_and_move_little_when_a_node_joins() {
        let two: Vec<String> = vec!["a".into(), "b".into()];
        let three: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let (a2, b2) = (assign(&two, "a"), assign(&two, "b"));
        assert_eq!((a2.len(), b2.len()), (128, 128));
        assert!(a2.iter().all(|s| !b2.contains(s)), "no shard twice");
        let shares: Vec<Vec<u32>> = three.iter().map(|n| assign(&three, n)).collect();
        let mut sizes: Vec<usize> = shares.iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![85, 85, 86]);
        let mut all: Vec<u32> = shares.concat();
        all.sort();
        assert_eq!(all, (0..SHARDS).collect::<Vec<_>>(), "every shard once");
        // c's shards come from a and b; few others move.
        let moved = shares[0].iter().filter(|s| !a2.contains(s)).count() + shares[1].iter().filter(|s| !b2.contains(s)).count();
        assert!(moved < 40, "{moved} shards moved between a and b when c joined");
        assert!(assign(&[], "a").is_empty());
        assert!(assign(&two, "z").is_empty(), "a node not live holds nothing");
    }
}
