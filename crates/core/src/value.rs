//! Why a value written by a person (in a plan file, a scenario, a request)
//! does not read as one of core's types. The text of each is the sentence
//! users see: it quotes the value and says what would be right.

use std::fmt;

use crate::names::KIND_MAX_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Not an ISO 3166-1 alpha-2 code.
    Country(String),
    /// Not a bucket kind name.
    Kind(String),
    ZoneEmpty,
    /// Not in the IANA database built into the binary.
    ZoneUnknown(String),
    /// Not an RFC 3339 date and time.
    NotAnInstant(String),
    /// An instant without a valid offset (`Z`, `+HH:MM`, `-HH:MM`).
    NoOffset(String),
    /// An instant with digits below the microsecond.
    TooPrecise(String),
    /// Not one of the length forms.
    NotALength(String),
    LengthZero(String),
    /// More than 100,000 of a unit.
    LengthTooLarge(String),
}

const ZONE_HINT: &str = "use an IANA name such as \"Asia/Shanghai\" or \"UTC\"";
const INSTANT_HINT: &str = "write an RFC 3339 instant with its offset, e.g. \"2026-01-01T00:00:00+08:00\"";
const LENGTH_FORMS: &str = "\"N days\", \"N hours\", \"N calendar days\", \"N months\", \"N periods\" or \"never\"";

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Country(code) => write!(f, "\"{code}\" is not an ISO 3166-1 alpha-2 country code (two capital letters, e.g. \"CN\")"),
            ValueError::Kind(name) => write!(f, "\"{name}\" is not a bucket kind: use 1 to {KIND_MAX_LEN} characters of a-z, 0-9, '_' and '-'"),
            ValueError::ZoneEmpty => write!(f, "time zone is empty; {ZONE_HINT}"),
            ValueError::ZoneUnknown(name) => write!(f, "unknown time zone \"{name}\"; {ZONE_HINT}"),
            ValueError::NotAnInstant(text) => write!(f, "\"{text}\" is not an instant; {INSTANT_HINT}"),
            ValueError::NoOffset(text) => {
                write!(f, "\"{text}\" has no valid offset: end it with Z or +HH:MM / -HH:MM (hours 00 to 23, minutes 00 to 59)")
            }
            ValueError::TooPrecise(text) => write!(f, "\"{text}\" is more precise than a microsecond"),
            ValueError::NotALength(text) => write!(f, "\"{text}\" is not a length; use {LENGTH_FORMS}"),
            ValueError::LengthZero(text) => write!(f, "\"{text}\": the number must be at least 1"),
            ValueError::LengthTooLarge(text) => write!(f, "\"{text}\": the number is too large"),
        }
    }
}

impl std::error::Error for ValueError {}

/// Callers that report errors as text (the file readers) take the sentence.
impl From<ValueError> for String {
    fn from(error: ValueError) -> String {
        error.to_string()
    }
}
