//! Activation codes (SGP.22 section 4.1), the text a QR code holds, and the
//! one-tap install links of iOS and Android.

use std::fmt;

/// `1$<SM-DP+ address>$<matching id>`, with `$$1` at the end when the
/// phone must ask for a confirmation code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationCode {
    pub smdp_address: String,
    pub matching_id: String,
    pub confirmation_code_required: bool,
}

/// Why a part of an activation code cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeError {
    /// The SM-DP+ address is not a host name (letters, digits, `-`, `.`).
    Address(String),
    /// The matching ID is empty or holds more than letters, digits and `-`.
    MatchingId(String),
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeError::Address(text) => write!(f, "SM-DP+ address {text:?} is not a host name (letters, digits, '-' and '.')"),
            CodeError::MatchingId(text) => write!(f, "matching ID {text:?}: use 1 to 64 letters, digits and '-'"),
        }
    }
}

impl std::error::Error for CodeError {}

impl ActivationCode {
    /// An activation code from the SM-DP+'s answer, both parts checked
    /// (neither may hold the `$` that separates them).
    pub fn new(smdp_address: &str, matching_id: &str, confirmation_code_required: bool) -> Result<ActivationCode, CodeError> {
        let host_ok = !smdp_address.is_empty()
            && smdp_address.len() <= 253
            && smdp_address.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !smdp_address.starts_with(['.', '-']);
        if !host_ok {
            return Err(CodeError::Address(smdp_address.to_string()));
        }
        if matching_id.is_empty() || matching_id.len() > 64 || !matching_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(CodeError::MatchingId(matching_id.to_string()));
        }
        Ok(ActivationCode { smdp_address: smdp_address.to_string(), matching_id: matching_id.to_string(), confirmation_code_required })
    }

    /// What a QR code holds: `LPA:` and the code.
    pub fn lpa(&self) -> String {
        format!("LPA:{self}")
    }

    /// The iOS (17.4 and later) one-tap install link.
    pub fn ios_link(&self) -> String {
        format!("https://esimsetup.apple.com/esim_qrcode_provisioning?carddata={}", percent_encode(&self.lpa()))
    }

    /// The Android one-tap install link.
    pub fn android_link(&self) -> String {
        format!("https://esimsetup.android.com/esim_qrcode_provisioning?carddata={}", percent_encode(&self.lpa()))
    }
}

impl fmt::Display for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1${}${}", self.smdp_address, self.matching_id)?;
        if self.confirmation_code_required {
            write!(f, "$$1")?;
        }
        Ok(())
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_links() {
        let code = ActivationCode::new("smdp.example.net", "QR-G-5C-1LS-1W1Z9P7", false).unwrap();
        assert_eq!(code.to_string(), "1$smdp.example.net$QR-G-5C-1LS-1W1Z9P7");
        assert_eq!(code.lpa(), "LPA:1$smdp.example.net$QR-G-5C-1LS-1W1Z9P7");
        assert_eq!(code.ios_link(), "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata=LPA%3A1%24smdp.example.net%24QR-G-5C-1LS-1W1Z9P7");
        assert!(code.android_link().starts_with("https://esimsetup.android.com/esim_qrcode_provisioning?carddata=LPA%3A1%24"));
        let confirmed = ActivationCode::new("smdp.example.net", "ABC", true).unwrap();
        assert_eq!(confirmed.to_string(), "1$smdp.example.net$ABC$$1");
        for (address, matching_id) in [("smdp$evil", "ABC"), ("", "ABC"), ("smdp.example.net", "A$B"), ("smdp.example.net", ""), ("smdp.example.net", "has space")] {
            assert!(ActivationCode::new(address, matching_id, false).is_err(), "{address:?} {matching_id:?}");
        }
    }
}
