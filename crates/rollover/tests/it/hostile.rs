//! A hostile or clumsy client against the real server: each request that
//! once stopped, stalled or fooled it, and then a storm of conflicting and
//! malformed writes from many threads at once, after which the server is
//! alive, its metrics add up, and every acknowledged write is stored once.


use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use crate::server::{Backend, Server, TestStore};

/// The plans these tests buy: a monthly plan that blocks, a plan of 1-byte
/// extra blocks, a daily plan whose carried data never expires, and a
/// first-use pass.
const PLANS: &str = include_str!("fixtures/hostile-plans.toml");

const NOW: &str = "2026-03-01T00:00:00Z";

fn with_plans(backend: Backend) -> Server {
    let server = Server::start(backend);
    ready(&server);
    server
}

/// The plans loaded, the clock on [`NOW`] and `s1` bought on `m10`.
fn ready(server: &Server) {
    let reply = server.post_raw("/v1/plans", "application/toml", PLANS);
    assert_eq!(reply.status, 201, "{}", reply.body);
    server.set_clock(NOW);
    let reply = server.post("/v1/subscriptions", &json!({"id": "s1", "plan": "m10"}));
    assert_eq!(reply.status, 201, "{}", reply.body);
}

fn alive(server: &Server) {
    assert_eq!(server.get("/healthz").status, 200, "the server is alive");
}

fn plan_version(id: &str, name: &str) -> String {
    format!("[[plan]]\nid = \"{id}\"\nname = \"{name}\"\ncurrency = \"EUR\"\nprice = \"5.00\"\ntimezone = \"UTC\"\nperiod = {{ kind = \"monthly\" }}\nallowance = {{ data = \"1GiB\" }}\n")
}

fn concurrent_plan_uploads_get_one_version_each(backend: Backend) {
    let store = TestStore::new(backend);
    let server = Server::start_on(&store, &[]);
    let versions: Vec<u64> = std::thread::scope(|scope| {
        let uploads: Vec<_> = (0..39)
            .map(|n| {
                let server = &server;
                scope.spawn(move || {
                    let reply = server.post_raw("/v1/plans", "application/toml", &plan_version("race", &format!("race {n}")));
                    assert_eq!(reply.status, 201, "upload {n}: {}", reply.body);
                    reply.body["plans"][0]["version"].as_u64().unwrap()
                })
            })
            .collect();
        uploads.into_iter().map(|upload| upload.join().unwrap()).collect()
    });
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=39).collect::<Vec<u64>>(), "39 uploads, 39 versions, none twice");
    alive(&server);
    drop(server);
    let server = Server::start_on(&store, &[]);
    let plan = server.get("/v1/plans/race").body;
    assert_eq!(plan["version"], 39, "every version was stored: {plan}");
}

fn plan_documents_have_limits_and_each_plan_keeps_its_own_text(backend: Backend) {
    let server = Server::start(backend);
    let many: String = (0..101).map(|n| plan_version(&format!("p{n}"), "many")).collect();
    let reply = server.post_raw("/v1/plans", "application/toml", &many);
    assert_eq!((reply.status, reply.body["field"].as_str(), reply.body["code"].as_str()), (422, Some("plan"), Some("invalid_plan")), "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("at most 100"), "{}", reply.body);
    let pricey = plan_version("pricey", "pricey").replace("price = \"5.00\"", "price = \"999999999999999.99\"");
    let reply = server.post_raw("/v1/plans", "application/toml", &pricey);
    assert_eq!((reply.status, reply.body["field"].as_str()), (422, Some("plan \"pricey\" price")), "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("at most 1000000000000 minor units"), "{}", reply.body);
    let two = format!("{}{}", plan_version("first", "First"), plan_version("second", "Second"));
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &two).status, 201);
    let document = server.get("/v1/plans/second").body["document"].as_str().unwrap().to_string();
    assert!(document.contains("id = \"second\"") && !document.contains("first"), "only its own plan: {document}");
    assert_eq!(server.get("/v1/plans/first").body["version"], 1);
}

/// Reads until the server closes the connection; `false` if it is still
/// open after `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

fn idle_and_half_sent_connections_are_closed(backend: Backend) {
    let config = "[server]\nheader_timeout_seconds = 1\nrequest_timeout_seconds = 1\nmax_connections = 32\n";
    let server = Server::start_configured(backend, config, &[]);
    let address = server.base.strip_prefix("http://").unwrap().to_string();
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|n| {
            let mut stream = TcpStream::connect(&address).unwrap();
            if n % 2 == 0 {
                // Half a request head, never finished.
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").unwrap();
            }
            stream
        })
        .collect();
    for (n, stream) in idle.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(10)), "connection {n} is still open");
    }
    alive(&server);
    // A body that never finishes arriving gets 408 after the request timeout.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"POST /v1/usage HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"records\"").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("\"code\":\"request_timeout\""), "{answer}");
    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    let refused: u64 = metric(&metrics, "rollover_http_connections_total{outcome=\"refused\"}");
    assert!(refused >= 32, "past max_connections new connections are closed at once: {refused}");
}

fn metric(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn one_request_cannot_freeze_a_shard(backend: Backend) {
    let server = with_plans(backend);
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "tiny", "plan": "tiny-blocks"})).status, 201);
    let started = Instant::now();
    let reply = server.post("/v1/usage", &json!({"records": [{"id": "big", "subscription": "tiny", "at": NOW, "bytes": 1_000_000}]}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let result = &reply.body["results"][0];
    assert_eq!(result["drawn_bytes"], 2048, "1 KiB allowance and 1,024 blocks of one byte: {result}");
    assert_eq!(result["rejected_bytes"], 1_000_000 - 2048);
    assert_eq!(result["rejected_reason"], "block_limit");
    let balance = server.get("/v1/subscriptions/tiny/balance").body;
    assert_eq!(balance["charges"], "10.24", "{balance}");
    eprintln!("1,000,000 bytes on 1-byte blocks answered in {:?}", started.elapsed());

    // Purchases and events far in the past are refused, naming the field.
    for (at, why) in [("0001-01-01T00:00:00Z", "days before the service clock"), ("2025-01-01T00:00:00Z", "400 days")] {
        let reply = server.post("/v1/subscriptions", &json!({"id": "old", "plan": "daily-stash", "at": at}));
        assert_eq!((reply.status, reply.body["field"].as_str(), reply.body["code"].as_str()), (422, Some("at"), Some("instant_out_of_range")), "{at}: {}", reply.body);
        assert!(reply.body["detail"].as_str().unwrap().contains(why), "{}", reply.body);
    }
    let reply = server.post("/v1/subscriptions", &json!({"id": "year", "plan": "daily-stash", "at": "2025-03-02T00:00:00Z"}));
    assert_eq!(reply.status, 201, "a year back is within the bound: {}", reply.body);
    assert_eq!(server.get("/v1/subscriptions/year/balance").status, 200);
    let reply = server.post("/v1/subscriptions/s1/events", &json!({"suspend": true, "at": "2000-01-01T00:00:00Z"}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (422, Some("at")), "{}", reply.body);
    let reply = server.post("/v1/subscriptions/year/events", &json!({"suspend": true, "at": "2025-03-01T00:00:00Z"}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (422, Some("at")), "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("before the subscription's purchase"), "{}", reply.body);
    alive(&server);
}

fn usage_before_the_purchase_is_rejected(backend: Backend) {
    let server = with_plans(backend);
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "pass", "plan": "pass-7d", "at": "2026-02-28T12:00:00Z"})).status, 201);
    let reply = server.post(
        "/v1/usage",
        &json!({"records": [
            {"id": "early", "subscription": "pass", "at": "2026-02-27T12:00:00Z", "bytes": 1000},
            {"id": "early-s1", "subscription": "s1", "at": "2026-02-27T12:00:00Z", "bytes": 1000},
        ]}),
    );
    for result in reply.body["results"].as_array().unwrap() {
        assert_eq!((result["status"].as_str(), result["rejected_bytes"].as_u64()), (Some("accepted"), Some(1000)), "{result}");
        assert_eq!(result["rejected_reason"], "before_purchase", "{result}");
    }
    let pass = server.get("/v1/subscriptions/pass/balance").body;
    assert_eq!(pass["status"], "pending", "usage before the purchase does not start a first-use pass: {pass}");
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body["total_bytes"], 10u64 << 30);
}

fn every_session_report_is_numbered_and_rated(backend: Backend) {
    let server = with_plans(backend);
    assert_eq!(server.post("/v1/sessions", &json!({"id": "g1", "subscription": "s1"})).status, 201);
    let reply = server.post("/v1/sessions/g1/update", &json!({"used_bytes": 100}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("request_number")), "{}", reply.body);
    for (number, bytes) in [(1, 100), (2, 200), (2, 200), (3, 300)] {
        let reply = server.post("/v1/sessions/g1/update", &json!({"used_bytes": bytes, "request_number": number}));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let reply = server.delete_json("/v1/sessions/g1", &json!({"used_bytes": 5}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("request_number")), "{}", reply.body);
    assert_eq!(server.delete_json("/v1/sessions/g1", &json!({})).status, 200, "ending without a report needs no number");
    let drawn = server.get("/v1/subscriptions/s1/ledger?type=drawn").body;
    let total: u64 = drawn["entries"].as_array().unwrap().iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!(total, 600, "each report rated once, the repeat not at all: {drawn}");
}

fn two_servers_cannot_share_a_store(backend: Backend) {
    let store = TestStore::new(backend);
    let first = Server::start_on(&store, &[]);
    let second = Command::new(env!("CARGO_BIN_EXE_rollover"))
        .arg("serve")
        .env("ROLLOVER_SERVER_LISTEN", "127.0.0.1:0")
        .env("ROLLOVER_STORE_URL", &store.url)
        .env("ROLLOVER_DEMO", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second server on the same store must not start");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another rollover process"), "{stderr}");
    alive(&first);
}

fn weak_token_secrets_and_bad_webhooks_stop_the_start() {
    for (name, value, why) in [
        ("ROLLOVER_SECURITY_TOKEN_SECRET", "x", "at least 32 bytes"),
        ("ROLLOVER_WEBHOOK_URL", "http://127.0.0.1:9/hook\r\nX-Forged: 1", "printable ASCII"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_rollover"))
            .arg("serve")
            .env("ROLLOVER_SERVER_LISTEN", "127.0.0.1:0")
            .env("ROLLOVER_STORE_URL", "sqlite:///nonexistent/never-opened.db")
            .env("ROLLOVER_WEBHOOK_SECRET", "0123456789abcdef0123")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{name}: {stderr}");
    }
}

/// Sends raw bytes and returns the status and body of the answer.
fn raw(server: &Server, request: &str) -> (u16, String) {
    let address = server.base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, answer)
}

fn cross_site_writes_are_refused_when_no_key_is_set(backend: Backend) {
    let server = with_plans(backend);
    let cancel = r#"{"cancel": true}"#;
    let reply = server.post_raw("/v1/subscriptions/s1/events", "text/plain", cancel);
    assert_eq!((reply.status, reply.content_type.as_str()), (415, "application/problem+json"), "{}", reply.body);
    assert_eq!(reply.body["code"], "unsupported_media_type");
    let form = server.post_raw("/v1/plans", "application/x-www-form-urlencoded", PLANS);
    assert_eq!(form.status, 415, "{}", form.body);
    let length = cancel.len();
    let (status, answer) = raw(
        &server,
        &format!("POST /v1/subscriptions/s1/events HTTP/1.1\r\nHost: rebound.example:8080\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{cancel}"),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("\"code\":\"host_not_allowed\""), "{answer}");
    let (status, answer) = raw(
        &server,
        &format!("POST /v1/subscriptions/s1/events HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{cancel}"),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("\"code\":\"cross_site_refused\""), "{answer}");
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body["status"], "active", "nothing was cancelled");
    let (status, answer) = raw(
        &server,
        "GET /v1/subscriptions/s1/balance HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:3000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "a page served from loopback may call: {answer}");
}

fn hostile_fields_get_a_problem_naming_them(backend: Backend) {
    let config = "[limits]\nmax_body_bytes = 4096\n";
    let server = Server::start_configured(backend, config, &[]);
    ready(&server);
    let record = |id: &str, at: &str| json!({"id": id, "subscription": "s1", "at": at, "bytes": 1});
    let duplicated = r#"{"records": [{"id": "d", "subscription": "s1", "subscription": "s2", "at": "2026-03-01T00:00:00Z", "bytes": 1}]}"#;
    let reply = server.post_raw("/v1/usage", "application/json", duplicated);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("\"subscription\" appears twice"), "{}", reply.body);
    assert_eq!(reply.body["code"], "invalid_json");
    let reply = server.post("/v1/usage", &json!({"records": [record("o", "2026-03-01T00:00:00+25:00")]}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("records[0].at")), "{}", reply.body);
    for id in [".", "..", "a\u{200b}b", "a\u{202e}b", " a", "a/b", "-lead", "acct:100:127.0.0.1/s1"] {
        let reply = server.post("/v1/subscriptions", &json!({"id": id, "plan": "m10"}));
        assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("id")), "{id:?}: {}", reply.body);
        let reply = server.post("/v1/usage", &json!({"records": [record(id, NOW)]}));
        assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("records[0].id")), "{id:?}: {}", reply.body);
    }
    for (query, field) in [("type=bogus", "type"), ("offset=18446744073709551615", "offset"), ("limit=0", "limit"), ("cause=nope", "cause")] {
        let reply = server.get(&format!("/v1/subscriptions/s1/ledger?{query}"));
        assert_eq!((reply.status, reply.body["field"].as_str(), reply.body["code"].as_str()), (400, Some(field), Some("invalid_query")), "{query}: {}", reply.body);
    }
    // Whoever answers an error, it is problem details.
    let put = raw(&server, "PUT /v1/plans HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let big = server.post_raw("/v1/usage", "application/json", &format!("{{\"records\": [], \"pad\": \"{}\"}}", "x".repeat(8000)));
    let long = raw(&server, &format!("GET /v1/plans/{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "p".repeat(9000)));
    let utf8 = raw(&server, "GET /v1/subscriptions/%FF%FE/balance HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(put.0, 405, "{}", put.1);
    assert_eq!(big.status, 413, "{}", big.body);
    assert_eq!(big.content_type, "application/problem+json");
    assert_eq!(long.0, 414, "{}", long.1);
    assert_eq!(utf8.0, 400, "{}", utf8.1);
    assert_eq!(big.body["code"], "body_too_large");
    for ((status, answer), code) in [(put, "method_not_allowed"), (long, "uri_too_long"), (utf8, "invalid_path")] {
        assert!(answer.contains("application/problem+json") && answer.contains(&format!("\"code\":\"{code}\"")), "{status}: {answer}");
    }
    alive(&server);
}

fn a_reused_usage_id_with_other_bytes_is_a_conflict(backend: Backend) {
    let server = with_plans(backend);
    let first = server.post("/v1/usage", &json!({"records": [{"id": "r", "subscription": "s1", "at": NOW, "bytes": 100}]}));
    assert_eq!(first.body["results"][0]["status"], "accepted");
    for (bytes, at, status) in [(100, NOW, "duplicate"), (999, NOW, "conflict"), (100, "2026-02-28T23:00:00Z", "conflict")] {
        let reply = server.post("/v1/usage", &json!({"records": [{"id": "r", "subscription": "s1", "at": at, "bytes": bytes}]}));
        assert_eq!(reply.body["results"][0]["status"], status, "{bytes} at {at}: {}", reply.body);
    }
    let ledger = server.get("/v1/subscriptions/s1/ledger?type=drawn").body;
    assert_eq!(ledger["total"], 1, "the conflicting records drew nothing: {ledger}");
    // A client's record id cannot pose as a session's report: both are rated.
    assert_eq!(server.post("/v1/sessions", &json!({"id": "g1", "subscription": "s1"})).status, 201);
    let posing = server.post("/v1/usage", &json!({"records": [{"id": "session:1:g1", "subscription": "s1", "at": NOW, "bytes": 10}]}));
    assert_eq!(posing.body["results"][0]["status"], "accepted", "{}", posing.body);
    let report = server.post("/v1/sessions/g1/update", &json!({"used_bytes": 20, "request_number": 1}));
    assert_eq!(report.body["used"]["status"], "accepted", "{}", report.body);
}

/// A small random generator: the storm is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one storm thread saw acknowledged: usage ids with their bytes.
type Acknowledged = HashMap<String, (String, u64)>;

const SUBSCRIPTIONS: [&str; 4] = ["s1", "t1", "t2", "t3"];

fn storm_thread(server: &Server, thread: u64, until: Instant) -> (Acknowledged, HashMap<u16, u64>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (thread + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut acknowledged = Acknowledged::new();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    let mut sent: Vec<Value> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let subscription = SUBSCRIPTIONS[rng.below(4) as usize];
        let reply = match rng.below(12) {
            // New records, some reused ids with other bytes, and replays.
            0..=3 => {
                let records: Vec<Value> = (0..1 + rng.below(20))
                    .map(|k| json!({"id": format!("w{thread}-{n}-{k}"), "subscription": SUBSCRIPTIONS[rng.below(4) as usize], "at": NOW, "bytes": 1 + rng.below(1 << 20)}))
                    .collect();
                sent.extend(records.iter().cloned());
                server.post("/v1/usage", &json!({"records": records}))
            }
            4 if !sent.is_empty() => {
                let mut again = sent[rng.below(sent.len() as u64) as usize].clone();
                if rng.below(2) == 0 {
                    again["bytes"] = json!(again["bytes"].as_u64().unwrap() + 1);
                }
                server.post("/v1/usage", &json!({"records": [again]}))
            }
            5 => server.post_raw("/v1/plans", "application/toml", &plan_version("storm", &format!("storm {thread} {n}"))),
            6 => server.post("/v1/subscriptions", &json!({"id": format!("c{}", rng.below(8)), "plan": "m10"})),
            7 => {
                let event = [json!({"suspend": true}), json!({"resume": true}), json!({"grant": {"kind": "gift", "data": "1MiB", "expires": "never"}})];
                server.post(&format!("/v1/subscriptions/{subscription}/events"), &event[rng.below(3) as usize])
            }
            8 => {
                let id = format!("g{thread}-{}", rng.below(4));
                match rng.below(3) {
                    0 => server.post("/v1/sessions", &json!({"id": id, "subscription": subscription, "requested_bytes": 1 << 20})),
                    1 => server.post(&format!("/v1/sessions/{id}/update"), &json!({"used_bytes": rng.below(1 << 20), "request_number": n})),
                    _ => server.delete_json(&format!("/v1/sessions/{id}"), &json!({"used_bytes": 10, "request_number": n})),
                }
            }
            9 => {
                let hostile = [
                    r#"{"records": [{"id": "x", "id": "y", "subscription": "s1", "at": "2026-03-01T00:00:00Z", "bytes": 1}]}"#.to_string(),
                    r#"{"records": [{"id": "..", "subscription": "s1", "at": "2026-03-01T00:00:00Z", "bytes": 1}]}"#.to_string(),
                    r#"{"records": [{"id": "z", "subscription": "s1", "at": "0001-01-01T00:00:00Z", "bytes": 18446744073709551615}]}"#.to_string(),
                    "[".repeat(5000),
                    "{\"records\": 7}".to_string(),
                ];
                server.post_raw("/v1/usage", "application/json", &hostile[rng.below(5) as usize])
            }
            10 => server.post("/v1/subscriptions", &json!({"id": format!("old{thread}-{n}"), "plan": "daily-stash", "at": "0001-01-01T00:00:00Z"})),
            _ => server.get(&format!("/v1/subscriptions/{subscription}/ledger?limit=5&offset={}", rng.below(1 << 20))),
        };
        *statuses.entry(reply.status).or_default() += 1;
        assert!(reply.status < 500 || reply.status == 503, "thread {thread} request {n}: {} {}", reply.status, reply.body);
        if reply.status >= 400 {
            assert_eq!(reply.content_type, "application/problem+json", "{}", reply.body);
            assert!(reply.body["code"].as_str().is_some_and(|c| !c.is_empty()), "every problem has a code: {}", reply.body);
        }
        if let Some(results) = reply.body["results"].as_array() {
            for result in results {
                if result["status"] == "accepted" {
                    let id = result["id"].as_str().unwrap().to_string();
                    let record = sent.iter().find(|r| r["id"] == id.as_str()).unwrap();
                    let previous = acknowledged.insert(id.clone(), (record["subscription"].as_str().unwrap().to_string(), record["bytes"].as_u64().unwrap()));
                    assert!(previous.is_none(), "{id} was accepted twice");
                }
            }
        }
    }
    (acknowledged, statuses)
}

fn a_storm_of_conflicting_writes_leaves_every_acknowledged_write_stored_once(backend: Backend) {
    let store = TestStore::new(backend);
    let server = Server::start_on(&store, &[]);
    ready(&server);
    for id in &SUBSCRIPTIONS[1..] {
        assert_eq!(server.post("/v1/subscriptions", &json!({"id": id, "plan": "m10"})).status, 201);
    }
    let until = Instant::now() + Duration::from_secs(4);
    let outcomes: Vec<(Acknowledged, HashMap<u16, u64>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|thread| {
                let server = &server;
                scope.spawn(move || storm_thread(server, thread, until))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut acknowledged = Acknowledged::new();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    for (acks, counts) in outcomes {
        acknowledged.extend(acks);
        for (status, count) in counts {
            *statuses.entry(status).or_default() += count;
        }
    }
    eprintln!("storm: {} records acknowledged; statuses {statuses:?}", acknowledged.len());
    assert!(acknowledged.len() > 100, "the storm did real work");
    alive(&server);
    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    assert_eq!(metric(&metrics, "rollover_usage_records_total{outcome=\"accepted\"}"), acknowledged.len() as u64, "every acknowledged record counted once");
    assert!(metric(&metrics, "rollover_usage_records_total{outcome=\"conflict\"}") > 0, "reused ids were seen");
    let balances: Vec<Value> = SUBSCRIPTIONS.iter().map(|id| server.get(&format!("/v1/subscriptions/{id}/balance")).body).collect();
    drop(server);

    // After a restart every acknowledged record is there, once.
    let server = Server::start_on(&store, &[]);
    let after: Vec<Value> = SUBSCRIPTIONS.iter().map(|id| server.get(&format!("/v1/subscriptions/{id}/balance")).body).collect();
    assert_eq!(after, balances, "state rebuilt from the store is the state acknowledged");
    let records: Vec<Value> = acknowledged.iter().map(|(id, (subscription, bytes))| json!({"id": id, "subscription": subscription, "at": NOW, "bytes": bytes})).collect();
    for chunk in records.chunks(5000) {
        let reply = server.post("/v1/usage", &json!({"records": chunk}));
        assert_eq!(reply.status, 200, "{}", reply.body);
        for result in reply.body["results"].as_array().unwrap() {
            assert_eq!(result["status"], "duplicate", "every acknowledged record is stored: {result}");
        }
    }
    let mut drawn_entries = 0;
    for id in SUBSCRIPTIONS {
        drawn_entries += server.get(&format!("/v1/subscriptions/{id}/ledger?limit=1")).body["total"].as_u64().unwrap();
    }
    assert!(drawn_entries > 0);
}

fn the_time_zone_database_is_recorded_and_a_change_is_told() {
    let store = TestStore::new(Backend::Sqlite);
    let server = Server::start_on(&store, &[]);
    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    let info = metrics.lines().find(|l| l.starts_with("rollover_build_info")).expect("build info").to_string();
    let bundled = info.split("tzdata=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    drop(server);
    let path = store.url.strip_prefix("sqlite://").unwrap();
    let db = rusqlite::Connection::open(path).unwrap();
    let stored: String = db.query_row("SELECT value FROM settings WHERE name = 'tzdata'", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, bundled, "the store records the version it ran with");
    db.execute("UPDATE settings SET value = '2020a' WHERE name = 'tzdata'", []).unwrap();
    drop(db);
    let log = std::env::temp_dir().join(format!("rollover-tzdata-log-{}.txt", std::process::id()));
    let server = Server::start_logging(&store, "", &[], &log);
    alive(&server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("WARN") && text.contains("time-zone database 2020a") && text.contains(&format!("this binary has {bundled}")), "{text}");
}

on_both_stores!(concurrent_plan_uploads_get_one_version_each, two_servers_cannot_share_a_store, a_storm_of_conflicting_writes_leaves_every_acknowledged_write_stored_once);

mod on_sqlite {
    use super::*;

    #[test]
    fn plan_documents() {
        plan_documents_have_limits_and_each_plan_keeps_its_own_text(Backend::Sqlite)
    }

    #[test]
    fn idle_connections() {
        idle_and_half_sent_connections_are_closed(Backend::Sqlite)
    }

    #[test]
    fn one_request_and_a_shard() {
        one_request_cannot_freeze_a_shard(Backend::Sqlite)
    }

    #[test]
    fn usage_before_purchase() {
        usage_before_the_purchase_is_rejected(Backend::Sqlite)
    }

    #[test]
    fn session_reports() {
        every_session_report_is_numbered_and_rated(Backend::Sqlite)
    }

    #[test]
    fn weak_settings() {
        weak_token_secrets_and_bad_webhooks_stop_the_start()
    }

    #[test]
    fn cross_site() {
        cross_site_writes_are_refused_when_no_key_is_set(Backend::Sqlite)
    }

    #[test]
    fn hostile_fields() {
        hostile_fields_get_a_problem_naming_them(Backend::Sqlite)
    }

    #[test]
    fn tzdata() {
        the_time_zone_database_is_recorded_and_a_change_is_told()
    }

    #[test]
    fn reused_ids() {
        a_reused_usage_id_with_other_bytes_is_a_conflict(Backend::Sqlite)
    }
}
