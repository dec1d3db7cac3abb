//! RTP and RTCP parsing, and the demultiplexer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srtp_transport::{classify, rtcp, RtpPacket};

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    if let Ok(p) = RtpPacket::parse(data) {
        let _ = (p.seq(), p.timestamp(), p.ssrc(), p.payload().len(), p.csrcs().count());
        let _ = p.extension_elements();
    }
    if let Ok(pkts) = rtcp::parse_compound(data) {
        let bytes = rtcp::write_compound(&pkts);
        let _ = rtcp::parse_compound(&bytes);
    }
});
