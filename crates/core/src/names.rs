//! ISO 3166-1 alpha-2 country codes, and the kind names of buckets.

use std::fmt;

use crate::value::ValueError;

/// Assigned ISO 3166-1 alpha-2 codes (as in the tz database's iso3166.tab).
pub const COUNTRIES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",];

/// A country, as an ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Country([u8; 2]);

impl Country {
    pub fn parse(code: &str) -> Result<Country, ValueError> {
        if COUNTRIES.binary_search(&code).is_err() {
            return Err(ValueError::Country(code.to_string()));
        }
        let bytes = code.as_bytes();
        Ok(Country([bytes[0], bytes[1]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("country codes are ASCII")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a bucket: `allowance`, `carry`, `extra`, or any name a grant
/// uses (`gift`, `addon`, `topup`, ...).
///
/// Names are 1 to 12 characters of `a-z`, `0-9`, `_` and `-`, packed into a
/// `u64` (base 39) so that a bucket stays small and comparisons are one
/// instruction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Kind(u64);

const KIND_ALPHABET: &[u8; 38] = b"abcdefghijklmnopqrstuvwxyz0123456789_-";
pub const KIND_MAX_LEN: usize = 12;

const fn kind_code(c: u8) -> u64 {
    let mut i = 0;
    while i < KIND_ALPHABET.len() {
        if KIND_ALPHABET[i] == c {
            return i as u64 + 1;
        }
        i += 1;
    }
    0
}

const fn pack_kind(name: &str) -> Option<u64> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > KIND_MAX_LEN {
        return None;
    }
    let mut value = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        let code = kind_code(bytes[i]);
        if code == 0 {
            return None;
        }
        value = value * 39 + code;
        i += 1;
    }
    Some(value)
}

const fn known(name: &str) -> Kind {
    match pack_kind(name) {
        Some(v) => Kind(v),
        None => panic!("bad built-in kind"),
    }
}

impl Kind {
    pub const ALLOWANCE: Kind = known("allowance");
    pub const CARRY: Kind = known("carry");
    pub const EXTRA: Kind = known("extra");

    pub fn parse(name: &str) -> Result<Kind, ValueError> {
        pack_kind(name).map(Kind).ok_or_else(|| ValueError::Kind(name.to_string()))
    }

    /// The packed form, for checkpoints.
    pub fn packed(self) -> u64 {
        self.0
    }

    /// A kind from its packed form; `None` if no name packs to it.
    pub fn from_packed(value: u64) -> Option<Kind> {
        let kind = Kind(value);
        (value > 0 && pack_kind(&kind.name_checked()?) == Some(value)).then_some(kind)
    }

    fn name_checked(self) -> Option<String> {
        let mut value = self.0;
        let mut n = 0;
        while value > 0 {
            if value.is_multiple_of(39) || n == KIND_MAX_LEN {
                return None;
            }
            value /= 39;
            n += 1;
        }
        Some(self.name())
    }

    /// Kinds that only the engine creates; a grant may not name them.
    pub fn is_reserved(self) -> bool {
        self == Kind::ALLOWANCE || self == Kind::CARRY || self == Kind::EXTRA
    }

    pub fn name(self) -> String {
        let mut digits = [0u8; KIND_MAX_LEN];
        let mut n = 0;
        let mut value = self.0;
        while value > 0 {
            digits[n] = KIND_ALPHABET[(value % 39 - 1) as usize];
            value /= 39;
            n += 1;
        }
        digits[..n].reverse();
        String::from_utf8(digits[..n].to_vec()).expect("kind names are ASCII")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for name in ["allowance", "carry", "extra", "gift", "a", "zzzzzzzzzzzz", "top-up_9", "------------"] {
            assert_eq!(Kind::parse(name).unwrap().name(), name);
        }
        assert!(Kind::parse("").is_err());
        assert!(Kind::parse("Gift").is_err());
        assert!(Kind::parse("thirteen-char").is_err());
        assert!(Kind::ALLOWANCE.is_reserved() && !Kind::parse("gift").unwrap().is_reserved());
    }

    #[test]
    fn countries() {
        assert_eq!(Country::parse("CN").unwrap().as_str(), "CN");
        assert!(Country::parse("cn").is_err());
        assert!(Country::parse("XX").is_err());
        assert!(COUNTRIES.windows(2).all(|w| w[0] < w[1]), "the table must stay sorted for binary search");
    }
}
