//! The offers and answers of RFC 3264 section 10 and RFC 4317, kept as files
//! under `tests/data/rfc3264/` and `tests/data/rfc4317/` (provenance in
//! `tests/data/README.md`).
//!
//! Every body survives a parse/serialise round trip. Where the gateway can
//! take a side of an exchange it must behave as the RFC's party does, as far
//! as its codecs allow: it has no iLBC, G.723, G.729, H.261 or MPV, and one
//! audio stream, so some streams the RFC's party accepts are rejected here
//! (port 0) and offers with nothing in common are refused with 488.

use sdp_negotiation::{Agreement, Codec, Direction, LocalSession, MediaAgreement, NegotiationError, OfferOptions, Sdp};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// One body: `rfc` is `rfc3264` or `rfc4317`, `name` e.g. `2.1-offer`.
fn body(rfc: &str, name: &str) -> Vec<u8> {
    let path = data_dir().join(rfc).join(format!("{name}.sdp"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rfc3264(name: &str) -> Vec<u8> {
    body("rfc3264", name)
}

fn rfc4317(name: &str) -> Vec<u8> {
    body("rfc4317", name)
}

/// A fresh gateway leg answering `offer`.
fn answer_fresh(options: OfferOptions, offer: &[u8]) -> Result<(Sdp, Agreement), NegotiationError> {
    LocalSession::new(options, 7).answer_offer(offer)
}

fn with_video() -> OfferOptions {
    OfferOptions { video: Some((40002, vec![Codec::H264, Codec::Vp8])), ..OfferOptions::default() }
}

/// Our answer to an audio stream: accepted on our port, with exactly the
/// offer's payload type for PCMU and no telephone-event (none was offered
/// beside PCMU in any of the RFC's streams).
fn assert_pcmu_accepted(answer: &Sdp, i: usize, why: &str) {
    let m = &answer.media[i];
    assert_eq!((m.kind.as_str(), m.port, m.proto.as_str()), ("audio", 40000, "RTP/AVP"), "{why}");
    assert_eq!(m.formats, ["0"], "{why}: the offer's payload type, and only the chosen codec");
    assert_eq!(m.rtpmap(0), Some(("PCMU".into(), 8000, None)), "{why}");
    assert!(!m.attrs("rtpmap").any(|v| v.contains("telephone-event")), "{why}: not offered, not answered");
}

/// An m-line we rejected: same kind and proto, port 0, one of the offer's
/// formats (SDP needs at least one).
fn assert_rejected(answer: &Sdp, i: usize, kind: &str, format: &str, why: &str) {
    let m = &answer.media[i];
    assert_eq!((m.kind.as_str(), m.port, m.proto.as_str()), (kind, 0, "RTP/AVP"), "{why} m-line {i}");
    assert_eq!(m.formats, [format], "{why} m-line {i}");
}

/// The peer's address is a host name in every RFC example: nothing to send
/// to until it is resolved, and the name is kept for the caller.
fn assert_remote_host(a: &MediaAgreement, host: &str, why: &str) {
    assert_eq!(a.remote_rtp, None, "{why}: a host name is not a socket address");
    assert_eq!(a.remote_rtcp, None, "{why}");
    assert_eq!(a.remote_host, host, "{why}");
}

#[test]
fn every_body_is_crlf_and_round_trips() {
    let mut n = 0;
    for rfc in ["rfc3264", "rfc4317"] {
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(data_dir().join(rfc)).expect("dir").map(|e| e.expect("entry").path()).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.extension().is_some_and(|x| x == "sdp")) {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).expect("read");
            assert!(bytes.ends_with(b"\r\n"), "{name}: ends with CRLF");
            let bare_lf = bytes.windows(2).filter(|w| w[1] == b'\n' && w[0] != b'\r').count();
            assert_eq!(bare_lf, 0, "{name}: every line ends with CRLF");
            assert!(bytes.starts_with(b"v=0\r\no="), "{name}");
            let sdp = Sdp::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(sdp.session_name.trim().is_empty(), "{name}: the RFCs leave s= blank");
            assert_eq!(sdp.lines, [('t', "0 0".to_owned())], "{name}");
            let again = sdp.to_bytes();
            assert_eq!(Sdp::parse(&again).expect("reparse"), sdp, "{name}");
            // RFC 4317's bodies come back byte for byte (its s= holds one
            // space); RFC 3264 writes an empty s=, which we write as "s= ".
            let expected = String::from_utf8(bytes).expect("ascii").replace("\r\ns=\r\n", "\r\ns= \r\n");
            assert_eq!(String::from_utf8(again).expect("ascii"), expected, "{name}: serialised as written");
            n += 1;
        }
    }
    assert_eq!(n, 8 + 54, "RFC 3264 10.1-10.2 and RFC 4317 2.1-5.3, every offer and answer");

    // A few parsed values, checked against the RFC text.
    let s = Sdp::parse(&rfc4317("2.8-answer")).expect("2.8");
    assert_eq!(s.origin.username, "bob");
    assert_eq!(s.origin.session_id, "2808844564");
    assert_eq!(s.origin.session_version, 2808844564);
    assert_eq!(s.origin.address, "host.biloxi.example.com");
    assert_eq!(s.connection_of(0).map(|c| c.address.as_str()), Some("host.biloxi.example.com"));
    assert_eq!(
        s.connection_of(1).map(|c| c.address.as_str()),
        Some("otherhost.biloxi.example.com"),
        "media-level c= wins over the session's"
    );
    assert_eq!(s.media[1].rtpmap(32), Some(("MPV".into(), 90000, None)));
    let s = Sdp::parse(&rfc3264("10.1-second-offer")).expect("10.1");
    assert_eq!(s.media.len(), 4);
    assert_eq!(s.direction(3), Direction::RecvOnly);
    assert_eq!(s.direction(0), Direction::SendRecv, "no attribute: sendrecv");
    assert_eq!(s.media[3].rtpmap(110), Some(("telephone-events".into(), 8000, None)), "RFC 3264's spelling");
    let s = Sdp::parse(&rfc4317("5.2-offer")).expect("5.2");
    assert!(s.connection_of(0).is_some_and(|c| c.is_hold_address()), "c=IN IP4 0.0.0.0");
    assert!(Sdp::parse(&rfc4317("5.1-offer")).expect("5.1").media.is_empty());
}

/// RFC 3264 10.1: Alice offers PCMU audio, H.261 video and MPV video; Bob
/// rejects the first video stream. We answer as Bob would with our codecs:
/// PCMU, and both video streams rejected (no H.261, no MPV).
#[test]
fn rfc3264_10_1_basic_exchange_as_answerer() {
    for (options, why) in [(OfferOptions::default(), "audio only"), (with_video(), "H.264 and VP8 configured")] {
        let (answer, agreement) = answer_fresh(options, &rfc3264("10.1-offer")).expect(why);
        assert_eq!(answer.media.len(), 3, "{why}: one answer m-line per offered one");
        assert_pcmu_accepted(&answer, 0, why);
        assert_eq!(answer.direction(0), Direction::SendRecv, "{why}");
        assert_rejected(&answer, 1, "video", "31", why);
        assert_rejected(&answer, 2, "video", "32", why);
        let audio = agreement.audio.expect("audio");
        assert_eq!((audio.index, audio.codec, audio.payload_type), (0, Codec::Pcmu, 0), "{why}");
        assert_eq!(audio.codecs, [(Codec::Pcmu, 0)], "{why}");
        assert_eq!(audio.telephone_event, None, "{why}");
        assert_eq!((audio.local_direction, audio.remote_direction), (Direction::SendRecv, Direction::SendRecv));
        assert!(!audio.remote_hold, "{why}");
        assert_remote_host(&audio, "host.anywhere.com", why);
        assert!(agreement.video.is_none(), "{why}");
        assert_eq!(answer.origin.session_version, 1, "{why}");
    }
}

/// RFC 3264 10.1, second exchange: Bob's offer adds a recvonly audio stream
/// of telephone events. Answered by a fresh leg: the first audio stream is
/// accepted, every other stream rejected in place (we carry one audio
/// stream, with DTMF in it), so the four m-lines keep their order.
#[test]
fn rfc3264_10_1_second_offer_keeps_m_line_order() {
    let (answer, agreement) = answer_fresh(OfferOptions::default(), &rfc3264("10.1-second-offer")).expect("answer");
    let kinds: Vec<&str> = answer.media.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["audio", "video", "video", "audio"]);
    assert_pcmu_accepted(&answer, 0, "10.1 second offer");
    assert_rejected(&answer, 1, "video", "31", "disabled in the offer");
    assert_rejected(&answer, 2, "video", "32", "MPV");
    assert_rejected(&answer, 3, "audio", "110", "a second audio stream");
    let audio = agreement.audio.expect("audio");
    assert_eq!(audio.index, 0);
    assert_remote_host(&audio, "host.example.com", "Bob");
}

/// RFC 3264 10.2: Alice offers PCMU, G.723 and G.729 on an inactive stream,
/// then re-offers G.723 alone, sendrecv. We answer the first inactive with
/// PCMU (inactive gets inactive), and refuse the second: no G.723 here.
#[test]
fn rfc3264_10_2_one_of_n_as_answerer() {
    let mut leg = LocalSession::new(OfferOptions::default(), 7);
    let (answer, agreement) = leg.answer_offer(&rfc3264("10.2-offer")).expect("answer");
    assert_eq!(answer.media.len(), 1);
    assert_pcmu_accepted(&answer, 0, "10.2");
    assert_eq!(answer.direction(0), Direction::Inactive, "RFC 3264 6.1: inactive MUST be answered inactive");
    let audio = agreement.audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0));
    assert_eq!((audio.local_direction, audio.remote_direction), (Direction::Inactive, Direction::Inactive));
    assert!(audio.remote_hold);
    assert_remote_host(&audio, "host.anywhere.com", "Alice");

    let e = leg.answer_offer(&rfc3264("10.2-second-offer")).expect_err("G.723 only");
    assert_eq!(e, NegotiationError::NoCommonCodec("audio"));
    assert_eq!(e.sip_status(), 488);
}

/// RFC 3264 10.2 from the offerer's side: Bob's answer lists PCMU and G.723
/// although we never offered G.723. RFC 3264 section 6.1 allows formats
/// that were not offered; the agreement takes PCMU, the first one we know,
/// with the answer's payload type, and the inactive stream stops our media.
#[test]
fn rfc3264_10_2_answer_with_a_codec_we_did_not_offer() {
    let options = OfferOptions { audio_codecs: vec![Codec::Pcmu, Codec::Pcma], ..OfferOptions::default() };
    let mut leg = LocalSession::new(options, 7);
    let offer = leg.create_offer();
    assert_eq!(offer.media[0].formats, ["0", "8", "101"]);
    let agreement = leg.process_answer(&rfc3264("10.2-answer")).expect("G.723 beside PCMU is allowed");
    let audio = agreement.audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0));
    assert_eq!(audio.codecs, [(Codec::Pcmu, 0)], "G.723 is ignored");
    assert_eq!(audio.telephone_event, None, "offered, not answered");
    assert_eq!(audio.remote_direction, Direction::Inactive);
    assert_eq!(audio.local_direction, Direction::Inactive, "an inactive answer: we neither send nor receive");
    assert!(audio.remote_hold);
    assert_remote_host(&audio, "host.example.com", "Bob");
    assert_eq!(leg.agreement(), Some(&Agreement { audio: Some(audio), video: None }));

    // Bob's answer to the re-offer is G.723 alone: nothing we offered.
    let mut leg = LocalSession::new(OfferOptions::default(), 7);
    leg.create_offer();
    let e = leg.process_answer(&rfc3264("10.2-second-answer")).expect_err("G.723 only");
    assert_eq!(e, NegotiationError::NotOffered("payload type 4".into()));
    assert_eq!(e.sip_status(), 488);
}

/// RFC 4317 2.1, 2.2, 2.3 and 2.8 share one offer: PCMU, PCMA and iLBC
/// audio, H.261 and MPV video. The answers of 2.1, 2.2 and 2.8 take PCMU
/// first, and so do we (2.3's takes iLBC, which we lack); video is rejected,
/// with or without video configured.
#[test]
fn rfc4317_2_x_audio_and_video_offer_as_answerer() {
    for section in ["2.1", "2.2", "2.3", "2.8"] {
        let offer = rfc4317(&format!("{section}-offer"));
        for (options, config) in [(OfferOptions::default(), "audio only"), (with_video(), "with video")] {
            let why = format!("{section} {config}");
            let (answer, agreement) = answer_fresh(options, &offer).expect(&why);
            assert_eq!(answer.media.len(), 2, "{why}");
            assert_pcmu_accepted(&answer, 0, &why);
            assert_eq!(answer.direction(0), Direction::SendRecv, "{why}");
            // Exactly RFC 4317 2.2's rejected stream: "m=video 0 RTP/AVP 31".
            assert_rejected(&answer, 1, "video", "31", &why);
            let audio = agreement.audio.expect("audio");
            assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0), "{why}");
            assert_eq!(audio.codecs, [(Codec::Pcmu, 0), (Codec::Pcma, 8)], "{why}: iLBC is not ours");
            assert_remote_host(&audio, "host.atlanta.example.com", &why);
            assert!(agreement.video.is_none(), "{why}");
        }
    }
}

/// RFC 4317 2.2 as Bob: the second offer narrows audio to PCMU on a new
/// port and keeps the disabled video. Our answer already had PCMU alone, so
/// it is unchanged, and so is its o= version (RFC 3264 section 8).
#[test]
fn rfc4317_2_2_second_offer_leaves_our_answer_unchanged() {
    let mut leg = LocalSession::new(OfferOptions::default(), 7);
    let (first, _) = leg.answer_offer(&rfc4317("2.2-offer")).expect("first");
    let (second, agreement) = leg.answer_offer(&rfc4317("2.2-second-offer")).expect("second");
    assert_eq!(second, first, "same description, same version");
    assert_eq!(second.origin.session_version, 1);
    assert_pcmu_accepted(&second, 0, "2.2 second");
    assert_rejected(&second, 1, "video", "31", "2.2 second");
    let audio = agreement.audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0));
    assert_remote_host(&audio, "host.atlanta.example.com", "Alice");
}

/// RFC 4317 2.2 as Alice: Bob's answer to an audio and video offer accepts
/// PCMU and PCMA and rejects video. We offer PCMU and PCMA (as Alice did)
/// and H.264; the agreement sends PCMU with payload type 0, the first format
/// of the answer, and has no video.
#[test]
fn rfc4317_2_2_answer_to_our_audio_and_video_offer() {
    let options = OfferOptions {
        audio_codecs: vec![Codec::Pcmu, Codec::Pcma],
        video: Some((40002, vec![Codec::H264])),
        ..OfferOptions::default()
    };
    let mut leg = LocalSession::new(options, 7);
    let offer = leg.create_offer();
    assert_eq!(offer.media.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>(), ["audio", "video"]);
    let agreement = leg.process_answer(&rfc4317("2.2-answer")).expect("answer");
    let audio = agreement.audio.expect("audio");
    assert_eq!((audio.index, audio.codec, audio.payload_type), (0, Codec::Pcmu, 0));
    assert_eq!(audio.codecs, [(Codec::Pcmu, 0), (Codec::Pcma, 8)]);
    assert_eq!(audio.telephone_event, None);
    assert_eq!((audio.local_direction, audio.remote_direction), (Direction::SendRecv, Direction::SendRecv));
    assert_remote_host(&audio, "host.biloxi.example.com", "Bob");
    assert!(agreement.video.is_none(), "video rejected with port 0");
}

/// RFC 4317 2.4 and 3.2: a second audio stream carries only telephone
/// events, sendonly. Bob accepts it recvonly; we carry DTMF inside the one
/// audio stream, so we accept the first and reject the second in place.
#[test]
fn rfc4317_separate_telephone_event_stream_is_rejected() {
    for section in ["2.4", "3.2"] {
        let (answer, agreement) = answer_fresh(OfferOptions::default(), &rfc4317(&format!("{section}-offer")))
            .unwrap_or_else(|e| panic!("{section}: {e}"));
        assert_eq!(answer.media.len(), 2, "{section}");
        assert_pcmu_accepted(&answer, 0, section);
        assert_eq!(answer.direction(0), Direction::SendRecv, "{section}");
        assert_rejected(&answer, 1, "audio", "98", section);
        let audio = agreement.audio.expect("audio");
        assert_eq!((audio.index, audio.codec, audio.payload_type, audio.telephone_event), (0, Codec::Pcmu, 0, None));
    }
}

/// RFC 4317 2.6: two alternative audio streams, PCMU, or iLBC with
/// telephone-event. Bob takes the iLBC one; we can only take PCMU.
#[test]
fn rfc4317_2_6_alternative_audio_streams() {
    let (answer, agreement) = answer_fresh(OfferOptions::default(), &rfc4317("2.6-offer")).expect("answer");
    assert_eq!(answer.media.len(), 2);
    assert_pcmu_accepted(&answer, 0, "2.6");
    assert_rejected(&answer, 1, "audio", "97", "2.6 iLBC");
    assert_eq!(agreement.audio.expect("audio").index, 0);
}

/// RFC 4317 3.1 and 4.1 open with PCMU and iLBC: we answer PCMU.
#[test]
fn rfc4317_pcmu_and_ilbc_offers() {
    for section in ["3.1", "4.1"] {
        let (answer, agreement) = answer_fresh(OfferOptions::default(), &rfc4317(&format!("{section}-offer")))
            .unwrap_or_else(|e| panic!("{section}: {e}"));
        assert_eq!(answer.media.len(), 1, "{section}");
        assert_pcmu_accepted(&answer, 0, section);
        let audio = agreement.audio.expect("audio");
        assert_eq!(audio.codecs, [(Codec::Pcmu, 0)], "{section}");
        assert_remote_host(&audio, "host.atlanta.example.com", section);
    }
}

/// RFC 4317 4.2 as Bob: audio, then a re-offer adds H.261 video. The new
/// stream is rejected in place, the audio kept, and the o= version goes up
/// because our description gained an m-line.
#[test]
fn rfc4317_4_2_video_added_in_a_reoffer() {
    for (options, why) in [(OfferOptions::default(), "audio only"), (with_video(), "with video")] {
        let mut leg = LocalSession::new(options, 7);
        let (first, _) = leg.answer_offer(&rfc4317("4.2-offer")).expect(why);
        assert_eq!(first.media.len(), 1, "{why}");
        assert_pcmu_accepted(&first, 0, why);
        let (second, agreement) = leg.answer_offer(&rfc4317("4.2-second-offer")).expect(why);
        assert_eq!(second.media.len(), 2, "{why}");
        assert_pcmu_accepted(&second, 0, why);
        assert_rejected(&second, 1, "video", "31", why);
        assert_eq!(second.origin.session_version, first.origin.session_version + 1, "{why}");
        let audio = agreement.audio.expect("audio");
        assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0), "{why}");
        assert!(agreement.video.is_none(), "{why}");
    }
}

/// RFC 4317 4.2 as Alice: Bob answers our audio offer with PCMU.
#[test]
fn rfc4317_4_2_answer_to_our_audio_offer() {
    let mut leg = LocalSession::new(OfferOptions::default(), 7);
    leg.create_offer();
    let audio = leg.process_answer(&rfc4317("4.2-answer")).expect("answer").audio.expect("audio");
    assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0));
    assert_eq!(audio.codecs, [(Codec::Pcmu, 0)]);
    assert_eq!(audio.telephone_event, None);
    assert_eq!(audio.local_direction, Direction::SendRecv);
    assert!(!audio.remote_hold);
    assert_remote_host(&audio, "host.biloxi.example.com", "Bob");
}

/// RFC 4317 5.1 (3pcc): an offer without m-lines gets an answer without
/// m-lines (RFC 3264 section 6). The second offer adds iLBC audio, which
/// we cannot accept.
#[test]
fn rfc4317_5_1_no_media_then_audio() {
    let mut leg = LocalSession::new(OfferOptions::default(), 7);
    let (answer, agreement) = leg.answer_offer(&rfc4317("5.1-offer")).expect("no media");
    assert!(answer.media.is_empty());
    assert_eq!(agreement, Agreement { audio: None, video: None });
    let reparsed = Sdp::parse(&answer.to_bytes()).expect("our answer parses");
    assert!(reparsed.media.is_empty());
    let e = leg.answer_offer(&rfc4317("5.1-second-offer")).expect_err("iLBC only");
    assert_eq!(e, NegotiationError::NoCommonCodec("audio"));
}

/// The offers whose only audio codec is iLBC: refused with 488, whoever
/// sends them.
#[test]
fn rfc4317_ilbc_only_offers_are_488() {
    let offers = [
        "2.5-offer",
        "2.5-second-offer",
        "2.7-offer",
        "2.7-second-offer",
        "3.1-second-offer",
        "3.2-second-offer",
        "4.1-second-offer",
        "4.3-offer",
        "4.3-second-offer",
        "5.2-offer",
        "5.2-second-offer",
        "5.3-offer",
        "5.3-second-offer",
    ];
    for name in offers {
        let e = answer_fresh(with_video(), &rfc4317(name)).expect_err(name);
        assert_eq!(e, NegotiationError::NoCommonCodec("audio"), "{name}");
        assert_eq!(e.sip_status(), 488, "{name}");
    }
}
