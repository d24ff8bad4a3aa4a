//! Notifications: what changed for a subscription that someone should hear
//! about, found by comparing before and after each change, and delivered as
//! HMAC-signed webhooks from a persistent outbox.
//!
//! Every notification has a deterministic key (subscription, kind, and the
//! instant or bucket it is about), so one made twice (say, when a boundary is
//! crossed again after a restart) is stored once.

use rollover_core::engine::Subscription;
use rollover_core::ledger::{Change, Entry, Lifecycle};
use rollover_core::{Catalog, Instant, Kind, Status, Zone};
use rollover_store::NotificationRow;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub secret: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub endpoints: Vec<Endpoint>,
    /// How long before carried data or a pass expires to warn.
    pub notice_micros: i64,
    /// First retry delay; each further retry doubles it, up to `max_backoff_micros`.
    pub retry_base_micros: i64,
    pub max_backoff_micros: i64,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig { endpoints: Vec::new(), notice_micros: 3 * 86_400 * 1_000_000, retry_base_micros: 1_000_000, max_backoff_micros: 3_600 * 1_000_000, max_attempts: 15 }
    }
}

/// What is compared before and after a change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    status: Status,
    /// 0, 50, 80 or 100: how much of the period's allowance is used.
    level: u8,
    period_start: Option<Instant>,
    advanced_to: Instant,
}

fn allowance_level(subscription: &Subscription, catalog: &Catalog) -> (u8, Option<Instant>, u64, u64) {
    let Some((_, start, end)) = subscription.period(catalog) else { return (0, None, 0, 0) };
    if catalog.get(subscription.plan()).allowance_bytes.is_none() {
        return (0, Some(start), 0, 0);
    }
    let granted_used = subscription.buckets().iter().find(|b| b.kind == Kind::ALLOWANCE && b.expires == end).map(|b| (b.granted_bytes, b.used_bytes));
    // A used-up allowance has left the live buckets: all of it is used.
    let Some((granted, used)) = granted_used.or_else(|| subscription.period_allowance_bytes(catalog).map(|bytes| (bytes, bytes))) else {
        return (0, Some(start), 0, 0);
    };
    if granted == 0 {
        return (0, Some(start), 0, 0);
    }
    let percent = used as u128 * 100 / granted.max(1) as u128;
    let level = match percent {
        100.. => 100,
        80.. => 80,
        50.. => 50,
        _ => 0,
    };
    (level, Some(start), granted, used)
}

pub(crate) fn snapshot(subscription: &Subscription, catalog: &Catalog, at: Instant, advanced_to: Instant) -> Snapshot {
    let (level, period_start, _, _) = allowance_level(subscription, catalog);
    Snapshot { status: subscription.status(catalog, at), level, period_start, advanced_to }
}

/// The next instant a notice (carried data or a pass about to expire) falls
/// due after `after`.
pub(crate) fn next_notice(subscription: &Subscription, catalog: &Catalog, after: Instant, notice_micros: i64) -> Instant {
    let mut next = Instant::NEVER;
    for (notice, _) in notices(subscription, catalog, notice_micros) {
        if notice > after {
            next = next.min(notice);
        }
    }
    next
}

/// (notice instant, what) for each live carry bucket with data and for a
/// pass's end.
fn notices(subscription: &Subscription, catalog: &Catalog, notice_micros: i64) -> Vec<(Instant, Notice)> {
    let mut out = Vec::new();
    for bucket in subscription.buckets() {
        if bucket.kind == Kind::CARRY && !bucket.expires.is_never() {
            out.push((bucket.expires.plus_micros(-notice_micros), Notice::Carry { bucket: bucket.id, remaining: bucket.remaining_bytes(), expires: bucket.expires }));
        }
    }
    if let Some(end) = subscription.expires(catalog) {
        out.push((end.plus_micros(-notice_micros), Notice::Plan { expires: end }));
    }
    out
}

enum Notice {
    Carry { bucket: u32, remaining: u64, expires: Instant },
    Plan { expires: Instant },
}

pub(crate) struct Found {
    key: String,
    kind: &'static str,
    at: Instant,
    data: Value,
}

impl Found {
    /// A notification of something outside the engine (the eSIM's profile):
    /// keyed `{subscription}/{kind}/{discriminator}`.
    pub(crate) fn new(subscription_id: &str, kind: &'static str, discriminator: String, at: Instant, data: Value) -> Found {
        Found { key: format!("{subscription_id}/{kind}/{discriminator}"), kind, at, data }
    }

    /// A notification with a key of its own.
    pub(crate) fn keyed(key: String, kind: &'static str, at: Instant, data: Value) -> Found {
        Found { key, kind, at, data }
    }
}

/// What changed between `before` and now. `key_instant` names event-driven
/// changes (the event's instant) or boundary-driven ones (the first boundary
/// crossed), so that the same change always gets the same key.
#[allow(clippy::too_many_arguments)]
pub(crate) fn changes(
    subscription_id: &str,
    before: Snapshot,
    subscription: &Subscription,
    catalog: &Catalog,
    now: Instant,
    key_instant: Instant,
    ledger: &[Entry],
    notice_micros: i64,
) -> Vec<Found> {
    let mut found = Finds { subscription_id, found: Vec::new() };
    let status = subscription.status(catalog, now);
    let ended = matches!(status, Status::Cancelled | Status::Lapsed | Status::Expired);
    if !ended {
        usage_level(&mut found, &before, subscription, catalog, key_instant);
    }
    status_change(&mut found, before.status, status, key_instant);
    lifecycle(&mut found, ledger, catalog);
    if !ended {
        notices_due(&mut found, &before, subscription, catalog, now, notice_micros);
    }
    found.found
}

/// What [`changes`] has found so far, keyed under one subscription.
struct Finds<'a> {
    subscription_id: &'a str,
    found: Vec<Found>,
}

impl Finds<'_> {
    fn push(&mut self, kind: &'static str, discriminator: String, at: Instant, data: Value) {
        self.found.push(Found { key: format!("{}/{kind}/{discriminator}", self.subscription_id), kind, at, data });
    }
}

/// `usage_50`, `usage_80`, `usage_100`: the allowance crossed a level in
/// the same period.
fn usage_level(found: &mut Finds, before: &Snapshot, subscription: &Subscription, catalog: &Catalog, key_instant: Instant) {
    let (level, period_start, granted, used) = allowance_level(subscription, catalog);
    let Some(start) = period_start else { return };
    if level < 50 || level <= before.level || period_start != before.period_start {
        return;
    }
    let kind = match level {
        100 => "usage_100",
        80 => "usage_80",
        _ => "usage_50",
    };
    let data = json!({"percent": level, "allowance_bytes": granted, "used_bytes": used, "period_start": start.to_rfc3339(&Zone::utc())});
    found.push(kind, start.micros().to_string(), key_instant, data);
}

/// `throttled`, `depleted`, `restored`.
fn status_change(found: &mut Finds, before: Status, status: Status, key_instant: Instant) {
    let kind = match (before, status) {
        (before, now) if before == now => None,
        (_, Status::Throttled) => Some("throttled"),
        (_, Status::Depleted) => Some("depleted"),
        (Status::Throttled | Status::Depleted, Status::Active) => Some("restored"),
        _ => None,
    };
    if let Some(kind) = kind {
        found.push(kind, key_instant.micros().to_string(), key_instant, json!({"status": status.name(), "previous_status": before.name()}));
    }
}

/// `lapsed`, `expired`, `plan_changed`, from the ledger entries of this change.
fn lifecycle(found: &mut Finds, ledger: &[Entry], catalog: &Catalog) {
    for entry in ledger {
        let (kind, data) = match entry.change {
            Change::Lifecycle(Lifecycle::Lapsed) => ("lapsed", json!({})),
            Change::Lifecycle(Lifecycle::Expired) => ("expired", json!({})),
            Change::Lifecycle(Lifecycle::PlanChanged { from, to }) => ("plan_changed", json!({"from": catalog.get(from).id, "to": catalog.get(to).id})),
            _ => continue,
        };
        found.push(kind, entry.at.micros().to_string(), entry.at, data);
    }
}

/// `carry_expiring`, `plan_expiring`: notices whose instant this change
/// passed.
fn notices_due(found: &mut Finds, before: &Snapshot, subscription: &Subscription, catalog: &Catalog, now: Instant, notice_micros: i64) {
    let utc = Zone::utc();
    for (notice, what) in notices(subscription, catalog, notice_micros) {
        if notice <= before.advanced_to || notice > now {
            continue;
        }
        match what {
            Notice::Carry { bucket, remaining, expires } if remaining > 0 && now < expires => {
                let data = json!({"bucket": bucket, "remaining_bytes": remaining, "expires_at": expires.to_rfc3339(&utc)});
                found.push("carry_expiring", format!("bucket-{bucket}"), notice, data);
            }
            Notice::Plan { expires } if now < expires => found.push("plan_expiring", expires.micros().to_string(), notice, json!({"expires_at": expires.to_rfc3339(&utc)})),
            _ => {}
        }
    }
}

/// One outbox row per endpoint for each change.
pub(crate) fn rows(config: &NotifyConfig, subscription_id: &str, found: Vec<Found>, now: Instant) -> Vec<NotificationRow> {
    let utc = Zone::utc();
    let mut rows = Vec::new();
    for f in found {
        let subscription = if subscription_id.is_empty() { Value::Null } else { json!(subscription_id) };
        let payload = json!({"id": f.key, "type": f.kind, "subscription": subscription, "at": f.at.to_rfc3339(&utc), "data": f.data}).to_string();
        for endpoint in &config.endpoints {
            rows.push(NotificationRow { key: format!("{}@{}", f.key, endpoint.id), endpoint: endpoint.id.clone(), payload: payload.clone(), created_at_micros: now.micros() });
        }
    }
    rows
}
