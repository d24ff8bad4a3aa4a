//! Counters of the network listeners, rendered into `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed set of named counters with one label each, lock-free to bump.
pub struct Counters {
    metric: &'static str,
    help: &'static str,
    label: &'static str,
    names: &'static [&'static str],
    values: Vec<AtomicU64>,
}

impl Counters {
    pub fn new(metric: &'static str, help: &'static str, label: &'static str, names: &'static [&'static str]) -> Counters {
        Counters { metric, help, label, names, values: names.iter().map(|_| AtomicU64::new(0)).collect() }
    }

    /// Adds one to `name`, which must be one of the names given to `new`.
    pub fn bump(&self, name: &str) {
        self.add(name, 1);
    }

    pub fn add(&self, name: &str, n: u64) {
        let index = self.names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("{name} is not a counter of {}", self.metric));
        self.values[index].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, name: &str) -> u64 {
        self.names.iter().position(|n| *n == name).map_or(0, |i| self.values[i].load(Ordering::Relaxed))
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.metric, self.help, self.metric);
        for (name, value) in self.names.iter().zip(&self.values) {
            let _ = writeln!(out, "{}{{{}=\"{name}\"}} {}", self.metric, self.label, value.load(Ordering::Relaxed));
        }
    }
}
