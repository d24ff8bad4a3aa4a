//! `rollover bench history`: what a long history costs a node. For each
//! size, a fresh store is seeded directly (as a migration would: purchases,
//! then usage records spread over the 90 days before the clock), and
//! `rollover serve` is started on it three times: replaying the whole log,
//! writing a checkpoint, and starting from that checkpoint. Printed: start-up
//! time and resident memory both ways, the checkpoint's cost, how long the
//! SQLite subscription index took to catch up with the seeded log, and then
//! the p99 of reading a page of 100 ledger lines of a subscription, the
//! oldest (cold, then warm) and the newest.

use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use crate::loadgen::{agent, get, percentile, resident_mib, start_server_with, store_url};

#[derive(clap::Args)]
pub struct HistoryBench {
    /// "sqlite" or "postgres".
    #[arg(long, default_value = "sqlite")]
    store: String,
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// History sizes to measure, in usage records, comma-separated.
    #[arg(long, default_value = "1000000")]
    records: String,
    /// Ledger reads timed per size.
    #[arg(long, default_value_t = 200)]
    reads: usize,
    /// Keep the seeded SQLite stores (their paths are printed), to look
    /// into them afterwards.
    #[arg(long)]
    keep: bool,
}

pub fn history(options: HistoryBench) -> ExitCode {
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollover bench history: {e}");
            ExitCode::FAILURE
        }
    }
}

/// 2026-03-03T00:00:00Z: the history's first instant; the server's clock
/// starts at 2026-06-01.
const FIRST_MICROS: i64 = 1_772_496_000_000_000;
const SPAN_MICROS: i64 = 89 * 86_400_000_000;

fn seed(url: &str, subscriptions: usize, records: usize) -> Result<(), String> {
    use rollover_store::{Batch, EventBody, EventRow, SubscriptionRow};
    let mut store = crate::loadgen::open_with_bench_plans(url)?;
    let purchase = FIRST_MICROS - 86_400_000_000;
    let mut batch = Batch::default();
    for i in 0..subscriptions {
        let id = format!("h{i}");
        batch.subscriptions.push(SubscriptionRow { id: id.clone(), identifiers: Default::default(), created_at_micros: purchase });
        batch.events.push(EventRow { seq: 0, subscription: id, applied_at_micros: purchase, at_micros: purchase, key: None, body: EventBody::Purchase { plan_id: "bench".into(), plan_version: 1 } });
    }
    store.commit(&batch).map_err(|e| e.to_string())?;
    let step = SPAN_MICROS / records.max(1) as i64;
    for start in (0..records).step_by(50_000) {
        let mut batch = Batch::default();
        for n in start..(start + 50_000).min(records) {
            let at = FIRST_MICROS + n as i64 * step;
            let body = EventBody::Usage { bytes: 1_000, country: None };
            batch.events.push(EventRow { seq: 0, subscription: format!("h{}", n % subscriptions), applied_at_micros: at, at_micros: at, key: Some(format!("r{n}")), body });
        }
        store.commit(&batch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn metric(base: &str, name: &str) -> Option<f64> {
    let text = get(&agent(), &format!("{base}/metrics")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok())
}

fn run(o: &HistoryBench) -> Result<(), String> {
    let sizes: Vec<usize> = o.records.split(',').map(|s| s.trim().replace('_', "").parse::<usize>().map_err(|_| format!("--records {s:?}: a number"))).collect::<Result<_, _>>()?;
    println!("rollover bench history: store {}, {} subscriptions on a monthly plan with rollover; usage records spread over 89 days", o.store, o.subscriptions);
    println!("| records | seeded in | start-up, whole log | resident | checkpoint built in | start-up from it | resident | replayed after it | keys held | bytes a key | index caught up after | oldest 100 lines, p99, at start-up | 5 s later | newest 100 lines, p99 | read from disk a page (the three) | store on disk |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for records in sizes {
        let (url, cleanup) = store_url(&o.store, &format!("history{records}"))?;
        let seeded = WallClock::now();
        seed(&url, o.subscriptions, records)?;
        let seeded = seeded.elapsed();
        let never = [("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "0")];
        let t = WallClock::now();
        let whole = start_server_with(&url, "simulated", None, &never)?;
        let (whole_start, whole_rss) = (t.elapsed(), resident_mib(whole.pid()));
        whole.stop();
        let writer = start_server_with(&url, "simulated", None, &[("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "1")])?;
        let waited = WallClock::now();
        let target = (records + o.subscriptions) as f64;
        while metric(&writer.base, "rollover_checkpoint_upto_seq").unwrap_or(0.0) < target {
            if waited.elapsed() > Duration::from_secs(1_800) {
                return Err("no checkpoint within 30 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let built = metric(&writer.base, "rollover_checkpoint_seconds").unwrap_or(f64::NAN);
        writer.stop();
        let t = WallClock::now();
        // Its start-up log says where the time went (store, checkpoint, replay).
        let phases = [never[0], ("ROLLOVER_LOG", "warn,rollover_service::start=info,rollover_service::checkpoint=info")];
        let resumed = start_server_with(&url, "simulated", cleanup, &phases)?;
        let (resumed_start, resumed_rss) = (t.elapsed(), resident_mib(resumed.pid()));
        let replayed = metric(&resumed.base, "rollover_startup_replayed_events").unwrap_or(f64::NAN);
        // The keys a retry could still hit, and what their tables take.
        let keys = metric(&resumed.base, "rollover_idempotency_keys").unwrap_or(f64::NAN);
        let key_bytes = metric(&resumed.base, "rollover_idempotency_key_bytes").unwrap_or(f64::NAN);
        // SQLite's subscription index is built behind the log; a store
        // seeded this fast leaves it far behind, and reads scan the rest.
        let caught = WallClock::now();
        // The gauge is absent until the indexer's first step has measured
        // the lag; PostgreSQL indexes as it commits and has none.
        let indexed = || metric(&resumed.base, "rollover_store_index_lag_events").map(|lag| lag == 0.0);
        while o.store == "sqlite" && !indexed().unwrap_or(false) && caught.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let caught = caught.elapsed();
        let client = agent();
        // Three passes over different subscriptions: the oldest 100 lines
        // right after the start, when the pages are cold and start-up's own
        // work still runs; the same five seconds later; and the newest 100
        // (offset = total - 100, the total read first, untimed, with
        // `limit=1`).
        let mut passes = Vec::new();
        let mut disk_kib = Vec::new();
        for pass in 0..3 {
            if pass == 1 {
                // Past the start-up's own work (every subscription brought
                // over the boundary to the clock's now, the index's last
                // batch): reads as a running node serves them.
                std::thread::sleep(Duration::from_secs(5));
            }
            let mut latencies = Vec::with_capacity(o.reads);
            let read_before = disk_read_bytes(resumed.pid());
            for n in 0..o.reads {
                let id = (n * 7919 + pass * 104_729) % o.subscriptions;
                let ledger = format!("{}/v1/subscriptions/h{id}/ledger", resumed.base);
                let offset = if pass == 2 {
                    let first = get(&client, &format!("{ledger}?limit=1"))?;
                    let total = serde_json::from_str::<serde_json::Value>(&first).map_err(|e| e.to_string())?["total"].as_u64().unwrap_or(0);
                    total.saturating_sub(100)
                } else {
                    0
                };
                let t = WallClock::now();
                get(&client, &format!("{ledger}?limit=100&offset={offset}"))?;
                latencies.push(t.elapsed());
            }
            latencies.sort();
            passes.push(percentile(&latencies, 0.99));
            disk_kib.push(disk_read_bytes(resumed.pid()).saturating_sub(read_before) as f64 / 1024.0 / o.reads as f64);
        }
        drop(resumed);
        let size = url.strip_prefix("sqlite://").map_or("n/a".to_string(), |path| format!("{:.1} GiB", store_bytes(std::path::Path::new(path)) as f64 / f64::from(1u32 << 30)));
        // A store of tens of millions of events: not left behind.
        if o.keep {
            println!("  kept: {url}");
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            let _ = std::fs::remove_dir_all(std::path::Path::new(path).parent().unwrap_or(std::path::Path::new(path)));
        }
        println!(
            "| {records} | {:.1} s | {:.2} s | {whole_rss:.0} MiB | {built:.2} s | {:.2} s | {resumed_rss:.0} MiB | {replayed:.0} | {keys:.0} | {:.1} | {:.1} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} / {:.0} / {:.0} KiB | {size} |",
            seeded.as_secs_f64(),
            whole_start.as_secs_f64(),
            resumed_start.as_secs_f64(),
            key_bytes / keys.max(1.0),
            caught.as_secs_f64(),
            passes[0],
            passes[1],
            passes[2],
            disk_kib[0],
            disk_kib[1],
            disk_kib[2]
        );
    }
    Ok(())
}

/// Bytes the process has caused to be read from storage (not the page
/// cache): `read_bytes` of `/proc/PID/io`. A PostgreSQL store's reads are the
/// database's, not the server's, and show as none.
fn disk_read_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("read_bytes:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// The size of a SQLite store: its file and every file beside it that
/// starts with its name (WAL, index, the index's WAL).
fn store_bytes(path: &std::path::Path) -> u64 {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return 0 };
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(name.to_string_lossy().as_ref()))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
