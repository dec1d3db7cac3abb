//! Laws: payload types never collide, nor change meaning within a session; parse/serialise
//! round-trips.

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

    /// RFC 3264 §8.3.2: whatever numbers a peer's re-offers give our codecs and telephone-event
    /// (dynamic numbers shuffled, static codecs under dynamic numbers), no payload number of ours
    /// ever changes its meaning between our descriptions, and none collides within one.
    #[test]
    fn payload_numbers_keep_their_meaning(
        rounds in proptest::collection::vec((proptest::collection::vec((codec(), 96u8..=127), 1..4), 96u8..=127, any::<bool>()), 1..6),
    ) {
        let mut s = LocalSession::new(OfferOptions::default(), 1);
        let mut meaning: std::collections::HashMap<u8, String> = std::collections::HashMap::new();
        let mut check = |sdp: &Sdp| -> Result<(), TestCaseError> {
            let m = &sdp.media[0];
            let pts = m.payload_types();
            let mut u = pts.clone();
            u.sort_unstable();
            u.dedup();
            prop_assert_eq!(u.len(), pts.len(), "a number twice: {:?}", pts);
            for pt in pts {
                let what = m.rtpmap(pt).map(|(e, c, _)| format!("{}/{c}", e.to_ascii_lowercase())).unwrap_or_default();
                let before = meaning.entry(pt).or_insert_with(|| what.clone());
                prop_assert_eq!(&*before, &what, "payload {} changed meaning", pt);
            }
            Ok(())
        };
        check(&s.create_offer())?;
        let answer = "v=0\r\no=p 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        s.process_answer(answer.as_bytes()).expect("answer");
        for (version, (codecs, te_pt, ours_next)) in rounds.into_iter().enumerate() {
            // The peer's re-offer, its own numbering (a number used twice is its problem: skipped).
            let mut used = Vec::new();
            let mut formats = Vec::new();
            let mut maps = String::new();
            for (c, pt) in codecs {
                if used.contains(&pt) {
                    continue;
                }
                used.push(pt);
                formats.push(pt.to_string());
                let clock = if c == Codec::Opus { "48000/2".to_owned() } else { c.clock_rate().to_string() };
                maps.push_str(&format!("a=rtpmap:{pt} {}/{clock}\r\n", c.encoding()));
            }
            if !used.contains(&te_pt) {
                formats.push(te_pt.to_string());
                maps.push_str(&format!("a=rtpmap:{te_pt} telephone-event/8000\r\n"));
            }
            let offer = format!(
                "v=0\r\no=p 1 {} IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP {}\r\n{maps}",
                version + 2,
                formats.join(" ")
            );
            if let Ok((ours, _)) = s.answer_offer(offer.as_bytes()) {
                check(&ours)?;
            }
            if ours_next {
                check(&s.create_offer())?;
                s.process_answer(answer.as_bytes()).ok();
            }
        }
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
