//! ES2+ over real TLS with client certificates: rollover's client against
//! the SM-DP+ test double, with certificates made by `openssl` for the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rollover_es2::double::{Double, Fault};
use rollover_es2::{Call, Es2Client, Es2Error, tls};
use rollover_esim::{ActivationCode, ProfileState, Step};
use serde_json::json;

use crate::network::Scratch;

/// A CA, the SM-DP+'s server certificate (localhost), the operator's client
/// certificate, and a client certificate from another CA.
pub struct Certificates {
    _dir: Scratch,
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
    pub stranger: (PathBuf, PathBuf),
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn authority(dir: &Path, name: &str) {
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", &format!("/CN={name}"), "-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem"), "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
}

fn leaf(dir: &Path, name: &str, ca: &str, extensions: &str) -> (PathBuf, PathBuf) {
    openssl(dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", &format!("/CN={name}"), "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr")]);
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", &format!("{ca}.pem"), "-CAkey", &format!("{ca}.key"), "-CAcreateserial", "-days", "2", "-out", &format!("{name}.pem"), "-extfile", &format!("{name}.ext")]);
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
}

pub fn certificates() -> Certificates {
    let dir = Scratch::new("es2-certificates");
    authority(&dir.0, "ca");
    authority(&dir.0, "other-ca");
    let server = leaf(&dir.0, "smdp", "ca", "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    let client = leaf(&dir.0, "operator", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    let stranger = leaf(&dir.0, "stranger", "other-ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    Certificates { ca: dir.0.join("ca.pem"), server, client, stranger, _dir: dir }
}

/// The double on a port of its own, with three profiles of type `travel`.
pub async fn smdp(certificates: &Certificates) -> (std::sync::Arc<Double>, u16) {
    let double = Double::new("smdp.test.example");
    for iccid in ["89445000000000000019", "89445000000000000027", "89445000000000000035"] {
        double.add_profile(iccid, "travel");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = tls::server_config(&certificates.server.0, &certificates.server.1, &certificates.ca).unwrap();
    tokio::spawn(double.clone().serve(listener, config));
    (double, port)
}

pub fn client(certificates: &Certificates, port: u16, identity: &(PathBuf, PathBuf), timeout: Duration) -> Es2Client {
    let config = tls::client_config(&certificates.ca, &identity.0, &identity.1).unwrap();
    Es2Client::new(&format!("https://localhost:{port}"), "rollover.test", config, timeout).unwrap()
}

fn allocated(double: &Double) -> usize {
    ["89445000000000000019", "89445000000000000027", "89445000000000000035"].iter().filter(|i| double.state_of(i) != Some(ProfileState::Available)).count()
}

/// An order's two calls give an activation code; a call sent again with
/// its identifier is done once; failures come back with their codes; a
/// slow answer is retried with the same identifier and allocates nothing
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_over_mutual_tls_gives_an_activation_code() {
    let certificates = certificates();
    let (double, port) = smdp(&certificates).await;
    let es2 = client(&certificates, port, &certificates.client, Duration::from_secs(5));
    let order = es2.call(Call { function: "downloadOrder", call_id: "o1-download", body: json!({"profileType": "travel"}) }).await.unwrap();
    let iccid = order["iccid"].as_str().unwrap().to_string();
    let again = es2.call(Call { function: "downloadOrder", call_id: "o1-download", body: json!({"profileType": "travel"}) }).await.unwrap();
    assert_eq!(again["iccid"], order["iccid"], "a call sent again is answered as the first");
    assert_eq!(allocated(&double), 1, "and allocates nothing more");
    let confirmed = es2.call(Call { function: "confirmOrder", call_id: "o1-confirm", body: json!({"iccid": iccid, "releaseFlag": true}) }).await.unwrap();
    let code = ActivationCode::new(confirmed["smdpAddress"].as_str().unwrap(), confirmed["matchingId"].as_str().unwrap(), false).unwrap();
    assert_eq!(code.lpa(), format!("LPA:1$smdp.test.example${}", confirmed["matchingId"].as_str().unwrap()));
    assert_eq!(double.state_of(&iccid), Some(ProfileState::Released));
    // The phone downloads and installs it; then a cancel is refused with its codes.
    double.phone(&iccid, Step::Downloaded).unwrap();
    double.phone(&iccid, Step::Installed).unwrap();
    let cancel = es2.call(Call { function: "cancelOrder", call_id: "o1-cancel", body: json!({"iccid": iccid, "finalProfileStatusIndicator": "Available"}) }).await;
    assert!(matches!(&cancel, Err(Es2Error::Failed { subject_code, reason_code, .. }) if subject_code == "8.2.1" && reason_code == "3.5"), "{cancel:?}");
    // A failure on purpose comes back with its codes.
    double.push_fault(Fault::Fail { subject_code: "8.9".into(), reason_code: "5.1".into() });
    let failed = es2.call(Call { function: "downloadOrder", call_id: "o2-download", body: json!({"profileType": "travel"}) }).await;
    assert!(matches!(&failed, Err(Es2Error::Failed { subject_code, reason_code, .. }) if subject_code == "8.9" && reason_code == "5.1"), "{failed:?}");
    // A slow answer: the client gives up; sent again later with the same
    // identifier, it gets the answer of the call the SM-DP+ did once.
    double.push_fault(Fault::Delay(Duration::from_millis(1500)));
    let impatient = client(&certificates, port, &certificates.client, Duration::from_millis(300));
    let slow = impatient.call(Call { function: "downloadOrder", call_id: "o3-download", body: json!({"profileType": "travel"}) }).await;
    assert!(matches!(slow, Err(Es2Error::Unreachable(_))), "{slow:?}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let retried = es2.call(Call { function: "downloadOrder", call_id: "o3-download", body: json!({"profileType": "travel"}) }).await.unwrap();
    assert!(retried["iccid"].is_string());
    assert_eq!(allocated(&double), 2, "the retry allocated no second profile");
    // A dropped connection is no answer either.
    double.push_fault(Fault::Drop);
    assert!(matches!(es2.call(Call { function: "downloadOrder", call_id: "o4-download", body: json!({"profileType": "travel"}) }).await, Err(Es2Error::Unreachable(_))));
    let calls = double.calls();
    assert_eq!(calls.iter().filter(|(_, id)| id == "o3-download").count(), 2, "{calls:?}");
}

/// The SM-DP+ speaks only to clients with a certificate from its CA: none,
/// or one from another CA, is refused in the TLS handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_right_certificate_is_refused_at_the_tls_layer() {
    let certificates = certificates();
    let (double, port) = smdp(&certificates).await;
    let stranger = client(&certificates, port, &certificates.stranger, Duration::from_secs(5));
    let refused = stranger.call(Call { function: "downloadOrder", call_id: "x1", body: json!({"profileType": "travel"}) }).await;
    assert!(matches!(refused, Err(Es2Error::Unreachable(_))), "{refused:?}");
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls_pki_types::pem::PemObject::pem_file_iter(&certificates.ca).unwrap() {
            roots.add(certificate.unwrap()).unwrap();
        }
        roots
    };
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let anonymous = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let anonymous = Es2Client::new(&format!("https://localhost:{port}"), "rollover.test", std::sync::Arc::new(anonymous), Duration::from_secs(5)).unwrap();
    let refused = anonymous.call(Call { function: "downloadOrder", call_id: "x2", body: json!({"profileType": "travel"}) }).await;
    assert!(matches!(refused, Err(Es2Error::Unreachable(_))), "{refused:?}");
    assert!(double.calls().is_empty(), "no call got through");
    assert_eq!(allocated(&double), 0);
}

/// What the SM-DP+ tells rollover: a download, then the installation, which
/// starts a plan that waits for its install at the notification's instant,
/// each a ledger note and a webhook; the same notification twice changes
/// nothing; an unknown ICCID gets an
/// ES2+ error; a caller without the right certificate is refused at the
/// TLS layer.
#[test]
fn the_smdp_notifications_move_the_profile_and_start_the_plan() {
    let certificates = certificates();
    let receiver = crate::webhooks::Receiver::start();
    let mut env = crate::webhooks::env(&receiver);
    env.extend([
        ("ROLLOVER_ESIM_CALLBACK_LISTEN", "127.0.0.1:0".to_string()),
        ("ROLLOVER_ESIM_CALLBACK_CERT", certificates.server.0.display().to_string()),
        ("ROLLOVER_ESIM_CALLBACK_KEY", certificates.server.1.display().to_string()),
        ("ROLLOVER_ESIM_CALLBACK_CLIENT_CA", certificates.ca.display().to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = crate::server::Server::start_configured(crate::server::Backend::Sqlite, "", &env);
    let port = server.esim.expect("the callback listener's address is printed").port();
    let plans = std::fs::read_to_string(crate::common::repo_root().join("plans/demo.toml")).unwrap();
    assert_eq!(server.post_raw("/v1/plans", "application/toml", &plans).status, 201);
    assert_eq!(server.post_raw("/v1/esim/profiles", "text/csv", "iccid,profile_type\n89445000000000000019,travel\n").body["added"], 1);
    let reply = server.post("/v1/subscriptions", &json!({"id": "trip", "plan": "eu-unlimited-15d", "identifiers": {"iccid": "89445000000000000019"}}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    server.set_clock("2025-12-02T00:00:00Z");
    assert_eq!(server.get("/v1/subscriptions/trip/balance").body["status"], "pending", "it waits for its install");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // The SM-DP+ calls as a client with its certificate from the CA.
    let smdp = client(&certificates, port, &certificates.client, Duration::from_secs(5));
    let notify = |call_id: &str, point: u64, status: &str, iccid: &str| {
        let body = json!({"iccid": iccid, "profileType": "travel", "eid": "89049032000000000000000000001230", "timestamp": "2025-12-01T18:30:00Z", "notificationPointId": point, "notificationPointStatus": {"status": status}});
        runtime.block_on(smdp.call(Call { function: "handleDownloadProgressInfo", call_id, body }))
    };
    // 204, no body: the client takes that as done.
    let answered = |result: Result<serde_json::Value, Es2Error>| result.is_ok();
    assert!(answered(notify("n1", 3, "Executed-Success", "89445000000000000019")));
    assert_eq!(server.get("/v1/esim/profiles/89445000000000000019").body["state"], "downloaded");
    assert!(answered(notify("n2", 4, "Executed-Success", "89445000000000000019")));
    assert!(answered(notify("n3", 4, "Executed-Success", "89445000000000000019")), "a repeat is answered too");
    assert!(answered(notify("n2-late", 3, "Executed-Success", "89445000000000000019")), "a late download report is answered");
    let profile = server.get("/v1/esim/profiles/89445000000000000019").body;
    assert_eq!((profile["state"].as_str(), profile["eid"].as_str()), (Some("installed"), Some("89049032000000000000000000001230")), "and moves nothing back");
    let link = server.post("/v1/subscriptions/trip/tokens", &json!({})).body["url"].as_str().unwrap().to_string();
    let page = server.get(&format!("{}?lang=en", link.trim_start_matches(&server.base))).body;
    assert!(page.as_str().unwrap().contains("Your eSIM: </strong>installed on your phone (ICCID <span class=\"id\">89445000000000000019</span>)"), "the customer page shows the profile's state");
    let balance = server.get("/v1/subscriptions/trip/balance").body;
    assert_eq!(balance["status"], "active", "{balance}");
    assert_eq!(balance["expires_at"], "2025-12-16T18:30:00Z", "15 days from the installation the SM-DP+ reported");
    let ledger = server.get("/v1/subscriptions/trip/ledger?type=lifecycle").body;
    let installed: Vec<&serde_json::Value> = ledger["entries"].as_array().unwrap().iter().filter(|e| e["event"] == "installed").collect();
    assert_eq!(installed.len(), 1, "installed once: {ledger}");
    let notes = server.get("/v1/subscriptions/trip/ledger?type=network").body;
    assert_eq!(notes["entries"].as_array().unwrap().len(), 3, "the download and the installation, each noted once, and the late report: {notes}");
    // Each move is a webhook too, once, whatever was repeated.
    let delivered = receiver.wait_for(2);
    let kinds: Vec<&str> = delivered.iter().map(|(_, body)| body["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "esim_downloaded").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "esim_installed").count(), 1, "{kinds:?}");
    let installed = delivered.iter().find(|(_, body)| body["type"] == "esim_installed").unwrap();
    assert_eq!((installed.1["subscription"].as_str(), installed.1["data"]["iccid"].as_str()), (Some("trip"), Some("89445000000000000019")));
    let unknown = notify("n4", 3, "Executed-Success", "89445000000000000027");
    assert!(matches!(&unknown, Err(Es2Error::Failed { subject_code, reason_code, .. }) if subject_code == "8.2.1" && reason_code == "3.9"), "{unknown:?}");
    let stranger = client(&certificates, port, &certificates.stranger, Duration::from_secs(5));
    let refused = runtime.block_on(stranger.call(Call { function: "handleDownloadProgressInfo", call_id: "n5", body: json!({}) }));
    assert!(matches!(refused, Err(Es2Error::Unreachable(_))), "{refused:?}");
}
