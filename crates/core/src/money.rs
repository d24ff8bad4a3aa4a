//! Money: decimal strings in a currency to integer minor units, using the
//! currency's ISO 4217 exponent.

use std::fmt;

/// ISO 4217 currencies whose minor unit is not 2 decimals. Every other code in
/// [`CURRENCIES`] has 2.
const EXPONENTS: &[(&str, u8)] = &[
    ("BHD", 3), ("BIF", 0), ("CLF", 4), ("CLP", 0), ("DJF", 0), ("GNF", 0), ("IQD", 3), ("ISK", 0),
    ("JOD", 3), ("JPY", 0), ("KMF", 0), ("KRW", 0), ("KWD", 3), ("LYD", 3), ("OMR", 3), ("PYG", 0),
    ("RWF", 0), ("TND", 3), ("UGX", 0), ("UYI", 0), ("UYW", 4), ("VND", 0), ("VUV", 0), ("XAF", 0),
    ("XOF", 0), ("XPF", 0),
];

/// Active ISO 4217 currency codes (funds and precious metals excluded except
/// the few with national use).
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE", "CZK", "DJF",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD",
    "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
    "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

/// A currency: its ISO 4217 code and the number of decimals of its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    UnknownCurrency(String),
    Negative,
    BadNumber(String),
    TooManyDecimals { currency: String, exponent: u8 },
    TooLarge,
    AbovePriceCeiling,
}

/// The largest price a plan may name, in minor units (10,000,000,000.00 in
/// a currency with two decimals). Fees of a million periods at this price
/// still fit an `i64`; totals beyond `i64::MAX` saturate, never wrap.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::UnknownCurrency(code) => {
                write!(f, "unknown currency \"{code}\"; use an ISO 4217 code such as CNY, USD or EUR")
            }
            MoneyError::Negative => write!(f, "amounts of money cannot be negative"),
            MoneyError::BadNumber(text) => {
                write!(f, "\"{text}\" is not an amount of money; write a decimal string such as \"10.00\"")
            }
            MoneyError::TooManyDecimals { currency, exponent } => {
                write!(f, "{currency} has {exponent} decimal places; this amount has more")
            }
            MoneyError::TooLarge => write!(f, "amount of money is too large"),
            MoneyError::AbovePriceCeiling => write!(f, "a price may be at most {MAX_PRICE_MINOR} minor units of its currency"),
        }
    }
}

impl std::error::Error for MoneyError {}

impl Currency {
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        if !CURRENCIES.contains(&code) {
            return Err(MoneyError::UnknownCurrency(code.to_string()));
        }
        let exponent = EXPONENTS.iter().find(|(c, _)| *c == code).map(|(_, e)| *e).unwrap_or(2);
        let bytes = code.as_bytes();
        Ok(Currency { code: [bytes[0], bytes[1], bytes[2]], exponent })
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("currency codes are ASCII")
    }

    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// Parses a non-negative decimal string into minor units.
    pub fn parse_amount(&self, text: &str) -> Result<i64, MoneyError> {
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let bad = || MoneyError::BadNumber(text.to_string());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || (text.contains('.') && fraction.is_empty()) {
            return Err(bad());
        }
        if fraction.len() > self.exponent as usize {
            return Err(MoneyError::TooManyDecimals { currency: self.code().to_string(), exponent: self.exponent });
        }
        if whole.len() > 15 {
            return Err(MoneyError::TooLarge);
        }
        let whole_value: i64 = whole.parse().map_err(|_| bad())?;
        let mut fraction_value: i64 = if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| bad())? };
        for _ in fraction.len()..self.exponent as usize {
            fraction_value *= 10;
        }
        whole_value
            .checked_mul(10i64.pow(self.exponent as u32))
            .and_then(|v| v.checked_add(fraction_value))
            .ok_or(MoneyError::TooLarge)
    }

    /// Parses a price: an amount at most [`MAX_PRICE_MINOR`] minor units, so
    /// that fees and charges summed over any realistic life stay exact.
    pub fn parse_price(&self, text: &str) -> Result<i64, MoneyError> {
        let minor = self.parse_amount(text)?;
        if minor > MAX_PRICE_MINOR {
            return Err(MoneyError::AbovePriceCeiling);
        }
        Ok(minor)
    }

    /// Writes minor units as a decimal string (`5800` CNY -> `"58.00"`).
    pub fn format(&self, minor: i64) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let magnitude = minor.unsigned_abs();
        if self.exponent == 0 {
            return format!("{sign}{magnitude}");
        }
        let scale = 10u64.pow(self.exponent as u32);
        format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale, width = self.exponent as usize)
    }

    /// The sign customers know the currency by, where there is a common one.
    pub fn symbol(&self) -> Option<&'static str> {
        Some(match self.code() {
            "CNY" => "¥",
            "JPY" => "¥",
            "USD" => "$",
            "AUD" => "A$",
            "HKD" => "HK$",
            "EUR" => "€",
            "GBP" => "£",
            "KRW" => "₩",
            _ => return None,
        })
    }
}

/// `round_half_up(amount * numerator / denominator)` in integers; used by
/// daily proration.
pub fn prorate_half_up(amount_minor: i64, numerator: i64, denominator: i64) -> i64 {
    debug_assert!(amount_minor >= 0 && numerator >= 0 && denominator > 0);
    let product = amount_minor as i128 * numerator as i128;
    ((product * 2 + denominator as i128) / (2 * denominator as i128)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents() {
        for (code, exponent) in [("CNY", 2), ("USD", 2), ("EUR", 2), ("GBP", 2), ("AUD", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3)] {
            assert_eq!(Currency::parse(code).unwrap().exponent(), exponent, "{code}");
        }
        assert_eq!(Currency::parse("XYZ"), Err(MoneyError::UnknownCurrency("XYZ".into())));
        assert_eq!(Currency::parse("usd"), Err(MoneyError::UnknownCurrency("usd".into())));
    }

    #[test]
    fn amounts() {
        let cny = Currency::parse("CNY").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(cny.parse_amount("58.00"), Ok(5800));
        assert_eq!(cny.parse_amount("58.5"), Ok(5850));
        assert_eq!(cny.parse_amount("58"), Ok(5800));
        assert_eq!(jpy.parse_amount("980"), Ok(980));
        assert_eq!(jpy.parse_amount("980.5"), Err(MoneyError::TooManyDecimals { currency: "JPY".into(), exponent: 0 }));
        assert_eq!(cny.parse_amount("1.001"), Err(MoneyError::TooManyDecimals { currency: "CNY".into(), exponent: 2 }));
        assert_eq!(cny.parse_amount("-1.00"), Err(MoneyError::Negative));
        assert_eq!(cny.parse_amount("1e3"), Err(MoneyError::BadNumber("1e3".into())));
        assert_eq!(cny.parse_amount("9999999999999999"), Err(MoneyError::TooLarge));
        assert_eq!(cny.format(5800), "58.00");
        assert_eq!(cny.format(5), "0.05");
        assert_eq!(jpy.format(980), "980");
    }

    #[test]
    fn proration_rounds_half_up() {
        // 58.00 for 17 of 31 days = 31.806... -> 31.81
        assert_eq!(prorate_half_up(5800, 17, 31), 3181);
        // 10.00 for 1 of 8 = 1.25 exactly; 0.05 * 1/2 = 0.025 -> 0.03
        assert_eq!(prorate_half_up(1000, 1, 8), 125);
        assert_eq!(prorate_half_up(5, 1, 2), 3);
    }
}
