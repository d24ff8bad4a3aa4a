//! `rollover bench`: figures for the engine, printed for people.

use std::process::ExitCode;
use std::time::Instant as WallClock;

use rollover_core::engine::{Event, GrantExpiry};
use rollover_core::plan::{AllowanceDraft, OrderDraft, PeriodDraft, PlanDraft, RolloverDraft};
use rollover_core::{Catalog, Instant, Kind, Plan, Subscription};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Resident memory of many subscriptions with three live buckets each.
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        subscriptions: usize,
    },
    /// Rating and boundary speed on one core (criterion has the careful
    /// version: `cargo bench -p rollover-core`).
    Engine {
        #[arg(long, default_value_t = 5_000_000)]
        records: u64,
    },
    /// Starts `rollover serve` as a second process on a fresh store, loads
    /// subscriptions, drives durable ingestion and balance reads over HTTP,
    /// and prints the figures.
    Http(crate::loadgen::HttpBench),
    /// Start-up with many subscriptions, and all of them crossing the same
    /// local midnight while ingestion goes on.
    Scale(crate::loadgen::ScaleBench),
    /// Starts `rollover serve` with its RADIUS listener and drives it with
    /// Interim-Updates from several sockets, every answer waited for.
    Radius(crate::netload::RadiusBench),
    /// Starts `rollover serve` with its Diameter listener and drives it with
    /// CCR-Updates over a few connections, every answer waited for.
    Diameter(crate::netload::DiameterBench),
    /// Starts `rollover serve` and loads customer pages at a steady rate
    /// while usage flows: render time, latency and page weight.
    Pages(crate::pageload::PagesBench),
    /// Starts the SM-DP+ test double and `rollover serve` ordering from it
    /// over mutual TLS: orders a second and the whole flow's latency.
    Orders(crate::orderload::OrdersBench),
    /// A long history on one node: start-up replaying the whole log and
    /// from a checkpoint, resident memory, and ledger reads, per size.
    History(crate::historyload::HistoryBench),
    /// Cluster mode: durable ingestion with 1 and with 3 nodes on one
    /// PostgreSQL and NATS, and takeover times after kill -9.
    Cluster(crate::clusterbench::ClusterBench),
}

pub fn run(command: BenchCommand) -> ExitCode {
    match command {
        BenchCommand::Memory { subscriptions } => memory(subscriptions),
        BenchCommand::Engine { records } => engine(records),
        BenchCommand::Http(options) => crate::loadgen::http(options),
        BenchCommand::Scale(options) => crate::loadgen::scale(options),
        BenchCommand::Radius(options) => crate::netload::radius(options),
        BenchCommand::Diameter(options) => crate::netload::diameter(options),
        BenchCommand::Pages(options) => crate::pageload::pages(options),
        BenchCommand::Orders(options) => crate::orderload::orders(options),
        BenchCommand::History(options) => crate::historyload::history(options),
        BenchCommand::Cluster(options) => crate::clusterbench::cluster(options),
    }
}

fn plan() -> Plan {
    Plan::from_draft(&PlanDraft {
        id: Some("bench".into()),
        name: Some("bench".into()),
        currency: Some("CNY".into()),
        price: Some("58.00".into()),
        timezone: Some("Asia/Shanghai".into()),
        period: Some(PeriodDraft { kind: Some("monthly".into()), ..Default::default() }),
        allowance: Some(AllowanceDraft { data: Some("30GiB".into()) }),
        rollover: Some(RolloverDraft { from: Some(vec!["allowance".into()]), ..Default::default() }),
        order: Some(OrderDraft { kinds: Some(vec!["carry".into(), "allowance".into()]) }),
        ..Default::default()
    })
    .expect("the bench plan is valid")
}

fn at(text: &str) -> Instant {
    Instant::parse_rfc3339(text).expect("bench instants are valid")
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn memory(count: usize) -> ExitCode {
    let mut catalog = Catalog::new();
    let ix = catalog.add(plan());
    let purchase = at("2026-01-01T00:00:00+08:00");
    let usage_at = at("2026-01-15T00:00:00+08:00");
    let grant_at = at("2026-02-03T00:00:00+08:00");
    let gift = Kind::parse("gift").expect("valid kind");
    let before = resident_bytes();
    let started = WallClock::now();
    let mut ledger = Vec::new();
    let mut subscriptions = Vec::with_capacity(count);
    for i in 0..count {
        ledger.clear();
        // Each subscription is built by the engine itself: a purchase, some
        // usage, a boundary that carries, and a gift: three live buckets.
        let mut s = Subscription::purchase(&catalog, ix, purchase, &mut ledger);
        s.apply(&catalog, Event::Usage { bytes: (i as u64 % 1000 + 1) << 20, country: None }, usage_at, &mut ledger);
        s.apply(&catalog, Event::Grant { kind: gift, bytes: 1 << 30, expires: GrantExpiry::PeriodEnd }, grant_at, &mut ledger);
        debug_assert_eq!(s.buckets().len(), 3);
        subscriptions.push(s);
    }
    let elapsed = started.elapsed();
    let after = resident_bytes();
    let live: usize = subscriptions.iter().map(|s| s.buckets().len()).sum();
    println!("subscriptions:            {count}");
    println!("live buckets:             {live} ({:.2} per subscription)", live as f64 / count as f64);
    println!("size_of::<Subscription>:  {} bytes", std::mem::size_of::<Subscription>());
    println!("built in:                 {:.2} s", elapsed.as_secs_f64());
    match (before, after) {
        (Some(before), Some(after)) => {
            let per = (after - before) as f64 / count as f64;
            println!("resident memory added:    {:.1} MiB", (after - before) as f64 / (1 << 20) as f64);
            println!("per subscription:         {per:.1} bytes (target: 300 or less)");
        }
        _ => println!("resident memory:          not available (no /proc/self/statm)"),
    }
    std::hint::black_box(&subscriptions);
    ExitCode::SUCCESS
}

fn engine(records: u64) -> ExitCode {
    let mut catalog = Catalog::new();
    let ix = catalog.add(plan());
    let mut ledger = Vec::with_capacity(64);
    let mut s = Subscription::purchase(&catalog, ix, at("2026-01-01T00:00:00+08:00"), &mut ledger);
    s.apply(&catalog, Event::Usage { bytes: 1 << 30, country: None }, at("2026-01-10T00:00:00+08:00"), &mut ledger);
    for (kind, day) in [("gift", "05"), ("addon", "06"), ("bonus", "07")] {
        let event = Event::Grant { kind: Kind::parse(kind).expect("valid kind"), bytes: 1 << 40, expires: GrantExpiry::PeriodEnd };
        s.apply(&catalog, event, at(&format!("2026-02-{day}T00:00:00+08:00")), &mut ledger);
    }
    let now = at("2026-02-10T12:00:00+08:00");
    s.advance(&catalog, now, &mut ledger);
    let buckets = s.buckets().len();
    let started = WallClock::now();
    for _ in 0..records {
        ledger.clear();
        std::hint::black_box(s.apply(&catalog, Event::Usage { bytes: 1500, country: None }, now, &mut ledger));
    }
    let elapsed = started.elapsed();
    println!("rated {records} records against {buckets} live buckets in {:.3} s", elapsed.as_secs_f64());
    println!("  {:.0} records/s, {:.1} ns each (target: 5,000,000/s, 200 ns)", records as f64 / elapsed.as_secs_f64(), elapsed.as_nanos() as f64 / records as f64);

    let template = s.clone();
    let boundary = at("2026-03-01T00:00:00+08:00");
    let turns = 200_000u32;
    let mut copies: Vec<Subscription> = (0..turns).map(|_| template.clone()).collect();
    let started = WallClock::now();
    for copy in &mut copies {
        ledger.clear();
        copy.advance(&catalog, boundary, &mut ledger);
    }
    let elapsed = started.elapsed();
    println!(
        "boundary turns (expire, carry, grant): {:.1} ns each over {turns} subscriptions (target: 1 µs)",
        elapsed.as_nanos() as f64 / turns as f64
    );
    ExitCode::SUCCESS
}
