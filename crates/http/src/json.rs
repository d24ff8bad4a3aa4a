//! Reading request bodies field by field, so that an error can name the
//! field (`records[3].bytes`), and writing responses.

use rollover_core::{Country, Instant, Kind, Zone};
use serde_json::{Map, Value};

use crate::problem::Problem;

pub type Fields = Map<String, Value>;

pub fn parse_object(body: &[u8]) -> Result<Fields, Problem> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(Problem::bad_request("", "the body must be a JSON object")),
        Err(e) => Err(Problem::bad_request("", format!("the body is not valid JSON: {e}"))),
    }
}

/// Rejects keys the endpoint does not know, naming the first.
pub fn only(fields: &Fields, path: &str, allowed: &[&str]) -> Result<(), Problem> {
    for key in fields.keys() {
        if !allowed.contains(&key.as_str()) {
            let field = join(path, key);
            return Err(Problem::bad_request(field, format!("unknown field; expected one of {}", allowed.join(", "))));
        }
    }
    Ok(())
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

pub fn string<'a>(fields: &'a Fields, path: &str, key: &str) -> Result<Option<&'a str>, Problem> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Problem::bad_request(join(path, key), "must be a string")),
    }
}

pub fn required_string<'a>(fields: &'a Fields, path: &str, key: &str) -> Result<&'a str, Problem> {
    string(fields, path, key)?.ok_or_else(|| Problem::bad_request(join(path, key), "is required"))
}

pub fn id(fields: &Fields, path: &str, key: &str) -> Result<Option<String>, Problem> {
    match string(fields, path, key)? {
        None => Ok(None),
        Some(s) if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control() || c == '/') => {
            Err(Problem::bad_request(join(path, key), "must be 1 to 128 characters, without '/' or control characters"))
        }
        Some(s) => Ok(Some(s.to_string())),
    }
}

pub fn instant(fields: &Fields, path: &str, key: &str) -> Result<Option<Instant>, Problem> {
    string(fields, path, key)?.map(|s| Instant::parse_rfc3339(s).map_err(|e| Problem::bad_request(join(path, key), e))).transpose()
}

/// The most bytes one usage record may carry (1 TiB): anything larger is a
/// counter error, not usage.
pub const MAX_RECORD_BYTES: u64 = 1 << 40;

pub fn bytes(fields: &Fields, path: &str, key: &str) -> Result<u64, Problem> {
    let field = join(path, key);
    match fields.get(key) {
        None | Some(Value::Null) => Err(Problem::bad_request(field, "is required")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(b) if b <= MAX_RECORD_BYTES => Ok(b),
            Some(_) => Err(Problem::bad_request(field, format!("is more than {MAX_RECORD_BYTES} bytes (1 TiB) in one record"))),
            None => Err(Problem::bad_request(field, "must be a whole number of bytes, 0 or more")),
        },
        Some(Value::String(s)) => rollover_core::amount::parse_bytes(s)
            .map_err(|e| Problem::bad_request(field.clone(), format!("\"{s}\": {e}")))
            .and_then(|b| if b <= MAX_RECORD_BYTES { Ok(b) } else { Err(Problem::bad_request(field, "is more than 1 TiB in one record")) }),
        Some(_) => Err(Problem::bad_request(field, "must be a number of bytes")),
    }
}

pub fn country(fields: &Fields, path: &str, key: &str) -> Result<Option<Country>, Problem> {
    string(fields, path, key)?.map(|s| Country::parse(s).map_err(|e| Problem::bad_request(join(path, key), e))).transpose()
}

pub fn kind(fields: &Fields, path: &str, key: &str) -> Result<Kind, Problem> {
    let text = required_string(fields, path, key)?;
    let kind = Kind::parse(text).map_err(|e| Problem::bad_request(join(path, key), e))?;
    if kind.is_reserved() {
        return Err(Problem::bad_request(join(path, key), format!("\"{kind}\" is reserved for data the plan itself creates")));
    }
    Ok(kind)
}

pub fn must_be_true(fields: &Fields, key: &str) -> Result<(), Problem> {
    match fields.get(key) {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(Problem::bad_request(key, "must be true")),
    }
}

pub fn show(instant: Instant, zone: &Zone) -> Option<String> {
    (!instant.is_never()).then(|| instant.to_rfc3339(zone))
}
