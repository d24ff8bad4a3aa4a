//! RADIUS packets (RFC 2865), accounting (RFC 2866, 2869) and dynamic
//! authorization (RFC 5176): decoding, encoding and authenticators, and the
//! accounting fields rollover rates (cumulative octet counters with
//! gigawords, 3GPP vendor attributes).

use std::fmt;

use md5::{Digest, Md5};

pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;
pub const DISCONNECT_REQUEST: u8 = 40;
pub const DISCONNECT_ACK: u8 = 41;
pub const DISCONNECT_NAK: u8 = 42;
pub const COA_REQUEST: u8 = 43;
pub const COA_ACK: u8 = 44;
pub const COA_NAK: u8 = 45;

pub const USER_NAME: u8 = 1;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const FRAMED_IP_ADDRESS: u8 = 8;
pub const FILTER_ID: u8 = 11;
pub const REPLY_MESSAGE: u8 = 18;
pub const ACCT_DELAY_TIME: u8 = 41;
pub const EVENT_TIMESTAMP: u8 = 55;
pub const ERROR_CAUSE: u8 = 101;
pub const VENDOR_SPECIFIC: u8 = 26;
pub const CALLING_STATION_ID: u8 = 31;
pub const NAS_IDENTIFIER: u8 = 32;
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const ACCT_INPUT_OCTETS: u8 = 42;
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
pub const ACCT_SESSION_ID: u8 = 44;
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;

/// 3GPP's vendor id, and the vendor attributes rollover reads (TS 29.061).
pub const VENDOR_3GPP: u32 = 10415;
pub const VSA_3GPP_IMSI: u8 = 1;
pub const VSA_3GPP_SGSN_MCC_MNC: u8 = 18;

const HEADER: usize = 20;
/// RFC 2865: a packet is at most 4096 octets.
pub const MAX_PACKET: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort(usize),
    BadLength { declared: usize, received: usize },
    BadAttribute { offset: usize, why: &'static str },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort(n) => write!(f, "{n} octets: shorter than a RADIUS header (20)"),
            DecodeError::BadLength { declared, received } => {
                write!(f, "the Length field says {declared} octets, {received} arrived (20 to 4096 allowed)")
            }
            DecodeError::BadAttribute { offset, why } => write!(f, "attribute at offset {offset}: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// In the order received: (type, value).
    pub attributes: Vec<(u8, Vec<u8>)>,
}

impl Packet {
    /// Reads one packet. Octets past the Length field are padding and are
    /// ignored (RFC 2865, section 3).
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        if bytes.len() < HEADER {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        let declared = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        if !(HEADER..=MAX_PACKET).contains(&declared) || declared > bytes.len() {
            return Err(DecodeError::BadLength { declared, received: bytes.len() });
        }
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&bytes[4..20]);
        let mut attributes = Vec::new();
        let mut offset = HEADER;
        while offset < declared {
            if offset + 2 > declared {
                return Err(DecodeError::BadAttribute { offset, why: "truncated type and length" });
            }
            let kind = bytes[offset];
            let length = bytes[offset + 1] as usize;
            if length < 2 {
                return Err(DecodeError::BadAttribute { offset, why: "length below 2" });
            }
            if offset + length > declared {
                return Err(DecodeError::BadAttribute { offset, why: "runs past the end of the packet" });
            }
            attributes.push((kind, bytes[offset + 2..offset + length].to_vec()));
            offset += length;
        }
        Ok(Packet { code: bytes[0], identifier: bytes[1], authenticator, attributes })
    }

    /// The packet's octets. Attribute values longer than 253 octets cannot
    /// be encoded and are a caller's bug.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.attributes.iter().map(|(_, v)| v.len() + 2).sum::<usize>());
        out.extend_from_slice(&[self.code, self.identifier, 0, 0]);
        out.extend_from_slice(&self.authenticator);
        for (kind, value) in &self.attributes {
            assert!(value.len() <= 253, "a RADIUS attribute value holds at most 253 octets");
            out.push(*kind);
            out.push(value.len() as u8 + 2);
            out.extend_from_slice(value);
        }
        let length = out.len() as u16;
        out[2..4].copy_from_slice(&length.to_be_bytes());
        out
    }

    pub fn attribute(&self, kind: u8) -> Option<&[u8]> {
        self.attributes.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.as_slice())
    }

    pub fn integer(&self, kind: u8) -> Option<u32> {
        self.attribute(kind).and_then(|v| Some(u32::from_be_bytes(v.try_into().ok()?)))
    }

    pub fn ipv4(&self, kind: u8) -> Option<std::net::Ipv4Addr> {
        let value: [u8; 4] = self.attribute(kind)?.try_into().ok()?;
        Some(std::net::Ipv4Addr::from(value))
    }

    pub fn text(&self, kind: u8) -> Option<&str> {
        self.attribute(kind).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The sub-attributes of every Vendor-Specific attribute of `vendor`:
    /// (vendor type, value). Malformed vendor data is skipped, not trusted.
    pub fn vendor_attributes(&self, vendor: u32) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        for (kind, value) in &self.attributes {
            if *kind != VENDOR_SPECIFIC || value.len() < 4 || u32::from_be_bytes([value[0], value[1], value[2], value[3]]) != vendor {
                continue;
            }
            let mut offset = 4;
            while offset + 2 <= value.len() {
                let sub = value[offset];
                let length = value[offset + 1] as usize;
                if length < 2 || offset + length > value.len() {
                    break;
                }
                out.push((sub, &value[offset + 2..offset + length]));
                offset += length;
            }
        }
        out
    }

    /// A Vendor-Specific attribute holding one sub-attribute.
    pub fn vendor_attribute(vendor: u32, sub: u8, value: &[u8]) -> (u8, Vec<u8>) {
        let mut out = vendor.to_be_bytes().to_vec();
        out.push(sub);
        out.push(value.len() as u8 + 2);
        out.extend_from_slice(value);
        (VENDOR_SPECIFIC, out)
    }
}

fn md5_of(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Whether an Accounting-Request, CoA-Request or Disconnect-Request carries
/// the authenticator its client's secret gives: MD5(Code | Identifier |
/// Length | 16 zero octets | Attributes | Secret) (RFC 2866, RFC 5176).
pub fn request_authentic(bytes: &[u8], secret: &[u8]) -> bool {
    let Ok(packet) = Packet::decode(bytes) else { return false };
    let length = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
    let expected = md5_of(&[&bytes[..4], &[0u8; 16], &bytes[HEADER..length], secret]);
    // Compare every octet, so that timing does not tell how many matched.
    expected.iter().zip(packet.authenticator.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Signs a request the way `request_authentic` checks it (for CoA and
/// Disconnect requests that rollover sends): returns the octets to send.
pub fn sign_request(mut packet: Packet, secret: &[u8]) -> Vec<u8> {
    packet.authenticator = [0u8; 16];
    let mut bytes = packet.encode();
    let authenticator = md5_of(&[&bytes[..4], &[0u8; 16], &bytes[HEADER..], secret]);
    bytes[4..20].copy_from_slice(&authenticator);
    bytes
}

/// A response to `request`: MD5(Code | Identifier | Length | Request
/// Authenticator | Attributes | Secret).
pub fn response(code: u8, request: &Packet, attributes: Vec<(u8, Vec<u8>)>, secret: &[u8]) -> Vec<u8> {
    let packet = Packet { code, identifier: request.identifier, authenticator: request.authenticator, attributes };
    let mut bytes = packet.encode();
    let authenticator = md5_of(&[&bytes[..4], &request.authenticator, &bytes[HEADER..], secret]);
    bytes[4..20].copy_from_slice(&authenticator);
    bytes
}

/// Whether a response (CoA-ACK, Disconnect-NAK, ...) to a request with
/// `request_authenticator` is authentic.
pub fn response_authentic(bytes: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    let Ok(packet) = Packet::decode(bytes) else { return false };
    let length = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
    md5_of(&[&bytes[..4], request_authenticator, &bytes[HEADER..length], secret]) == packet.authenticator
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctStatus {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
}

/// The fields of an Accounting-Request that rating needs. Octet counters are
/// cumulative for the session: `(gigawords << 32) | octets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    pub status: AcctStatus,
    pub session_id: Option<String>,
    pub input_octets: u64,
    pub output_octets: u64,
    pub user_name: Option<String>,
    pub calling_station_id: Option<String>,
    pub imsi: Option<String>,
    /// 3GPP-SGSN-MCC-MNC: the serving network, five or six digits.
    pub sgsn_mcc_mnc: Option<String>,
    pub nas_ip: Option<std::net::Ipv4Addr>,
    pub nas_identifier: Option<String>,
    pub framed_ip: Option<std::net::Ipv4Addr>,
    /// Acct-Delay-Time: seconds the NAS held the report before sending it.
    pub delay_seconds: u32,
}

/// Why a well-formed packet is no accounting report rollover can rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountingError {
    /// The packet's code is not Accounting-Request (4).
    NotAccounting(u8),
    /// An Acct-Status-Type other than Start, Stop, Interim-Update,
    /// Accounting-On and Accounting-Off.
    StatusType(u32),
    NoStatusType,
}

impl std::fmt::Display for AccountingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountingError::NotAccounting(code) => write!(f, "code {code} is not an Accounting-Request"),
            AccountingError::StatusType(value) => write!(f, "Acct-Status-Type {value} is not one rollover rates"),
            AccountingError::NoStatusType => write!(f, "no Acct-Status-Type"),
        }
    }
}

impl std::error::Error for AccountingError {}

impl Accounting {
    pub fn total_octets(&self) -> u64 {
        self.input_octets.saturating_add(self.output_octets)
    }

    pub fn from_packet(packet: &Packet) -> Result<Accounting, AccountingError> {
        if packet.code != ACCOUNTING_REQUEST {
            return Err(AccountingError::NotAccounting(packet.code));
        }
        let status = match packet.integer(ACCT_STATUS_TYPE) {
            Some(1) => AcctStatus::Start,
            Some(2) => AcctStatus::Stop,
            Some(3) => AcctStatus::InterimUpdate,
            Some(7) => AcctStatus::AccountingOn,
            Some(8) => AcctStatus::AccountingOff,
            Some(other) => return Err(AccountingError::StatusType(other)),
            None => return Err(AccountingError::NoStatusType),
        };
        let counter = |octets: u8, gigawords: u8| -> u64 {
            ((packet.integer(gigawords).unwrap_or(0) as u64) << 32) | packet.integer(octets).unwrap_or(0) as u64
        };
        let vendor = packet.vendor_attributes(VENDOR_3GPP);
        let vendor_text = |sub: u8| vendor.iter().find(|(s, _)| *s == sub).and_then(|(_, v)| std::str::from_utf8(v).ok()).map(String::from);
        Ok(Accounting {
            status,
            session_id: packet.text(ACCT_SESSION_ID).map(String::from),
            input_octets: counter(ACCT_INPUT_OCTETS, ACCT_INPUT_GIGAWORDS),
            output_octets: counter(ACCT_OUTPUT_OCTETS, ACCT_OUTPUT_GIGAWORDS),
            user_name: packet.text(USER_NAME).map(String::from),
            calling_station_id: packet.text(CALLING_STATION_ID).map(String::from),
            imsi: vendor_text(VSA_3GPP_IMSI),
            sgsn_mcc_mnc: vendor_text(VSA_3GPP_SGSN_MCC_MNC),
            nas_ip: packet.ipv4(NAS_IP_ADDRESS),
            nas_identifier: packet.text(NAS_IDENTIFIER).map(String::from),
            framed_ip: packet.ipv4(FRAMED_IP_ADDRESS),
            delay_seconds: packet.integer(ACCT_DELAY_TIME).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"testing123";

    fn interim() -> Packet {
        Packet {
            code: ACCOUNTING_REQUEST,
            identifier: 7,
            authenticator: [0; 16],
            attributes: vec![
                (ACCT_STATUS_TYPE, 3u32.to_be_bytes().to_vec()),
                (ACCT_SESSION_ID, b"sess-1".to_vec()),
                (USER_NAME, b"460001234567890".to_vec()),
                (ACCT_INPUT_OCTETS, 5u32.to_be_bytes().to_vec()),
                (ACCT_INPUT_GIGAWORDS, 1u32.to_be_bytes().to_vec()),
                (ACCT_OUTPUT_OCTETS, 100u32.to_be_bytes().to_vec()),
                Packet::vendor_attribute(VENDOR_3GPP, VSA_3GPP_IMSI, b"460001234567890"),
                Packet::vendor_attribute(VENDOR_3GPP, VSA_3GPP_SGSN_MCC_MNC, b"44010"),
            ],
        }
    }

    #[test]
    fn accounting_requests_are_signed_checked_and_read() {
        let bytes = sign_request(interim(), SECRET);
        assert!(request_authentic(&bytes, SECRET));
        assert!(!request_authentic(&bytes, b"wrong"), "a wrong secret is caught");
        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(!request_authentic(&tampered, SECRET), "a changed octet is caught");
        let packet = Packet::decode(&bytes).unwrap();
        let record = Accounting::from_packet(&packet).unwrap();
        assert_eq!(record.status, AcctStatus::InterimUpdate);
        assert_eq!(record.session_id.as_deref(), Some("sess-1"));
        assert_eq!(record.input_octets, (1u64 << 32) | 5, "gigawords count 2^32 octets each");
        assert_eq!(record.output_octets, 100);
        assert_eq!(record.imsi.as_deref(), Some("460001234567890"));
        assert_eq!(record.sgsn_mcc_mnc.as_deref(), Some("44010"));
    }

    #[test]
    fn responses_carry_the_request_authenticator_chain() {
        let request = Packet::decode(&sign_request(interim(), SECRET)).unwrap();
        let answer = response(ACCOUNTING_RESPONSE, &request, Vec::new(), SECRET);
        assert_eq!(answer.len(), 20);
        assert_eq!(answer[1], 7, "the identifier of the request");
        assert!(response_authentic(&answer, &request.authenticator, SECRET));
        assert!(!response_authentic(&answer, &[0; 16], SECRET));
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(Packet::decode(&[4, 1, 0]), Err(DecodeError::TooShort(3)));
        let mut bytes = sign_request(interim(), SECRET);
        let declared = bytes.len() + 10;
        bytes[2..4].copy_from_slice(&(declared as u16).to_be_bytes());
        assert!(matches!(Packet::decode(&bytes), Err(DecodeError::BadLength { .. })));
        let mut zero_length = sign_request(interim(), SECRET);
        zero_length[21] = 0;
        assert!(matches!(Packet::decode(&zero_length), Err(DecodeError::BadAttribute { why: "length below 2", .. })));
        let mut overrun = sign_request(interim(), SECRET);
        overrun[21] = 250;
        assert!(matches!(Packet::decode(&overrun), Err(DecodeError::BadAttribute { why: "runs past the end of the packet", .. })));
        // Padding past the Length field is ignored.
        let mut padded = sign_request(interim(), SECRET);
        padded.extend_from_slice(&[0; 7]);
        assert!(Packet::decode(&padded).is_ok());
        assert!(request_authentic(&padded, SECRET));
        let not_accounting = Packet { code: COA_REQUEST, ..interim() };
        assert!(Accounting::from_packet(&not_accounting).is_err());
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Packet::decode(&bytes);
            let _ = request_authentic(&bytes, SECRET);
            if let Ok(packet) = Packet::decode(&bytes) {
                let _ = packet.vendor_attributes(VENDOR_3GPP);
                let _ = Accounting::from_packet(&packet);
            }
        }

        #[test]
        fn encoding_round_trips(code in any::<u8>(), identifier in any::<u8>(), values in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
            let packet = Packet { code, identifier, authenticator: [9; 16], attributes: values };
            prop_assert_eq!(Packet::decode(&packet.encode()).unwrap(), packet);
        }
    }
}
