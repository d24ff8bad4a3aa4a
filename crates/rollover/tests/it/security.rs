//! API keys, scopes, rate limits and customer tokens, over HTTP.


use serde_json::json;
use crate::server::{Backend, Server};

const WRITER: &str = "writer-key-0123456789";
const READER: &str = "reader-key-0123456789";
const SLOW: &str = "slow-key-0123456789ab";

fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn secured(backend: Backend) -> Server {
    let config = format!(
        "[security]\ntoken_secret = \"test-secret-of-at-least-thirty-two-bytes\"\ntoken_requests_per_second = 5\n\n[[security.api_keys]]\nid = \"reporting\"\nsha256 = \"{}\"\nscope = \"read\"\n\n[[security.api_keys]]\nid = \"slow\"\nsha256 = \"{}\"\nscope = \"read\"\nrequests_per_second = 2\n",
        sha256_hex(READER),
        sha256_hex(SLOW)
    );
    let server = Server::start_configured(backend, &config, &[("ROLLOVER_API_KEY", WRITER)]);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    let reply = server.call("POST", "/v1/clock", Some(&json!({"now": "2026-03-01T00:00:00Z"})), Some(WRITER));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let agent_reply = {
        let url = format!("{}/v1/plans", server.base);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.post(&url).header("authorization", format!("Bearer {WRITER}")).header("content-type", "application/toml").send(plans).unwrap().status().as_u16()
    };
    assert_eq!(agent_reply, 201);
    for id in ["s1", "s2"] {
        let reply = server.call("POST", "/v1/subscriptions", Some(&json!({"id": id, "plan": "cn-30g"})), Some(WRITER));
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    server
}

fn keys_and_scopes_decide_who_may_do_what(backend: Backend) {
    let server = secured(backend);
    let anonymous = server.call("GET", "/v1/subscriptions/s1/balance", None, None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.content_type, "application/problem+json");
    assert_eq!(anonymous.body["field"], "Authorization");
    assert_eq!(server.call("GET", "/v1/plans", None, Some("wrong-key-0123456789")).status, 401);
    assert_eq!(server.call("GET", "/v1/subscriptions/s1/balance", None, Some(READER)).status, 200);
    let denied = server.call("POST", "/v1/usage", Some(&json!({"records": [{"id": "a", "subscription": "s1", "at": "2026-03-01T00:00:00Z", "bytes": 1}]})), Some(READER));
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body["detail"].as_str().unwrap().contains("may only read"));
    assert_eq!(server.call("GET", "/v1/subscriptions/s1/balance", None, Some(READER)).body["total_bytes"], 30u64 << 30, "...and nothing was applied");
    assert_eq!(server.get("/healthz").status, 200, "health needs no key");
    assert_eq!(server.get("/openapi.json").status, 200, "nor does the API description");
    let mut limited = 0;
    for _ in 0..20 {
        let reply = server.call("GET", "/v1/plans", None, Some(SLOW));
        if reply.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 10, "2 requests a second, bursts of 4: {limited} of 20 limited");
}

fn customer_tokens_read_only_their_own_subscription(backend: Backend) {
    let server = secured(backend);
    let minted = server.call("POST", "/v1/subscriptions/s1/tokens", Some(&json!({"expires_in_seconds": 3600})), Some(WRITER));
    assert_eq!(minted.status, 201, "{}", minted.body);
    let token = minted.body["token"].as_str().unwrap().to_string();
    assert_eq!(server.call("GET", "/v1/subscriptions/s1/balance", None, Some(&token)).status, 200);
    assert_eq!(server.call("GET", "/v1/subscriptions/s1/ledger", None, Some(&token)).status, 200);
    assert_eq!(server.call("GET", "/v1/subscriptions/s2/balance", None, Some(&token)).status, 403);
    assert_eq!(server.call("GET", "/v1/plans", None, Some(&token)).status, 403);
    assert_eq!(server.call("POST", "/v1/subscriptions/s1/events", Some(&json!({"cancel": true})), Some(&token)).status, 403);
    let forged = token.replacen("rt1.", "rt1.00", 1);
    assert_eq!(server.call("GET", "/v1/subscriptions/s1/balance", None, Some(&forged)).status, 401);
    assert_eq!(server.call("POST", "/v1/subscriptions/s1/tokens", None, Some(READER)).status, 403, "minting needs read-write");
    assert_eq!(server.call("POST", "/v1/subscriptions/nobody/tokens", None, Some(WRITER)).status, 404);
    // Tokens expire on the service clock.
    let reply = server.call("POST", "/v1/clock", Some(&json!({"now": "2026-03-01T01:00:00Z"})), Some(WRITER));
    assert_eq!(reply.status, 200);
    let expired = server.call("GET", "/v1/subscriptions/s1/balance", None, Some(&token));
    assert_eq!(expired.status, 401);
    assert!(expired.body["detail"].as_str().unwrap().contains("expired"), "{}", expired.body);
}

fn tokens_are_rate_limited_and_the_scheme_is_case_insensitive(backend: Backend) {
    let server = secured(backend);
    let lower = {
        let url = format!("{}/v1/plans", server.base);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.get(&url).header("authorization", format!("bearer {READER}")).call().unwrap().status().as_u16()
    };
    assert_eq!(lower, 200, "the Authorization scheme is case-insensitive");
    let minted = server.call("POST", "/v1/subscriptions/s1/tokens", None, Some(WRITER));
    let token = minted.body["token"].as_str().unwrap().to_string();
    let statuses: Vec<u16> = (0..30).map(|_| server.call("GET", "/v1/subscriptions/s1/balance", None, Some(&token)).status).collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 15, "5 a second, bursts of 10, for one subscription's tokens: {statuses:?}");
    assert!(statuses[..10].iter().all(|s| *s == 200), "the burst is served: {statuses:?}");
    let refused = server.call("GET", "/v1/subscriptions/s1/balance", None, Some(&token));
    assert_eq!((refused.status, refused.content_type.as_str()), (429, "application/problem+json"));
    // Another subscription's tokens have their own budget; keys are not touched.
    let other = server.call("POST", "/v1/subscriptions/s2/tokens", None, Some(WRITER));
    let other = other.body["token"].as_str().unwrap().to_string();
    assert_eq!(server.call("GET", "/v1/subscriptions/s2/balance", None, Some(&other)).status, 200);
    assert_eq!(server.call("GET", "/v1/subscriptions/s1/balance", None, Some(READER)).status, 200);
}

on_both_stores!(keys_and_scopes_decide_who_may_do_what, customer_tokens_read_only_their_own_subscription, tokens_are_rate_limited_and_the_scheme_is_case_insensitive);
