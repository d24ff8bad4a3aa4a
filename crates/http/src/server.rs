//! Serving connections: a cap on how many are open at once and a timeout on
//! every wait a client controls, so that idle or half-sent connections cannot
//! use up the process's file descriptors or memory.
//!
//! - At most `max_connections` connections are open; one more is closed as
//!   soon as it is accepted (and counted), and the ones already open go on.
//! - A request's head (request line and headers) must arrive within
//!   `header_timeout`. The same timer runs while a kept-alive connection
//!   waits for its next request, so an idle connection is closed after it.
//! - A whole request, body included, must be answered within
//!   `request_timeout` (see [`crate::guard`]), or it gets 408.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// How long open connections get to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits { max_connections: 1024, header_timeout: Duration::from_secs(10), drain_timeout: Duration::from_secs(10) }
    }
}

/// Counts of the listener, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Closed at accept because `max_connections` were open.
    pub refused: AtomicU64,
}

impl ServerMetrics {
    /// Appends the Prometheus exposition of these counts.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP rollover_http_connections_open HTTP connections open now.\n# TYPE rollover_http_connections_open gauge");
        let _ = writeln!(out, "rollover_http_connections_open {}", self.open.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP rollover_http_connections_total HTTP connections by outcome at accept.\n# TYPE rollover_http_connections_total counter");
        let _ = writeln!(out, "rollover_http_connections_total{{outcome=\"accepted\"}} {}", self.accepted.load(Ordering::Relaxed));
        let _ = writeln!(out, "rollover_http_connections_total{{outcome=\"refused\"}} {}", self.refused.load(Ordering::Relaxed));
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish their requests for up to `drain_timeout`.
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, metrics: Arc<ServerMetrics>, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors or a connection reset before accept:
                // wait a moment rather than spin.
                tracing::warn!(%error, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (builder, app, metrics, mut stop) = (builder.clone(), app.clone(), metrics.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            metrics.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back means every connection has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all)).await;
}
