//! Moving an existing base in: `POST /v1/subscriptions/batch` and `rollover
//! import subscriptions`, idempotent by id, every bad line named.

use serde_json::json;

use crate::server::{Backend, Server};

const PLAN: &str = "[[plan]]\nid = \"m\"\nname = \"M\"\ncurrency = \"USD\"\nprice = \"5.00\"\ntimezone = \"UTC\"\nperiod = { kind = \"monthly\", anchor = \"calendar\" }\nallowance = { data = \"1GiB\" }\n";

fn import(server: &Server, file: &std::path::Path) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rollover"))
        .args(["import", "subscriptions", "--batch", "1000", "--url", &server.base])
        .arg(file)
        .output()
        .expect("rollover import runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).to_string())
}

/// A batch answers a result per subscription, in order; a bad one rejects
/// itself only, with the field that is wrong.
fn a_batch_answers_each_line(backend: Backend) {
    let server = Server::start(backend);
    assert_eq!(server.post_raw("/v1/plans", "application/toml", PLAN).status, 201);
    let body = json!({"subscriptions": [
        {"id": "b1", "plan": "m", "identifiers": {"imsi": "460001000000001"}},
        {"id": "b2", "plan": "nope"},
        {"plan": "m"},
        {"id": "b3", "plan": "m", "identifiers": {"imsi": "12"}},
        "b4",
        {"id": "b5", "plan": "m", "identifiers": {"imsi": "460001000000001"}},
    ]});
    let reply = server.post("/v1/subscriptions/batch", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_array().unwrap();
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = results.iter().map(|r| (r["status"].as_str().unwrap(), r["code"].as_str(), r["field"].as_str())).collect();
    assert_eq!(seen, [
        ("created", None, None),
        ("rejected", Some("unknown_reference"), Some("plan")),
        ("rejected", Some("missing_field"), Some("subscriptions[2].id")),
        ("rejected", Some("invalid_field"), Some("subscriptions[3].identifiers.imsi")),
        ("rejected", Some("invalid_field"), Some("subscriptions[4]")),
        ("rejected", Some("identifier_taken"), Some("identifiers.imsi")),
    ], "{}", reply.body);
    assert_eq!(reply.body["created"], 1);
    let again = server.post("/v1/subscriptions/batch", &json!({"subscriptions": [{"id": "b1", "plan": "m", "identifiers": {"imsi": "460001000000001"}}, {"id": "b1", "plan": "m"}]}));
    let statuses: Vec<&str> = again.body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["unchanged", "rejected"], "the same again is unchanged; the same id with other identifiers is refused: {}", again.body);
    let many: Vec<_> = (0..10_001).map(|i| json!({"id": format!("x{i}"), "plan": "m"})).collect();
    let too_many = server.post("/v1/subscriptions/batch", &json!({"subscriptions": many}));
    assert_eq!((too_many.status, too_many.body["code"].as_str()), (413, Some("too_many_records")), "{}", too_many.body);
}

#[test]
fn a_batch_answers_each_line_on_sqlite() {
    a_batch_answers_each_line(Backend::Sqlite);
}

#[test]
fn a_batch_answers_each_line_on_postgres() {
    a_batch_answers_each_line(Backend::Postgres);
}

/// The command line: 5,000 lines with three bad ones, each named by its
/// line number; run again, nothing is bought twice.
#[test]
fn the_import_command_names_bad_lines_and_is_idempotent() {
    let server = Server::start(Backend::Sqlite);
    assert_eq!(server.post_raw("/v1/plans", "application/toml", PLAN).status, 201);
    let dir = crate::network::Scratch::new("import");
    let file = dir.0.join("base.csv");
    let mut csv = String::from("id,plan,imsi,external_id\n");
    for i in 0..5_000 {
        match i {
            100 => csv.push_str("c100,m,12,\n"),
            200 => csv.push_str("c200,nope,,\n"),
            300 => csv.push_str("c300,m\n"),
            _ => csv.push_str(&format!("c{i},m,46000{i:010},shop-{i}\n")),
        }
    }
    std::fs::write(&file, &csv).unwrap();
    let (code, said) = import(&server, &file);
    assert_eq!(code, 1, "some lines were refused: {said}");
    assert!(said.contains("line 102: invalid_field (identifiers.imsi): must be 6 to 15 digits"), "{said}");
    assert!(said.contains("line 202: unknown_reference (plan): no plan \"nope\" in the catalog"), "{said}");
    assert!(said.contains("line 302: 2 fields, the header has 4"), "{said}");
    assert!(said.contains("4997 created, 0 unchanged, 3 refused"), "{said}");
    assert_eq!(server.get("/v1/subscriptions?external_id=shop-4999").body["subscriptions"][0]["id"], "c4999");
    let (code, said) = import(&server, &file);
    assert_eq!(code, 1);
    assert!(said.contains("0 created, 4997 unchanged, 3 refused"), "{said}");
    let missing = dir.0.join("headerless.csv");
    std::fs::write(&missing, "c1,m\n").unwrap();
    let (code, said) = import(&server, &missing);
    assert_eq!(code, 2);
    assert!(said.contains("line 1: unknown column \"c1\""), "{said}");
}
