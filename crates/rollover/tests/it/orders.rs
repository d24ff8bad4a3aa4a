//! Selling the eSIM end to end, over real TLS with client certificates:
//! `rollover serve` orders profiles from the SM-DP+ test double, which
//! plays the phone and reports back to rollover's callback listener.

use std::sync::Arc;
use std::time::Duration;

use rollover_es2::double::{Double, Fault};
use rollover_esim::{ProfileState, Step};
use serde_json::{Value, json};

use crate::es2::{Certificates, certificates, client, smdp};
use crate::server::{Backend, Server, TestStore};

const PLANS: &str = r#"
[[plan]]
id = "jp-travel"
name = "Japan 5 GB, 7 days"
currency = "USD"
price = "9.90"
timezone = "Asia/Tokyo"
profile_type = "travel"
period = { kind = "once", length = "7 days", starts = "install", activate_within = "30 days" }
allowance = { data = "5GiB" }
coverage = { countries = ["JP"] }

[[plan]]
id = "jp-first-use"
name = "Japan 3 GB, 7 days from first use"
currency = "USD"
price = "6.50"
timezone = "Asia/Tokyo"
profile_type = "travel"
period = { kind = "once", length = "7 days", starts = "first_use", activate_within = "30 days" }
allowance = { data = "3GiB" }

[[plan]]
id = "home-data"
name = "Home 10 GB monthly"
currency = "USD"
price = "15.00"
timezone = "UTC"
profile_type = "home"
period = { kind = "monthly", anchor = "calendar" }
allowance = { data = "10GiB" }
"#;

const ICCIDS: [&str; 3] = ["89445000000000000019", "89445000000000000027", "89445000000000000035"];

/// The double (three `travel` profiles) and rollover configured to order
/// from it, with a short wait before retries and a one-second timeout.
pub(crate) struct Setup {
    certificates: Certificates,
    runtime: tokio::runtime::Runtime,
    double: Arc<Double>,
    env: Vec<(&'static str, String)>,
}

impl Setup {
    pub(crate) fn new(receiver: Option<&crate::webhooks::Receiver>) -> Setup {
        let certificates = certificates();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (double, port) = runtime.block_on(smdp(&certificates));
        let mut env = receiver.map(crate::webhooks::env).unwrap_or_default();
        env.extend([
            ("ROLLOVER_ESIM_SMDP_URL", format!("https://localhost:{port}")),
            ("ROLLOVER_ESIM_REQUESTER_ID", "rollover.test".to_string()),
            ("ROLLOVER_ESIM_CLIENT_CERT", certificates.client.0.display().to_string()),
            ("ROLLOVER_ESIM_CLIENT_KEY", certificates.client.1.display().to_string()),
            ("ROLLOVER_ESIM_CA_CERT", certificates.ca.display().to_string()),
            ("ROLLOVER_ESIM_TIMEOUT_SECONDS", "1".to_string()),
            ("ROLLOVER_ESIM_RETRY_BASE_MS", "200".to_string()),
            ("ROLLOVER_ESIM_CALLBACK_LISTEN", "127.0.0.1:0".to_string()),
            ("ROLLOVER_ESIM_CALLBACK_CERT", certificates.server.0.display().to_string()),
            ("ROLLOVER_ESIM_CALLBACK_KEY", certificates.server.1.display().to_string()),
            ("ROLLOVER_ESIM_CALLBACK_CLIENT_CA", certificates.ca.display().to_string()),
        ]);
        Setup { certificates, runtime, double, env }
    }

    pub(crate) fn start(&self, store: &TestStore) -> Server {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start_on(store, &env);
        let port = server.esim.expect("the callback listener's address is printed").port();
        // The SM-DP+ reports with its own client certificate from the CA.
        self.double.report_to(client(&self.certificates, port, &self.certificates.client, Duration::from_secs(5)));
        server
    }

    fn play(&self, iccid: &str, step: Step, at: &str) -> ProfileState {
        self.runtime.block_on(self.double.play(iccid, step, at)).unwrap()
    }
}

pub(crate) fn stock(server: &Server) {
    assert_eq!(server.post_raw("/v1/plans", "application/toml", PLANS).status, 201);
    let csv = format!("iccid,profile_type,imsi,msisdn\n{},travel,440101234567891,8190000001\n{},travel,,\n{},travel,,\n", ICCIDS[0], ICCIDS[1], ICCIDS[2]);
    assert_eq!(server.post_raw("/v1/esim/profiles", "text/csv", &csv).body["added"], 3);
}

fn wait_for_status(server: &Server, id: &str, status: &str) -> Value {
    for _ in 0..100 {
        let order = server.get(&format!("/v1/orders/{id}")).body;
        if order["status"] == status {
            return order;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("order {id} never became {status}: {}", server.get(&format!("/v1/orders/{id}")).body);
}

fn decode(png: &[u8]) -> String {
    let dir = crate::network::Scratch::new("order-qr");
    let path = dir.0.join("qr.png");
    std::fs::write(&path, png).unwrap();
    let output = std::process::Command::new("zbarimg").args(["--raw", "-q"]).arg(&path).output().expect("zbarimg runs (zbar-tools; .ci/run installs it)");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The whole sale: an order gives an activation code whose QR code decodes
/// to it; the phone downloads and installs the profile, and the install
/// starts the plan at the instant the SM-DP+ reported; a repeated order is
/// answered as the first and calls nobody; a plan that starts at first use
/// is not started by the install; cancelling before the download refunds,
/// after it is refused.
fn sells_an_esim(backend: Backend) {
    let setup = Setup::new(None);
    let store = TestStore::new(backend);
    let server = setup.start(&store);
    stock(&server);
    let reply = server.post("/v1/orders", &json!({"id": "o1", "plan": "jp-travel", "eid": "89049032000000000000000000001230", "identifiers": {"external_id": "shop-1001"}}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let order = reply.body;
    assert_eq!((order["status"].as_str(), order["iccid"].as_str(), order["subscription"].as_str()), (Some("completed"), Some(ICCIDS[0]), Some("o1")), "{order}");
    let code = order["activation_code"].as_str().unwrap().to_string();
    assert!(code.starts_with("LPA:1$smdp.test.example$MID-"), "{code}");
    assert_eq!(order["links"]["ios"].as_str().unwrap(), format!("https://esimsetup.apple.com/esim_qrcode_provisioning?carddata={}", code.replace('$', "%24").replace(':', "%3A")));
    assert!(order["links"]["android"].as_str().unwrap().starts_with("https://esimsetup.android.com/esim_qrcode_provisioning?carddata=LPA%3A1%24"));
    let (status, content_type, png) = server.get_bytes("/v1/orders/o1/qr.png");
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(decode(&png), code, "the QR code holds exactly the activation code");
    let (status, content_type, svg) = server.get_bytes("/v1/orders/o1/qr.svg");
    assert_eq!((status, content_type.as_str()), (200, "image/svg+xml"));
    assert!(String::from_utf8(svg).unwrap().starts_with("<svg"));
    // The SM-DP+ did it in two calls; rollover's inventory follows.
    let calls = setup.double.calls();
    assert_eq!(calls.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["downloadOrder", "confirmOrder"]);
    assert_eq!(setup.double.state_of(ICCIDS[0]), Some(ProfileState::Released));
    assert_eq!(server.get(&format!("/v1/esim/profiles/{}", ICCIDS[0])).body["state"], "released");
    // The subscription holds the profile's identifiers and waits for the install.
    let ids = server.get("/v1/subscriptions?plan=jp-travel").body;
    assert_eq!(ids["subscriptions"][0]["id"], "o1", "{ids}");
    assert_eq!(server.get(&format!("/v1/esims/{}", ICCIDS[0])).body["subscription"]["status"], "pending");
    // The same order again: the same answer, no call, no second profile.
    let again = server.post("/v1/orders", &json!({"id": "o1", "plan": "jp-travel", "eid": "89049032000000000000000000001230"}));
    assert_eq!((again.status, again.body["activation_code"].as_str()), (200, Some(code.as_str())));
    assert_eq!(setup.double.calls().len(), 2);
    let other = server.post("/v1/orders", &json!({"id": "o1", "plan": "jp-first-use"}));
    assert_eq!((other.status, other.body["code"].as_str(), other.body["field"].as_str()), (409, Some("order_mismatch"), Some("plan")), "{}", other.body);
    // The customer page shows how to install it, until it is installed.
    let link = server.post("/v1/subscriptions/o1/tokens", &json!({})).body["url"].as_str().unwrap().to_string();
    let page_path = format!("{}?lang=en", link.trim_start_matches(&server.base));
    let page = server.get(&page_path).body.as_str().unwrap().to_string();
    let shown = code.replace('$', "&#36;");
    assert!(page.contains(&code) || page.contains(&shown), "the activation code is on the page");
    assert!(page.contains("https://esimsetup.apple.com/esim_qrcode_provisioning?carddata=LPA%3A1%24smdp.test.example%24MID-"), "the iPhone link");
    assert!(page.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=") && page.contains("class=\"qr\""), "the QR code");
    // The phone downloads and installs it; the plan starts at that instant.
    server.set_clock("2025-12-01T12:00:00Z");
    setup.play(ICCIDS[0], Step::Downloaded, "2025-12-01T09:00:00Z");
    setup.play(ICCIDS[0], Step::Installed, "2025-12-01T09:05:00Z");
    let esim = server.get(&format!("/v1/esims/{}", ICCIDS[0])).body;
    assert_eq!((esim["profile_state"].as_str(), esim["subscription"]["status"].as_str()), (Some("installed"), Some("active")), "{esim}");
    assert_eq!(esim["subscription"]["expires_at"], "2025-12-08T18:05:00+09:00", "7 days from the install, in the plan's zone: {esim}");
    let page = server.get(&page_path).body.as_str().unwrap().to_string();
    assert!(page.contains("installed on your phone") && !page.contains("esimsetup.apple.com"), "once installed, no install help");
    let cancel = server.post("/v1/orders/o1/cancel", &json!({}));
    assert_eq!((cancel.status, cancel.body["code"].as_str()), (409, Some("order_not_cancellable")), "{}", cancel.body);
    assert!(cancel.body["detail"].as_str().unwrap().contains("installed"), "{}", cancel.body);
    // A plan that starts at first use: the install does not start it.
    let second = server.post("/v1/orders", &json!({"id": "o2", "plan": "jp-first-use"})).body;
    assert_eq!((second["status"].as_str(), second["iccid"].as_str()), (Some("completed"), Some(ICCIDS[1])), "{second}");
    server.set_clock("2025-12-01T13:00:00Z");
    setup.play(ICCIDS[1], Step::Downloaded, "2025-12-01T12:30:00Z");
    setup.play(ICCIDS[1], Step::Installed, "2025-12-01T12:31:00Z");
    let installed = server.get("/v1/subscriptions/o2/ledger?type=lifecycle").body;
    assert!(installed["entries"].as_array().unwrap().iter().any(|e| e["event"] == "installed"), "the install is in its ledger: {installed}");
    assert_eq!(server.get("/v1/subscriptions/o2/balance").body["status"], "pending", "it waits for its first use");
    // Cancelled before its download: back in stock everywhere, the fee refunded.
    let third = server.post("/v1/orders", &json!({"id": "o3", "plan": "jp-travel"})).body;
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(server.get("/v1/subscriptions/o3/balance").body["fees"], "9.90");
    let cancelled = server.post("/v1/orders/o3/cancel", &json!({}));
    assert_eq!((cancelled.status, cancelled.body["status"].as_str(), cancelled.body["refunded"].as_str()), (200, Some("cancelled"), Some("9.90")), "{}", cancelled.body);
    let balance = server.get("/v1/subscriptions/o3/balance").body;
    assert_eq!((balance["status"].as_str(), balance["fees"].as_str()), (Some("cancelled"), Some("0.00")), "{balance}");
    let refunds = server.get("/v1/subscriptions/o3/ledger?type=refunded").body;
    assert_eq!(refunds["entries"][0]["amount"], "9.90", "{refunds}");
    assert_eq!(setup.double.state_of(ICCIDS[2]), Some(ProfileState::Available));
    assert_eq!(server.get(&format!("/v1/esim/profiles/{}", ICCIDS[2])).body["state"], "available");
    assert_eq!(server.post("/v1/orders/o3/cancel", &json!({})).body["status"], "cancelled", "a second cancel answers the same");
    let odd = server.post("/v1/orders/o3/cancel", &json!({"reason": "changed my mind"}));
    assert_eq!((odd.status, odd.body["field"].as_str()), (400, Some("reason")), "a cancel takes no fields: {}", odd.body);
    assert_eq!(server.get("/v1/orders/o3").status, 200, "the connection is still good after a cancel");
    // The returned profile is sold again, to a new subscription.
    let resold = server.post("/v1/orders", &json!({"id": "o5", "plan": "jp-travel"})).body;
    assert_eq!((resold["status"].as_str(), resold["iccid"].as_str()), (Some("completed"), Some(ICCIDS[2])), "{resold}");
    assert_eq!(server.get(&format!("/v1/esims/{}", ICCIDS[2])).body["subscription"]["id"], "o5");
    // An order's id names its subscription: one that exists is refused
    // before the SM-DP+ is called, and the profile stays in stock.
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "taken", "plan": "home-data"})).status, 201);
    let calls = setup.double.calls().len();
    let clash = server.post("/v1/orders", &json!({"id": "taken", "plan": "jp-travel"}));
    assert_eq!((clash.status, clash.body["code"].as_str()), (409, Some("subscription_exists")), "{}", clash.body);
    assert_eq!(setup.double.calls().len(), calls);
    // Nothing left of the type: a clear refusal, and nothing stored.
    let none = server.post("/v1/orders", &json!({"id": "o4", "plan": "home-data"}));
    assert_eq!((none.status, none.body["code"].as_str()), (409, Some("no_profile_available")), "{}", none.body);
    assert_eq!(server.get("/v1/orders/o4").status, 404);
    let bad = server.post("/v1/orders", &json!({"plan": "jp-travel", "eid": "89049032000000000000000000001231"}));
    assert_eq!((bad.status, bad.body["code"].as_str(), bad.body["field"].as_str()), (422, Some("invalid_identifier"), Some("eid")), "{}", bad.body);
    assert!(bad.body["detail"].as_str().unwrap().contains("MOD 97-10"), "{}", bad.body);
    let bad = server.post("/v1/orders", &json!({"plan": "jp-travel", "eid": "8904903200000000"}));
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("eid")), "{}", bad.body);
    let bad = server.post("/v1/orders", &json!({"plan": "jp-travel", "identifiers": {"iccid": ICCIDS[2]}}));
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("identifiers.iccid")), "{}", bad.body);
}

#[test]
fn sells_an_esim_on_sqlite() {
    sells_an_esim(Backend::Sqlite);
}

#[test]
fn sells_an_esim_on_postgres() {
    sells_an_esim(Backend::Postgres);
}

/// The SM-DP+ refuses: the order fails with its codes and says so by
/// webhook. It does not answer in time: the order stays pending and is
/// tried again with the same `functionCallIdentifier`, taking no second
/// profile. A kill -9 in the middle of an order: the restarted server
/// finishes it.
#[test]
fn failures_are_answers_and_orders_survive_a_crash() {
    let receiver = crate::webhooks::Receiver::start();
    let setup = Setup::new(Some(&receiver));
    let store = TestStore::new(Backend::Sqlite);
    let server = setup.start(&store);
    stock(&server);
    setup.double.push_fault(Fault::Fail { subject_code: "8.2.5".into(), reason_code: "3.7".into() });
    let failed = server.post("/v1/orders", &json!({"id": "f1", "plan": "jp-travel"}));
    assert_eq!(failed.status, 201, "{}", failed.body);
    let failure = &failed.body["failure"];
    assert_eq!((failed.body["status"].as_str(), failure["function"].as_str(), failure["subject_code"].as_str(), failure["reason_code"].as_str()), (Some("failed"), Some("downloadOrder"), Some("8.2.5"), Some("3.7")), "{}", failed.body);
    assert_eq!(server.get(&format!("/v1/esim/profiles/{}", ICCIDS[0])).body["state"], "error", "a profile the SM-DP+ refused is set aside");
    assert_eq!(server.get("/v1/orders/f1/qr.png").body["code"], "no_activation_code");
    let told = receiver.wait_for(1);
    let (_, webhook) = told.iter().find(|(_, body)| body["type"] == "order_failed").expect("an order_failed webhook");
    assert_eq!((webhook["data"]["order"].as_str(), webhook["data"]["failure"]["subject_code"].as_str()), (Some("f1"), Some("8.2.5")), "{webhook}");
    // No answer within the timeout: pending, then done on a later try with
    // the same identifier.
    setup.double.push_fault(Fault::Delay(Duration::from_millis(1500)));
    let slow = server.post("/v1/orders", &json!({"id": "s1", "plan": "jp-travel"})).body;
    assert_eq!((slow["status"].as_str(), slow["attempts"].as_u64()), (Some("pending"), Some(1)), "{slow}");
    assert!(slow["last_error"].as_str().unwrap().contains("downloadOrder"), "{slow}");
    let done = wait_for_status(&server, "s1", "completed");
    assert_eq!(done["iccid"], ICCIDS[1]);
    let downloads: Vec<String> = setup.double.calls().into_iter().filter(|(f, _)| f == "downloadOrder").map(|(_, id)| id).collect();
    assert_eq!(downloads.len(), 3, "f1's, and s1's twice: {downloads:?}");
    assert_eq!(downloads[1], downloads[2], "the retry reused the functionCallIdentifier");
    assert_eq!(setup.double.state_of(ICCIDS[2]), Some(ProfileState::Available), "no second profile was taken");
    let metrics = server.get("/metrics").body.as_str().unwrap().to_string();
    for line in ["rollover_esim_orders_total{outcome=\"placed\"} 2", "rollover_esim_orders_total{outcome=\"failed\"} 1", "rollover_esim_orders_total{outcome=\"completed\"} 1", "rollover_esim_orders_total{outcome=\"unanswered\"} 1"] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Cancelled while pending after a dropped connection (or just after a
    // retry completed it): either way cancelled, and the profile back in
    // stock on both sides.
    setup.double.push_fault(Fault::Drop);
    let pending = server.post("/v1/orders", &json!({"id": "c1", "plan": "jp-travel"})).body;
    assert_eq!((pending["status"].as_str(), pending["iccid"].as_str()), (Some("pending"), Some(ICCIDS[2])), "{pending}");
    let cancelled = server.post("/v1/orders/c1/cancel", &json!({}));
    assert_eq!((cancelled.status, cancelled.body["status"].as_str()), (200, Some("cancelled")), "{}", cancelled.body);
    assert_eq!(setup.double.state_of(ICCIDS[2]), Some(ProfileState::Available));
    assert_eq!(server.get(&format!("/v1/esim/profiles/{}", ICCIDS[2])).body["state"], "available");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(server.get("/v1/orders/c1").body["status"], "cancelled", "the retry timer leaves a cancelled order alone");
    let downloads: Vec<String> = setup.double.calls().into_iter().filter(|(f, _)| f == "downloadOrder").map(|(_, id)| id).collect();
    // kill -9 while the SM-DP+ is still working on downloadOrder.
    setup.double.push_fault(Fault::Delay(Duration::from_millis(700)));
    let base = server.base.clone();
    let posting = std::thread::spawn(move || ureq::post(format!("{base}/v1/orders")).header("content-type", "application/json").send(json!({"id": "k1", "plan": "jp-travel"}).to_string()).is_ok());
    std::thread::sleep(Duration::from_millis(300));
    drop(server.kill());
    let _ = posting.join();
    std::thread::sleep(Duration::from_millis(600));
    let server = setup.start(&store);
    let resumed = wait_for_status(&server, "k1", "completed");
    assert_eq!(resumed["iccid"], ICCIDS[2]);
    let k1: Vec<(String, String)> = setup.double.calls().into_iter().filter(|(_, id)| downloads.iter().all(|d| d != id)).collect();
    assert_eq!(k1.iter().filter(|(f, _)| f == "downloadOrder").map(|(_, id)| id.as_str()).collect::<std::collections::BTreeSet<_>>().len(), 1, "one identifier for k1's downloadOrder: {k1:?}");
    assert_eq!(server.get("/v1/subscriptions/k1/balance").body["status"], "pending", "bought once, waiting for the install");
}

/// Without `[esim]` settings, orders are refused with a reason.
#[test]
fn orders_need_provisioning_settings() {
    let server = Server::start(Backend::Sqlite);
    let reply = server.post("/v1/orders", &json!({"plan": "anything"}));
    assert_eq!((reply.status, reply.body["code"].as_str()), (409, Some("provisioning_not_configured")), "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("[esim]"));
}

const ADDONS: &str = r#"
[[addon]]
id = "jp-1gb"
name = "1 GB more"
currency = "USD"
price = "3.00"
data = "1GiB"
expires = "period_end"
plans = ["jp-travel", "jp-first-use"]

[[addon]]
id = "jp-week-boost"
name = "2 GB for a week"
currency = "USD"
price = "5.00"
data = "2GiB"
kind = "boost"
expires = "7 days"
plans = ["jp-travel"]
"#;

/// Add-ons are catalog data: uploaded beside plans (or after them), bought
/// once per purchase id with their grant and fee, refused for a plan they
/// are not sold for, and still there after a restart; `plan check` and
/// `plan explain` read them.
#[test]
fn addons_are_bought_once_with_their_fee() {
    let store = TestStore::new(Backend::Sqlite);
    let server = Server::start_on(&store, &[]);
    assert_eq!(server.post_raw("/v1/plans", "application/toml", PLANS).status, 201);
    let uploaded = server.post_raw("/v1/plans", "application/toml", ADDONS);
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    assert_eq!(uploaded.body["addons"], json!([{"id": "jp-1gb", "version": 1}, {"id": "jp-week-boost", "version": 1}]));
    assert_eq!(server.post_raw("/v1/plans", "application/toml", ADDONS).body["addons"][0]["version"], 1, "unchanged, the same version");
    let packages = server.get("/v1/packages?country=JP").body;
    let travel = packages["packages"].as_array().unwrap().iter().find(|p| p["id"] == "jp-travel").unwrap();
    assert_eq!(travel["addons"], json!([{"id": "jp-1gb", "name": "1 GB more", "data_bytes": 1u64 << 30, "price": "3.00", "expires": "period_end"}, {"id": "jp-week-boost", "name": "2 GB for a week", "data_bytes": 2u64 << 30, "price": "5.00", "expires": "7 days"}]));
    let wrong = ADDONS.replace("currency = \"USD\"\nprice = \"3.00\"", "currency = \"EUR\"\nprice = \"3.00\"");
    let refused = server.post_raw("/v1/plans", "application/toml", &wrong);
    assert_eq!((refused.status, refused.body["field"].as_str()), (422, Some("addon \"jp-1gb\" currency")), "{}", refused.body);
    let unknown = server.post_raw("/v1/plans", "application/toml", &ADDONS.replace("[\"jp-travel\"]", "[\"nowhere\"]"));
    assert!(unknown.body["detail"].as_str().unwrap().contains("names plan \"nowhere\", which is in neither this file nor the catalog"), "{}", unknown.body);
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "t1", "plan": "jp-travel"})).status, 201);
    assert_eq!(server.post("/v1/subscriptions/t1/events", &json!({"install": true})).body["outcome"], "applied");
    let bought = server.post("/v1/subscriptions/t1/addons", &json!({"id": "p1", "addon": "jp-1gb"}));
    assert_eq!((bought.status, bought.body["outcome"].as_str(), bought.body["fee"].as_str()), (201, Some("applied"), Some("3.00")), "{}", bought.body);
    let again = server.post("/v1/subscriptions/t1/addons", &json!({"id": "p1", "addon": "jp-1gb"}));
    assert_eq!((again.status, again.body["outcome"].as_str()), (200, Some("applied")), "a repeat answers as the first: {}", again.body);
    let conflict = server.post("/v1/subscriptions/t1/addons", &json!({"id": "p1", "addon": "jp-week-boost"}));
    assert_eq!((conflict.status, conflict.body["code"].as_str()), (409, Some("purchase_conflict")), "{}", conflict.body);
    assert_eq!(server.post("/v1/subscriptions/t1/addons", &json!({"id": "p2", "addon": "jp-week-boost"})).status, 201);
    let balance = server.get("/v1/subscriptions/t1/balance").body;
    assert_eq!(balance["fees"], "17.90", "9.90 and the two add-ons, once each: {balance}");
    let kinds: Vec<(&str, u64)> = balance["buckets"].as_array().unwrap().iter().map(|b| (b["kind"].as_str().unwrap(), b["granted_bytes"].as_u64().unwrap())).collect();
    assert!(kinds.contains(&("addon", 1 << 30)) && kinds.contains(&("boost", 2 << 30)), "{kinds:?}");
    let boost = balance["buckets"].as_array().unwrap().iter().find(|b| b["kind"] == "boost").unwrap();
    assert_eq!(boost["expires_at"], "2025-12-08T09:00:00+09:00", "7 days from its purchase: {boost}");
    let fees = server.get("/v1/subscriptions/t1/ledger?type=addon_fee").body;
    assert_eq!(fees["entries"].as_array().unwrap().len(), 2, "{fees}");
    // Not sold for this plan; not in the catalog.
    assert_eq!(server.post("/v1/subscriptions", &json!({"id": "h1", "plan": "home-data"})).status, 201);
    let other = server.post("/v1/subscriptions/h1/addons", &json!({"id": "p3", "addon": "jp-1gb"}));
    assert_eq!((other.status, other.body["field"].as_str()), (400, Some("addon")), "{}", other.body);
    assert!(other.body["detail"].as_str().unwrap().contains("not sold for plan \"home-data\""), "{}", other.body);
    let missing = server.post("/v1/subscriptions/t1/addons", &json!({"id": "p4", "addon": "nothing"}));
    assert_eq!((missing.status, missing.body["code"].as_str()), (422, Some("unknown_reference")), "{}", missing.body);
    // After a restart: the catalog and the purchases are as they were.
    drop(server.kill());
    let server = Server::start_on(&store, &[]);
    assert_eq!(server.post("/v1/subscriptions/t1/addons", &json!({"id": "p1", "addon": "jp-1gb"})).status, 200, "still bought once");
    assert_eq!(server.get("/v1/subscriptions/t1/balance").body["fees"], "17.90");
    // The command line reads add-ons too.
    let dir = crate::network::Scratch::new("addons");
    let file = dir.0.join("catalog.toml");
    std::fs::write(&file, format!("{PLANS}{ADDONS}")).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_rollover")).args(["plan", "check"]).arg(&file).output().unwrap();
    assert!(check.status.success() && String::from_utf8_lossy(&check.stdout).contains("2 add-ons valid"), "{check:?}");
    let explain = std::process::Command::new(env!("CARGO_BIN_EXE_rollover")).args(["plan", "explain", "--plan", "jp-travel"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("Can I buy more data?") && text.contains("- 1 GB more (jp-1gb): 1 GB more for $3.00, until the end of the pass it is bought in."), "{text}");
    let lone = dir.0.join("addons.toml");
    std::fs::write(&lone, ADDONS).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_rollover")).args(["plan", "check"]).arg(&lone).output().unwrap();
    assert!(!check.status.success() && String::from_utf8_lossy(&check.stderr).contains("names plan \"jp-travel\", which is not in this file"), "{check:?}");
}
