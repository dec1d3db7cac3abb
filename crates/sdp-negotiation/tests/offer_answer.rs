//! RFC 3264 offer/answer behaviour of the SIP leg.

use sdp_negotiation::{
    Bandwidth, Codec, Direction, LocalSession, MediaSecurity, NegotiationError, OfferOptions, SdesKey, Sdp, Setup,
};
use std::net::SocketAddr;

fn session() -> LocalSession {
    LocalSession::new(OfferOptions::default(), 4242)
}

fn answer(body: &str) -> Vec<u8> {
    body.replace('\n', "\r\n").into_bytes()
}

const PCMU_ANSWER: &str = "v=0
o=sipp 1 1 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
";

#[test]
fn offer_has_unique_payload_types_and_events_per_clock() {
    let mut s = session();
    let offer = s.create_offer();
    let m = &offer.media[0];
    assert_eq!(m.proto, "RTP/AVP");
    let pts = m.payload_types();
    let mut dedup = pts.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), pts.len(), "no payload type collides: {pts:?}");
    assert_eq!(m.rtpmap(111), Some(("opus".into(), 48000, Some(2))));
    assert!(m.fmtp(111).is_some_and(|f| f.contains("useinbandfec=1")));
    assert_eq!(m.rtpmap(101), Some(("telephone-event".into(), 8000, None)));
    assert_eq!(m.rtpmap(110), Some(("telephone-event".into(), 48000, None)));
    assert!(m.has_attr("rtcp-mux"));
    assert_eq!(offer.direction(0), Direction::SendRecv);
    assert_eq!(offer.origin.session_version, 1);
    // The same offer again keeps the version.
    let again = s.create_offer();
    assert_eq!(again.origin.session_version, 1);
    assert_eq!(again, offer);
}

#[test]
fn reads_an_answer_and_sends_with_the_answerers_payload_types() {
    let mut s = session();
    s.create_offer();
    let a = s.process_answer(&answer(PCMU_ANSWER)).expect("agreement");
    let audio = a.audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0));
    assert_eq!(audio.telephone_event, Some((101, 8000)));
    assert_eq!(audio.remote_rtp, Some("192.0.2.9:6000".parse::<SocketAddr>().expect("a")));
    assert_eq!(
        audio.remote_rtcp,
        Some("192.0.2.9:6001".parse::<SocketAddr>().expect("a")),
        "no rtcp-mux in the answer"
    );
    assert!(!audio.remote_hold);

    let mut s = session();
    s.create_offer();
    let opus = "v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nt=0 0\nm=audio 6000 RTP/AVP 96 97\nc=IN IP4 192.0.2.9\na=rtpmap:96 opus/48000/2\na=rtpmap:97 telephone-event/48000\na=rtcp-mux\n";
    let audio = s.process_answer(&answer(opus)).expect("opus").audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Opus, 96));
    assert_eq!(audio.telephone_event, Some((97, 48000)));
    assert!(audio.rtcp_mux);
    assert_eq!(audio.remote_rtcp, None);
    // RFC 3264 §6.1: the answerer sends with the offer's numbers even though its answer renumbered
    // them, so the peer's packets may carry ours (111, 110) as well as its own (96, 97).
    assert_eq!(audio.local_payload_types, vec![(Codec::Opus, 111)]);
    assert_eq!(audio.local_telephone_event, Some(110));
    for pt in [96, 111] {
        assert_eq!(audio.received_codec(pt), Some(Codec::Opus), "{pt}");
    }
    assert!(audio.is_telephone_event(97) && audio.is_telephone_event(110));
    assert_eq!(audio.received_codec(110), None);
    assert_eq!(audio.received_codec(0), None, "PCMU is not in the answer");
    // An answer with our numbers adds nothing.
    let mut s = session();
    s.create_offer();
    let audio = s.process_answer(&answer(PCMU_ANSWER)).expect("agreement").audio.expect("audio");
    assert!(audio.local_payload_types.is_empty() && audio.local_telephone_event.is_none());
}

#[test]
fn answers_that_break_rfc3264_are_488() {
    let cases = [
        ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 18\na=rtpmap:18 G729/8000\n", "not offered"),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 0 RTP/AVP 0\n", "rejected"),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n", "missing m-line"),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\n", "SRTP not offered"),
        ("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 101\na=rtpmap:101 telephone-event/8000\n", "no codec"),
    ];
    for (body, why) in cases {
        let mut s = session();
        s.create_offer();
        let e = s.process_answer(&answer(body)).expect_err(why);
        assert_eq!(e.sip_status(), 488, "{why}: {e}");
    }
    let mut s = session();
    s.create_offer();
    assert_eq!(s.process_answer(b"garbage").expect_err("parse").sip_status(), 400);
}

fn established() -> LocalSession {
    let mut s = session();
    s.create_offer();
    s.process_answer(&answer(PCMU_ANSWER)).expect("agreement");
    s
}

fn reoffer(dir: &str, conn: &str, te_pt: u8, version: u32) -> Vec<u8> {
    answer(&format!(
        "v=0\no=sipp 1 {version} IN IP4 192.0.2.9\ns=-\nc=IN IP4 {conn}\nt=0 0\nm=audio 6000 RTP/AVP 0 {te_pt}\na=rtpmap:0 PCMU/8000\na=rtpmap:{te_pt} telephone-event/8000\n{dir}"
    ))
}

#[test]
fn hold_and_resume() {
    let mut s = established();
    let v0 = s.version();
    // sendonly → recvonly (answering sendrecv makes carriers hang up).
    let (sdp, a) = s.answer_offer(&reoffer("a=sendonly\n", "192.0.2.9", 101, 2)).expect("hold");
    assert_eq!(sdp.direction(0), Direction::RecvOnly);
    assert!(a.audio.as_ref().expect("a").remote_hold);
    assert_eq!(sdp.media.len(), 1);
    assert_eq!(sdp.origin.session_version, v0 + 1, "our description changed");
    // inactive → inactive.
    let (sdp, _) = s.answer_offer(&reoffer("a=inactive\n", "192.0.2.9", 101, 3)).expect("inactive");
    assert_eq!(sdp.direction(0), Direction::Inactive);
    // RFC 2543 hold: c=0.0.0.0.
    let (sdp, a) = s.answer_offer(&reoffer("", "0.0.0.0", 101, 4)).expect("old hold");
    assert_eq!(sdp.direction(0), Direction::RecvOnly);
    let audio = a.audio.expect("audio");
    assert!(audio.remote_hold);
    assert_eq!(audio.remote_rtp, None, "never send to 0.0.0.0");
    // Resume.
    let (sdp, a) = s.answer_offer(&reoffer("a=sendrecv\n", "192.0.2.9", 101, 5)).expect("resume");
    assert_eq!(sdp.direction(0), Direction::SendRecv);
    assert!(!a.audio.expect("a").remote_hold);
    let v = sdp.origin.session_version;
    // The same offer again: our answer is unchanged, so is the version.
    let (sdp, _) = s.answer_offer(&reoffer("a=sendrecv\n", "192.0.2.9", 101, 5)).expect("same");
    assert_eq!(sdp.origin.session_version, v);
}

/// The answer keeps the offer's transport (RFC 3264 §6): a re-offer in RTP/AVPF is answered in
/// RTP/AVPF, not RTP/AVP. A peer whose RTP is on port 65535 gets no RTCP (there is no port after
/// it) rather than RTCP to port 0.
#[test]
fn the_answer_keeps_the_offers_transport_and_rtcp_never_goes_to_port_zero() {
    let mut s = established();
    let body = String::from_utf8(reoffer("", "192.0.2.9", 101, 2)).expect("utf8").replace("RTP/AVP", "RTP/AVPF");
    let (sdp, _) = s.answer_offer(body.as_bytes()).expect("AVPF");
    assert_eq!(sdp.media[0].proto, "RTP/AVPF");
    let body =
        String::from_utf8(reoffer("", "192.0.2.9", 101, 3)).expect("utf8").replace("m=audio 6000", "m=audio 65535");
    let (_, a) = s.answer_offer(body.as_bytes()).expect("last port");
    let audio = a.audio.expect("audio");
    assert_eq!(audio.remote_rtp.map(|r| r.port()), Some(65535));
    assert_eq!((audio.remote_rtcp, audio.remote_rtcp_port), (None, None));
    // A host name in c=: no address (the caller resolves it), but the ports are known.
    let body = String::from_utf8(reoffer("", "media.example.com", 101, 4)).expect("utf8");
    let (_, a) = s.answer_offer(body.as_bytes()).expect("host name");
    let audio = a.audio.expect("audio");
    assert_eq!((audio.remote_rtp, audio.remote_host.as_str()), (None, "media.example.com"));
    assert_eq!((audio.remote_port, audio.remote_rtcp_port), (6000, Some(6001)));
}

#[test]
fn payload_type_change_and_new_address_in_reoffer() {
    let mut s = established();
    let body = answer("v=0\no=sipp 1 2 IN IP4 192.0.2.9\ns=-\nc=IN IP4 198.51.100.4\nt=0 0\nm=audio 7000 RTP/AVP 0 96\na=rtpmap:0 PCMU/8000\na=rtpmap:96 telephone-event/8000\n");
    let (sdp, a) = s.answer_offer(&body).expect("reoffer");
    let audio = a.audio.expect("audio");
    assert_eq!(audio.telephone_event, Some((96, 8000)), "DTMF follows the new payload type");
    assert_eq!(audio.remote_rtp, Some("198.51.100.4:7000".parse().expect("a")));
    assert_eq!(audio.codec, Codec::Pcmu, "the current codec is kept");
    assert!(sdp.media[0].payload_types().contains(&96));
}

#[test]
fn reoffer_with_extra_stream_gets_it_rejected_and_port_zero_disables() {
    let mut s = established();
    let body = answer("v=0\no=sipp 1 2 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\nm=image 6002 udptl t38\n");
    let (sdp, _) = s.answer_offer(&body).expect("reoffer");
    assert_eq!(sdp.media.len(), 2, "m-lines keep their number and order");
    assert_eq!(sdp.media[1].port, 0);
    let body = answer(
        "v=0\no=sipp 1 3 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 0 RTP/AVP 0\nm=image 0 udptl t38\n",
    );
    let (sdp, a) = s.answer_offer(&body).expect("disable");
    assert_eq!(sdp.media[0].port, 0);
    assert!(a.audio.is_none());
}

fn sdes() -> OfferOptions {
    OfferOptions {
        security: MediaSecurity::Sdes(vec![
            SdesKey {
                suite: "AES_CM_128_HMAC_SHA1_80".into(),
                key_params: "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR".into(),
            },
            SdesKey {
                suite: "AES_CM_128_HMAC_SHA1_32".into(),
                key_params: "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj".into(),
            },
        ]),
        ..OfferOptions::default()
    }
}

#[test]
fn sdes_offer_answer_and_rekey() {
    let mut s = LocalSession::new(sdes(), 1);
    let offer = s.create_offer();
    assert_eq!(offer.media[0].proto, "RTP/SAVP");
    assert_eq!(offer.media[0].attrs("crypto").count(), 2);
    let body = answer("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/SAVP 0\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\n");
    let a = s.process_answer(&body).expect("sdes").audio.expect("audio");
    let k = a.sdes.expect("keys");
    assert_eq!((k.tag, k.suite.as_str()), (2, "AES_CM_128_HMAC_SHA1_32"));
    assert_eq!(k.remote_key_params, "inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj");
    assert!(k.local_key_params.starts_with("inline:NzB4"));
    // A re-offer with a new key.
    let body = answer("v=0\no=- 1 2 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/SAVP 0\na=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\n");
    let (sdp, a) = s.answer_offer(&body).expect("rekey");
    assert_eq!(
        a.audio.expect("a").sdes.expect("k").remote_key_params,
        "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
    );
    assert_eq!(
        sdp.media[0].attrs("crypto").collect::<Vec<_>>(),
        vec!["5 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"]
    );
    // Of several keys, the first the check finds usable (RFC 4568 §7.1.2); without a usable
    // one, the re-offer is refused.
    let check = sdp_negotiation::SdesKeyCheck(|_, params| params.len() > "inline:".len() + 8);
    let mut s = LocalSession::new(OfferOptions { sdes_key_check: Some(check), ..sdes() }, 1);
    s.create_offer();
    s.process_answer(&answer("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\n")).expect("sdes");
    let two = "v=0\no=- 1 2 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:WFlaYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo0\n";
    let (_, a) = s.answer_offer(&answer(two)).expect("the second key");
    assert_eq!(a.audio.and_then(|a| a.sdes).map(|k| k.tag), Some(2));
    let none = "v=0\no=- 1 3 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\n";
    assert!(matches!(s.answer_offer(&answer(none)), Err(NegotiationError::Security(_))));
    // Secure media required: a plain answer is refused.
    let mut s = LocalSession::new(sdes(), 1);
    s.create_offer();
    let e = s.process_answer(&answer(PCMU_ANSWER)).expect_err("plain");
    assert!(matches!(e, NegotiationError::Security(_)));
}

#[test]
fn dtls_roles() {
    let opts = OfferOptions {
        security: MediaSecurity::Dtls { fingerprint: "sha-256 AA:BB".into() },
        ..OfferOptions::default()
    };
    let mut s = LocalSession::new(opts, 1);
    let offer = s.create_offer();
    assert_eq!(offer.media[0].proto, "UDP/TLS/RTP/SAVP");
    assert_eq!(offer.media[0].attr("setup"), Some("actpass"));
    let body = answer("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\na=fingerprint:sha-256 CC:DD\nm=audio 6000 UDP/TLS/RTP/SAVP 0\na=setup:active\n");
    let a = s.process_answer(&body).expect("dtls").audio.expect("a");
    let d = a.dtls.expect("dtls");
    assert_eq!(d.local_setup, Setup::Passive);
    assert_eq!(d.remote_fingerprint, "sha-256 CC:DD");
    // The role stays in a re-offer's answer.
    let reoffer = answer("v=0\no=- 1 2 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 UDP/TLS/RTP/SAVP 0\na=fingerprint:sha-256 CC:DD\na=setup:actpass\na=sendonly\n");
    let (sdp, _) = s.answer_offer(&reoffer).expect("reoffer");
    assert_eq!(sdp.media[0].attr("setup"), Some("passive"));
    // Several fingerprints (RFC 8122 §5): the strongest hash we check, wherever it is listed; a
    // media-level list wins over the session's; none we check is a 488, not a failed handshake.
    let reoffer = answer("v=0\no=- 1 3 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\na=fingerprint:sha-512 99:99\nm=audio 6000 UDP/TLS/RTP/SAVP 0\na=fingerprint:sha-1 11:11\na=fingerprint:md5 00:00\na=fingerprint:SHA-384 38:38\na=setup:actpass\n");
    let (_, a) = s.answer_offer(&reoffer).expect("reoffer");
    assert_eq!(a.audio.and_then(|a| a.dtls).map(|d| d.remote_fingerprint).as_deref(), Some("SHA-384 38:38"));
    let reoffer = answer("v=0\no=- 1 4 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 UDP/TLS/RTP/SAVP 0\na=fingerprint:sha-1 11:11\na=setup:actpass\n");
    let (_, a) = s.answer_offer(&reoffer).expect("sha-1 alone");
    assert_eq!(a.audio.and_then(|a| a.dtls).map(|d| d.remote_fingerprint).as_deref(), Some("sha-1 11:11"));
    let reoffer = answer("v=0\no=- 1 5 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 UDP/TLS/RTP/SAVP 0\na=fingerprint:md5 00:00\na=setup:actpass\n");
    assert!(matches!(s.answer_offer(&reoffer), Err(NegotiationError::Security(_))));
}

#[test]
fn video_rejected_is_an_audio_only_call() {
    let opts = OfferOptions { video: Some((40002, vec![Codec::H264, Codec::Vp8])), ..OfferOptions::default() };
    let mut s = LocalSession::new(opts, 1);
    let offer = s.create_offer();
    assert_eq!(offer.media.len(), 2);
    assert!(offer.media[1].fmtp(102).is_some_and(|f| f.contains("packetization-mode=1")));
    let body = answer(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 8\nm=video 0 RTP/AVP 102\n",
    );
    let a = s.process_answer(&body).expect("audio only");
    assert_eq!(a.audio.expect("a").codec, Codec::Pcma);
    assert!(a.video.is_none());
    let body = answer("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 8\nm=video 6002 RTP/AVP 120\na=rtpmap:120 VP8/90000\n");
    let mut s2 = LocalSession::new(
        OfferOptions { video: Some((40002, vec![Codec::H264, Codec::Vp8])), ..OfferOptions::default() },
        1,
    );
    s2.create_offer();
    let a = s2.process_answer(&body).expect("with video");
    assert_eq!(a.video.expect("v").payload_type, 120);
}

/// Video we no longer carry (declined, its port closed) is answered rejected when a re-offer
/// brings it back, and stays rejected in our own re-offers: never a port nothing listens on.
#[test]
fn video_we_stopped_carrying_is_rejected_in_later_exchanges() {
    let opts = OfferOptions { video: Some((40002, vec![Codec::H264, Codec::Vp8])), ..OfferOptions::default() };
    let mut s = LocalSession::new(opts, 1);
    s.create_offer();
    let declined = answer(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 8\nm=video 0 RTP/AVP 102\n",
    );
    assert!(s.process_answer(&declined).expect("audio only").video.is_none());
    s.stop_carrying("video");
    let reoffer = answer("v=0\no=- 1 2 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 8\nm=video 6002 RTP/AVP 120\na=rtpmap:120 VP8/90000\n");
    let (ours, agreed) = s.answer_offer(&reoffer).expect("an answer");
    assert!(agreed.video.is_none(), "no video agreed");
    assert_eq!((ours.media[1].kind.as_str(), ours.media[1].port), ("video", 0), "rejected, not on port 40002");
    assert!(agreed.audio.is_some());
    let offer = s.create_offer();
    let video: Vec<u16> = offer.media.iter().filter(|m| m.kind == "video").map(|m| m.port).collect();
    assert_eq!(video, [0], "our re-offer keeps the m-line, rejected");
}

/// The bandwidth the peer receives (RFC 3264 §5: `b=` in its answer or re-offer): `b=TIAS` in
/// bit/s first, else `b=AS` in kbit/s, headers included; the lower of media and session level;
/// zero, unknown types and garbage say nothing. As a media bitrate, `b=AS` loses its packets'
/// headers (50 packets of 20 ms audio with 40 bytes each: 16 kbit/s). Our video offer says we act
/// on TMMBR.
#[test]
fn the_peers_bandwidth_is_read_from_b_lines() {
    let opts = || OfferOptions { video: Some((40002, vec![Codec::Vp8])), ..OfferOptions::default() };
    let tias = |bits| Some(Bandwidth { bits, with_headers: false });
    let as_ = |bits| Some(Bandwidth { bits, with_headers: true });
    let cases: [(&str, &str, Option<Bandwidth>); 8] = [
        ("", "", None),
        ("", "b=AS:512\n", as_(512_000)),
        ("", "b=AS:512\nb=TIAS:400000\n", tias(400_000)),
        ("b=AS:300\n", "b=TIAS:400000\n", as_(300_000)),
        ("b=CT:128\n", "b=TIAS:400000\n", tias(400_000)),
        ("", "b=AS:0\n", None),
        ("", "b=AS:lots\nb=RS:800\nb=X-YZ:5\n", None),
        ("", "b=tias: 64000\n", tias(64_000)),
    ];
    for (session_lines, media_lines, want) in cases {
        let mut s = LocalSession::new(opts(), 1);
        let offer = s.create_offer();
        let video = &offer.media[1];
        assert!(video.attrs("rtcp-fb").any(|v| v.ends_with(" ccm tmmbr")), "{video:?}");
        let body = answer(&format!(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\n{session_lines}t=0 0\nm=audio 6000 RTP/AVP 8\nm=video 6002 RTP/AVP 120\n{media_lines}a=rtpmap:120 VP8/90000\n"
        ));
        let a = s.process_answer(&body).expect("with video");
        assert_eq!(a.video.expect("video").remote_bandwidth, want, "{session_lines:?} {media_lines:?}");
    }
    let as32 = Bandwidth { bits: 32_000, with_headers: true };
    assert_eq!(as32.media_bitrate(50, 40), 16_000, "b=AS:32 leaves Opus 16 kbit/s in 20 ms packets");
    assert_eq!(Bandwidth { bits: 32_000, with_headers: false }.media_bitrate(50, 40), 32_000);
    assert_eq!(Bandwidth { bits: 512_000, with_headers: true }.video_bitrate(), 512_000 - (53 + 30) * 320);
    assert_eq!(Bandwidth { bits: 1_000, with_headers: true }.media_bitrate(50, 40), 0, "never below zero");
}

/// What we receive on video, when set, is in our offer (and in our answers) as `b=AS` and
/// `b=TIAS`, on the video m-line only.
#[test]
fn our_video_receive_limit_is_offered() {
    let opts = OfferOptions {
        video: Some((40002, vec![Codec::Vp8])),
        video_receive_bitrate: Some(1_000_000),
        ..OfferOptions::default()
    };
    let mut s = LocalSession::new(opts, 1);
    let offer = s.create_offer();
    assert!(offer.media[0].lines.is_empty(), "nothing on audio");
    assert_eq!(offer.media[1].lines, [('b', "AS:1050".to_owned()), ('b', "TIAS:1000000".to_owned())]);
    let text = String::from_utf8(offer.to_bytes()).expect("utf-8");
    let video = &text[text.find("m=video").expect("a video m-line")..];
    assert!(video.contains("b=AS:1050\r\nb=TIAS:1000000\r\na="), "after c=, before the attributes: {video}");
    let back = Sdp::parse(&offer.to_bytes()).expect("parses");
    assert_eq!(back.bandwidth_of(1), Some(Bandwidth { bits: 1_000_000, with_headers: false }));
}

/// The peer's RTCP feedback for the agreed payload type: its own lines and the wildcard's, not
/// another payload type's.
#[test]
fn the_peers_rtcp_feedback_is_read_for_the_agreed_payload_type() {
    let opts = OfferOptions { video: Some((40002, vec![Codec::Vp8])), ..OfferOptions::default() };
    let mut s = LocalSession::new(opts, 1);
    s.create_offer();
    let body = answer("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 8\nm=video 6002 RTP/AVP 120\na=rtpmap:120 VP8/90000\na=rtcp-fb:120 NACK\na=rtcp-fb:120  nack   pli\na=rtcp-fb:121 ccm tmmbr\na=rtcp-fb:* ccm fir\na=rtcp-fb:120 nack\na=rtcp-fb:\n");
    let video = s.process_answer(&body).expect("with video").video.expect("video");
    assert_eq!(video.remote_feedback, ["nack", "nack pli", "ccm fir"]);
    assert!(video.takes_feedback("nack") && video.takes_feedback("CCM FIR") && !video.takes_feedback("ccm tmmbr"));
}

#[test]
fn reoffer_from_us_keeps_the_agreed_codec_first() {
    let mut s = established();
    let v = s.version();
    let offer = s.create_offer();
    assert_eq!(offer.media[0].formats.first().map(String::as_str), Some("0"), "PCMU agreed, offered first");
    assert_eq!(offer.origin.session_version, v + 1, "the codec order changed our description");
    let again = s.create_offer();
    assert_eq!(again.origin.session_version, v + 1);
}

/// Bodies as real peers send them: every one parses, and answering it as a
/// re-offer gives a valid answer with the same number of m-lines.
#[test]
fn corpus_from_real_peers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("sdp") {
            continue;
        }
        let body = std::fs::read(&p).expect("read");
        let parsed = Sdp::parse(&body).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let name = p.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        let opts = if name.contains("dtls") || name.contains("chrome") {
            OfferOptions {
                security: MediaSecurity::Dtls { fingerprint: "sha-256 AA:BB".into() },
                ..OfferOptions::default()
            }
        } else if name.contains("srtp") {
            sdes()
        } else {
            OfferOptions::default()
        };
        let mut s = LocalSession::new(opts, 9);
        let (answer, agreement) = s.answer_offer(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.media.len(), parsed.media.len(), "{name}");
        assert!(agreement.audio.is_some(), "{name}");
        Sdp::parse(&answer.to_bytes()).unwrap_or_else(|e| panic!("{name} answer: {e}"));
        if name.contains("hold") {
            assert_eq!(answer.direction(0), Direction::RecvOnly, "{name}");
        }
        n += 1;
    }
    assert!(n >= 6, "corpus has {n} files");
}

/// A re-offer of ours keeps the m-lines of the last exchange (RFC 3264 §8): a video and an
/// application line the peer added to an audio-only call (and we rejected) stay, rejected, in
/// their places. And a payload number of ours never changes meaning (§8.3.2): the peer's re-offer
/// puts PCMU under 111 (Opus in our offer), so our answer uses 0 for it instead (its packets to
/// us carry 0) while we send with its 111, and takes its 97 for telephone-event (97 meant nothing
/// to us yet); our next offer keeps every number as it was.
#[test]
fn a_re_offer_keeps_the_m_lines_and_the_payload_numbers() {
    let mut s = established();
    let reoffer = answer(
        "v=0\no=sipp 1 2 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n\
m=audio 6000 RTP/AVP 111 97\na=rtpmap:111 PCMU/8000\na=rtpmap:97 telephone-event/8000\n\
m=video 6002 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\n\
m=application 6004 UDP/BFCP *\n",
    );
    let (sdp, a) = s.answer_offer(&reoffer).expect("answer");
    assert_eq!(sdp.media.iter().map(|m| m.port != 0).collect::<Vec<_>>(), [true, false, false]);
    assert_eq!(sdp.media[0].payload_types(), [0, 97], "not 111, which means Opus to us; 97 meant nothing yet");
    let audio = a.audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type, audio.telephone_event), (Codec::Pcmu, 111, Some((97, 8000))));
    assert_eq!((audio.local_payload_types.clone(), audio.local_telephone_event), (vec![(Codec::Pcmu, 0)], None));
    assert_eq!((audio.received_codec(0), audio.received_codec(111)), (Some(Codec::Pcmu), Some(Codec::Pcmu)));
    assert!(audio.is_telephone_event(97));

    let offer = s.create_offer();
    let kinds: Vec<(&str, bool)> = offer.media.iter().map(|m| (m.kind.as_str(), m.port != 0)).collect();
    assert_eq!(kinds, [("audio", true), ("video", false), ("application", false)], "same lines, same order");
    assert_eq!(offer.media[2].proto, "UDP/BFCP");
    let m = &offer.media[0];
    let pts = m.payload_types();
    assert_eq!(pts.first(), Some(&0), "the agreed codec first: {pts:?}");
    assert_eq!(m.rtpmap(111), Some(("opus".into(), 48000, Some(2))), "111 is still Opus");
    assert_eq!(m.rtpmap(101), Some(("telephone-event".into(), 8000, None)), "101 is still telephone-event/8000");
    let mut unique = pts.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), pts.len(), "no number twice: {pts:?}");

    // The peer answers it; the audio line is read as ours, whatever else is there.
    let reply = answer(
        "v=0\no=sipp 1 3 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n\
m=audio 6000 RTP/AVP 111\na=rtpmap:111 PCMU/8000\nm=video 0 RTP/AVP 96\nm=application 0 UDP/BFCP *\n",
    );
    let a = s.process_answer(&reply).expect("agreement");
    let audio = a.audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 111), "we send with its number");
    assert_eq!(audio.local_payload_types, vec![(Codec::Pcmu, 0)], "it sends with ours");
}

/// RFC 6184 §8.2.2: our answer to an H.264 offer keeps the offer's profile. A Baseline-family
/// offer (42801f, 42c016) is answered with its own profile and constraint flags: at our level 3.1
/// when both sides allow level asymmetry, else at the lower level. Main and High offers are
/// answered with their profile too (their decoders take our Constrained Baseline stream); other
/// profiles keep our fmtp. Of several H.264 payloads the Baseline one is chosen.
#[test]
fn h264_answers_keep_the_offered_profile() {
    let answered_fmtp = |fmtp: &str| {
        let opts = OfferOptions { video: Some((40002, vec![Codec::H264])), ..OfferOptions::default() };
        let mut s = LocalSession::new(opts, 1);
        let offer = answer(&format!(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 0\nm=video 6002 RTP/AVP 97\na=rtpmap:97 H264/90000\na=fmtp:97 {fmtp}\n"
        ));
        let (sdp, a) = s.answer_offer(&offer).expect("answer");
        assert_eq!(a.video.map(|v| v.codec), Some(Codec::H264), "{fmtp}");
        sdp.media[1].fmtp(97).map(str::to_owned).expect("an fmtp for 97")
    };
    let f = answered_fmtp("profile-level-id=42801f;packetization-mode=1;level-asymmetry-allowed=1");
    assert!(f.contains("profile-level-id=42801f") && f.contains("packetization-mode=1"), "{f}");
    let f = answered_fmtp("profile-level-id=42c016;packetization-mode=1");
    assert!(f.contains("profile-level-id=42c016"), "no asymmetry: the lower level, 2.2: {f}");
    let f = answered_fmtp("profile-level-id=42e028;packetization-mode=1");
    assert!(f.contains("profile-level-id=42e01f"), "no asymmetry: ours (3.1) is the lower: {f}");
    let f = answered_fmtp("profile-level-id=640c1f;packetization-mode=1");
    assert!(f.contains("profile-level-id=640c1f"), "High: its profile: {f}");
    let f = answered_fmtp("profile-level-id=4d0028;packetization-mode=1");
    assert!(f.contains("profile-level-id=4d001f"), "Main, no asymmetry: the lower level: {f}");
    let f = answered_fmtp("profile-level-id=f4001f;packetization-mode=1");
    assert!(f.contains("profile-level-id=42e01f"), "High 4:4:4: ours: {f}");
    let f = answered_fmtp("profile-level-id=aé123;packetization-mode=1");
    assert!(f.contains("profile-level-id=42e01f"), "garbage: ours: {f}");

    // Chrome's order: High before Constrained Baseline; the Baseline payload is chosen.
    let opts = OfferOptions { video: Some((40002, vec![Codec::H264])), ..OfferOptions::default() };
    let mut s = LocalSession::new(opts, 1);
    let offer = answer(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 0\nm=video 6002 RTP/AVP 100 102\n\
a=rtpmap:100 H264/90000\na=fmtp:100 profile-level-id=640c1f;packetization-mode=1\n\
a=rtpmap:102 H264/90000\na=fmtp:102 profile-level-id=42e01f;packetization-mode=1\n",
    );
    let (sdp, a) = s.answer_offer(&offer).expect("answer");
    assert_eq!(a.video.map(|v| (v.codec, v.payload_type)), Some((Codec::H264, 102)));
    assert_eq!(sdp.media[1].formats, ["102"]);
}

/// RFC 3264 §8: a re-offer keeps the m-lines in use where they are: one that puts something else
/// in the audio's place is refused (488), the session unchanged; an m-line that was rejected may
/// carry another kind.
#[test]
fn a_re_offer_may_not_move_an_m_line_in_use() {
    let mut s = established();
    let moved =
        answer("v=0\no=- 1 2 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=video 0 RTP/AVP 96\nm=audio 6000 RTP/AVP 0\n");
    let e = s.answer_offer(&moved).expect_err("audio moved to the second line");
    assert_eq!(e.sip_status(), 488, "{e}");
    // A rejected slot reused: the second line was video (rejected), now an application.
    let with_video = answer("v=0\no=- 1 3 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 0\nm=video 6002 RTP/AVP 96\na=rtpmap:96 H264/90000\n");
    let (sdp, _) = s.answer_offer(&with_video).expect("video added, rejected");
    assert_eq!(sdp.media[1].port, 0);
    let reused = answer("v=0\no=- 1 4 IN IP4 h\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 6000 RTP/AVP 0\nm=application 6004 UDP/BFCP *\n");
    let (sdp, a) = s.answer_offer(&reused).expect("the rejected slot reused");
    assert_eq!((sdp.media[1].kind.as_str(), sdp.media[1].port), ("application", 0));
    assert!(a.audio.is_some());
}
