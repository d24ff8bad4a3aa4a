//! The plan catalog the service serves: every version of every plan, by
//! `(id, version)`, backed by the store's plan documents.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rollover_core::{Addon, Catalog, Plan, PlanIx};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlanVersion {
    pub id: String,
    pub version: u32,
    pub ix: PlanIx,
}

#[derive(Debug, Default, Clone)]
pub struct Plans {
    pub catalog: Catalog,
    by_version: HashMap<(String, u32), PlanIx>,
    latest: HashMap<String, (u32, PlanIx)>,
    order: Vec<String>,
    /// The version of each plan, by its index in the catalog.
    versions: Vec<u32>,
    /// The newest version of each add-on, in the order they were first added.
    addons: Vec<(u32, Addon)>,
}

impl Plans {
    pub fn insert(&mut self, version: u32, plan: Plan) -> PlanIx {
        let id = plan.id.clone();
        let ix = self.catalog.add(plan);
        self.versions.push(version);
        self.by_version.insert((id.clone(), version), ix);
        match self.latest.get(&id) {
            Some((latest, _)) if *latest >= version => {}
            previous => {
                if previous.is_none() {
                    self.order.push(id.clone());
                }
                self.latest.insert(id, (version, ix));
            }
        }
        ix
    }

    pub fn get(&self, id: &str, version: u32) -> Option<PlanIx> {
        self.by_version.get(&(id.to_string(), version)).copied()
    }

    pub fn latest(&self, id: &str) -> Option<PlanVersion> {
        self.latest.get(id).map(|(version, ix)| PlanVersion { id: id.to_string(), version: *version, ix: *ix })
    }

    /// The newest version of every plan, in the order plans were first added.
    pub fn all_latest(&self) -> Vec<PlanVersion> {
        self.order.iter().filter_map(|id| self.latest(id)).collect()
    }

    /// Adds a version of an add-on; the newest version is the one sold.
    pub fn insert_addon(&mut self, version: u32, addon: Addon) {
        match self.addons.iter_mut().find(|(_, a)| a.id == addon.id) {
            Some(held) if held.0 >= version => {}
            Some(held) => *held = (version, addon),
            None => self.addons.push((version, addon)),
        }
    }

    /// The newest version of an add-on, and its version number.
    pub fn addon(&self, id: &str) -> Option<(u32, &Addon)> {
        self.addons.iter().find(|(_, a)| a.id == id).map(|(v, a)| (*v, a))
    }

    /// Every add-on, in the order they were first added.
    pub fn addons(&self) -> impl Iterator<Item = (u32, &Addon)> {
        self.addons.iter().map(|(v, a)| (*v, a))
    }

    /// The add-ons that may be bought for plan `id`.
    pub fn addons_for<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Addon> + 'a {
        self.addons.iter().map(|(_, a)| a).filter(move |a| a.plans.iter().any(|p| p == id))
    }

    pub fn version_of(&self, ix: PlanIx) -> u32 {
        self.versions[ix.0 as usize]
    }
}

/// The catalog as the service shares it between threads. A reader takes a
/// snapshot (an `Arc`) and holds no lock while it works, however long a
/// ledger replay takes; an upload builds the next catalog aside and
/// publishes it with one pointer swap. So no lock is ever held across work
/// whose length a client controls.
#[derive(Debug, Default)]
pub struct SharedPlans {
    current: RwLock<Arc<Plans>>,
    /// Counts publishes, so a holder of a snapshot can tell it is still the
    /// newest with one load and no lock.
    version: AtomicU64,
}

impl SharedPlans {
    pub fn new(plans: Plans) -> SharedPlans {
        SharedPlans { current: RwLock::new(Arc::new(plans)), version: AtomicU64::new(0) }
    }

    pub fn snapshot(&self) -> Arc<Plans> {
        self.current.read().expect("the plan lock is never poisoned").clone()
    }

    /// Replaces `held` with the newest catalog if a newer one was published
    /// since `held_version`. A shard worker calls this once per command and
    /// then borrows its copy: no lock and no shared counter per use.
    pub fn refresh(&self, held: &mut Arc<Plans>, held_version: &mut u64) {
        let version = self.version.load(Ordering::Acquire);
        if version != *held_version {
            *held = self.snapshot();
            *held_version = version;
        }
    }

    /// Replaces the catalog; snapshots already taken keep the old one.
    pub fn publish(&self, plans: Plans) {
        *self.current.write().expect("the plan lock is never poisoned") = Arc::new(plans);
        self.version.fetch_add(1, Ordering::Release);
    }
}
