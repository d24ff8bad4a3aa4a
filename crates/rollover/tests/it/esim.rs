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

on_both_stores!(the_inventory_takes_good_lines_and_names_bad_ones);
