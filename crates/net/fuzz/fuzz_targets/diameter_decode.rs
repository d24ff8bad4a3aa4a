//! Any byte stream a Diameter peer can send: framing, decoding and walking
//! every grouped AVP never panic, and what decodes encodes back to the same
//! message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollover_net::diameter::{self, Avp, Message};

fn walk(avps: &[Avp], depth: usize) {
    for avp in avps {
        let _ = (avp.as_u32(), avp.as_u64(), avp.as_text());
        if depth < 10
            && let Ok(members) = avp.members()
        {
            walk(&members, depth + 1);
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() >= 4 {
        let _ = diameter::declared_length(&[bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    if let Ok(message) = Message::decode(bytes) {
        walk(&message.avps, 0);
        let _ = diameter::find(&message.avps, diameter::code::SESSION_ID);
        let encoded = message.encode();
        assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));
    }
});
