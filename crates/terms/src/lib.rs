//! Plan files and scenario files: the TOML formats of the plan-terms
//! contract, read into `rollover-core` types with errors that name the file,
//! line and field; and the scenario runner behind `rollover simulate`.

pub mod file;
mod raw;
pub mod run;

pub use file::{Document, FileError, MAX_PLANS_PER_DOCUMENT, Scenario, parse_catalog, parse_document, parse_plan_texts, parse_stored_addon, parse_plans, parse_scenario};
pub use run::{Report, run};
