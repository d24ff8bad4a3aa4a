//! Any datagram a NAS (or anyone) can send to the RADIUS port: decoding,
//! the authenticator check and reading the accounting fields never panic,
//! and what decodes encodes back to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollover_net::radius::{self, Accounting, Packet};

fuzz_target!(|bytes: &[u8]| {
    let _ = radius::request_authentic(bytes, b"fuzz-secret");
    let _ = radius::response_authentic(bytes, &[0; 16], b"fuzz-secret");
    if let Ok(packet) = Packet::decode(bytes) {
        let _ = packet.vendor_attributes(radius::VENDOR_3GPP);
        if let Ok(accounting) = Accounting::from_packet(&packet) {
            let _ = accounting.total_octets();
            if let Some(text) = accounting.sgsn_mcc_mnc.as_deref() {
                let _ = rollover_net::mcc::country_of_mcc_mnc(text);
            }
        }
        if packet.attributes.iter().all(|(_, value)| value.len() <= 253) {
            assert_eq!(Packet::decode(&packet.encode()).as_ref(), Ok(&packet));
        }
    }
});
