//! Enforcement over RADIUS dynamic authorization (RFC 5176): when a
//! subscription's status changes, tell the NAS that holds its sessions.
//!
//! - to `throttled`: a CoA-Request with the NAS's throttle attributes (the
//!   rate from the plan fills `{kbps}`);
//! - to `depleted`, `expired`, `cancelled`, `suspended` or `lapsed`: a
//!   Disconnect-Request;
//! - from `throttled` or `depleted` back to `active` (data was added, or a
//!   daily cap reset): a CoA-Request with the NAS's restore attributes, for
//!   sessions the NAS still holds.
//!
//! Each request names the session by Acct-Session-Id (with User-Name,
//! Calling-Station-Id and Framed-IP-Address when known), is retried with a
//! timeout, and its outcome (ACK, NAK with Error-Cause, or no answer) is
//! written to the subscription's ledger as a network note.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use rollover_core::Status;
use rollover_net::radius::{self as wire, Packet};
use rollover_service::{Service, StatusChange};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Counters;
use crate::radius::{NasSession, Sessions};

/// One attribute of a template: a standard attribute, or a vendor one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeTemplate {
    /// Vendor-Id for a Vendor-Specific attribute; none for a standard one.
    pub vendor: Option<u32>,
    pub attribute: u8,
    /// Text sent as the value; `{kbps}` becomes the throttle rate in kbit/s.
    pub value: String,
}

/// A NAS that accepts dynamic authorization.
#[derive(Debug, Clone)]
pub struct Nas {
    /// The NAS as accounting names it (NAS-IP-Address or source address).
    pub address: IpAddr,
    /// Where to send CoA and Disconnect requests (port 3799 by default).
    pub coa: SocketAddr,
    pub secret: Vec<u8>,
    pub throttle: Vec<AttributeTemplate>,
    pub restore: Vec<AttributeTemplate>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nas: Vec<Nas>,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// Sends of one request before giving up.
    pub attempts: u32,
}

/// Vendor presets for the throttle and restore attributes.
pub fn vendor_preset(vendor: &str) -> Option<(Vec<AttributeTemplate>, Vec<AttributeTemplate>)> {
    let template = |vendor, attribute, value: &str| AttributeTemplate { vendor, attribute, value: value.to_string() };
    match vendor {
        // Mikrotik-Rate-Limit (vendor 14988, attribute 8): "rx/tx".
        "mikrotik" => Some((vec![template(Some(14988), 8, "{kbps}k/{kbps}k")], vec![template(Some(14988), 8, "0/0")])),
        // Filter-Id naming a policy the NAS already has.
        "filter-id" => Some((vec![template(None, wire::FILTER_ID, "rollover-throttle-{kbps}k")], vec![template(None, wire::FILTER_ID, "rollover-full-speed")])),
        // Cisco-AVPair (vendor 9, attribute 1) with a policy per rate.
        "cisco" => Some((
            vec![template(Some(9), 1, "subscriber:sub-qos-policy-out=rollover-throttle-{kbps}k")],
            vec![template(Some(9), 1, "subscriber:sub-qos-policy-out=rollover-full-speed")],
        )),
        _ => None,
    }
}

crate::metrics::outcomes! {
    /// What the listener counts, by outcome.
    pub enum RequestOutcome {
        CoaSent = "coa_sent",
        CoaAck = "coa_ack",
        CoaNak = "coa_nak",
        DisconnectSent = "disconnect_sent",
        DisconnectAck = "disconnect_ack",
        DisconnectNak = "disconnect_nak",
        NoAnswer = "no_answer",
        NoNasConfigured = "no_nas_configured",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Throttle(Option<u32>),
    Restore,
    Disconnect,
}

fn action_for(change: &StatusChange) -> Option<Action> {
    match change.to {
        Status::Throttled => Some(Action::Throttle(change.throttle_kbps)),
        Status::Depleted | Status::Expired | Status::Cancelled | Status::Suspended | Status::Lapsed => Some(Action::Disconnect),
        Status::Active if matches!(change.from, Status::Throttled | Status::Depleted) => Some(Action::Restore),
        _ => None,
    }
}

/// Runs until the service stops sending status changes.
pub async fn run(config: Config, service: Service, sessions: Arc<Sessions>, mut changes: UnboundedReceiver<StatusChange>) {
    let config = Arc::new(config);
    let counters = Arc::new(Counters::new("rollover_radius_dynamic_authorization_total", "CoA and Disconnect requests sent to NASes, and their answers.", "outcome"));
    let source = counters.clone();
    service.add_metrics(Box::new(move |out| source.render(out)));
    let identifier = Arc::new(AtomicU8::new(0));
    while let Some(change) = changes.recv().await {
        let Some(action) = action_for(&change) else { continue };
        for session in sessions.of(&change.subscription) {
            let Some(nas) = config.nas.iter().find(|n| n.address == session.nas).cloned() else {
                counters.bump(RequestOutcome::NoNasConfigured);
                tracing::warn!(subscription = %change.subscription, nas = %session.nas, "coa: the NAS holding the session has no dynamic authorization configured");
                continue;
            };
            let (service, config, counters, identifier, subscription) = (service.clone(), config.clone(), counters.clone(), identifier.clone(), change.subscription.clone());
            tokio::spawn(async move {
                let note = send(&config, &nas, &session, action, &counters, &identifier).await;
                tracing::info!(%subscription, note = %note, "coa: done");
                if let Err(error) = service.note(&subscription, note).await {
                    tracing::warn!(%subscription, %error, "coa: cannot write the outcome to the ledger");
                }
            });
        }
    }
}

/// Builds, sends and retries one request; returns the ledger note.
async fn send(config: &Config, nas: &Nas, session: &NasSession, action: Action, counters: &Counters<RequestOutcome>, identifier: &AtomicU8) -> String {
    let (code, name, what) = match action {
        Action::Throttle(kbps) => (wire::COA_REQUEST, "CoA-Request", match kbps {
            Some(kbps) => format!("throttle to {kbps} kbit/s"),
            None => "throttle".to_string(),
        }),
        Action::Restore => (wire::COA_REQUEST, "CoA-Request", "restore full speed".to_string()),
        Action::Disconnect => (wire::DISCONNECT_REQUEST, "Disconnect-Request", "disconnect".to_string()),
    };
    let mut attributes = attributes_of(nas, session, action);
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    attributes.push((wire::EVENT_TIMESTAMP, seconds.to_be_bytes().to_vec()));
    let id = identifier.fetch_add(1, Ordering::Relaxed);
    let request = Packet { code, identifier: id, authenticator: [0; 16], attributes };
    let bytes = wire::sign_request(request, &nas.secret);
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&bytes[4..20]);
    let sent_counter = if code == wire::COA_REQUEST { RequestOutcome::CoaSent } else { RequestOutcome::DisconnectSent };
    counters.bump(sent_counter);
    let head = format!("{name} ({what}) for session {} to NAS {}", session.session_id, nas.coa);
    let socket = match UdpSocket::bind(if nas.coa.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await {
        Ok(socket) => socket,
        Err(error) => return format!("{head}: not sent ({error})"),
    };
    let mut buffer = vec![0u8; wire::MAX_PACKET];
    for _ in 0..config.attempts.max(1) {
        if let Err(error) = socket.send_to(&bytes, nas.coa).await {
            tracing::warn!(%error, nas = %nas.coa, "coa: send failed");
        }
        let deadline = tokio::time::Instant::now() + config.timeout;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await;
            let Ok(Ok((length, from))) = received else { break };
            let answer = &buffer[..length];
            if from != nas.coa || !wire::response_authentic(answer, &authenticator, &nas.secret) {
                continue;
            }
            let Ok(packet) = Packet::decode(answer) else { continue };
            if packet.identifier != id {
                continue;
            }
            return answered(&packet, &head, counters);
        }
    }
    counters.bump(RequestOutcome::NoAnswer);
    format!("{head}: no answer after {} attempts", config.attempts.max(1))
}

/// The attributes that name the session to the NAS, then the action's own
/// (the NAS's templates, with `{kbps}` filled in).
fn attributes_of(nas: &Nas, session: &NasSession, action: Action) -> Vec<(u8, Vec<u8>)> {
    let mut attributes = vec![(wire::ACCT_SESSION_ID, session.session_id.as_bytes().to_vec())];
    if let Some(user) = &session.user_name {
        attributes.push((wire::USER_NAME, user.as_bytes().to_vec()));
    }
    if let Some(msisdn) = &session.calling_station_id {
        attributes.push((wire::CALLING_STATION_ID, msisdn.as_bytes().to_vec()));
    }
    if let Some(ip) = session.framed_ip {
        attributes.push((wire::FRAMED_IP_ADDRESS, ip.octets().to_vec()));
    }
    if let IpAddr::V4(nas_ip) = session.nas {
        attributes.push((wire::NAS_IP_ADDRESS, nas_ip.octets().to_vec()));
    }
    let templates = match action {
        Action::Throttle(_) => &nas.throttle,
        Action::Restore => &nas.restore,
        Action::Disconnect => &Vec::new(),
    };
    let kbps = match action {
        Action::Throttle(Some(kbps)) => kbps.to_string(),
        _ => "0".to_string(),
    };
    for template in templates {
        let value = template.value.replace("{kbps}", &kbps);
        attributes.push(match template.vendor {
            Some(vendor) => Packet::vendor_attribute(vendor, template.attribute, value.as_bytes()),
            None => (template.attribute, value.into_bytes()),
        });
    }
    attributes
}

/// The ledger note for the NAS's answer, counted by its code.
fn answered(packet: &Packet, head: &str, counters: &Counters<RequestOutcome>) -> String {
    let cause = packet.integer(wire::ERROR_CAUSE).map(|c| format!(", Error-Cause {c}")).unwrap_or_default();
    let (outcome, note) = match packet.code {
        wire::COA_ACK => (RequestOutcome::CoaAck, format!("{head}: ACK")),
        wire::DISCONNECT_ACK => (RequestOutcome::DisconnectAck, format!("{head}: ACK")),
        wire::COA_NAK => (RequestOutcome::CoaNak, format!("{head}: NAK{cause}")),
        wire::DISCONNECT_NAK => (RequestOutcome::DisconnectNak, format!("{head}: NAK{cause}")),
        other => return format!("{head}: unexpected answer code {other}"),
    };
    counters.bump(outcome);
    note
}
