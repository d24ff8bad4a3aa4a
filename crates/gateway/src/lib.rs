//! The network side of rollover: what a packet gateway (PGW, GGSN, SMF, BNG)
//! talks to. A RADIUS accounting server rates cumulative session counters;
//! an enforcer sends CoA and Disconnect requests to the NAS when a
//! subscription's status changes; a Diameter Gy server grants quota through
//! the service's reservation sessions. None of them rates anything itself:
//! every byte goes through [`rollover_service::Service`], and every answer
//! that acknowledges usage is sent only after that usage is committed.

pub mod coa;
pub mod diameter;
pub mod esim;
mod metrics;
pub mod radius;

pub use metrics::Counters;

/// What can go wrong setting up a listener: its settings, or its socket.
#[derive(Debug)]
pub enum GatewayError {
    /// A client network that is not an address or `ADDRESS/BITS`.
    NotANetwork(String),
    /// A prefix length past the address family's width.
    PrefixLength { text: String, max: u8 },
    /// A way of identifying subscribers that rollover does not know.
    UnknownIdentify(String),
    /// The listener's socket could not be bound.
    Bind { listener: &'static str, address: std::net::SocketAddr, error: std::io::Error },
    /// The service could not say which sessions were open at the last stop.
    Service(rollover_service::ServiceError),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::NotANetwork(text) => write!(f, "{text:?} is not an IP address or ADDRESS/BITS"),
            GatewayError::PrefixLength { text, max } => write!(f, "{text:?}: the prefix length must be 0 to {max}"),
            GatewayError::UnknownIdentify(text) => write!(f, "{text:?}: use \"3gpp-imsi\", \"calling-station-id\" or \"user-name\""),
            GatewayError::Bind { listener, address, error } => write!(f, "{listener}: cannot listen on {address}: {error}"),
            GatewayError::Service(error) => write!(f, "radius: cannot read the open sessions: {error}"),
        }
    }
}

impl std::error::Error for GatewayError {}

/// An IPv4 or IPv6 network, `ADDRESS/BITS` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, GatewayError> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address.parse().map_err(|_| GatewayError::NotANetwork(text.to_string()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(bits) => bits.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| GatewayError::PrefixLength { text: text.to_string(), max })?,
            None => max,
        };
        Ok(Cidr { network, bits })
    }

    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - self.bits) };
                u32::from(net) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - self.bits) };
                u128::from(net) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    #[test]
    fn networks_match_their_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()), "v4-mapped v6 sources match v4 networks");
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(matches!(Cidr::parse("10.0.0.0/33"), Err(crate::GatewayError::PrefixLength { max: 32, .. })));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().to_string().contains("0 to 32"));
        assert!(Cidr::parse("ten").unwrap_err().to_string().contains("not an IP address"));
    }
}
