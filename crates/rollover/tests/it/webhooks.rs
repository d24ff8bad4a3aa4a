//! Webhooks: signed, retried with backoff from a persistent outbox, none
//! lost across a crash, none delivered twice after a success.


use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use crate::server::{Backend, Server, TestStore};
use sha2::{Digest, Sha256};

const SECRET: &str = "webhook-secret-0123456789";

/// HMAC-SHA256 written out from RFC 2104, to check the server's signatures
/// with code that is not the server's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).chain(message.iter().copied()).collect();
    let inner_hash = Sha256::digest(&inner);
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).chain(inner_hash.iter().copied()).collect();
    Sha256::digest(&outer).iter().map(|b| format!("{b:02x}")).collect()
}

struct Received {
    headers: HashMap<String, String>,
    body: String,
    answered: u16,
}

/// A small HTTP receiver: answers 500 while `failing` is set, else 200.
pub(crate) struct Receiver {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let fail_first = Arc::new(AtomicUsize::new(0));
        let (r, f, ff) = (received.clone(), failing.clone(), fail_first.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.trim_end().split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                    }
                }
                let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; length];
                // A sender killed mid-request leaves a short body: not a delivery.
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let fail = f.load(Ordering::SeqCst) || ff.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let status = if fail { 500 } else { 200 };
                let _ = stream.write_all(format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
                r.lock().unwrap().push(Received { headers, body: String::from_utf8(body).unwrap(), answered: status });
            }
        });
        Receiver { url, received, failing, fail_first }
    }

    /// Deliveries answered 200, by key.
    fn delivered(&self) -> Vec<(String, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| (r.headers["rollover-delivery"].clone(), serde_json::from_str(&r.body).unwrap()))
            .collect()
    }

    pub(crate) fn wait_for(&self, count: usize) -> Vec<(String, Value)> {
        self.wait_for_within(count, Duration::from_secs(30))
    }

    fn wait_for_within(&self, count: usize, limit: Duration) -> Vec<(String, Value)> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let delivered = self.delivered();
            if delivered.len() >= count {
                std::thread::sleep(Duration::from_millis(300));
                return self.delivered();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("only {} of {count} webhooks arrived within {limit:?}", self.delivered().len());
    }
}

const PLAN: &str = include_str!("fixtures/webhooks-plan.toml");

fn usage(server: &Server, id: &str, at: &str, gib: u64) {
    let reply = server.post("/v1/usage", &json!({"records": [{"id": id, "subscription": "s", "at": at, "bytes": gib << 30}]}));
    assert_eq!(reply.body["results"][0]["status"], "accepted", "{}", reply.body);
}

pub(crate) fn env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("ROLLOVER_WEBHOOK_URL", receiver.url.clone()),
        ("ROLLOVER_WEBHOOK_SECRET", SECRET.to_string()),
        ("ROLLOVER_NOTIFICATIONS_RETRY_BASE_MS", "50".to_string()),
        ("ROLLOVER_NOTIFICATIONS_MAX_BACKOFF_MS", "200".to_string()),
        ("ROLLOVER_NOTIFICATIONS_NOTICE_DAYS", "3".to_string()),
    ]
}

fn story(server: &Server) {
    assert_eq!(server.post_raw("/v1/plans", "application/toml", PLAN).status, 201);
    server.set_clock("2026-03-01T00:00:00Z");
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "s", "plan": "ten"})).status, 201);
    server.set_clock("2026-03-05T00:00:00Z");
    usage(server, "u1", "2026-03-05T00:00:00Z", 6); // 60%: usage_50
    server.set_clock("2026-04-02T00:00:00Z"); // 4 GiB carried, until May 1
    usage(server, "u2", "2026-04-02T00:00:00Z", 1);
    server.set_clock("2026-04-28T00:00:00Z"); // 3 days before the carry expires: carry_expiring
    server.set_clock("2026-04-29T00:00:00Z");
    usage(server, "u3", "2026-04-29T00:00:00Z", 14); // carry, all plan data, 1 GiB rejected: usage_100 and depleted
    server.set_clock("2026-04-30T00:00:00Z");
    let reply = server.post("/v1/subscriptions/s/events", &json!({"grant": {"kind": "gift", "data": "1GiB", "expires": "period_end"}}));
    assert_eq!(reply.body["outcome"], "applied"); // restored
}

fn check(delivered: &[(String, Value)]) {
    let mut keys: Vec<&str> = delivered.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "no delivery was answered 200 twice: {keys:?}");
    let types: Vec<&str> = delivered.iter().map(|(_, v)| v["type"].as_str().unwrap()).collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(sorted, ["carry_expiring", "depleted", "restored", "usage_100", "usage_50"], "{types:?}");
    let carry = delivered.iter().find(|(_, v)| v["type"] == "carry_expiring").unwrap();
    assert_eq!(carry.1["data"]["remaining_bytes"], 3u64 << 30);
    assert_eq!(carry.1["data"]["expires_at"], "2026-05-01T00:00:00Z");
    assert_eq!(carry.1["subscription"], "s");
    // The allowance is used up and has left the live buckets: the notice
    // still says how much it was.
    let full = delivered.iter().find(|(_, v)| v["type"] == "usage_100").unwrap();
    assert_eq!((full.1["data"]["allowance_bytes"].as_u64(), full.1["data"]["used_bytes"].as_u64()), (Some(10 << 30), Some(10 << 30)), "{}", full.1);
}

fn signed_and_retried_until_delivered(backend: Backend) {
    let receiver = Receiver::start();
    receiver.fail_first.store(3, Ordering::SeqCst);
    let env = env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let store = TestStore::new(backend);
    let server = Server::start_on(&store, &env);
    story(&server);
    let delivered = receiver.wait_for(5);
    check(&delivered);
    for r in receiver.received.lock().unwrap().iter() {
        let timestamp = &r.headers["rollover-timestamp"];
        let expected = format!("v1={}", hmac_sha256(SECRET.as_bytes(), format!("{timestamp}.{}", r.body).as_bytes()));
        assert_eq!(r.headers["rollover-signature"], expected, "every delivery is signed");
    }
    let failures = receiver.received.lock().unwrap().iter().filter(|r| r.answered == 500).count();
    assert_eq!(failures, 3, "the first three attempts failed and were retried");
    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    assert!(metrics.contains("rollover_webhook_backlog 0"), "{metrics}");
}

fn none_lost_across_a_crash(backend: Backend) {
    let receiver = Receiver::start();
    receiver.failing.store(true, Ordering::SeqCst);
    let env = env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let store = TestStore::new(backend);
    let server = Server::start_on(&store, &env);
    story(&server);
    std::thread::sleep(Duration::from_millis(200));
    server.kill();
    assert!(receiver.delivered().is_empty());
    let server = Server::start_on(&store, &env);
    receiver.failing.store(false, Ordering::SeqCst);
    let delivered = receiver.wait_for(5);
    check(&delivered);
    // A further restart sends nothing again.
    server.kill();
    let _server = Server::start_on(&store, &env);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(receiver.delivered().len(), 5, "a delivered webhook is not sent again");
}

/// A receiver that takes the connection and never answers delays only its
/// own deliveries: each endpoint has its own sender. One sender for all
/// would keep the other endpoint waiting 10 s for each hung attempt.
fn a_hung_receiver_delays_only_itself(backend: Backend) {
    let receiver = Receiver::start();
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}/hook", hung.local_addr().unwrap());
    let config = format!(
        "[[webhooks]]\nid = \"hung\"\nurl = \"{hung_url}\"\nsecret = \"{SECRET}\"\n\n[[webhooks]]\nid = \"good\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    );
    let server = Server::start_configured(backend, &config, &[("ROLLOVER_NOTIFICATIONS_NOTICE_DAYS", "3")]);
    story(&server);
    let delivered = receiver.wait_for_within(5, Duration::from_secs(9));
    check(&delivered);
    drop(hung);
}

on_both_stores!(signed_and_retried_until_delivered, none_lost_across_a_crash, a_hung_receiver_delays_only_itself);
