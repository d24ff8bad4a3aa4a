//! Data amounts: strings with a unit (`"5GiB"`, `"500 MB"`, `"1.5GiB"`) to
//! integer bytes, and bytes back to text for people.

use std::fmt;

/// The units a plan may use. Binary units are powers of 1024, decimal units
/// powers of 1000; `B` is one byte.
const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountError {
    Empty,
    Negative,
    NoNumber,
    MissingUnit,
    UnknownUnit(String),
    BadNumber(String),
    NotWholeBytes,
    TooLarge,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountError::Empty => write!(f, "empty amount; write a number and a unit, e.g. \"5GiB\""),
            AmountError::Negative => write!(f, "amounts cannot be negative"),
            AmountError::NoNumber => write!(f, "amount must start with a number, e.g. \"5GiB\""),
            AmountError::MissingUnit => {
                write!(f, "amount needs a unit: B, KiB, MiB, GiB, TiB (1024-based) or kB, MB, GB, TB (1000-based)")
            }
            AmountError::UnknownUnit(unit) => write!(
                f,
                "unknown unit \"{unit}\"; use B, KiB, MiB, GiB, TiB (1024-based) or kB, MB, GB, TB (1000-based)"
            ),
            AmountError::BadNumber(number) => write!(f, "\"{number}\" is not a number"),
            AmountError::NotWholeBytes => write!(f, "amount is not a whole number of bytes"),
            AmountError::TooLarge => write!(f, "amount is too large (more than 2^64-1 bytes)"),
        }
    }
}

impl std::error::Error for AmountError {}

/// Parses an amount with its unit into bytes.
///
/// One space between the number and the unit is allowed; decimals are allowed
/// when the result is a whole number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, AmountError> {
    let (bytes, _unit) = parse_bytes_with_unit(text)?;
    Ok(bytes)
}

/// Like [`parse_bytes`], also returning the unit's size so that output can be
/// written back in the unit the author used.
pub fn parse_bytes_with_unit(text: &str) -> Result<(u64, u64), AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with('-') {
        return Err(AmountError::Negative);
    }
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let number = &text[..number_end];
    if number.is_empty() {
        return Err(AmountError::NoNumber);
    }
    let mut rest = &text[number_end..];
    if let Some(stripped) = rest.strip_prefix(' ') {
        rest = stripped;
    }
    if rest.is_empty() {
        return Err(AmountError::MissingUnit);
    }
    let unit_bytes = UNITS
        .iter()
        .find(|(name, _)| *name == rest)
        .map(|(_, size)| *size)
        .ok_or_else(|| AmountError::UnknownUnit(rest.to_string()))?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(AmountError::BadNumber(number.to_string()));
    }
    if whole.len() > 25 || fraction.len() > 24 {
        return Err(AmountError::TooLarge);
    }
    let whole_value: u128 = whole.parse().map_err(|_| AmountError::BadNumber(number.to_string()))?;
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| AmountError::BadNumber(number.to_string()))?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let scaled = whole_value
        .checked_mul(scale)
        .and_then(|v| v.checked_add(fraction_value))
        .and_then(|v| v.checked_mul(unit_bytes as u128))
        .ok_or(AmountError::TooLarge)?;
    if scaled % scale != 0 {
        return Err(AmountError::NotWholeBytes);
    }
    let bytes = scaled / scale;
    u64::try_from(bytes).map(|b| (b, unit_bytes)).map_err(|_| AmountError::TooLarge)
}

/// Writes bytes in `unit_bytes` when that is exact (`"10240MiB"`), else in
/// bytes (`"10737418241B"`). Used where a person compares with what they wrote.
pub fn format_in_unit(bytes: u64, unit_bytes: u64) -> String {
    let name = UNITS.iter().find(|(_, size)| *size == unit_bytes).map(|(n, _)| *n);
    match name {
        Some(name) if bytes.is_multiple_of(unit_bytes) => format!("{}{}", bytes / unit_bytes, name),
        _ => format!("{bytes}B"),
    }
}

/// The largest binary unit that writes `bytes` exactly (`"30GiB"`, `"324MiB"`,
/// `"1572865B"`).
pub fn format_exact(bytes: u64) -> String {
    for (name, size) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes != 0 && bytes.is_multiple_of(size) {
            return format!("{}{}", bytes / size, name);
        }
    }
    format!("{bytes}B")
}

/// Whether the plan was sold in 1000-based or 1024-based units; decides how
/// amounts are shown to customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitBase {
    Binary,
    Decimal,
}

impl UnitBase {
    /// The base of the unit an amount was written in (`B` counts as binary).
    pub fn of_unit(unit_bytes: u64) -> UnitBase {
        if unit_bytes > 1 && unit_bytes.is_multiple_of(1000) { UnitBase::Decimal } else { UnitBase::Binary }
    }
}

/// Shows an amount to a person: GB with two decimals from 1 GB, MB below
/// that, KB below 1 MB and bytes below 1 KB, so that no amount above zero
/// reads as zero; rounded half up, in the plan's unit base. The
/// customer-facing unit names are "KB", "MB" and "GB" in both bases, as
/// carriers print them; the plan explanation says which base is meant.
pub fn format_human(bytes: u64, base: UnitBase) -> String {
    let kb: u128 = match base {
        UnitBase::Binary => 1 << 10,
        UnitBase::Decimal => 1_000,
    };
    let (mb, gb) = (kb * kb, kb * kb * kb);
    let bytes = bytes as u128;
    let (unit_bytes, unit) = match bytes {
        0 => return "0 MB".to_string(),
        b if b < kb => return format!("{b} B"),
        b if b < mb => (kb, "KB"),
        b if b < gb => (mb, "MB"),
        _ => (gb, "GB"),
    };
    let hundredths = (bytes * 100 + unit_bytes / 2) / unit_bytes;
    if hundredths.is_multiple_of(100) {
        format!("{} {unit}", hundredths / 100)
    } else {
        format!("{}.{:02} {unit}", hundredths / 100, hundredths % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Result<u64, AmountError>) {
        assert_eq!(parse_bytes(text), expected, "{text}");
    }

    #[test]
    fn parses_units() {
        check("5GiB", Ok(5 << 30));
        check("500MB", Ok(500_000_000));
        check("1572864B", Ok(1_572_864));
        check("1.5GiB", Ok(3 << 29));
        check("500 MB", Ok(500_000_000));
        check("0B", Ok(0));
        check("2kB", Ok(2000));
        check("1TiB", Ok(1 << 40));
        check("16777215TiB", Ok(16_777_215u64 << 40));
    }

    #[test]
    fn rejects_bad_amounts() {
        check("", Err(AmountError::Empty));
        check("-5GiB", Err(AmountError::Negative));
        check("GiB", Err(AmountError::NoNumber));
        check("5", Err(AmountError::MissingUnit));
        check("5gb", Err(AmountError::UnknownUnit("gb".into())));
        check("5  GiB", Err(AmountError::UnknownUnit(" GiB".into())));
        check("1.5B", Err(AmountError::NotWholeBytes));
        check("1.2.3GiB", Err(AmountError::BadNumber("1.2.3".into())));
        check("5.GiB", Err(AmountError::BadNumber("5.".into())));
        check("16777216TiB", Err(AmountError::TooLarge));
        check("99999999999999999999999999999999TB", Err(AmountError::TooLarge));
    }

    #[test]
    fn formats() {
        assert_eq!(format_in_unit(10240 << 20, 1 << 20), "10240MiB");
        assert_eq!(format_in_unit(5, 1 << 20), "5B");
        assert_eq!(format_exact(30 << 30), "30GiB");
        assert_eq!(format_exact(0), "0B");
        assert_eq!(format_human(3 << 29, UnitBase::Binary), "1.50 GB");
        assert_eq!(format_human(324 << 20, UnitBase::Binary), "324 MB");
        assert_eq!(format_human(2_000_000_000, UnitBase::Decimal), "2 GB");
        assert_eq!(format_human(0, UnitBase::Binary), "0 MB");
        assert_eq!(format_human(1, UnitBase::Binary), "1 B");
        assert_eq!(format_human(1024, UnitBase::Binary), "1 KB");
        assert_eq!(format_human(1500, UnitBase::Decimal), "1.50 KB");
        assert_eq!(format_human((1 << 20) - 1, UnitBase::Binary), "1024 KB");
        assert_eq!(format_human(999_999_999, UnitBase::Decimal), "1000 MB");
        assert_eq!(format_human(u64::MAX, UnitBase::Binary), "17179869184 GB");
    }
}
