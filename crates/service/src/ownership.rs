//! Cluster mode: which of the [`SHARDS`] this node serves now, and under
//! which epoch (the fencing token of its lease, see
//! [`rollover_store::Leases`]). Workers check it on every command, so that
//! a shard being taken over or lost answers [`ServiceError::ShardMoving`]
//! rather than anything from stale memory; the writer fences each commit
//! with the epochs its rows were applied under.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::{SHARDS, ServiceError};

pub struct Ownership {
    serving: Vec<AtomicBool>,
    epochs: Vec<AtomicI64>,
    /// Shards whose commit was refused (fenced, or the store failed): memory
    /// may be ahead of the store, so the lease manager unloads and reloads them.
    lost: Mutex<Vec<u32>>,
}

impl Default for Ownership {
    fn default() -> Ownership {
        Ownership { serving: (0..SHARDS).map(|_| AtomicBool::new(false)).collect(), epochs: (0..SHARDS).map(|_| AtomicI64::new(0)).collect(), lost: Mutex::new(Vec::new()) }
    }
}

impl Ownership {
    pub fn serving(&self, shard: u32) -> bool {
        self.serving[shard as usize].load(Ordering::Acquire)
    }

    pub fn epoch(&self, shard: u32) -> i64 {
        self.epochs[shard as usize].load(Ordering::Acquire)
    }

    /// Shards served now, with their epochs.
    pub fn served(&self) -> Vec<(u32, i64)> {
        (0..SHARDS).filter(|&s| self.serving(s)).map(|s| (s, self.epoch(s))).collect()
    }

    /// `Ok` when `subscription`'s shard is served here.
    pub(crate) fn check(&self, subscription: &str) -> Result<(), ServiceError> {
        let shard = crate::shard_of(subscription);
        if self.serving(shard) { Ok(()) } else { Err(ServiceError::ShardMoving { shard }) }
    }

    pub(crate) fn set_epoch(&self, shard: u32, epoch: i64) {
        self.epochs[shard as usize].store(epoch, Ordering::Release);
    }

    pub(crate) fn serve(&self, shard: u32, serving: bool) {
        self.serving[shard as usize].store(serving, Ordering::Release);
    }

    /// The writer could not commit rows of `shards`: stop serving them at
    /// once, and leave them to the lease manager to reload.
    pub(crate) fn lose(&self, shards: impl IntoIterator<Item = u32>) {
        let mut lost = self.lost.lock().expect("lost shards lock");
        for shard in shards {
            self.serve(shard, false);
            if !lost.contains(&shard) {
                lost.push(shard);
            }
        }
    }

    pub(crate) fn take_lost(&self) -> Vec<u32> {
        std::mem::take(&mut *self.lost.lock().expect("lost shards lock"))
    }
}
