//! The service clock: the wall clock, or a simulated clock that only moves
//! when told to (for staging and tests). Nothing else in the service reads
//! the time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rollover_core::Instant;

#[derive(Debug)]
pub enum Clock {
    Wall,
    Simulated(AtomicI64),
}

impl Clock {
    pub fn simulated(start: Instant) -> Clock {
        Clock::Simulated(AtomicI64::new(start.micros()))
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::Wall => Instant::from_micros(wall_micros()),
            Clock::Simulated(now) => Instant::from_micros(now.load(Ordering::Acquire)),
        }
    }

    pub fn is_simulated(&self) -> bool {
        matches!(self, Clock::Simulated(_))
    }

    /// Moves a simulated clock forward; returns false for the wall clock or a
    /// move backwards.
    pub fn set(&self, to: Instant) -> bool {
        match self {
            Clock::Wall => false,
            Clock::Simulated(now) => now.fetch_max(to.micros(), Ordering::AcqRel) <= to.micros(),
        }
    }
}

pub fn wall_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
