//! Online charging sessions and concurrency, against the real server.


use serde_json::{Value, json};
use crate::server::{Backend, Server};

const MIB: u64 = 1 << 20;

const MORE_PLANS: &str = include_str!("fixtures/sessions-more-plans.toml");

fn server_with(backend: Backend, subscriptions: &[(&str, &str)]) -> Server {
    let server = Server::start(backend);
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &format!("{}\n{MORE_PLANS}", crate::server::SMALL_PLANS)).status, 201);
    server.set_clock("2026-05-01T00:00:00Z");
    for (id, plan) in subscriptions {
        let reply = server.post("/v1/subscriptions", &json!({"id": id, "plan": plan}));
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    server.set_clock("2026-05-02T00:00:00Z");
    server
}

fn reservations_are_exclusive_and_the_last_grant_says_what_happens_next(backend: Backend) {
    let server = server_with(backend, &[("s", "small-block"), ("t", "small-throttle")]);
    let open = |id: &str, sub: &str, requested: u64| server.post("/v1/sessions", &json!({"id": id, "subscription": sub, "requested_bytes": requested}));
    let a = open("a", "s", 100 * MIB);
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["granted_bytes"], 100 * MIB);
    assert!(a.body.get("final_unit").is_none(), "{}", a.body);
    let b = open("b", "s", 100 * MIB);
    assert_eq!(b.body["granted_bytes"], 100 * MIB);
    let c = open("c", "s", 100 * MIB);
    assert_eq!(c.body["granted_bytes"], 50 * MIB, "only what sessions a and b do not hold: {}", c.body);
    assert_eq!(c.body["final_unit"], json!({"action": "terminate"}));
    let d = open("d", "s", 10 * MIB);
    assert_eq!(d.body["granted_bytes"], 0);
    assert_eq!(d.body["result"], "credit_limit_reached");

    // a reports its 100 MiB; b and c hold the other 150 MiB, so nothing is left for a.
    let update = json!({"used_bytes": 100 * MIB, "requested_bytes": 100 * MIB, "request_number": 1});
    let a1 = server.post("/v1/sessions/a/update", &update);
    assert_eq!(a1.status, 200, "{}", a1.body);
    assert_eq!(a1.body["used"]["drawn_bytes"], 100 * MIB);
    assert_eq!(a1.body["granted_bytes"], 0);
    assert_eq!(a1.body["result"], "credit_limit_reached");
    // The same request again is answered the same, and not rated twice.
    let again = server.post("/v1/sessions/a/update", &update);
    assert_eq!(again.body, a1.body);
    assert_eq!(server.get("/v1/subscriptions/s/balance").body["total_bytes"], 150 * MIB);

    // b ends having used 20 MiB: the rest is released.
    let end = server.delete_json("/v1/sessions/b", &json!({"used_bytes": 20 * MIB, "request_number": 1}));
    assert_eq!(end.status, 200, "{}", end.body);
    assert_eq!(server.get("/v1/subscriptions/s/balance").body["total_bytes"], 130 * MIB);
    let a2 = server.post("/v1/sessions/a/update", &json!({"used_bytes": 0, "requested_bytes": 500 * MIB, "request_number": 2}));
    assert_eq!(a2.body["granted_bytes"], 80 * MIB, "130 MiB left, 50 MiB held by c: {}", a2.body);
    assert_eq!(a2.body["final_unit"], json!({"action": "terminate"}));
    let e = open("e", "s", 500 * MIB);
    assert_eq!(e.body["granted_bytes"], 0, "{}", e.body);
    assert_eq!(server.post("/v1/sessions/b/update", &update).status, 404, "an ended session is gone");
    let wide = server.post("/v1/sessions", &json!({"id": "f", "subscription": "t", "requested_bytes": 500 * MIB}));
    assert_eq!(wide.body["granted_bytes"], 100 * MIB, "the max grant caps a request: {}", wide.body);
    assert!(server.delete_json("/v1/sessions/f", &json!({})).status == 200);

    // A throttling plan's last grant says so, with the speed.
    let t = open("t1", "t", 300 * MIB);
    assert_eq!(t.body["granted_bytes"], 100 * MIB);
    assert_eq!(t.body["final_unit"], json!({"action": "throttle", "throttle_kbps": 64}));

    let missing = server.post("/v1/sessions", &json!({"id": "x", "subscription": "nobody"}));
    assert_eq!((missing.status, missing.body["field"].as_str()), (422, Some("subscription")), "{}", missing.body);
    let negative = server.post("/v1/sessions/a/update", &json!({"used_bytes": -1}));
    assert_eq!((negative.status, negative.body["field"].as_str()), (400, Some("used_bytes")), "{}", negative.body);
}

/// A session in a country the plan does not cover gets nothing, and usage
/// reported there is rejected, not drawn.
fn sessions_are_rated_in_the_visited_country(backend: Backend) {
    let server = server_with(backend, &[("c", "cn-only")]);
    let abroad = server.post("/v1/sessions", &json!({"id": "x", "subscription": "c", "requested_bytes": 10 * MIB, "country": "US"}));
    assert_eq!(abroad.status, 201, "{}", abroad.body);
    assert_eq!((abroad.body["result"].as_str(), abroad.body["granted_bytes"].as_u64()), (Some("not_covered"), Some(0)), "{}", abroad.body);
    let home = server.post("/v1/sessions", &json!({"id": "h", "subscription": "c", "requested_bytes": 10 * MIB, "country": "CN"}));
    assert_eq!((home.body["result"].as_str(), home.body["granted_bytes"].as_u64()), (Some("ok"), Some(10 * MIB)), "{}", home.body);
    let moved = server.post("/v1/sessions/h/update", &json!({"used_bytes": 4 * MIB, "request_number": 1, "country": "JP"}));
    assert_eq!(moved.body["used"]["rejected_bytes"], 4 * MIB, "{}", moved.body);
    assert_eq!(moved.body["result"], "not_covered");
    let bad = server.post("/v1/sessions/h/update", &json!({"used_bytes": 1, "request_number": 2, "country": "Japan"}));
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("country")), "{}", bad.body);
    assert_eq!(server.get("/v1/subscriptions/c/balance").body["total_bytes"], 1000 * MIB);
}

fn sixteen_concurrent_sessions_never_use_more_than_the_balance(backend: Backend) {
    let server = server_with(backend, &[("s", "big")]);
    let base = server.base.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let threads: Vec<_> = (0..16)
        .map(|n| {
            let base = base.clone();
            let agent = agent.clone();
            std::thread::spawn(move || {
                let post = |path: &str, body: Value| -> Value {
                    let mut r = agent.post(format!("{base}{path}")).header("content-type", "application/json").send(body.to_string()).unwrap();
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
                };
                let id = format!("session-{n}");
                let mut answer = post("/v1/sessions", json!({"id": id, "subscription": "s", "requested_bytes": 7 * MIB}));
                let mut used = 0u64;
                let mut number = 0;
                while answer["granted_bytes"].as_u64().unwrap() > 0 {
                    let granted = answer["granted_bytes"].as_u64().unwrap();
                    number += 1;
                    answer = post(&format!("/v1/sessions/{id}/update"), json!({"used_bytes": granted, "requested_bytes": 7 * MIB, "request_number": number}));
                    assert_eq!(answer["used"]["drawn_bytes"], granted, "every reserved byte could be used: {answer}");
                    used += granted;
                }
                used
            })
        })
        .collect();
    let used: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(used, 1000 * MIB, "together the sessions used exactly the balance");
    let balance = server.get("/v1/subscriptions/s/balance").body;
    assert_eq!(balance["total_bytes"], 0);
    assert_eq!(balance["rejected_bytes"], 0, "no session was granted bytes that another had");
    assert_eq!(balance["status"], "depleted");
}

fn sixty_four_clients_with_overlapping_batches_apply_every_id_once(backend: Backend) {
    let server = server_with(backend, &[("s", "big")]);
    let base = server.base.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let threads: Vec<_> = (0..64u64)
        .map(|n| {
            let base = base.clone();
            let agent = agent.clone();
            std::thread::spawn(move || {
                let mut accepted = 0;
                for round in 0..4u64 {
                    // Overlapping windows of the same 300 ids.
                    let start = (n * 37 + round * 101) % 300;
                    let records: Vec<Value> = (0..60)
                        .map(|i| {
                            let id = (start + i) % 300;
                            json!({"id": format!("r{id}"), "subscription": "s", "at": "2026-05-01T12:00:00Z", "bytes": MIB})
                        })
                        .collect();
                    let mut r = agent.post(format!("{base}/v1/usage")).header("content-type", "application/json").send(json!({"records": records}).to_string()).unwrap();
                    let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                    accepted += body["results"].as_array().unwrap().iter().filter(|x| x["status"] == "accepted").count();
                }
                accepted
            })
        })
        .collect();
    let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let covered: std::collections::HashSet<u64> = (0..64u64).flat_map(|n| (0..4u64).flat_map(move |round| (0..60).map(move |i| ((n * 37 + round * 101) % 300 + i) % 300))).collect();
    assert_eq!(accepted, covered.len(), "each id accepted exactly once across all clients");
    let balance = server.get("/v1/subscriptions/s/balance").body;
    assert_eq!(balance["total_bytes"], (1000 - covered.len() as u64) * MIB);
    let ledger = server.get("/v1/subscriptions/s/ledger?type=drawn&limit=1000").body;
    assert_eq!(ledger["total"], covered.len(), "one draw per id");
}

on_both_stores!(
    reservations_are_exclusive_and_the_last_grant_says_what_happens_next,
    sessions_are_rated_in_the_visited_country,
    sixteen_concurrent_sessions_never_use_more_than_the_balance,
    sixty_four_clients_with_overlapping_batches_apply_every_id_once,
);
