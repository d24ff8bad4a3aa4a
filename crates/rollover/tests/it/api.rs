//! Black-box tests of `rollover serve`: the real binary on port 0 with a
//! fresh SQLite store per test, over HTTP.


use rollover_core::engine::Event;
use rollover_core::{GrantExpiry, Instant, Zone};
use rollover_terms::parse_scenario;
use serde_json::{Value, json};
use crate::server::{Backend, Server};

const UTC: fn() -> Zone = Zone::utc;

fn rfc3339(instant: Instant) -> String {
    instant.to_rfc3339(&UTC())
}

/// Replays a scenario through the API with the simulated clock and checks
/// that the balance at every expect is what `simulate` computes.
fn replay_through_api(path: &std::path::Path, backend: Backend) {
    let text = std::fs::read_to_string(path).unwrap();
    let scenario = parse_scenario(&path.display().to_string(), &text).unwrap();
    let report = rollover_terms::run(&scenario);
    let server = Server::start(backend);
    let name = path.file_name().unwrap().to_string_lossy().to_string();

    let reply = server.post_raw("/v1/plans", "application/toml", &text);
    assert_eq!(reply.status, 201, "{name}: {}", reply.body);
    server.set_clock(&rfc3339(scenario.purchased_at));
    let plan_id = &scenario.catalog.get(scenario.purchase).id;
    // Every plan reads back with its explanation in both languages (a plan
    // whose carried data never expires once made the explainer panic).
    for plan in scenario.catalog.plans() {
        let reply = server.get(&format!("/v1/plans/{}", plan.id));
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        for lang in ["en", "zh"] {
            let text = reply.body["explanation"][lang].as_str().unwrap_or_default();
            assert!(text.starts_with(&plan.name), "{name}: plan {} has no {lang} explanation: {}", plan.id, reply.body);
        }
    }
    let reply = server.post("/v1/subscriptions", &json!({"id": "s1", "plan": plan_id, "at": rfc3339(scenario.purchased_at)}));
    assert_eq!(reply.status, 201, "{name}: {}", reply.body);

    // Events, then the expects at or after them, in time order.
    let mut expects: Vec<_> = report.expects.iter().zip(scenario.expects.iter().map(|e| e.at)).collect();
    expects.sort_by_key(|(result, at)| (*at, result.number));
    let mut next_event = 0;
    let mut record = 0;
    let mut clock = scenario.purchased_at;
    let mut move_clock = |server: &Server, to: Instant| {
        if to > clock {
            server.set_clock(&rfc3339(to));
            clock = to;
        }
    };
    for (result, at) in expects {
        while let Some(event) = scenario.events.get(next_event).filter(|e| e.at <= at) {
            move_clock(&server, event.at);
            let when = rfc3339(event.at);
            let reply = match event.event {
                Event::Usage { bytes, country } => {
                    record += 1;
                    let mut r = json!({"id": format!("r{record}"), "subscription": "s1", "at": when, "bytes": bytes});
                    if let Some(country) = country {
                        r["country"] = json!(country.as_str());
                    }
                    let reply = server.post("/v1/usage", &json!({"records": [r]}));
                    assert_eq!(reply.body["results"][0]["status"], "accepted", "{name}: {}", reply.body);
                    reply
                }
                other => {
                    let body = match other {
                        Event::Install => json!({"install": true}),
                        Event::FirstUse => json!({"first_use": true}),
                        Event::Suspend => json!({"suspend": true}),
                        Event::Resume => json!({"resume": true}),
                        Event::Cancel => json!({"cancel": true}),
                        Event::ChangePlan(ix) => json!({"change_plan": scenario.catalog.get(ix).id}),
                        Event::Grant { kind, bytes, expires } => {
                            let expires = match expires {
                                GrantExpiry::At(at) => json!(rfc3339(at)),
                                GrantExpiry::PeriodEnd => json!("period_end"),
                                GrantExpiry::Never => json!("never"),
                            };
                            json!({"grant": {"kind": kind.name(), "data": bytes, "expires": expires}})
                        }
                        Event::Usage { .. } => unreachable!(),
                        Event::Addon { .. } | Event::Refund { .. } => unreachable!("scenario files hold neither add-ons nor refunds"),
                    };
                    let mut body = body;
                    body["at"] = json!(when);
                    server.post("/v1/subscriptions/s1/events", &body)
                }
            };
            assert_eq!(reply.status, 200, "{name}: {}", reply.body);
            next_event += 1;
        }
        move_clock(&server, at);
        let balance = server.get("/v1/subscriptions/s1/balance");
        assert_eq!(balance.status, 200, "{name}: {}", balance.body);
        let b = &balance.body;
        let state = &result.state;
        let context = format!("{name} expect #{} at {}", result.number, result.at);
        assert_eq!(b["status"], state.status, "{context}: status");
        assert_eq!(b["total_bytes"], state.total, "{context}: total");
        assert_eq!(b["charges"], state.charges, "{context}: charges");
        assert_eq!(b["fees"], state.fees, "{context}: fees");
        assert_eq!(b["throttled_bytes"], state.throttled, "{context}: throttled");
        assert_eq!(b["rejected_bytes"], state.rejected, "{context}: rejected");
        assert_eq!(b["daily_remaining_bytes"].as_u64(), state.daily_remaining, "{context}: daily_remaining");
        assert_eq!(b["expires_at"].as_str(), state.expires.as_deref(), "{context}: expires");
        let mut api: Vec<(String, u64, Option<String>)> = b["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["kind"].as_str().unwrap().to_string(), x["remaining_bytes"].as_u64().unwrap(), x["expires_at"].as_str().map(String::from)))
            .collect();
        let mut simulated: Vec<(String, u64, Option<String>)> = state.buckets.iter().map(|x| (x.kind.clone(), x.remaining, x.expires.clone())).collect();
        api.sort();
        simulated.sort();
        assert_eq!(api, simulated, "{context}: buckets");
    }
}

fn shared_scenarios_through_the_api_match_simulate(backend: Backend) {
    for file in crate::common::toml_files(&crate::common::shared_scenarios()) {
        replay_through_api(&file, backend);
    }
}

fn own_scenarios_through_the_api_match_simulate(backend: Backend) {
    for file in crate::common::toml_files(&crate::common::repo_root().join("scenarios")) {
        replay_through_api(&file, backend);
    }
}

fn server_with_subscription(backend: Backend) -> Server {
    let server = Server::start(backend);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    server.set_clock("2026-03-01T00:00:00+08:00");
    let reply = server.post("/v1/subscriptions", &json!({"id": "s1", "plan": "cn-30g", "identifiers": {"imsi": "460001234567890"}}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    server.set_clock("2026-03-10T00:00:00+08:00");
    server
}

fn record(id: &str, bytes: u64) -> Value {
    json!({"id": id, "subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": bytes})
}

fn a_replayed_batch_changes_nothing_and_answers_duplicate(backend: Backend) {
    let server = server_with_subscription(backend);
    let batch = json!({"records": [record("a", 1 << 30), record("b", 2 << 30), record("a", 5 << 30)]});
    let first = server.post("/v1/usage", &batch);
    assert_eq!(first.status, 200);
    let statuses: Vec<&str> = first.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "accepted", "conflict"], "a reused id with other bytes inside one batch is a conflict");
    assert_eq!(first.body["results"][2]["reason"], "id_reused");
    let balance = server.get("/v1/subscriptions/s1/balance").body;
    assert_eq!(balance["total_bytes"], (30u64 << 30) - (3 << 30));
    let again = server.post("/v1/usage", &batch);
    let statuses: Vec<&str> = again.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["duplicate", "duplicate", "conflict"]);
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body, balance);
}

fn acknowledged_usage_survives_a_crash_and_stays_deduplicated(backend: Backend) {
    let server = server_with_subscription(backend);
    let reply = server.post("/v1/usage", &json!({"records": [record("a", 1 << 30), record("b", 1 << 29)]}));
    assert_eq!(reply.status, 200);
    let before = server.get("/v1/subscriptions/s1/balance").body;
    let store = server.kill().expect("the server owned its store");
    let server = Server::start_on(&store, &[]);
    let after = server.get("/v1/subscriptions/s1/balance").body;
    assert_eq!(after, before, "the balance is rebuilt exactly from the store");
    let again = server.post("/v1/usage", &json!({"records": [record("a", 1 << 30)]}));
    assert_eq!(again.body["results"][0]["status"], "duplicate");
    let ledger = server.get("/v1/subscriptions/s1/ledger?type=drawn").body;
    assert_eq!(ledger["total"], 2, "{ledger}");
}

fn bad_input_gets_a_problem_naming_the_field_and_applies_nothing(backend: Backend) {
    let server = server_with_subscription(backend);
    let before = server.get("/v1/subscriptions/s1/balance").body;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"records": [record("ok", 1), {"id": "x", "subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": -5}]}), 400, "records[1].bytes"),
        (json!({"records": [record("ok", 1), {"id": "x", "subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": 1u64 << 50}]}), 400, "records[1].bytes"),
        (json!({"records": [record("ok", 1), {"id": "x", "subscription": "s1", "at": "yesterday", "bytes": 1}]}), 400, "records[1].at"),
        (json!({"records": [record("ok", 1), {"id": "x", "subscription": "s1", "at": "2026-03-09T12:00:00", "bytes": 1}]}), 400, "records[1].at"),
        (json!({"records": [record("ok", 1), {"subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": 1}]}), 400, "records[1].id"),
        (json!({"records": [record("ok", 1), {"id": "x", "subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": 1, "country": "China"}]}), 400, "records[1].country"),
        (json!({"records": [record("ok", 1), {"id": "x", "subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": 1, "volume": 1}]}), 400, "records[1].volume"),
        (json!({"records": []}), 400, "records"),
        (json!({"record": []}), 400, "record"),
        (json!({"records": (0..10_001).map(|i| record(&format!("r{i}"), 1)).collect::<Vec<_>>()}), 413, "records"),
    ];
    for (body, status, field) in cases {
        let reply = server.post("/v1/usage", &body);
        assert_eq!(reply.status, status, "{field}: {}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json");
        assert_eq!(reply.body["field"], field, "{}", reply.body);
        assert!(reply.body["detail"].as_str().unwrap().contains(field), "{}", reply.body);
    }
    let malformed = server.post_raw("/v1/usage", "application/json", "{\"records\": [");
    assert_eq!(malformed.status, 400);
    assert!(malformed.body["detail"].as_str().unwrap().contains("not valid JSON"), "{}", malformed.body);
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body, before, "nothing was applied");

    // Per-record problems that do not concern the batch's shape are answered per record.
    let reply = server.post(
        "/v1/usage",
        &json!({"records": [
            {"id": "u", "subscription": "nobody", "at": "2026-03-09T12:00:00+08:00", "bytes": 1},
            {"id": "old", "subscription": "s1", "at": "2026-02-01T12:00:00+08:00", "bytes": 1},
            {"id": "future", "subscription": "s1", "at": "2026-03-11T12:00:00+08:00", "bytes": 1},
        ]}),
    );
    assert_eq!(reply.status, 200);
    let results = reply.body["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["status"] == "rejected"), "{}", reply.body);
    let reasons: Vec<&str> = results.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["unknown_subscription", "too_old", "in_future"], "stable codes to branch on");
    assert!(results[0]["detail"].as_str().unwrap().contains("unknown subscription \"nobody\""));
    assert!(results[1]["detail"].as_str().unwrap().contains("too old"));
    assert!(results[2]["detail"].as_str().unwrap().contains("future"));
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body, before);
}

fn subscriptions_plans_and_events_name_what_is_wrong(backend: Backend) {
    let server = server_with_subscription(backend);
    let reply = server.post("/v1/subscriptions", &json!({"plan": "no-such-plan"}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (422, Some("plan")), "{}", reply.body);
    let reply = server.post("/v1/subscriptions", &json!({"id": "s1", "plan": "cn-30g"}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (409, Some("id")), "{}", reply.body);
    let reply = server.post("/v1/subscriptions", &json!({"id": "s2", "plan": "cn-30g", "identifiers": {"imsi": "460001234567890"}}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (409, Some("identifiers.imsi")), "{}", reply.body);
    let reply = server.post("/v1/subscriptions", &json!({"id": "s3", "plan": "cn-30g", "identifiers": {"iccid": "12ab"}}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("identifiers.iccid")), "{}", reply.body);
    let reply = server.get("/v1/subscriptions/nobody/balance");
    assert_eq!(reply.status, 404);
    let reply = server.post("/v1/subscriptions/s1/events", &json!({"grant": {"kind": "carry", "data": "1GiB", "expires": "never"}}));
    assert_eq!((reply.status, reply.body["field"].as_str()), (400, Some("grant.kind")), "{}", reply.body);
    let reply = server.post("/v1/subscriptions/s1/events", &json!({"resume": true}));
    assert_eq!(reply.body, json!({"outcome": "refused", "reason": "not_suspended", "detail": "the subscription is not suspended"}));
    let reply = server.post_raw("/v1/plans", "application/toml", "[[plan]]\nid = \"x\"\nname = \"x\"\ncurrency = \"CNY\"\nprice = \"1.001\"\ntimezone = \"UTC\"\nperiod = { kind = \"monthly\" }\n");
    assert_eq!((reply.status, reply.body["code"].as_str()), (422, Some("invalid_plan")), "{}", reply.body);
    assert_eq!(reply.body["field"], "plan \"x\" price");
    assert!(reply.body["detail"].as_str().unwrap().contains("line 5"), "{}", reply.body);
    let reply = server.post_raw("/v1/plans", "application/json", r#"{"plan": [{"id": "j", "name": "J", "currency": "EUR", "price": "5.00", "timezone": "UTC", "period": {"kind": "days", "days": 0}}]}"#);
    assert_eq!((reply.status, reply.body["field"].as_str()), (422, Some("plan \"j\" period.days")), "{}", reply.body);
}

fn a_changed_plan_gets_a_new_version_and_subscribers_keep_theirs(backend: Backend) {
    let server = server_with_subscription(backend);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    let reply = server.post_raw("/v1/plans", "application/toml", &plans);
    assert!(reply.body["plans"].as_array().unwrap().iter().all(|p| p["version"] == 1), "unchanged plans keep version 1: {}", reply.body);
    let cheaper = plans.replacen("price = \"58.00\"", "price = \"48.00\"", 1);
    let reply = server.post_raw("/v1/plans", "application/toml", &cheaper);
    assert_eq!(reply.body["plans"][0], json!({"id": "cn-30g", "version": 2}));
    assert_eq!(server.get("/v1/plans/cn-30g").body["price"], "48.00");
    let explanation = &server.get("/v1/plans/cn-30g").body["explanation"];
    assert!(explanation["zh"].as_str().unwrap().contains("流量可以结转到下个月吗？"));
    server.set_clock("2026-04-01T00:00:00+08:00");
    let balance = server.get("/v1/subscriptions/s1/balance").body;
    assert_eq!(balance["plan"], json!({"id": "cn-30g", "version": 1}));
    assert_eq!(balance["fees"], "116.00", "the subscriber keeps paying the version it bought");
}

fn metrics_count_outcomes_and_subscriptions_by_status(backend: Backend) {
    let server = server_with_subscription(backend);
    server.post("/v1/usage", &json!({"records": [record("a", 1), record("a", 1), {"id": "z", "subscription": "nobody", "at": "2026-03-09T12:00:00+08:00", "bytes": 1}]}));
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("text/plain"), "{}", reply.content_type);
    let text = reply.body.as_str().unwrap();
    for line in [
        "rollover_usage_records_total{outcome=\"accepted\"} 1",
        "rollover_usage_records_total{outcome=\"duplicate\"} 1",
        "rollover_usage_records_total{outcome=\"rejected\",reason=\"unknown_subscription\"} 1",
        "rollover_subscriptions{status=\"active\"} 1",
        "rollover_rating_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("rollover_commit_seconds_bucket"), "{text}");
    // Both stores index the log behind it, and say how far behind; the
    // index catches up with a quiet log.
    let caught_up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.get("/metrics").body.as_str().unwrap().lines().any(|l| l == "rollover_store_index_lag_events 0")
    });
    assert!(caught_up, "{backend:?}: {}", server.get("/metrics").body.as_str().unwrap());
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
}


/// Checks that `value` has every required field of the schema and no field
/// the schema does not declare, following `$ref`s and array items.
fn conforms(doc: &Value, schema: &Value, value: &Value, path: &str) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => &doc["components"]["schemas"][reference.rsplit('/').next().unwrap()],
        None => schema,
    };
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object()) {
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(object.contains_key(required.as_str().unwrap()), "{path}: missing required {required} in {value}");
        }
        for (key, field) in object {
            let declared = properties.get(key).unwrap_or_else(|| panic!("{path}: {key} is not in the schema"));
            conforms(doc, declared, field, &format!("{path}.{key}"));
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            conforms(doc, items, item, &format!("{path}[{i}]"));
        }
    }
}

fn openapi_matches_the_server(backend: Backend) {
    let server = server_with_subscription(backend);
    let doc = server.get("/openapi.json").body;
    assert_eq!(doc["openapi"], "3.1.0");
    // Every documented operation is served.
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "s1");
        for method in operations.as_object().unwrap().keys() {
            let reply = match method.as_str() {
                "get" => server.get(&concrete),
                "post" => server.post(&concrete, &json!({})),
                "delete" => server.delete_json(&concrete, &json!({})),
                other => panic!("undocumented method {other}"),
            };
            assert_ne!(reply.status, 405, "{method} {path}");
            assert_ne!(reply.body["detail"], "no such endpoint", "{method} {path} is documented but not served");
        }
    }
    assert_eq!(server.get("/v1/nothing").body["detail"], "no such endpoint");
    // Every response has the documented shape.
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let check = |name: &str, value: &Value| conforms(&doc, &schema(name), value, name);
    check("PlanList", &server.get("/v1/plans").body);
    check("Plan", &server.get("/v1/plans/cn-30g").body);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    check("PlanVersions", &server.post_raw("/v1/plans", "application/toml", &plans).body);
    check("Created", &server.post("/v1/subscriptions", &json!({"plan": "au-5g"})).body);
    check("EventOutcome", &server.post("/v1/subscriptions/s1/events", &json!({"grant": {"kind": "gift", "data": "1GiB", "expires": "period_end"}})).body);
    check("EventOutcome", &server.post("/v1/subscriptions/s1/events", &json!({"resume": true})).body);
    check("UsageResults", &server.post("/v1/usage", &json!({"records": [record("a", 1 << 20), record("a", 1), {"id": "z", "subscription": "x", "at": "2026-03-09T12:00:00+08:00", "bytes": 1}]})).body);
    check("Balance", &server.get("/v1/subscriptions/s1/balance").body);
    check("Ledger", &server.get("/v1/subscriptions/s1/ledger?limit=2").body);
    check("Ledger", &server.get("/v1/subscriptions/s1/ledger").body);
    let opened = server.post("/v1/sessions", &json!({"id": "g1", "subscription": "s1", "requested_bytes": 1000}));
    check("SessionAnswer", &opened.body);
    check("SessionAnswer", &server.post("/v1/sessions/g1/update", &json!({"used_bytes": 10, "request_number": 1})).body);
    check("SessionAnswer", &server.delete_json("/v1/sessions/g1", &json!({"used_bytes": 10, "request_number": 2})).body);
    check("Clock", &server.get("/v1/clock").body);
    let cluster = server.get("/v1/cluster").body;
    check("Cluster", &cluster);
    assert_eq!(cluster, json!({"mode": "single"}), "a node that runs alone says so");
    check("Problem", &server.get("/v1/subscriptions/nobody/balance").body);
    let page = server.get("/docs");
    assert_eq!(page.status, 200);
    assert!(page.body.as_str().unwrap().contains("/v1/subscriptions/{id}/balance"));
}


fn a_record_from_before_a_crossed_boundary_is_rated_now_and_marked_late(backend: Backend) {
    let server = server_with_subscription(backend);
    server.post("/v1/usage", &json!({"records": [record("early", 1 << 30)]}));
    // March ends; a record stamped in March arrives after the turn.
    server.set_clock("2026-04-01T00:10:00+08:00");
    let reply = server.post("/v1/usage", &json!({"records": [{"id": "late", "subscription": "s1", "at": "2026-03-31T23:59:00+08:00", "bytes": 1 << 30}]}));
    assert_eq!(reply.body["results"][0]["status"], "accepted");
    assert_eq!(reply.body["results"][0]["late"], true, "{}", reply.body);
    let balance = server.get("/v1/subscriptions/s1/balance").body;
    // March's 29 GiB carried over; the late gigabyte was drawn from it (carry first).
    let carry = balance["buckets"].as_array().unwrap().iter().find(|b| b["kind"] == "carry").unwrap();
    assert_eq!(carry["remaining_bytes"], 28u64 << 30, "{balance}");
    let ledger = server.get("/v1/subscriptions/s1/ledger?type=drawn").body;
    let draws = ledger["entries"].as_array().unwrap();
    assert_eq!(draws.len(), 2, "{ledger}");
    assert!(draws[0].get("late").is_none(), "the record on time is not late: {ledger}");
    assert_eq!(draws[1]["late"], true, "{ledger}");
    assert_eq!(draws[1]["kind"], "carry");
}


fn usage_bytes_may_be_a_number_or_an_amount(backend: Backend) {
    let server = server_with_subscription(backend);
    let reply = server.post(
        "/v1/usage",
        &json!({"records": [record("n", 1 << 20), {"id": "s", "subscription": "s1", "at": "2026-03-09T12:00:00+08:00", "bytes": "1MiB", "country": null}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[0], json!({"id": "n", "status": "accepted", "drawn_bytes": 1 << 20, "throttled_bytes": 0, "rejected_bytes": 0}));
    assert_eq!(results[1], json!({"id": "s", "status": "accepted", "drawn_bytes": 1 << 20, "throttled_bytes": 0, "rejected_bytes": 0}));
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body["total_bytes"], (30u64 << 30) - (2 << 20));
}


fn idempotency_holds_for_the_maximum_age_and_memory_does_not_keep_older_keys(backend: Backend) {
    let server = server_with_subscription(backend);
    // Enough records to make the key set sweep itself several times.
    let records: Vec<Value> = (0..300).map(|n| record(&format!("k{n}"), 1)).collect();
    assert_eq!(server.post("/v1/usage", &json!({"records": records})).status, 200);
    let again = server.post("/v1/usage", &json!({"records": [record("k0", 1), record("k299", 1)]}));
    assert_eq!(again.body["results"][0]["status"], "duplicate", "{}", again.body);
    assert_eq!(again.body["results"][1]["status"], "duplicate");
    // Past the maximum age (7 days), and after newer records made the key set
    // sweep itself, an old retry is rejected as too old: never applied twice.
    server.set_clock("2026-03-16T12:00:01+08:00");
    let fresh: Vec<Value> = (0..300)
        .map(|n| json!({"id": format!("f{n}"), "subscription": "s1", "at": "2026-03-16T12:00:00+08:00", "bytes": 1}))
        .collect();
    assert_eq!(server.post("/v1/usage", &json!({"records": fresh})).status, 200);
    let before = server.get("/v1/subscriptions/s1/balance").body["total_bytes"].clone();
    let late = server.post("/v1/usage", &json!({"records": (0..300).map(|n| record(&format!("k{n}"), 1)).collect::<Vec<_>>()}));
    let statuses: std::collections::BTreeSet<&str> = late.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["rejected"].into_iter().collect(), "old keys were dropped and their retries are too old");
    assert_eq!(server.get("/v1/subscriptions/s1/balance").body["total_bytes"], before, "nothing applied twice");
    let recent = server.post("/v1/usage", &json!({"records": [{"id": "f0", "subscription": "s1", "at": "2026-03-16T12:00:00+08:00", "bytes": 1}]}));
    assert_eq!(recent.body["results"][0]["status"], "duplicate", "recent keys are kept");
}

on_both_stores!(idempotency_holds_for_the_maximum_age_and_memory_does_not_keep_older_keys, usage_bytes_may_be_a_number_or_an_amount, a_record_from_before_a_crossed_boundary_is_rated_now_and_marked_late, openapi_matches_the_server, shared_scenarios_through_the_api_match_simulate, own_scenarios_through_the_api_match_simulate, a_replayed_batch_changes_nothing_and_answers_duplicate, acknowledged_usage_survives_a_crash_and_stays_deduplicated, bad_input_gets_a_problem_naming_the_field_and_applies_nothing, subscriptions_plans_and_events_name_what_is_wrong, a_changed_plan_gets_a_new_version_and_subscribers_keep_theirs, metrics_count_outcomes_and_subscriptions_by_status, subscriptions_are_found_by_identifier_and_listed_by_status_and_plan);

/// Support staff find a subscription by what the customer quotes (ICCID,
/// IMSI, MSISDN, external id) and page through the rest by status and plan.
fn subscriptions_are_found_by_identifier_and_listed_by_status_and_plan(backend: Backend) {
    let server = Server::start(backend);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    for n in 0..5 {
        let plan = if n < 3 { "cn-30g" } else { "asia-7d" };
        let identifiers = json!({"iccid": format!("8986000000000000000{n}"), "imsi": format!("46000123456789{n}"), "msisdn": format!("8613800000{n:03}"), "external_id": format!("order-{n}")});
        let reply = server.post("/v1/subscriptions", &json!({"id": format!("s{n}"), "plan": plan, "identifiers": identifiers}));
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    for query in ["iccid=89860000000000000002", "imsi=460001234567892", "msisdn=8613800000002", "external_id=order-2"] {
        let reply = server.get(&format!("/v1/subscriptions?{query}"));
        assert_eq!(reply.body, json!({"subscriptions": [{"id": "s2", "plan": {"id": "cn-30g", "version": 1}, "status": "active"}], "total": 1}), "{query}");
    }
    assert_eq!(server.get("/v1/subscriptions?imsi=999").body, json!({"subscriptions": [], "total": 0}));
    let page = server.get("/v1/subscriptions?plan=cn-30g&limit=2").body;
    assert_eq!((page["total"].as_u64(), page["next_offset"].as_u64()), (Some(3), Some(2)), "{page}");
    let ids: Vec<&str> = page["subscriptions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s0", "s1"]);
    let pending = server.get("/v1/subscriptions?status=pending").body;
    assert_eq!(pending["total"], 2, "the passes wait for their first use: {pending}");
    assert_eq!(server.get("/v1/subscriptions?iccid=89860000000000000002&imsi=460001234567890").body["total"], 0, "identifiers of two subscriptions");
    assert_eq!(server.get("/v1/subscriptions?iccid=89860000000000000002&imsi=460001234567892").body["total"], 1);
    assert_eq!(server.get("/v1/subscriptions?iccid=89860000000000000002&status=pending").body["total"], 0, "the filter applies too");
    for (query, field) in [("status=asleep", "status"), ("limit=0", "limit")] {
        let reply = server.get(&format!("/v1/subscriptions?{query}"));
        assert_eq!((reply.status, reply.body["code"].as_str(), reply.body["field"].as_str()), (400, Some("invalid_query"), Some(field)), "{query}: {}", reply.body);
    }
}
