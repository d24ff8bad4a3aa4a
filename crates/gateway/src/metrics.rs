//! Counters of the network listeners, rendered into `/metrics`. Each
//! listener's outcomes are an enum (made by [`outcomes!`]), so a counter
//! that does not exist cannot be bumped.

use std::fmt::Write;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// The outcomes one listener counts.
pub trait Outcome: Copy {
    /// Every outcome's label value, in order.
    const NAMES: &'static [&'static str];
    fn index(self) -> usize;
}

/// Defines an enum of outcomes, each with its label value.
macro_rules! outcomes {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident = $label:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),* }

        impl $crate::metrics::Outcome for $name {
            const NAMES: &'static [&'static str] = &[$($label),*];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use outcomes;

/// One counter per outcome, with one label, lock-free to bump.
pub struct Counters<O: Outcome> {
    metric: &'static str,
    help: &'static str,
    label: &'static str,
    values: Vec<AtomicU64>,
    outcomes: PhantomData<O>,
}

impl<O: Outcome> Counters<O> {
    pub fn new(metric: &'static str, help: &'static str, label: &'static str) -> Counters<O> {
        Counters { metric, help, label, values: O::NAMES.iter().map(|_| AtomicU64::new(0)).collect(), outcomes: PhantomData }
    }

    pub fn bump(&self, outcome: O) {
        self.add(outcome, 1);
    }

    pub fn add(&self, outcome: O, n: u64) {
        self.values[outcome.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, outcome: O) -> u64 {
        self.values[outcome.index()].load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.metric, self.help, self.metric);
        for (name, value) in O::NAMES.iter().zip(&self.values) {
            let _ = writeln!(out, "{}{{{}=\"{name}\"}} {}", self.metric, self.label, value.load(Ordering::Relaxed));
        }
    }
}
