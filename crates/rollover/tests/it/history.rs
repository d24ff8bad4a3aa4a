//! Years of history on one node: checkpoints, so that start-up replays only
//! what came after the last one, and gives the same state as the whole log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Backend, Server, TestStore};

const ENV: [(&str, &str); 1] = [("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "40")];

fn metric(server: &Server, name: &str) -> i64 {
    let text = server.get("/metrics").body.as_str().unwrap().to_string();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse::<f64>().ok()).unwrap_or_else(|| panic!("{name} in {text}")) as i64
}

fn wait_for_checkpoint(server: &Server, past: i64) -> i64 {
    for _ in 0..100 {
        let upto = metric(server, "rollover_checkpoint_upto_seq");
        if upto > past {
            return upto;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no checkpoint past event {past} was written");
}

/// Every subscription's balance and whole ledger, as the API answers them.
fn everything(server: &Server) -> Vec<(Value, Value)> {
    ["a", "b", "c", "d"].iter().map(|id| (server.get(&format!("/v1/subscriptions/{id}/balance")).body, server.get(&format!("/v1/subscriptions/{id}/ledger?limit=1000")).body)).collect()
}

fn usage(server: &Server, from: usize, to: usize, day: &str) {
    let records: Vec<Value> = (from..to)
        .map(|n| json!({"id": format!("r{n}"), "subscription": (["a", "b", "c", "d"])[n % 4], "at": format!("{day}T{:02}:00:00+08:00", n % 24), "bytes": (n as u64 % 7 + 1) << 27}))
        .collect();
    let reply = server.post("/v1/usage", &json!({"records": records}));
    assert!(reply.body["results"].as_array().unwrap().iter().all(|r| r["status"] == "accepted"), "{}", reply.body);
}

/// A history with boundaries, a grant and a plan change; a checkpoint
/// part-way; more after it; then kill -9 and a
/// restart from the checkpoint, which must equal what was served before and
/// what a replay of the whole log gives (the checkpoint made useless).
/// Retries of records from before the checkpoint are still duplicates. A
/// damaged checkpoint is found and passed over; the parts of one a crash
/// left unfinished are ignored.
fn restart_from_a_checkpoint(backend: Backend) {
    let store = TestStore::new(backend);
    let server = Server::start_on(&store, &ENV);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    server.set_clock("2026-03-01T00:00:00+08:00");
    for (id, plan) in [("a", "cn-30g"), ("b", "stash-10g"), ("c", "au-5g"), ("d", "uk-3g-payg")] {
        assert_eq!(server.post("/v1/subscriptions", &json!({"id": id, "plan": plan})).status, 201);
    }
    server.set_clock("2026-03-31T00:00:00+08:00");
    usage(&server, 0, 60, "2026-03-30");
    assert_eq!(server.post("/v1/subscriptions/a/events", &json!({"grant": {"kind": "gift", "data": "2GiB", "expires": "never"}})).body["outcome"], "applied");
    assert_eq!(server.post("/v1/subscriptions/b/events", &json!({"change_plan": "cn-30g"})).body["outcome"], "applied");
    let first = wait_for_checkpoint(&server, 0);
    // After the checkpoint: a boundary and more use.
    server.set_clock("2026-04-02T00:00:00+08:00");
    usage(&server, 60, 100, "2026-04-01");
    let before = everything(&server);
    drop(server.kill());

    let server = Server::start_on(&store, &ENV);
    assert_eq!(everything(&server), before, "from the checkpoint, the same as before the crash");
    let (from, replayed) = (metric(&server, "rollover_startup_checkpoint_seq"), metric(&server, "rollover_startup_replayed_events"));
    assert!(from >= first && replayed < 60, "started from event {from}, replaying {replayed} after it");
    let retry = server.post("/v1/usage", &json!({"records": [{"id": "r1", "subscription": "b", "at": "2026-03-30T01:00:00+08:00", "bytes": 2u64 << 27}]}));
    assert_eq!(retry.body["results"][0]["status"], "duplicate", "a key from before the checkpoint: {}", retry.body);
    let second = wait_for_checkpoint(&server, first);
    assert!(second > first);
    drop(server.kill());

    // The parts of a checkpoint a crash cut short, and a newest one damaged.
    let blob = |hex: &str| match backend {
        Backend::Sqlite => format!("x'{hex}'"),
        Backend::Postgres => format!("decode('{hex}', 'hex')"),
    };
    store.sql(&format!("INSERT INTO checkpoint_parts (upto_seq, part, data) VALUES ({}, 0, {}); UPDATE checkpoint_parts SET data = {} WHERE upto_seq = {second}", second + 1000, blob("00ff"), blob("52")));
    let server = Server::start_on(&store, &[("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "0")]);
    assert_eq!(everything(&server), before, "from the checkpoint before the damaged one");
    let from = metric(&server, "rollover_startup_checkpoint_seq");
    assert!(from > 0 && from < second, "the damaged checkpoint after event {second} was passed over for the one after {from}");
    drop(server.kill());

    // No checkpoint at all: the whole log.
    store.sql("DELETE FROM checkpoint_parts; DELETE FROM checkpoints;");
    let server = Server::start_on(&store, &[("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "0")]);
    assert_eq!(everything(&server), before, "the whole log gives the same");
    assert_eq!(metric(&server, "rollover_startup_checkpoint_seq"), 0);
    assert!(metric(&server, "rollover_startup_replayed_events") > 100);
}

#[test]
fn restart_from_a_checkpoint_on_sqlite() {
    restart_from_a_checkpoint(Backend::Sqlite);
}

#[test]
fn restart_from_a_checkpoint_on_postgres() {
    restart_from_a_checkpoint(Backend::Postgres);
}

/// Ledger pages read from ledger marks are the pages of a whole replay:
/// every offset around the marks, filters, windows, and a damaged mark.
fn ledger_pages_from_marks(backend: Backend) {
    let store = TestStore::new(backend);
    let off = [("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "0")];
    let server = Server::start_on(&store, &off);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    server.set_clock("2026-03-01T00:00:00+08:00");
    for (id, plan) in [("a", "cn-30g"), ("b", "stash-10g"), ("c", "au-5g"), ("d", "uk-3g-payg")] {
        assert_eq!(server.post("/v1/subscriptions", &json!({"id": id, "plan": plan})).status, 201);
    }
    // About 700 events a subscription over a month's boundary, with a
    // grant, a suspension and a plan change among them.
    let days = ["2026-03-29", "2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-03", "2026-04-04", "2026-04-05"];
    for (n, pair) in days.windows(2).enumerate() {
        let (day, next) = (pair[0], pair[1]);
        server.set_clock(&format!("{next}T00:00:00+08:00"));
        usage(&server, n * 400, n * 400 + 400, day);
        if n == 2 {
            assert_eq!(server.post("/v1/subscriptions/a/events", &json!({"grant": {"kind": "gift", "data": "2GiB", "expires": "never"}})).body["outcome"], "applied");
            assert_eq!(server.post("/v1/subscriptions/b/events", &json!({"change_plan": "cn-30g"})).body["outcome"], "applied");
            assert_eq!(server.post("/v1/subscriptions/c/events", &json!({"suspend": true})).body["outcome"], "applied");
            assert_eq!(server.post("/v1/subscriptions/c/events", &json!({"resume": true})).body["outcome"], "applied");
        }
    }
    let whole = |server: &Server, id: &str| -> Vec<Value> {
        let mut lines = Vec::new();
        loop {
            let page = server.get(&format!("/v1/subscriptions/{id}/ledger?limit=1000&offset={}", lines.len())).body;
            lines.extend(page["entries"].as_array().unwrap().iter().cloned());
            if page["next_offset"].is_null() {
                return lines;
            }
        }
    };
    let filtered = [
        "type=drawn&limit=50&offset=400",
        "type=granted&limit=1000",
        "cause=expired&limit=1000",
        "from=2026-04-01T00:00:00%2B08:00&to=2026-04-03T00:00:00%2B08:00&limit=70&offset=30",
        "from=2026-04-03T12:00:00%2B08:00&limit=1000",
    ];
    let ids = ["a", "b", "c", "d"];
    let reference: Vec<(Vec<Value>, Vec<Value>)> =
        ids.iter().map(|id| (whole(&server, id), filtered.iter().map(|q| server.get(&format!("/v1/subscriptions/{id}/ledger?{q}")).body).collect())).collect();
    assert!(reference.iter().all(|(lines, _)| lines.len() > 700), "long enough to be marked");
    assert_eq!(store.count("SELECT COUNT(*) FROM ledger_marks"), 0, "no checkpointer, no marks");
    drop(server.kill());

    let server = Server::start_on(&store, &ENV);
    wait_for_checkpoint(&server, 0);
    assert!(store.count("SELECT COUNT(*) FROM ledger_marks") >= 8, "the checkpointer marked each subscription's ledger");
    let check = |server: &Server, why: &str| {
        for (id, (lines, answers)) in ids.iter().zip(&reference) {
            assert_eq!(&whole(server, id), lines, "{id}: the whole ledger, {why}");
            let total = lines.len();
            for offset in [0, 1, 255, 256, 257, 300, 511, 512, 600, total - 100, total - 1, total] {
                for limit in [1, 100, 1000] {
                    let page = server.get(&format!("/v1/subscriptions/{id}/ledger?limit={limit}&offset={offset}")).body;
                    let want: Vec<Value> = lines.iter().skip(offset).take(limit).cloned().collect();
                    assert_eq!(page["entries"].as_array().unwrap(), &want, "{id}: offset {offset}, limit {limit}, {why}");
                    assert_eq!(page["total"], total, "{id}: the total, {why}");
                }
            }
            for (query, answer) in filtered.iter().zip(answers) {
                assert_eq!(&server.get(&format!("/v1/subscriptions/{id}/ledger?{query}")).body, answer, "{id}: {query}, {why}");
            }
        }
    };
    check(&server, "read from marks");
    drop(server.kill());
    // A damaged mark is passed over for the one before it.
    let blob = match backend {
        Backend::Sqlite => "x'01ff'",
        Backend::Postgres => "decode('01ff', 'hex')",
    };
    store.sql(&format!("UPDATE ledger_marks SET state = {blob} WHERE subscription IN ('a', 'c') AND seq = (SELECT MAX(seq) FROM ledger_marks WHERE subscription = 'a')"));
    store.sql("UPDATE ledger_marks SET lines = lines + 1 WHERE subscription = 'b'");
    let server = Server::start_on(&store, &off);
    check(&server, "with damaged marks");
}

#[test]
fn ledger_pages_from_marks_on_sqlite() {
    ledger_pages_from_marks(Backend::Sqlite);
}

#[test]
fn ledger_pages_from_marks_on_postgres() {
    ledger_pages_from_marks(Backend::Postgres);
}
