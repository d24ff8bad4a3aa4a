//! Plain-language explanations of plans, in English and Chinese.

use crate::catalog::Catalog;
use crate::ledger::Entry;
use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

pub fn explain_plan(plan: &Plan, _lang: Lang) -> String {
    format!("{}\n", plan.name)
}

pub fn ledger_lines(_catalog: &Catalog, ledger: &[Entry]) -> Vec<String> {
    ledger.iter().map(|e| format!("{e:?}")).collect()
}
