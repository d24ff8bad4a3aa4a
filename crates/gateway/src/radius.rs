//! The RADIUS accounting server (RFC 2865, 2866, 2869) on UDP.
//!
//! A packet goes through these steps, and each refusal is counted in
//! `rollover_radius_packets_total`:
//! 1. the source address must belong to a configured client (else
//!    `unknown_client`), the packet must decode (`malformed`) and be an
//!    Accounting-Request (`unsupported_code`) whose Request Authenticator
//!    matches the client's secret (`bad_authenticator`); such packets are
//!    dropped without an answer;
//! 2. a retransmission (same client, Identifier and authenticator) is
//!    answered again from the answers already sent, or dropped while the
//!    first copy is still being committed;
//! 3. Start, Interim-Update and Stop carry cumulative counters: each becomes
//!    a counter report (`{NAS}/{Acct-Session-Id}`, total octets with
//!    gigawords) that the service rates by its growth, so nothing is rated
//!    twice and a lost Interim costs nothing. Accounting-On and -Off close
//!    every open session of that NAS;
//! 4. the Accounting-Response goes out only after the usage is committed.
//!
//! Packets read together (up to 256 waiting on the socket) are rated in one
//! call, so they share one group commit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

use rollover_core::{Country, Instant};
use rollover_net::radius::{self as wire, AcctStatus, Accounting, Packet};
use rollover_service::{Counter, Service, ServiceError, UsageRecord, UsageResult};
use tokio::net::UdpSocket;

use crate::{Cidr, Counters, GatewayError};

/// One NAS (or network of them) allowed to send accounting, with its secret.
#[derive(Debug, Clone)]
pub struct Client {
    pub network: Cidr,
    pub secret: Vec<u8>,
}

/// Which attribute names the subscription, tried in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identify {
    /// 3GPP-IMSI (vendor 10415, attribute 1), matched to `identifiers.imsi`.
    Imsi,
    /// Calling-Station-Id: the MSISDN, matched to `identifiers.msisdn`
    /// with or without a leading `+`.
    CallingStationId,
    /// User-Name, matched to `identifiers.imsi`, then `msisdn`, then
    /// `external_id`.
    UserName,
}

impl Identify {
    pub fn parse(text: &str) -> Result<Identify, GatewayError> {
        match text {
            "3gpp-imsi" | "imsi" => Ok(Identify::Imsi),
            "calling-station-id" | "msisdn" => Ok(Identify::CallingStationId),
            "user-name" => Ok(Identify::UserName),
            other => Err(GatewayError::UnknownIdentify(other.to_string())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub clients: Vec<Client>,
    pub identify: Vec<Identify>,
}

/// An accounting session the server has heard of and not seen stop: where
/// to send a CoA or Disconnect for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NasSession {
    /// NAS-IP-Address, or the packet's source when absent.
    pub nas: IpAddr,
    pub session_id: String,
    pub user_name: Option<String>,
    pub calling_station_id: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
    /// Octets reported so far.
    pub total: u64,
    /// When the last report of it arrived.
    pub seen: WallInstant,
}

/// How many stopped sessions are remembered.
const STOPPED_KEEP: usize = 65_536;

/// A session not heard of for this long is taken to be gone without a Stop.
const SESSION_SILENT: Duration = Duration::from_secs(24 * 3600);

/// Open sessions by subscription. Kept in memory: after a restart a session
/// is known again from its next Interim-Update.
/// A session by its NAS and Acct-Session-Id.
type SessionKey = (IpAddr, String);

/// Recently stopped sessions: a set, and its insertion order for eviction.
type Stopped = (HashSet<SessionKey>, VecDeque<SessionKey>);

#[derive(Default)]
pub struct Sessions {
    by_subscription: Mutex<HashMap<String, Vec<NasSession>>>,
    /// Sessions seen to stop lately: a late Interim must not open them again.
    stopped: Mutex<Stopped>,
    /// Sweep silent sessions when the table reaches this many subscriptions.
    sweep_at: std::sync::atomic::AtomicUsize,
}

impl Sessions {
    pub fn of(&self, subscription: &str) -> Vec<NasSession> {
        self.by_subscription.lock().expect("session table lock").get(subscription).cloned().unwrap_or_default()
    }

    fn update(&self, subscription: &str, session: NasSession) {
        if self.stopped.lock().expect("stopped sessions lock").0.contains(&(session.nas, session.session_id.clone())) {
            return;
        }
        let mut table = self.by_subscription.lock().expect("session table lock");
        if table.len() >= self.sweep_at.load(std::sync::atomic::Ordering::Relaxed) {
            table.retain(|_, list| {
                list.retain(|s| s.seen.elapsed() < SESSION_SILENT);
                !list.is_empty()
            });
            self.sweep_at.store((table.len() * 2).max(65_536), std::sync::atomic::Ordering::Relaxed);
        }
        let list = table.entry(subscription.to_string()).or_default();
        match list.iter_mut().find(|s| s.nas == session.nas && s.session_id == session.session_id) {
            Some(known) => {
                let total = known.total.max(session.total);
                *known = NasSession { total, ..session };
            }
            None => list.push(session),
        }
    }

    fn remove(&self, subscription: &str, nas: IpAddr, session_id: &str) {
        {
            let mut stopped = self.stopped.lock().expect("stopped sessions lock");
            if stopped.0.insert((nas, session_id.to_string())) {
                stopped.1.push_back((nas, session_id.to_string()));
                if stopped.1.len() > STOPPED_KEEP
                    && let Some(oldest) = stopped.1.pop_front()
                {
                    stopped.0.remove(&oldest);
                }
            }
        }
        let mut table = self.by_subscription.lock().expect("session table lock");
        if let Some(list) = table.get_mut(subscription) {
            list.retain(|s| !(s.nas == nas && s.session_id == session_id));
            if list.is_empty() {
                table.remove(subscription);
            }
        }
    }

    /// Takes every open session of one NAS: `(subscription, session)`.
    fn take_nas(&self, nas: IpAddr) -> Vec<(String, NasSession)> {
        let mut table = self.by_subscription.lock().expect("session table lock");
        let mut taken = Vec::new();
        table.retain(|subscription, list| {
            list.retain(|s| {
                if s.nas == nas {
                    taken.push((subscription.clone(), s.clone()));
                    false
                } else {
                    true
                }
            });
            !list.is_empty()
        });
        drop(table);
        for (subscription, session) in &taken {
            self.remove(subscription, session.nas, &session.session_id);
        }
        taken
    }
}

/// Bursts from many NASes arrive faster than one read loop drains them:
/// ask the kernel for a larger receive queue (it caps it at
/// net.core.rmem_max), so that a burst waits rather than being dropped.
fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket this process owns, with a c_int value
    // of the size given.
    let result = unsafe {
        libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "radius: cannot grow the receive buffer");
    }
}

/// What identifies one copy of a request: a retransmission repeats all three.
type RequestKey = (SocketAddr, u8, [u8; 16]);

/// Answers already sent, kept for a while to answer retransmissions.
struct Answered {
    answers: HashMap<RequestKey, Vec<u8>>,
    order: VecDeque<(WallInstant, RequestKey)>,
}

const ANSWER_KEEP: Duration = Duration::from_secs(60);
const ANSWER_KEEP_MAX: usize = 200_000;

impl Answered {
    fn insert(&mut self, key: RequestKey, answer: Vec<u8>) {
        let now = WallInstant::now();
        while let Some((at, old)) = self.order.front() {
            if now.duration_since(*at) < ANSWER_KEEP && self.order.len() < ANSWER_KEEP_MAX {
                break;
            }
            self.answers.remove(old);
            self.order.pop_front();
        }
        if self.answers.insert(key, answer).is_none() {
            self.order.push_back((now, key));
        }
    }
}

crate::metrics::outcomes! {
    /// What the listener counts, by outcome.
    pub enum PacketOutcome {
        Received = "received",
        Answered = "answered",
        RetransmissionAnswered = "retransmission_answered",
        RetransmissionInFlight = "retransmission_in_flight",
        UnknownClient = "unknown_client",
        Malformed = "malformed",
        UnsupportedCode = "unsupported_code",
        BadAuthenticator = "bad_authenticator",
        UnknownSubscriber = "unknown_subscriber",
        NotRated = "not_rated",
        Busy = "busy",
    }
}

pub struct Server {
    socket: Arc<UdpSocket>,
    service: Service,
    config: Config,
    pub sessions: Arc<Sessions>,
    pub counters: Arc<Counters<PacketOutcome>>,
    in_flight: Mutex<HashSet<RequestKey>>,
    answered: Mutex<Answered>,
}

/// One request being rated: whom to answer, and what it reported.
struct Pending {
    key: RequestKey,
    request: Packet,
    secret: Vec<u8>,
    records: Vec<UsageRecord>,
    /// The session the records report on, for logs.
    session: Option<String>,
}

impl Server {
    /// Binds the socket; [`Server::run`] then serves it.
    pub async fn bind(config: Config, service: Service) -> Result<Arc<Server>, GatewayError> {
        let socket = UdpSocket::bind(config.listen).await.map_err(|error| GatewayError::Bind { listener: "radius", address: config.listen, error })?;
        grow_receive_buffer(&socket);
        let counters = Arc::new(Counters::new("rollover_radius_packets_total", "RADIUS accounting packets by outcome.", "outcome"));
        let source = counters.clone();
        service.add_metrics(Box::new(move |out| source.render(out)));
        // Sessions open before a restart are known again from the log: by
        // NAS and Acct-Session-Id, without the names a report carries.
        let sessions = Arc::new(Sessions::default());
        let open = service.open_counters().await.map_err(GatewayError::Service)?;
        for counter in open {
            let Some((nas, session_id)) = counter.session.split_once('/') else { continue };
            let Ok(nas) = nas.parse::<IpAddr>() else { continue };
            let session = NasSession {
                nas,
                session_id: session_id.to_string(),
                user_name: None,
                calling_station_id: None,
                framed_ip: None,
                total: counter.total,
                seen: WallInstant::now(),
            };
            sessions.update(&counter.subscription, session);
        }
        Ok(Arc::new(Server {
            socket: Arc::new(socket),
            service,
            config,
            sessions,
            counters,
            in_flight: Mutex::new(HashSet::new()),
            answered: Mutex::new(Answered { answers: HashMap::new(), order: VecDeque::new() }),
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub async fn run(self: Arc<Server>) {
        let mut buffer = vec![0u8; wire::MAX_PACKET];
        loop {
            let mut batch = Vec::new();
            match self.socket.recv_from(&mut buffer).await {
                Ok((length, peer)) => self.accept(&buffer[..length], peer, &mut batch),
                Err(error) => {
                    tracing::warn!(%error, "radius: receive failed");
                    continue;
                }
            }
            // Whatever else is already waiting joins the same commit.
            while batch.len() < 256 {
                match self.socket.try_recv_from(&mut buffer) {
                    Ok((length, peer)) => self.accept(&buffer[..length], peer, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                tokio::spawn(self.clone().rate(batch));
            }
        }
    }

    fn client(&self, address: IpAddr) -> Option<&Client> {
        self.config.clients.iter().find(|c| c.network.contains(address))
    }

    /// Checks one datagram and, when it is a fresh accounting request, adds
    /// it to `batch`.
    fn accept(&self, bytes: &[u8], peer: SocketAddr, batch: &mut Vec<Pending>) {
        self.counters.bump(PacketOutcome::Received);
        let Some((client, request)) = self.authentic_request(bytes, peer) else { return };
        let key = (peer, request.identifier, request.authenticator);
        if let Some(answer) = self.answered.lock().expect("answer cache lock").answers.get(&key) {
            self.counters.bump(PacketOutcome::RetransmissionAnswered);
            let _ = self.socket.try_send_to(answer, peer);
            return;
        }
        if !self.in_flight.lock().expect("in-flight lock").insert(key) {
            // The first copy is still being committed; its answer will go.
            self.counters.bump(PacketOutcome::RetransmissionInFlight);
            return;
        }
        let drop_it = |why: &str| {
            self.in_flight.lock().expect("in-flight lock").remove(&key);
            self.counters.bump(PacketOutcome::Malformed);
            tracing::debug!(%peer, why = %why.escape_debug(), "radius: unusable Accounting-Request dropped");
        };
        let accounting = match Accounting::from_packet(&request) {
            Ok(accounting) => accounting,
            Err(error) => return drop_it(&error.to_string()),
        };
        let nas = IpAddr::V4(accounting.nas_ip.unwrap_or(match peer.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        }));
        let at = Instant::from_micros(self.service.now().micros() - accounting.delay_seconds as i64 * 1_000_000);
        let mut pending = Pending { key, request, secret: client.secret.clone(), records: Vec::new(), session: None };
        match accounting.status {
            AcctStatus::AccountingOn | AcctStatus::AccountingOff => self.nas_restarted(&accounting, nas, at, &mut pending),
            AcctStatus::Start | AcctStatus::InterimUpdate | AcctStatus::Stop => {
                let Some(session_id) = accounting.session_id.clone() else { return drop_it("no Acct-Session-Id") };
                self.session_report(&accounting, nas, session_id, at, &mut pending);
            }
        }
        batch.push(pending);
    }

    /// The datagram's client and its Accounting-Request, when the sender is
    /// a client, the packet reads, and its authenticator matches the
    /// client's secret; else counted and dropped.
    fn authentic_request(&self, bytes: &[u8], peer: SocketAddr) -> Option<(&Client, Packet)> {
        let Some(client) = self.client(peer.ip()) else {
            self.counters.bump(PacketOutcome::UnknownClient);
            tracing::debug!(%peer, "radius: packet from an address that is not a client; dropped");
            return None;
        };
        let request = match Packet::decode(bytes) {
            Ok(packet) => packet,
            Err(error) => {
                self.counters.bump(PacketOutcome::Malformed);
                tracing::debug!(%peer, %error, "radius: malformed packet dropped");
                return None;
            }
        };
        if request.code != wire::ACCOUNTING_REQUEST {
            self.counters.bump(PacketOutcome::UnsupportedCode);
            tracing::debug!(%peer, code = request.code, "radius: not an Accounting-Request; dropped");
            return None;
        }
        if !wire::request_authentic(bytes, &client.secret) {
            self.counters.bump(PacketOutcome::BadAuthenticator);
            tracing::debug!(%peer, "radius: Request Authenticator does not match the client's secret; dropped");
            return None;
        }
        Some((client, request))
    }

    /// Accounting-On or -Off: the NAS restarted, so each session it had open
    /// ends at its last counter.
    fn nas_restarted(&self, accounting: &Accounting, nas: IpAddr, at: Instant, pending: &mut Pending) {
        let closed = self.sessions.take_nas(nas);
        tracing::info!(%nas, sessions = closed.len(), on = (accounting.status == AcctStatus::AccountingOn), "radius: NAS restarted; closing its open sessions");
        for (subscription, session) in closed {
            let counter = Counter { session: format!("{nas}/{}", session.session_id), total: session.total, stop: true };
            pending.records.push(UsageRecord::counter(subscription, at, None, counter));
        }
    }

    /// Start, Interim-Update or Stop: the session's counter as a usage
    /// record, and the open-session table brought up to date. A report no
    /// subscription matches is answered all the same: the NAS would only
    /// send it again, and no retry can make it known.
    fn session_report(&self, accounting: &Accounting, nas: IpAddr, session_id: String, at: Instant, pending: &mut Pending) {
        let name = format!("{nas}/{session_id}");
        let Some(subscription) = self.identify(accounting) else {
            self.counters.bump(PacketOutcome::UnknownSubscriber);
            tracing::warn!(session = %name, imsi = ?accounting.imsi, user = ?accounting.user_name, msisdn = ?accounting.calling_station_id, "radius: no subscription matches; usage not rated");
            pending.session = Some(name);
            return;
        };
        let country = accounting.sgsn_mcc_mnc.as_deref().and_then(rollover_net::mcc::country_of_mcc_mnc).and_then(|c| Country::parse(c).ok());
        let stop = accounting.status == AcctStatus::Stop;
        let total = accounting.total_octets();
        let session = NasSession {
            nas,
            session_id,
            user_name: accounting.user_name.clone(),
            calling_station_id: accounting.calling_station_id.clone(),
            framed_ip: accounting.framed_ip,
            total,
            seen: WallInstant::now(),
        };
        // Known at once, so that a status change this very report causes
        // finds the session to act on.
        if stop {
            self.sessions.remove(&subscription, nas, &session.session_id);
        } else {
            self.sessions.update(&subscription, session);
        }
        pending.records.push(UsageRecord::counter(subscription, at, country, Counter { session: name.clone(), total, stop }));
        pending.session = Some(name);
    }

    fn identify(&self, accounting: &Accounting) -> Option<String> {
        let lookup = |field: &str, value: &str| self.service.subscription_by(field, value);
        for way in &self.config.identify {
            let found = match way {
                Identify::Imsi => accounting.imsi.as_deref().and_then(|imsi| lookup("imsi", imsi)),
                Identify::CallingStationId => accounting.calling_station_id.as_deref().and_then(|msisdn| {
                    lookup("msisdn", msisdn).or_else(|| match msisdn.strip_prefix('+') {
                        Some(bare) => lookup("msisdn", bare),
                        None => lookup("msisdn", &format!("+{msisdn}")),
                    })
                }),
                Identify::UserName => accounting
                    .user_name
                    .as_deref()
                    .and_then(|name| lookup("imsi", name).or_else(|| lookup("msisdn", name)).or_else(|| lookup("external_id", name))),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Rates a batch, then answers every request whose usage is committed.
    async fn rate(self: Arc<Server>, batch: Vec<Pending>) {
        let mut records = Vec::new();
        let mut owners = Vec::new();
        for (index, pending) in batch.iter().enumerate() {
            for record in &pending.records {
                records.push(record.clone());
                owners.push(index);
            }
        }
        let results = if records.is_empty() { Ok(Vec::new()) } else { self.service.record_usage(records).await };
        let results = match results {
            Ok(results) => results,
            Err(error) => {
                // Nothing is answered: the NAS sends again, and those copies
                // are rated then.
                let counter = if error == ServiceError::Busy { PacketOutcome::Busy } else { PacketOutcome::NotRated };
                self.counters.add(counter, batch.len() as u64);
                tracing::warn!(%error, packets = batch.len(), "radius: cannot rate now; not answered, the NAS will retransmit");
                let mut in_flight = self.in_flight.lock().expect("in-flight lock");
                for pending in &batch {
                    in_flight.remove(&pending.key);
                }
                return;
            }
        };
        for (result, &owner) in results.iter().zip(&owners) {
            if let UsageResult::Rejected(why) = result {
                self.counters.bump(PacketOutcome::NotRated);
                tracing::warn!(session = ?batch[owner].session, why = %why, "radius: report logged and not rated");
            }
        }

        // The answers are filed before they are sent: a copy that arrives
        // the moment after an answer leaves must find it, not the in-flight
        // mark.
        let answers: Vec<(RequestKey, Vec<u8>)> =
            batch.iter().map(|p| (p.key, wire::response(wire::ACCOUNTING_RESPONSE, &p.request, Vec::new(), &p.secret))).collect();
        {
            let mut answered = self.answered.lock().expect("answer cache lock");
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            for (key, answer) in &answers {
                answered.insert(*key, answer.clone());
                in_flight.remove(key);
            }
        }
        for (key, answer) in answers {
            let _ = self.socket.send_to(&answer, key.0).await;
            self.counters.bump(PacketOutcome::Answered);
        }
    }
}
