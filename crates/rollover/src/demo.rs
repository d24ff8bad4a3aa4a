//! Demo data for a new store: the demo catalog and a few subscriptions with
//! usage, so that every endpoint shows something at once. Everything goes
//! through the service's own API, like an operator's shop would.

use rollover_core::{Country, GrantExpiry, Instant, Kind};
use rollover_service::{LifecycleEvent, NewSubscription, Service, ServiceError, SubscriptionIdentifiers, UsageRecord};

pub const CATALOG: &str = include_str!("../../../plans/demo.toml");

const DAY: i64 = 86_400 * 1_000_000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The demo subscriptions: id, plan, days since purchase, IMSI.
pub const SUBSCRIPTIONS: [(&str, &str, i64, &str); 6] = [
    // Bought 40 days ago: last month's 30 GB has carried over.
    ("demo-cn-30g", "cn-30g", 40, "460001234567890"),
    ("demo-stash-10g", "stash-10g", 75, "310260000000001"),
    ("demo-asia-7d", "asia-7d", 2, "440100000000001"),
    ("demo-eu-unlimited", "eu-unlimited-15d", 1, "262010000000001"),
    ("demo-au-5g", "au-5g", 3, "505010000000001"),
    ("demo-uk-payg", "uk-3g-payg", 5, "234150000000001"),
];

pub async fn load(service: &Service) -> Result<(), ServiceError> {
    service.add_plans(CATALOG).await?;
    let now = service.now();
    let ago = |days: i64| Instant::from_micros(now.micros() - days * DAY);
    for (id, plan, days, imsi) in SUBSCRIPTIONS {
        let identifiers = SubscriptionIdentifiers { imsi: Some(imsi.into()), ..SubscriptionIdentifiers::default() };
        service.create_subscription(NewSubscription { id: id.into(), plan: plan.into(), at: Some(ago(days)), identifiers }).await?;
    }
    service.apply_event("demo-eu-unlimited", LifecycleEvent::Install, Some(ago(1))).await?;
    let gift = Kind::parse("gift").expect("valid kind");
    service.apply_event("demo-cn-30g", LifecycleEvent::Grant { kind: gift, bytes: 2 * GIB, expires: GrantExpiry::PeriodEnd }, None).await?;
    let record = |n: u32, subscription: &str, bytes: u64, country: Option<&str>| UsageRecord {
        id: format!("demo-{n}"),
        subscription: subscription.into(),
        at: Instant::from_micros(now.micros() - 3_600_000_000 + n as i64 * 60_000_000),
        bytes,
        country: country.map(|c| Country::parse(c).expect("valid country")),
        counter: None,
    };
    service
        .record_usage(vec![
            record(1, "demo-cn-30g", 5 * GIB, Some("CN")),
            record(2, "demo-stash-10g", 3 * GIB, Some("US")),
            record(3, "demo-asia-7d", 700 * MIB, Some("JP")),
            record(4, "demo-eu-unlimited", 1200 * MIB, Some("FR")),
            record(5, "demo-au-5g", 5 * GIB + 300 * MIB, Some("AU")),
            record(6, "demo-uk-payg", 3 * GIB + 250 * MIB, Some("GB")),
        ])
        .await?;
    // A week of daily use on the monthly plans, for the pages' charts and
    // pace (usage older than `service.max_age_seconds` would be refused).
    let mut daily = Vec::new();
    for day in 1..=6i64 {
        for (n, (subscription, mib)) in [("demo-cn-30g", 600 + 90 * day as u64), ("demo-stash-10g", 150 + 40 * day as u64)].into_iter().enumerate() {
            daily.push(UsageRecord {
                id: format!("demo-day-{day}-{n}"),
                subscription: subscription.into(),
                at: Instant::from_micros(now.micros() - day * DAY),
                bytes: mib * MIB,
                country: Some(Country::parse(if n == 0 { "CN" } else { "US" }).expect("valid country")),
                counter: None,
            });
        }
    }
    service.record_usage(daily).await?;
    tracing::info!("demo catalog and 6 demo subscriptions loaded");
    Ok(())
}
