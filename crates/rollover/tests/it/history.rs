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

/// The demo catalog, the clock at `on`, and subscriptions a to d on four of its plans.
fn four_subscriptions(server: &Server, on: &str) {
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    server.set_clock(on);
    for (id, plan) in [("a", "cn-30g"), ("b", "stash-10g"), ("c", "au-5g"), ("d", "uk-3g-payg")] {
        assert_eq!(server.post("/v1/subscriptions", &json!({"id": id, "plan": plan})).status, 201);
    }
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

/// A subscription's whole ledger, page by page.
fn whole(server: &Server, id: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let page = server.get(&format!("/v1/subscriptions/{id}/ledger?limit=1000&offset={}", lines.len())).body;
        lines.extend(page["entries"].as_array().unwrap_or_else(|| panic!("{page}")).iter().cloned());
        if page["next_offset"].is_null() {
            return lines;
        }
    }
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
    four_subscriptions(&server, "2026-03-01T00:00:00+08:00");
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

    // A crash while a checkpoint is written: its parts are there, its mark
    // is not; the restart starts from the one before and loses nothing.
    let crashing = [("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "40"), ("ROLLOVER_FAILPOINT", "checkpoint-parts")];
    let server = Server::start_on(&store, &crashing);
    usage(&server, 100, 160, "2026-04-01");
    assert!(server.wait_exit(60), "the failpoint stopped the server while it wrote a checkpoint");
    assert!(store.count(&format!("SELECT COUNT(*) FROM checkpoint_parts WHERE upto_seq > {second}")) > 0, "the parts were written");
    assert_eq!(store.count(&format!("SELECT COUNT(*) FROM checkpoints WHERE upto_seq > {second}")), 0, "the mark was not");
    let server = Server::start_on(&store, &[("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "0")]);
    assert_eq!(metric(&server, "rollover_startup_checkpoint_seq"), second, "from the checkpoint before the crash");
    let after_crash = everything(&server);
    assert_ne!(after_crash, before, "with the records answered before the crash");
    // What follows compares with a replay of the whole log too.
    let before = after_crash;
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
    four_subscriptions(&server, "2026-03-01T00:00:00+08:00");
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

/// Retention: January's events, two months old, are exported and dropped
/// after a checkpoint; the ledger shows the rest, exactly as before, and the
/// archived periods' totals; a crash between the export and the drop loses
/// nothing; and a start with no checkpoint begins at the floors.
fn retention_exports_then_drops(backend: Backend) {
    let store = TestStore::new(backend);
    let archive = std::env::temp_dir().join(format!("rollover-archive-{}-{}", std::process::id(), store.url.len() % 97 + matches!(backend, Backend::Postgres) as usize));
    let _ = std::fs::remove_dir_all(&archive);
    let off = [("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "0")];
    let server = Server::start_on(&store, &off);
    four_subscriptions(&server, "2026-01-01T00:00:00+08:00");
    let days = ["2026-01-24", "2026-01-25", "2026-01-26", "2026-01-27", "2026-01-28", "2026-01-29", "2026-01-30", "2026-01-31"];
    for (n, pair) in days.windows(2).enumerate() {
        server.set_clock(&format!("{}T00:00:00+08:00", pair[1]));
        usage(&server, n * 400, n * 400 + 400, pair[0]);
    }
    assert_eq!(server.post("/v1/subscriptions/a/events", &json!({"grant": {"kind": "gift", "data": "2GiB", "expires": "never"}})).body["outcome"], "applied");
    server.set_clock("2026-03-20T00:00:00+08:00");
    usage(&server, 5000, 5040, "2026-03-19");
    let ids = ["a", "b", "c", "d"];
    let balances = |server: &Server| -> Vec<Value> { ids.iter().map(|id| server.get(&format!("/v1/subscriptions/{id}/balance")).body).collect() };
    let march = "from=2026-03-01T00:00:00%2B08:00&limit=1000";
    let reference: Vec<Vec<Value>> = ids.iter().map(|id| whole(&server, id)).collect();
    let reference_march: Vec<Value> = ids.iter().map(|id| server.get(&format!("/v1/subscriptions/{id}/ledger?{march}")).body).collect();
    let reference_balances = balances(&server);
    let events_before = store.count("SELECT COUNT(*) FROM events");
    drop(server.kill());

    let export = archive.display().to_string();
    let retain = [("ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS", "40"), ("ROLLOVER_RETENTION_MONTHS", "1"), ("ROLLOVER_RETENTION_EXPORT_DIR", export.as_str())];
    // A crash after the first file is written, before anything is dropped.
    let crashing: Vec<(&str, &str)> = retain.iter().copied().chain([("ROLLOVER_FAILPOINT", "retention-exported")]).collect();
    let server = Server::start_on(&store, &crashing);
    assert!(server.wait_exit(60), "the failpoint stopped the server during retention");
    assert_eq!(store.count("SELECT COUNT(*) FROM events"), events_before, "nothing dropped before the commit");
    assert_eq!(store.count("SELECT COUNT(*) FROM ledger_floors"), 0);
    let files = |dir: &std::path::Path| -> Vec<Value> {
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(path.extension().and_then(|e| e.to_str()), Some("jsonl"), "only whole files: {}", path.display());
            lines.extend(std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
        lines
    };
    assert!(!files(&archive).is_empty(), "the export was written first");

    // Again, to the end.
    let server = Server::start_on(&store, &retain);
    for _ in 0..300 {
        if metric(&server, "rollover_retention_passes_total") > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dropped = metric(&server, "rollover_archived_events_total");
    assert!(dropped >= 4 * 500, "about 512 events a subscription archived: {dropped}");
    assert_eq!(store.count("SELECT COUNT(*) FROM events"), events_before - dropped);
    let exported = files(&archive);
    let seqs: std::collections::BTreeSet<i64> = exported.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs.len() as i64, dropped, "every dropped event is in a file (some twice, after the crash)");
    assert!(exported.iter().all(|l| l["subscription"].is_string() && l["applied_at"].is_string() && l["kind"].is_string()));
    assert!(exported.iter().any(|l| l["kind"] == "purchase") && exported.iter().any(|l| l["kind"] == "usage" && l["bytes"].is_u64()));
    let check = |server: &Server, why: &str| {
        assert_eq!(balances(server), reference_balances, "balances, {why}");
        for (n, id) in ids.iter().enumerate() {
            let page = server.get(&format!("/v1/subscriptions/{id}/ledger?limit=5")).body;
            let archived = page["archived"]["lines"].as_u64().unwrap_or_else(|| panic!("{id}: {page}")) as usize;
            assert!(archived > 500, "{id}: {archived} lines archived");
            assert_eq!(whole(server, id), reference[n][archived..], "{id}: the lines after the floor, {why}");
            assert_eq!(page["total"], reference[n].len() - archived, "{id}: the total counts from the floor");
            let used: i64 = page["archived"]["periods"].as_array().unwrap().iter().map(|p| p["used_bytes"].as_i64().unwrap()).sum();
            let before: i64 = reference[n][..archived].iter().filter(|l| l["type"] == "drawn" || l["type"] == "accepted_unmetered").map(|l| l["bytes"].as_i64().unwrap()).sum();
            assert_eq!(used, before, "{id}: the archived periods add up to the lines they stand for");
            let mut march_now = server.get(&format!("/v1/subscriptions/{id}/ledger?{march}")).body;
            march_now.as_object_mut().unwrap().remove("archived");
            assert_eq!(march_now, reference_march[n], "{id}: a window after the floor, {why}");
        }
    };
    check(&server, "after retention");
    assert_eq!(server.get("/v1/subscriptions/a/ledger?limit=1").body["archived"]["periods"][0]["fees"], "58.00");
    drop(server.kill());

    // No checkpoint at all: start-up begins each subscription at its floor.
    store.sql("DELETE FROM checkpoint_parts; DELETE FROM checkpoints;");
    let server = Server::start_on(&store, &off);
    check(&server, "from the floors, no checkpoint");
    let _ = std::fs::remove_dir_all(&archive);
}

#[test]
fn retention_exports_then_drops_on_sqlite() {
    retention_exports_then_drops(Backend::Sqlite);
}

#[test]
fn retention_exports_then_drops_on_postgres() {
    retention_exports_then_drops(Backend::Postgres);
}
