//! The single store writer: group commit. It takes whatever rows are
//! waiting, up to a limit, commits them in one transaction (fsync), and only
//! then releases every waiting acknowledgment.

use std::sync::mpsc::Receiver;

use rollover_store::{Batch, PlanRow, ProfileRow, Store, StoreError};
use tokio::sync::oneshot;

/// Most events in one transaction.
const MAX_EVENTS_PER_COMMIT: usize = 20_000;

/// Work for the writer's connection.
pub(crate) type StoreWork = Box<dyn FnOnce(&mut dyn rollover_store::Store) + Send>;

pub(crate) enum Write {
    /// Rows to commit; `fence` holds the epoch of each shard they belong to
    /// as it was when they were applied (cluster mode; empty alone).
    Batch { batch: Batch, done: oneshot::Sender<Result<(), crate::ServiceError>>, fence: Vec<(u32, i64)> },
    /// Answered with the store's error, if any: plans are published only
    /// after they are stored, so a failed insert leaves memory as it was.
    Plans { rows: Vec<PlanRow>, done: oneshot::Sender<Result<(), StoreError>> },
    /// eSIM profiles for the inventory; answered with the ICCIDs already
    /// stored (not added), or the store's error.
    Profiles { rows: Vec<ProfileRow>, done: oneshot::Sender<Result<Vec<String>, StoreError>> },
    /// A profile's new state (and EID); answered with whether it exists.
    ProfileState { iccid: String, state: &'static str, eid: Option<String>, at_micros: i64, done: oneshot::Sender<Result<bool, StoreError>> },
    /// Any other write (eSIM orders), run on the writer's connection after
    /// what was gathered before it is committed.
    Run(StoreWork),
}

/// Opens the writer's connection again after the store failed (cluster mode).
pub(crate) type Reopen = Box<dyn FnMut() -> Result<Box<dyn Store>, StoreError> + Send>;

type Waiter = oneshot::Sender<Result<(), crate::ServiceError>>;

pub(crate) struct Writer {
    store: Box<dyn Store>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Cluster mode: the shards served and their epochs, and how to reconnect.
    cluster: Option<(std::sync::Arc<crate::ownership::Ownership>, Reopen)>,
    /// The epochs the gathered rows were applied under, a pair per shard.
    fence: Vec<(u32, i64)>,
}

impl Writer {
    pub(crate) fn new(store: Box<dyn Store>, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Writer {
        Writer { store, metrics, cluster: None, fence: Vec::new() }
    }

    /// A writer for one node of a cluster: a commit that its store refuses
    /// (an epoch moved on) or that fails (the store went away) loses its
    /// shards, answers its waiters [`crate::ServiceError::ShardMoving`], and
    /// the writer carries on, reconnecting when the connection broke.
    pub(crate) fn clustered(store: Box<dyn Store>, metrics: std::sync::Arc<crate::metrics::Metrics>, ownership: std::sync::Arc<crate::ownership::Ownership>, reopen: Reopen) -> Writer {
        Writer { store, metrics, cluster: Some((ownership, reopen)), fence: Vec::new() }
    }

    /// Whether rows applied under `fence` may still be committed: each
    /// shard still has the epoch they were applied under.
    fn current(&self, fence: &[(u32, i64)]) -> Result<(), crate::ServiceError> {
        match &self.cluster {
            Some((ownership, _)) => match fence.iter().find(|&&(shard, epoch)| ownership.epoch(shard) != epoch) {
                Some(&(shard, _)) => Err(crate::ServiceError::ShardMoving { shard }),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Write>) {
        while let Ok(first) = rx.recv() {
            let mut batch = Batch::default();
            let mut done = Vec::new();
            let mut next = Some(first);
            while let Some(write) = next.take() {
                match write {
                    Write::Plans { rows, done: plan_done } => {
                        // Plans are rare: commit what is gathered, then them.
                        self.commit(&mut batch, &mut done);
                        let stored = self.store.insert_plans(&rows).inspect_err(|e| tracing::error!(error = %e, "storing plans failed"));
                        let _ = plan_done.send(stored);
                    }
                    Write::Profiles { rows, done: profiles_done } => {
                        self.commit(&mut batch, &mut done);
                        let stored = self.store.insert_profiles(&rows).inspect_err(|e| tracing::error!(error = %e, "storing profiles failed"));
                        let _ = profiles_done.send(stored);
                    }
                    Write::ProfileState { iccid, state, eid, at_micros, done: state_done } => {
                        self.commit(&mut batch, &mut done);
                        let stored = self.store.set_profile_state(&iccid, state, eid.as_deref(), at_micros).inspect_err(|e| tracing::error!(error = %e, "storing a profile's state failed"));
                        let _ = state_done.send(stored);
                    }
                    Write::Run(work) => {
                        self.commit(&mut batch, &mut done);
                        work(self.store.as_mut());
                    }
                    Write::Batch { batch: more, done: waiter, fence } => match self.current(&fence) {
                        Ok(()) => {
                            batch.append(more);
                            done.push(waiter);
                            for pair in fence {
                                if !self.fence.contains(&pair) {
                                    self.fence.push(pair);
                                }
                            }
                        }
                        Err(stale) => {
                            let _ = waiter.send(Err(stale));
                        }
                    },
                }
                if batch.events.len() < MAX_EVENTS_PER_COMMIT {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut batch, &mut done);
        }
    }

    fn commit(&mut self, batch: &mut Batch, done: &mut Vec<Waiter>) {
        let fence = std::mem::take(&mut self.fence);
        let mut outcome = Ok(());
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            match &mut self.cluster {
                None => {
                    if let Err(e) = self.store.commit(batch) {
                        fail(&e.to_string());
                    }
                }
                Some((ownership, reopen)) => {
                    outcome = match self.store.commit_fenced(batch, &fence) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(fenced)) => {
                            tracing::warn!(%fenced, shards = fence.len(), "a commit was fenced: its shards are dropped and loaded again");
                            Err(crate::ServiceError::ShardMoving { shard: fenced.shard })
                        }
                        Err(error) => {
                            tracing::warn!(%error, shards = fence.len(), "a commit failed: its shards are dropped and loaded again");
                            if let Ok(store) = reopen().inspect_err(|e| tracing::warn!(error = %e, "the store writer cannot reconnect yet")) {
                                self.store = store;
                            }
                            Err(crate::ServiceError::ShardMoving { shard: fence.first().map_or(0, |&(shard, _)| shard) })
                        }
                    };
                    if outcome.is_err() {
                        ownership.lose(fence.iter().map(|&(shard, _)| shard));
                    }
                }
            }
            self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
            self.metrics.commit_events.observe(batch.events.len() as f64);
            tracing::debug!(events = batch.events.len(), "group commit");
        }
        *batch = Batch::default();
        for waiter in done.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }
}

/// A commit that fails leaves memory ahead of the store; continuing could
/// acknowledge what is not durable. Stop, and let the restart rebuild.
fn fail(error: &str) -> ! {
    tracing::error!(%error, "group commit failed; stopping so that a restart rebuilds state from the store");
    eprintln!("rollover: group commit failed: {error}; stopping");
    std::process::abort();
}
