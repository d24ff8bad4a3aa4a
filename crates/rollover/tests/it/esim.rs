//! The eSIM profile inventory over HTTP, on both stores.

use serde_json::json;

use crate::server::{Backend, Server};

/// Good lines are added, bad ones named with their line and reason, and a
/// second upload of the same profiles adds nothing.
fn the_inventory_takes_good_lines_and_names_bad_ones(backend: Backend) {
    let server = Server::start(backend);
    let csv = "iccid,profile_type,imsi,msisdn\n\
               89445000000000000019,travel,460001234567890,\n\
               89445000000000000018,travel,,\n\
               8944500000000000006F,,,8613800000001\n\
               89445000000000000019,travel,,\n\
               89445000000000000027,local,12ab,\n\
               89445000000000000035,local,,\n";
    let reply = server.post_raw("/v1/esim/profiles", "text/csv", csv);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["added"], 3);
    let errors: Vec<(u64, String)> = reply.body["errors"].as_array().unwrap().iter().map(|e| (e["line"].as_u64().unwrap(), e["reason"].as_str().unwrap().to_string())).collect();
    assert_eq!(errors.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [3, 5, 6], "{errors:?}");
    assert_eq!(errors[0].1, "ICCID \"89445000000000000018\" fails its Luhn check: the last digit would be 9");
    assert!(errors[1].1.contains("in the file twice") && errors[2].1.starts_with("IMSI \"12ab\""), "{errors:?}");
    let again = server.post_raw("/v1/esim/profiles", "text/csv", "iccid\n89445000000000000035\n89445000000000000043\n");
    assert_eq!(again.body, json!({"added": 1, "errors": [{"line": 2, "reason": "ICCID 89445000000000000035 is already in the inventory"}]}));
    let page = server.get("/v1/esim/profiles?state=available&limit=2").body;
    assert_eq!((page["total"].as_u64(), page["next_offset"].as_u64()), (Some(4), Some(2)), "{page}");
    assert_eq!(page["counts"], json!([{"state": "available", "count": 2}, {"state": "available", "profile_type": "local", "count": 1}, {"state": "available", "profile_type": "travel", "count": 1}]));
    let one = server.get("/v1/esim/profiles/8944500000000000006F").body;
    assert_eq!((one["iccid"].as_str(), one["msisdn"].as_str(), one["state"].as_str()), (Some("8944500000000000006"), Some("8613800000001"), Some("available")), "{one}");
    let missing = server.get("/v1/esim/profiles/89445000000000000050");
    assert_eq!((missing.status, missing.body["code"].as_str()), (404, Some("unknown_profile")));
    let impossible = server.get("/v1/esim/profiles/89445000000000000051");
    assert!(impossible.body["detail"].as_str().unwrap().contains("fails its Luhn check"), "{}", impossible.body);
    let header = server.post_raw("/v1/esim/profiles", "text/csv", "serial,imsi\n1,2\n");
    assert_eq!((header.status, header.body["code"].as_str()), (422, Some("invalid_profile_file")), "{}", header.body);
    assert_eq!(server.get("/v1/esim/profiles?state=sold").body["field"], "state");
}

/// A reseller's customer asks about their eSIM by its ICCID: the profile's
/// state and the subscription's data in one answer.
fn an_esim_answers_with_its_profile_and_its_data(backend: Backend) {
    let server = Server::start(backend);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    assert_eq!(server.post_raw("/v1/esim/profiles", "text/csv", "iccid\n89445000000000000019\n").body["added"], 1);
    let reply = server.post("/v1/subscriptions", &json!({"id": "traveller", "plan": "asia-7d", "identifiers": {"iccid": "89445000000000000019"}}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let usage = json!({"records": [{"id": "u1", "subscription": "traveller", "at": "2025-12-01T00:00:00Z", "bytes": 1u64 << 30, "country": "JP"}]});
    assert_eq!(server.post("/v1/usage", &usage).status, 200);
    let esim = server.get("/v1/esims/89445000000000000019").body;
    assert_eq!(esim["profile_state"], "available");
    assert_eq!(esim["subscription"]["status"], "active");
    assert_eq!((esim["subscription"]["remaining_bytes"].as_u64(), esim["subscription"]["total_bytes"].as_u64()), (Some(4u64 << 30), Some(5u64 << 30)), "{esim}");
    assert_eq!((esim["subscription"]["renews"].as_bool(), esim["subscription"]["expires_at"].as_str()), (Some(false), Some("2025-12-08T09:00:00+09:00")), "seven days from the first use: {esim}");
    let unknown = server.get("/v1/esims/89445000000000000027");
    assert_eq!((unknown.status, unknown.body["code"].as_str()), (404, Some("unknown_profile")));
}

on_both_stores!(the_inventory_takes_good_lines_and_names_bad_ones, an_esim_answers_with_its_profile_and_its_data);

/// A reseller lists the plans that work in a country, each with whether
/// unused data carries over, in a word and in a sentence.
#[test]
fn packages_are_listed_by_country() {
    let server = Server::start(Backend::Sqlite);
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    let all = server.get("/v1/packages").body;
    let japan = server.get("/v1/packages?country=JP").body;
    let ids = |body: &serde_json::Value| -> Vec<String> { body["packages"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect() };
    let france = server.get("/v1/packages?country=FR").body;
    assert!(ids(&japan).contains(&"asia-7d".to_string()) && !ids(&france).contains(&"asia-7d".to_string()), "asia-7d covers Japan, not France");
    assert!(ids(&france).contains(&"cn-30g".to_string()), "a plan without a coverage list works everywhere");
    assert_eq!(ids(&all).len(), ids(&france).len() + 1);
    let cn = all["packages"].as_array().unwrap().iter().find(|p| p["id"] == "cn-30g").unwrap();
    assert_eq!((cn["carries_over"].as_bool(), cn["starts"].as_str(), cn["price"].as_str(), cn["currency"].as_str()), (Some(true), Some("purchase"), Some("58.00"), Some("CNY")));
    assert!(cn["carry_over"]["en"].as_str().unwrap().starts_with("Yes."), "{cn}");
    assert!(cn["carry_over"]["zh"].as_str().unwrap().starts_with("可以。") && !cn["carry_over"]["zh"].as_str().unwrap().contains("。 "), "{cn}");
    let pass = all["packages"].as_array().unwrap().iter().find(|p| p["id"] == "asia-7d").unwrap();
    assert_eq!((pass["carries_over"].as_bool(), pass["starts"].as_str(), pass["validity"]["kind"].as_str()), (Some(false), Some("first_use"), Some("once")), "{pass}");
    let bad = server.get("/v1/packages?country=XX");
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("country")));
}

/// An activation code's QR code, as PNG and as SVG drawn by Chromium, read
/// back by a real decoder (`zbarimg`, Debian's zbar-tools) to exactly the
/// `LPA:` text.
#[test]
fn qr_codes_decode_to_the_activation_code() {
    let code = rollover_esim::ActivationCode::new("smdp.example.net", "QR-G-5C-1LS-1W1Z9P7", false).unwrap();
    let dir = crate::network::Scratch::new("qr");
    let decode = |path: &std::path::Path| {
        let output = std::process::Command::new("zbarimg").args(["--raw", "-q"]).arg(path).output().expect("zbarimg runs (zbar-tools; .ci/run installs it)");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let png = dir.0.join("code.png");
    std::fs::write(&png, rollover_esim::qr::png(&code.lpa(), 6).unwrap()).unwrap();
    assert_eq!(decode(&png), "LPA:1$smdp.example.net$QR-G-5C-1LS-1W1Z9P7");
    let svg = rollover_esim::qr::svg(&code.lpa(), "eSIM activation code").unwrap();
    let page = dir.0.join("code.html");
    std::fs::write(&page, format!("<!doctype html><html><body style=\"margin:0;background:#fff\"><div style=\"width:300px\">{svg}</div></body></html>")).unwrap();
    let shot = dir.0.join("svg.png");
    let status = std::process::Command::new("chromium")
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=320,320"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("chromium runs");
    assert!(status.success());
    assert_eq!(decode(&shot), code.lpa(), "the SVG as a browser draws it");
}
