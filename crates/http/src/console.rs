//! The support console's sign-in: sessions made from an API key, kept in
//! memory, carried by an HttpOnly, SameSite=Strict cookie that expires, and
//! a CSRF token per session that every form must send back.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Mutex;
use std::time::{Duration, Instant as WallInstant};

use crate::auth::Scope;

/// The cookie that carries a console session.
pub const COOKIE: &str = "rollover_console";

/// How long a session lasts after its sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once; past it the oldest go first.
pub const MAX_SESSIONS: usize = 10_000;

/// Most fields one console form may have.
pub const MAX_FORM_FIELDS: usize = 32;

/// A signed-in member of staff.
#[derive(Debug, Clone)]
pub struct Session {
    /// The API key's id (`open` when no key is configured).
    pub key_id: String,
    pub scope: Scope,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: WallInstant,
}

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    /// The accepted-records counter at the dashboard's last look, and when.
    last_look: Mutex<Option<(WallInstant, u64)>>,
}

/// 32 random bytes as hex, from the kernel.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("the kernel gives random bytes");
    crate::auth::hex(&bytes)
}

impl Sessions {
    /// A new session for a key; its id, for the cookie.
    pub fn create(&self, key_id: &str, scope: Scope) -> (String, Session) {
        let id = random_hex();
        let session = Session { key_id: key_id.to_string(), scope, csrf: random_hex(), expires: WallInstant::now() + SESSION_LIFETIME };
        let mut sessions = self.sessions.lock().expect("console sessions lock");
        let now = WallInstant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session a cookie names.
    pub fn get(&self, id: &str) -> Option<Session> {
        let sessions = self.sessions.lock().expect("console sessions lock");
        sessions.get(id).filter(|s| s.expires > WallInstant::now()).cloned()
    }

    /// Records accepted a second since the dashboard's last look (and over
    /// how many seconds), given the counter now; `None` at the first look.
    pub fn rate_since_last_look(&self, accepted: u64) -> Option<(f64, f64)> {
        let now = WallInstant::now();
        let mut last = self.last_look.lock().expect("dashboard lock");
        let rate = last.and_then(|(at, count)| {
            let seconds = now.duration_since(at).as_secs_f64();
            (seconds > 0.0).then(|| (accepted.saturating_sub(count) as f64 / seconds, seconds))
        });
        *last = Some((now, accepted));
        rate
    }

    pub fn end(&self, id: &str) {
        self.sessions.lock().expect("console sessions lock").remove(id);
    }
}

/// The session id in a request's `Cookie` headers.
pub fn cookie_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_string)
}

/// The `Set-Cookie` value that carries (or, with `None`, clears) a session;
/// `secure` when the console is served over https (`server.public_url`).
pub fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!("{COOKIE}={id}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}", SESSION_LIFETIME.as_secs()),
        None => format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    }
}

/// Reads an `application/x-www-form-urlencoded` body: the fields in order.
/// `None` when it is not UTF-8 once decoded, or has too many fields.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut fields = Vec::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        if fields.len() == MAX_FORM_FIELDS {
            return None;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.push((decode(name)?, decode(value)?));
    }
    Some(fields)
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_are_bounded() {
        let fields = parse_form(b"key=a+b%2Bc&csrf=%E5%A5%BD&empty=&flag").unwrap();
        assert_eq!(fields, [("key".into(), "a b+c".into()), ("csrf".into(), "好".into()), ("empty".into(), String::new()), ("flag".into(), String::new())]);
        assert_eq!(parse_form(b"a=%zz"), None);
        assert_eq!(parse_form(b"a=%ff"), None, "not UTF-8");
        assert_eq!(parse_form("a=1&".repeat(MAX_FORM_FIELDS + 1).as_bytes()), None);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::default();
        let (id, session) = sessions.create("support", Scope::Read);
        assert_eq!(sessions.get(&id).map(|s| s.csrf), Some(session.csrf));
        assert!(sessions.get("forged").is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }
}
