//! One ES2+ call from rollover to an SM-DP+, over HTTPS with mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The protocol version rollover speaks, in `X-Admin-Protocol`.
pub const ADMIN_PROTOCOL: &str = "gsma/rsp/v2.2.0";

/// Largest answer read from an SM-DP+.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Es2Error {
    /// The SM-DP+ answered `Failed` (or `Expired`) with its codes.
    Failed { status: String, subject_code: String, reason_code: String, message: String },
    /// No answer: the connection, the TLS handshake or the wait failed. The
    /// same call may be sent again, with the same `functionCallIdentifier`.
    Unreachable(String),
    /// An answer that is not ES2+.
    BadAnswer(String),
}

impl std::fmt::Display for Es2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Es2Error::Failed { status, subject_code, reason_code, message } => write!(f, "the SM-DP+ answered {status} ({subject_code} / {reason_code}): {message}"),
            Es2Error::Unreachable(why) => write!(f, "no answer from the SM-DP+: {why}"),
            Es2Error::BadAnswer(why) => write!(f, "the SM-DP+'s answer is not ES2+: {why}"),
        }
    }
}

impl std::error::Error for Es2Error {}

/// One call: the function and its identifier (kept when the call is sent
/// again), and the body without its `header`.
pub struct Call<'a> {
    pub function: &'a str,
    pub call_id: &'a str,
    pub body: Value,
}

/// The client of one SM-DP+.
#[derive(Clone)]
pub struct Es2Client {
    host: String,
    port: u16,
    requester_id: String,
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

impl Es2Client {
    /// `smdp_url` is `https://HOST[:PORT]`.
    pub fn new(smdp_url: &str, requester_id: &str, tls: Arc<ClientConfig>, timeout: Duration) -> Result<Es2Client, String> {
        let authority = smdp_url.strip_prefix("https://").ok_or_else(|| format!("{smdp_url:?}: use https://HOST[:PORT]"))?.trim_end_matches('/');
        if authority.contains('/') {
            return Err(format!("{smdp_url:?}: use https://HOST[:PORT], no path"));
        }
        // An IPv6 address is written in brackets: [::1]:8443.
        let (host, port) = match authority.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(|| format!("{smdp_url:?}: an IPv6 address needs its closing ]"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(port) => port.parse::<u16>().map_err(|_| format!("{smdp_url:?}: the port is not a number"))?,
            None => 443,
        };
        if host.is_empty() {
            return Err(format!("{smdp_url:?}: the address has no host"));
        }
        Ok(Es2Client { host: host.to_string(), port, requester_id: requester_id.to_string(), tls, timeout })
    }

    /// Sends `call`; the answer's body when it succeeded.
    pub async fn call(&self, call: Call<'_>) -> Result<Value, Es2Error> {
        let mut body = call.body;
        body["header"] = json!({"functionRequesterIdentifier": self.requester_id, "functionCallIdentifier": call.call_id});
        let answer = tokio::time::timeout(self.timeout, self.post(call.function, body.to_string()))
            .await
            .map_err(|_| Es2Error::Unreachable(format!("no answer within {} s", self.timeout.as_secs_f64())))??;
        // A notification's receiver answers 204 with no body: done.
        let Some(answer) = answer else { return Ok(json!({})) };
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| Es2Error::BadAnswer(format!("not JSON: {e}")))?;
        let status = &answer["header"]["functionExecutionStatus"];
        match status["status"].as_str() {
            Some("Executed-Success" | "Executed-WithWarning") => Ok(answer),
            Some(other) => {
                let data = &status["statusCodeData"];
                let text = |name: &str| data[name].as_str().unwrap_or("").to_string();
                Err(Es2Error::Failed { status: other.to_string(), subject_code: text("subjectCode"), reason_code: text("reasonCode"), message: text("message") })
            }
            None => Err(Es2Error::BadAnswer("no header.functionExecutionStatus.status".into())),
        }
    }

    /// The answer's body; `None` for a 204.
    async fn post(&self, function: &str, body: String) -> Result<Option<Bytes>, Es2Error> {
        let unreachable = |what: &str, e: &dyn std::fmt::Display| Es2Error::Unreachable(format!("{what}: {e}"));
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| unreachable("connect", &e))?;
        let name = ServerName::try_from(self.host.clone()).map_err(|e| Es2Error::Unreachable(format!("server name {:?}: {e}", self.host)))?;
        let tls = TlsConnector::from(self.tls.clone()).connect(name, stream).await.map_err(|e| unreachable("TLS", &e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable("HTTP", &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::post(format!("/gsma/rsp2/es2plus/{function}"))
            .header("host", format!("{}:{}", self.host, self.port))
            .header("content-type", "application/json")
            .header("x-admin-protocol", ADMIN_PROTOCOL)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Es2Error::BadAnswer(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable("request", &e))?;
        let status = response.status();
        if status == hyper::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| unreachable("answer", &e))?.to_bytes();
        if !status.is_success() {
            return Err(Es2Error::BadAnswer(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)]))));
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Arc<ClientConfig> {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
    }

    #[test]
    fn addresses() {
        let cases: [(&str, Option<(&str, u16)>); 7] = [
            ("https://smdp.example.net", Some(("smdp.example.net", 443))),
            ("https://smdp.example.net:8443/", Some(("smdp.example.net", 8443))),
            ("https://[::1]:8443", Some(("::1", 8443))),
            ("https://[2001:db8::5]", Some(("2001:db8::5", 443))),
            ("http://smdp.example.net", None),
            ("https://smdp.example.net/gsma", None),
            ("https://smdp.example.net:port", None),
        ];
        for (url, expected) in cases {
            let client = Es2Client::new(url, "rollover", config(), Duration::from_secs(1));
            assert_eq!(client.map(|c| (c.host, c.port)).ok(), expected.map(|(h, p)| (h.to_string(), p)), "{url}");
        }
    }
}
