//! `rollover bench radius` and `rollover bench diameter`: a separate server
//! process with the network listeners on a fresh store, driven from this
//! process the way a packet gateway drives it, every answer waited for.
//! Figures are printed at the end; nothing here asserts a speed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant as WallClock};

use rollover_net::diameter::{self as dia, Avp, Message, code, command};
use rollover_net::radius::{self as wire, Packet};

use crate::loadgen::{self, bench_imsi};

#[derive(clap::Args)]
pub struct RadiusBench {
    /// "sqlite" or "postgres".
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Subscriptions, one accounting session each.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Interim-Updates to send in all.
    #[arg(long, default_value_t = 500_000)]
    packets: usize,
    /// Sending sockets (each one a NAS port), one thread each.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Requests each client keeps waiting for an answer (at most 255).
    #[arg(long, default_value_t = 128)]
    window: usize,
}

#[derive(clap::Args)]
pub struct DiameterBench {
    /// "sqlite" or "postgres".
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Subscriptions, one credit-control session each.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// CCR-Updates to send in all.
    #[arg(long, default_value_t = 200_000)]
    requests: usize,
    /// TCP connections (peers), one writer and one reader thread each.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests each connection keeps waiting for an answer.
    #[arg(long, default_value_t = 256)]
    window: usize,
}

const SECRET: &str = "bench-secret-0123456789";

fn report(what: &str, count: usize, seconds: f64, latencies: &mut [Duration], extra: &str) {
    latencies.sort();
    println!(
        "{what}: {count} in {seconds:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{extra}",
        count as f64 / seconds,
        loadgen::percentile(latencies, 0.50),
        loadgen::percentile(latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}

pub fn radius(options: RadiusBench) -> ExitCode {
    match run_radius(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rollover bench radius: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_radius(o: &RadiusBench) -> Result<(), String> {
    if !(1..=255).contains(&o.window) || o.clients == 0 || o.sessions < o.clients {
        return Err("--window must be 1 to 255, --clients at least 1 and at most --sessions".into());
    }
    let (url, cleanup) = loadgen::store_url(&o.store, "radius")?;
    let server = loadgen::start_server_with(&url, "wall", cleanup, &[("ROLLOVER_RADIUS_LISTEN", "127.0.0.1:0"), ("ROLLOVER_RADIUS_SECRET", SECRET)])?;
    let target = server.radius.ok_or("the server did not start its RADIUS listener")?;
    let agent = loadgen::agent();
    loadgen::post(&agent, &format!("{}/v1/plans", server.base), "application/toml", loadgen::PLANS.to_string())?;
    let created = loadgen::create_subscriptions_with(&server.base, "bench", "s", o.sessions, true)?;
    println!("{} subscriptions with an IMSI each created in {:.1} s; {} clients, {} in flight each", o.sessions, created.as_secs_f64(), o.clients, o.window);
    // Build every packet before the clock starts: client t owns the
    // sessions t, t + clients, ...; each Interim adds 1,000 octets.
    let per_client = o.packets / o.clients;
    let plans: Vec<Vec<Vec<u8>>> = (0..o.clients)
        .map(|t| {
            let owned: Vec<usize> = (t..o.sessions).step_by(o.clients).collect();
            (0..per_client)
                .map(|j| {
                    let session = owned[j % owned.len()];
                    let total = ((j / owned.len()) as u64 + 1) * 1000;
                    let attributes = vec![
                        (wire::ACCT_STATUS_TYPE, 3u32.to_be_bytes().to_vec()),
                        (wire::ACCT_SESSION_ID, format!("bench-{session}").into_bytes()),
                        (wire::NAS_IP_ADDRESS, vec![127, 0, 0, 1]),
                        (wire::ACCT_INPUT_OCTETS, (total as u32).to_be_bytes().to_vec()),
                        (wire::ACCT_OUTPUT_OCTETS, 0u32.to_be_bytes().to_vec()),
                        Packet::vendor_attribute(wire::VENDOR_3GPP, wire::VSA_3GPP_IMSI, bench_imsi(session).as_bytes()),
                    ];
                    wire::sign_request(Packet { code: wire::ACCOUNTING_REQUEST, identifier: (j % 256) as u8, authenticator: [0; 16], attributes }, SECRET.as_bytes())
                })
                .collect()
        })
        .collect();
    let before = loadgen::commit_totals(&agent, &server.base);
    let started = WallClock::now();
    let window = o.window;
    let threads: Vec<_> = plans.into_iter().map(|packets| std::thread::spawn(move || radius_client(target, packets, window))).collect();
    let mut latencies = Vec::new();
    let mut resent = 0;
    for thread in threads {
        let (l, r) = thread.join().map_err(|_| "a client thread panicked")??;
        latencies.extend(l);
        resent += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = loadgen::commit_totals(&agent, &server.base);
    report("RADIUS Interim-Updates answered (durable)", latencies.len(), seconds, &mut latencies, &format!("; {resent} sent again after 1 s without an answer"));
    println!("{}", loadgen::commit_summary(before, after));
    // Check: every packet's growth was rated once, none twice.
    let metrics = loadgen::get(&agent, &format!("{}/metrics", server.base))?;
    let value = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default();
    println!(
        "server counted: {} usage records accepted, {} duplicates, {} retransmissions answered again",
        value("rollover_usage_records_total{outcome=\"accepted\"}"),
        value("rollover_usage_records_total{outcome=\"duplicate\"}"),
        value("rollover_radius_packets_total{outcome=\"retransmission_answered\"}")
    );
    Ok(())
}

/// Sends `packets` in order keeping `window` unanswered; a packet unanswered
/// for a second is sent again. Returns each answer's latency and the resends.
fn radius_client(target: SocketAddr, packets: Vec<Vec<u8>>, window: usize) -> Result<(Vec<Duration>, usize), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    let mut sent_at: Vec<Option<WallClock>> = vec![None; packets.len()];
    let mut done = vec![false; packets.len()];
    let mut latencies = Vec::with_capacity(packets.len());
    let (mut next, mut oldest, mut waiting, mut resent) = (0usize, 0usize, 0usize, 0usize);
    let mut buffer = [0u8; 4096];
    while oldest < packets.len() {
        // Identifiers repeat every 256 packets: never two of one in flight.
        while waiting < window && next < packets.len() && next < oldest + 256 {
            socket.send_to(&packets[next], target).map_err(|e| e.to_string())?;
            sent_at[next] = Some(WallClock::now());
            next += 1;
            waiting += 1;
        }
        match socket.recv_from(&mut buffer) {
            Ok((length, _)) if length >= 20 && buffer[0] == wire::ACCOUNTING_RESPONSE => {
                let identifier = buffer[1] as usize;
                // The packet in flight with this identifier.
                let index = (oldest..next).find(|&i| i % 256 == identifier && !done[i]);
                if let Some(index) = index {
                    done[index] = true;
                    waiting -= 1;
                    latencies.push(sent_at[index].expect("sent").elapsed());
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                for i in oldest..next {
                    if !done[i] && sent_at[i].is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
                        socket.send_to(&packets[i], target).map_err(|e| e.to_string())?;
                        resent += 1;
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        }
        while oldest < next && done[oldest] {
            oldest += 1;
        }
    }
    Ok((latencies, resent))
}

pub fn diameter(options: DiameterBench) -> ExitCode {
    match run_diameter(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rollover bench diameter: {error}");
            ExitCode::FAILURE
        }
    }
}

fn ccr(session: &str, kind: u32, number: u32, imsi: &str, used: u64, hop: u32) -> Vec<u8> {
    let mut avps = vec![
        Avp::text(code::SESSION_ID, session),
        Avp::text(code::ORIGIN_HOST, "pgw.bench"),
        Avp::text(code::ORIGIN_REALM, "bench"),
        Avp::text(code::DESTINATION_REALM, "rollover.local"),
        Avp::u32(code::AUTH_APPLICATION_ID, dia::APP_CREDIT_CONTROL),
        Avp::text(code::SERVICE_CONTEXT_ID, "32251@3gpp.org"),
        Avp::u32(code::CC_REQUEST_TYPE, kind),
        Avp::u32(code::CC_REQUEST_NUMBER, number),
        Avp::grouped(code::SUBSCRIPTION_ID, &[Avp::u32(code::SUBSCRIPTION_ID_TYPE, 1), Avp::text(code::SUBSCRIPTION_ID_DATA, imsi)]),
    ];
    let mut mscc = vec![Avp::u32(code::RATING_GROUP, 10)];
    if kind != 3 {
        mscc.push(Avp::grouped(code::REQUESTED_SERVICE_UNIT, &[Avp::u64(code::CC_TOTAL_OCTETS, 1 << 20)]));
    }
    if used > 0 {
        mscc.push(Avp::grouped(code::USED_SERVICE_UNIT, &[Avp::u64(code::CC_TOTAL_OCTETS, used)]));
    }
    avps.push(Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, &mscc));
    Message { flags: dia::FLAG_REQUEST | dia::FLAG_PROXIABLE, command: command::CREDIT_CONTROL, application: dia::APP_CREDIT_CONTROL, hop_by_hop: hop, end_to_end: hop, avps }.encode()
}

fn read_message(stream: &mut impl Read) -> Result<Message, String> {
    let bytes = dia::read_message(stream).map_err(|e| format!("reading an answer: {e}"))?.ok_or("the server closed the connection")?;
    Message::decode(&bytes).map_err(|e| e.to_string())
}

fn run_diameter(o: &DiameterBench) -> Result<(), String> {
    if o.connections == 0 || o.window == 0 || o.sessions < o.connections {
        return Err("--connections and --window must be at least 1, and --sessions at least --connections".into());
    }
    let (url, cleanup) = loadgen::store_url(&o.store, "diameter")?;
    let server = loadgen::start_server_with(&url, "wall", cleanup, &[("ROLLOVER_DIAMETER_LISTEN", "127.0.0.1:0")])?;
    let target = server.diameter.ok_or("the server did not start its Diameter listener")?;
    let agent = loadgen::agent();
    loadgen::post(&agent, &format!("{}/v1/plans", server.base), "application/toml", loadgen::PLANS.to_string())?;
    let created = loadgen::create_subscriptions_with(&server.base, "bench", "s", o.sessions, true)?;
    println!("{} subscriptions with an IMSI each created in {:.1} s; {} connections, {} in flight each", o.sessions, created.as_secs_f64(), o.connections, o.window);
    // Each connection: CER, then CCR-I for its sessions, then the timed
    // CCR-Updates, then CCR-T and DPR.
    let per_connection = o.requests / o.connections;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
    let threads: Vec<_> = (0..o.connections)
        .map(|c| {
            let sessions: Vec<usize> = (c..o.sessions).step_by(o.connections).collect();
            let (ready_tx, go_rx, window) = (ready_tx.clone(), go_rx.clone(), o.window);
            std::thread::spawn(move || diameter_connection(target, c, sessions, per_connection, window, ready_tx, go_rx))
        })
        .collect();
    for _ in 0..o.connections {
        ready_rx.recv().map_err(|_| "a connection failed to open its sessions")?;
    }
    let before = loadgen::commit_totals(&agent, &server.base);
    let started = WallClock::now();
    for _ in 0..o.connections {
        go_tx.send(()).map_err(|_| "a connection stopped")?;
    }
    let mut latencies = Vec::new();
    let mut seconds = 0f64;
    let mut failures = 0;
    for thread in threads {
        let (l, s, f) = thread.join().map_err(|_| "a connection thread panicked")??;
        latencies.extend(l);
        seconds = seconds.max(s);
        failures += f;
    }
    let _ = started;
    let after = loadgen::commit_totals(&agent, &server.base);
    report("Diameter CCR-Updates answered (durable)", latencies.len(), seconds, &mut latencies, &format!("; {failures} answered other than 2001"));
    println!("{}", loadgen::commit_summary(before, after));
    Ok(())
}

type ConnectionResult = Result<(Vec<Duration>, f64, usize), String>;

fn diameter_connection(
    target: SocketAddr,
    number: usize,
    sessions: Vec<usize>,
    updates: usize,
    window: usize,
    ready: mpsc::Sender<()>,
    go: std::sync::Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
) -> ConnectionResult {
    let mut stream = TcpStream::connect(target).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let origin = format!("pgw{number}.bench");
    let cer = base_request(command::CAPABILITIES_EXCHANGE, 1, &origin, vec![
        Avp::address(code::HOST_IP_ADDRESS, std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        Avp::u32(code::VENDOR_ID, 0),
        Avp::text(code::PRODUCT_NAME, "rollover-bench"),
        Avp::u32(code::AUTH_APPLICATION_ID, dia::APP_CREDIT_CONTROL),
    ]);
    stream.write_all(&cer.encode()).map_err(|e| e.to_string())?;
    read_message(&mut stream)?;
    let name = |s: usize| format!("{origin};bench;{s}");
    // Open every session, many at a time.
    let opened = exchange_in_windows(&mut stream, &sessions, window, |s, k| ccr(&name(s), 1, 0, &bench_imsi(s), 0, k))?;
    if let Some(refused) = opened.iter().find(|code| **code != Some(2001)) {
        return Err(format!("CCR-I refused: {refused:?}"));
    }
    // Every update: its session, request number and bytes, built now.
    let requests: Vec<Vec<u8>> = (0..updates)
        .map(|j| {
            let s = sessions[j % sessions.len()];
            let request_number = (j / sessions.len()) as u32 + 1;
            ccr(&name(s), 2, request_number, &bench_imsi(s), 1000, j as u32)
        })
        .collect();
    ready.send(()).map_err(|_| "the bench stopped")?;
    go.lock().map_err(|_| "lock")?.recv().map_err(|_| "the bench stopped")?;
    let started = WallClock::now();
    let (latencies, failures) = pipelined(&mut stream, requests, window)?;
    let seconds = started.elapsed().as_secs_f64();
    // Close the sessions and say goodbye.
    exchange_in_windows(&mut stream, &sessions, window, |s, k| ccr(&name(s), 3, u32::MAX - 1, &bench_imsi(s), 0, k))?;
    let dpr = base_request(command::DISCONNECT_PEER, 2, &origin, vec![Avp::u32(code::DISCONNECT_CAUSE, 0)]);
    stream.write_all(&dpr.encode()).map_err(|e| e.to_string())?;
    read_message(&mut stream)?;
    Ok((latencies, seconds, failures))
}

/// A base-protocol request from the bench's peer `origin`.
fn base_request(command: u32, hop_by_hop: u32, origin: &str, more: Vec<Avp>) -> Message {
    let mut avps = vec![Avp::text(code::ORIGIN_HOST, origin), Avp::text(code::ORIGIN_REALM, "bench")];
    avps.extend(more);
    Message { flags: dia::FLAG_REQUEST, command, application: 0, hop_by_hop, end_to_end: hop_by_hop, avps }
}

/// Sends one request per session, `window` at a time, reading each
/// window's answers before the next; the answers' Result-Codes.
fn exchange_in_windows(stream: &mut TcpStream, sessions: &[usize], window: usize, request: impl Fn(usize, u32) -> Vec<u8>) -> Result<Vec<Option<u32>>, String> {
    let mut codes = Vec::with_capacity(sessions.len());
    for chunk in sessions.chunks(window) {
        for (k, &s) in chunk.iter().enumerate() {
            stream.write_all(&request(s, k as u32)).map_err(|e| e.to_string())?;
        }
        for _ in chunk {
            codes.push(read_message(stream)?.find(code::RESULT_CODE).and_then(Avp::as_u32));
        }
    }
    Ok(codes)
}

/// Sends `requests` keeping `window` in flight, a thread reading the
/// answers; each answer's latency, and how many were not 2001.
fn pipelined(stream: &mut TcpStream, requests: Vec<Vec<u8>>, window: usize) -> Result<(Vec<Duration>, usize), String> {
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(window);
    for _ in 0..window {
        token_tx.send(()).map_err(|_| "tokens")?;
    }
    let (sent_tx, sent_rx) = mpsc::channel::<(u32, WallClock)>();
    let total = requests.len();
    let collector = std::thread::spawn(move || -> Result<(Vec<Duration>, usize), String> {
        let mut sent: HashMap<u32, WallClock> = HashMap::new();
        let mut latencies = Vec::with_capacity(total);
        let mut failures = 0;
        while latencies.len() < total {
            let answer = read_message(&mut reader)?;
            while let Ok((hop, at)) = sent_rx.try_recv() {
                sent.insert(hop, at);
            }
            let at = match sent.remove(&answer.hop_by_hop) {
                Some(at) => at,
                None => {
                    // Sent but not yet recorded: wait for its record.
                    loop {
                        let (hop, at) = sent_rx.recv().map_err(|_| "the sender stopped")?;
                        if hop == answer.hop_by_hop {
                            break at;
                        }
                        sent.insert(hop, at);
                    }
                }
            };
            latencies.push(at.elapsed());
            if answer.find(code::RESULT_CODE).and_then(Avp::as_u32) != Some(2001) {
                failures += 1;
            }
            let _ = token_tx.send(());
        }
        Ok((latencies, failures))
    });
    for (j, request) in requests.iter().enumerate() {
        token_rx.recv().map_err(|_| "the reader stopped")?;
        let _ = sent_tx.send((j as u32, WallClock::now()));
        stream.write_all(request).map_err(|e| e.to_string())?;
    }
    collector.join().map_err(|_| "the reader panicked")?
}
