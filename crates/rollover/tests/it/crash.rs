//! Crash safety: kill -9 the server 20 times at random moments under load,
//! restart it on the same store, and check that every acknowledged record
//! was applied exactly once and nothing was applied twice.


use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use crate::server::{Backend, Server};

const MIB: u64 = 1 << 20;
const PLAN: &str = include_str!("fixtures/crash-plan.toml");

fn record(id: u64) -> Value {
    json!({"id": format!("r{id}"), "subscription": "s", "at": "2026-05-01T12:00:00Z", "bytes": MIB})
}

fn twenty_crashes_under_load_lose_nothing_and_count_nothing_twice(backend: Backend) {
    let store = crate::server::TestStore::new(backend);
    {
        let server = Server::start_on(&store, &[]);
        assert_eq!(server.post_raw("/v1/plans", "application/toml", PLAN).status, 201);
        server.set_clock("2026-05-01T00:00:00Z");
        assert_eq!(server.post("/v1/subscriptions", &json!({"id": "s", "plan": "huge"})).status, 201);
        server.set_clock("2026-05-01T12:00:00Z");
    }
    let next_id = Arc::new(AtomicU64::new(0));
    let acknowledged: Arc<Mutex<HashSet<u64>>> = Arc::new(Mutex::new(HashSet::new()));
    let sent: Arc<Mutex<HashSet<u64>>> = Arc::new(Mutex::new(HashSet::new()));
    // A small deterministic generator for the kill moments.
    let mut seed: u64 = 0x5EED_0001;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    for _round in 0..20 {
        let server = Server::start_on(&store, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let loaders: Vec<_> = (0..4)
            .map(|_| {
                let base = server.base.clone();
                let (next_id, acknowledged, sent, stop) = (next_id.clone(), acknowledged.clone(), sent.clone(), stop.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(5)))
                        .build()
                        .into();
                    while !stop.load(Ordering::Relaxed) {
                        let first = next_id.fetch_add(50, Ordering::Relaxed);
                        // Every batch also repeats a few ids from earlier rounds.
                        let mut ids: Vec<u64> = (first..first + 50).collect();
                        ids.extend((0..3).map(|k| (first * 7 + k * 13) % (first + 1)));
                        sent.lock().unwrap().extend(ids.iter().copied());
                        let body = json!({"records": ids.iter().map(|id| record(*id)).collect::<Vec<_>>()});
                        let Ok(mut response) = agent.post(format!("{base}/v1/usage")).header("content-type", "application/json").send(body.to_string()) else {
                            return;
                        };
                        if response.status() != 200 {
                            continue;
                        }
                        let Ok(text) = response.body_mut().read_to_string() else { return };
                        let reply: Value = serde_json::from_str(&text).unwrap();
                        let mut acked = acknowledged.lock().unwrap();
                        for (id, result) in ids.iter().zip(reply["results"].as_array().unwrap()) {
                            let status = result["status"].as_str().unwrap();
                            assert!(status == "accepted" || status == "duplicate", "{result}");
                            acked.insert(*id);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + random(200)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for loader in loaders {
            loader.join().unwrap();
        }
    }

    let server = Server::start_on(&store, &[]);
    let sent: Vec<u64> = sent.lock().unwrap().iter().copied().collect();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 500, "the load was real: {} acknowledged", acknowledged.len());
    let mut newly_applied = 0u64;
    for chunk in sent.chunks(5_000) {
        let reply = server.post("/v1/usage", &json!({"records": chunk.iter().map(|id| record(*id)).collect::<Vec<_>>()}));
        assert_eq!(reply.status, 200, "{}", reply.body);
        for (id, result) in chunk.iter().zip(reply.body["results"].as_array().unwrap()) {
            match result["status"].as_str().unwrap() {
                "duplicate" => {}
                "accepted" => {
                    assert!(!acknowledged.contains(id), "acknowledged record r{id} was lost in a crash");
                    newly_applied += 1;
                }
                other => panic!("r{id}: {other}"),
            }
        }
    }
    // Now every id ever sent is applied; each exactly once, or the balance shows it.
    let balance = server.get("/v1/subscriptions/s/balance").body;
    let used = (1000u64 << 30) - balance["total_bytes"].as_u64().unwrap();
    assert_eq!(used, sent.len() as u64 * MIB, "{} ids sent, {newly_applied} applied only now", sent.len());
    eprintln!("{} ids sent, {} acknowledged before a crash, {newly_applied} never committed before a crash", sent.len(), acknowledged.len());
}

on_both_stores!(twenty_crashes_under_load_lose_nothing_and_count_nothing_twice);
