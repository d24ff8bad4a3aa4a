//! In-process tests of the service on a simulated clock and a SQLite store of
//! their own: the rules that no HTTP layer stands between.

use rollover_core::{Country, Instant};

use crate::{Clock, Config, NewSubscription, Service, ServiceError, SubscriptionIdentifiers, UsageRecord, UsageResult};

const PLAN: &str = "[[plan]]\nid = \"m\"\nname = \"M\"\ncurrency = \"EUR\"\nprice = \"5.00\"\ntimezone = \"UTC\"\nperiod = { kind = \"monthly\" }\nallowance = { data = \"1GiB\" }\n";

fn at(text: &str) -> Instant {
    Instant::parse_rfc3339(text).unwrap()
}

/// A service on a fresh store, its clock on 2026-03-01, plan `m` and `s1` on it.
async fn service(name: &str) -> (Service, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("rollover-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}", dir.join("rollover.db").display());
    let service = tokio::task::spawn_blocking(move || Service::start_url(&url, Clock::simulated(at("2026-03-01T00:00:00Z")), Config::default()))
        .await
        .unwrap()
        .expect("the service starts");
    service.add_plans(PLAN).await.unwrap();
    let new = NewSubscription { id: "s1".into(), plan: "m".into(), at: None, identifiers: SubscriptionIdentifiers::default() };
    service.create_subscription(new).await.unwrap();
    (service, dir)
}

fn record(id: &str, bytes: u64, country: Option<&str>) -> UsageRecord {
    UsageRecord { id: id.into(), subscription: "s1".into(), at: at("2026-03-01T00:00:00Z"), bytes, country: country.map(|c| Country::parse(c).unwrap()), counter: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_plan_get_one_version_each() {
    let (service, dir) = service("uploads").await;
    let uploads: Vec<_> = (0..20)
        .map(|n| {
            let service = service.clone();
            tokio::spawn(async move { service.add_plans(&PLAN.replace("name = \"M\"", &format!("name = \"M {n}\""))).await.unwrap().plans[0].1 })
        })
        .collect();
    let mut versions = Vec::new();
    for upload in uploads {
        versions.push(upload.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (2..=21).collect::<Vec<u32>>(), "version 1 was the first upload");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_the_same_only_if_it_says_the_same() {
    let (service, dir) = service("keys").await;
    let results = service.record_usage(vec![record("a", 10, None), record("a", 10, None), record("a", 11, None), record("a", 10, Some("FR"))]).await.unwrap();
    assert!(matches!(results[0], UsageResult::Accepted { drawn_bytes: 10, .. }), "{results:?}");
    assert_eq!(results[1..], [UsageResult::Duplicate, UsageResult::Conflict, UsageResult::Conflict]);
    assert_eq!(service.balance("s1").await.unwrap().total_bytes, (1 << 30) - 10);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instants_are_bounded() {
    let (service, dir) = service("instants").await;
    let old = NewSubscription { id: "s2".into(), plan: "m".into(), at: Some(at("2020-01-01T00:00:00Z")), identifiers: SubscriptionIdentifiers::default() };
    assert!(matches!(service.create_subscription(old).await, Err(ServiceError::InstantOutOfRange { field: "at", .. })));
    let early = service.apply_event("s1", crate::LifecycleEvent::Suspend, Some(at("2026-02-28T00:00:00Z"))).await;
    assert!(matches!(early, Err(ServiceError::InstantOutOfRange { field: "at", .. })), "{early:?}");
    let leap = service.set_clock(at("2028-01-01T00:00:00Z")).await;
    assert!(matches!(leap, Err(ServiceError::InstantOutOfRange { field: "now", .. })), "one step may not run years of boundaries: {leap:?}");
    assert_eq!(service.set_clock(at("2026-06-01T00:00:00Z")).await.unwrap(), at("2026-06-01T00:00:00Z"));
    assert!(matches!(service.set_clock(at("2026-05-01T00:00:00Z")).await, Err(ServiceError::ClockBackwards { .. })));
    let _ = std::fs::remove_dir_all(dir);
}

/// A session's reports, as the worker sees them: each number rated once, a
/// repeat answered as first, a start on an open session and a report on a
/// closed one refused, and a reservation held back from other sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reports_are_rated_once_and_reservations_are_held() {
    use crate::SessionOp;
    const MIB: u64 = 1 << 20;
    let (service, dir) = service("sessions").await;
    service.record_usage(vec![record("u", 900 * MIB, None)]).await.unwrap();
    let start = SessionOp::Start { requested_bytes: Some(100 * MIB) };
    assert_eq!(service.session("g1", Some("s1"), start, None).await.unwrap().granted_bytes, 100 * MIB);
    assert!(matches!(service.session("g1", Some("s1"), start, None).await, Err(ServiceError::SessionOpen { .. })));
    // A second session gets only what the first does not hold.
    assert_eq!(service.session("g2", Some("s1"), start, None).await.unwrap().granted_bytes, 24 * MIB);
    let update = |used_mib: u64, number: u32| SessionOp::Update { used_bytes: used_mib * MIB, requested_bytes: Some(10 * MIB), request_number: number };
    let cases: [(SessionOp, u64); 4] = [
        // (report on g1, bytes left on the subscription after it)
        (update(10, 1), 114 * MIB),
        (update(10, 1), 114 * MIB),
        (update(20, 2), 94 * MIB),
        (SessionOp::End { used_bytes: 30 * MIB, request_number: 3 }, 64 * MIB),
    ];
    let mut answers = Vec::new();
    for (op, left) in cases {
        answers.push(service.session("g1", None, op, None).await.unwrap());
        assert_eq!(service.balance("s1").await.unwrap().total_bytes, left, "after {op:?}");
    }
    assert_eq!(answers[0], answers[1], "a repeated request number gets the first answer");
    let closed = service.session("g1", None, update(1, 4), None).await;
    assert!(matches!(closed, Err(ServiceError::UnknownSession { .. })), "{closed:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A hash held in memory is never an answer by itself: a record, a
/// session's report and a counter's report whose key's hash is held with no
/// record behind it (as another key of the same hash would leave) are rated,
/// and only a real repeat is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_hash_never_makes_a_duplicate() {
    use crate::keys::{Stamp, fingerprint};
    use crate::{Counter, SessionOp};
    let (service, dir) = service("hashes").await;
    let hold = |key: &str, stamp: Stamp| {
        let (service, key) = (service.clone(), key.to_string());
        async move { service.ask("s1", |reply| crate::worker::Command::HoldHash { subscription: "s1".into(), key, stamp, reply }).await.unwrap() }
    };
    let same = Stamp { at_micros: at("2026-03-01T00:00:00Z").micros(), fingerprint: fingerprint(10, None) };
    hold("victim", same).await;
    let first = service.record_usage(vec![record("victim", 10, None)]).await.unwrap();
    assert!(matches!(first[0], UsageResult::Accepted { drawn_bytes: 10, .. }), "the store has no such record: {first:?}");
    assert_eq!(service.record_usage(vec![record("victim", 10, None)]).await.unwrap(), [UsageResult::Duplicate], "now it has");
    assert_eq!(service.record_usage(vec![record("victim", 11, None)]).await.unwrap(), [UsageResult::Conflict]);
    hold("#session:1:g1", same).await;
    let start = SessionOp::Start { requested_bytes: Some(1 << 20) };
    service.session("g1", Some("s1"), start, None).await.unwrap();
    let update = SessionOp::Update { used_bytes: 1000, requested_bytes: Some(1 << 20), request_number: 1 };
    service.session("g1", None, update, None).await.unwrap();
    hold("#acct:500:nas/1", same).await;
    let counter = UsageRecord { counter: Some(Counter { session: "nas/1".into(), total: 500, stop: false }), ..record("c1", 500, None) };
    let rated = service.record_usage(vec![counter.clone()]).await.unwrap();
    assert!(matches!(rated[0], UsageResult::Accepted { drawn_bytes: 500, .. }), "{rated:?}");
    assert_eq!(service.record_usage(vec![counter]).await.unwrap(), [UsageResult::Duplicate]);
    assert_eq!(service.balance("s1").await.unwrap().total_bytes, (1 << 30) - 10 - 1000 - 500, "every one rated once");
    let metrics = service.metrics_text().await.unwrap();
    assert!(metrics.contains("rollover_idempotency_lookups_total{found=\"no\"} 2"), "{metrics}");
    let _ = std::fs::remove_dir_all(dir);
}
