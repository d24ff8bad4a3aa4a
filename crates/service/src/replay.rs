//! Rebuilding state from the stored log: the only way state is ever rebuilt,
//! at start-up, by the checkpointer and for ledger reads (`ledger.rs`).

use rollover_core::engine::{Event, GrantExpiry};
use rollover_core::ledger::Entry;
use rollover_core::{Country, Instant, Kind, Subscription};
use rollover_store::{EXPIRES_NEVER, EXPIRES_PERIOD_END, EventBody, EventRow};

use crate::ServiceError;
use crate::plans::Plans;

fn corrupt(message: String) -> ServiceError {
    ServiceError::Corrupt { message }
}

/// The core event a stored row stands for. A row that cannot be read back is
/// a corrupt store: the caller stops.
/// Network notes stand for no event.
pub(crate) fn to_event(plans: &Plans, body: &EventBody) -> Result<Option<Event>, ServiceError> {
    Ok(match body {
        EventBody::Usage { bytes, country } => Event::Usage {
            bytes: *bytes,
            country: country.as_deref().map(Country::parse).transpose().map_err(|e| corrupt(format!("stored usage: {e}")))?,
        },
        EventBody::Grant { kind, bytes, expires_micros } => Event::Grant {
            kind: Kind::parse(kind).map_err(|e| corrupt(format!("stored grant: {e}")))?,
            bytes: *bytes,
            expires: expiry(*expires_micros),
        },
        EventBody::Addon { kind, bytes, expires_micros, price_minor, .. } => Event::Addon {
            kind: Kind::parse(kind).map_err(|e| corrupt(format!("stored add-on: {e}")))?,
            bytes: *bytes,
            expires: expiry(*expires_micros),
            price_minor: *price_minor,
        },
        EventBody::Refund { minor, .. } => Event::Refund { minor: *minor },
        EventBody::ChangePlan { plan_id, plan_version } => {
            Event::ChangePlan(plans.get(plan_id, *plan_version).ok_or_else(|| corrupt(format!("stored plan change to unknown plan {plan_id} v{plan_version}")))?)
        }
        EventBody::Install => Event::Install,
        EventBody::FirstUse => Event::FirstUse,
        EventBody::Suspend => Event::Suspend,
        EventBody::Resume => Event::Resume,
        EventBody::Cancel => Event::Cancel,
        EventBody::Purchase { .. } => return Err(corrupt("a second purchase in one subscription's log".into())),
        EventBody::Network { .. } => return Ok(None),
    }
    .into())
}

/// A grant's stored expiry.
pub(crate) fn expiry(micros: i64) -> GrantExpiry {
    match micros {
        EXPIRES_NEVER => GrantExpiry::Never,
        EXPIRES_PERIOD_END => GrantExpiry::PeriodEnd,
        micros => GrantExpiry::At(Instant::from_micros(micros)),
    }
}

/// The stored form of a grant's expiry.
pub(crate) fn expiry_micros(expires: GrantExpiry) -> i64 {
    match expires {
        GrantExpiry::At(at) => at.micros(),
        GrantExpiry::PeriodEnd => EXPIRES_PERIOD_END,
        GrantExpiry::Never => EXPIRES_NEVER,
    }
}

/// Creates a subscription from its purchase row.
pub(crate) fn purchase(plans: &Plans, row: &EventRow, ledger: &mut Vec<Entry>) -> Result<Subscription, ServiceError> {
    let EventBody::Purchase { plan_id, plan_version } = &row.body else {
        return Err(corrupt(format!("the first stored event of {} is not a purchase", row.subscription)));
    };
    let ix = plans.get(plan_id, *plan_version).ok_or_else(|| corrupt(format!("stored purchase of unknown plan {plan_id} v{plan_version}")))?;
    let mut subscription = Subscription::purchase(&plans.catalog, ix, Instant::from_micros(row.at_micros), ledger);
    subscription.advance(&plans.catalog, Instant::from_micros(row.applied_at_micros), ledger);
    Ok(subscription)
}

/// Applies one stored row exactly as it was applied live: bring the
/// subscription up to the clock of that moment, then apply the event at its
/// own instant.
pub(crate) fn apply_row(plans: &Plans, subscription: &mut Subscription, row: &EventRow, ledger: &mut Vec<Entry>) -> Result<(), ServiceError> {
    let Some(event) = to_event(plans, &row.body)? else { return Ok(()) };
    subscription.advance(&plans.catalog, Instant::from_micros(row.applied_at_micros), ledger);
    subscription.apply(&plans.catalog, event, Instant::from_micros(row.at_micros), ledger);
    Ok(())
}
