//! The ES2+ callback listener: the SM-DP+ tells rollover, over HTTPS with a
//! client certificate from the configured CA, what became of a profile
//! (`handleDownloadProgressInfo`).
//!
//! Notification point 3 (download) marks the profile `downloaded`; 4
//! (installation) with `Executed-Success` marks it `installed` and gives the
//! subscription holding the ICCID its `install` event at the notification's
//! `timestamp` (which starts a plan with `starts = "install"`), and a
//! failed installation puts it back to `released`; 5 marks it `deleted`.
//! Point 2, and any `Failed` status, are recorded with their codes. Each
//! is written into the subscription's ledger as a note, and a download,
//! installation or deletion is also a webhook (`esim_downloaded`,
//! `esim_installed`, `esim_deleted`) committed with that note. A repeat changes
//! nothing, and so does a late report that would move a profile back (an
//! installation reported before its download arrives): it is noted. The
//! SM-DP+ is the authority on what the phone did: a report that skips
//! states rollover did not see (an order placed elsewhere) is taken, and
//! logged. At most `MAX_CONNECTIONS` callers at once, each with 10 s for
//! its handshake and then for each request's head.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rollover_core::Instant;
use rollover_esim::state::{self, EsError};
use rollover_esim::{Iccid, ProfileState};
use rollover_service::{LifecycleEvent, Service};
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Counters, GatewayError};

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Our certificate, and the CA the SM-DP+'s client certificates must
    /// chain to (`rollover_es2::tls::server_config`).
    pub tls: Arc<ServerConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("listen", &self.listen).finish_non_exhaustive()
    }
}

crate::metrics::outcomes! {
    /// What the listener counts, by outcome.
    pub enum NotificationOutcome {
        Connections = "connections",
        TlsRefused = "tls_refused",
        Applied = "applied",
        Repeated = "repeated",
        Recorded = "recorded",
        UnknownIccid = "unknown_iccid",
        Malformed = "malformed",
    }
}

/// Callback connections open at once; one more waits at accept.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a TLS handshake, and then a request's head, may take.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Server {
    listener: TcpListener,
    slots: Arc<tokio::sync::Semaphore>,
    acceptor: TlsAcceptor,
    service: Service,
    pub counters: Arc<Counters<NotificationOutcome>>,
}

impl Server {
    pub async fn bind(config: Config, service: Service) -> Result<Arc<Server>, GatewayError> {
        let listener = TcpListener::bind(config.listen).await.map_err(|error| GatewayError::Bind { listener: "esim callbacks", address: config.listen, error })?;
        let counters = Arc::new(Counters::new("rollover_esim_notifications_total", "ES2+ download progress notifications by outcome.", "outcome"));
        let source = counters.clone();
        service.add_metrics(Box::new(move |out| source.render(out)));
        Ok(Arc::new(Server { listener, slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)), acceptor: TlsAcceptor::from(config.tls), service, counters }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self: Arc<Server>) {
        let app = Router::new().route("/gsma/rsp2/es2plus/handleDownloadProgressInfo", post(notification)).with_state(self.clone());
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "esim: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.counters.bump(NotificationOutcome::Connections);
            let (server, app) = (self.clone(), app.clone());
            tokio::spawn(async move {
                let _slot = slot;
                // A client without a certificate from the CA stops here.
                let handshake = tokio::time::timeout(HANDSHAKE, server.acceptor.accept(stream)).await;
                let Ok(Ok(tls)) = handshake else {
                    server.counters.bump(NotificationOutcome::TlsRefused);
                    tracing::info!(%peer, "esim: a callback connection failed its TLS handshake");
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE)
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    }
}

fn es2_error(error: EsError) -> Response {
    let header = json!({"functionExecutionStatus": {"status": "Failed", "statusCodeData": {"subjectCode": error.subject_code, "reasonCode": error.reason_code, "message": error.message}}});
    (StatusCode::OK, axum::Json(json!({ "header": header }))).into_response()
}

/// One notification, read and checked.
struct Notification {
    iccid: Iccid,
    eid: Option<String>,
    at: Instant,
    point: u64,
    status: String,
    codes: Option<(String, String, String)>,
}

fn read(body: &Value) -> Result<Notification, String> {
    let text = |name: &str| body[name].as_str().map(str::to_string).ok_or_else(|| format!("{name} is missing"));
    let iccid = text("iccid")?;
    let iccid = Iccid::parse(&iccid).map_err(|e| format!("iccid {iccid:?} {e}"))?;
    text("profileType")?;
    let timestamp = text("timestamp")?;
    let at = Instant::parse_rfc3339(&timestamp).map_err(|e| format!("timestamp: {e}"))?;
    let point = body["notificationPointId"].as_u64().ok_or("notificationPointId is missing")?;
    let status = body["notificationPointStatus"]["status"].as_str().ok_or("notificationPointStatus.status is missing")?.to_string();
    let data = &body["notificationPointStatus"]["statusCodeData"];
    let codes = data.is_object().then(|| {
        let code = |name: &str| data[name].as_str().unwrap_or("").to_string();
        (code("subjectCode"), code("reasonCode"), code("message"))
    });
    let eid = body["eid"].as_str().filter(|e| rollover_esim::Eid::parse(e).is_ok()).map(str::to_string);
    Ok(Notification { iccid, eid, at, point, status, codes })
}

async fn notification(State(server): State<Arc<Server>>, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        server.counters.bump(NotificationOutcome::Malformed);
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    let notification = match read(&body) {
        Ok(notification) => notification,
        Err(why) => {
            server.counters.bump(NotificationOutcome::Malformed);
            tracing::warn!(why = %why.escape_debug(), "esim: unreadable download progress notification");
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    match apply(&server, &notification).await {
        Ok(outcome) => {
            server.counters.bump(outcome);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            server.counters.bump(NotificationOutcome::UnknownIccid);
            tracing::warn!(iccid = %notification.iccid, "esim: a notification for an ICCID not in the inventory");
            es2_error(error)
        }
    }
}

async fn apply(server: &Server, n: &Notification) -> Result<NotificationOutcome, EsError> {
    let service = &server.service;
    let profile = service.profile(&n.iccid).await.map_err(|_| state::ICCID_UNKNOWN)?.ok_or(state::ICCID_UNKNOWN)?;
    let current = ProfileState::parse(&profile.state).unwrap_or(ProfileState::Error);
    let success = n.status.starts_with("Executed-");
    let target = match (n.point, success) {
        (3, true) => Some(ProfileState::Downloaded),
        (4, true) => Some(ProfileState::Installed),
        (4, false) => Some(ProfileState::Released),
        (5, true) => Some(ProfileState::Deleted),
        _ => None,
    };
    let subscription = service.subscription_by("iccid", n.iccid.as_str());
    let codes = n.codes.as_ref().map_or(String::new(), |(subject, reason, message)| format!(" ({subject} / {reason}: {message})"));
    let at = n.at.to_rfc3339(&rollover_core::Zone::utc());
    let Some(target) = target else {
        // Eligibility checks, failures: recorded, nothing moves.
        if let Some(id) = &subscription {
            let _ = service.note(id, format!("esim: the SM-DP+ reported notification point {} {}{codes} at {at}", n.point, n.status)).await;
        }
        return Ok(NotificationOutcome::Recorded);
    };
    if current == target {
        return Ok(NotificationOutcome::Repeated);
    }
    // Reports can arrive out of order (retries): a profile only moves on,
    // or back to released when an installation failed after its download.
    let forward = progress(target) > progress(current) || (target == ProfileState::Released && current == ProfileState::Downloaded);
    if !forward {
        if let Some(id) = &subscription {
            let _ = service.note(id, format!("esim: a late report (notification point {}) that the profile is {}, while it is {}; not taken", n.point, target.name(), current.name())).await;
        }
        return Ok(NotificationOutcome::Recorded);
    }
    if state::after(current, step_to(target)).is_err() {
        tracing::info!(iccid = %n.iccid, from = current.name(), to = target.name(), "esim: the SM-DP+ reports a state rollover did not see coming; taken as reported");
    }
    service.set_profile_state(&n.iccid, target, n.eid.as_deref()).await.map_err(|_| state::ICCID_UNKNOWN)?;
    if let Some(id) = &subscription {
        let note = format!("esim: {} (SM-DP+ notification point {}) at {at}{codes}", target.name(), n.point);
        let kind = match target {
            ProfileState::Downloaded => Some("esim_downloaded"),
            ProfileState::Installed => Some("esim_installed"),
            ProfileState::Deleted => Some("esim_deleted"),
            _ => None,
        };
        let _ = match kind {
            Some(kind) => {
                let data = json!({"iccid": n.iccid.as_str(), "eid": n.eid, "state": target.name(), "reported_at": at});
                service.note_and_tell(id, note, kind, format!("{}-{}", n.iccid, n.at.micros()), data).await
            }
            None => service.note(id, note).await,
        };
        if target == ProfileState::Installed
            && let Err(error) = service.apply_event(id, LifecycleEvent::Install, Some(n.at)).await
        {
            tracing::warn!(subscription = %id, %error, "esim: the install event was not applied");
            let _ = service.note(id, format!("esim: installed, but the install event was refused: {error}")).await;
        }
    }
    Ok(NotificationOutcome::Applied)
}

/// How far along a profile is: ordered and released, downloaded, installed,
/// deleted.
fn progress(state: ProfileState) -> u8 {
    match state {
        ProfileState::Downloaded => 2,
        ProfileState::Installed => 3,
        ProfileState::Deleted => 4,
        _ => 1,
    }
}

/// The step that leads to `target`, to check it against the rules.
fn step_to(target: ProfileState) -> rollover_esim::Step {
    use rollover_esim::Step;
    match target {
        ProfileState::Downloaded => Step::Downloaded,
        ProfileState::Installed => Step::Installed,
        ProfileState::Deleted => Step::Deleted,
        _ => Step::InstallFailed,
    }
}
