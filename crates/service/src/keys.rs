//! Idempotency keys: what makes a retried record the same record. A key is
//! typed while the service works with it ([`Key`]) and a string in the store.
//! Keys the service makes itself start with `#`, which no client id may, so a
//! client's record id can never be mistaken for a RADIUS counter report or a
//! session's report.

use std::collections::HashMap;

use rollover_core::Instant;
use rollover_store::{EventBody, EventRow};

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

/// A key's 64-bit hash, as memory and checkpoints hold it: FNV-1a over its
/// bytes, then a final mix (the splitmix64 finalizer) so that keys that
/// differ in their last bytes spread over all 64 bits. Fixed for good:
/// checkpoints store it. Two keys may share a hash; a hit is only ever a
/// reason to look in the store (see `Worker::confirm`), never an answer.
pub(crate) fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The idempotency keys of one subscription's accepted records, by hash,
/// each with the record's own instant and a fingerprint of what it said: 24
/// bytes a key (and the table's slack), whatever the key's length. A key is
/// kept while a retry of its record could still be accepted: a record
/// stamped further back than the maximum age is rejected as too old anyway,
/// so its key can go, and memory stays bounded by the records of the last
/// `max_age`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Hashed with foldhash, seeded per process: the keys are hashes
    /// already, but of ids a client chose.
    stamped: HashMap<u64, Stamp, foldhash::fast::RandomState>,
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

/// A stored row's stamp, as its record's was.
pub(crate) fn stamp_of(row: &EventRow) -> Stamp {
    let fingerprint = match &row.body {
        EventBody::Usage { bytes, country } => fingerprint(*bytes, country.as_deref()),
        _ => 0,
    };
    Stamp { at_micros: row.at_micros, fingerprint }
}

impl Keys {
    pub(crate) fn get(&self, hash: u64) -> Option<Stamp> {
        self.stamped.get(&hash).copied()
    }

    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.stamped.contains_key(&hash)
    }

    pub(crate) fn len(&self) -> usize {
        self.stamped.len()
    }

    /// Bytes the table holds (its capacity, not only what is in use).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.stamped.capacity() * (std::mem::size_of::<(u64, Stamp)>() + 1)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, Stamp)> + '_ {
        self.stamped.iter().map(|(h, s)| (*h, *s))
    }

    /// Keeps `hash`. When another key already holds it (the store tells the
    /// two apart), the hash keeps the later of the two stamps: a sweep must
    /// not drop it while the newer record's retries can still arrive. (When
    /// the store cannot be asked, a retry of the older record then meets the
    /// newer stamp and is refused as a conflict: refused, never rated twice.)
    pub(crate) fn insert(&mut self, hash: u64, stamp: Stamp, now: Instant, max_age_micros: i64) {
        self.stamped
            .entry(hash)
            .and_modify(|held| {
                if stamp.at_micros > held.at_micros {
                    *held = stamp;
                }
            })
            .or_insert(stamp);
        if self.stamped.len() > self.sweep_at {
            let oldest = now.micros() - max_age_micros;
            self.stamped.retain(|_, stamp| stamp.at_micros >= oldest);
            self.sweep_at = (self.stamped.len() * 2).max(64);
        }
    }

    /// Puts back a key a checkpoint held.
    pub(crate) fn restore(&mut self, hash: u64, stamp: Stamp) {
        self.stamped.insert(hash, stamp);
        self.sweep_at = (self.stamped.len() * 2).max(64);
    }

    /// Remembers a stored row's key, as when it was applied.
    pub(crate) fn replay(&mut self, row: &EventRow, max_age_micros: i64) {
        if let Some(key) = &row.key {
            self.insert(key_hash(key), stamp_of(row), Instant::from_micros(row.applied_at_micros), max_age_micros);
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

    #[test]
    fn a_shared_hash_is_kept_while_the_later_record_can_be_retried() {
        let day = 86_400_000_000;
        let mut keys = Keys::default();
        let (older, newer) = (Stamp { at_micros: 0, fingerprint: 1 }, Stamp { at_micros: 2 * day, fingerprint: 2 });
        // Two keys with one hash: the first stamped at day 0, the second
        // (told apart by the store and accepted) at day 2.
        keys.insert(7, older, Instant::from_micros(0), day);
        keys.insert(7, newer, Instant::from_micros(2 * day), day);
        assert_eq!(keys.get(7), Some(newer));
        // A record that came late keeps the later stamp in place.
        keys.insert(7, older, Instant::from_micros(2 * day), day);
        assert_eq!(keys.get(7), Some(newer));
        // Sweeps at day 2.5 drop what the first record alone would have
        // kept no longer, but not the hash the second one still needs.
        for other in 100..300 {
            keys.insert(other, older, Instant::from_micros(2 * day + day / 2), day);
        }
        assert_eq!(keys.get(7), Some(newer), "the hash outlives the first record's stamp");
        assert!(keys.len() < 200, "the sweep ran and dropped the expired keys: {}", keys.len());
    }

    #[test]
    fn key_hashes_are_fixed_and_spread() {
        // Checkpoints hold these: a change here misreads every one written.
        // Worked out apart (FNV-1a 64, then the splitmix64 finalizer).
        assert_eq!(key_hash(""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(key_hash("r1"), 0x15d7_ff2b_7619_7532);
        let hashes: std::collections::HashSet<u64> = (0..100_000).map(|n| key_hash(&format!("r{n}"))).collect();
        assert_eq!(hashes.len(), 100_000, "no two of these share a hash");
        let high: std::collections::HashSet<u64> = (0..4096).map(|n| key_hash(&format!("#acct:{n}:s")) >> 52).collect();
        assert!(high.len() > 2500, "even the top bits spread: {}", high.len());
    }
}
