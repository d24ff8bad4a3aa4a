//! Idempotency keys: what makes a retried record the same record. A key is
//! typed while the service works with it ([`Key`]) and a string in the store.
//! Keys the service makes itself start with `#`, which no client id may, so a
//! client's record id can never be mistaken for a RADIUS counter report or a
//! session's report.

use std::collections::HashMap;

use rollover_core::Instant;

/// The idempotency key of one accepted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    /// A client's usage record, by its id.
    Record(&'a str),
    /// A cumulative counter report of a RADIUS session (`stop` for its Stop).
    Counter { session: &'a str, total: u64, stop: bool },
    /// A session's numbered report (HTTP sessions and Diameter Gy).
    Session { session: &'a str, number: u32 },
}

impl<'a> Key<'a> {
    pub(crate) fn encode(&self) -> String {
        match self {
            Key::Record(id) => id.to_string(),
            Key::Counter { session, total, stop: false } => format!("#acct:{total}:{session}"),
            Key::Counter { session, total, stop: true } => format!("#acct-stop:{total}:{session}"),
            Key::Session { session, number } => format!("#session:{number}:{session}"),
        }
    }

    /// Reads a stored key. Keys written before the `#` prefix (`acct:...`,
    /// `acct-stop:...`) still read as counter reports.
    pub(crate) fn decode(text: &'a str) -> Key<'a> {
        let internal = text.strip_prefix('#');
        let body = internal.unwrap_or(text);
        let counter = |rest: &'a str, stop: bool| -> Option<Key<'a>> {
            let (total, session) = rest.split_once(':')?;
            Some(Key::Counter { session, total: total.parse().ok()?, stop })
        };
        let parsed = if let Some(rest) = body.strip_prefix("acct-stop:") {
            counter(rest, true)
        } else if let Some(rest) = body.strip_prefix("acct:") {
            counter(rest, false)
        } else if let (Some(rest), Some(_)) = (body.strip_prefix("session:"), internal) {
            rest.split_once(':').and_then(|(number, session)| Some(Key::Session { session, number: number.parse().ok()? }))
        } else {
            None
        };
        parsed.unwrap_or(Key::Record(text))
    }
}

/// The idempotency keys of one subscription's accepted records, each with
/// the record's own instant and a fingerprint of what it said. A key is kept
/// while a retry of its record could still be accepted: a record stamped
/// further back than the maximum age is rejected as too old anyway, so its
/// key can go, and memory stays bounded by the records of the last
/// `max_age`.
#[derive(Default)]
pub(crate) struct Keys {
    stamped: HashMap<String, Stamp>,
    /// Sweep when the map grows past this.
    sweep_at: usize,
}

/// What a retry of a record must repeat to be the same record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) at_micros: i64,
    /// The record's bytes and country (see [`fingerprint`]).
    pub(crate) fingerprint: u64,
}

/// Bytes (at most 2^40) in the low bits, the country's two letters above.
pub(crate) fn fingerprint(bytes: u64, country: Option<&str>) -> u64 {
    let letters = country.map_or(0, |c| c.bytes().fold(0u64, |n, b| n << 8 | b as u64));
    bytes ^ letters << 44
}

impl Keys {
    pub(crate) fn get(&self, key: &str) -> Option<Stamp> {
        self.stamped.get(key).copied()
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.stamped.contains_key(key)
    }

    pub(crate) fn insert(&mut self, key: String, stamp: Stamp, now: Instant, max_age_micros: i64) {
        self.stamped.insert(key, stamp);
        if self.stamped.len() > self.sweep_at {
            let oldest = now.micros() - max_age_micros;
            self.stamped.retain(|_, stamp| stamp.at_micros >= oldest);
            self.sweep_at = (self.stamped.len() * 2).max(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_and_client_ids_cannot_pose_as_others() {
        for key in [
            Key::Record("r-1"),
            Key::Counter { session: "10.0.0.1/s:1", total: 5, stop: false },
            Key::Counter { session: "10.0.0.1/s", total: 0, stop: true },
            Key::Session { session: "gw;1;2#7", number: 3 },
        ] {
            assert_eq!(Key::decode(&key.encode()), key);
        }
        // A client may name a record "session:g1:1"; it stays a record.
        assert_eq!(Key::decode("session:g1:1"), Key::Record("session:g1:1"));
        assert_ne!(Key::Record("session:1:g1").encode(), Key::Session { session: "g1", number: 1 }.encode());
        // Keys stored before the prefix still read as counters.
        assert_eq!(Key::decode("acct-stop:0:s"), Key::Counter { session: "s", total: 0, stop: true });
    }
}
