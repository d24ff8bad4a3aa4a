//! Cluster mode end to end: three `rollover serve` nodes on one PostgreSQL
//! schema, a three-server NATS cluster on loopback ports (Debian's
//! `nats-server`), and HTTP usage sent to random nodes with deliberate
//! repeats while nodes crash, pause and restart, a NATS server dies, and
//! PostgreSQL ends every node's sessions. After the load drains, every acknowledged record is in the log exactly
//! once and every balance equals the plan's allowance less the acknowledged
//! records, as a replay of them on one node gives.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::network::{Scratch, free_port, radclient};
use crate::server::{Backend, Server, TestStore};

const PLAN: &str = "[[plan]]\nid = \"big\"\nname = \"Big\"\ncurrency = \"EUR\"\nprice = \"5.00\"\ntimezone = \"UTC\"\nperiod = { kind = \"monthly\" }\nallowance = { data = \"100GiB\" }\n";
const ALLOWANCE: i64 = 100 << 30;
const LEASE_TTL_MS: u64 = 1500;
const SUBSCRIPTIONS: usize = 48;
const NATS_USER: &str = "rollover";
const NATS_PASSWORD: &str = "cluster-test-secret";
const RADIUS_SECRET: &str = "cluster-radius-secret";
/// Threads sending HTTP usage at once.
const HTTP_SENDERS: usize = 3;
/// RADIUS sessions the load keeps reporting, each on its own subscription.
const RADIUS_SESSIONS: usize = 4;

fn imsi(n: usize) -> String {
    format!("00101{n:010}")
}

/// A NATS cluster of three servers on loopback ports, with JetStream.
struct NatsCluster {
    servers: Vec<Option<Child>>,
    ports: Vec<u16>,
    configs: Vec<PathBuf>,
}

impl NatsCluster {
    fn start(scratch: &Scratch) -> NatsCluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_list = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect::<Vec<_>>().join(", ");
        let mut configs = Vec::new();
        for n in 0..3 {
            let store = scratch.0.join(format!("jetstream-{n}"));
            let text = format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{}\nlog_file: \"{}\"\nauthorization {{\n  user: {NATS_USER}\n  password: {NATS_PASSWORD}\n}}\njetstream {{\n  store_dir: \"{}\"\n}}\ncluster {{\n  name: rollover_test\n  listen: 127.0.0.1:{}\n  routes: [{route_list}]\n}}\n",
                ports[n],
                scratch.0.join(format!("nats-{n}.log")).display(),
                store.display(),
                routes[n]
            );
            let path = scratch.0.join(format!("nats-{n}.conf"));
            std::fs::write(&path, text).expect("a NATS config");
            configs.push(path);
        }
        let mut cluster = NatsCluster { servers: Vec::new(), ports, configs };
        for n in 0..3 {
            let child = cluster.spawn(n);
            cluster.servers.push(Some(child));
        }
        cluster
    }

    fn spawn(&self, n: usize) -> Child {
        let child = Command::new("nats-server").arg("-c").arg(&self.configs[n]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nats-server (Debian's nats-server package) starts");
        wait_for_port(self.ports[n]);
        child
    }

    fn urls(&self) -> String {
        // The servers let in only clients that log in: the nodes take the
        // user and password from the URLs.
        self.ports.iter().map(|p| format!("nats://{NATS_USER}:{NATS_PASSWORD}@127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.servers[n].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, n: usize) {
        let child = self.spawn(n);
        self.servers[n] = Some(child);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in 0..self.servers.len() {
            self.kill(n);
        }
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Now on the wall clock, RFC 3339 in UTC to the second.
fn now_rfc3339() -> String {
    let seconds = rollover_service::wall_micros() / 1_000_000 * 1_000_000;
    rollover_core::Instant::from_micros(seconds).to_rfc3339(&rollover_core::Zone::parse("UTC").expect("UTC"))
}

struct Node {
    id: String,
    server: Option<Server>,
    log: PathBuf,
    /// How many times it was started.
    runs: usize,
}

fn start_node(store: &TestStore, nats: &str, id: &str, log: &Path) -> Server {
    // CLUSTER_TEST_LOG: the nodes' log filter (e.g. info,rollover_cluster=debug).
    let filter = std::env::var("CLUSTER_TEST_LOG").unwrap_or_else(|_| "info".into());
    let env = [
        ("ROLLOVER_CLOCK", "wall"),
        ("ROLLOVER_LOG", filter.as_str()),
        ("ROLLOVER_CLUSTER_NODE_ID", id),
        ("ROLLOVER_CLUSTER_NATS_URL", nats),
        ("ROLLOVER_CLUSTER_LEASE_TTL_MS", &LEASE_TTL_MS.to_string()),
        ("ROLLOVER_RADIUS_LISTEN", "127.0.0.1:0"),
        ("ROLLOVER_RADIUS_SECRET", RADIUS_SECRET),
        ("ROLLOVER_DIAMETER_LISTEN", "127.0.0.1:0"),
        ("ROLLOVER_DIAMETER_ORIGIN_HOST", "ocs.rollover.test"),
        ("ROLLOVER_DIAMETER_ORIGIN_REALM", "rollover.test"),
    ];
    Server::start_logging(store, "", &env, log)
}

/// A usage record: id, subscription, bytes, instant.
type Record = (String, String, u64, String);

/// What the load has had acknowledged: record id to the record.
#[derive(Default)]
struct Acked {
    records: HashMap<String, Record>,
    /// Sent and not (yet) acknowledged: to send again when draining.
    pending: HashMap<String, Record>,
    accepted: u64,
    duplicates: u64,
    refused: u64,
    /// How long each request took, in the order sent.
    latencies: Vec<Duration>,
}

/// Sends `records` to `base`; files each in `acked` by its answer.
fn send(agent: &ureq::Agent, base: &str, records: &[Record], acked: &Mutex<Acked>) {
    let body = json!({ "records": records.iter().map(|(id, sub, bytes, at)| json!({"id": id, "subscription": sub, "bytes": bytes, "at": at})).collect::<Vec<_>>() });
    let sent_at = Instant::now();
    let answer = agent.post(format!("{base}/v1/usage")).header("content-type", "application/json").send(body.to_string());
    let mut acked = acked.lock().unwrap();
    acked.latencies.push(sent_at.elapsed());
    let reply: Option<Value> = match answer {
        Ok(mut response) if response.status().as_u16() == 200 => response.body_mut().read_to_string().ok().and_then(|t| serde_json::from_str(&t).ok()),
        _ => None,
    };
    let Some(reply) = reply else {
        acked.refused += 1;
        for record in records {
            if !acked.records.contains_key(&record.0) {
                acked.pending.insert(record.0.clone(), record.clone());
            }
        }
        return;
    };
    for (record, result) in records.iter().zip(reply["results"].as_array().expect("results")) {
        let (id, bytes) = (&record.0, record.2);
        match result["status"].as_str() {
            Some("accepted") => {
                assert_eq!(result["drawn_bytes"], json!(bytes), "{id}: {result}");
                assert!(!acked.records.contains_key(id), "{id} was accepted twice: {result}");
                acked.accepted += 1;
            }
            // A repeat, or a copy of one a node committed before its answer was lost.
            Some("duplicate") => {
                assert!(acked.records.contains_key(id) || acked.pending.contains_key(id), "{id}: duplicate of a record never sent");
                acked.duplicates += 1;
            }
            other => panic!("{id}: {other:?} in {result}"),
        }
        acked.pending.remove(id);
        acked.records.insert(id.clone(), record.clone());
    }
}

/// An HTTP agent that follows no redirects and takes any status.
fn agent_without_redirects() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).timeout_global(Some(Duration::from_secs(10))).build().into()
}

/// Starts node `index` again, on the same store, with a log of its own.
/// Gy sessions the load keeps opening, on subscriptions after the RADIUS
/// sessions' (and not used by the Gy check after the faults).
const GY_SUBSCRIPTIONS: usize = 4;

/// What the Gy load sent, by subscription: octets in steps answered 2001,
/// and octets in steps that got no such answer in three tries (committed or
/// not: each may be in the log once at most).
#[derive(Default)]
struct GyTally {
    acked: HashMap<String, u64>,
    maybe: HashMap<String, u64>,
    sessions: u64,
    steps_acked: u64,
    steps_unanswered: u64,
    /// Steps sent again to another node after no answer, or a wrong one.
    failed_over: u64,
    /// The log key of each step answered 2001 with octets, the Diameter
    /// port it went to, and the answer.
    acked_keys: Vec<(String, u16, String)>,
}

/// Where the load reaches each node: HTTP, RADIUS and Diameter.
struct Endpoints {
    bases: Mutex<Vec<String>>,
    radius: Mutex<Vec<std::net::SocketAddr>>,
    diameter: Mutex<Vec<u16>>,
}

fn restart(node: &mut Node, store: &TestStore, urls: &str, scratch: &Scratch, endpoints: &Endpoints, index: usize) {
    node.runs += 1;
    node.log = scratch.0.join(format!("{}-run{}.log", node.id, node.runs));
    let server = start_node(store, urls, &node.id, &node.log);
    endpoints.bases.lock().unwrap()[index] = server.base.clone();
    endpoints.radius.lock().unwrap()[index] = server.radius.expect("RADIUS is on");
    endpoints.diameter.lock().unwrap()[index] = server.diameter.expect("Diameter is on").port();
    node.server = Some(server);
}

/// One RADIUS Interim (or Start) of session `n` on sub-`n`, its counter at `total`.
fn radius_packet(kind: &str, n: usize, total: u64) -> String {
    format!(
        "Acct-Status-Type = {kind}\nAcct-Session-Id = \"cluster-{n}\"\nNAS-IP-Address = 127.0.0.1\n3GPP-IMSI = \"{}\"\nAcct-Input-Octets = {}\nAcct-Output-Octets = {}\n",
        imsi(n),
        total / 2,
        total - total / 2
    )
}


/// Waits until every subscription's balance is answered through `base`;
/// how long that took.
fn wait_all_served(agent: &ureq::Agent, base: &str, started: Instant, logs: &[&Path]) -> Duration {
    let deadline = started + Duration::from_secs(30);
    loop {
        let statuses: Vec<u16> = (0..SUBSCRIPTIONS)
            .map(|n| agent.get(format!("{base}/v1/subscriptions/sub-{n}/balance")).call().map_or(0, |r| r.status().as_u16()))
            .collect();
        if statuses.iter().all(|&s| s == 200) {
            return started.elapsed();
        }
        if Instant::now() > deadline {
            for log in logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().filter(|l| !l.contains("lease_acquired") && !l.contains("lease_released")).collect();
                eprintln!("--- {} (last lines, lease lines left out)\n{}", log.display(), tail[tail.len().saturating_sub(25)..].join("\n"));
            }
            panic!("shards were not served again within 30 s: balances answered {statuses:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cluster_keeps_every_acknowledged_record_once_through_crashes_pauses_and_restarts() {
    // CI runs one seed; `bench/cluster-soak.sh` runs many.
    let seed: u64 = std::env::var("CLUSTER_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let scratch = Scratch::new("cluster");
    let store = TestStore::new(Backend::Postgres);
    let mut nats = NatsCluster::start(&scratch);
    let urls = nats.urls();
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| {
            let log = scratch.0.join(format!("{id}.log"));
            Node { id: id.to_string(), server: Some(start_node(&store, &urls, id, &log)), log, runs: 1 }
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into();
    // The catalog goes to one node; the others read it from the store.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = nodes[0].server.as_ref().unwrap().post_raw("/v1/plans", "application/toml", PLAN);
        if reply.status == 201 || reply.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the plan upload: {} {}", reply.status, reply.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Purchases through every node, retried while shards are being shared out.
    for n in 0..SUBSCRIPTIONS {
        let node = nodes[n % 3].server.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut retried = false;
        loop {
            let reply = node.post("/v1/subscriptions", &json!({"id": format!("sub-{n}"), "plan": "big", "identifiers": {"imsi": imsi(n)}}));
            // 409 after a 503: the first try was committed after all.
            if reply.status == 201 || (reply.status == 409 && reply.body["code"] == "subscription_exists" && retried) {
                break;
            }
            retried = true;
            assert!(reply.status == 503 && Instant::now() < deadline, "sub-{n}: {} {}", reply.status, reply.body);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Records are stamped to the second: none before the purchases. Every
    // node has read every purchase's IMSI by then (each looks every
    // lease_ttl / 6).
    std::thread::sleep(Duration::from_millis(1100));

    // The load: batches of usage to random nodes, one in ten a repeat.
    let server = |n: &Node| {
        let s = n.server.as_ref().unwrap();
        (s.base.clone(), s.radius.expect("RADIUS is on"), s.diameter.expect("Diameter is on").port())
    };
    let endpoints = Arc::new(Endpoints {
        bases: Mutex::new(nodes.iter().map(|n| server(n).0).collect()),
        radius: Mutex::new(nodes.iter().map(|n| server(n).1).collect()),
        diameter: Mutex::new(nodes.iter().map(|n| server(n).2).collect()),
    });
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // Several senders at once: a request whose records wait for a shard in
    // takeover holds its sender up to 3 s, and one sender alone would send
    // little else while faults go on.
    let loads: Vec<_> = (0..HTTP_SENDERS as u64)
        .map(|sender| {
            // A request to the paused node waits until the node wakes: the
            // load gives up after 4 s (past the 3 s a node waits for an
            // owner) and sends its records again later, so that it goes on
            // meanwhile.
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(4))).build().into();
            let (endpoints, acked, stop) = (endpoints.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seed: u64 = 0x2545_f491_4f6c_dd1d ^ (seed + sender).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut next = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                let mut counter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = Vec::new();
                    for _ in 0..4 {
                        let repeat = next() % 10 == 0;
                        let earlier = if repeat { acked.lock().unwrap().records.values().next().cloned() } else { None };
                        batch.push(earlier.unwrap_or_else(|| {
                            counter += 1;
                            (format!("r{sender}-{counter}"), format!("sub-{}", next() % SUBSCRIPTIONS as u64), 1 + next() % 100_000, now_rfc3339())
                        }));
                    }
                    batch.sort_by(|a, b| a.0.cmp(&b.0));
                    batch.dedup_by(|a, b| a.0 == b.0);
                    let base = {
                        let bases = endpoints.bases.lock().unwrap();
                        bases[(next() % bases.len() as u64) as usize].clone()
                    };
                    send(&agent, &base, &batch, &acked);
                }
            })
        })
        .collect();
    // RADIUS accounting to random nodes: each session's cumulative counter
    // grows; a report nobody answered is covered by the next one.
    let counters = Arc::new(Mutex::new(vec![(0u64, 0u64); RADIUS_SESSIONS]));
    let radius_load = {
        let (endpoints, counters, stop) = (endpoints.clone(), counters.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut step = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let session = step % RADIUS_SESSIONS;
                let port = endpoints.radius.lock().unwrap()[(step / RADIUS_SESSIONS) % 3];
                step += 1;
                let total = counters.lock().unwrap()[session].0 + 1000 + (step as u64 * 7919) % 500_000;
                let kind = if total < 600_000 && counters.lock().unwrap()[session].1 == 0 { "Start" } else { "Interim-Update" };
                let sent = radclient(port, "acct", RADIUS_SECRET, &radius_packet(kind, session, total));
                let mut counters = counters.lock().unwrap();
                counters[session].0 = total;
                if sent.stdout.contains("Received Accounting-Response") {
                    counters[session].1 = total;
                }
            }
        })
    };
    // Gy sessions to random nodes: each step answered 2001 is acknowledged;
    // a step with no answer, or another one, is sent again (the same
    // Session-Id and CC-Request-Number) to another node, as a gateway fails
    // over, until one answers 2001 or three tries are spent.
    let gy = Arc::new(Mutex::new(GyTally::default()));
    let gy_load = {
        let (endpoints, gy, stop) = (endpoints.clone(), gy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let sub = format!("sub-{}", RADIUS_SESSIONS + k % GY_SUBSCRIPTIONS);
                let n = RADIUS_SESSIONS + k % GY_SUBSCRIPTIONS;
                let session_id = format!("pgw.cluster;{seed};{k}");
                let used = |step: usize| 1000 + ((k * 31 + step) as u64 * 7919) % 90_000;
                let steps: Vec<(Value, u64)> = (0..4)
                    .map(|step| {
                        let kind = ["initial", "update", "update", "termination"][step];
                        let mut ccr = json!({"type": kind, "session": "s", "session_id": session_id, "request_number": step, "imsi": imsi(n), "rating_group": 1, "requested_octets": 1 << 20});
                        let bytes = if step == 0 { 0 } else { used(step) };
                        if step > 0 {
                            ccr["used_octets"] = json!(bytes);
                        }
                        (ccr, bytes)
                    })
                    .collect();
                let mut left: Vec<usize> = (0..steps.len()).collect();
                for attempt in 0..3 {
                    let port = {
                        let ports = endpoints.diameter.lock().unwrap();
                        ports[(k + attempt) % ports.len()]
                    };
                    let script: Vec<Value> = left.iter().map(|&i| steps[i].0.clone()).collect();
                    let answers = crate::diameter::gy_client_partial(port, &json!(script), 5);
                    let mut tally = gy.lock().unwrap();
                    if attempt > 0 {
                        tally.failed_over += left.len() as u64;
                    }
                    let mut still = Vec::new();
                    for (position, &i) in left.iter().enumerate() {
                        let answered = answers.get(position).is_some_and(|a| a["result_code"] == 2001 && a["mscc"].as_array().is_none_or(|m| m.iter().all(|m| m["result_code"].is_null() || m["result_code"] == 2001)));
                        if answered {
                            *tally.acked.entry(sub.clone()).or_default() += steps[i].1;
                            tally.steps_acked += 1;
                            if steps[i].1 > 0 {
                                tally.acked_keys.push((format!("#session:{i}:{session_id}#1"), port, answers[position].to_string()));
                            }
                        } else {
                            still.push(i);
                        }
                    }
                    left = still;
                    if left.is_empty() {
                        break;
                    }
                }
                let mut tally = gy.lock().unwrap();
                tally.sessions += 1;
                for i in left {
                    *tally.maybe.entry(sub.clone()).or_default() += steps[i].1;
                    tally.steps_unanswered += 1;
                }
            }
        })
    };
    let settle = |seconds: u64| std::thread::sleep(Duration::from_secs(seconds));
    // Which node each fault hits, which NATS server dies, and the pauses
    // between faults follow the seed (`bench/cluster-soak.sh` varies it).
    let (killed, paused) = (seed as usize % 3, (seed as usize + 1 + (seed as usize / 3) % 2) % 3);
    let watcher = 3 - killed - paused;
    let (restarted_gracefully, nats_killed) = ((seed as usize / 6) % 3, (seed as usize / 18) % 3);
    let gap = |n: u64| 1 + (seed >> n) % 2;
    settle(gap(1));

    // kill -9 a node: its shards are served again after the lease runs out.
    let killed_at = Instant::now();
    nodes[killed].server.take().unwrap().kill();
    let logs: Vec<PathBuf> = nodes.iter().map(|n| n.log.clone()).collect();
    let observer = nodes[watcher].server.as_ref().unwrap().base.clone();
    let takeover_kill = wait_all_served(&agent, &observer, killed_at, &logs.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    restart(&mut nodes[killed], &store, &urls, &scratch, &endpoints, killed);
    settle(gap(2));

    // SIGSTOP a node past its lease, then SIGCONT: it drops its shards.
    let paused_at = Instant::now();
    nodes[paused].server.as_ref().unwrap().signal(libc::SIGSTOP);
    let logs: Vec<PathBuf> = nodes.iter().map(|n| n.log.clone()).collect();
    let takeover_pause = wait_all_served(&agent, &observer, paused_at, &logs.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    settle(gap(3) - 1);
    nodes[paused].server.as_ref().unwrap().signal(libc::SIGCONT);
    let paused_log = nodes[paused].log.clone();
    settle(gap(4));

    // A NATS server dies and comes back.
    nats.kill(nats_killed);
    settle(gap(5));
    nats.restart(nats_killed);
    settle(1);

    // PostgreSQL ends every session of the cluster's nodes, as a restart of
    // it would: they reconnect, reload the shards whose commits failed, and
    // carry on.
    let schema = store.schema().expect("a PostgreSQL store").to_string();
    let ended = store.count(&format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'rollover_{schema}'"));
    assert!(ended >= 3 * 5, "every node's sessions (writer, reader, loader, leases, status) were ended: {ended}");
    settle(gap(7));

    // A graceful restart: the node hands its shards over as it stops.
    let leaving = nodes[restarted_gracefully].server.take().unwrap();
    assert!(leaving.stop_gracefully(20), "{} stops within 20 s of SIGTERM", nodes[restarted_gracefully].id);
    restart(&mut nodes[restarted_gracefully], &store, &urls, &scratch, &endpoints, restarted_gracefully);
    settle(gap(6));
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        load.join().expect("the load ran without a wrong answer");
    }
    radius_load.join().expect("the RADIUS load ran");
    gy_load.join().expect("the Gy load ran");
    // Each session's last report is sent until a node answers it.
    let radius = nodes[watcher].server.as_ref().unwrap().radius.unwrap();
    for (session, (total, _)) in counters.lock().unwrap().iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !radclient(radius, "acct", RADIUS_SECRET, &radius_packet("Interim-Update", session, *total)).stdout.contains("Received Accounting-Response") {
            assert!(Instant::now() < deadline, "RADIUS session {session} gets no answer");
        }
    }

    // Drain: what got no answer is sent again until it gets one.
    let current = nodes[watcher].server.as_ref().unwrap().base.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: Vec<Record> = acked.lock().unwrap().pending.values().cloned().collect();
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{} records still get no answer", pending.len());
        for chunk in pending.chunks(50) {
            send(&agent, &current, chunk, &acked);
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // A Gy session through each node, for a subscription another node serves.
    let view = nodes[0].server.as_ref().unwrap().get("/v1/cluster").body;
    let owner_of = |sub: usize| view["shards"][rollover_service::shard_of(&format!("sub-{sub}")) as usize]["owner"].as_str().unwrap_or("").to_string();
    let mut gy_used: HashMap<String, u64> = HashMap::new();
    for (k, node) in nodes.iter().enumerate() {
        let sub = (RADIUS_SESSIONS + GY_SUBSCRIPTIONS..SUBSCRIPTIONS).find(|&n| owner_of(n) != node.id && !gy_used.contains_key(&format!("sub-{n}"))).expect("a subscription served elsewhere");
        let port = node.server.as_ref().unwrap().diameter.expect("Diameter is on").port();
        let session = format!("gy-{k}");
        let steps = json!([
            {"type": "initial", "session": session, "imsi": imsi(sub), "rating_group": 1, "requested_octets": 1 << 20},
            {"type": "update", "session": session, "imsi": imsi(sub), "rating_group": 1, "used_octets": 300_000, "requested_octets": 1 << 20},
            {"type": "termination", "session": session, "imsi": imsi(sub), "rating_group": 1, "used_octets": 100_000},
        ]);
        let answers = crate::diameter::gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &steps);
        assert_eq!(answers.iter().map(|a| a["result_code"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2001, 2001, 2001], "Gy through {} for sub-{sub}: {answers:?}", node.id);
        assert_eq!(answers[0]["mscc"][0]["granted_octets"], 1 << 20);
        gy_used.insert(format!("sub-{sub}"), 400_000);
    }

    let acked = acked.lock().unwrap();
    // Every acknowledged record is in the log once, and nothing else is.
    let logged = store.count("SELECT count(*) FROM events WHERE kind = 'usage' AND key NOT LIKE '#%'");
    assert_eq!(logged, acked.records.len() as i64, "usage events in the log, against records acknowledged");
    let distinct = store.count("SELECT count(DISTINCT (subscription, key)) FROM events WHERE kind = 'usage' AND key NOT LIKE '#%'");
    assert_eq!(distinct, logged, "no record twice");
    // No commit was made under a stale epoch: each fenced commit's epochs
    // against the grants before it (the store's audit).
    let audit = rollover_store::Leases::open(&store.url, "audit").expect("the store").audit().expect("the audit");
    assert!(audit.commits >= 10, "the nodes' fenced commits are audited: {audit:?}");
    assert_eq!(audit.stale, 0, "a commit under an epoch taken over: {audit:?}");
    // No keyed report of any kind (HTTP, RADIUS, Gy) is in the log twice.
    let keyed = store.count("SELECT count(*) FROM events WHERE key IS NOT NULL");
    assert_eq!(store.count("SELECT count(DISTINCT (subscription, key)) FROM events WHERE key IS NOT NULL"), keyed, "a report in the log twice");
    // The Gy load: every step answered 2001 is in the log; a step never
    // answered may be, once.
    let gy = gy.lock().unwrap();
    assert!(gy.steps_acked > 0, "Gy steps were answered during the faults");
    let mut gy_logged: HashMap<String, u64> = HashMap::new();
    for n in RADIUS_SESSIONS..RADIUS_SESSIONS + GY_SUBSCRIPTIONS {
        let sub = format!("sub-{n}");
        let logged = store.count(&format!("SELECT COALESCE(SUM(bytes), 0)::int8 FROM events WHERE kind = 'usage' AND subscription = '{sub}' AND key LIKE '#session:%'")) as u64;
        let (acked, maybe) = (gy.acked.get(&sub).copied().unwrap_or(0), gy.maybe.get(&sub).copied().unwrap_or(0));
        if !(acked <= logged && logged <= acked + maybe) {
            let missing: Vec<_> = gy.acked_keys.iter().filter(|(key, _, _)| store.count(&format!("SELECT count(*) FROM events WHERE key = '{key}'")) == 0).collect();
            panic!("{sub}: Gy octets acknowledged {acked}, unanswered {maybe}, in the log {logged}; acknowledged and not in the log: {missing:#?}");
        }
        gy_logged.insert(sub, logged);
    }
    // Each balance, asked of any node, is the allowance less what was
    // acknowledged (and the Gy octets the log holds, checked above).
    let mut used: HashMap<String, u64> = gy_logged.clone();
    for (_, sub, bytes, _) in acked.records.values() {
        *used.entry(sub.clone()).or_default() += bytes;
    }
    for (session, (total, _)) in counters.lock().unwrap().iter().enumerate() {
        *used.entry(format!("sub-{session}")).or_default() += total;
    }
    for (sub, bytes) in &gy_used {
        *used.entry(sub.clone()).or_default() += bytes;
    }
    for n in 0..SUBSCRIPTIONS {
        let sub = format!("sub-{n}");
        let node = nodes[n % 3].server.as_ref().unwrap();
        // A shard still moving after the last restart answers 503: retry.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut balance = node.get(&format!("/v1/subscriptions/{sub}/balance"));
        while balance.status == 503 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            balance = node.get(&format!("/v1/subscriptions/{sub}/balance"));
        }
        assert_eq!(balance.status, 200, "{sub}: {}", balance.body);
        let expected = ALLOWANCE - *used.get(&sub).unwrap_or(&0) as i64;
        assert_eq!(balance.body["total_bytes"], json!(expected), "{sub} through {}", nodes[n % 3].id);
        let stored = store.count(&format!("SELECT COALESCE(SUM(bytes), 0)::int8 FROM events WHERE kind = 'usage' AND subscription = '{sub}'"));
        assert_eq!(stored, ALLOWANCE - expected, "{sub}: the log holds what was acknowledged");
    }
    // Each node tells the same story of who holds what.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views: Vec<Value> = nodes.iter().map(|n| n.server.as_ref().unwrap().get("/v1/cluster").body).collect();
        // The stream's lag is read and shown. After some of these faults it
        // does not drain to 0: copies whose records were committed another
        // way can stay in it (docs/cluster.md, "Not yet").
        let settled = views.iter().all(|v| {
            v["mode"] == "cluster"
                && v["stream_lag"].is_u64()
                && v["nodes"].as_array().is_some_and(|nodes| nodes.len() == 3 && nodes.iter().all(|n| n["live"] == true))
                && v["nodes"].as_array().unwrap().iter().map(|n| n["shards"].as_u64().unwrap()).sum::<u64>() == 256
        });
        if settled {
            for (node, view) in nodes.iter().zip(&views) {
                assert_eq!(view["node"], json!(node.id));
                assert_eq!(view["shards"].as_array().unwrap().len(), 256);
                // The lag by shard comes from the same read as the whole.
                let by_shard: u64 = view["shards"].as_array().unwrap().iter().map(|s| s["stream_lag"].as_u64().expect("each shard's lag")).sum();
                assert_eq!(json!(by_shard), view["stream_lag"], "{}: the shards' lags add up to the stream's", node.id);
                let mine = view["nodes"].as_array().unwrap().iter().find(|n| n["id"] == json!(node.id)).unwrap()["shards"].clone();
                assert_eq!(view["serving"], mine, "{}: serving what it leases", node.id);
                let metrics = node.server.as_ref().unwrap().get("/metrics").body;
                assert!(metrics.as_str().unwrap().contains(&format!("rollover_cluster_shards_served {mine}")), "{}", node.id);
            }
            // Every node lists the whole cluster's subscriptions, in id order.
            let mut ids: Vec<String> = (0..SUBSCRIPTIONS).map(|n| format!("sub-{n}")).collect();
            ids.sort();
            for node in &nodes {
                let ask = || node.server.as_ref().unwrap().get(&format!("/v1/subscriptions?limit={SUBSCRIPTIONS}"));
                let (mut list, retry_until) = (ask(), Instant::now() + Duration::from_secs(20));
                while list.status == 503 && Instant::now() < retry_until {
                    std::thread::sleep(Duration::from_millis(100));
                    list = ask();
                }
                assert_eq!(list.status, 200, "{}: {}", node.id, list.body);
                let listed: Vec<&str> = list.body["subscriptions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
                assert_eq!((listed, list.body["total"].as_u64()), (ids.iter().map(String::as_str).collect(), Some(SUBSCRIPTIONS as u64)), "{}", node.id);
            }
            break;
        }
        if Instant::now() > deadline {
            let summary: Vec<String> = nodes
                .iter()
                .zip(&views)
                .map(|(node, v)| {
                    let metrics = node.server.as_ref().unwrap().get("/metrics").body.as_str().unwrap_or("").to_string();
                    let pulling = metrics.lines().find(|l| l.starts_with("rollover_cluster_usage_pulling ")).unwrap_or("").to_string();
                    format!("{}: serving {} stream_lag {} {pulling}", node.id, v["serving"], v["stream_lag"])
                })
                .collect();
            panic!("the cluster did not settle: {summary:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Usage for other nodes' shards went through the JetStream stream, and
    // owners pulled it.
    let metric = |text: &str, name: &str| -> u64 { text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let (mut streamed, mut pulled, mut as_calls) = (0, 0, 0);
    for node in &nodes {
        let text = node.server.as_ref().unwrap().get("/metrics").body.as_str().unwrap().to_string();
        streamed += metric(&text, "rollover_cluster_usage_forwarded_total{way=\"stream\"}");
        as_calls += metric(&text, "rollover_cluster_usage_forwarded_total{way=\"call\"}");
        pulled += metric(&text, "rollover_cluster_usage_pulled_total");
    }
    assert!(streamed > 0 && pulled > 0, "usage went through the stream: {streamed} streamed, {pulled} pulled, {as_calls} as calls");
    // The console's dashboard shows the cluster too (no API key: signing in
    // takes none).
    let console = agent_without_redirects();
    let base = &nodes[watcher].server.as_ref().unwrap().base;
    let signed = console.post(format!("{base}/console/sign-in")).header("content-type", "application/x-www-form-urlencoded").send("key=").expect("the console answers");
    assert_eq!(signed.status().as_u16(), 303, "signing in");
    let cookie = signed.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().split(';').next().unwrap().to_string();
    let dashboard = console.get(format!("{base}/console")).header("cookie", &cookie).call().expect("the dashboard").body_mut().read_to_string().unwrap();
    assert!(dashboard.contains("<h2>Cluster</h2>"), "{dashboard}");
    for node in &nodes {
        assert!(dashboard.contains(&format!("<th scope=\"row\">{}</th>", node.id)), "{} on the dashboard", node.id);
    }
    assert!(dashboard.contains("waiting in the stream for their owners: "), "{dashboard}");
    // And it passes what the other console pages pass, in headless Chromium:
    // Lighthouse and axe-core, with the cluster panel on it.
    let url = format!("{base}/console");
    let (accessibility, best_practices, _) = crate::browser::lighthouse_with(&url, "console-cluster", &[("Cookie", &cookie)]);
    assert_eq!(accessibility, 1.0, "Lighthouse accessibility of the cluster dashboard");
    assert!(best_practices >= 0.95, "Lighthouse best practices of the cluster dashboard: {best_practices}");
    let browser = crate::browser::Browser::phone();
    browser.open(&url);
    if browser.run("return document.title;") == "Sign in · rollover" {
        browser.submit(&[("key", "")], "Sign in");
    }
    browser.open(&url);
    assert_eq!(browser.run("return document.querySelectorAll('h2').length > 0 && [...document.querySelectorAll('h2')].some(h => h.textContent === 'Cluster');"), json!(true), "the browser shows the cluster panel");
    assert_eq!(browser.axe(), json!([]), "the cluster dashboard: axe-core violations");
    drop(browser);
    let stream_lag = nodes[watcher].server.as_ref().unwrap().get("/v1/cluster").body["stream_lag"].clone();
    // The paused node found out, and dropped what it held.
    let paused_log = std::fs::read_to_string(&paused_log).unwrap_or_default();
    assert!(paused_log.contains("ownership_lost") || paused_log.contains("lease could not be renewed"), "the paused node's log says it lost its shards");
    let mut report = std::io::stderr();
    let mut latencies = acked.latencies.clone();
    latencies.sort();
    let at = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let _ = writeln!(report, "cluster: {} usage requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", latencies.len(), at(0.5), at(0.99), at(1.0));
    let _ = writeln!(report, "cluster: records for other nodes' shards since the last restarts: {streamed} through the stream, {as_calls} as calls; {pulled} pulled from it; {stream_lag} left in the stream");
    let _ = writeln!(
        report,
        "cluster (seed {seed}): {} HTTP records acknowledged ({} accepted, {} duplicates, {} requests refused and retried), {RADIUS_SESSIONS} RADIUS sessions, {} Gy sessions in the faults ({} steps answered, {} sent again to another node, {} never answered) and 3 after; {} fenced commits audited, none stale; every shard served again {:.2} s after kill -9 and {:.2} s after SIGSTOP (lease {LEASE_TTL_MS} ms)",
        acked.records.len(),
        acked.accepted,
        acked.duplicates,
        acked.refused,
        gy.sessions,
        gy.steps_acked,
        gy.failed_over,
        gy.steps_unanswered,
        audit.commits,
        takeover_kill.as_secs_f64(),
        takeover_pause.as_secs_f64()
    );
}
