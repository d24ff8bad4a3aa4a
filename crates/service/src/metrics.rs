//! Counters and histograms for `/metrics`, in the Prometheus text format.
//! Atomics only: recording never blocks a worker.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed upper bounds (seconds or counts). Each
/// observation is counted in its own bucket (the exposition sums them up), so
/// that observing is one increment, not one for every bound above it.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micro: AtomicU64,
    count: AtomicU64,
}

/// Observations gathered apart (one worker's batch), added to a histogram
/// at once: the workers then do not contend for its counters record by record.
pub struct Tally {
    bounds: &'static [f64],
    counts: [u64; MAX_BOUNDS],
    sum_micro: u64,
    count: u64,
}

/// Most bounds a histogram has.
const MAX_BOUNDS: usize = 12;

/// The bucket `value` is counted in: the first bound at or above it
/// (`bounds.len()` for none: only the `+Inf` bucket holds it).
fn bucket(bounds: &[f64], value: f64) -> usize {
    bounds.iter().position(|bound| value <= *bound).unwrap_or(bounds.len())
}

impl Tally {
    /// Observations gathered.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn observe(&mut self, value: f64) {
        if let Some(count) = self.counts.get_mut(bucket(self.bounds, value)) {
            *count += 1;
        }
        self.sum_micro = self.sum_micro.wrapping_add((value * 1e6) as u64);
        self.count += 1;
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() <= MAX_BOUNDS, "a histogram has at most {MAX_BOUNDS} bounds");
        Histogram { bounds, counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(), sum_micro: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, value: f64) {
        if let Some(count) = self.counts.get(bucket(self.bounds, value)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro.fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// An empty tally with this histogram's bounds.
    pub fn tally(&self) -> Tally {
        Tally { bounds: self.bounds, counts: [0; MAX_BOUNDS], sum_micro: 0, count: 0 }
    }

    /// Adds what `tally` gathered.
    pub fn add(&self, tally: &Tally) {
        if tally.count == 0 {
            return;
        }
        for (count, &n) in self.counts.iter().zip(&tally.counts) {
            if n > 0 {
                count.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum_micro.fetch_add(tally.sum_micro, Ordering::Relaxed);
        self.count.fetch_add(tally.count, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut below = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            below += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {below}");
        }
        // Read apart from the buckets: never fewer than they add up to.
        let total = self.count.load(Ordering::Relaxed).max(below);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {total}");
    }
}

const LATENCY_SECONDS: &[f64] = &[1e-7, 2.5e-7, 5e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0];
const COMMIT_SECONDS: &[f64] = &[1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5, 1.0];
const BATCH_EVENTS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 20_000.0];

/// Why a usage record was rejected before rating.
#[derive(Clone, Copy)]
pub enum RejectReason {
    UnknownSubscription,
    TooOld,
    Future,
    /// A counter report after its session stopped, or one that went backwards.
    Counter,
    /// More than 1 TiB in one record.
    TooLarge,
}

pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicate: AtomicU64,
    /// A known id with other bytes, instant or country.
    pub conflict: AtomicU64,
    rejected: [AtomicU64; 5],
    pub rating_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub commit_events: Histogram,
    pub webhook_backlog: AtomicU64,
    /// The last event the newest checkpoint holds (0: none written since
    /// the start), and how long writing it took.
    pub checkpoint_upto_seq: AtomicU64,
    pub checkpoint_millis: AtomicU64,
    /// At start-up: the checkpoint started from (its last event; 0: none),
    /// and the events replayed after it.
    pub startup_checkpoint_seq: AtomicU64,
    pub startup_replayed_events: AtomicU64,
    /// Bytes of accepted usage records (drawn, unmetered, throttled or
    /// refused: what the network reported).
    pub usage_bytes: AtomicU64,
    /// The same since 00:00 UTC of `usage_day` (days since 1970).
    usage_day: AtomicU64,
    usage_bytes_today: AtomicU64,
    /// Webhook attempts: delivered, failed (and retried or given up).
    pub webhook_delivered: AtomicU64,
    pub webhook_failed: AtomicU64,
    /// Idempotency keys whose hash memory held, looked up in the store, and
    /// how many of those the store did not have (another key's hash).
    pub key_lookups: AtomicU64,
    pub key_collisions: AtomicU64,
    /// Events exported and dropped by retention, and its passes, since the start.
    pub archived_events: AtomicU64,
    pub retention_passes: AtomicU64,
    /// Per worker: idempotency keys held and the bytes their tables take,
    /// as of the last scrape.
    keys: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            accepted: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            conflict: AtomicU64::new(0),
            rejected: Default::default(),
            rating_seconds: Histogram::new(LATENCY_SECONDS),
            commit_seconds: Histogram::new(COMMIT_SECONDS),
            commit_events: Histogram::new(BATCH_EVENTS),
            webhook_backlog: AtomicU64::new(0),
            checkpoint_upto_seq: AtomicU64::new(0),
            checkpoint_millis: AtomicU64::new(0),
            startup_checkpoint_seq: AtomicU64::new(0),
            startup_replayed_events: AtomicU64::new(0),
            usage_bytes: AtomicU64::new(0),
            usage_day: AtomicU64::new(0),
            usage_bytes_today: AtomicU64::new(0),
            webhook_delivered: AtomicU64::new(0),
            webhook_failed: AtomicU64::new(0),
            key_lookups: AtomicU64::new(0),
            archived_events: AtomicU64::new(0),
            retention_passes: AtomicU64::new(0),
            key_collisions: AtomicU64::new(0),
            keys: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// Counts an accepted record's bytes, in the total and in the day (UTC,
    /// by the service clock) they were accepted on.
    pub fn usage(&self, bytes: u64, now_micros: i64) {
        self.usage_bytes.fetch_add(bytes, Ordering::Relaxed);
        let day = now_micros.div_euclid(86_400_000_000).max(0) as u64;
        if self.usage_day.swap(day, Ordering::Relaxed) != day {
            // A new day: yesterday's count starts again (a record racing
            // the turn may land in either day).
            self.usage_bytes_today.store(0, Ordering::Relaxed);
        }
        self.usage_bytes_today.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Worker `worker`'s idempotency keys and their tables' bytes.
    pub fn set_keys(&self, worker: usize, keys: u64, bytes: u64) {
        let mut all = self.keys.lock().expect("key metrics lock");
        if all.len() <= worker {
            all.resize(worker + 1, (0, 0));
        }
        all[worker] = (keys, bytes);
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `statuses` are subscription counts by status.
    pub fn render(&self, statuses: &[(&'static str, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP rollover_build_info The version running and its built-in time-zone database.\n# TYPE rollover_build_info gauge");
        let _ = writeln!(out, "rollover_build_info{{version=\"{}\",tzdata=\"{}\"}} 1", env!("CARGO_PKG_VERSION"), rollover_core::time::TZDATA_VERSION);
        let _ = writeln!(out, "# HELP rollover_usage_records_total Usage records by outcome.\n# TYPE rollover_usage_records_total counter");
        let _ = writeln!(out, "rollover_usage_records_total{{outcome=\"accepted\"}} {}", self.accepted.load(Ordering::Relaxed));
        let _ = writeln!(out, "rollover_usage_records_total{{outcome=\"duplicate\"}} {}", self.duplicate.load(Ordering::Relaxed));
        let _ = writeln!(out, "rollover_usage_records_total{{outcome=\"conflict\"}} {}", self.conflict.load(Ordering::Relaxed));
        for (reason, count) in ["unknown_subscription", "too_old", "future", "counter_not_rated", "too_large"].iter().zip(&self.rejected) {
            let _ = writeln!(out, "rollover_usage_records_total{{outcome=\"rejected\",reason=\"{reason}\"}} {}", count.load(Ordering::Relaxed));
        }
        self.rating_seconds.render(&mut out, "rollover_rating_seconds", "Time to rate one usage record in memory.");
        self.commit_seconds.render(&mut out, "rollover_commit_seconds", "Time of one group commit, fsync included.");
        self.commit_events.render(&mut out, "rollover_commit_events", "Events written by one group commit.");
        let _ = writeln!(out, "# HELP rollover_usage_bytes_total Bytes of accepted usage records.\n# TYPE rollover_usage_bytes_total counter");
        let _ = writeln!(out, "rollover_usage_bytes_total {}", self.usage_bytes.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_usage_bytes_today Bytes of usage records accepted since 00:00 UTC (service clock).\n# TYPE rollover_usage_bytes_today gauge");
        let _ = writeln!(out, "rollover_usage_bytes_today {}", self.usage_bytes_today.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_webhook_attempts_total Webhook delivery attempts by outcome.\n# TYPE rollover_webhook_attempts_total counter");
        let _ = writeln!(out, "rollover_webhook_attempts_total{{outcome=\"delivered\"}} {}", self.webhook_delivered.load(Ordering::Relaxed));
        let _ = writeln!(out, "rollover_webhook_attempts_total{{outcome=\"failed\"}} {}", self.webhook_failed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_webhook_backlog Webhook deliveries waiting.\n# TYPE rollover_webhook_backlog gauge");
        let _ = writeln!(out, "rollover_webhook_backlog {}", self.webhook_backlog.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_checkpoint_upto_seq The last event the newest checkpoint written since the start holds (0: none yet).\n# TYPE rollover_checkpoint_upto_seq gauge");
        let _ = writeln!(out, "rollover_checkpoint_upto_seq {}", self.checkpoint_upto_seq.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_checkpoint_seconds How long building and writing the newest checkpoint took.\n# TYPE rollover_checkpoint_seconds gauge");
        let _ = writeln!(out, "rollover_checkpoint_seconds {:.3}", self.checkpoint_millis.load(Ordering::Relaxed) as f64 / 1000.0);
        let _ = writeln!(out, "# HELP rollover_startup_checkpoint_seq The last event of the checkpoint start-up began from (0: none, the whole log was replayed).\n# TYPE rollover_startup_checkpoint_seq gauge");
        let _ = writeln!(out, "rollover_startup_checkpoint_seq {}", self.startup_checkpoint_seq.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_startup_replayed_events Events start-up replayed after its checkpoint.\n# TYPE rollover_startup_replayed_events gauge");
        let _ = writeln!(out, "rollover_startup_replayed_events {}", self.startup_replayed_events.load(Ordering::Relaxed));
        let (keys, key_bytes) = self.keys.lock().expect("key metrics lock").iter().fold((0, 0), |(k, b), (wk, wb)| (k + wk, b + wb));
        let _ = writeln!(out, "# HELP rollover_idempotency_keys Idempotency keys held in memory (those a retry could still hit).\n# TYPE rollover_idempotency_keys gauge");
        let _ = writeln!(out, "rollover_idempotency_keys {keys}");
        let _ = writeln!(out, "# HELP rollover_idempotency_key_bytes Bytes the tables of idempotency keys take (capacity, not only use).\n# TYPE rollover_idempotency_key_bytes gauge");
        let _ = writeln!(out, "rollover_idempotency_key_bytes {key_bytes}");
        let _ = writeln!(out, "# HELP rollover_idempotency_lookups_total Keys whose hash was held, looked up in the store; by what the store said.\n# TYPE rollover_idempotency_lookups_total counter");
        let (lookups, collisions) = (self.key_lookups.load(Ordering::Relaxed), self.key_collisions.load(Ordering::Relaxed));
        let _ = writeln!(out, "rollover_idempotency_lookups_total{{found=\"yes\"}} {}", lookups.saturating_sub(collisions));
        let _ = writeln!(out, "rollover_idempotency_lookups_total{{found=\"no\"}} {collisions}");
        let _ = writeln!(out, "# HELP rollover_archived_events_total Events retention exported and dropped since the start.\n# TYPE rollover_archived_events_total counter");
        let _ = writeln!(out, "rollover_archived_events_total {}", self.archived_events.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_retention_passes_total Retention passes finished since the start.\n# TYPE rollover_retention_passes_total counter");
        let _ = writeln!(out, "rollover_retention_passes_total {}", self.retention_passes.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_subscriptions Subscriptions by status.\n# TYPE rollover_subscriptions gauge");
        for (status, count) in statuses {
            let _ = writeln!(out, "rollover_subscriptions{{status=\"{status}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_however_observed() {
        let direct = Histogram::new(LATENCY_SECONDS);
        let gathered = Histogram::new(LATENCY_SECONDS);
        let mut tally = gathered.tally();
        for value in [5e-8, 3e-7, 3e-7, 2e-3, 5.0] {
            direct.observe(value);
            tally.observe(value);
        }
        gathered.add(&tally);
        let (mut a, mut b) = (String::new(), String::new());
        direct.render(&mut a, "x", "h");
        gathered.render(&mut b, "x", "h");
        assert_eq!(a, b);
        for line in ["x_bucket{le=\"0.0000001\"} 1", "x_bucket{le=\"0.0000005\"} 3", "x_bucket{le=\"0.001\"} 3", "x_bucket{le=\"0.01\"} 4", "x_bucket{le=\"1\"} 4", "x_bucket{le=\"+Inf\"} 5", "x_count 5"] {
            assert!(a.lines().any(|l| l == line), "{line} in\n{a}");
        }
    }
}
