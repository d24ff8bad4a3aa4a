//! `rollover bench http` and `rollover bench scale`: the service measured as
//! an operator would run it: a separate server process on a fresh store, a
//! load generator in this process, figures printed at the end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as WallClock};

use rollover_core::{Instant, Zone};

#[derive(clap::Args)]
pub struct HttpBench {
    /// "sqlite" or "postgres" (the local server, a fresh schema).
    #[arg(long, default_value = "sqlite")]
    store: String,
    #[arg(long, default_value_t = 100_000)]
    subscriptions: usize,
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 2_000)]
    reads_per_second: u32,
    #[arg(long, default_value_t = 10)]
    read_seconds: u32,
    /// Pause between ingestion and reads, for the work behind the log (the
    /// SQLite index) to catch up; reads during catch-up are measured too.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u32,
}

#[derive(clap::Args)]
pub struct ScaleBench {
    /// "sqlite" or "postgres".
    #[arg(long, default_value = "sqlite")]
    store: String,
    #[arg(long, default_value_t = 1_000_000)]
    subscriptions: usize,
}

pub(crate) const PLANS: &str = r#"
[[plan]]
id = "bench"
name = "bench: 100 GB monthly with rollover"
currency = "EUR"
price = "10.00"
timezone = "UTC"
period = { kind = "monthly" }
allowance = { data = "100GiB" }
rollover = { from = ["allowance"] }
order = { kinds = ["carry", "allowance"] }

[[plan]]
id = "daily"
name = "bench: unlimited, 1 GB a day at full speed (Shanghai midnight)"
currency = "CNY"
price = "30.00"
timezone = "Asia/Shanghai"
period = { kind = "monthly" }
daily_cap = { data = "1GiB", window = "calendar_day", throttle_kbps = 128 }
"#;

pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) base: String,
    /// The RADIUS and Diameter listeners, when asked for.
    pub(crate) radius: Option<std::net::SocketAddr>,
    pub(crate) diameter: Option<std::net::SocketAddr>,
    cleanup: Option<String>,
}

impl ServerProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as an operator's restart does (SIGTERM, then a
    /// wait for it to exit, at most a minute), so that the next start does
    /// not wait for the store to notice a killed writer's connection.
    pub(crate) fn stop(mut self) {
        // SAFETY: kill(2) with the pid of our own child, which we have not
        // reaped yet, so the pid cannot have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(schema) = &self.cleanup {
            let _ = Command::new("psql").args(["-h", "127.0.0.1", "-U", "root", "-d", "test", "-qc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")]).status();
        }
    }
}

pub(crate) fn store_url(store: &str, name: &str) -> Result<(String, Option<String>), String> {
    match store {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("rollover-bench-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Ok((format!("sqlite://{}", dir.join("rollover.db").display()), None))
        }
        "postgres" => {
            let schema = format!("bench_{name}_{}", std::process::id());
            Ok((format!("postgres://root@127.0.0.1:5432/test?schema={schema}"), Some(schema)))
        }
        other => Err(format!("--store {other:?}: use sqlite or postgres")),
    }
}

fn start_server(url: &str, clock: &str, cleanup: Option<String>) -> Result<ServerProcess, String> {
    start_server_with(url, clock, cleanup, &[])
}

pub(crate) fn start_server_with(url: &str, clock: &str, cleanup: Option<String>, env: &[(&str, &str)]) -> Result<ServerProcess, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    // The servers a bench starts log warnings only, unless
    // ROLLOVER_BENCH_LOG says otherwise (a filter as ROLLOVER_LOG takes).
    command.env("ROLLOVER_LOG", std::env::var("ROLLOVER_BENCH_LOG").unwrap_or_else(|_| "warn".into()));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .arg("serve")
        .env("ROLLOVER_SERVER_LISTEN", "127.0.0.1:0")
        .env("ROLLOVER_STORE_URL", url)
        .env("ROLLOVER_DEMO", "false")
        .env("ROLLOVER_CLOCK", clock)
        .env("ROLLOVER_CLOCK_START", "2026-06-01T00:00:00Z")
        .env_remove("ROLLOVER_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).map_err(|e| e.to_string())?;
    let word = |scheme: &str| line.split([' ', ',']).find_map(|w| w.strip_prefix(scheme)).map(String::from);
    let address = word("http://").ok_or_else(|| format!("the server said {line:?}"))?;
    let radius = word("udp://").and_then(|a| a.parse().ok());
    let diameter = word("tcp://").and_then(|a| a.parse().ok());
    Ok(ServerProcess { base: format!("http://{address}"), radius, diameter, child, cleanup })
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

pub(crate) fn post(agent: &ureq::Agent, url: &str, content_type: &str, body: String) -> Result<String, String> {
    let mut response = agent.post(url).header("content-type", content_type).send(body).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    if status >= 300 {
        return Err(format!("{url}: HTTP {status}: {text}"));
    }
    Ok(text)
}

pub(crate) fn get(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    response.body_mut().read_to_string().map_err(|e| e.to_string())
}

/// (commits, seconds in commits, events committed) so far, from the
/// server's own metrics.
pub(crate) fn commit_totals(agent: &ureq::Agent, base: &str) -> (f64, f64, f64) {
    let Ok(mut response) = agent.get(format!("{base}/metrics")).call() else { return (0.0, 0.0, 0.0) };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let value = |name: &str| -> f64 { text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0) };
    (value("rollover_commit_seconds_count "), value("rollover_commit_seconds_sum "), value("rollover_commit_events_sum "))
}

pub(crate) fn commit_summary(before: (f64, f64, f64), after: (f64, f64, f64)) -> String {
    let (commits, seconds, events) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    if commits == 0.0 {
        return "no commits".into();
    }
    format!(
        "group commits during the run: {commits:.0}, {:.0} records each on average, {:.2} ms each (fsync included); the writer spent {:.1} s committing",
        events / commits,
        seconds / commits * 1000.0,
        seconds
    )
}

pub(crate) fn resident_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU time (Linux `/proc`, in clock ticks of 1/100 s) of the server, of
/// PostgreSQL's processes and of the whole machine, to tell work from waiting
/// when a figure moves from run to run.
pub(crate) struct CpuSample {
    server: u64,
    postgres: u64,
    /// Busy, all (idle and iowait included) and stolen by the hypervisor.
    busy: u64,
    all: u64,
    steal: u64,
}

/// utime + stime of a `/proc/PID/stat` text, and the process's name.
fn process_ticks(stat: &str) -> Option<(&str, u64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((name, fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?))
}

impl CpuSample {
    pub(crate) fn take(server: u32) -> CpuSample {
        let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
        let server = process_ticks(&read(format!("/proc/{server}/stat"))).map_or(0, |(_, ticks)| ticks);
        let mut postgres = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
                && let Some(("postgres", ticks)) = process_ticks(&read(format!("/proc/{}/stat", entry.file_name().to_string_lossy())))
            {
                postgres += ticks;
            }
        }
        let stat = read("/proc/stat".into());
        let cpu: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        let all: u64 = cpu.iter().take(8).sum();
        CpuSample { server, postgres, busy: all - field(3) - field(4), all, steal: field(7) }
    }

    /// "CPU during ingestion: ..." over `records` records since `self`.
    pub(crate) fn summary(&self, after: &CpuSample, records: u64) -> String {
        let per_record = |from: u64, to: u64| to.saturating_sub(from) as f64 * 10_000.0 / records.max(1) as f64;
        let share = |part: u64| 100.0 * part as f64 / after.all.saturating_sub(self.all).max(1) as f64;
        format!(
            "CPU during ingestion: server {:.2} µs a record, PostgreSQL processes {:.2} µs a record; machine {:.0}% busy, {:.0}% stolen by the hypervisor",
            per_record(self.server, after.server),
            per_record(self.postgres, after.postgres),
            share(after.busy.saturating_sub(self.busy)),
            share(after.steal.saturating_sub(self.steal)),
        )
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Creates subscriptions `prefix0..prefixN` on `plan` over the API, from
/// eight threads.
fn create_subscriptions(base: &str, plan: &str, prefix: &str, count: usize) -> Result<Duration, String> {
    create_subscriptions_with(base, plan, prefix, count, false)
}

/// The IMSI the benches give subscription number `i`.
pub(crate) fn bench_imsi(i: usize) -> String {
    format!("00101{i:010}")
}

/// Like `create_subscriptions`, optionally with an IMSI each (`bench_imsi`).
pub(crate) fn create_subscriptions_with(base: &str, plan: &str, prefix: &str, count: usize, imsi: bool) -> Result<Duration, String> {
    let started = WallClock::now();
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (base, plan, prefix, next) = (base.to_string(), plan.to_string(), prefix.to_string(), next.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= count {
                        return Ok(());
                    }
                    let identifiers = if imsi { format!(r#","identifiers":{{"imsi":"{}"}}"#, bench_imsi(i)) } else { String::new() };
                    post(&agent, &format!("{base}/v1/subscriptions"), "application/json", format!(r#"{{"id":"{prefix}{i}","plan":"{plan}","at":"2026-06-01T00:00:00Z"{identifiers}}}"#))?;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a loader thread panicked")??;
    }
    Ok(started.elapsed())
}

pub(crate) struct Ingestion {
    pub(crate) records: u64,
    pub(crate) accepted: u64,
    pub(crate) seconds: f64,
    pub(crate) latencies: Vec<Duration>,
    /// Requests answered 503 and sent again.
    pub(crate) retried: u64,
}

/// Posts `records` usage records in batches from `clients` threads, each
/// record for a random subscription, stamped `at`. The request bodies are
/// built before the clock starts, so that the figure is the server's (the
/// baselines' load tools are C programs that build their requests for free).
pub(crate) fn ingest(base: &str, subscriptions: usize, records: usize, batch: usize, clients: usize, at: &str, seed: u64) -> Result<Ingestion, String> {
    ingest_spread(&[base.to_string()], subscriptions, records, batch, clients, at, seed)
}

/// [`ingest`] with the clients spread over several servers (client `c`
/// talks to `bases[c % len]`): the nodes of a cluster.
pub(crate) fn ingest_spread(bases: &[String], subscriptions: usize, records: usize, batch: usize, clients: usize, at: &str, seed: u64) -> Result<Ingestion, String> {
    let per_client = records / clients;
    let bodies: Vec<Vec<String>> = (0..clients)
        .map(|client| {
            let mut state = seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut random = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let mut bodies = Vec::new();
            let mut sent = 0;
            while sent < per_client {
                let n = batch.min(per_client - sent);
                let mut body = String::with_capacity(n * 96 + 16);
                body.push_str(r#"{"records":["#);
                for k in 0..n {
                    if k > 0 {
                        body.push(',');
                    }
                    let subscription = random() % subscriptions as u64;
                    let bytes = random() % 100_000;
                    body.push_str(&format!(r#"{{"id":"r{seed}-{client}-{}","subscription":"s{subscription}","at":"{at}","bytes":{bytes}}}"#, sent + k));
                }
                body.push_str("]}");
                bodies.push(body);
                sent += n;
            }
            bodies
        })
        .collect();
    let started = WallClock::now();
    let threads: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(client, bodies)| {
            let base = bases[client % bases.len()].clone();
            std::thread::spawn(move || -> Result<(u64, Vec<Duration>, u64), String> {
                let agent = agent();
                let mut accepted = 0;
                let mut latencies = Vec::with_capacity(bodies.len());
                let mut retried = 0u64;
                for body in bodies {
                    let t = WallClock::now();
                    // A 503 (busy, or a cluster's shard moving) is sent
                    // again, as a client would; the latency counts from the
                    // first try.
                    let reply = loop {
                        match post(&agent, &format!("{base}/v1/usage"), "application/json", body.clone()) {
                            Err(e) if e.contains("HTTP 503") && retried < 10_000 => {
                                retried += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            other => break other?,
                        }
                    };
                    latencies.push(t.elapsed());
                    // Every record is new: a duplicate is one whose first
                    // try was committed though its answer was a 503.
                    accepted += reply.matches(r#""accepted""#).count() as u64 + reply.matches(r#""duplicate""#).count() as u64;
                }
                Ok((accepted, latencies, retried))
            })
        })
        .collect();
    let (mut accepted, mut retried) = (0, 0);
    let mut latencies = Vec::new();
    for thread in threads {
        let (a, l, r) = thread.join().map_err(|_| "a client thread panicked")??;
        accepted += a;
        retried += r;
        latencies.extend(l);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Ingestion { records: (per_client * clients) as u64, accepted, seconds, latencies, retried })
}

/// Open-loop balance reads at `rate` per second for `seconds`: latency is
/// measured from each request's scheduled time, so a slow server cannot hide
/// its queueing.
fn reads(base: &str, subscriptions: usize, rate: u32, seconds: u32) -> Vec<Duration> {
    let threads = 8u32;
    let per_thread = rate / threads;
    let started = WallClock::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let base = base.to_string();
            std::thread::spawn(move || {
                let agent = agent();
                let mut latencies = Vec::new();
                let interval = Duration::from_secs_f64(1.0 / per_thread as f64);
                let offset = interval.mul_f64(t as f64 / threads as f64);
                for i in 0..(per_thread * seconds) {
                    let scheduled = started + offset + interval * i;
                    let now = WallClock::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    let id = (i as usize * 7919 + t as usize * 104_729) % subscriptions;
                    if let Ok(mut r) = agent.get(format!("{base}/v1/subscriptions/s{id}/balance")).call() {
                        let _ = r.body_mut().read_to_string();
                    }
                    latencies.push(scheduled.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    all.sort();
    all
}

pub fn http(options: HttpBench) -> ExitCode {
    match run_http(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollover bench http: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_http(o: HttpBench) -> Result<(), String> {
    let (url, cleanup) = store_url(&o.store, "http")?;
    let server = start_server(&url, "wall", cleanup)?;
    let agent = agent();
    post(&agent, &format!("{}/v1/plans", server.base), "application/toml", PLANS.to_string())?;
    println!("rollover bench http: store {}, {} cores, server pid {}", o.store, std::thread::available_parallelism().map_or(0, |n| n.get()), server.child.id());
    let created = create_subscriptions(&server.base, "bench", "s", o.subscriptions)?;
    println!("  {} subscriptions created over the API in {:.1} s ({:.0}/s)", o.subscriptions, created.as_secs_f64(), o.subscriptions as f64 / created.as_secs_f64());
    let at = Instant::from_micros(rollover_service::wall_micros()).to_rfc3339(&Zone::utc());
    // A short warm-up, then the measured run.
    ingest(&server.base, o.subscriptions, (o.batch * o.clients * 4).min(o.records), o.batch, o.clients, &at, 1)?;
    let before = commit_totals(&agent, &server.base);
    let cpu_before = CpuSample::take(server.child.id());
    let run = ingest(&server.base, o.subscriptions, o.records, o.batch, o.clients, &at, 2)?;
    let cpu_after = CpuSample::take(server.child.id());
    let after = commit_totals(&agent, &server.base);
    println!(
        "  durable ingestion: {} records in batches of {} from {} clients: {:.0} records/s ({:.2} s); batch latency p50 {:.1} ms, p99 {:.1} ms; accepted {}",
        run.records,
        o.batch,
        o.clients,
        run.records as f64 / run.seconds,
        run.seconds,
        percentile(&run.latencies, 0.50),
        percentile(&run.latencies, 0.99),
        run.accepted
    );
    if run.accepted != run.records {
        return Err(format!("only {} of {} records were accepted", run.accepted, run.records));
    }
    println!("  {}", commit_summary(before, after));
    println!("  {}", cpu_before.summary(&cpu_after, run.records));
    let report = |when: &str, latencies: &[Duration]| {
        println!(
            "  balance reads at {}/s {when}: {} reads, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            o.reads_per_second,
            latencies.len(),
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        )
    };
    report("right after the burst (2 s)", &reads(&server.base, o.subscriptions, o.reads_per_second, 2));
    std::thread::sleep(Duration::from_secs(o.settle_seconds as u64));
    report(&format!("after {} s to settle ({} s)", o.settle_seconds, o.read_seconds), &reads(&server.base, o.subscriptions, o.reads_per_second, o.read_seconds));
    println!("  server resident memory: {:.0} MiB", resident_mib(server.child.id()));
    Ok(())
}

pub fn scale(options: ScaleBench) -> ExitCode {
    match run_scale(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollover bench scale: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens a new store as a seeding bench's writer, with the bench plans in it.
pub(crate) fn open_with_bench_plans(url: &str) -> Result<Box<dyn rollover_store::Store>, String> {
    let (mut store, _) = rollover_store::open(url).map_err(|e| e.to_string())?;
    let rows = [("bench", 0u32), ("daily", 1u32)]
        .iter()
        .map(|(id, position)| rollover_store::PlanRow { id: id.to_string(), version: 1, document: PLANS.to_string(), position: *position, created_at_micros: 0 })
        .collect::<Vec<_>>();
    store.insert_plans(&rows).map_err(|e| e.to_string())?;
    Ok(store)
}

/// Seeds the store directly: a purchase event per subscription on the
/// daily-cap plan, committed in large batches, as a migration would.
fn seed_daily_subscriptions(url: &str, subscriptions: usize) -> Result<(), String> {
    use rollover_store::{Batch, EventBody, EventRow, SubscriptionRow};
    let mut store = open_with_bench_plans(url)?;
    // 2026-06-01T00:00:00Z; Shanghai midnight is 16:00 UTC.
    let purchase = 1_780_272_000_000_000i64;
    for chunk in (0..subscriptions).collect::<Vec<_>>().chunks(50_000) {
        let mut batch = Batch::default();
        for &i in chunk {
            let id = format!("m{i}");
            batch.subscriptions.push(SubscriptionRow { id: id.clone(), identifiers: Default::default(), created_at_micros: purchase });
            let body = EventBody::Purchase { plan_id: "daily".into(), plan_version: 1 };
            batch.events.push(EventRow { seq: 0, subscription: id, applied_at_micros: purchase, at_micros: purchase, key: None, body });
        }
        store.commit(&batch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A client posting one usage record every 5 ms until `stop`; the latency
/// of each answered post.
fn spawn_trickle(base: String, subscriptions: usize, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let agent = agent();
        let mut latencies = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let body = format!(r#"{{"records":[{{"id":"x{n}","subscription":"m{}","at":"2026-06-01T15:59:00Z","bytes":1000}}]}}"#, (n as usize * 7919) % subscriptions);
            let t = WallClock::now();
            if post(&agent, &format!("{base}/v1/usage"), "application/json", body).is_ok() {
                latencies.push(t.elapsed());
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies
    })
}

/// Seeds the store, starts the server on it, and moves every subscription
/// across one local midnight while a client keeps posting usage.
fn run_scale(o: ScaleBench) -> Result<(), String> {
    let (url, cleanup) = store_url(&o.store, "scale")?;
    let started = WallClock::now();
    seed_daily_subscriptions(&url, o.subscriptions)?;
    println!("rollover bench scale: store {}, {} subscriptions on a daily-cap plan (Asia/Shanghai) seeded in {:.1} s", o.store, o.subscriptions, started.elapsed().as_secs_f64());
    let t = WallClock::now();
    let server = start_server(&url, "simulated", cleanup)?;
    println!("  start-up (rebuild from the store, listening): {:.2} s; resident memory {:.0} MiB", t.elapsed().as_secs_f64(), resident_mib(server.child.id()));
    let client = agent();
    post(&client, &format!("{}/v1/clock", server.base), "application/json", r#"{"now":"2026-06-01T15:59:00Z"}"#.into())?;
    // Usage for a few subscriptions, then every subscription crosses 00:00
    // Beijing time while a client keeps posting usage.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = spawn_trickle(server.base.clone(), o.subscriptions, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let daily = |client: &ureq::Agent| -> Result<u64, String> {
        let mut r = client.get(format!("{}/v1/subscriptions/m0/balance", server.base)).call().map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        v["daily_remaining_bytes"].as_u64().ok_or_else(|| format!("no daily_remaining_bytes in {v}"))
    };
    let before = daily(&client)?;
    let t = WallClock::now();
    post(&client, &format!("{}/v1/clock", server.base), "application/json", r#"{"now":"2026-06-01T16:00:01Z"}"#.into())?;
    let midnight = t.elapsed();
    let after = daily(&client)?;
    if before >= after || after != 1 << 30 {
        return Err(format!("the day window did not turn: {before} bytes left before midnight, {after} after"));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = loader.join().map_err(|_| "the loader panicked")?;
    latencies.sort();
    println!(
        "  {} subscriptions crossed the same local midnight in {:.2} s; meanwhile {} single-record usage posts answered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        o.subscriptions,
        midnight.as_secs_f64(),
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    println!("  resident memory after midnight: {:.0} MiB", resident_mib(server.child.id()));
    Ok(())
}
