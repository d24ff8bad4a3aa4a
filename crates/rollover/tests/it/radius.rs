//! RADIUS accounting and dynamic authorization against real FreeRADIUS
//! tools: `radclient` plays the packet gateway, the FreeRADIUS server plays
//! the NAS that takes CoA and Disconnect requests. Balances are read back
//! through the REST API.


use std::net::UdpSocket;
use std::time::Duration;

use crate::network::{CoaNas, radclient};
use rollover_net::radius::{self as wire, Packet};
use serde_json::json;
use crate::server::{Backend, Server, TestStore};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const SECRET: &str = "s3cret-for-tests";

const PLANS: &str = include_str!("fixtures/radius-plans.toml");

fn config(extra: &str) -> String {
    format!("[radius]\nlisten = \"127.0.0.1:0\"\nclients = [{{ address = \"127.0.0.0/8\", secret = \"{SECRET}\" }}]\n{extra}")
}

fn prepare(server: &Server, subscriptions: &[(&str, &str, &str, &str)]) {
    assert_eq!(server.post_raw("/v1/plans", "application/toml", PLANS).status, 201);
    server.set_clock("2026-05-01T00:00:00Z");
    for (id, plan, imsi, msisdn) in subscriptions {
        let reply = server.post("/v1/subscriptions", &json!({"id": id, "plan": plan, "identifiers": {"imsi": imsi, "msisdn": msisdn}}));
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    server.set_clock("2026-05-02T00:00:00Z");
}

fn remaining(server: &Server, id: &str) -> u64 {
    server.get(&format!("/v1/subscriptions/{id}/balance")).body["total_bytes"].as_u64().expect("a balance")
}

fn metric(server: &Server, line_start: &str) -> u64 {
    let text = server.get("/metrics").body.as_str().expect("metrics text").to_string();
    let line = text.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("no metric {line_start} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// One accounting packet in radclient's syntax.
fn packet(status: &str, session: &str, identity: &str, total: u64, visited: &str) -> String {
    let (gigawords, octets) = (total >> 32, total & 0xffff_ffff);
    // Split across directions as a gateway would; each direction has its own gigawords.
    let input = octets / 3;
    let output = octets - input;
    format!(
        "Acct-Status-Type = {status}\nAcct-Session-Id = \"{session}\"\nNAS-IP-Address = 127.0.0.1\n{identity}\n3GPP-SGSN-MCC-MNC = \"{visited}\"\nAcct-Input-Octets = {input}\nAcct-Input-Gigawords = {gigawords}\nAcct-Output-Octets = {output}\nAcct-Output-Gigawords = 0\n"
    )
}

const IMSI: &str = "3GPP-IMSI = \"460001234567890\"";

fn counters_from_radclient_are_rated_by_their_growth(backend: Backend) {
    let server = Server::start_configured(backend, &config(""), &[]);
    let radius = server.radius.expect("the RADIUS listener is on");
    prepare(&server, &[("cn", "cn-10g", "460001234567890", "8613800000001")]);
    let full = 10 * GIB;
    assert_eq!(remaining(&server, "cn"), full);

    // Start, then an Interim past 4 GiB: gigawords count.
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "s1", IMSI, 0, "46000"), packet("Interim-Update", "s1", IMSI, (1 << 32) + 3000, "46000")].join("\n"));
    assert!(sent.success, "radclient: {}{}", sent.stdout, sent.stderr);
    assert_eq!(sent.stdout.matches("Received Accounting-Response").count(), 2, "{}", sent.stdout);
    assert_eq!(remaining(&server, "cn"), full - (1 << 32) - 3000);

    // Cumulative: the next Interim rates only the growth.
    let sent = radclient(radius, "acct", SECRET, &packet("Interim-Update", "s1", IMSI, (1 << 32) + 3000 + 5 * MIB, "46000"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), full - (1 << 32) - 3000 - 5 * MIB);

    // A counter that goes backwards is answered, logged and not rated.
    let before = remaining(&server, "cn");
    let sent = radclient(radius, "acct", SECRET, &packet("Interim-Update", "s1", IMSI, 1000, "46000"));
    assert!(sent.success, "answered all the same: {}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), before);

    // The subscription found by Calling-Station-Id (the MSISDN, here with a +),
    // and a Stop ends the session; an Interim after it is not rated.
    let by_msisdn = "Calling-Station-Id = \"+8613800000001\"";
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "s2", by_msisdn, 0, "45400"), packet("Stop", "s2", by_msisdn, 7 * MIB, "45400")].join("\n"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), before - 7 * MIB, "usage in Hong Kong (MCC 454) is covered");
    let sent = radclient(radius, "acct", SECRET, &packet("Interim-Update", "s2", by_msisdn, 9 * MIB, "45400"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), before - 7 * MIB, "an Interim after Stop is not rated");
    assert_eq!(metric(&server, "rollover_usage_records_total{outcome=\"rejected\",reason=\"counter_not_rated\"}"), 2);

    // Abroad (MCC 310, the United States) the plan does not cover: rejected, not drawn.
    let before = remaining(&server, "cn");
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "s3", IMSI, 0, "310260"), packet("Interim-Update", "s3", IMSI, 2 * MIB, "310260")].join("\n"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), before);
    assert_eq!(server.get("/v1/subscriptions/cn/balance").body["rejected_bytes"], 2 * MIB);

    // A wrong secret: dropped unanswered, nothing rated, counted.
    let sent = crate::network::radclient_waiting(radius, "acct", "not-the-secret", &packet("Interim-Update", "s1", IMSI, (2 << 32) + 1, "46000"), 1);
    assert!(!sent.success, "radclient gets no answer: {}", sent.stdout);
    assert!(sent.stdout.contains("No reply"), "{}", sent.stdout);
    assert_eq!(remaining(&server, "cn"), before);
    assert_eq!(metric(&server, "rollover_radius_packets_total{outcome=\"bad_authenticator\"}"), 1);

    // An unknown subscriber is answered (the NAS would only retry) and counted.
    let sent = radclient(radius, "acct", SECRET, &packet("Start", "s9", "3GPP-IMSI = \"001010000000009\"", 0, "46000"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(metric(&server, "rollover_radius_packets_total{outcome=\"unknown_subscriber\"}"), 1);

    // Found by User-Name alone (here the IMSI); then the NAS's
    // Accounting-Off closes its sessions, and a late Interim is not rated.
    let by_user = "User-Name = \"460001234567890\"";
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "s4", by_user, 0, "46000"), packet("Interim-Update", "s4", by_user, 3 * MIB, "46000")].join("\n"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), before - 3 * MIB);
    let sent = radclient(radius, "acct", SECRET, "Acct-Status-Type = Accounting-Off\nNAS-IP-Address = 127.0.0.1\n");
    assert!(sent.success, "{}", sent.stderr);
    let sent = radclient(radius, "acct", SECRET, &packet("Interim-Update", "s4", by_user, 6 * MIB, "46000"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(remaining(&server, "cn"), before - 3 * MIB);
    assert_eq!(metric(&server, "rollover_usage_records_total{outcome=\"rejected\",reason=\"counter_not_rated\"}"), 3);

    // The ledger names each draw; the Stop with nothing new is a note.
    let ledger = server.get("/v1/subscriptions/cn/ledger?limit=1000").body;
    let drawn: u64 = ledger["entries"].as_array().unwrap().iter().filter(|e| e["type"] == "drawn").map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!(drawn, (1 << 32) + 3000 + 5 * MIB + 7 * MIB + 3 * MIB);
}

/// Retransmissions, malformed packets and restarts, with packets made by
/// hand so that the same octets can be sent twice.
fn retransmissions_are_answered_once_rated_and_counters_survive_a_restart(backend: Backend) {
    let store = TestStore::new(backend);
    let config = config("");
    let log = std::env::temp_dir().join(format!("rollover-radius-log-{}-{}.txt", std::process::id(), store.url.len()));
    let server = Server::start_logging(&store, &config, &[("ROLLOVER_LOG", "info")], &log);
    prepare(&server, &[("cn", "cn-10g", "460001234567890", "8613800000001")]);
    let full = 10 * GIB;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let interim_of = |session: &str, identifier: u8, total: u64| {
        let attributes = vec![
            (wire::ACCT_STATUS_TYPE, 3u32.to_be_bytes().to_vec()),
            (wire::ACCT_SESSION_ID, session.as_bytes().to_vec()),
            (wire::NAS_IP_ADDRESS, vec![127, 0, 0, 1]),
            (wire::ACCT_INPUT_OCTETS, ((total & 0xffff_ffff) as u32).to_be_bytes().to_vec()),
            (wire::ACCT_INPUT_GIGAWORDS, ((total >> 32) as u32).to_be_bytes().to_vec()),
            Packet::vendor_attribute(wire::VENDOR_3GPP, wire::VSA_3GPP_IMSI, b"460001234567890"),
        ];
        wire::sign_request(Packet { code: wire::ACCOUNTING_REQUEST, identifier, authenticator: [0; 16], attributes }, SECRET.as_bytes())
    };
    let interim = |identifier: u8, total: u64| interim_of("sess-r", identifier, total);
    // Every counter and gigaword at 2^32-1 would be about 1.8e19 bytes: more
    // than one report may carry, so it is answered and not rated. Its
    // session id holds a newline, which must not forge a log line.
    let saturated = wire::sign_request(
        Packet {
            code: wire::ACCOUNTING_REQUEST,
            identifier: 200,
            authenticator: [0; 16],
            attributes: vec![
                (wire::ACCT_STATUS_TYPE, 3u32.to_be_bytes().to_vec()),
                (wire::ACCT_SESSION_ID, b"sess-x\nERROR forged line".to_vec()),
                (wire::NAS_IP_ADDRESS, vec![127, 0, 0, 1]),
                (wire::ACCT_INPUT_OCTETS, u32::MAX.to_be_bytes().to_vec()),
                (wire::ACCT_INPUT_GIGAWORDS, u32::MAX.to_be_bytes().to_vec()),
                (wire::ACCT_OUTPUT_OCTETS, u32::MAX.to_be_bytes().to_vec()),
                (wire::ACCT_OUTPUT_GIGAWORDS, u32::MAX.to_be_bytes().to_vec()),
                Packet::vendor_attribute(wire::VENDOR_3GPP, wire::VSA_3GPP_IMSI, b"460001234567890"),
            ],
        },
        SECRET.as_bytes(),
    );
    let radius = server.radius.unwrap();
    assert_eq!(exchange(&socket, radius, &saturated)[0], wire::ACCOUNTING_RESPONSE);
    assert_eq!(remaining(&server, "cn"), full, "not rated");
    assert_eq!(server.get("/v1/subscriptions/cn/balance").body["throttled_bytes"], 0);
    assert_eq!(metric(&server, "rollover_usage_records_total{outcome=\"rejected\",reason=\"too_large\"}"), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("sess-x\\nERROR forged line"), "the newline is escaped: {text}");
    assert!(!text.lines().any(|line| line.starts_with("ERROR forged")), "no forged line: {text}");
    let first = interim(1, 50 * MIB);
    let answer = exchange(&socket, radius, &first);
    let request = Packet::decode(&first).unwrap();
    assert_eq!(answer[0], wire::ACCOUNTING_RESPONSE);
    assert!(wire::response_authentic(&answer, &request.authenticator, SECRET.as_bytes()));
    assert_eq!(remaining(&server, "cn"), full - 50 * MIB);
    // The same octets again: the same answer, rated once.
    assert_eq!(exchange(&socket, radius, &first), answer);
    assert_eq!(remaining(&server, "cn"), full - 50 * MIB);
    assert_eq!(metric(&server, "rollover_radius_packets_total{outcome=\"retransmission_answered\"}"), 1);
    // Garbage and truncated packets are dropped and counted.
    socket.send_to(&[4, 1, 0, 200, 9, 9], radius).unwrap();
    socket.send_to(&first[..first.len() - 3], radius).unwrap();
    let started = std::time::Instant::now();
    while metric(&server, "rollover_radius_packets_total{outcome=\"malformed\"}") < 2 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&server, "rollover_radius_packets_total{outcome=\"malformed\"}"), 2);
    // A second session, silent after the restart.
    exchange(&socket, radius, &interim_of("sess-s", 9, MIB));
    drop(server.kill());

    // After a crash, the session's counter is known from the log: a new
    // Identifier with the same counter rates nothing, a higher one only the growth.
    let server = Server::start_on_configured(&store, &config, &[]);
    let radius = server.radius.unwrap();
    let full = full - MIB;
    assert_eq!(remaining(&server, "cn"), full - 50 * MIB);
    exchange(&socket, radius, &interim(2, 50 * MIB));
    assert_eq!(remaining(&server, "cn"), full - 50 * MIB);
    exchange(&socket, radius, &interim(3, 80 * MIB));
    assert_eq!(remaining(&server, "cn"), full - 80 * MIB);

    // Accounting-On from the NAS closes its sessions, including the one
    // known only from the log: later reports of them are not rated.
    let on = wire::sign_request(
        Packet {
            code: wire::ACCOUNTING_REQUEST,
            identifier: 4,
            authenticator: [0; 16],
            attributes: vec![(wire::ACCT_STATUS_TYPE, 7u32.to_be_bytes().to_vec()), (wire::NAS_IP_ADDRESS, vec![127, 0, 0, 1])],
        },
        SECRET.as_bytes(),
    );
    assert_eq!(exchange(&socket, radius, &on)[0], wire::ACCOUNTING_RESPONSE);
    exchange(&socket, radius, &interim(5, 90 * MIB));
    exchange(&socket, radius, &interim_of("sess-s", 6, 2 * MIB));
    assert_eq!(remaining(&server, "cn"), full - 80 * MIB);
    let ledger = server.get("/v1/subscriptions/cn/ledger?type=network").body;
    let mut notes: Vec<&str> = ledger["entries"].as_array().unwrap().iter().map(|e| e["note"].as_str().unwrap()).collect();
    notes.sort();
    assert_eq!(notes, ["RADIUS session 127.0.0.1/sess-r stopped at 83886080 octets", "RADIUS session 127.0.0.1/sess-s stopped at 1048576 octets"], "{ledger}");
}

#[track_caller]
fn exchange(socket: &UdpSocket, radius: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    socket.send_to(bytes, radius).unwrap();
    let mut buffer = [0u8; 4096];
    let (length, _) = socket.recv_from(&mut buffer).expect("an Accounting-Response");
    buffer[..length].to_vec()
}

/// Throttle, restore and disconnect reach a real FreeRADIUS acting as the
/// NAS, and its answers are in the ledger.
fn status_changes_send_coa_and_disconnect_to_the_nas(backend: Backend) {
    let nas = CoaNas::start("nas-secret");
    // A second NAS that never answers.
    let silent = std::net::SocketAddr::from(([127, 0, 0, 1], crate::network::free_port()));
    let config = config(&format!(
        "coa_timeout_ms = 1000\ncoa_attempts = 2\n[[radius.nas]]\naddress = \"127.0.0.1\"\ncoa_address = \"{}\"\nsecret = \"nas-secret\"\nvendor = \"mikrotik\"\n\
         [[radius.nas]]\naddress = \"127.0.0.2\"\ncoa_address = \"{silent}\"\nsecret = \"other-secret\"\nvendor = \"mikrotik\"\n",
        nas.address
    ));
    let server = Server::start_configured(backend, &config, &[]);
    let radius = server.radius.unwrap();
    prepare(
        &server,
        &[
            ("t", "tiny-throttle", "262010000000001", "491700000001"),
            ("n", "tiny-throttle", "262010000000002", "491700000002"),
            ("q", "tiny-throttle", "262010000000003", "491700000003"),
            ("p", "pass-7d", "262010000000004", "491700000004"),
        ],
    );
    let identity = "3GPP-IMSI = \"262010000000001\"\nUser-Name = \"alice\"\nFramed-IP-Address = 10.0.0.7";
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "t-1", identity, 0, "26201"), packet("Interim-Update", "t-1", identity, 120 * MIB, "26201")].join("\n"));
    assert!(sent.success, "{}", sent.stderr);
    assert_eq!(server.get("/v1/subscriptions/t/balance").body["status"], "throttled");
    let received = nas.wait_for(1);
    let fields: Vec<&str> = received[0].split('\t').collect();
    assert_eq!((fields[0], fields[1]), ("CoA-Request", "CoA-ACK"), "{received:?}");
    assert!(fields[5].contains("Acct-Session-Id = \"t-1\""), "{}", fields[5]);
    assert!(fields[5].contains("User-Name = \"alice\""), "{}", fields[5]);
    assert!(fields[5].contains("Framed-IP-Address = 10.0.0.7"), "{}", fields[5]);
    assert!(fields[5].contains("Mikrotik-Rate-Limit = \"128k/128k\""), "the plan's throttle rate: {}", fields[5]);

    // Data added: full speed again.
    let reply = server.post("/v1/subscriptions/t/events", &json!({"grant": {"kind": "gift", "data": "1GiB", "expires": "period_end"}}));
    assert!(reply.status < 300, "{}", reply.body);
    let received = nas.wait_for(2);
    assert!(received[1].starts_with("CoA-Request\tCoA-ACK") && received[1].contains("Mikrotik-Rate-Limit = \"0/0\""), "{}", received[1]);

    // Cancelled: disconnected.
    let reply = server.post("/v1/subscriptions/t/events", &json!({"cancel": true}));
    assert!(reply.status < 300, "{}", reply.body);
    let received = nas.wait_for(3);
    assert!(received[2].starts_with("Disconnect-Request\tDisconnect-ACK") && received[2].contains("Acct-Session-Id = \"t-1\""), "{}", received[2]);

    // A NAS that refuses: the NAK and its cause are recorded.
    let identity = "3GPP-IMSI = \"262010000000002\"";
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "nak-me", identity, 0, "26201"), packet("Interim-Update", "nak-me", identity, 150 * MIB, "26201")].join("\n"));
    assert!(sent.success, "{}", sent.stderr);
    let received = nas.wait_for(4);
    assert!(received[3].starts_with("CoA-Request\tCoA-NAK"), "{}", received[3]);

    // The NAS at 127.0.0.2 never answers: sent again once, then given up.
    let identity = "3GPP-IMSI = \"262010000000003\"";
    let on_second_nas = [packet("Start", "q-1", identity, 0, "26201"), packet("Interim-Update", "q-1", identity, 150 * MIB, "26201")].join("\n").replace("127.0.0.1", "127.0.0.2");
    let sent = radclient(radius, "acct", SECRET, &on_second_nas);
    assert!(sent.success, "{}", sent.stderr);

    // A pass that runs out of time: its expiry, found by the boundary
    // timer, disconnects the session.
    let identity = "3GPP-IMSI = \"262010000000004\"";
    let sent = radclient(radius, "acct", SECRET, &[packet("Start", "p-1", identity, 0, "26201"), packet("Interim-Update", "p-1", identity, MIB, "26201")].join("\n"));
    assert!(sent.success, "{}", sent.stderr);
    server.set_clock("2026-05-09T00:00:00Z");
    assert_eq!(server.get("/v1/subscriptions/p/balance").body["status"], "expired");
    let received = nas.wait_for(5);
    assert!(received[4].starts_with("Disconnect-Request\tDisconnect-ACK") && received[4].contains("Acct-Session-Id = \"p-1\""), "{}", received[4]);

    // Every outcome is in the ledger, once written.
    let notes = |id: &str| -> Vec<String> {
        let ledger = server.get(&format!("/v1/subscriptions/{id}/ledger?type=network")).body;
        ledger["entries"].as_array().unwrap().iter().map(|e| e["note"].as_str().unwrap().to_string()).collect()
    };
    let started = std::time::Instant::now();
    while (notes("t").len() < 3 || notes("n").is_empty() || notes("q").is_empty() || notes("p").is_empty()) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let nas_address = nas.address;
    assert_eq!(
        notes("t"),
        vec![
            format!("CoA-Request (throttle to 128 kbit/s) for session t-1 to NAS {nas_address}: ACK"),
            format!("CoA-Request (restore full speed) for session t-1 to NAS {nas_address}: ACK"),
            format!("Disconnect-Request (disconnect) for session t-1 to NAS {nas_address}: ACK"),
        ]
    );
    assert_eq!(notes("n"), vec![format!("CoA-Request (throttle to 128 kbit/s) for session nak-me to NAS {nas_address}: NAK, Error-Cause 503")]);
    assert_eq!(notes("p"), vec![format!("Disconnect-Request (disconnect) for session p-1 to NAS {nas_address}: ACK")]);
    assert_eq!(notes("q"), vec![format!("CoA-Request (throttle to 128 kbit/s) for session q-1 to NAS {silent}: no answer after 2 attempts")]);
    assert_eq!(metric(&server, "rollover_radius_dynamic_authorization_total{outcome=\"coa_nak\"}"), 1);
    assert_eq!(metric(&server, "rollover_radius_dynamic_authorization_total{outcome=\"no_answer\"}"), 1);
}

/// An Interim-Update of session `crash-{i}` (IMSI 4600000000000{i}).
fn crash_interim(i: usize, total: u64, identifier: u8) -> Vec<u8> {
    let attributes = vec![
        (wire::ACCT_STATUS_TYPE, 3u32.to_be_bytes().to_vec()),
        (wire::ACCT_SESSION_ID, format!("crash-{i}").into_bytes()),
        (wire::NAS_IP_ADDRESS, vec![127, 0, 0, 1]),
        (wire::ACCT_INPUT_OCTETS, (total as u32).to_be_bytes().to_vec()),
        Packet::vendor_attribute(wire::VENDOR_3GPP, wire::VSA_3GPP_IMSI, format!("4600000000000{i:02}").as_bytes()),
    ];
    wire::sign_request(Packet { code: wire::ACCOUNTING_REQUEST, identifier, authenticator: [0; 16], attributes }, SECRET.as_bytes())
}

/// kill -9 while a gateway streams Interim-Updates: every answered counter
/// is in the balance after the restart, nothing beyond what was sent, and
/// the next report brings each balance to exactly what the NAS counted.
fn answered_counters_survive_kill_9(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = TestStore::new(backend);
    let config = config("");
    let server = Server::start_on_configured(&store, &config, &[]);
    let subscriptions: Vec<(String, String, String, String)> =
        (0..16).map(|i| (format!("k{i}"), "cn-10g".to_string(), format!("4600000000000{i:02}"), format!("86138000000{i:02}"))).collect();
    let borrowed: Vec<(&str, &str, &str, &str)> = subscriptions.iter().map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str())).collect();
    prepare(&server, &borrowed);
    let radius = server.radius.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Four gateways, four sessions each; each report adds 1,000 + i octets.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut sent = [0u64; 4];
                let mut answered = [0u64; 4];
                let mut identifier: u8 = 0;
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    for k in 0..4 {
                        let i = t * 4 + k;
                        let total = round * (1000 + i as u64);
                        identifier = identifier.wrapping_add(1);
                        let bytes = crash_interim(i, total, identifier);
                        sent[k] = total;
                        let _ = socket.send_to(&bytes, radius);
                        let mut buffer = [0u8; 64];
                        if let Ok((length, _)) = socket.recv_from(&mut buffer)
                            && length >= 20
                            && buffer[1] == identifier
                            && wire::response_authentic(&buffer[..length], bytes[4..20].try_into().unwrap(), SECRET.as_bytes())
                        {
                            answered[k] = total;
                        }
                    }
                }
                (t, sent, answered)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    drop(server.kill());
    stop.store(true, Ordering::Relaxed);
    let mut sent = [0u64; 16];
    let mut answered = [0u64; 16];
    for thread in threads {
        let (t, s, a) = thread.join().unwrap();
        sent[t * 4..t * 4 + 4].copy_from_slice(&s);
        answered[t * 4..t * 4 + 4].copy_from_slice(&a);
    }
    assert!(answered.iter().all(|a| *a > 0), "every gateway had answers before the kill: {answered:?}");
    let server = Server::start_on_configured(&store, &config, &[]);
    let radius = server.radius.unwrap();
    let full = 10 * GIB;
    for (i, (answered, sent)) in answered.iter().zip(&sent).enumerate() {
        let drawn = full - remaining(&server, &format!("k{i}"));
        assert!(*answered <= drawn && drawn <= *sent, "session {i}: answered {answered} <= drawn {drawn} <= sent {sent}");
    }
    // One more report each: the balances meet the NAS's counters exactly.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (i, sent) in sent.iter().enumerate() {
        let total = sent + 1000;
        exchange(&socket, radius, &crash_interim(i, total, i as u8));
        assert_eq!(full - remaining(&server, &format!("k{i}")), total, "session {i}");
    }
}

on_both_stores!(
    counters_from_radclient_are_rated_by_their_growth,
    retransmissions_are_answered_once_rated_and_counters_survive_a_restart,
    status_changes_send_coa_and_disconnect_to_the_nas,
    answered_counters_survive_kill_9,
);
