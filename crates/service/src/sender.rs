//! Webhook delivery from the outbox: one thread per endpoint, each with its
//! own store connection, so a receiver that hangs delays only its own
//! deliveries (each attempt waits at most 10 s).
//! Each due delivery is POSTed with `Rollover-Timestamp`,
//! `Rollover-Signature: v1=HEX(HMAC-SHA256(secret, "{timestamp}.{body}"))`
//! and `Rollover-Delivery` (the notification's key, for the receiver to
//! drop repeats). A 2xx marks it delivered; anything else is retried with
//! exponential backoff until `max_attempts`.

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

pub(crate) fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Delivers what is due for the endpoint numbered `endpoint` in `config`.
pub(crate) fn run(mut store: Box<dyn Store>, config: Arc<NotifyConfig>, endpoint: usize, metrics: Arc<Metrics>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).http_status_as_error(false).build().into();
    let endpoint = &config.endpoints[endpoint];
    loop {
        let now = wall_micros();
        let due = match store.due_deliveries(&endpoint.id, now, 100) {
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
