//! What the service is started with.

use crate::{StatusChange, notify};

#[derive(Debug, Clone)]
pub struct Config {
    pub workers: usize,
    /// Usage records stamped further back than this are rejected.
    pub max_age_micros: i64,
    /// Usage records stamped further ahead than this are rejected.
    pub future_skew_micros: i64,
    /// Purchases and lifecycle events stamped further back than this are
    /// refused: it bounds the periods one request can make a worker run.
    pub max_backdate_micros: i64,
    /// Bound of each worker's command queue; a full queue answers "busy".
    pub queue_bound: usize,
    /// Most bytes one session reservation grants at a time.
    pub session_max_grant_bytes: u64,
    /// How long a reservation holds before the gateway must report again.
    pub session_validity_seconds: u64,
    /// Webhook endpoints and notice times; no endpoints, no notifications.
    pub notify: notify::NotifyConfig,
    /// A checkpoint is written once this many events came after the last
    /// one (0: never; start-up then replays the whole log).
    pub checkpoint_every_events: i64,
    /// Raw events dropped after a time, exported first; `None` keeps all.
    pub retention: Option<crate::Retention>,
    /// Where to send status changes, when something enforces them.
    pub status_changes: Option<tokio::sync::mpsc::UnboundedSender<StatusChange>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: 2,
            max_age_micros: 7 * 86_400 * 1_000_000,
            future_skew_micros: 5 * 60 * 1_000_000,
            max_backdate_micros: 400 * 86_400 * 1_000_000,
            queue_bound: 4096,
            session_max_grant_bytes: 100 << 20,
            session_validity_seconds: 900,
            notify: notify::NotifyConfig::default(),
            checkpoint_every_events: 1_000_000,
            retention: None,
            status_changes: None,
        }
    }
}
