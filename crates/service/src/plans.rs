//! The plan catalog the service serves: every version of every plan, by
//! `(id, version)`, backed by the store's plan documents.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rollover_core::{Catalog, Plan, PlanIx};

#[derive(Debug, Clone)]
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
pub struct SharedPlans(RwLock<Arc<Plans>>);

impl SharedPlans {
    pub fn new(plans: Plans) -> SharedPlans {
        SharedPlans(RwLock::new(Arc::new(plans)))
    }

    pub fn snapshot(&self) -> Arc<Plans> {
        self.0.read().expect("the plan lock is never poisoned").clone()
    }

    /// Replaces the catalog; snapshots already taken keep the old one.
    pub fn publish(&self, plans: Plans) {
        *self.0.write().expect("the plan lock is never poisoned") = Arc::new(plans);
    }
}
