//! Laws: payload types never collide; parse/serialise round-trips.

use proptest::prelude::*;
use sdp_negotiation::{Codec, LocalSession, OfferOptions, Sdp};

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Opus), Just(Codec::G722), Just(Codec::Pcmu), Just(Codec::Pcma)]
}

proptest! {
    #[test]
    fn offered_payload_types_are_unique(codecs in proptest::collection::vec(codec(), 1..6), te in any::<bool>()) {
        // Duplicates on purpose: the offer must still not collide.
        let opts = OfferOptions { audio_codecs: codecs, telephone_event: te, video: Some((5000, vec![Codec::H264, Codec::Vp8])), ..OfferOptions::default() };
        let offer = LocalSession::new(opts, 1).create_offer();
        for m in &offer.media {
            let pts = m.payload_types();
            let mut u = pts.clone();
            u.sort_unstable();
            u.dedup();
            prop_assert_eq!(u.len(), pts.len());
            for pt in pts {
                prop_assert!(pt < 35 || (96..=127).contains(&pt));
            }
        }
        let again = Sdp::parse(&offer.to_bytes()).expect("own offer parses");
        prop_assert_eq!(again, offer);
    }

    #[test]
    fn parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Sdp::parse(&body);
    }

    #[test]
    fn attribute_round_trip(name in "[a-z][a-z0-9-]{0,12}", value in proptest::option::of("[ -~]{0,40}")) {
        let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let line = match &value { Some(v) => format!("a={name}:{v}"), None => format!("a={name}") };
        let body = format!("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n{line}\r\n");
        let sdp = Sdp::parse(body.as_bytes()).expect("parse");
        let back = Sdp::parse(&sdp.to_bytes()).expect("reparse");
        prop_assert_eq!(&back.media[0].attributes, &sdp.media[0].attributes);
        prop_assert_eq!(sdp.media[0].attributes[0].value.clone(), value);
    }
}
