//! Webhook delivery from the outbox: one thread per endpoint, each with its
//! own store connection, so a receiver that hangs delays only its own
//! deliveries (each attempt waits at most 10 s).
//! Each due delivery is POSTed with `Rollover-Timestamp`,
//! `Rollover-Signature: v1=HEX(HMAC-SHA256(secret, "{timestamp}.{body}"))`
//! and `Rollover-Delivery` (the notification's key, for the receiver to
//! drop repeats). A 2xx marks it delivered; anything else is retried with
//! exponential backoff until `max_attempts`.
//!
//! Senders on one store (the nodes of a cluster) never post one delivery at
//! once: each claims `CLAIM` deliveries at a time, for long enough to try
//! them all, and the claim ends with the attempt. A sender that stopped
//! mid-claim leaves its deliveries to the others when the claim runs out,
//! or to itself at once when it starts again (it gives up its old claims
//! first). A delivery can thus be posted twice only when a sender stopped
//! between the receiver's answer and the record of it; the receiver drops
//! the repeat by `Rollover-Delivery`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rollover_store::Store;
use sha2::Sha256;

use crate::clock::wall_micros;
use crate::metrics::Metrics;
use crate::notify::NotifyConfig;

const POLL: Duration = Duration::from_millis(100);
/// How many deliveries a sender claims at once.
const CLAIM: usize = 10;
/// Each attempt waits at most this long for the receiver.
const ATTEMPT: Duration = Duration::from_secs(10);

pub(crate) fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Delivers what is due for the endpoint numbered `endpoint` in `config`,
/// claiming deliveries as `claimer` (the node).
pub(crate) fn run(mut store: Box<dyn Store>, config: Arc<NotifyConfig>, endpoint: usize, claimer: String, metrics: Arc<Metrics>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(ATTEMPT)).http_status_as_error(false).build().into();
    let endpoint = &config.endpoints[endpoint];
    // The claims of this node's previous run were abandoned with it.
    loop {
        match store.release_claims(&claimer) {
            Ok(0) => break,
            Ok(released) => {
                tracing::info!(released, endpoint = %endpoint.id, "webhook deliveries claimed before a restart are due again");
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot release the webhook outbox's old claims");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    // Long enough for every claimed attempt to run to its timeout.
    let claim_micros = (ATTEMPT.as_micros() as i64) * (CLAIM as i64 + 3);
    loop {
        let now = wall_micros();
        let due = match store.claim_deliveries(&endpoint.id, &claimer, now, CLAIM, now + claim_micros) {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the webhook outbox");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for delivery in &due {
            let timestamp = wall_micros() / 1_000_000;
            let result = agent
                .post(&endpoint.url)
                .header("content-type", "application/json")
                .header("rollover-timestamp", timestamp.to_string())
                .header("rollover-signature", format!("v1={}", signature(&endpoint.secret, timestamp, &delivery.payload)))
                .header("rollover-delivery", &delivery.key)
                .send(delivery.payload.as_str());
            let (delivered, outcome) = match result {
                Ok(response) if response.status().is_success() => (true, response.status().as_u16().to_string()),
                Ok(response) => (false, format!("HTTP {}", response.status().as_u16())),
                Err(error) => (false, error.to_string()),
            };
            let next = if delivered || delivery.attempts + 1 >= config.max_attempts {
                None
            } else {
                let backoff = config.retry_base_micros.saturating_mul(1 << delivery.attempts.min(30)).min(config.max_backoff_micros);
                Some(wall_micros() + backoff)
            };
            if delivered {
                metrics.webhook_delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                metrics.webhook_failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %delivery.key, %outcome, attempt = delivery.attempts + 1, "webhook not delivered");
            }
            if let Err(error) = store.record_attempt(delivery.id, delivered, next, &outcome) {
                tracing::warn!(%error, "cannot record a webhook attempt");
            }
        }
        if let Ok(backlog) = store.backlog() {
            metrics.webhook_backlog.store(backlog, Ordering::Relaxed);
        }
        if due.is_empty() {
            std::thread::sleep(POLL);
        }
    }
}
