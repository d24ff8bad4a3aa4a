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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_hash_outlives_the_older_of_its_records() {
    use crate::keys::{Stamp, fingerprint};
    let (service, dir) = service("hash-sweep").await;
    // Another key held this record's hash first (the store has no record
    // "later"), stamped six days back.
    let older = Stamp { at_micros: at("2026-02-23T00:00:00Z").micros(), fingerprint: fingerprint(99, None) };
    service.ask("s1", |reply| crate::worker::Command::HoldHash { subscription: "s1".into(), key: "later".into(), stamp: older, reply }).await.unwrap();
    let first = service.record_usage(vec![record("later", 10, None)]).await.unwrap();
    assert!(matches!(first[0], UsageResult::Accepted { drawn_bytes: 10, .. }), "{first:?}");
    // Two days on, the older stamp is past the maximum age, the record is
    // not, and enough new keys come for memory to sweep the old ones.
    service.set_clock(at("2026-03-03T00:00:00Z")).await.unwrap();
    let fill: Vec<UsageRecord> = (0..100).map(|n| UsageRecord { at: at("2026-03-03T00:00:00Z"), ..record(&format!("fill-{n}"), 1, None) }).collect();
    assert!(service.record_usage(fill).await.unwrap().iter().all(|r| matches!(r, UsageResult::Accepted { .. })));
    assert_eq!(service.record_usage(vec![record("later", 10, None)]).await.unwrap(), [UsageResult::Duplicate], "the retry is still known");
    assert_eq!(service.balance("s1").await.unwrap().total_bytes, (1 << 30) - 10 - 100, "rated once");
    let _ = std::fs::remove_dir_all(dir);
}

/// A PostgreSQL schema of its own for one cluster test.
fn cluster_url(name: &str) -> String {
    let schema = format!("cluster_{name}_{}", std::process::id());
    let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    // The synchronous client runs its own runtime: off the test's.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect("postgres://root@127.0.0.1:5432/test", postgres::NoTls).expect("the test PostgreSQL");
        client.batch_execute(&drop).unwrap();
    })
    .join()
    .unwrap();
    format!("postgres://root@127.0.0.1:5432/test?schema={schema}")
}

async fn node(url: &str, id: &str) -> Service {
    let (url, cluster) = (url.to_string(), crate::cluster::ClusterConfig { node_id: id.into(), lease_ttl: std::time::Duration::from_millis(1200) });
    tokio::task::spawn_blocking(move || Service::start_cluster(&url, Config::default(), cluster)).await.unwrap().expect("the node starts")
}

/// Waits until `counts` (shards served by each node) are as wanted.
async fn wait_for_shares(nodes: &[&Service], wanted: &[usize]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counts: Vec<usize> = nodes.iter().map(|n| n.ownership().unwrap().served().len()).collect();
        if counts == wanted {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "shards served {counts:?}, wanted {wanted:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_share_shards_and_hand_them_over_whole() {
    let url = cluster_url("share");
    let a = node(&url, "a").await;
    assert!(a.ownership().unwrap().served().is_empty() || a.ownership().unwrap().served().len() <= 256);
    wait_for_shares(&[&a], &[256]).await;
    a.add_plans(PLAN).await.unwrap();
    let ids: Vec<String> = (0..40).map(|n| format!("sub-{n}")).collect();
    for id in &ids {
        a.create_subscription(NewSubscription { id: id.clone(), plan: "m".into(), at: None, identifiers: SubscriptionIdentifiers::default() }).await.unwrap();
    }
    let now = a.now();
    let usage = |id: &str, key: &str, bytes: u64| UsageRecord { id: key.into(), subscription: id.into(), at: now, bytes, country: None, counter: None };
    let first: Vec<UsageRecord> = ids.iter().map(|id| usage(id, "r1", 1000)).collect();
    assert!(a.record_usage(first.clone()).await.unwrap().iter().all(|r| matches!(r, UsageResult::Accepted { .. })));

    // A second node joins: half the shards move to it, loaded from the store.
    let b = node(&url, "b").await;
    wait_for_shares(&[&a, &b], &[128, 128]).await;
    let (served_a, served_b) = (a.ownership().unwrap().served(), b.ownership().unwrap().served());
    assert!(served_a.iter().all(|(s, _)| !served_b.iter().any(|(t, _)| t == s)), "no shard served twice");
    for id in &ids {
        let shard = crate::shard_of(id);
        let (owner, other) = if served_a.iter().any(|&(s, _)| s == shard) { (&a, &b) } else { (&b, &a) };
        assert_eq!(owner.balance(id).await.unwrap().total_bytes, (1 << 30) - 1000, "{id} as its owner has it");
        assert_eq!(other.balance(id).await.unwrap_err(), ServiceError::ShardMoving { shard }, "{id} is not answered by the other node");
        // The idempotency keys moved with the shard.
        assert_eq!(owner.record_usage(vec![usage(id, "r1", 1000)]).await.unwrap(), vec![UsageResult::Duplicate]);
        assert!(matches!(owner.record_usage(vec![usage(id, "r2", 500)]).await.unwrap()[0], UsageResult::Accepted { drawn_bytes: 500, .. }));
        assert!(matches!(other.record_usage(vec![usage(id, "r3", 1)]).await, Err(ServiceError::ShardMoving { .. })));
    }

    // b leaves gracefully: a takes every shard back, with b's commits.
    let leaving = b.clone();
    tokio::task::spawn_blocking(move || leaving.leave_cluster()).await.unwrap();
    wait_for_shares(&[&a], &[256]).await;
    for id in &ids {
        assert_eq!(a.balance(id).await.unwrap().total_bytes, (1 << 30) - 1500, "{id} after the hand-back");
        assert_eq!(a.record_usage(vec![usage(id, "r2", 500)]).await.unwrap(), vec![UsageResult::Duplicate]);
    }
    // Every shard taken over got a new epoch; b's old epochs are fenced.
    let epochs_now = a.ownership().unwrap().served();
    for (shard, epoch) in &served_b {
        let (_, now) = epochs_now.iter().find(|(s, _)| s == shard).unwrap();
        assert!(now > epoch, "shard {shard}: epoch {now} after b's {epoch}");
    }
    // The last handles go off the runtime: a PostgreSQL client closes by blocking.
    tokio::task::spawn_blocking(move || {
        a.leave_cluster();
        drop((a, b));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_needs_postgresql() {
    let dir = std::env::temp_dir().join(format!("rollover-service-cluster-sqlite-{}", std::process::id()));
    let url = format!("sqlite://{}", dir.join("rollover.db").display());
    let cluster = crate::cluster::ClusterConfig { node_id: "a".into(), lease_ttl: std::time::Duration::from_secs(3) };
    let Err(error) = Service::start_cluster(&url, Config::default(), cluster) else { panic!("a cluster node started on SQLite") };
    assert!(error.to_string().contains("cluster mode needs the PostgreSQL store"), "{error}");
}

/// Calls between nodes in one process: to whichever node serves the shard.
struct Direct(std::sync::Mutex<Vec<Service>>);

impl crate::remote::Transport for Direct {
    fn request(&self, shard: u32, body: Vec<u8>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, ServiceError>> + Send>> {
        let owner = self.0.lock().unwrap().iter().find(|n| n.ownership().unwrap().serving(shard)).cloned();
        Box::pin(async move {
            match owner {
                Some(owner) => Ok(owner.answer_remote(&body).await),
                None => Err(ServiceError::ShardMoving { shard }),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_answer_for_each_others_shards() {
    let url = cluster_url("forward");
    let a = node(&url, "a").await;
    wait_for_shares(&[&a], &[256]).await;
    a.add_plans(PLAN).await.unwrap();
    let b = node(&url, "b").await;
    wait_for_shares(&[&a, &b], &[128, 128]).await;
    let direct = std::sync::Arc::new(Direct(std::sync::Mutex::new(vec![a.clone(), b.clone()])));
    a.set_transport(direct.clone());
    b.set_transport(direct.clone());
    let ids: Vec<String> = (0..30).map(|n| format!("fwd-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let imsi = format!("00101{n:010}");
        let identifiers = SubscriptionIdentifiers { imsi: Some(imsi), ..SubscriptionIdentifiers::default() };
        a.create_subscription(NewSubscription { id: id.clone(), plan: "m".into(), at: None, identifiers }).await.unwrap();
    }
    assert_eq!(
        b.create_subscription(NewSubscription { id: ids[0].clone(), plan: "m".into(), at: None, identifiers: SubscriptionIdentifiers::default() }).await.unwrap_err(),
        ServiceError::SubscriptionExists { id: ids[0].clone() },
        "the owner refuses a second purchase, whichever node it reached"
    );
    let now = a.now();
    let usage = |id: &str, key: &str, bytes: u64| UsageRecord { id: key.into(), subscription: id.into(), at: now, bytes, country: None, counter: None };
    // One batch for every subscription, through b; again through a: duplicates.
    let batch: Vec<UsageRecord> = ids.iter().map(|id| usage(id, "u1", 2000)).collect();
    let first = b.record_usage(batch.clone()).await.unwrap();
    assert!(first.iter().all(|r| matches!(r, UsageResult::Accepted { drawn_bytes: 2000, .. })), "{first:?}");
    assert!(a.record_usage(batch).await.unwrap().iter().all(|r| *r == UsageResult::Duplicate));
    for id in &ids {
        let (from_a, from_b) = (a.balance(id).await.unwrap(), b.balance(id).await.unwrap());
        assert_eq!((from_a.total_bytes, from_b.total_bytes), ((1 << 30) - 2000, (1 << 30) - 2000), "{id}");
        assert_eq!(from_a.plan.ix, from_b.plan.ix);
        assert_eq!(a.apply_event(id, crate::LifecycleEvent::Suspend, None).await.unwrap(), crate::EventOutcome::Applied);
        assert_eq!(b.apply_event(id, crate::LifecycleEvent::Resume, None).await.unwrap(), crate::EventOutcome::Applied);
    }
    // Lists are of the whole cluster, whichever node is asked, in id order.
    let mut sorted = ids.clone();
    sorted.sort();
    a.apply_event(&ids[5], crate::LifecycleEvent::Suspend, None).await.unwrap();
    for node in [&a, &b] {
        let all = crate::SubscriptionFilter::default();
        let (page, total) = node.subscriptions(all.clone(), 0, 100).await.unwrap();
        assert_eq!((page.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), total), (sorted.clone(), 30));
        let (page, total) = node.subscriptions(all.clone(), 10, 5).await.unwrap();
        assert_eq!((page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), total), (sorted[10..15].iter().map(String::as_str).collect(), 30));
        let suspended = crate::SubscriptionFilter { status: Some(rollover_core::Status::Suspended), plan: None };
        let (page, total) = node.subscriptions(suspended, 0, 100).await.unwrap();
        assert_eq!((page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), total), (vec![ids[5].as_str()], 1));
        assert_eq!(node.plan_counts().await.unwrap(), std::collections::HashMap::from([(("m".to_string(), 1), 30)]));
        let too_deep = node.subscriptions(all, crate::CLUSTER_LIST_DEPTH - 5, 10).await.unwrap_err();
        assert!(matches!(too_deep, ServiceError::Invalid { field: "offset", .. }), "{too_deep:?}");
    }
    b.apply_event(&ids[5], crate::LifecycleEvent::Resume, None).await.unwrap();
    // An ICCID released at one node (its order cancelled) can be sold again
    // at the other, which had learnt it from the store.
    let iccid = "8988247000000000017";
    let holder = SubscriptionIdentifiers { iccid: Some(iccid.into()), ..SubscriptionIdentifiers::default() };
    a.create_subscription(NewSubscription { id: "first-owner".into(), plan: "m".into(), at: None, identifiers: holder.clone() }).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.subscription_by("iccid", iccid).is_none() {
        assert!(std::time::Instant::now() < deadline, "b learns the purchase's ICCID");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refused = b.create_subscription(NewSubscription { id: "second-owner".into(), plan: "m".into(), at: None, identifiers: holder.clone() }).await;
    assert_eq!(refused.unwrap_err(), ServiceError::IdentifierTaken { field: "identifiers.iccid", owner: "first-owner".into() }, "held: refused");
    a.release_iccid("first-owner").await.unwrap();
    assert_eq!(b.subscription_by("iccid", iccid).as_deref(), Some("first-owner"), "b has not heard of the release");
    b.create_subscription(NewSubscription { id: "second-owner".into(), plan: "m".into(), at: None, identifiers: holder }).await.unwrap();
    assert_eq!(b.subscription_by("iccid", iccid).as_deref(), Some("second-owner"));
    // A session opened through a continues through b and ends through a.
    let id = &ids[3];
    let started = a.session("gy-1", Some(id), crate::SessionOp::Start { requested_bytes: Some(10_000) }, None).await.unwrap();
    assert_eq!(started.granted_bytes, 10_000);
    let step = b.session("gy-1", Some(id), crate::SessionOp::Update { used_bytes: 4000, requested_bytes: Some(10_000), request_number: 1 }, None).await;
    assert!(matches!(step, Ok(ref answer) if matches!(answer.used, Some(UsageResult::Accepted { drawn_bytes: 4000, .. }))), "{step:?}");
    let ended = a.session("gy-1", None, crate::SessionOp::End { used_bytes: 1000, request_number: 2 }, None).await.unwrap();
    assert!(matches!(ended.used, Some(UsageResult::Accepted { drawn_bytes: 1000, .. })));
    assert_eq!(b.balance(id).await.unwrap().total_bytes, (1 << 30) - 7000);
    // A session whose reservation went with its node: b leaves, a takes its
    // shards, and the session's next report, naming its subscription, is
    // rated there and opens the reservation again.
    let on_b = ids.iter().find(|id| *id != &ids[3] && b.ownership().unwrap().serving(crate::shard_of(id))).unwrap().clone();
    assert_eq!(a.session("gy-2", Some(&on_b), crate::SessionOp::Start { requested_bytes: Some(10_000) }, None).await.unwrap().granted_bytes, 10_000);
    let leaving = b.clone();
    tokio::task::spawn_blocking(move || leaving.leave_cluster()).await.unwrap();
    wait_for_shares(&[&a, &b], &[256, 0]).await;
    let update = crate::SessionOp::Update { used_bytes: 3000, requested_bytes: Some(10_000), request_number: 1 };
    let step = a.session("gy-2", Some(&on_b), update, None).await.unwrap();
    assert!(matches!(step.used, Some(UsageResult::Accepted { drawn_bytes: 3000, .. })), "{step:?}");
    assert_eq!(step.granted_bytes, 10_000, "the reservation is open again");
    assert_eq!(a.session("gy-2", Some(&on_b), update, None).await.unwrap(), step, "a repeat gets the same answer");
    assert_eq!(a.balance(&on_b).await.unwrap().total_bytes, (1 << 30) - 5000);
    // Every commit of both nodes was made under the epoch it held.
    let audit_url = url.clone();
    let audit = tokio::task::spawn_blocking(move || rollover_store::Leases::open(&audit_url, "audit").unwrap().audit().unwrap()).await.unwrap();
    assert!(audit.commits > 30 && audit.stale == 0, "{audit:?}");
    tokio::task::spawn_blocking(move || {
        a.leave_cluster();
        direct.0.lock().unwrap().clear();
        drop((a, b));
    })
    .await
    .unwrap();
}
