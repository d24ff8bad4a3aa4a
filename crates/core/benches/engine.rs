//! Criterion benchmarks of the engine's hot paths:
//! - rating one usage record against a subscription with 5 live buckets;
//! - one boundary turn (expire, carry, grant) for one subscription.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rollover_core::engine::{Event, GrantExpiry};
use rollover_core::plan::{AllowanceDraft, OrderDraft, PeriodDraft, PlanDraft, RolloverDraft};
use rollover_core::{Catalog, Instant, Kind, Plan, PlanIx, Subscription};

fn plan() -> Plan {
    Plan::from_draft(&PlanDraft {
        id: Some("bench".into()),
        name: Some("bench".into()),
        currency: Some("CNY".into()),
        price: Some("58.00".into()),
        timezone: Some("Asia/Shanghai".into()),
        period: Some(PeriodDraft { kind: Some("monthly".into()), ..Default::default() }),
        allowance: Some(AllowanceDraft { data: Some("1000GiB".into()) }),
        rollover: Some(RolloverDraft {
            from: Some(vec!["allowance".into(), "gift".into()]),
            cap: Some("500GiB".into()),
            ..Default::default()
        }),
        order: Some(OrderDraft { kinds: Some(vec!["bonus".into(), "carry".into(), "gift".into(), "addon".into(), "allowance".into()]) }),
        ..Default::default()
    })
    .unwrap()
}

fn at(text: &str) -> Instant {
    Instant::parse_rfc3339(text).unwrap()
}

/// A subscription on 2026-02-10 with five live buckets: carry, allowance, and
/// three grants.
fn five_buckets(catalog: &Catalog, ix: PlanIx) -> Subscription {
    let mut ledger = Vec::new();
    let mut s = Subscription::purchase(catalog, ix, at("2026-01-01T00:00:00+08:00"), &mut ledger);
    s.apply(catalog, Event::Usage { bytes: 1 << 30, country: None }, at("2026-01-10T00:00:00+08:00"), &mut ledger);
    for (kind, day) in [("gift", "05"), ("addon", "06"), ("bonus", "07")] {
        let event = Event::Grant { kind: Kind::parse(kind).unwrap(), bytes: 100 << 30, expires: GrantExpiry::PeriodEnd };
        s.apply(catalog, event, at(&format!("2026-02-{day}T00:00:00+08:00")), &mut ledger);
    }
    s.advance(catalog, at("2026-02-10T00:00:00+08:00"), &mut ledger);
    assert_eq!(s.buckets().len(), 5);
    s
}

fn benches(c: &mut Criterion) {
    let mut catalog = Catalog::new();
    let ix = catalog.add(plan());

    let mut subscription = five_buckets(&catalog, ix);
    let mut ledger = Vec::with_capacity(64);
    let now = at("2026-02-10T12:00:00+08:00");
    c.bench_function("rate one record, 5 live buckets", |b| {
        b.iter(|| {
            ledger.clear();
            let outcome = subscription.apply(&catalog, Event::Usage { bytes: black_box(1500), country: None }, now, &mut ledger);
            black_box(outcome)
        })
    });

    let before = five_buckets(&catalog, ix);
    let boundary = at("2026-03-01T00:00:00+08:00");
    c.bench_function("boundary turn: expire, carry, grant", |b| {
        b.iter_batched_ref(
            || (before.clone(), Vec::with_capacity(64)),
            |(s, ledger)| {
                s.advance(&catalog, boundary, ledger);
                black_box(s.buckets().len())
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(engine, benches);
criterion_main!(engine);
