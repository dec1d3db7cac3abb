//! SDP parsing, serialisation and answering a hostile re-offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdp_negotiation::{LocalSession, OfferOptions, Sdp};

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = Sdp::parse(data) {
        let again = Sdp::parse(&sdp.to_bytes()).expect("our own serialisation parses");
        assert_eq!(again.media.len(), sdp.media.len());
        for m in &sdp.media {
            for pt in m.payload_types() {
                if let Some((w, h)) = m.imageattr_recv_max(pt) {
                    assert!(w >= 16 && h >= 16);
                }
            }
        }
    }
    let mut leg = LocalSession::new(OfferOptions::default(), 1);
    leg.create_offer();
    let _ = leg.process_answer(data);
    let mut leg = LocalSession::new(OfferOptions::default(), 1);
    if let Ok((answer, _)) = leg.answer_offer(data) {
        Sdp::parse(&answer.to_bytes()).expect("our answer parses");
    }
});
