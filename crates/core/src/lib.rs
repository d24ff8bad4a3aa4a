//! rollover's engine: plan terms, buckets, rating and boundaries, as a
//! pure, deterministic state machine.
//!
//! Nothing here reads the clock, does I/O or runs async code: time, plans and
//! events come in as arguments, and every change goes out as a ledger entry.

pub mod amount;
pub mod catalog;
pub mod engine;
pub mod ledger;
pub mod money;
pub mod names;
pub mod plan;
pub mod time;
pub mod value;

pub use catalog::{Catalog, PlanIx};
pub use engine::{Bucket, Event, GrantExpiry, Outcome, PeriodEndPreview, Projection, Rating, Status, Subscription};
pub use ledger::{Cause, Change, Entry};
pub use names::{Country, Kind};
pub use plan::{Addon, AddonDraft, Plan, PlanDraft, PlanError};
pub use time::{Instant, Length, Zone};
pub use value::ValueError;
