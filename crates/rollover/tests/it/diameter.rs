//! Diameter Gy against real peers nobody here wrote: `python-diameter` plays
//! the packet gateway, straight to rollover and through `freeDiameterd` as
//! a relay. Balances are read back through the REST API.


use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::network::{Scratch, free_port, peers_dir, python, write};
use rollover_net::diameter::{self as wire, Avp, Message, code, command, result};
use serde_json::{Value, json};
use crate::server::{Backend, Server};

const MIB: u64 = 1 << 20;

const MORE_PLANS: &str = include_str!("fixtures/diameter-more-plans.toml");

const CONFIG: &str = "[diameter]\nlisten = \"127.0.0.1:0\"\norigin_host = \"ocs.rollover.test\"\norigin_realm = \"rollover.test\"\n";

fn prepare(server: &Server) {
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &format!("{}\n{MORE_PLANS}", crate::server::SMALL_PLANS)).status, 201);
    server.set_clock("2026-05-01T00:00:00Z");
    for (id, plan, identifiers) in [
        ("block", "small-block", json!({"imsi": "262010000000001"})),
        ("throttle", "small-throttle", json!({"msisdn": "491700000002"})),
        ("china", "cn-10g", json!({"imsi": "460001234567890"})),
    ] {
        let reply = server.post("/v1/subscriptions", &json!({"id": id, "plan": plan, "identifiers": identifiers}));
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    server.set_clock("2026-05-02T00:00:00Z");
}

/// Runs `gy_client.py` with `steps`; one answer per step.
pub(crate) fn gy_client(port: u16, peer: (&str, &str), destination_realm: &str, steps: &Value) -> Vec<Value> {
    let scratch = Scratch::new("gy");
    let script = write(&scratch, "steps.json", &steps.to_string());
    let output = Command::new(python())
        .arg(peers_dir().join("gy_client.py"))
        .args(["--port", &port.to_string(), "--peer-host", peer.0, "--peer-realm", peer.1, "--dest-realm", destination_realm, "--timeout", "10", "--script"])
        .arg(&script)
        .output()
        .expect("gy_client.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "gy_client.py failed ({}): {stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    stdout.lines().map(|line| serde_json::from_str(line).expect("one JSON answer per line")).collect()
}

/// Runs `gy_client.py` with `steps` against a peer that may die or fall
/// silent: the answers it got before it stopped, one per step from the
/// first; never fails by itself.
pub(crate) fn gy_client_partial(port: u16, steps: &Value, timeout_seconds: u32) -> Vec<Value> {
    let scratch = Scratch::new("gy");
    let script = write(&scratch, "steps.json", &steps.to_string());
    let output = Command::new(python())
        .arg(peers_dir().join("gy_client.py"))
        .args(["--port", &port.to_string(), "--peer-host", "ocs.rollover.test", "--peer-realm", "rollover.test", "--dest-realm", "rollover.test"])
        .args(["--timeout", &timeout_seconds.to_string(), "--allow-no-dpa", "--script"])
        .arg(&script)
        .output()
        .expect("gy_client.py runs");
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn mscc(answer: &Value) -> &Value {
    &answer["mscc"][0]
}

fn grants_validity_final_units_and_4012(backend: Backend) {
    let server = Server::start_configured(backend, CONFIG, &[]);
    let port = server.diameter.expect("the Diameter listener is on").port();
    prepare(&server);
    let imsi = "262010000000001";
    let steps = json!([
        {"type": "initial", "session": "a", "imsi": imsi, "sgsn_mcc_mnc": "26201", "rating_group": 10, "requested_octets": 100 * MIB},
        {"type": "update", "session": "a", "imsi": imsi, "rating_group": 10, "used_octets": 100 * MIB, "requested_octets": 100 * MIB},
        {"type": "update", "session": "a", "imsi": imsi, "rating_group": 10, "used_octets": 100 * MIB, "requested_octets": 100 * MIB},
        {"repeat": true},
        {"type": "update", "session": "a", "imsi": imsi, "rating_group": 10, "used_octets": 50 * MIB, "requested_octets": 100 * MIB},
        {"type": "termination", "session": "a", "imsi": imsi, "rating_group": 10, "used_octets": 0},
        {"repeat": true},
    ]);
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &steps);
    assert_eq!(answers.len(), 7);
    // CCA-I: the grant, its validity and the threshold (20% by default).
    assert_eq!(answers[0]["result_code"], 2001, "{}", answers[0]);
    assert_eq!(mscc(&answers[0])["rating_group"], 10);
    assert_eq!(mscc(&answers[0])["granted_octets"], 100 * MIB);
    assert_eq!(mscc(&answers[0])["validity_time"], 900);
    assert_eq!(mscc(&answers[0])["volume_quota_threshold"], 20 * MIB);
    assert_eq!(mscc(&answers[0])["final_unit_action"], Value::Null);
    // After 200 MiB used, 50 MiB is left: the last grant says TERMINATE.
    assert_eq!(mscc(&answers[2])["granted_octets"], 50 * MIB, "{}", answers[2]);
    assert_eq!(mscc(&answers[2])["final_unit_action"], 0, "TERMINATE for a plan that blocks");
    // A repeated CC-Request-Number gets the first answer and is not rated again.
    assert_eq!(answers[3]["cc_request_number"], answers[2]["cc_request_number"]);
    assert_eq!(answers[3]["mscc"], answers[2]["mscc"]);
    // The last 50 MiB used: nothing left, 4012.
    assert_eq!(answers[4]["result_code"], 4012, "{}", answers[4]);
    assert_eq!(mscc(&answers[4])["result_code"], 4012);
    assert_eq!(mscc(&answers[4])["granted_octets"], Value::Null);
    assert_eq!(answers[5]["result_code"], 2001);
    assert_eq!(answers[6]["result_code"], 2001, "a repeated CCR-T gets its first answer: {}", answers[6]);
    let balance = server.get("/v1/subscriptions/block/balance").body;
    assert_eq!((balance["total_bytes"].as_u64(), balance["status"].as_str()), (Some(0), Some("depleted")), "{balance}");
    let ledger = server.get("/v1/subscriptions/block/ledger?type=drawn&limit=1000").body;
    let drawn: u64 = ledger["entries"].as_array().unwrap().iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!(drawn, 250 * MIB, "every reported byte drawn once: {ledger}");

    // By MSISDN (E.164), a plan that throttles: RESTRICT_ACCESS on the last grant.
    let steps = json!([
        {"type": "initial", "session": "b", "msisdn": "491700000002", "requested_octets": 200 * MIB},
        {"type": "termination", "session": "b", "msisdn": "491700000002", "used_octets": 30 * MIB},
    ]);
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &steps);
    assert_eq!(mscc(&answers[0])["granted_octets"], 100 * MIB, "{}", answers[0]);
    assert_eq!(mscc(&answers[0])["final_unit_action"], 2, "RESTRICT_ACCESS for a plan that throttles");
    assert_eq!(server.get("/v1/subscriptions/throttle/balance").body["total_bytes"], 70 * MIB);

    // Unknown subscriber: 5030. Outside the plan's countries: 5031.
    let steps = json!([
        {"type": "initial", "session": "c", "imsi": "001019999999999", "requested_octets": MIB},
        {"type": "initial", "session": "d", "imsi": "460001234567890", "sgsn_mcc_mnc": "310260", "rating_group": 1, "requested_octets": MIB},
        {"type": "initial", "session": "e", "imsi": "460001234567890", "sgsn_mcc_mnc": "46000", "rating_group": 1, "requested_octets": MIB},
    ]);
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &steps);
    assert_eq!(answers[0]["result_code"], 5030, "{}", answers[0]);
    assert_eq!(answers[1]["result_code"], 5031, "{}", answers[1]);
    assert_eq!(mscc(&answers[1])["result_code"], 5031);
    assert_eq!(answers[2]["result_code"], 2001, "{}", answers[2]);

    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    assert!(metrics.contains("rollover_diameter_messages_total{outcome=\"ccr_repeated\"} 2"), "{metrics}");
    assert!(metrics.contains("rollover_diameter_messages_total{outcome=\"dpr\"} 3"), "each client said goodbye: {metrics}");
}

/// A Gy session outlives a restart of the node: its next CCR-Update names
/// the subscriber, so the gateway takes it up and the service opens the
/// reservation again; a report made before the restart and sent again is
/// not rated twice; the termination's usage is rated.
fn a_session_outlives_a_restart(backend: Backend) {
    let server = Server::start_configured(backend, CONFIG, &[]);
    let port = server.diameter.unwrap().port();
    prepare(&server);
    let imsi = "262010000000001";
    let full = server.get("/v1/subscriptions/block/balance").body["total_bytes"].as_u64().unwrap();
    let id = "pgw.test;restart;1";
    let step = |kind: &str, number: u32, used: u64| {
        json!({"type": kind, "session": "r", "session_id": id, "request_number": number, "imsi": imsi, "rating_group": 10, "used_octets": used, "requested_octets": MIB})
    };
    let mut initial = step("initial", 0, 0);
    initial.as_object_mut().unwrap().remove("used_octets");
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &json!([initial, step("update", 1, MIB)]));
    assert_eq!((answers[0]["result_code"].as_u64(), answers[1]["result_code"].as_u64()), (Some(2001), Some(2001)), "{answers:?}");
    let store = server.kill().expect("the server owned its store");
    let server = Server::start_on_configured(&store, CONFIG, &[]);
    let port = server.diameter.unwrap().port();
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &json!([step("update", 1, MIB), step("update", 2, 2 * MIB), step("termination", 3, 3 * MIB)]));
    for answer in &answers {
        assert_eq!(answer["result_code"], 2001, "{answers:?}");
    }
    assert_eq!(mscc(&answers[1])["granted_octets"], MIB, "the reservation is open again");
    assert_eq!(server.get("/v1/subscriptions/block/balance").body["total_bytes"], full - 6 * MIB, "1 MiB once, 2 MiB and 3 MiB");
    // Without a Subscription-Id, a session nobody here knows is refused.
    let mut bare = step("update", 4, MIB);
    bare.as_object_mut().unwrap().remove("imsi");
    bare["session_id"] = json!("pgw.test;restart;2");
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &json!([bare]));
    assert_eq!(answers[0]["result_code"], 5002, "{answers:?}");
    assert_eq!(server.get("/v1/subscriptions/block/balance").body["total_bytes"], full - 6 * MIB);
}

/// Several rating groups in one session, a one-shot event, and a
/// subscription that may not use data.
fn rating_groups_events_and_denied_service(backend: Backend) {
    let server = Server::start_configured(backend, CONFIG, &[]);
    let port = server.diameter.unwrap().port();
    prepare(&server);
    let imsi = "460001234567890";
    let full = server.get("/v1/subscriptions/china/balance").body["total_bytes"].as_u64().unwrap();
    let steps = json!([
        {"type": "initial", "session": "m", "imsi": imsi, "sgsn_mcc_mnc": "46000",
         "mscc": [{"rating_group": 1, "requested_octets": MIB}, {"rating_group": 2, "requested_octets": 2 * MIB}]},
        {"type": "update", "session": "m", "imsi": imsi,
         "mscc": [{"rating_group": 1, "used_octets": 300, "requested_octets": MIB}, {"rating_group": 2, "used_input_octets": 400, "used_output_octets": 500}]},
        {"type": "termination", "session": "m", "imsi": imsi, "mscc": [{"rating_group": 1, "used_octets": 1000}]},
        {"type": "event", "session": "ev", "imsi": imsi, "sgsn_mcc_mnc": "46000", "rating_group": 3, "used_octets": 5 * MIB},
    ]);
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &steps);
    let groups = |answer: &Value| -> Vec<(u64, u64)> {
        answer["mscc"].as_array().unwrap().iter().map(|m| (m["rating_group"].as_u64().unwrap(), m["granted_octets"].as_u64().unwrap_or(0))).collect()
    };
    assert_eq!(groups(&answers[0]), vec![(1, MIB), (2, 2 * MIB)], "{}", answers[0]);
    assert_eq!(answers[1]["result_code"], 2001, "{}", answers[1]);
    assert_eq!(groups(&answers[1]), vec![(1, MIB), (2, 100 * MIB)], "an empty Requested-Service-Unit gets the default grant");
    assert_eq!(answers[2]["result_code"], 2001);
    assert_eq!(answers[3]["result_code"], 2001, "{}", answers[3]);
    // Used: 300 + 900 (input + output) + 1,000 at termination (rating group 2
    // closed with nothing more) + 5 MiB by the event.
    assert_eq!(server.get("/v1/subscriptions/china/balance").body["total_bytes"], full - 300 - 900 - 1000 - 5 * MIB);

    // A cancelled subscription: 4010, not 4012.
    assert!(server.post("/v1/subscriptions/block/events", &json!({"cancel": true})).status < 300);
    let steps = json!([{"type": "initial", "session": "x", "imsi": "262010000000001", "requested_octets": MIB}]);
    let answers = gy_client(port, ("ocs.rollover.test", "rollover.test"), "rollover.test", &steps);
    assert_eq!(answers[0]["result_code"], 4010, "{}", answers[0]);
    assert_eq!(mscc(&answers[0])["final_unit_action"], 0);
}

/// A hand-made peer: malformed and incomplete requests get the right
/// Result-Code, and a peer that does not start with a CER is cut off.
fn malformed_requests_get_protocol_answers(backend: Backend) {
    let server = Server::start_configured(backend, CONFIG, &[]);
    let address = server.diameter.unwrap();
    prepare(&server);
    let connect = || {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream
    };
    // A closed connection (or a reset) reads as no answer.
    let read = |stream: &mut TcpStream| -> Option<Message> { wire::read_message(stream).ok().flatten().map(|bytes| Message::decode(&bytes).unwrap()) };
    let request = |command_code: u32, application: u32, avps: Vec<Avp>| Message { flags: wire::FLAG_REQUEST, command: command_code, application, hop_by_hop: 7, end_to_end: 9, avps };
    let result_code = |message: &Message| message.find(code::RESULT_CODE).and_then(Avp::as_u32);

    // No CER first: the connection is closed without an answer.
    let mut stream = connect();
    stream.write_all(&request(command::DEVICE_WATCHDOG, 0, vec![]).encode()).unwrap();
    assert!(read(&mut stream).is_none());

    // A CER without the credit-control application: 5010, then closed.
    let mut stream = connect();
    let identity = vec![Avp::text(code::ORIGIN_HOST, "pgw.test"), Avp::text(code::ORIGIN_REALM, "test")];
    let mut cer = identity.clone();
    cer.push(Avp::u32(code::AUTH_APPLICATION_ID, 16777238));
    stream.write_all(&request(command::CAPABILITIES_EXCHANGE, 0, cer).encode()).unwrap();
    let cea = read(&mut stream).unwrap();
    assert_eq!(result_code(&cea), Some(result::NO_COMMON_APPLICATION));
    assert!(read(&mut stream).is_none());

    // A good CER; then a CCR without CC-Request-Number: 5005 naming it.
    let mut stream = connect();
    let mut cer = identity.clone();
    cer.push(Avp::u32(code::AUTH_APPLICATION_ID, wire::APP_CREDIT_CONTROL));
    stream.write_all(&request(command::CAPABILITIES_EXCHANGE, 0, cer).encode()).unwrap();
    let cea = read(&mut stream).unwrap();
    assert_eq!(result_code(&cea), Some(result::SUCCESS));
    assert_eq!(cea.find(code::ORIGIN_HOST).and_then(Avp::as_text), Some("ocs.rollover.test"));
    let mut ccr = vec![Avp::text(code::SESSION_ID, "pgw.test;1;1")];
    ccr.extend(identity.clone());
    ccr.extend([
        Avp::text(code::DESTINATION_REALM, "rollover.test"),
        Avp::u32(code::AUTH_APPLICATION_ID, 4),
        Avp::text(code::SERVICE_CONTEXT_ID, "32251@3gpp.org"),
        Avp::u32(code::CC_REQUEST_TYPE, 1),
    ]);
    stream.write_all(&request(command::CREDIT_CONTROL, 4, ccr.clone()).encode()).unwrap();
    let cca = read(&mut stream).unwrap();
    assert_eq!(result_code(&cca), Some(result::MISSING_AVP));
    let failed = cca.find(code::FAILED_AVP).unwrap().members().unwrap();
    assert_eq!(failed[0].code, code::CC_REQUEST_NUMBER);
    // CC-Request-Type 9: 5004. An update for a session never opened: 5002.
    let mut bad_type = ccr.clone();
    bad_type[6] = Avp::u32(code::CC_REQUEST_TYPE, 9);
    bad_type.push(Avp::u32(code::CC_REQUEST_NUMBER, 0));
    stream.write_all(&request(command::CREDIT_CONTROL, 4, bad_type).encode()).unwrap();
    assert_eq!(result_code(&read(&mut stream).unwrap()), Some(result::INVALID_AVP_VALUE));
    let mut update = ccr.clone();
    update[6] = Avp::u32(code::CC_REQUEST_TYPE, 2);
    update.push(Avp::u32(code::CC_REQUEST_NUMBER, 1));
    stream.write_all(&request(command::CREDIT_CONTROL, 4, update).encode()).unwrap();
    assert_eq!(result_code(&read(&mut stream).unwrap()), Some(result::UNKNOWN_SESSION_ID));
    // A watchdog is answered; an AVP whose length overruns: 5014.
    stream.write_all(&request(command::DEVICE_WATCHDOG, 0, identity.clone()).encode()).unwrap();
    assert_eq!(result_code(&read(&mut stream).unwrap()), Some(result::SUCCESS));
    let mut broken = request(command::CREDIT_CONTROL, 4, vec![Avp::text(code::SESSION_ID, "x;1")]).encode();
    broken[20 + 7] = 200;
    stream.write_all(&broken).unwrap();
    assert_eq!(result_code(&read(&mut stream).unwrap()), Some(result::INVALID_AVP_LENGTH));
    // A header that is not Diameter: the stream cannot be trusted; closed.
    stream.write_all(&[7, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert!(read(&mut stream).is_none());
    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    assert!(metrics.contains("rollover_diameter_messages_total{outcome=\"malformed\"} 2"), "{metrics}");
}

/// freeDiameterd, a C Diameter stack, relays between python-diameter and
/// rollover: CER/CEA, DWR/DWA and DPR/DPA with it, CCRs through it.
fn freediameter_relays_credit_control(backend: Backend) {
    let config = format!("{CONFIG}watchdog_seconds = 6\n");
    let server = Server::start_configured(backend, &config, &[]);
    let address = server.diameter.unwrap();
    prepare(&server);
    let scratch = Scratch::new("fd-relay");
    let relay_port = free_port();
    let log = scratch.0.join("relay.log");
    let relay = Command::new("python3")
        .arg(peers_dir().join("fd_relay.py"))
        .arg("--dir")
        .arg(&scratch.0)
        .args(["--listen-port", &relay_port.to_string(), "--server-host", "127.0.0.1", "--server-port", &address.port().to_string()])
        .args(["--server-identity", "ocs.rollover.test", "--server-realm", "rollover.test"])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(scratch.0.join("relay.err")).unwrap()))
        .spawn()
        .expect("fd_relay.py starts freeDiameterd (Debian package freediameter)");
    let mut relay = Kill(relay);
    // The relay connects to rollover on its own: wait for its CER.
    let metric = |name: &str| -> u64 {
        let text = server.get("/metrics").body.as_str().unwrap().to_string();
        let prefix = format!("rollover_diameter_messages_total{{outcome=\"{name}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
    };
    let started = Instant::now();
    while metric("cer") == 0 {
        if let Ok(Some(status)) = relay.0.try_wait() {
            panic!("freeDiameterd stopped ({status}): {}", std::fs::read_to_string(scratch.0.join("relay.err")).unwrap_or_default());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "freeDiameterd never connected: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    let imsi = "262010000000001";
    let steps = json!([
        {"type": "initial", "session": "r", "imsi": imsi, "rating_group": 10, "requested_octets": 10 * MIB},
        {"type": "update", "session": "r", "imsi": imsi, "rating_group": 10, "used_octets": 10 * MIB, "requested_octets": 10 * MIB},
        {"type": "termination", "session": "r", "imsi": imsi, "rating_group": 10, "used_octets": 5 * MIB},
    ]);
    let answers = wait_for_relay(relay_port, &steps);
    assert_eq!(answers[0]["result_code"], 2001, "{answers:?}");
    assert_eq!(mscc(&answers[0])["granted_octets"], 10 * MIB);
    assert_eq!(mscc(&answers[1])["granted_octets"], 10 * MIB);
    assert_eq!(answers[2]["result_code"], 2001);
    assert_eq!(server.get("/v1/subscriptions/block/balance").body["total_bytes"], 235 * MIB);
    // Silence on the relay's connection: rollover's watchdog (6 s) and freeDiameterd's
    // (TwTimer 6 s) exchange DWR/DWA; the connection stays up.
    let started = Instant::now();
    while metric("dwr_answered") + metric("dwr_sent") == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "no watchdog exchange");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric("watchdog_closed"), 0);
    // freeDiameterd stopping says goodbye with a DPR.
    unsafe_terminate(&relay.0);
    let started = Instant::now();
    while metric("dpr") == 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "freeDiameterd sent no DPR");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = relay.0.wait();
}

/// The relay may take a moment to route: retry the script until it answers.
fn wait_for_relay(port: u16, steps: &Value) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let scratch = Scratch::new("gy-relay");
        let script = write(&scratch, "steps.json", &steps.to_string());
        let output = Command::new(python())
            .arg(peers_dir().join("gy_client.py"))
            .args(["--port", &port.to_string(), "--peer-host", "relay.test", "--peer-realm", "test", "--dest-realm", "rollover.test", "--timeout", "10", "--script"])
            .arg(&script)
            .output()
            .expect("gy_client.py runs");
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gy_client.py through the relay failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Sends SIGTERM so that freeDiameterd shuts down cleanly (with a DPR).
fn unsafe_terminate(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success());
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

on_both_stores!(
    grants_validity_final_units_and_4012,
    a_session_outlives_a_restart,
    rating_groups_events_and_denied_service,
    malformed_requests_get_protocol_answers,
    freediameter_relays_credit_control,
);
