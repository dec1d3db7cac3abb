//! Re-offers a far end could send, built at random from the parts real and broken SDP is made of
//! (m-lines of every kind and port, transports, formats with odd or missing rtpmaps, directions,
//! hold addresses and host names, keys and fingerprints), one after another into one session, with
//! our own re-offers and random answers to them in between. Whatever comes: no panic; an agreement
//! names only lines that exist and were not rejected; an accepted re-offer gets an answer
//! that parses, with the offer's m-lines in order and transports, a line the offer rejects still
//! rejected, and payload numbers that never collide within a line; our own re-offer always parses,
//! without a payload number twice either.

use proptest::prelude::*;
use sdp_negotiation::{Codec, LocalSession, MediaSecurity, OfferOptions, SdesKey, Sdp};

#[derive(Debug, Clone)]
struct Line {
    kind: &'static str,
    port: u16,
    proto: &'static str,
    formats: Vec<(u8, Option<&'static str>)>,
    attrs: Vec<&'static str>,
    conn: Option<&'static str>,
}

const KINDS: &[&str] = &["audio", "video", "application", "text"];
const PROTOS: &[&str] =
    &["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF", "UDP/BFCP"];
const MAPS: &[&str] = &[
    "PCMU/8000",
    "PCMA/8000",
    "G722/8000",
    "G722/16000",
    "opus/48000/2",
    "opus/48000/1",
    "telephone-event/8000",
    "telephone-event/48000",
    "H264/90000",
    "VP8/90000",
    "CN/8000",
    "red/48000/2",
    "rtx/90000",
    "G729/8000",
    "/",
    "opus/abc",
];
const ATTRS: &[&str] = &[
    "sendonly",
    "recvonly",
    "inactive",
    "sendrecv",
    "rtcp-mux",
    "rtcp:9",
    "rtcp:65535 IN IP4 192.0.2.7",
    "rtcp:x",
    "ptime:30",
    "ptime:0",
    "fmtp:96 profile-level-id=42801f;packetization-mode=1",
    "fmtp:97 packetization-mode=0",
    "fmtp:111 maxaveragebitrate=1;useinbandfec=1",
    "fmtp:96 profile-level-id=zz",
    "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk",
    "crypto:2 AES_CM_128_HMAC_SHA1_32 inline:AAAA|2^31|1:1",
    "crypto:x garbage",
    "fingerprint:sha-256 AB:CD",
    "fingerprint:sha-1 11:22",
    "fingerprint:md5 00",
    "setup:actpass",
    "setup:active",
    "setup:passive",
    "setup:holdconn",
    "imageattr:96 recv [x=640,y=360]",
    "imageattr:* recv [x=[1:2:0],y=1]",
    "rtcp-fb:* nack",
    "rtcp-fb:96 ccm fir",
];
const CONNS: &[&str] =
    &["IN IP4 192.0.2.9", "IN IP4 0.0.0.0", "IN IP6 ::", "IN IP6 2001:db8::9", "IN IP4 media.example.com", "IN IP4"];

fn line() -> impl Strategy<Value = Line> {
    (
        prop::sample::select(KINDS),
        prop_oneof![Just(0u16), Just(6000u16), Just(65535u16), 1u16..65535],
        prop::sample::select(PROTOS),
        prop::collection::vec(
            (
                prop_oneof![Just(0u8), Just(8), Just(9), Just(18), 96u8..128],
                prop::option::of(prop::sample::select(MAPS)),
            ),
            0..5,
        ),
        prop::collection::vec(prop::sample::select(ATTRS), 0..5),
        prop::option::of(prop::sample::select(CONNS)),
    )
        .prop_map(|(kind, port, proto, formats, attrs, conn)| Line { kind, port, proto, formats, attrs, conn })
}

fn offer(version: u32, session_conn: &str, lines: &[Line]) -> Vec<u8> {
    let mut s = format!("v=0\r\no=far 7 {version} IN IP4 192.0.2.9\r\ns=-\r\nc={session_conn}\r\nt=0 0\r\n");
    for l in lines {
        let formats: Vec<String> = l.formats.iter().map(|(pt, _)| pt.to_string()).collect();
        let formats = if formats.is_empty() { "0".to_owned() } else { formats.join(" ") };
        s.push_str(&format!("m={} {} {} {formats}\r\n", l.kind, l.port, l.proto));
        if let Some(c) = l.conn {
            s.push_str(&format!("c={c}\r\n"));
        }
        for (pt, map) in &l.formats {
            if let Some(m) = map {
                s.push_str(&format!("a=rtpmap:{pt} {m}\r\n"));
            }
        }
        for a in &l.attrs {
            s.push_str(&format!("a={a}\r\n"));
        }
    }
    s.into_bytes()
}

fn options(security: u8, video: bool) -> OfferOptions {
    let security = match security {
        0 => MediaSecurity::None,
        1 => MediaSecurity::Sdes(vec![SdesKey {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key_params: "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR".into(),
        }]),
        _ => MediaSecurity::Dtls { fingerprint: "sha-256 AA:BB".into() },
    };
    OfferOptions {
        security,
        video: video.then(|| (40002, vec![Codec::H264, Codec::H264SingleNal, Codec::Vp8])),
        ..OfferOptions::default()
    }
}

fn check_ours(sdp: &Sdp, what: &str) -> Result<(), TestCaseError> {
    let again = Sdp::parse(&sdp.to_bytes()).map_err(|e| TestCaseError::fail(format!("{what} does not parse: {e}")))?;
    prop_assert_eq!(again.media.len(), sdp.media.len());
    for m in sdp.media.iter().filter(|m| m.port != 0) {
        let pts = m.payload_types();
        let mut u = pts.clone();
        u.sort_unstable();
        u.dedup();
        prop_assert_eq!(u.len(), pts.len(), "{} names a payload number twice: {:?}", what, pts);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_re_offers_get_sound_answers(
        security in 0u8..3,
        video in any::<bool>(),
        rounds in prop::collection::vec((prop::collection::vec(line(), 1..4), prop::sample::select(CONNS), any::<bool>()), 1..6),
    ) {
        let mut s = LocalSession::new(options(security, video), 1);
        check_ours(&s.create_offer(), "our offer")?;
        // The far end answers our first offer plainly, as it can (or not at all: then its
        // re-offers come to a session with no agreement yet).
        let _ = s.process_answer(b"v=0\r\no=far 7 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n");
        for (n, (lines, conn, ours_next)) in rounds.iter().enumerate() {
            let body = offer(n as u32 + 2, conn, lines);
            if let Ok((answer, _)) = s.answer_offer(&body) {
                check_ours(&answer, "our answer")?;
                let offered = Sdp::parse(&body).expect("an offer we answered parses");
                prop_assert_eq!(answer.media.len(), offered.media.len(), "one answer line per offer line");
                for (a, o) in answer.media.iter().zip(&offered.media) {
                    prop_assert_eq!(&a.kind, &o.kind, "in the offer's order");
                    if o.port == 0 {
                        prop_assert_eq!(a.port, 0, "a line the offer rejects stays rejected");
                    }
                    if a.port != 0 {
                        prop_assert_eq!(&a.proto, &o.proto, "the offer's transport");
                    }
                }
            }
            if *ours_next {
                let ours = s.create_offer();
                check_ours(&ours, "our re-offer")?;
                // The far end answers it with this round's lines, put in our lines' kinds (a
                // wrong count or kind is refused outright): whatever it says, no panic, and an
                // agreement names only m-lines that exist and that the answer did not reject.
                let mut answer_lines: Vec<Line> = lines.iter().cycle().take(ours.media.len()).cloned().collect();
                for (l, m) in answer_lines.iter_mut().zip(&ours.media) {
                    l.kind = KINDS.iter().copied().find(|k| *k == m.kind).unwrap_or("audio");
                }
                let body = offer(n as u32 + 100, conn, &answer_lines);
                if let Ok(a) = s.process_answer(&body) {
                    let answered = Sdp::parse(&body).expect("an answer we took parses");
                    for m in [a.audio.as_ref(), a.video.as_ref()].into_iter().flatten() {
                        let line = answered.media.get(m.index);
                        prop_assert!(line.is_some_and(|l| l.port != 0), "agreed on line {} of {}", m.index, answered.media.len());
                    }
                }
            }
        }
    }
}
