//! Reading request bodies field by field, so that an error can name the
//! field (`records[3].bytes`), and writing responses.

use rollover_core::{Country, Instant, Kind, Zone};
use serde_json::{Map, Value};

use crate::problem::{Code, Problem};

pub type Fields = Map<String, Value>;

pub fn parse_object(body: &[u8]) -> Result<Fields, Problem> {
    match parse_value(body)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(Problem::new(Code::InvalidJson, "the body must be a JSON object", None)),
    }
}

/// Any JSON document, refusing an object that names a key twice: with
/// "last one wins", a record could say one subscription to one reader and
/// another to the next.
pub fn parse_value(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice::<Strict>(body).map(|strict| strict.0).map_err(|e| Problem::new(Code::InvalidJson, format!("the body is not valid JSON: {e}"), None))
}

/// A JSON value read with duplicate keys refused.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("the key \"{key}\" appears twice in one object")));
            }
            let Strict(value) = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

/// Rejects keys the endpoint does not know, naming the first.
pub fn only(fields: &Fields, path: &str, allowed: &[&str]) -> Result<(), Problem> {
    for key in fields.keys() {
        if !allowed.contains(&key.as_str()) {
            let field = join(path, key);
            return Err(Problem::about(Code::UnknownField, field, format!("unknown field; expected one of {}", allowed.join(", "))));
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
        Some(_) => Err(Problem::invalid(join(path, key), "must be a string")),
    }
}

pub fn required_string<'a>(fields: &'a Fields, path: &str, key: &str) -> Result<&'a str, Problem> {
    string(fields, path, key)?.ok_or_else(|| Problem::invalid(join(path, key), "is required"))
}

/// What an id may be: 1 to 128 characters of ASCII letters, digits and
/// `. _ : ; @ + = -`, starting with a letter or digit. So `.`, `..`, ids
/// that differ only by an invisible or right-to-left character, and ids
/// that would need escaping in a URL path or a log line cannot exist.
pub fn is_valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b".-_:;@+=".contains(b);
    // `acct:` and `acct-stop:` name RADIUS counter reports in logs written
    // before internal keys took their `#` prefix: reserved.
    let reserved = id.starts_with("acct:") || id.starts_with("acct-stop:");
    (1..=128).contains(&bytes.len()) && bytes[0].is_ascii_alphanumeric() && bytes.iter().all(allowed) && !reserved
}

pub fn id(fields: &Fields, path: &str, key: &str) -> Result<Option<String>, Problem> {
    match string(fields, path, key)? {
        None => Ok(None),
        Some(s) if !is_valid_id(s) => Err(Problem::invalid(
            join(path, key),
            "must be 1 to 128 characters of ASCII letters, digits and . _ : ; @ + = -, starting with a letter or digit (and not with acct: or acct-stop:)",
        )),
        Some(s) => Ok(Some(s.to_string())),
    }
}

pub fn instant(fields: &Fields, path: &str, key: &str) -> Result<Option<Instant>, Problem> {
    string(fields, path, key)?.map(|s| Instant::parse_rfc3339(s).map_err(|e| Problem::invalid(join(path, key), e))).transpose()
}

pub use rollover_service::MAX_RECORD_BYTES;

/// A JSON number that is a whole number 0 or more: `5`, and also `5.0` (some
/// encoders write whole numbers so; JSON Schema's `integer` takes them).
pub fn whole_number(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= (1u64 << 53) as f64).map(|f| f as u64))
}

/// A number of bytes: a whole number, or an amount with its unit
/// (`"5GiB"`), at most [`MAX_RECORD_BYTES`].
pub fn bytes(fields: &Fields, path: &str, key: &str) -> Result<u64, Problem> {
    let field = join(path, key);
    match fields.get(key) {
        None | Some(Value::Null) => Err(Problem::required(field)),
        Some(Value::Number(n)) => match whole_number(n) {
            Some(b) if b <= MAX_RECORD_BYTES => Ok(b),
            Some(_) => Err(Problem::invalid(field, format!("is more than {MAX_RECORD_BYTES} bytes (1 TiB) in one record"))),
            None => Err(Problem::invalid(field, "must be a whole number of bytes, 0 or more")),
        },
        Some(Value::String(s)) if s.contains('.') => Err(Problem::invalid(field, format!("\"{s}\": write a whole number and a unit, e.g. \"1536MiB\""))),
        Some(Value::String(s)) => {
            let bytes = match rollover_core::amount::parse_bytes(s) {
                Ok(bytes) => bytes,
                Err(rollover_core::amount::AmountError::TooLarge) => u64::MAX,
                Err(e) => return Err(Problem::invalid(field, format!("\"{s}\": {e}"))),
            };
            if bytes > MAX_RECORD_BYTES {
                return Err(Problem::about(Code::ValueOutOfRange, field, format!("\"{s}\" is more than 1 TiB in one record")));
            }
            Ok(bytes)
        }
        Some(_) => Err(Problem::invalid(field, "must be a number of bytes")),
    }
}

pub fn country(fields: &Fields, path: &str, key: &str) -> Result<Option<Country>, Problem> {
    string(fields, path, key)?.map(|s| Country::parse(s).map_err(|e| Problem::invalid(join(path, key), e))).transpose()
}

pub fn kind(fields: &Fields, path: &str, key: &str) -> Result<Kind, Problem> {
    let text = required_string(fields, path, key)?;
    let kind = Kind::parse(text).map_err(|e| Problem::invalid(join(path, key), e))?;
    if kind.is_reserved() {
        return Err(Problem::invalid(join(path, key), format!("\"{kind}\" is reserved for data the plan itself creates")));
    }
    Ok(kind)
}

pub fn must_be_true(fields: &Fields, key: &str) -> Result<(), Problem> {
    match fields.get(key) {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(Problem::invalid(key, "must be true")),
    }
}

pub fn show(instant: Instant, zone: &Zone) -> Option<String> {
    (!instant.is_never()).then(|| instant.to_rfc3339(zone))
}
