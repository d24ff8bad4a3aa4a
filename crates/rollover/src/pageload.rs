//! `rollover bench pages`: the customer page measured as customers would
//! load it while usage flows: render time on the server (its
//! `Server-Timing`), latency at the client, and what one page view weighs.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant as WallClock};

use rollover_core::{Instant, Zone};

use crate::loadgen::{agent, get, percentile as percentile_ms, post, start_server_with, store_url};

#[derive(clap::Args)]
pub struct PagesBench {
    /// Subscriptions on the demo catalog's monthly plan, each with a week of use.
    #[arg(long, default_value_t = 2_000)]
    subscriptions: usize,
    /// Page views a second, open loop, spread over the subscriptions.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Usage records a second posted meanwhile, in batches of 100.
    #[arg(long, default_value_t = 5_000)]
    usage_per_second: u32,
}

pub fn pages(options: PagesBench) -> ExitCode {
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollover bench pages: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: PagesBench) -> Result<(), String> {
    let (url, cleanup) = store_url("sqlite", "pages")?;
    // Customers' pages are rate-limited per subscription; the bench stays
    // far below (`rate / subscriptions` a second each).
    let server = start_server_with(&url, "wall", cleanup, &[])?;
    let client = agent();
    post(&client, &format!("{}/v1/plans", server.base), "application/toml", crate::demo::CATALOG.to_string())?;
    let now = rollover_service::wall_micros();
    let ago = |days: i64| Instant::from_micros(now - days * 86_400_000_000).to_rfc3339(&Zone::utc());
    for chunk in (0..o.subscriptions).collect::<Vec<_>>().chunks(500) {
        for &i in chunk {
            post(&client, &format!("{}/v1/subscriptions", server.base), "application/json", format!(r#"{{"id":"c{i}","plan":"cn-30g","at":"{}"}}"#, ago(40)))?;
        }
        let records: Vec<String> = chunk
            .iter()
            .flat_map(|i| (1..=6).map(move |day| (i, day)))
            .map(|(i, day)| format!(r#"{{"id":"h{i}-{day}","subscription":"c{i}","at":"{}","bytes":{}}}"#, ago(day), (400 + 37 * ((i + day as usize) % 20)) << 20))
            .collect();
        post(&client, &format!("{}/v1/usage", server.base), "application/json", format!(r#"{{"records":[{}]}}"#, records.join(",")))?;
    }
    let mut links = Vec::with_capacity(o.subscriptions);
    for i in 0..o.subscriptions {
        let answer = post(&client, &format!("{}/v1/subscriptions/c{i}/tokens", server.base), "application/json", "{}".into())?;
        let value: serde_json::Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
        links.push(value["url"].as_str().ok_or("no url in the token's answer")?.to_string());
    }
    println!("rollover bench pages: {} subscriptions on cn-30g, a week of use each; {} page views/s for {} s while {} usage records/s flow", o.subscriptions, o.rate, o.seconds, o.usage_per_second);
    let weight = weigh(&client, &server.base, &links[0])?;
    println!("  one page view: {} bytes of HTML, {} of style sheet, {} of icon: {:.1} KB in all, uncompressed; requests to other origins: {}", weight.0, weight.1, weight.2, (weight.0 + weight.1 + weight.2) as f64 / 1024.0, weight.3);
    let stop = Arc::new(AtomicBool::new(false));
    let usage = flow_usage(server.base.clone(), o.subscriptions, o.usage_per_second, stop.clone());
    let (mut render, mut latency, failures) = views(&links, o.rate, o.seconds);
    stop.store(true, Ordering::Relaxed);
    let posted = usage.join().map_err(|_| "the usage thread panicked")?;
    render.sort();
    latency.sort();
    println!(
        "  customer page render on the server: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} views ({} not 200)",
        percentile_ms(&render, 0.50),
        percentile_ms(&render, 0.99),
        render.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        render.len(),
        failures
    );
    println!("  at the client (loopback, from each view's scheduled time): p50 {:.2} ms, p99 {:.2} ms", percentile_ms(&latency, 0.50), percentile_ms(&latency, 0.99));
    println!("  usage records accepted meanwhile: {posted}");
    Ok(())
}

/// The bytes of one page view: the page, its style sheet and its icon, and
/// how many of its references point at another origin.
fn weigh(client: &ureq::Agent, base: &str, link: &str) -> Result<(usize, usize, usize, usize), String> {
    let html = get(client, link)?;
    let css = get(client, &format!("{base}/assets/site.css"))?;
    let icon = get(client, &format!("{base}/assets/icon.svg"))?;
    let outside = ["src=\"http", "href=\"http", "url(http", "src=\"//", "href=\"//"].iter().map(|needle| html.matches(needle).count() + css.matches(needle).count()).sum();
    Ok((html.len(), css.len(), icon.len(), outside))
}

/// Posts `per_second` usage records a second in batches of 100 until `stop`;
/// how many were accepted.
fn flow_usage(base: String, subscriptions: usize, per_second: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let client = agent();
        let accepted = AtomicU64::new(0);
        let batches = (per_second / 100).max(1);
        let interval = Duration::from_secs_f64(1.0 / batches as f64);
        let mut n = 0usize;
        let started = WallClock::now();
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::from_micros(rollover_service::wall_micros()).to_rfc3339(&Zone::utc());
            let records: Vec<String> = (0..100).map(|k| format!(r#"{{"id":"f{n}-{k}","subscription":"c{}","at":"{at}","bytes":100000}}"#, (n * 100 + k) % subscriptions)).collect();
            if post(&client, &format!("{base}/v1/usage"), "application/json", format!(r#"{{"records":[{}]}}"#, records.join(","))).is_ok() {
                accepted.fetch_add(100, Ordering::Relaxed);
            }
            n += 1;
            let next = started + interval * n as u32;
            if let Some(wait) = next.checked_duration_since(WallClock::now()) {
                std::thread::sleep(wait);
            }
        }
        accepted.load(Ordering::Relaxed)
    })
}

/// Open-loop page views: each view's render time from its `Server-Timing`
/// header, its latency from its scheduled time, and the views not answered
/// 200.
fn views(links: &[String], rate: u32, seconds: u32) -> (Vec<Duration>, Vec<Duration>, usize) {
    let threads = 8u32;
    let per_thread = (rate / threads).max(1);
    let started = WallClock::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let links = links.to_vec();
            std::thread::spawn(move || {
                let client = agent();
                let (mut render, mut latency, mut failures) = (Vec::new(), Vec::new(), 0);
                let interval = Duration::from_secs_f64(1.0 / per_thread as f64);
                let offset = interval.mul_f64(t as f64 / threads as f64);
                for i in 0..per_thread * seconds {
                    let scheduled = started + offset + interval * i;
                    if let Some(wait) = scheduled.checked_duration_since(WallClock::now()) {
                        std::thread::sleep(wait);
                    }
                    let link = &links[(i as usize * threads as usize + t as usize) % links.len()];
                    match client.get(link).call() {
                        Ok(mut response) if response.status() == 200 => {
                            let timing = response.headers().get("server-timing").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("render;dur=")).and_then(|v| v.parse::<f64>().ok());
                            let _ = response.body_mut().read_to_string();
                            latency.push(scheduled.elapsed());
                            render.extend(timing.map(|ms| Duration::from_secs_f64(ms / 1000.0)));
                        }
                        _ => failures += 1,
                    }
                }
                (render, latency, failures)
            })
        })
        .collect();
    let mut all = (Vec::new(), Vec::new(), 0);
    for handle in handles {
        let (render, latency, failures) = handle.join().unwrap_or_default();
        all.0.extend(render);
        all.1.extend(latency);
        all.2 += failures;
    }
    all
}
