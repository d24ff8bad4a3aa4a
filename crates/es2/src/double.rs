//! An SM-DP+ test double: ES2+ over HTTPS with mutual TLS, with an
//! inventory of its own, the SGP.22 state rules and error codes, and fault
//! switches (answer `Failed` with given codes, answer late, drop the
//! connection). No installable SM-DP+ exists, so tests and demos use this.
//!
//! It serves `downloadOrder`, `confirmOrder`, `cancelOrder` and
//! `releaseProfile`. A call to a function whose `functionCallIdentifier`
//! was answered before gets the same answer again, so a retried call is
//! done once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rollover_esim::state::{self, EsError};
use rollover_esim::{Eid, ProfileState, Step};
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the double does to the next call instead of its work.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `Failed` with these subject and reason codes.
    Fail { subject_code: String, reason_code: String },
    /// Do the work, then wait this long before answering.
    Delay(Duration),
    /// Close the connection without an answer (after the TLS handshake).
    Drop,
}

#[derive(Debug, Clone)]
struct Profile {
    profile_type: String,
    state: ProfileState,
    eid: Option<String>,
    matching_id: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Where the phone's progress is reported (rollover's callback listener).
    callback: Option<crate::Es2Client>,
    notifications: u64,
    profiles: Vec<(String, Profile)>,
    faults: VecDeque<Fault>,
    answers: HashMap<String, Value>,
    calls: Vec<(String, String)>,
    next_matching_id: u64,
}

/// The double's state, shared by its connections and the test that drives it.
pub struct Double {
    address: String,
    inner: Mutex<Inner>,
}

impl Double {
    /// A double that answers as the SM-DP+ at `address` (the host name in
    /// activation codes).
    pub fn new(address: &str) -> Arc<Double> {
        Arc::new(Double { address: address.to_string(), inner: Mutex::new(Inner::default()) })
    }

    pub fn add_profile(&self, iccid: &str, profile_type: &str) {
        let profile = Profile { profile_type: profile_type.to_string(), state: ProfileState::Available, eid: None, matching_id: None };
        self.inner.lock().expect("double lock").profiles.push((iccid.to_string(), profile));
    }

    pub fn push_fault(&self, fault: Fault) {
        self.inner.lock().expect("double lock").faults.push_back(fault);
    }

    pub fn state_of(&self, iccid: &str) -> Option<ProfileState> {
        self.inner.lock().expect("double lock").profiles.iter().find(|(i, _)| i == iccid).map(|(_, p)| p.state)
    }

    /// Every call received, as (function, functionCallIdentifier), in order;
    /// repeats included.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.inner.lock().expect("double lock").calls.clone()
    }

    /// Serves ES2+ on `listener` with `tls` (which should require client
    /// certificates) until the task is dropped.
    pub async fn serve(self: Arc<Double>, listener: TcpListener, tls: Arc<ServerConfig>) {
        let acceptor = TlsAcceptor::from(tls);
        let app = Router::new().route("/gsma/rsp2/es2plus/{function}", post(function)).with_state(self.clone());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, app, double) = (acceptor.clone(), app.clone(), self.clone());
            tokio::spawn(async move {
                // A client without a certificate from the trusted CA stops here.
                let Ok(tls) = acceptor.accept(stream).await else { return };
                if double.take_drop() {
                    return;
                }
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), TowerToHyperService::new(app)).await;
            });
        }
    }

    fn take_drop(&self) -> bool {
        let mut inner = self.inner.lock().expect("double lock");
        if matches!(inner.faults.front(), Some(Fault::Drop)) {
            inner.faults.pop_front();
            return true;
        }
        false
    }

    fn take_fault(&self) -> Option<Fault> {
        let mut inner = self.inner.lock().expect("double lock");
        match inner.faults.front() {
            Some(Fault::Fail { .. } | Fault::Delay(_)) => inner.faults.pop_front(),
            _ => None,
        }
    }

    /// Does one function's work on the inventory.
    fn handle(&self, function: &str, body: &Value) -> Result<Value, EsError> {
        let mut inner = self.inner.lock().expect("double lock");
        let text = |name: &str| body[name].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        match function {
            "downloadOrder" => {
                let eid = text("eid");
                if let Some(eid) = &eid {
                    Eid::parse(eid).map_err(|_| state::EID_MISMATCH)?;
                }
                let index = match (text("iccid"), text("profileType")) {
                    (Some(iccid), _) => inner.profiles.iter().position(|(i, _)| *i == iccid).ok_or(state::ICCID_UNKNOWN)?,
                    (None, Some(kind)) => {
                        if !inner.profiles.iter().any(|(_, p)| p.profile_type == kind) {
                            return Err(state::PROFILE_TYPE_UNKNOWN);
                        }
                        inner.profiles.iter().position(|(_, p)| p.profile_type == kind && p.state == ProfileState::Available).ok_or(state::NONE_AVAILABLE)?
                    }
                    (None, None) => return Err(state::ICCID_UNKNOWN),
                };
                let (iccid, profile) = &mut inner.profiles[index];
                profile.state = state::after(profile.state, Step::DownloadOrder { eid: eid.is_some() })?;
                profile.eid = eid;
                Ok(json!({ "iccid": iccid }))
            }
            "confirmOrder" => {
                let iccid = text("iccid").ok_or(state::ICCID_UNKNOWN)?;
                let release = body["releaseFlag"].as_bool().unwrap_or(false);
                let wanted_id = text("matchingId");
                if let Some(id) = &wanted_id
                    && inner.profiles.iter().any(|(i, p)| *i != iccid && p.matching_id.as_deref() == Some(id.as_str()))
                {
                    return Err(state::MATCHING_ID_IN_USE);
                }
                inner.next_matching_id += 1;
                let generated = format!("MID-{:06}", inner.next_matching_id);
                let address = self.address.clone();
                let (_, profile) = inner.profiles.iter_mut().find(|(i, _)| *i == iccid).ok_or(state::ICCID_UNKNOWN)?;
                if let (Some(given), Some(held)) = (text("eid"), &profile.eid)
                    && given != *held
                {
                    return Err(state::EID_MISMATCH);
                }
                profile.state = state::after(profile.state, Step::ConfirmOrder { release })?;
                let matching_id = profile.matching_id.clone().or(wanted_id).unwrap_or(generated);
                profile.matching_id = Some(matching_id.clone());
                let mut answer = json!({ "matchingId": matching_id, "smdpAddress": address });
                if let Some(eid) = &profile.eid {
                    answer["eid"] = json!(eid);
                }
                Ok(answer)
            }
            "cancelOrder" => {
                let iccid = text("iccid").ok_or(state::ICCID_UNKNOWN)?;
                let available = text("finalProfileStatusIndicator").as_deref() == Some("Available");
                let (_, profile) = inner.profiles.iter_mut().find(|(i, _)| *i == iccid).ok_or(state::ICCID_UNKNOWN)?;
                profile.state = state::after(profile.state, Step::CancelOrder { available })?;
                if available {
                    profile.eid = None;
                    profile.matching_id = None;
                }
                Ok(json!({}))
            }
            "releaseProfile" => {
                let iccid = text("iccid").ok_or(state::ICCID_UNKNOWN)?;
                let (_, profile) = inner.profiles.iter_mut().find(|(i, _)| *i == iccid).ok_or(state::ICCID_UNKNOWN)?;
                profile.state = state::after(profile.state, Step::ReleaseProfile)?;
                Ok(json!({}))
            }
            _ => Err(state::NOT_ALLOWED),
        }
    }

    /// Sends the phone's progress to `client`'s address
    /// (`handleDownloadProgressInfo`, with the double's client certificate).
    pub fn report_to(&self, client: crate::Es2Client) {
        self.inner.lock().expect("double lock").callback = Some(client);
    }

    /// Plays the phone: moves the profile as a download (`Step::Downloaded`),
    /// an installation (`Installed`), a failed installation
    /// (`InstallFailed`) or a deletion (`Deleted`) would, and reports it to
    /// the callback as it happened at `timestamp` (RFC 3339), as an SM-DP+
    /// does: notification points 3, 4 and 5.
    pub async fn play(&self, iccid: &str, step: Step, timestamp: &str) -> Result<ProfileState, String> {
        let (state, client, body, call_id) = {
            let mut inner = self.inner.lock().expect("double lock");
            let (_, profile) = inner.profiles.iter_mut().find(|(i, _)| i == iccid).ok_or_else(|| format!("no profile {iccid}"))?;
            profile.state = state::after(profile.state, step).map_err(|e| e.to_string())?;
            let (point, status) = match step {
                Step::Downloaded => (3, "Executed-Success"),
                Step::Installed => (4, "Executed-Success"),
                Step::InstallFailed => (4, "Failed"),
                Step::Deleted => (5, "Executed-Success"),
                _ => return Err("the phone only downloads, installs and deletes".into()),
            };
            let mut body = json!({
                "iccid": iccid,
                "profileType": profile.profile_type,
                "timestamp": timestamp,
                "notificationPointId": point,
                "notificationPointStatus": {"status": status},
            });
            if let Some(eid) = &profile.eid {
                body["eid"] = json!(eid);
            }
            let state = profile.state;
            inner.notifications += 1;
            (state, inner.callback.clone(), body, format!("smdp-notification-{}", inner.notifications))
        };
        let client = client.ok_or("no callback to report to (report_to)")?;
        client.call(crate::Call { function: "handleDownloadProgressInfo", call_id: &call_id, body }).await.map_err(|e| e.to_string())?;
        Ok(state)
    }

    /// What the phone does: moves a profile as a download, an installation
    /// or a deletion would, without telling anyone.
    pub fn phone(&self, iccid: &str, step: Step) -> Result<ProfileState, EsError> {
        let mut inner = self.inner.lock().expect("double lock");
        let (_, profile) = inner.profiles.iter_mut().find(|(i, _)| i == iccid).ok_or(state::ICCID_UNKNOWN)?;
        profile.state = state::after(profile.state, step)?;
        Ok(profile.state)
    }
}

fn status(status: &str, error: Option<(&str, &str, &str)>) -> Value {
    match error {
        None => json!({"functionExecutionStatus": {"status": status}}),
        Some((subject, reason, message)) => {
            json!({"functionExecutionStatus": {"status": status, "statusCodeData": {"subjectCode": subject, "reasonCode": reason, "message": message}}})
        }
    }
}

async fn function(State(double): State<Arc<Double>>, Path(function): Path<String>, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let call_id = body["header"]["functionCallIdentifier"].as_str().unwrap_or("").to_string();
    if body["header"]["functionRequesterIdentifier"].as_str().is_none_or(str::is_empty) {
        let error = state::NOT_AUTHORISED;
        return axum::Json(json!({"header": status("Failed", Some((error.subject_code, error.reason_code, error.message)))})).into_response();
    }
    {
        let mut inner = double.inner.lock().expect("double lock");
        inner.calls.push((function.clone(), call_id.clone()));
        if let Some(answer) = inner.answers.get(&format!("{function}/{call_id}")) {
            return axum::Json(answer.clone()).into_response();
        }
    }
    let fault = double.take_fault();
    let answer = match &fault {
        Some(Fault::Fail { subject_code, reason_code }) => json!({"header": status("Failed", Some((subject_code, reason_code, "failed on purpose (test double)")))}),
        _ => match double.handle(&function, &body) {
            Ok(mut answer) => {
                answer["header"] = status("Executed-Success", None);
                answer
            }
            Err(error) => json!({"header": status("Failed", Some((error.subject_code, error.reason_code, error.message)))}),
        },
    };
    if !call_id.is_empty() {
        double.inner.lock().expect("double lock").answers.insert(format!("{function}/{call_id}"), answer.clone());
    }
    // A late answer: the work is done (and a repeat of the call is answered
    // from it), the answer waits.
    if let Some(Fault::Delay(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    axum::Json(answer).into_response()
}
