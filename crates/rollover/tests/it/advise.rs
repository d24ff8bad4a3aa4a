//! The plan advisor, as `rollover advise` and as `POST /v1/advice`, on a
//! usage history whose best plan was worked out by hand.

use serde_json::{Value, json};

use crate::common::{repo_root, rollover};
use crate::server::{Backend, Server};

const MIB: u64 = 1 << 20;

fn fixture(name: &str) -> String {
    repo_root().join("crates/rollover/tests/it/fixtures").join(name).display().to_string()
}

/// 250 MiB a day through March 2026 (7,750 MiB), bought March 1:
/// - small (5 GiB, EUR 10, then 128 kbps): 5,120 MiB at full speed runs out
///   on day 21 (120 of its 250 MiB), so 130 + 10 x 250 = 2,630 MiB are
///   throttled on 11 days;
/// - medium (10 GiB, EUR 15): everything;
/// - payg (2 GiB, EUR 5, then EUR 2 per started GiB): 5,702 MiB over, 6
///   units, EUR 17;
/// - dollars (20 GiB, USD 9): everything, but in another currency.
///
/// The April fee falls on the end of the last date and is not counted. Best:
/// medium, the cheapest in EUR (the currency of the first plan that served
/// everything) of those that served every byte.
fn expected() -> Value {
    let plan = |id: &str, currency: &str, cost: &str, throttled: u64, days: u32| {
        json!({"plan": id, "currency": currency, "cost": cost, "expired_bytes": 0, "throttled_bytes": throttled, "throttled_days": days, "rejected_bytes": 0, "rejected_days": 0})
    };
    json!({
        "best": "medium",
        "reason": "Medium (medium) is the cheapest plan that served every byte of these 31 days at full speed: €15.00 in all.",
        "days": 31,
        "used_bytes": 31 * 250 * MIB,
        "plans": [
            plan("small", "EUR", "10.00", 2630 * MIB, 11),
            plan("medium", "EUR", "15.00", 0, 0),
            plan("payg", "EUR", "17.00", 0, 0),
            plan("dollars", "USD", "9.00", 0, 0),
        ],
    })
}

#[test]
fn the_advisor_finds_the_plan_worked_out_by_hand() {
    let out = rollover(&["advise", "--usage", &fixture("advisor-march.csv"), "--catalog", &fixture("advisor-plans.toml"), "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let advice: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(advice, expected());
    let out = rollover(&["advise", "--usage", &fixture("advisor-march.csv"), "--catalog", &fixture("advisor-plans.toml"), "--lang", "zh"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("Medium（medium）是能以全速满足这 31 天全部用量的最便宜的套餐：共 15.00 欧元。"), "{}", out.stdout);
    assert!(out.stdout.contains("*medium"), "the best is marked: {}", out.stdout);
}

#[test]
fn a_bad_usage_row_is_named_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("rollover-advise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let usage = dir.join("bad.csv");
    std::fs::write(&usage, "date,bytes\n2026-03-01,1GiB\n2026-03-02,a lot\n").unwrap();
    let out = rollover(&["advise", "--usage", usage.to_str().unwrap(), "--catalog", &fixture("advisor-plans.toml")]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("bad.csv:3: bytes \"a lot\""), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

fn advice_server(backend: Backend) -> Server {
    let server = Server::start(backend);
    let plans = std::fs::read_to_string(fixture("advisor-plans.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    server
}

#[test]
fn the_api_gives_the_same_advice() {
    let server = advice_server(Backend::Sqlite);
    let csv = std::fs::read_to_string(fixture("advisor-march.csv")).unwrap();
    let reply = server.post_raw("/v1/advice", "text/csv", &csv);
    assert_eq!((reply.status, &reply.body), (200, &expected()));
    let reply = server.post_raw("/v1/advice?lang=zh", "text/csv", "date,bytes\n2026-03-01,1GiB\n2026-02-30,1\n");
    assert_eq!((reply.status, reply.body["code"].as_str(), reply.body["field"].as_str()), (422, Some("invalid_usage_file"), Some("line 3")), "{}", reply.body);
    let reply = server.post("/v1/advice", &json!({"subscription": "nobody"}));
    assert_eq!((reply.status, reply.body["code"].as_str()), (422, Some("unknown_reference")), "{}", reply.body);
    let reply = server.post_raw("/v1/advice", "text/plain", &csv);
    assert_eq!(reply.status, 415);
}

/// From a subscription's own history: its whole days so far, against the
/// plans on sale.
#[test]
fn a_subscription_gets_advice_from_its_own_history() {
    let server = advice_server(Backend::Sqlite);
    server.set_clock("2026-03-01T00:00:00Z");
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "s1", "plan": "small"})).status, 201);
    server.set_clock("2026-03-07T12:00:00Z");
    let records: Vec<Value> = (1..=6).map(|day| json!({"id": format!("r{day}"), "subscription": "s1", "at": format!("2026-03-0{day}T09:00:00Z"), "bytes": 2048 * MIB})).collect();
    assert_eq!(server.post("/v1/usage", &json!({ "records": records })).status, 200);
    let reply = server.post("/v1/advice", &json!({"subscription": "s1"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Six whole days of 2 GiB (12 GiB): small throttles from day 3, medium
    // blocks the last 2 GiB, pay-as-you-go serves all for EUR 5 + 10 x 2;
    // dollars serves all too, but pay-as-you-go comes first in the catalog,
    // so euros are the currency ranked.
    assert_eq!((reply.body["days"].as_u64(), reply.body["used_bytes"].as_u64()), (Some(6), Some(6 * 2048 * MIB)));
    assert_eq!(reply.body["best"], "payg", "{}", reply.body);
    assert_eq!(reply.body["plans"][2]["cost"], "25.00");
    assert_eq!(reply.body["plans"][1]["rejected_bytes"], 2048 * MIB, "medium blocks the sixth day");
}
