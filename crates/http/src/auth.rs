//! Who may call what. Operator API keys (stored only as SHA-256 hashes,
//! scoped read or read-write, each with its own rate limit) and customer
//! tokens (HMAC-signed, expiring, good only for reading one subscription's
//! balance and ledger).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant as WallInstant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use rollover_core::Instant;
use rollover_service::Service;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

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
    token_secret: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

const TOKEN_PREFIX: &str = "rt1";

impl Security {
    /// With no keys the API is open: for loopback development only (the
    /// binary refuses to listen elsewhere without keys).
    pub fn new(keys: Vec<ApiKey>, token_secret: Vec<u8>) -> Security {
        let keys = keys
            .into_iter()
            .map(|k| (k.sha256, KeyState { id: k.id, scope: k.scope, limiter: Mutex::new(Limiter::new(k.requests_per_second.max(1))) }))
            .collect();
        Security { keys, token_secret }
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
            return Err("the token has expired");
        }
        String::from_utf8(from_hex(subscription).ok_or("malformed token")?).map_err(|_| "malformed token")
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, detail, Some("Authorization".into())).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn forbidden(detail: &str) -> Response {
    Problem::new(StatusCode::FORBIDDEN, detail, Some("Authorization".into())).into_response()
}

/// Paths anyone may read: health, and the API description.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json" | "/docs")
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

pub async fn authorize(State((security, service)): State<(std::sync::Arc<Security>, Service)>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if security.is_open() || is_public(path) {
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

/// `None` when the request may go on; else the refusal to answer with.
fn decide(security: &Security, service: &Service, method: &Method, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    let Some(presented) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return Some(unauthorized("send an API key or customer token as Authorization: Bearer ..."));
    };
    if let Some(key) = security.keys.get(&sha256(presented.trim())) {
        if !key.limiter.lock().expect("limiter lock").allow() {
            let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS, format!("API key \"{}\" is over its rate limit; retry", key.id), None).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Some(response);
        }
        let needed = if matches!(*method, Method::GET | Method::HEAD) { Scope::Read } else { Scope::ReadWrite };
        if key.scope < needed {
            return Some(forbidden(&format!("API key \"{}\" may only read", key.id)));
        }
        return None;
    }
    if presented.starts_with(TOKEN_PREFIX) {
        return match security.check_token(presented.trim(), service.now()) {
            Ok(subscription) if customer_may(method, path, &subscription) => None,
            Ok(_) => Some(forbidden("a customer token may only read its own subscription's balance and ledger")),
            Err(why) => Some(unauthorized(why)),
        };
    }
    Some(unauthorized("unknown API key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_expiring_and_bound_to_one_subscription() {
        let security = Security::new(Vec::new(), b"secret".to_vec());
        let expires = Instant::from_micros(1_000);
        let token = security.customer_token("demo-cn/30g", expires);
        assert_eq!(security.check_token(&token, Instant::from_micros(999)), Ok("demo-cn/30g".to_string()));
        assert_eq!(security.check_token(&token, expires), Err("the token has expired"));
        let tampered = token.replacen("1000", "9000", 1);
        assert_eq!(security.check_token(&tampered, Instant::from_micros(0)), Err("the token's signature does not match"));
        let other = Security::new(Vec::new(), b"other".to_vec());
        assert!(other.check_token(&token, Instant::from_micros(0)).is_err());
        assert!(security.check_token("rt1.zz", Instant::from_micros(0)).is_err());
        assert!(customer_may(&Method::GET, "/v1/subscriptions/s1/balance", "s1"));
        assert!(!customer_may(&Method::GET, "/v1/subscriptions/s2/balance", "s1"));
        assert!(!customer_may(&Method::POST, "/v1/subscriptions/s1/events", "s1"));
    }

    #[test]
    fn limiter_allows_bursts_then_the_rate() {
        let mut limiter = Limiter::new(5);
        let allowed = (0..30).filter(|_| limiter.allow()).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
    }
}
