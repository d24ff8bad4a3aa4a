//! The plans a subscription can refer to, by index.

use crate::plan::Plan;

/// Index of a plan in a [`Catalog`]. Plans are never removed from a catalog,
/// so an index stays valid for the catalog's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PlanIx(pub u32);

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    plans: Vec<Plan>,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Adds a plan and returns its index. Ids need not be unique across
    /// versions; [`Catalog::find`] returns the newest plan with the id.
    pub fn add(&mut self, plan: Plan) -> PlanIx {
        self.plans.push(plan);
        PlanIx(self.plans.len() as u32 - 1)
    }

    pub fn get(&self, ix: PlanIx) -> &Plan {
        &self.plans[ix.0 as usize]
    }

    pub fn find(&self, id: &str) -> Option<PlanIx> {
        self.plans.iter().rposition(|p| p.id == id).map(|i| PlanIx(i as u32))
    }

    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }
}
