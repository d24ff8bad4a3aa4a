//! `rollover bench cluster`: cluster mode measured on this machine. For
//! each node count it starts that many `rollover serve` nodes on a fresh
//! PostgreSQL schema and one NATS server, spreads the HTTP clients over the
//! nodes, and measures durable ingestion; then, with more than one node, it
//! kills a node (`kill -9`) again and again and times how long until every
//! shard is served again.
//!
//! On one machine the nodes share its cores with each other, PostgreSQL and
//! NATS: the figures show what forwarding and fencing cost, not how a
//! cluster of machines scales.

use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use crate::loadgen::{ServerProcess, agent, get, percentile, post, start_server_with, store_url};

#[derive(clap::Args)]
pub struct ClusterBench {
    /// Node counts to measure, comma-separated.
    #[arg(long, default_value = "1,3")]
    nodes: String,
    /// The NATS server (JetStream on) the nodes share.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// Records in the measured run. Through other nodes usage is slow today
    /// (docs/cluster.md, "Capacity"): the defaults take a few minutes.
    #[arg(long, default_value_t = 40_000)]
    records: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Times a node is killed and started again, for the takeover figures.
    #[arg(long, default_value_t = 6)]
    takeovers: usize,
    #[arg(long, default_value_t = 1500)]
    lease_ttl_ms: u64,
}

pub fn cluster(options: ClusterBench) -> ExitCode {
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollover bench cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Cluster {
    nodes: Vec<Option<ServerProcess>>,
    url: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn start_node(&self, n: usize) -> Result<ServerProcess, String> {
        let id = format!("bench-{n}");
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("ROLLOVER_CLUSTER_NODE_ID", &id));
        start_server_with(&self.url, "wall", None, &env)
    }

    fn base(&self, n: usize) -> String {
        self.nodes[n].as_ref().map(|p| p.base.clone()).unwrap_or_default()
    }

    /// Shards served by each running node (from `GET /v1/cluster`), if it
    /// is also pulling the usage of each (its metrics) or `streams` is
    /// false; 0 otherwise.
    fn serving(&self, streams: bool) -> Vec<u64> {
        let agent = agent();
        self.nodes
            .iter()
            .map(|node| {
                let Some(p) = node.as_ref() else { return 0 };
                let serving = get(&agent, &format!("{}/v1/cluster", p.base))
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|v| v["serving"].as_u64())
                    .unwrap_or(0);
                let metrics = get(&agent, &format!("{}/metrics", p.base)).unwrap_or_default();
                let pulling = metrics.lines().find_map(|l| l.strip_prefix("rollover_cluster_usage_pulling ")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
                if pulling == serving || !streams { serving } else { 0 }
            })
            .collect()
    }

    /// Waits until the running nodes serve all 256 shards between them,
    /// each pulling the usage of those it serves (unless no node pulls
    /// anything for 15 s: NATS without JetStream).
    fn wait_settled(&self, within: Duration) -> Result<Duration, String> {
        let started = WallClock::now();
        loop {
            let serving = self.serving(started.elapsed() < Duration::from_secs(15));
            let running = self.nodes.iter().filter(|n| n.is_some()).count() as u64;
            let even = serving.iter().zip(&self.nodes).filter(|(_, n)| n.is_some()).all(|(s, _)| *s >= 256 / running.max(1) - 1);
            if serving.iter().sum::<u64>() == 256 && even {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                return Err(format!("the nodes did not settle within {within:?}: serving {serving:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One subscription per shard: balances of these answered means every
/// shard is served.
fn one_per_shard(subscriptions: usize) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; 256];
    for i in 0..subscriptions {
        let id = format!("s{i}");
        let shard = rollover_service::shard_of(&id) as usize;
        if found[shard].is_none() {
            found[shard] = Some(id);
        }
    }
    found.into_iter().flatten().collect()
}

fn now_rfc3339() -> String {
    let zone = rollover_core::Zone::parse("UTC").expect("UTC");
    rollover_core::Instant::from_micros(rollover_service::wall_micros()).to_rfc3339(&zone)
}

fn run(o: ClusterBench) -> Result<(), String> {
    let counts: Vec<usize> = o.nodes.split(',').map(|n| n.trim().parse().map_err(|_| format!("--nodes {:?}: node counts, comma-separated", o.nodes))).collect::<Result<_, _>>()?;
    for &count in &counts {
        if count == 0 || count > 8 {
            return Err("--nodes: 1 to 8 nodes".into());
        }
        let (url, schema) = store_url("postgres", &format!("cluster{count}"))?;
        let env = vec![
            ("ROLLOVER_CLUSTER_NATS_URL".to_string(), o.nats_url.clone()),
            ("ROLLOVER_CLUSTER_LEASE_TTL_MS".to_string(), o.lease_ttl_ms.to_string()),
        ];
        let mut cluster = Cluster { nodes: Vec::new(), url: url.clone(), env };
        for n in 0..count {
            let node = cluster.start_node(n)?;
            cluster.nodes.push(Some(node));
        }
        cluster.wait_settled(Duration::from_secs(60))?;
        let agent = agent();
        post(&agent, &format!("{}/v1/plans", cluster.base(0)), "application/toml", crate::loadgen::PLANS.to_string())?;
        let created = crate::loadgen::create_subscriptions_with(&cluster.base(0), "bench", "s", o.subscriptions, false)?;
        let bases: Vec<String> = (0..count).map(|n| cluster.base(n)).collect();
        let at = now_rfc3339();
        // A short warm-up, then the measured run.
        crate::loadgen::ingest_spread(&bases, o.subscriptions, (o.batch * o.clients * 2).min(o.records), o.batch, o.clients, &at, 1)?;
        let run = crate::loadgen::ingest_spread(&bases, o.subscriptions, o.records, o.batch, o.clients, &at, 2)?;
        println!(
            "{count} node{}: {} records in {:.2} s: {:.0} records/s durable ({} accepted, {} requests answered 503 and sent again); batches of {} from {} clients spread over the nodes: p50 {:.1} ms, p99 {:.1} ms ({} subscriptions bought in {:.1} s)",
            if count == 1 { "" } else { "s" },
            run.records,
            run.seconds,
            run.records as f64 / run.seconds,
            run.accepted,
            run.retried,
            o.batch,
            o.clients,
            percentile(&run.latencies, 0.50),
            percentile(&run.latencies, 0.99),
            o.subscriptions,
            created.as_secs_f64()
        );
        if count > 1 && o.takeovers > 0 {
            let probes = one_per_shard(o.subscriptions);
            if probes.len() < 256 {
                return Err("--subscriptions: too few to cover every shard".into());
            }
            let mut takeovers = Vec::new();
            for round in 0..o.takeovers {
                let victim = 1 + round % (count - 1);
                let killed_at = WallClock::now();
                drop(cluster.nodes[victim].take());
                // Every shard served again: a balance of each shard answered.
                let watcher = cluster.base(0);
                let mut pending = probes.clone();
                while !pending.is_empty() {
                    if killed_at.elapsed() > Duration::from_secs(60) {
                        return Err(format!("{} shards not served again within 60 s", pending.len()));
                    }
                    pending.retain(|id| !matches!(agent.get(format!("{watcher}/v1/subscriptions/{id}/balance")).call(), Ok(r) if r.status().as_u16() == 200));
                    if !pending.is_empty() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                takeovers.push(killed_at.elapsed());
                let node = cluster.start_node(victim)?;
                cluster.nodes[victim] = Some(node);
                cluster.wait_settled(Duration::from_secs(60))?;
            }
            takeovers.sort();
            println!(
                "{count} nodes: takeover after kill -9, {} times (lease {} ms): every shard served again p50 {:.2} s, p99 {:.2} s, max {:.2} s",
                takeovers.len(),
                o.lease_ttl_ms,
                percentile(&takeovers, 0.50) / 1000.0,
                percentile(&takeovers, 0.99) / 1000.0,
                takeovers.last().map_or(0.0, Duration::as_secs_f64)
            );
        }
        for node in cluster.nodes.iter_mut() {
            if let Some(node) = node.take() {
                node.stop();
            }
        }
        if let Some(schema) = schema {
            let _ = std::process::Command::new("psql").args(["-h", "127.0.0.1", "-U", "root", "-d", "test", "-qc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")]).status();
        }
    }
    println!("note: every node, PostgreSQL and NATS share this machine's cores; the figures show what forwarding and fencing cost here, not how a cluster of machines scales");
    Ok(())
}
