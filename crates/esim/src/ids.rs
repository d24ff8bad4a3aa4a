//! ICCIDs and EIDs: the numbers that name a profile and a phone's eUICC.

use std::fmt;

/// Why a text is not an ICCID or an EID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Not 19 or 20 digits (an ICCID), or not 32 (an EID); `found` is how
    /// many characters there were.
    Length { expected: &'static str, found: usize },
    NotDigits,
    /// An ICCID whose last digit is not the Luhn check digit of the others.
    Luhn { expected: u8 },
    /// An ICCID that does not start with 89, the telecom industry prefix.
    NotTelecom,
    /// An EID whose 32 digits are not 1 modulo 97.
    Mod97,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length { expected, found } => write!(f, "has {found} characters: {expected}"),
            IdError::NotDigits => write!(f, "has a character that is not a digit"),
            IdError::Luhn { expected } => write!(f, "fails its Luhn check: the last digit would be {expected}"),
            IdError::NotTelecom => write!(f, "does not start with 89 (ITU-T E.118)"),
            IdError::Mod97 => write!(f, "fails its check digits (ISO 7064 MOD 97-10: the EID modulo 97 must be 1)"),
        }
    }
}

impl std::error::Error for IdError {}

/// An ICCID: 19 or 20 digits, starting 89, the last a Luhn check digit.
/// A 19-digit ICCID padded with `F` to 20 (as some wires carry it) is
/// read without the `F`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iccid(String);

impl Iccid {
    pub fn parse(text: &str) -> Result<Iccid, IdError> {
        let text = text.trim();
        let digits = text.strip_suffix(['F', 'f']).unwrap_or(text);
        if !(19..=20).contains(&digits.len()) {
            return Err(IdError::Length { expected: "an ICCID has 19 or 20 digits", found: text.chars().count() });
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::NotDigits);
        }
        if !digits.starts_with("89") {
            return Err(IdError::NotTelecom);
        }
        let (body, check) = digits.split_at(digits.len() - 1);
        let expected = luhn_check_digit(body);
        if check.as_bytes()[0] - b'0' != expected {
            return Err(IdError::Luhn { expected });
        }
        Ok(Iccid(digits.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Iccid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Luhn check digit of `body` (ISO/IEC 7812): from the right, every
/// second digit doubled (less 9 past 9), the sum completed to a multiple of
/// ten.
pub fn luhn_check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let digit = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// An EID: 32 digits whose value modulo 97 is 1 (SGP.29; ISO 7064 MOD
/// 97-10 check digits at the end).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Eid(String);

impl Eid {
    pub fn parse(text: &str) -> Result<Eid, IdError> {
        let text = text.trim();
        if text.len() != 32 {
            return Err(IdError::Length { expected: "an EID has 32 digits", found: text.chars().count() });
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::NotDigits);
        }
        let remainder = text.bytes().fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
        if remainder != 1 {
            return Err(IdError::Mod97);
        }
        Ok(Eid(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Eid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iccids() {
        // 8944 5000 0000 0000 001 has 9 as its Luhn digit; the 18 digits
        // 8944 5000 0000 0000 00 have 6, which makes a 19-digit ICCID.
        assert_eq!(luhn_check_digit("8944500000000000001"), 9);
        assert_eq!(luhn_check_digit("894450000000000000"), 6);
        assert_eq!(luhn_check_digit("7992739871"), 3, "the textbook example");
        let good = [
            ("89445000000000000019", "89445000000000000019"),
            ("8944500000000000006", "8944500000000000006"),
            ("8944500000000000006F", "8944500000000000006"),
            (" 89445000000000000019 ", "89445000000000000019"),
        ];
        for (text, read) in good {
            assert_eq!(Iccid::parse(text).map(|i| i.as_str().to_string()), Ok(read.to_string()), "{text:?}");
        }
        let cases: [(&str, IdError); 5] = [
            ("89445000000000000018", IdError::Luhn { expected: 9 }),
            ("8944500000000", IdError::Length { expected: "an ICCID has 19 or 20 digits", found: 13 }),
            ("8944500000000000001A", IdError::NotDigits),
            ("12445000000000000018", IdError::NotTelecom),
            ("894450000000000000181", IdError::Length { expected: "an ICCID has 19 or 20 digits", found: 21 }),
        ];
        for (text, error) in cases {
            assert_eq!(Iccid::parse(text), Err(error), "{text}");
        }
    }

    #[test]
    fn eids() {
        // 31 digits, then the two check digits that make the whole 1 mod 97.
        let body = "890490320000000000000000000012";
        let check = 98 - (format!("{body}00").parse::<u128>().unwrap() % 97) as u32;
        let eid = format!("{body}{check:02}");
        assert_eq!(eid.len(), 32);
        assert!(Eid::parse(&eid).is_ok(), "{eid}");
        let mut wrong = eid.clone().into_bytes();
        wrong[10] = if wrong[10] == b'9' { b'8' } else { wrong[10] + 1 };
        assert_eq!(Eid::parse(std::str::from_utf8(&wrong).unwrap()), Err(IdError::Mod97));
        assert!(matches!(Eid::parse("8904903200"), Err(IdError::Length { found: 10, .. })));
        assert_eq!(Eid::parse(&eid.replace('0', "x")), Err(IdError::NotDigits));
    }
}
