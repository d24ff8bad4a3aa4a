//! Diameter messages (RFC 6733, section 3 and 4): the 20-octet header and
//! AVPs, grouped AVPs included, with the codes rollover's Gy server needs
//! (RFC 4006 credit control, 3GPP TS 32.299).
//!
//! Decoding checks every length before using it, limits nesting, and never
//! panics; encoding pads every AVP to four octets.

pub const HEADER: usize = 20;
/// The largest message rollover reads; a peer sending more is cut off.
pub const MAX_MESSAGE: usize = 1 << 16;
/// Grouped AVPs nested deeper than this are refused.
const MAX_DEPTH: usize = 8;

/// CC-Request-Type (RFC 4006, section 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Initial,
    Update,
    Termination,
    Event,
}

impl RequestType {
    pub fn from_u32(value: u32) -> Option<RequestType> {
        Some(match value {
            1 => RequestType::Initial,
            2 => RequestType::Update,
            3 => RequestType::Termination,
            4 => RequestType::Event,
            _ => return None,
        })
    }

    pub fn to_u32(self) -> u32 {
        match self {
            RequestType::Initial => 1,
            RequestType::Update => 2,
            RequestType::Termination => 3,
            RequestType::Event => 4,
        }
    }
}

pub const FLAG_REQUEST: u8 = 0x80;
pub const FLAG_PROXIABLE: u8 = 0x40;
pub const FLAG_ERROR: u8 = 0x20;
pub const FLAG_RETRANSMITTED: u8 = 0x10;

pub const AVP_VENDOR: u8 = 0x80;
pub const AVP_MANDATORY: u8 = 0x40;

pub const VENDOR_3GPP: u32 = 10415;

/// Command codes.
pub mod command {
    pub const CAPABILITIES_EXCHANGE: u32 = 257;
    pub const CREDIT_CONTROL: u32 = 272;
    pub const DEVICE_WATCHDOG: u32 = 280;
    pub const DISCONNECT_PEER: u32 = 282;
}

/// Application identifiers.
pub const APP_COMMON: u32 = 0;
pub const APP_CREDIT_CONTROL: u32 = 4;
pub const APP_RELAY: u32 = 0xffff_ffff;

/// AVP codes (base protocol and RFC 4006, then 3GPP with vendor 10415).
pub mod code {
    pub const USER_NAME: u32 = 1;
    pub const HOST_IP_ADDRESS: u32 = 257;
    pub const AUTH_APPLICATION_ID: u32 = 258;
    pub const ACCT_APPLICATION_ID: u32 = 259;
    pub const VENDOR_SPECIFIC_APPLICATION_ID: u32 = 260;
    pub const SESSION_ID: u32 = 263;
    pub const ORIGIN_HOST: u32 = 264;
    pub const SUPPORTED_VENDOR_ID: u32 = 265;
    pub const VENDOR_ID: u32 = 266;
    pub const FIRMWARE_REVISION: u32 = 267;
    pub const RESULT_CODE: u32 = 268;
    pub const PRODUCT_NAME: u32 = 269;
    pub const DISCONNECT_CAUSE: u32 = 273;
    pub const ORIGIN_STATE_ID: u32 = 278;
    pub const FAILED_AVP: u32 = 279;
    pub const ERROR_MESSAGE: u32 = 281;
    pub const ROUTE_RECORD: u32 = 282;
    pub const DESTINATION_REALM: u32 = 283;
    pub const DESTINATION_HOST: u32 = 293;
    pub const ORIGIN_REALM: u32 = 296;
    pub const CC_INPUT_OCTETS: u32 = 412;
    pub const CC_OUTPUT_OCTETS: u32 = 414;
    pub const CC_REQUEST_NUMBER: u32 = 415;
    pub const CC_REQUEST_TYPE: u32 = 416;
    pub const CC_TOTAL_OCTETS: u32 = 421;
    pub const FINAL_UNIT_INDICATION: u32 = 430;
    pub const GRANTED_SERVICE_UNIT: u32 = 431;
    pub const RATING_GROUP: u32 = 432;
    pub const REQUESTED_SERVICE_UNIT: u32 = 437;
    pub const SUBSCRIPTION_ID: u32 = 443;
    pub const SUBSCRIPTION_ID_DATA: u32 = 444;
    pub const USED_SERVICE_UNIT: u32 = 446;
    pub const VALIDITY_TIME: u32 = 448;
    pub const FINAL_UNIT_ACTION: u32 = 449;
    pub const SUBSCRIPTION_ID_TYPE: u32 = 450;
    pub const MULTIPLE_SERVICES_INDICATOR: u32 = 455;
    pub const MULTIPLE_SERVICES_CREDIT_CONTROL: u32 = 456;
    pub const SERVICE_CONTEXT_ID: u32 = 461;
    /// 3GPP (vendor 10415).
    pub const SGSN_MCC_MNC_3GPP: u32 = 18;
    pub const VOLUME_QUOTA_THRESHOLD: u32 = 869;
    pub const SERVICE_INFORMATION: u32 = 873;
    pub const PS_INFORMATION: u32 = 874;
}

/// Result codes.
pub mod result {
    pub const SUCCESS: u32 = 2001;
    pub const COMMAND_UNSUPPORTED: u32 = 3001;
    pub const UNABLE_TO_DELIVER: u32 = 3002;
    pub const TOO_BUSY: u32 = 3004;
    pub const APPLICATION_UNSUPPORTED: u32 = 3007;
    pub const INVALID_HDR_BITS: u32 = 3008;
    pub const INVALID_AVP_BITS: u32 = 3009;
    pub const END_USER_SERVICE_DENIED: u32 = 4010;
    pub const CREDIT_LIMIT_REACHED: u32 = 4012;
    pub const AVP_UNSUPPORTED: u32 = 5001;
    pub const UNKNOWN_SESSION_ID: u32 = 5002;
    pub const INVALID_AVP_VALUE: u32 = 5004;
    pub const MISSING_AVP: u32 = 5005;
    pub const NO_COMMON_APPLICATION: u32 = 5010;
    pub const UNABLE_TO_COMPLY: u32 = 5012;
    pub const INVALID_AVP_LENGTH: u32 = 5014;
    pub const USER_UNKNOWN: u32 = 5030;
    pub const RATING_FAILED: u32 = 5031;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort(usize),
    /// Only version 1 exists.
    BadVersion(u8),
    BadLength { declared: usize, received: usize },
    BadAvp { offset: usize, why: &'static str },
    TooDeep,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort(n) => write!(f, "{n} octets: shorter than the 20-octet header"),
            DecodeError::BadVersion(v) => write!(f, "version {v}: only version 1 exists"),
            DecodeError::BadLength { declared, received } => write!(f, "Message Length {declared} but {received} octets"),
            DecodeError::BadAvp { offset, why } => write!(f, "AVP at offset {offset}: {why}"),
            DecodeError::TooDeep => write!(f, "grouped AVPs nested more than {MAX_DEPTH} deep"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avp {
    pub code: u32,
    pub flags: u8,
    pub vendor: Option<u32>,
    pub data: Vec<u8>,
}

impl Avp {
    fn make(code: u32, vendor: Option<u32>, data: Vec<u8>) -> Avp {
        let mut flags = AVP_MANDATORY;
        if vendor.is_some() {
            flags |= AVP_VENDOR;
        }
        Avp { code, flags, vendor, data }
    }

    pub fn u32(code: u32, value: u32) -> Avp {
        Avp::make(code, None, value.to_be_bytes().to_vec())
    }

    pub fn u64(code: u32, value: u64) -> Avp {
        Avp::make(code, None, value.to_be_bytes().to_vec())
    }

    pub fn text(code: u32, value: &str) -> Avp {
        Avp::make(code, None, value.as_bytes().to_vec())
    }

    pub fn grouped(code: u32, members: &[Avp]) -> Avp {
        Avp::make(code, None, encode_avps(members))
    }

    pub fn vendor_u32(code: u32, vendor: u32, value: u32) -> Avp {
        Avp::make(code, Some(vendor), value.to_be_bytes().to_vec())
    }

    pub fn vendor_grouped(code: u32, vendor: u32, members: &[Avp]) -> Avp {
        Avp::make(code, Some(vendor), encode_avps(members))
    }

    /// An Address AVP (RFC 6733, 4.3.1).
    pub fn address(code: u32, address: std::net::IpAddr) -> Avp {
        let mut data = Vec::with_capacity(18);
        match address {
            std::net::IpAddr::V4(v4) => {
                data.extend_from_slice(&1u16.to_be_bytes());
                data.extend_from_slice(&v4.octets());
            }
            std::net::IpAddr::V6(v6) => {
                data.extend_from_slice(&2u16.to_be_bytes());
                data.extend_from_slice(&v6.octets());
            }
        }
        Avp::make(code, None, data)
    }

    /// Clears the M bit (for AVPs peers need not understand).
    pub fn optional(mut self) -> Avp {
        self.flags &= !AVP_MANDATORY;
        self
    }

    pub fn as_u32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.data.as_slice().try_into().ok()?))
    }

    pub fn as_u64(&self) -> Option<u64> {
        Some(u64::from_be_bytes(self.data.as_slice().try_into().ok()?))
    }

    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }

    /// The members of a grouped AVP.
    pub fn members(&self) -> Result<Vec<Avp>, DecodeError> {
        decode_avps(&self.data, 1)
    }

    fn encoded_len(&self) -> usize {
        let header = if self.vendor.is_some() { 12 } else { 8 };
        (header + self.data.len()).div_ceil(4) * 4
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let header = if self.vendor.is_some() { 12 } else { 8 };
        let length = header + self.data.len();
        out.extend_from_slice(&self.code.to_be_bytes());
        let flags = if self.vendor.is_some() { self.flags | AVP_VENDOR } else { self.flags & !AVP_VENDOR };
        out.push(flags);
        out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
        if let Some(vendor) = self.vendor {
            out.extend_from_slice(&vendor.to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out.resize(out.len() + (4 - length % 4) % 4, 0);
    }
}

/// The first AVP with `code` (and no vendor), or with `code` of `vendor`.
pub fn find(avps: &[Avp], code: u32) -> Option<&Avp> {
    avps.iter().find(|a| a.code == code && a.vendor.is_none())
}

pub fn find_vendor(avps: &[Avp], code: u32, vendor: u32) -> Option<&Avp> {
    avps.iter().find(|a| a.code == code && a.vendor == Some(vendor))
}

pub fn encode_avps(avps: &[Avp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(avps.iter().map(Avp::encoded_len).sum());
    for avp in avps {
        avp.encode_into(&mut out);
    }
    out
}

fn decode_avps(bytes: &[u8], depth: usize) -> Result<Vec<Avp>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let mut avps = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        if bytes.len() - offset < 8 {
            return Err(DecodeError::BadAvp { offset, why: "truncated AVP header" });
        }
        let code = u32::from_be_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]);
        let flags = bytes[offset + 4];
        let length = u32::from_be_bytes([0, bytes[offset + 5], bytes[offset + 6], bytes[offset + 7]]) as usize;
        let header = if flags & AVP_VENDOR != 0 { 12 } else { 8 };
        if length < header {
            return Err(DecodeError::BadAvp { offset, why: "AVP Length shorter than its header" });
        }
        if length > bytes.len() - offset {
            return Err(DecodeError::BadAvp { offset, why: "AVP runs past the end of the message" });
        }
        let vendor = (header == 12).then(|| u32::from_be_bytes([bytes[offset + 8], bytes[offset + 9], bytes[offset + 10], bytes[offset + 11]]));
        avps.push(Avp { code, flags, vendor, data: bytes[offset + header..offset + length].to_vec() });
        // The last AVP's padding may be missing; any other's may not.
        offset = (offset + length).div_ceil(4) * 4;
    }
    Ok(avps)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub flags: u8,
    pub command: u32,
    pub application: u32,
    pub hop_by_hop: u32,
    pub end_to_end: u32,
    pub avps: Vec<Avp>,
}

/// The total length a message header declares, once its first four octets
/// are in: for framing a TCP stream.
pub fn declared_length(start: &[u8; 4]) -> Result<usize, DecodeError> {
    if start[0] != 1 {
        return Err(DecodeError::BadVersion(start[0]));
    }
    let length = u32::from_be_bytes([0, start[1], start[2], start[3]]) as usize;
    if !(HEADER..=MAX_MESSAGE).contains(&length) || !length.is_multiple_of(4) {
        return Err(DecodeError::BadLength { declared: length, received: 0 });
    }
    Ok(length)
}

/// Reads one whole message from a blocking stream: `None` at a clean end of
/// stream (for clients and tools; the server frames its async stream itself).
pub fn read_message(reader: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut start = [0u8; 4];
    match reader.read_exact(&mut start) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = declared_length(&start).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut bytes = vec![0u8; length];
    bytes[..4].copy_from_slice(&start);
    reader.read_exact(&mut bytes[4..])?;
    Ok(Some(bytes))
}

impl Message {
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() < HEADER {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        if bytes[0] != 1 {
            return Err(DecodeError::BadVersion(bytes[0]));
        }
        let declared = u32::from_be_bytes([0, bytes[1], bytes[2], bytes[3]]) as usize;
        if declared < HEADER || declared != bytes.len() {
            return Err(DecodeError::BadLength { declared, received: bytes.len() });
        }
        let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        Ok(Message {
            flags: bytes[4],
            command: word(4) & 0x00ff_ffff,
            application: word(8),
            hop_by_hop: word(12),
            end_to_end: word(16),
            avps: decode_avps(&bytes[HEADER..], 0)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let length = HEADER + self.avps.iter().map(Avp::encoded_len).sum::<usize>();
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(&(length as u32 | 1 << 24).to_be_bytes());
        out.extend_from_slice(&(self.command | (self.flags as u32) << 24).to_be_bytes());
        out.extend_from_slice(&self.application.to_be_bytes());
        out.extend_from_slice(&self.hop_by_hop.to_be_bytes());
        out.extend_from_slice(&self.end_to_end.to_be_bytes());
        for avp in &self.avps {
            avp.encode_into(&mut out);
        }
        out
    }

    /// An answer to this request: same command, application and
    /// identifiers, the P bit kept, the R bit cleared.
    pub fn answer(&self, avps: Vec<Avp>) -> Message {
        Message {
            flags: self.flags & FLAG_PROXIABLE,
            command: self.command,
            application: self.application,
            hop_by_hop: self.hop_by_hop,
            end_to_end: self.end_to_end,
            avps,
        }
    }

    pub fn find(&self, code: u32) -> Option<&Avp> {
        find(&self.avps, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ccr() -> Message {
        Message {
            flags: FLAG_REQUEST | FLAG_PROXIABLE,
            command: command::CREDIT_CONTROL,
            application: APP_CREDIT_CONTROL,
            hop_by_hop: 0x0102_0304,
            end_to_end: 0x0a0b_0c0d,
            avps: vec![
                Avp::text(code::SESSION_ID, "pgw.test;1;2"),
                Avp::u32(code::CC_REQUEST_TYPE, 2),
                Avp::grouped(
                    code::MULTIPLE_SERVICES_CREDIT_CONTROL,
                    &[Avp::u32(code::RATING_GROUP, 10), Avp::grouped(code::USED_SERVICE_UNIT, &[Avp::u64(code::CC_TOTAL_OCTETS, 5 << 30)])],
                ),
                Avp::vendor_grouped(code::SERVICE_INFORMATION, VENDOR_3GPP, &[Avp::vendor_grouped(code::PS_INFORMATION, VENDOR_3GPP, &[Avp {
                    code: code::SGSN_MCC_MNC_3GPP,
                    flags: AVP_VENDOR,
                    vendor: Some(VENDOR_3GPP),
                    data: b"23415".to_vec(),
                }])]),
            ],
        }
    }

    #[test]
    fn messages_round_trip_with_padding_and_groups() {
        let message = ccr();
        let bytes = message.encode();
        assert_eq!(bytes.len() % 4, 0, "every AVP is padded to four octets");
        assert_eq!(declared_length(&[bytes[0], bytes[1], bytes[2], bytes[3]]).unwrap(), bytes.len());
        let mut stream = std::io::Cursor::new([bytes.clone(), bytes.clone()].concat());
        assert_eq!(read_message(&mut stream).unwrap().as_deref(), Some(&bytes[..]), "framing a stream");
        assert_eq!(read_message(&mut stream).unwrap().as_deref(), Some(&bytes[..]));
        assert_eq!(read_message(&mut stream).unwrap(), None, "a clean end of stream");
        let decoded = Message::decode(&bytes).unwrap();
        assert_eq!(decoded, message);
        assert!(decoded.is_request());
        let mscc = decoded.find(code::MULTIPLE_SERVICES_CREDIT_CONTROL).unwrap().members().unwrap();
        assert_eq!(find(&mscc, code::RATING_GROUP).unwrap().as_u32(), Some(10));
        let used = find(&mscc, code::USED_SERVICE_UNIT).unwrap().members().unwrap();
        assert_eq!(find(&used, code::CC_TOTAL_OCTETS).unwrap().as_u64(), Some(5 << 30));
        let info = find_vendor(&decoded.avps, code::SERVICE_INFORMATION, VENDOR_3GPP).unwrap().members().unwrap();
        let ps = find_vendor(&info, code::PS_INFORMATION, VENDOR_3GPP).unwrap().members().unwrap();
        assert_eq!(find_vendor(&ps, code::SGSN_MCC_MNC_3GPP, VENDOR_3GPP).unwrap().as_text(), Some("23415"));
        let answer = decoded.answer(vec![Avp::u32(code::RESULT_CODE, result::SUCCESS)]);
        assert_eq!((answer.flags, answer.hop_by_hop, answer.end_to_end), (FLAG_PROXIABLE, 0x0102_0304, 0x0a0b_0c0d));
    }

    #[test]
    fn the_wire_layout_is_rfc_6733() {
        // Session-Id "ab": code 263, flags M, length 10, padded to 12.
        let bytes = Message { flags: FLAG_REQUEST, command: 280, application: 0, hop_by_hop: 1, end_to_end: 2, avps: vec![Avp::text(code::SESSION_ID, "ab")] }.encode();
        assert_eq!(&bytes[..4], &[1, 0, 0, 32]);
        assert_eq!(&bytes[4..8], &[0x80, 0, 1, 24]);
        assert_eq!(&bytes[20..32], &[0, 0, 1, 7, 0x40, 0, 0, 10, b'a', b'b', 0, 0]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(Message::decode(&[1, 0, 0]), Err(DecodeError::TooShort(3)));
        let mut bytes = ccr().encode();
        bytes[0] = 2;
        assert_eq!(Message::decode(&bytes), Err(DecodeError::BadVersion(2)));
        let mut bytes = ccr().encode();
        bytes.push(0);
        assert!(matches!(Message::decode(&bytes), Err(DecodeError::BadLength { .. })));
        let mut bytes = ccr().encode();
        bytes[20 + 7] = 4; // Session-Id length below its header
        assert!(matches!(Message::decode(&bytes), Err(DecodeError::BadAvp { why: "AVP Length shorter than its header", .. })));
        let mut bytes = ccr().encode();
        bytes[20 + 6] = 0xff; // Session-Id runs past the end
        assert!(matches!(Message::decode(&bytes), Err(DecodeError::BadAvp { why: "AVP runs past the end of the message", .. })));
        assert!(declared_length(&[1, 0, 0, 8]).is_err(), "shorter than a header");
        assert!(declared_length(&[1, 0x10, 0, 0]).is_err(), "longer than rollover reads");
        let mut deep = Avp::u32(code::RATING_GROUP, 1);
        for _ in 0..12 {
            deep = Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, &[deep]);
        }
        let mut group = deep;
        let mut result = Ok(Vec::new());
        for _ in 0..12 {
            result = group.members();
            match &result {
                Ok(members) if !members.is_empty() => group = members[0].clone(),
                _ => break,
            }
        }
        assert!(result.is_ok(), "each level decodes on its own");
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(message) = Message::decode(&bytes) {
                for avp in &message.avps {
                    let _ = avp.members();
                }
            }
            if bytes.len() >= 4 {
                let _ = declared_length(&[bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
        }

        #[test]
        fn encoding_round_trips(command in 0u32..0x00ff_ffff, flags in any::<u8>(), values in proptest::collection::vec((any::<u32>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..12)) {
            let avps: Vec<Avp> = values.into_iter().map(|(code, vendor, data)| Avp { code, flags: if vendor { AVP_VENDOR } else { 0 }, vendor: vendor.then_some(VENDOR_3GPP), data }).collect();
            let message = Message { flags, command, application: 4, hop_by_hop: 7, end_to_end: 9, avps };
            prop_assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        }
    }
}
