//! The Diameter Gy server (RFC 6733 base protocol, RFC 4006 credit control,
//! 3GPP TS 32.299) on TCP.
//!
//! Each connection is one peer. Its first message must be a
//! Capabilities-Exchange-Request offering the Credit-Control application (4)
//! or the relay application; anything else closes the connection. After
//! that: Device-Watchdog requests are answered, and sent after
//! `watchdog` of silence (a second silence closes the connection);
//! Disconnect-Peer is answered and the connection closed; Credit-Control
//! requests are rated.
//!
//! A Credit-Control session maps onto the service's reservation sessions,
//! one per Rating-Group (`{Session-Id}#{Rating-Group}`). Used-Service-Unit is
//! incremental and is rated under the key
//! `#session:{CC-Request-Number}:{Session-Id}#{Rating-Group}`; a request
//! whose CC-Request-Number was already answered gets that answer again.
//! Requests are handled concurrently (at most `MAX_IN_FLIGHT` per peer;
//! past that the connection is not read); answers go out as they are ready,
//! each after the usage it reports is committed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollover_core::{Country, Status};
use rollover_net::diameter::{self as wire, Avp, Message, RequestType, code, command, result};
use rollover_service::{FinalAction, Service, ServiceError, SessionAnswer, SessionOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::{Counters, GatewayError};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub origin_host: String,
    pub origin_realm: String,
    /// Silence after which a Device-Watchdog-Request is sent.
    pub watchdog: Duration,
    /// Volume-Quota-Threshold as a percentage of each grant (0: none).
    pub quota_threshold_percent: u8,
}

crate::metrics::outcomes! {
    /// What the listener counts, by outcome.
    pub enum MessageOutcome {
        Connections = "connections",
        Cer = "cer",
        CerRefused = "cer_refused",
        DwrAnswered = "dwr_answered",
        DwrSent = "dwr_sent",
        Dpr = "dpr",
        Ccr = "ccr",
        CcrRepeated = "ccr_repeated",
        CcrRefused = "ccr_refused",
        Malformed = "malformed",
        Unsupported = "unsupported",
        WatchdogClosed = "watchdog_closed",
    }
}

/// Credit-Control requests of one peer being rated at once; past this the
/// connection is not read until one is answered.
const MAX_IN_FLIGHT: usize = 4096;

/// Encoded answers waiting for a peer that reads slowly; past this, whoever
/// answers waits, and so does reading.
const WRITE_QUEUE: usize = 1024;

/// One connected peer, as its connection's task knows it.
struct Peer {
    address: SocketAddr,
    local: Option<SocketAddr>,
    /// Its Origin-Host, once the capabilities exchange is done.
    host: String,
    open: bool,
    watchdog_pending: bool,
    hop_by_hop: u32,
    /// Encoded messages for the writer task.
    tx: mpsc::Sender<Vec<u8>>,
    in_flight: Arc<Semaphore>,
}

impl Peer {
    /// Queues a message for the writer; waits while the queue is full (a
    /// peer that does not read its answers), so reading waits too.
    async fn send(&self, message: Message) {
        // A closed writer means the peer is gone; the read loop ends next.
        let _ = self.tx.send(message.encode()).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// The task that writes a connection's answers; those ready together go out
/// in one write. It ends when every sender is dropped, shutting the socket.
fn spawn_writer(mut writer: tokio::net::tcp::OwnedWriteHalf) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writing = tokio::spawn(async move {
        while let Some(mut bytes) = rx.recv().await {
            while bytes.len() < 64 << 10
                && let Ok(more) = rx.try_recv()
            {
                bytes.extend_from_slice(&more);
            }
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    (tx, writing)
}

/// One Credit-Control session, as the Gy server knows it.
struct GySession {
    subscription: String,
    country: Option<Country>,
    /// Rating groups with an open reservation.
    groups: Vec<Option<u32>>,
    /// The last CC-Request-Number answered, and the answer's AVPs.
    last: Option<(u32, Vec<Avp>)>,
    ended: bool,
    /// When the gateway last sent a request for it.
    seen: std::time::Instant,
}

/// A session the gateway has not spoken of for this long is forgotten (its
/// reservations have long expired in the service).
const GY_SESSION_IDLE: Duration = Duration::from_secs(6 * 3600);

/// An ended session is kept this long, so that a retransmitted CCR-T gets
/// its first answer again.
const GY_ENDED_KEEP: Duration = Duration::from_secs(120);

pub struct Server {
    listener: TcpListener,
    service: Service,
    config: Config,
    pub counters: Arc<Counters<MessageOutcome>>,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<GySession>>>>,
    /// Sweep idle sessions when the table reaches this size.
    sweep_at: std::sync::atomic::AtomicUsize,
    origin_state: u32,
}

impl Server {
    pub async fn bind(config: Config, service: Service) -> Result<Arc<Server>, GatewayError> {
        let listener = TcpListener::bind(config.listen).await.map_err(|error| GatewayError::Bind { listener: "diameter", address: config.listen, error })?;
        let counters = Arc::new(Counters::new("rollover_diameter_messages_total", "Diameter messages and connections by outcome.", "outcome"));
        let source = counters.clone();
        service.add_metrics(Box::new(move |out| source.render(out)));
        let origin_state = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32);
        Ok(Arc::new(Server { listener, service, config, counters, sessions: Mutex::new(HashMap::new()), sweep_at: std::sync::atomic::AtomicUsize::new(100_000), origin_state }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self: Arc<Server>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.counters.bump(MessageOutcome::Connections);
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().connection(stream, peer));
                }
                Err(error) => {
                    tracing::warn!(%error, "diameter: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn identity(&self) -> [Avp; 2] {
        [Avp::text(code::ORIGIN_HOST, &self.config.origin_host), Avp::text(code::ORIGIN_REALM, &self.config.origin_realm)]
    }

    async fn connection(self: Arc<Server>, stream: TcpStream, address: SocketAddr) {
        let local = stream.local_addr().ok();
        let (mut reader, writer) = stream.into_split();
        let (tx, writing) = spawn_writer(writer);
        let mut peer = Peer { address, local, host: String::new(), open: false, watchdog_pending: false, hop_by_hop: rand_seed(), tx, in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)) };
        loop {
            let read = tokio::time::timeout(self.config.watchdog, read_message(&mut reader)).await;
            let bytes = match read {
                Err(_) if peer.open && !peer.watchdog_pending => {
                    self.send_watchdog(&mut peer).await;
                    continue;
                }
                Err(_) => {
                    self.counters.bump(MessageOutcome::WatchdogClosed);
                    tracing::info!(peer = %peer.address, host = %peer.host.escape_debug(), "diameter: peer silent past the watchdog; closing");
                    break;
                }
                Ok(Ok(Some(bytes))) => bytes,
                Ok(Ok(None)) => break,
                Ok(Err(error)) => {
                    self.counters.bump(MessageOutcome::Malformed);
                    tracing::warn!(peer = %peer.address, %error, "diameter: unreadable stream; closing");
                    break;
                }
            };
            peer.watchdog_pending = false;
            let message = match Message::decode(&bytes) {
                Ok(message) => message,
                Err(error) => {
                    self.answer_malformed(&peer, &bytes, &error.to_string()).await;
                    continue;
                }
            };
            // Answers (a DWA to our DWR, or one nobody waits for) need nothing.
            if message.is_request() && self.handle(&mut peer, message).await == Flow::Close {
                break;
            }
        }
        drop(peer);
        let _ = writing.await;
    }

    /// Asks a silent peer whether it is still there.
    async fn send_watchdog(&self, peer: &mut Peer) {
        peer.hop_by_hop = peer.hop_by_hop.wrapping_add(1);
        let mut avps = self.identity().to_vec();
        avps.push(Avp::u32(code::ORIGIN_STATE_ID, self.origin_state));
        let dwr = Message { flags: wire::FLAG_REQUEST, command: command::DEVICE_WATCHDOG, application: wire::APP_COMMON, hop_by_hop: peer.hop_by_hop, end_to_end: peer.hop_by_hop, avps };
        peer.send(dwr).await;
        self.counters.bump(MessageOutcome::DwrSent);
        peer.watchdog_pending = true;
    }

    /// A whole frame that does not decode: a request still gets an answer
    /// naming the failure, built from its header alone.
    async fn answer_malformed(&self, peer: &Peer, bytes: &[u8], error: &str) {
        self.counters.bump(MessageOutcome::Malformed);
        tracing::warn!(peer = %peer.address, error = %error.escape_debug(), "diameter: malformed message");
        if bytes.len() < wire::HEADER || bytes[4] & wire::FLAG_REQUEST == 0 {
            return;
        }
        let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let header = Message { flags: bytes[4], command: word(4) & 0x00ff_ffff, application: word(8), hop_by_hop: word(12), end_to_end: word(16), avps: Vec::new() };
        let mut avps = vec![Avp::u32(code::RESULT_CODE, result::INVALID_AVP_LENGTH)];
        avps.extend(self.identity());
        avps.push(Avp::text(code::ERROR_MESSAGE, error).optional());
        peer.send(header.answer(avps)).await;
    }

    /// One request from the peer: the capabilities exchange first, then the
    /// base protocol's requests and credit control.
    async fn handle(self: &Arc<Server>, peer: &mut Peer, message: Message) -> Flow {
        if !peer.open {
            return self.open(peer, &message).await;
        }
        match message.command {
            command::DEVICE_WATCHDOG => {
                self.counters.bump(MessageOutcome::DwrAnswered);
                let mut avps = vec![Avp::u32(code::RESULT_CODE, result::SUCCESS)];
                avps.extend(self.identity());
                avps.push(Avp::u32(code::ORIGIN_STATE_ID, self.origin_state));
                peer.send(message.answer(avps)).await;
            }
            command::DISCONNECT_PEER => {
                self.counters.bump(MessageOutcome::Dpr);
                let mut avps = vec![Avp::u32(code::RESULT_CODE, result::SUCCESS)];
                avps.extend(self.identity());
                peer.send(message.answer(avps)).await;
                tracing::info!(peer = %peer.address, host = %peer.host.escape_debug(), "diameter: peer disconnected (DPR)");
                return Flow::Close;
            }
            command::CAPABILITIES_EXCHANGE => {
                self.counters.bump(MessageOutcome::Unsupported);
                peer.send(self.protocol_error(&message, 3008)).await;
            }
            command::CREDIT_CONTROL if message.application == wire::APP_CREDIT_CONTROL => {
                // Requests are rated concurrently, at most MAX_IN_FLIGHT at
                // once per peer; past that, reading waits, and TCP pushes back.
                let Ok(permit) = peer.in_flight.clone().acquire_owned().await else { return Flow::Close };
                let (server, tx) = (self.clone(), peer.tx.clone());
                tokio::spawn(async move {
                    let answer = server.credit_control(&message).await;
                    let _ = tx.send(answer.encode()).await;
                    drop(permit);
                });
            }
            command::CREDIT_CONTROL => {
                self.counters.bump(MessageOutcome::Unsupported);
                peer.send(self.protocol_error(&message, result::APPLICATION_UNSUPPORTED)).await;
            }
            _ => {
                self.counters.bump(MessageOutcome::Unsupported);
                peer.send(self.protocol_error(&message, result::COMMAND_UNSUPPORTED)).await;
            }
        }
        Flow::Continue
    }

    /// The peer's first message, which must be a CER offering an application
    /// we serve.
    async fn open(&self, peer: &mut Peer, message: &Message) -> Flow {
        if message.command != command::CAPABILITIES_EXCHANGE {
            self.counters.bump(MessageOutcome::Unsupported);
            tracing::warn!(peer = %peer.address, command = message.command, "diameter: first message is not a CER; closing");
            return Flow::Close;
        }
        let (answer, accepted) = self.capabilities(message, peer.local);
        peer.send(answer).await;
        if !accepted {
            self.counters.bump(MessageOutcome::CerRefused);
            return Flow::Close;
        }
        self.counters.bump(MessageOutcome::Cer);
        peer.host = message.find(code::ORIGIN_HOST).and_then(Avp::as_text).unwrap_or("").to_string();
        tracing::info!(peer = %peer.address, host = %peer.host.escape_debug(), "diameter: peer connected");
        peer.open = true;
        Flow::Continue
    }

    fn protocol_error(&self, request: &Message, code_value: u32) -> Message {
        let mut avps = Vec::new();
        if let Some(session) = request.find(code::SESSION_ID) {
            avps.push(session.clone());
        }
        avps.push(Avp::u32(code::RESULT_CODE, code_value));
        avps.extend(self.identity());
        let mut answer = request.answer(avps);
        answer.flags |= wire::FLAG_ERROR;
        answer
    }

    /// The CEA, and whether the peer shares an application with us.
    fn capabilities(&self, cer: &Message, local: Option<SocketAddr>) -> (Message, bool) {
        let mut offered = Vec::new();
        for avp in &cer.avps {
            match (avp.code, avp.vendor) {
                (code::AUTH_APPLICATION_ID | code::ACCT_APPLICATION_ID, None) => offered.extend(avp.as_u32()),
                (code::VENDOR_SPECIFIC_APPLICATION_ID, None) => {
                    for member in avp.members().unwrap_or_default() {
                        if matches!(member.code, code::AUTH_APPLICATION_ID | code::ACCT_APPLICATION_ID) {
                            offered.extend(member.as_u32());
                        }
                    }
                }
                _ => {}
            }
        }
        let shared = offered.iter().any(|a| *a == wire::APP_CREDIT_CONTROL || *a == wire::APP_RELAY);
        let mut avps = vec![Avp::u32(code::RESULT_CODE, if shared { result::SUCCESS } else { result::NO_COMMON_APPLICATION })];
        avps.extend(self.identity());
        let address = local.map(|a| a.ip()).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        avps.push(Avp::address(code::HOST_IP_ADDRESS, address));
        avps.push(Avp::u32(code::VENDOR_ID, 0));
        avps.push(Avp::text(code::PRODUCT_NAME, "rollover").optional());
        avps.push(Avp::u32(code::ORIGIN_STATE_ID, self.origin_state));
        avps.push(Avp::u32(code::SUPPORTED_VENDOR_ID, wire::VENDOR_3GPP));
        avps.push(Avp::u32(code::AUTH_APPLICATION_ID, wire::APP_CREDIT_CONTROL));
        avps.push(Avp::u32(code::FIRMWARE_REVISION, 1).optional());
        if !shared {
            avps.push(Avp::text(code::ERROR_MESSAGE, "rollover serves the Credit-Control application (4) only").optional());
        }
        let mut answer = cer.answer(avps);
        if !shared {
            answer.flags |= wire::FLAG_ERROR;
        }
        (answer, shared)
    }

    fn session_state(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<GySession>>> {
        self.sessions.lock().expect("gy session lock").get(id).cloned()
    }

    async fn credit_control(&self, request: &Message) -> Message {
        self.counters.bump(MessageOutcome::Ccr);
        match self.rate(request).await {
            Ok(avps) => request.answer(avps),
            Err(refusal) => {
                self.counters.bump(MessageOutcome::CcrRefused);
                let mut avps = Vec::new();
                if let Some(session) = request.find(code::SESSION_ID) {
                    avps.push(session.clone());
                }
                avps.push(Avp::u32(code::RESULT_CODE, refusal.code));
                avps.extend(self.identity());
                avps.push(Avp::u32(code::AUTH_APPLICATION_ID, wire::APP_CREDIT_CONTROL));
                for code_value in [code::CC_REQUEST_TYPE, code::CC_REQUEST_NUMBER] {
                    if let Some(avp) = request.find(code_value) {
                        avps.push(avp.clone());
                    }
                }
                if let Some(failed) = refusal.failed {
                    avps.push(Avp::grouped(code::FAILED_AVP, &[failed]));
                }
                avps.push(Avp::text(code::ERROR_MESSAGE, &refusal.message).optional());
                let mut answer = request.answer(avps);
                if (3000..4000).contains(&refusal.code) {
                    answer.flags |= wire::FLAG_ERROR;
                }
                answer
            }
        }
    }

    /// Rates one CCR; the AVPs of a successful answer, or why not.
    async fn rate(&self, request: &Message) -> Result<Vec<Avp>, Refusal> {
        let ccr = Ccr::read(request)?;
        let state = self.session_of(&ccr, request)?;
        let mut state = state.lock().await;
        state.seen = std::time::Instant::now();
        if let Some((last, answer)) = &state.last
            && *last == ccr.number
        {
            self.counters.bump(MessageOutcome::CcrRepeated);
            return Ok(answer.clone());
        }
        if state.ended && ccr.kind != RequestType::Event {
            return Err(Refusal { code: result::UNKNOWN_SESSION_ID, failed: None, message: format!("credit-control session {} has ended", ccr.session_id) });
        }
        if ccr.kind == RequestType::Initial && state.last.is_some() {
            return Err(Refusal::invalid(request.find(code::CC_REQUEST_TYPE), "a second CCR-Initial for an open session"));
        }
        if ccr.country.is_some() {
            state.country = ccr.country;
        }
        let answered = match ccr.kind {
            RequestType::Initial => self.initial(&ccr, &mut state).await,
            RequestType::Update => self.update(&ccr, &mut state).await,
            RequestType::Termination => self.terminate(&ccr, &mut state).await?,
            RequestType::Event => self.event(&ccr, &mut state).await,
        };
        let avps = self.answer_avps(&ccr.session_id, ccr.kind, ccr.number, &answered)?;
        state.last = Some((ccr.number, avps.clone()));
        Ok(avps)
    }

    /// The Gy session a CCR belongs to: a new one for an Initial or Event
    /// request (sweeping idle ones when the table is large), else the open
    /// one. An Update or Termination for a session this gateway does not
    /// know (opened through another node of a cluster that went away, or
    /// before a restart) is taken up when it names its subscriber
    /// (Subscription-Id), with the rating groups it reports; without one it
    /// gets 5002.
    fn session_of(&self, ccr: &Ccr, request: &Message) -> Result<Arc<tokio::sync::Mutex<GySession>>, Refusal> {
        let mut groups = Vec::new();
        if !matches!(ccr.kind, RequestType::Initial | RequestType::Event) {
            if let Some(state) = self.session_state(&ccr.session_id) {
                return Ok(state);
            }
            if !request.avps.iter().any(|a| a.code == code::SUBSCRIPTION_ID && a.vendor.is_none()) {
                return Err(Refusal { code: result::UNKNOWN_SESSION_ID, failed: None, message: format!("no open credit-control session {}", ccr.session_id) });
            }
            groups = ccr.units.iter().map(|unit| unit.group).collect();
            groups.sort();
            groups.dedup();
        }
        let subscription = self.subscriber(request)?;
        let fresh = GySession { subscription, country: ccr.country, groups, last: None, ended: false, seen: std::time::Instant::now() };
        let mut sessions = self.sessions.lock().expect("gy session lock");
        if sessions.len() >= self.sweep_at.load(std::sync::atomic::Ordering::Relaxed) {
            sessions.retain(|_, s| s.try_lock().map_or(true, |s| s.seen.elapsed() < if s.ended { GY_ENDED_KEEP } else { GY_SESSION_IDLE }));
            self.sweep_at.store((sessions.len() * 2).max(100_000), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(sessions.entry(ccr.session_id.clone()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(fresh))).clone())
    }

    /// Opens one reservation per rating group of `unit`.
    async fn open_group(&self, state: &GySession, unit: &Unit, name: &str) -> Result<SessionAnswer, ServiceError> {
        self.service.session_in(name, Some(&state.subscription), SessionOp::Start { requested_bytes: unit.requested }, None, state.country).await
    }

    /// Reports a rating group's usage and asks for its next grant.
    async fn report_group(&self, ccr: &Ccr, state: &GySession, unit: &Unit, name: &str) -> Result<SessionAnswer, ServiceError> {
        let op = SessionOp::Update { used_bytes: unit.used, requested_bytes: unit.requested, request_number: ccr.number };
        self.service.session_in(name, Some(&state.subscription), op, None, state.country).await
    }

    /// CCR-Initial: a reservation for each rating group asked for.
    async fn initial<'c>(&self, ccr: &'c Ccr, state: &mut GySession) -> Answered<'c> {
        let mut answered = Vec::new();
        for unit in &ccr.units {
            let answer = self.open_group(state, unit, &unit_session(&ccr.session_id, unit.group)).await;
            if answer.is_ok() {
                state.groups.push(unit.group);
            }
            answered.push((unit, answer));
        }
        answered
    }

    /// CCR-Update: each group's usage rated and its next grant reserved. A
    /// rating group first seen mid-session (or whose opening got no answer
    /// here) is reported all the same: the service opens a reservation for
    /// a report on a session it holds none for.
    async fn update<'c>(&self, ccr: &'c Ccr, state: &mut GySession) -> Answered<'c> {
        let mut answered = Vec::new();
        for unit in &ccr.units {
            let name = unit_session(&ccr.session_id, unit.group);
            let answer = self.report_group(ccr, state, unit, &name).await;
            if answer.is_ok() && !state.groups.contains(&unit.group) {
                state.groups.push(unit.group);
            }
            answered.push((unit, answer));
        }
        answered
    }

    /// CCR-Termination: every rating group it reports, and every other one
    /// open, ends; what it reports is rated, whether or not this gateway
    /// saw the group opened. Only an outage is an error; the answer carries
    /// no groups.
    async fn terminate<'c>(&self, ccr: &'c Ccr, state: &mut GySession) -> Result<Answered<'c>, Refusal> {
        let unreported = state.groups.iter().filter(|group| !ccr.units.iter().any(|unit| unit.group == **group));
        let ending: Vec<(Option<u32>, u64)> = ccr.units.iter().map(|unit| (unit.group, unit.used)).chain(unreported.map(|group| (*group, 0))).collect();
        for (group, used_bytes) in ending {
            let name = unit_session(&ccr.session_id, group);
            let op = SessionOp::End { used_bytes, request_number: ccr.number };
            match self.service.session_in(&name, Some(&state.subscription), op, None, state.country).await {
                Err(ServiceError::UnknownSession { .. }) => tracing::warn!(session = %name, "diameter: reservation already gone at termination"),
                Err(error) if is_outage(&error) => return Err(Refusal::from_service(&error)),
                _ => {}
            }
        }
        state.groups.clear();
        state.ended = true;
        Ok(Vec::new())
    }

    /// CCR-Event: a one-shot debit of what each group reports.
    async fn event<'c>(&self, ccr: &'c Ccr, state: &mut GySession) -> Answered<'c> {
        let mut answered = Vec::new();
        for unit in &ccr.units {
            let name = format!("{}#event{}", unit_session(&ccr.session_id, unit.group), ccr.number);
            let start = SessionOp::Start { requested_bytes: Some(0) };
            let answer = match self.service.session_in(&name, Some(&state.subscription), start, None, state.country).await {
                Ok(_) => self.service.session_in(&name, None, SessionOp::End { used_bytes: unit.used, request_number: ccr.number }, None, state.country).await,
                Err(error) => Err(error),
            };
            answered.push((unit, answer));
        }
        state.ended = true;
        answered
    }

    /// The CCA's AVPs for the rating groups' answers: one
    /// Multiple-Services-Credit-Control each (or the top level's units at the
    /// top), and a Result-Code of success when any group succeeded.
    fn answer_avps(&self, session_id: &str, kind: RequestType, number: u32, answered: &[(&Unit, Result<SessionAnswer, ServiceError>)]) -> Result<Vec<Avp>, Refusal> {
        let mut avps = vec![Avp::text(code::SESSION_ID, session_id)];
        let mut top = result::SUCCESS;
        let mut group_avps = Vec::new();
        let mut any_success = answered.is_empty();
        for (index, (unit, answer)) in answered.iter().enumerate() {
            let (unit_result, members) = match answer {
                Ok(answer) => self.grant(answer, kind),
                Err(e) if is_outage(e) => return Err(Refusal::from_service(e)),
                Err(e @ (ServiceError::UnknownSession { .. } | ServiceError::UnknownSubscription { .. })) => {
                    tracing::warn!(%session_id, error = %e, "diameter: rating group not found");
                    (result::UNKNOWN_SESSION_ID, Vec::new())
                }
                Err(e) => {
                    tracing::warn!(%session_id, error = %e, "diameter: rating failed");
                    (result::RATING_FAILED, Vec::new())
                }
            };
            if unit_result == result::SUCCESS {
                any_success = true;
            } else if index == 0 || top == result::SUCCESS {
                top = unit_result;
            }
            if unit.top_level {
                group_avps.extend(members);
            } else {
                let mut mscc = members;
                if let Some(group) = unit.group {
                    mscc.insert(0, Avp::u32(code::RATING_GROUP, group));
                }
                mscc.push(Avp::u32(code::RESULT_CODE, unit_result));
                group_avps.push(Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, &mscc));
            }
        }
        if any_success {
            top = result::SUCCESS;
        }
        avps.push(Avp::u32(code::RESULT_CODE, top));
        avps.extend(self.identity());
        avps.push(Avp::u32(code::AUTH_APPLICATION_ID, wire::APP_CREDIT_CONTROL));
        avps.push(Avp::u32(code::CC_REQUEST_TYPE, kind.to_u32()));
        avps.push(Avp::u32(code::CC_REQUEST_NUMBER, number));
        avps.extend(group_avps);
        Ok(avps)
    }

    fn grant(&self, answer: &SessionAnswer, kind: RequestType) -> (u32, Vec<Avp>) {
        if matches!(kind, RequestType::Termination | RequestType::Event) {
            return (result::SUCCESS, Vec::new());
        }
        if answer.not_covered {
            return (result::RATING_FAILED, Vec::new());
        }
        let mut members = Vec::new();
        if answer.credit_limit_reached {
            let code_value = match answer.status {
                Status::Active | Status::Depleted | Status::Throttled => result::CREDIT_LIMIT_REACHED,
                _ => result::END_USER_SERVICE_DENIED,
            };
            if let Some(action) = answer.final_unit {
                members.push(final_unit(action));
            }
            return (code_value, members);
        }
        members.push(Avp::grouped(code::GRANTED_SERVICE_UNIT, &[Avp::u64(code::CC_TOTAL_OCTETS, answer.granted_bytes)]));
        members.push(Avp::u32(code::VALIDITY_TIME, answer.validity_seconds as u32));
        let threshold = answer.granted_bytes / 100 * self.config.quota_threshold_percent as u64;
        if threshold > 0 {
            members.push(Avp::vendor_u32(code::VOLUME_QUOTA_THRESHOLD, wire::VENDOR_3GPP, threshold.min(u32::MAX as u64) as u32));
        }
        if let Some(action) = answer.final_unit {
            members.push(final_unit(action));
        }
        (result::SUCCESS, members)
    }

    fn subscriber(&self, request: &Message) -> Result<String, Refusal> {
        let mut named = false;
        for avp in request.avps.iter().filter(|a| a.code == code::SUBSCRIPTION_ID && a.vendor.is_none()) {
            let members = avp.members().map_err(|_| Refusal::invalid(Some(avp), "Subscription-Id is not a well-formed group"))?;
            let (Some(kind), Some(data)) = (wire::find(&members, code::SUBSCRIPTION_ID_TYPE).and_then(Avp::as_u32), wire::find(&members, code::SUBSCRIPTION_ID_DATA).and_then(Avp::as_text)) else {
                return Err(Refusal::invalid(Some(avp), "Subscription-Id needs Subscription-Id-Type and Subscription-Id-Data"));
            };
            named = true;
            let found = match kind {
                0 => self.service.subscription_by("msisdn", data).or_else(|| match data.strip_prefix('+') {
                    Some(bare) => self.service.subscription_by("msisdn", bare),
                    None => self.service.subscription_by("msisdn", &format!("+{data}")),
                }),
                1 => self.service.subscription_by("imsi", data),
                _ => None,
            };
            if let Some(found) = found {
                return Ok(found);
            }
        }
        if !named {
            return Err(Refusal::missing(code::SUBSCRIPTION_ID));
        }
        Err(Refusal { code: result::USER_UNKNOWN, failed: None, message: "no subscription has this IMSI or MSISDN".into() })
    }
}

fn final_unit(action: FinalAction) -> Avp {
    let value = match action {
        FinalAction::Terminate => 0,
        FinalAction::Throttle { .. } => 2,
    };
    Avp::grouped(code::FINAL_UNIT_INDICATION, &[Avp::u32(code::FINAL_UNIT_ACTION, value)])
}

fn unit_session(session_id: &str, group: Option<u32>) -> String {
    match group {
        Some(group) => format!("{session_id}#{group}"),
        None => format!("{session_id}#-"),
    }
}

/// Why a request gets no grant: the Result-Code, the AVP at fault.
struct Refusal {
    code: u32,
    failed: Option<Avp>,
    message: String,
}

/// Errors that say nothing about the request: the service cannot answer now.
fn is_outage(error: &ServiceError) -> bool {
    matches!(error, ServiceError::Busy | ServiceError::ShardMoving { .. } | ServiceError::Stopped { .. } | ServiceError::Store(_) | ServiceError::Corrupt { .. })
}

impl Refusal {
    fn missing(code_value: u32) -> Refusal {
        Refusal { code: result::MISSING_AVP, failed: Some(Avp { code: code_value, flags: wire::AVP_MANDATORY, vendor: None, data: vec![0; 4] }), message: format!("AVP {code_value} is required") }
    }

    fn invalid(avp: Option<&Avp>, message: &str) -> Refusal {
        Refusal { code: result::INVALID_AVP_VALUE, failed: avp.cloned(), message: message.to_string() }
    }

    fn from_service(error: &ServiceError) -> Refusal {
        match error {
            ServiceError::Busy => Refusal { code: result::TOO_BUSY, failed: None, message: "busy; try again".into() },
            ServiceError::ShardMoving { .. } => Refusal { code: result::TOO_BUSY, failed: None, message: "the subscription's shard is moving between nodes; try again".into() },
            other => Refusal { code: result::UNABLE_TO_COMPLY, failed: None, message: other.to_string() },
        }
    }
}

/// One rating group's part of a request.
#[derive(Debug, Clone)]
struct Unit {
    group: Option<u32>,
    requested: Option<u64>,
    used: u64,
    /// From the request's top level (no MSCC): answered there too.
    top_level: bool,
}

/// The answers of a CCR's rating groups, each beside the unit it answers.
type Answered<'c> = Vec<(&'c Unit, Result<SessionAnswer, ServiceError>)>;

/// What a Credit-Control-Request asks, read and checked once.
struct Ccr {
    session_id: String,
    kind: RequestType,
    number: u32,
    units: Vec<Unit>,
    country: Option<Country>,
}

impl Ccr {
    fn read(request: &Message) -> Result<Ccr, Refusal> {
        let required = |c: u32| request.find(c).ok_or_else(|| Refusal::missing(c));
        let session_avp = required(code::SESSION_ID)?;
        let session_id = session_avp.as_text().ok_or_else(|| Refusal::invalid(Some(session_avp), "Session-Id is not UTF-8"))?.to_string();
        for c in [code::ORIGIN_HOST, code::ORIGIN_REALM, code::DESTINATION_REALM, code::AUTH_APPLICATION_ID, code::SERVICE_CONTEXT_ID] {
            required(c)?;
        }
        let kind_avp = required(code::CC_REQUEST_TYPE)?;
        let kind = kind_avp.as_u32().and_then(RequestType::from_u32).ok_or_else(|| Refusal::invalid(Some(kind_avp), "CC-Request-Type must be 1 to 4"))?;
        let number_avp = required(code::CC_REQUEST_NUMBER)?;
        let number = number_avp.as_u32().ok_or_else(|| Refusal::invalid(Some(number_avp), "CC-Request-Number is an Unsigned32"))?;
        Ok(Ccr { session_id, kind, number, units: units(request)?, country: visited_country(request) })
    }
}

/// Octets in a Requested/Used-Service-Unit: CC-Total-Octets, or input plus
/// output.
fn octets(members: &[Avp]) -> Option<u64> {
    if let Some(total) = wire::find(members, code::CC_TOTAL_OCTETS) {
        return total.as_u64();
    }
    let input = wire::find(members, code::CC_INPUT_OCTETS).and_then(Avp::as_u64);
    let output = wire::find(members, code::CC_OUTPUT_OCTETS).and_then(Avp::as_u64);
    match (input, output) {
        (None, None) => None,
        (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
    }
}

fn units(request: &Message) -> Result<Vec<Unit>, Refusal> {
    let read = |avps: &[Avp], top_level: bool| -> Result<Unit, Refusal> {
        let group = wire::find(avps, code::RATING_GROUP).map(|g| g.as_u32().ok_or_else(|| Refusal::invalid(Some(g), "Rating-Group is an Unsigned32"))).transpose()?;
        // An empty Requested-Service-Unit asks for whatever the server grants.
        let requested = match wire::find(avps, code::REQUESTED_SERVICE_UNIT) {
            Some(rsu) => octets(&rsu.members().map_err(|_| Refusal::invalid(Some(rsu), "Requested-Service-Unit is not a well-formed group"))?),
            None => None,
        };
        let mut used: u64 = 0;
        for usu in avps.iter().filter(|a| a.code == code::USED_SERVICE_UNIT && a.vendor.is_none()) {
            let members = usu.members().map_err(|_| Refusal::invalid(Some(usu), "Used-Service-Unit is not a well-formed group"))?;
            used = used.saturating_add(octets(&members).unwrap_or(0));
        }
        Ok(Unit { group, requested, used, top_level })
    };
    let mut units = Vec::new();
    for mscc in request.avps.iter().filter(|a| a.code == code::MULTIPLE_SERVICES_CREDIT_CONTROL && a.vendor.is_none()) {
        let members = mscc.members().map_err(|_| Refusal::invalid(Some(mscc), "Multiple-Services-Credit-Control is not a well-formed group"))?;
        let unit = read(&members, false)?;
        if units.iter().any(|u: &Unit| u.group == unit.group) {
            return Err(Refusal::invalid(Some(mscc), "the same Rating-Group twice in one request"));
        }
        units.push(unit);
    }
    if units.is_empty() {
        let has_units = request.avps.iter().any(|a| matches!(a.code, code::REQUESTED_SERVICE_UNIT | code::USED_SERVICE_UNIT) && a.vendor.is_none());
        let kind = request.find(code::CC_REQUEST_TYPE).and_then(Avp::as_u32).and_then(RequestType::from_u32);
        if has_units || kind != Some(RequestType::Termination) {
            units.push(read(&request.avps, true)?);
        }
    }
    Ok(units)
}

/// The visited country from 3GPP-SGSN-MCC-MNC, inside
/// Service-Information / PS-Information or at the top level.
fn visited_country(request: &Message) -> Option<Country> {
    let from = |avps: &[Avp]| wire::find_vendor(avps, code::SGSN_MCC_MNC_3GPP, wire::VENDOR_3GPP).and_then(|a| a.as_text().map(String::from));
    let nested = wire::find_vendor(&request.avps, code::SERVICE_INFORMATION, wire::VENDOR_3GPP)
        .and_then(|s| s.members().ok())
        .and_then(|s| wire::find_vendor(&s, code::PS_INFORMATION, wire::VENDOR_3GPP).and_then(|p| p.members().ok()))
        .and_then(|p| from(&p));
    let text = nested.or_else(|| from(&request.avps))?;
    rollover_net::mcc::country_of_mcc_mnc(&text).and_then(|c| Country::parse(c).ok())
}

fn rand_seed() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.subsec_nanos())
}

/// Reads one whole message: `None` at a clean end of stream.
async fn read_message(reader: &mut (impl AsyncReadExt + Unpin)) -> Result<Option<Vec<u8>>, String> {
    let mut start = [0u8; 4];
    match reader.read_exact(&mut start).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let length = wire::declared_length(&start).map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; length];
    bytes[..4].copy_from_slice(&start);
    reader.read_exact(&mut bytes[4..]).await.map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}
