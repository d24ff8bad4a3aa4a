//! Who may call what. Operator API keys (stored only as SHA-256 hashes,
//! scoped read or read-write, each with its own rate limit) and customer
//! tokens (HMAC-signed, expiring, good only for reading one subscription's
//! balance and ledger).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant as WallInstant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use rollover_core::Instant;
use rollover_service::Service;
use sha2::{Digest, Sha256};

use crate::problem::{Code, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    ReadWrite,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "read-write" => Some(Scope::ReadWrite),
            _ => None,
        }
    }
}

/// An operator key as configured: its hash, never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub sha256: [u8; 32],
    pub scope: Scope,
    pub requests_per_second: u32,
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// A token bucket: `rate` requests a second, bursts up to twice that.
struct Limiter {
    rate: f64,
    tokens: f64,
    last: WallInstant,
}

impl Limiter {
    fn new(rate: u32) -> Limiter {
        Limiter { rate: rate as f64, tokens: 2.0 * rate as f64, last: WallInstant::now() }
    }

    fn allow(&mut self) -> bool {
        let now = WallInstant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(2.0 * self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct KeyState {
    id: String,
    scope: Scope,
    limiter: Mutex<Limiter>,
}

pub struct Security {
    keys: HashMap<[u8; 32], KeyState>,
    /// Console sign-ins with a key that is not known, all together.
    failed_sign_ins: Mutex<Limiter>,
    token_secret: Vec<u8>,
    /// Requests a second allowed to the customer tokens of one subscription.
    token_requests_per_second: u32,
    /// One limiter per subscription that tokens were presented for.
    token_limiters: Mutex<HashMap<String, Limiter>>,
}

/// Subscriptions whose token limiters are kept before idle ones are dropped.
const MAX_TOKEN_LIMITERS: usize = 100_000;

/// The shortest token secret accepted: 32 bytes, the size of the HMAC-SHA256
/// output, so the secret cannot be guessed from tokens faster than the MAC
/// forged.
pub const MIN_TOKEN_SECRET_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_PREFIX: &str = "rt1";

/// Why a token that reads well is refused because of its age.
const EXPIRED: &str = "the token has expired";

impl Security {
    /// With no keys the API is open: for loopback development only (the
    /// binary refuses to listen elsewhere without keys).
    pub fn new(keys: Vec<ApiKey>, token_secret: Vec<u8>, token_requests_per_second: u32) -> Security {
        let keys = keys
            .into_iter()
            .map(|k| (k.sha256, KeyState { id: k.id, scope: k.scope, limiter: Mutex::new(Limiter::new(k.requests_per_second.max(1))) }))
            .collect();
        Security {
            keys,
            failed_sign_ins: Mutex::new(Limiter::new(FAILED_SIGN_INS_PER_SECOND)),
            token_secret,
            token_requests_per_second: token_requests_per_second.max(1),
            token_limiters: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one more request on `subscription`'s tokens is within their
    /// rate.
    fn token_allowed(&self, subscription: &str) -> bool {
        let mut limiters = self.token_limiters.lock().expect("token limiter lock");
        if limiters.len() >= MAX_TOKEN_LIMITERS && !limiters.contains_key(subscription) {
            // A limiter that has refilled completely remembers nothing.
            let full = WallInstant::now() - std::time::Duration::from_secs(2);
            limiters.retain(|_, limiter| limiter.last > full);
            if limiters.len() >= MAX_TOKEN_LIMITERS {
                return false;
            }
        }
        let rate = self.token_requests_per_second;
        limiters.entry(subscription.to_string()).or_insert_with(|| Limiter::new(rate)).allow()
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.token_secret).expect("HMAC takes keys of any length")
    }

    /// A customer token for one subscription, valid until `expires`.
    pub fn customer_token(&self, subscription: &str, expires: Instant) -> String {
        let body = format!("{TOKEN_PREFIX}.{}.{}", hex(subscription.as_bytes()), expires.micros());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        format!("{body}.{}", hex(&mac.finalize().into_bytes()))
    }

    /// The subscription a token is for, if its signature holds and it has not
    /// expired at `now`.
    pub fn check_token(&self, token: &str, now: Instant) -> Result<String, &'static str> {
        let (body, signature) = token.rsplit_once('.').ok_or("malformed token")?;
        let mut parts = body.split('.');
        let (Some(TOKEN_PREFIX), Some(subscription), Some(expires), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("malformed token");
        };
        let signature = from_hex(signature).ok_or("malformed token")?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&signature).map_err(|_| "the token's signature does not match")?;
        let expires: i64 = expires.parse().map_err(|_| "malformed token")?;
        if now.micros() >= expires {
            return Err(EXPIRED);
        }
        String::from_utf8(from_hex(subscription).ok_or("malformed token")?).map_err(|_| "malformed token")
    }
}

/// Console sign-ins with unknown keys allowed a second, all together: a
/// guess at a key costs time.
const FAILED_SIGN_INS_PER_SECOND: u32 = 5;

/// Why a console sign-in is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInRefusal {
    UnknownKey,
    TooMany,
}

impl Security {
    /// The key's id and scope, for a console session. With no key
    /// configured (loopback only) anyone signs in as `open`, read-write.
    pub fn sign_in(&self, presented: &str) -> Result<(String, Scope), SignInRefusal> {
        if self.is_open() {
            return Ok(("open".to_string(), Scope::ReadWrite));
        }
        match self.keys.get(&sha256(presented.trim())) {
            Some(key) if key.limiter.lock().expect("limiter lock").allow() => Ok((key.id.clone(), key.scope)),
            Some(_) => Err(SignInRefusal::TooMany),
            None if self.failed_sign_ins.lock().expect("limiter lock").allow() => Err(SignInRefusal::UnknownKey),
            None => Err(SignInRefusal::TooMany),
        }
    }
}

/// Why a customer page's link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Invalid,
    Expired,
    TooMany,
}

impl Security {
    /// The subscription a customer page's token opens, within the rate of
    /// that subscription's tokens.
    pub fn customer_page_allowed(&self, token: &str, now: Instant) -> Result<String, TokenRefusal> {
        let subscription = self.check_token(token, now).map_err(|why| if why == EXPIRED { TokenRefusal::Expired } else { TokenRefusal::Invalid })?;
        if self.token_allowed(&subscription) { Ok(subscription) } else { Err(TokenRefusal::TooMany) }
    }
}

fn too_many(detail: String) -> Response {
    let mut response = Problem::new(Code::RateLimited, detail, None).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn unauthorized(code: Code, detail: &str) -> Response {
    let mut response = Problem::new(code, detail, Some("Authorization".into())).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn forbidden(code: Code, detail: &str, field: &str) -> Response {
    Problem::new(code, detail, Some(field.into())).into_response()
}

/// Paths anyone may reach: health, the API description, the style sheet,
/// customer pages (whose link carries its own token, checked by the page)
/// and the console (which signs staff in with a key and keeps a session).
fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/healthz" | "/readyz" | "/openapi.json" | "/docs" | "/assets/site.css" | "/assets/icon.svg" | "/favicon.ico" | "/console")
        || path.starts_with("/my/")
        || path.starts_with("/console/")
}

/// What a customer token may read: its own subscription's balance and ledger.
fn customer_may(method: &Method, path: &str, subscription: &str) -> bool {
    if method != Method::GET {
        return false;
    }
    let Some(rest) = path.strip_prefix("/v1/subscriptions/") else { return false };
    let Some((id, what)) = rest.split_once('/') else { return false };
    id == subscription && (what == "balance" || what == "ledger")
}

/// Whether a `Host` value names this machine's loopback (any port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(inside, _)| inside),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name == "::1" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Without keys the API trusts whoever reaches the loopback port. A web page
/// the operator visits can reach it too, by a cross-site request or by a
/// DNS name rebound to 127.0.0.1: so the `Host` must be a loopback name, and
/// an `Origin`, when a browser sends one, must be too.
fn open_mode_refusal(request: &Request) -> Option<Response> {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| request.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(is_loopback_host) {
        return Some(forbidden(Code::HostNotAllowed, "with no API key configured, only requests to localhost, 127.0.0.1 or [::1] are served", "Host"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(is_loopback_host) {
            return Some(forbidden(Code::CrossSiteRefused, "with no API key configured, cross-site requests are refused", "Origin"));
        }
    }
    None
}

pub async fn authorize(State((security, service)): State<(std::sync::Arc<Security>, Service)>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if security.is_open() {
        if let Some(refusal) = open_mode_refusal(&request) {
            return refusal;
        }
        return next.run(request).await;
    }
    if is_public(path) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    match decide(&security, &service, &method, &request) {
        None => next.run(request).await,
        Some(refusal) => {
            // Read what the client sent before answering, so that its
            // connection stays usable for the next request.
            let _ = axum::body::to_bytes(request.into_body(), 8 << 20).await;
            refusal
        }
    }
}

/// The credentials of `Bearer CREDENTIALS`; the scheme name is
/// case-insensitive (RFC 9110, section 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials.trim())
}

/// `None` when the request may go on; else the refusal to answer with.
fn decide(security: &Security, service: &Service, method: &Method, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    let Some(presented) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer) else {
        return Some(unauthorized(Code::MissingCredentials, "send an API key or customer token as Authorization: Bearer ..."));
    };
    if let Some(key) = security.keys.get(&sha256(presented.trim())) {
        if !key.limiter.lock().expect("limiter lock").allow() {
            return Some(too_many(format!("API key \"{}\" is over its rate limit; retry", key.id)));
        }
        // Advice computes and changes nothing: a read key may ask for it.
        let needed = if matches!(*method, Method::GET | Method::HEAD) || path == "/v1/advice" { Scope::Read } else { Scope::ReadWrite };
        if key.scope < needed {
            return Some(forbidden(Code::ReadOnlyKey, &format!("API key \"{}\" may only read", key.id), "Authorization"));
        }
        return None;
    }
    if presented.starts_with(TOKEN_PREFIX) {
        return match security.check_token(presented.trim(), service.now()) {
            Ok(subscription) if customer_may(method, path, &subscription) => {
                (!security.token_allowed(&subscription)).then(|| too_many("this subscription's tokens are over their rate limit; retry".to_string()))
            }
            Ok(_) => Some(forbidden(Code::TokenScope, "a customer token may only read its own subscription's balance and ledger", "Authorization")),
            Err(why) => Some(unauthorized(if why == EXPIRED { Code::TokenExpired } else { Code::InvalidCredentials }, why)),
        };
    }
    Some(unauthorized(Code::InvalidCredentials, "unknown API key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_expiring_and_bound_to_one_subscription() {
        let security = Security::new(Vec::new(), b"secret".to_vec(), 10);
        let expires = Instant::from_micros(1_000);
        let token = security.customer_token("demo-cn/30g", expires);
        assert_eq!(security.check_token(&token, Instant::from_micros(999)), Ok("demo-cn/30g".to_string()));
        assert_eq!(security.check_token(&token, expires), Err("the token has expired"));
        let tampered = token.replacen("1000", "9000", 1);
        assert_eq!(security.check_token(&tampered, Instant::from_micros(0)), Err("the token's signature does not match"));
        let other = Security::new(Vec::new(), b"other".to_vec(), 10);
        assert!(other.check_token(&token, Instant::from_micros(0)).is_err());
        assert!(security.check_token("rt1.zz", Instant::from_micros(0)).is_err());
        assert!(customer_may(&Method::GET, "/v1/subscriptions/s1/balance", "s1"));
        assert!(!customer_may(&Method::GET, "/v1/subscriptions/s2/balance", "s1"));
        assert!(!customer_may(&Method::POST, "/v1/subscriptions/s1/events", "s1"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k1", "bearer k1", "BEARER  k1", " Bearer k1 "] {
            assert_eq!(bearer(value), Some("k1"), "{value:?}");
        }
        assert_eq!(bearer("Basic k1"), None);
        assert_eq!(bearer("Bearerk1"), None);
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:8080", "127.1.2.3:1", "[::1]", "[::1]:8080", "api.localhost:80", "LOCALHOST"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.com", "example.com:8080", "10.0.0.1", "localhost.example.com", "[::2]:80", "127.0.0.1.nip.io", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn limiter_allows_bursts_then_the_rate() {
        let mut limiter = Limiter::new(5);
        let allowed = (0..30).filter(|_| limiter.allow()).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
    }
}
