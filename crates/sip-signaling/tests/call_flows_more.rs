//! More call flows on simulated time against a scripted far end: offer and
//! answer inside the dialog, INFO, in-dialog digest, session timers, 422,
//! ring timeout, transport failures, routing, retransmissions and stream
//! framing. Every test checks the exact messages on the wire.

mod common;

use bytes::Bytes;
use common::*;
use sip_signaling::{
    CallEvent, CallHandle, Credentials, EndReason, Error, HeaderName, Message, Method, OfferKind, StartLine, Target,
    Transport,
};
use std::time::Duration;

/// What we advertise in Allow.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY, PRACK";
const OFFER2: &[u8] =
    b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n";
const OFFER3: &[u8] =
    b"v=0\r\no=- 1 3 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4004 RTP/AVP 8\r\n";
const PEER_OFFER: &[u8] =
    b"v=0\r\no=- 2 3 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=sendonly\r\n";
const OUR_ANSWER: &[u8] =
    b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n";
const DTMF: &[u8] = b"Signal=5\r\nDuration=160\r\n";
/// The peer's Contact in [`respond`]: the remote target of the dialog.
const REMOTE_TARGET: &str = "sip:bob@192.0.2.10:5060";

// ----- helpers -----

fn seq(m: &Message) -> u32 {
    m.cseq().expect("cseq").seq
}

fn branch(m: &Message) -> String {
    m.top_via().expect("via").branch().expect("branch").to_owned()
}

fn hdr(m: &Message, name: HeaderName) -> Option<String> {
    m.headers.get(&name).map(str::to_owned)
}

fn ruri(m: &Message) -> String {
    match &m.start {
        StartLine::Request { uri, .. } => uri.to_string(),
        StartLine::Response { .. } => panic!("not a request"),
    }
}

fn methods(v: &[Message]) -> Vec<String> {
    v.iter().map(start).collect()
}

fn with_body(mut m: Message, content_type: &str, body: &'static [u8]) -> Message {
    m.headers.push(HeaderName::ContentType, content_type);
    m.body = Bytes::from_static(body);
    m
}

fn with_sdp(m: Message, body: &'static [u8]) -> Message {
    with_body(m, "application/sdp", body)
}

fn with_header(mut m: Message, name: HeaderName, value: &str) -> Message {
    m.headers.push(name, value);
    m
}

/// The offer of the initial INVITE.
fn first_offer(h: &Harness) -> Bytes {
    h.request("sip:bob@biloxi.example.com").sdp.expect("sdp")
}

/// Dials, answers with `ok` (after `tweak`), checks the ACK and drains
/// events. Returns the call, the INVITE, the 200 and the ACK.
fn answered_with(h: &mut Harness, uri: &str, tweak: impl FnOnce(&mut Message)) -> (CallHandle, Message, Message) {
    let call = h.dial(uri);
    let invite = h.sent_one();
    let mut ok = ok_with_sdp(&invite, "bobtag");
    tweak(&mut ok);
    h.deliver(&ok);
    let ack = h.sent_one();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(seq(&ack), seq(&invite));
    let ev = h.events();
    assert!(matches!(ev[..], [CallEvent::Answered { sdp: Some(_) }]), "{ev:?}");
    (call, invite, ok)
}

fn answered(h: &mut Harness) -> (CallHandle, Message, Message) {
    answered_with(h, "sip:bob@biloxi.example.com", |_| {})
}

/// Checks the dialog identifiers of a request we sent inside the dialog.
fn assert_in_dialog(req: &Message, invite: &Message, method: Method, cseq: u32) {
    assert_eq!(req.method(), Some(&method));
    assert_eq!(req.headers.get(&HeaderName::CSeq), Some(format!("{cseq} {method}").as_str()));
    assert_eq!(req.call_id().expect("cid"), invite.call_id().expect("cid"));
    assert_eq!(req.headers.get(&HeaderName::From), invite.headers.get(&HeaderName::From));
    assert_eq!(req.to().expect("to").tag(), Some("bobtag"));
    assert_eq!(ruri(req), REMOTE_TARGET);
    assert_ne!(branch(req), branch(invite));
    assert!(branch(req).starts_with("z9hG4bK"));
}

/// Checks that a response of ours matches the request it answers.
fn assert_answers(resp: &Message, req: &Message, code: u16) {
    assert_eq!(resp.status(), Some(code), "{resp}");
    assert_eq!(resp.headers.get(&HeaderName::CSeq), req.headers.get(&HeaderName::CSeq));
    assert_eq!(resp.headers.get(&HeaderName::CallId), req.headers.get(&HeaderName::CallId));
    assert_eq!(resp.headers.get(&HeaderName::From), req.headers.get(&HeaderName::From));
    assert_eq!(resp.headers.get(&HeaderName::To), req.headers.get(&HeaderName::To));
    assert_eq!(branch(resp), branch(req));
}

fn challenge(req: &Message, code: u16, nonce: &str) -> Message {
    let (reason, name) = if code == 401 {
        ("Unauthorized", HeaderName::WwwAuthenticate)
    } else {
        ("Proxy Authentication Required", HeaderName::ProxyAuthenticate)
    };
    let mut r = respond(req, code, reason, Some("auth"));
    r.headers
        .push(name, format!("Digest realm=\"biloxi.example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5"));
    r
}

/// Checks a `Digest` Authorization value against an independent MD5.
fn assert_digest(auth: &str, method: &str, uri: &str, nonce: &str) {
    let field = |k: &str| {
        let i = auth.find(&format!(" {k}=")).unwrap_or_else(|| panic!("{k} in {auth}")) + k.len() + 2;
        auth[i..].split(',').next().expect("v").trim().trim_matches('"').to_owned()
    };
    assert!(auth.starts_with("Digest "), "{auth}");
    assert_eq!(field("username"), "alice");
    assert_eq!(field("realm"), "biloxi.example.com");
    assert_eq!(field("nonce"), nonce);
    assert_eq!(field("uri"), uri);
    assert_eq!(field("qop"), "auth");
    let ha1 = md5_hex(b"alice:biloxi.example.com:secret");
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    let expect = md5_hex(format!("{ha1}:{nonce}:{}:{}:auth:{ha2}", field("nc"), field("cnonce")).as_bytes());
    assert_eq!(field("response"), expect);
}

// ----- 1. our re-INVITE -----

/// RFC 3261 14.1: our re-INVITE answered 200 (ACKed on a new branch with
/// the re-INVITE's CSeq), one at a time, and a 488 that leaves the call up
/// (ACKed on the re-INVITE's branch).
#[test]
fn outgoing_reinvite_answered_then_rejected() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, _ok) = answered(&mut h);

    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("reinvite");
    let reinv = h.sent_one();
    assert_in_dialog(&reinv, &invite, Method::Invite, 2);
    assert_eq!(hdr(&reinv, HeaderName::ContentType).as_deref(), Some("application/sdp"));
    assert_eq!(&reinv.body[..], OFFER2);
    assert_eq!(reinv.headers.get(&HeaderName::Contact), invite.headers.get(&HeaderName::Contact));
    assert_eq!(hdr(&reinv, HeaderName::Allow).as_deref(), Some(ALLOW));
    assert_eq!(hdr(&reinv, HeaderName::SessionExpires), None, "no session timer was negotiated");

    // One INVITE transaction at a time (RFC 3261 14.1), nor an UPDATE offer.
    let e = h.ua.reinvite(h.now, call, Bytes::from_static(OFFER3)).expect_err("pending");
    assert!(matches!(e, Error::InvalidState(_)), "{e:?}");
    let e = h.ua.update(h.now, call, Bytes::from_static(OFFER3)).expect_err("pending");
    assert!(matches!(e, Error::InvalidState(_)), "{e:?}");
    assert!(h.sent().is_empty());

    h.deliver(&respond(&reinv, 100, "Trying", None));
    let ok2 = ok_with_sdp(&reinv, "bobtag");
    h.deliver(&ok2);
    let ack = h.sent_one();
    assert_in_dialog(&ack, &invite, Method::Ack, 2);
    assert_ne!(branch(&ack), branch(&reinv), "the ACK for a 2xx is its own transaction");
    assert!(ack.body.is_empty());
    assert_eq!(h.events(), vec![CallEvent::RemoteAnswer { sdp: ok2.body.clone() }]);
    // A retransmitted 200 is ACKed again, identically, without a new event.
    h.deliver(&ok2);
    assert_eq!(h.sent_one().to_bytes(), ack.to_bytes());
    assert!(h.events().is_empty());

    // The next offer is refused: ACK on the re-INVITE's branch, call up.
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER3)).expect("reinvite after the answer");
    let reinv2 = h.sent_one();
    assert_in_dialog(&reinv2, &invite, Method::Invite, 3);
    let rej = respond(&reinv2, 488, "Not Acceptable Here", None);
    h.deliver(&rej);
    let ack2 = h.sent_one();
    assert_eq!(ack2.method(), Some(&Method::Ack));
    assert_eq!(hdr(&ack2, HeaderName::CSeq).as_deref(), Some("3 ACK"));
    assert_eq!(branch(&ack2), branch(&reinv2));
    assert_eq!(ruri(&ack2), ruri(&reinv2));
    assert_eq!(ack2.headers.get(&HeaderName::To), rej.headers.get(&HeaderName::To));
    assert_eq!(ack2.headers.get(&HeaderName::From), reinv2.headers.get(&HeaderName::From));
    assert_eq!(ack2.call_id().expect("cid"), reinv2.call_id().expect("cid"));
    assert_eq!(h.events(), vec![CallEvent::OfferRejected { code: 488 }]);
    h.deliver(&rej);
    assert_eq!(h.sent_one().to_bytes(), ack2.to_bytes(), "a retransmitted 488 gets the same ACK");
    assert!(h.events().is_empty());
    assert_eq!(h.ua.call_count(), 1);

    // Still up: BYE with the next CSeq.
    h.ua.hangup(h.now, call).expect("hangup");
    let bye = h.sent_one();
    assert_in_dialog(&bye, &invite, Method::Bye, 4);
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::LocalHangup }]);
}

// ----- 2. glare -----

/// RFC 3261 14.2: the peer's re-INVITE (or UPDATE offer) crossing ours gets
/// 491, retransmitted until the ACK; our own exchange completes.
#[test]
fn glare_gets_491() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered(&mut h);
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("reinvite");
    let ours = h.sent_one();
    h.deliver(&respond(&ours, 100, "Trying", None)); // stops Timer A

    let theirs = with_sdp(peer_request(&ok, "INVITE", 1, "z9hG4bKglare1"), PEER_OFFER);
    h.deliver(&theirs);
    let r491 = h.sent_one();
    assert_answers(&r491, &theirs, 491);
    assert!(r491.body.is_empty());
    assert!(h.events().is_empty());
    // Timer G: the 491 is resent until the ACK.
    h.advance(Duration::from_millis(500));
    assert_eq!(h.sent_one().to_bytes(), r491.to_bytes());
    h.deliver(&peer_request(&ok, "ACK", 1, "z9hG4bKglare1"));
    h.advance(Duration::from_secs(10));
    assert!(h.sent().is_empty(), "the ACK stopped the 491 retransmissions");
    assert!(h.events().is_empty());

    // An UPDATE with an offer is refused the same way.
    let upd = with_sdp(peer_request(&ok, "UPDATE", 2, "z9hG4bKglare2"), PEER_OFFER);
    h.deliver(&upd);
    assert_answers(&h.sent_one(), &upd, 491);
    assert!(h.events().is_empty());

    // Our re-INVITE goes through.
    let ok2 = ok_with_sdp(&ours, "bobtag");
    h.deliver(&ok2);
    let ack = h.sent_one();
    assert_in_dialog(&ack, &invite, Method::Ack, 2);
    assert_eq!(h.events(), vec![CallEvent::RemoteAnswer { sdp: ok2.body.clone() }]);
}

// ----- 3. offerless re-INVITE -----

/// RFC 3261 14.2: an offerless re-INVITE asks for our offer; it goes in the
/// 200 and the peer's answer comes in the ACK.
#[test]
fn offerless_reinvite_from_peer() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered(&mut h);
    let reinv = peer_request(&ok, "INVITE", 1, "z9hG4bKnooffer");
    h.deliver(&reinv);
    assert_eq!(h.events(), vec![CallEvent::OfferRequested]);
    assert_answers(&h.sent_one(), &reinv, 100);

    h.ua.answer(h.now, call, Bytes::from_static(OFFER2)).expect("offer");
    let r = h.sent_one();
    assert_answers(&r, &reinv, 200);
    assert_eq!(hdr(&r, HeaderName::ContentType).as_deref(), Some("application/sdp"));
    assert_eq!(&r.body[..], OFFER2);
    assert_eq!(r.headers.get(&HeaderName::Contact), invite.headers.get(&HeaderName::Contact));
    assert_eq!(hdr(&r, HeaderName::Allow).as_deref(), Some(ALLOW));
    assert_eq!(hdr(&r, HeaderName::SessionExpires), None);
    let e = h.ua.answer(h.now, call, Bytes::from_static(OFFER2)).expect_err("answered already");
    assert!(matches!(e, Error::InvalidState(_)), "{e:?}");

    let ack = with_sdp(peer_request(&ok, "ACK", 1, "z9hG4bKnoofferack"), PEER_OFFER);
    h.deliver(&ack);
    assert_eq!(h.events(), vec![CallEvent::RemoteAnswer { sdp: Bytes::from_static(PEER_OFFER) }]);
    assert!(h.sent().is_empty(), "an ACK is never answered");
    h.advance(Duration::from_secs(40));
    assert!(h.sent().is_empty(), "no 2xx retransmission, no BYE after the ACK");
    assert!(h.events().is_empty());
    assert_eq!(h.ua.call_count(), 1);
}

// ----- 4. UPDATE from the peer -----

/// RFC 3311: an UPDATE offer is answered in its 200; an UPDATE without a
/// body is a session refresh answered at once, with Session-Expires echoed
/// (RFC 4028 section 9) when the request had one.
#[test]
fn update_from_peer() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered(&mut h);
    let upd = with_sdp(peer_request(&ok, "UPDATE", 1, "z9hG4bKupd1"), PEER_OFFER);
    h.deliver(&upd);
    assert_eq!(
        h.events(),
        vec![CallEvent::RemoteOffer { sdp: Bytes::from_static(PEER_OFFER), kind: OfferKind::Update }]
    );
    assert!(h.sent().is_empty());
    h.ua.answer(h.now, call, Bytes::from_static(OUR_ANSWER)).expect("answer");
    let r = h.sent_one();
    assert_answers(&r, &upd, 200);
    assert_eq!(hdr(&r, HeaderName::ContentType).as_deref(), Some("application/sdp"));
    assert_eq!(&r.body[..], OUR_ANSWER);
    assert_eq!(r.headers.get(&HeaderName::Contact), invite.headers.get(&HeaderName::Contact));
    h.advance(Duration::from_secs(5));
    assert!(h.sent().is_empty(), "a 200 to UPDATE is not retransmitted and awaits no ACK");
    // A retransmitted UPDATE gets the same 200.
    h.deliver(&upd);
    assert_eq!(h.sent_one().to_bytes(), r.to_bytes());
    assert!(h.events().is_empty());

    // No body, no Session-Expires: a plain 200, no timer.
    let refresh = peer_request(&ok, "UPDATE", 2, "z9hG4bKupd2");
    h.deliver(&refresh);
    let r = h.sent_one();
    assert_answers(&r, &refresh, 200);
    assert!(r.body.is_empty());
    assert_eq!(hdr(&r, HeaderName::SessionExpires), None);
    assert_eq!(hdr(&r, HeaderName::Require), None);
    assert!(h.events().is_empty());

    // No body, Session-Expires without refresher: the peer refreshes.
    let refresh = with_header(
        with_header(peer_request(&ok, "UPDATE", 3, "z9hG4bKupd3"), HeaderName::SessionExpires, "600"),
        HeaderName::Supported,
        "timer",
    );
    h.deliver(&refresh);
    let r = h.sent_one();
    assert_answers(&r, &refresh, 200);
    assert!(r.body.is_empty());
    assert_eq!(hdr(&r, HeaderName::SessionExpires).as_deref(), Some("600;refresher=uac"));
    assert_eq!(hdr(&r, HeaderName::Require).as_deref(), Some("timer"));
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 600 }]);

    // refresher=uas: echoed, and we now refresh at half the interval (with
    // a re-INVITE: this peer's 200 did not allow UPDATE).
    let refresh =
        with_header(peer_request(&ok, "UPDATE", 4, "z9hG4bKupd4"), HeaderName::SessionExpires, "600;refresher=uas");
    h.deliver(&refresh);
    let r = h.sent_one();
    assert_answers(&r, &refresh, 200);
    assert_eq!(hdr(&r, HeaderName::SessionExpires).as_deref(), Some("600;refresher=uas"));
    assert_eq!(hdr(&r, HeaderName::Require), None, "no Require: timer without Supported: timer");
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 600 }]);
    h.advance(Duration::from_millis(299_900));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(100));
    let ours = h.sent_one();
    assert_in_dialog(&ours, &invite, Method::Invite, 2);
    assert_eq!(hdr(&ours, HeaderName::SessionExpires).as_deref(), Some("600;refresher=uac"));
}

// ----- 5. INFO -----

/// RFC 6086: INFO both ways.
#[test]
fn info_both_ways() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered(&mut h);
    let info = with_body(peer_request(&ok, "INFO", 1, "z9hG4bKinfo1"), "application/dtmf-relay", DTMF);
    h.deliver(&info);
    let r = h.sent_one();
    assert_answers(&r, &info, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        h.events(),
        vec![CallEvent::Info { content_type: Some("application/dtmf-relay".into()), body: Bytes::from_static(DTMF) }]
    );
    h.deliver(&info);
    assert_eq!(h.sent_one().to_bytes(), r.to_bytes(), "retransmission: same 200");
    assert!(h.events().is_empty(), "retransmission: no second event");

    h.ua.info(h.now, call, "application/dtmf-relay", Bytes::from_static(DTMF)).expect("info");
    let ours = h.sent_one();
    assert_in_dialog(&ours, &invite, Method::Info, 2);
    assert_eq!(hdr(&ours, HeaderName::ContentType).as_deref(), Some("application/dtmf-relay"));
    assert_eq!(&ours.body[..], DTMF);
    h.deliver(&respond(&ours, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::InfoResponse { code: 200 }]);

    h.ua.info(h.now, call, "application/x-unknown", Bytes::from_static(b"x")).expect("info");
    let ours = h.sent_one();
    assert_in_dialog(&ours, &invite, Method::Info, 3);
    h.deliver(&respond(&ours, 415, "Unsupported Media Type", None));
    assert_eq!(h.events(), vec![CallEvent::InfoResponse { code: 415 }]);
    assert_eq!(h.ua.call_count(), 1, "a refused INFO leaves the call up");
    assert!(h.ua.info(h.now, call, "a\r\nb", Bytes::new()).is_err());
}

// ----- 6. in-dialog digest -----

/// RFC 3261 22.2: our BYE challenged with 401 goes again with credentials
/// and the next CSeq; the call ends after its 200.
#[test]
fn bye_challenged_with_401() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    let call = h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "bobtag"));
    h.sent_one();
    h.events();

    h.ua.hangup(h.now, call).expect("hangup");
    let bye = h.sent_one();
    assert_in_dialog(&bye, &invite, Method::Bye, 2);
    assert_eq!(hdr(&bye, HeaderName::Authorization), None);
    h.deliver(&challenge(&bye, 401, "nbye1"));
    let bye2 = h.sent_one();
    assert_in_dialog(&bye2, &invite, Method::Bye, 3);
    assert_ne!(branch(&bye2), branch(&bye));
    assert_digest(&hdr(&bye2, HeaderName::Authorization).expect("Authorization"), "BYE", REMOTE_TARGET, "nbye1");
    assert!(h.events().is_empty());
    h.deliver(&respond(&bye2, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::LocalHangup }]);
    assert_eq!(h.ua.call_count(), 0);
}

// ----- 7. 422 -----

/// RFC 4028 section 7.4: 422 with Min-SE: the INVITE is retried with the
/// next CSeq on a new branch, same Call-ID and From tag, Session-Expires
/// and Min-SE raised to the Min-SE of the 422.
#[test]
fn session_interval_too_small_is_retried() {
    let mut cfg = config(Transport::Udp);
    cfg.session_expires = Some(90);
    let mut h = Harness::with_config(cfg);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    assert_eq!(hdr(&invite, HeaderName::SessionExpires).as_deref(), Some("90"));
    assert_eq!(hdr(&invite, HeaderName::MinSe).as_deref(), Some("90"));
    let r422 = with_header(respond(&invite, 422, "Session Interval Too Small", Some("p1")), HeaderName::MinSe, "1800");
    h.deliver(&r422);
    let sent = h.sent();
    assert_eq!(methods(&sent), vec!["ACK", "INVITE"]);
    let (ack, inv2) = (&sent[0], &sent[1]);
    assert_eq!(branch(ack), branch(&invite));
    assert_eq!(hdr(ack, HeaderName::CSeq).as_deref(), Some("1 ACK"));
    assert_eq!(ack.to().expect("to").tag(), Some("p1"));
    assert_eq!(hdr(inv2, HeaderName::CSeq).as_deref(), Some("2 INVITE"));
    assert_ne!(branch(inv2), branch(&invite));
    assert_eq!(inv2.call_id().expect("cid"), invite.call_id().expect("cid"));
    assert_eq!(inv2.headers.get(&HeaderName::From), invite.headers.get(&HeaderName::From));
    assert_eq!(inv2.to().expect("to").tag(), None);
    assert_eq!(ruri(inv2), ruri(&invite));
    assert_eq!(hdr(inv2, HeaderName::SessionExpires).as_deref(), Some("1800"));
    assert_eq!(hdr(inv2, HeaderName::MinSe).as_deref(), Some("1800"), "RFC 4028 7.4: Min-SE of the 422");
    assert!(inv2.headers.has_token(&HeaderName::Supported, "timer"));
    assert_eq!(inv2.body, invite.body);
    assert!(h.events().is_empty());

    let ok = with_header(ok_with_sdp(inv2, "bobtag"), HeaderName::SessionExpires, "1800;refresher=uac");
    h.deliver(&ok);
    let ack = h.sent_one();
    assert_eq!(hdr(&ack, HeaderName::CSeq).as_deref(), Some("2 ACK"));
    assert!(matches!(h.events()[..], [CallEvent::Answered { .. }]));
}

/// A second 422 is final: no retry loop.
#[test]
fn second_422_fails_the_call() {
    let mut cfg = config(Transport::Udp);
    cfg.session_expires = Some(90);
    let mut h = Harness::with_config(cfg);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&with_header(respond(&invite, 422, "Session Interval Too Small", Some("p1")), HeaderName::MinSe, "1800"));
    let inv2 = h.sent().remove(1);
    h.deliver(&with_header(respond(&inv2, 422, "Session Interval Too Small", Some("p2")), HeaderName::MinSe, "3600"));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert_eq!(h.events(), vec![CallEvent::Failed { code: 422, reason: "Session Interval Too Small".into() }]);
    assert_eq!(h.ua.call_count(), 0);
}

// ----- 8. refreshing with re-INVITE -----

/// RFC 4028 section 7.4: as refresher, with a peer that does not allow
/// UPDATE, we refresh at half the interval with a re-INVITE carrying the
/// session description in force; a 481 to a refresh ends the call.
#[test]
fn refresh_by_reinvite_then_481() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, _ok) = answered_with(&mut h, "sip:bob@biloxi.example.com", |ok| {
        ok.headers.push(HeaderName::SessionExpires, "120;refresher=uac");
        ok.headers.push(HeaderName::Require, "timer");
        ok.headers.push(HeaderName::Allow, "INVITE, ACK, CANCEL, BYE, OPTIONS");
    });
    h.advance(Duration::from_millis(59_900));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(100));
    let refresh = h.sent_one();
    assert_in_dialog(&refresh, &invite, Method::Invite, 2);
    assert_eq!(hdr(&refresh, HeaderName::SessionExpires).as_deref(), Some("120;refresher=uac"));
    assert!(refresh.headers.has_token(&HeaderName::Supported, "timer"));
    assert_eq!(hdr(&refresh, HeaderName::ContentType).as_deref(), Some("application/sdp"));
    assert_eq!(refresh.body, first_offer(&h), "the last local SDP");
    let ok2 = with_header(ok_with_sdp(&refresh, "bobtag"), HeaderName::SessionExpires, "120;refresher=uac");
    h.deliver(&ok2);
    let ack = h.sent_one();
    assert_in_dialog(&ack, &invite, Method::Ack, 2);
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 120 }]);

    // A new session description (accepted), then one refused: the refresh
    // carries the one in force, not the refused one (RFC 3261 14.1).
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("reinvite");
    let reinv = h.sent_one();
    assert_in_dialog(&reinv, &invite, Method::Invite, 3);
    h.deliver(&ok_with_sdp(&reinv, "bobtag"));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert!(matches!(h.events()[..], [CallEvent::RemoteAnswer { .. }]));
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER3)).expect("reinvite");
    let reinv = h.sent_one();
    assert_in_dialog(&reinv, &invite, Method::Invite, 4);
    h.deliver(&respond(&reinv, 488, "Not Acceptable Here", None));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert_eq!(h.events(), vec![CallEvent::OfferRejected { code: 488 }]);

    h.advance(Duration::from_secs(60));
    let refresh = h.sent_one();
    assert_in_dialog(&refresh, &invite, Method::Invite, 5);
    assert_eq!(&refresh.body[..], OFFER2, "the SDP in force, not the refused offer");
    assert_eq!(h.elapsed(), Duration::from_secs(120));

    let gone = respond(&refresh, 481, "Call/Transaction Does Not Exist", None);
    h.deliver(&gone);
    let sent = h.sent();
    assert_eq!(methods(&sent), vec!["ACK"], "no BYE into a dialog that is gone");
    assert_eq!(branch(&sent[0]), branch(&refresh));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::DialogGone }]);
    assert_eq!(h.ua.call_count(), 0);
}

// ----- 9. the peer refreshes -----

/// RFC 4028 section 10: with the peer as refresher, each of its refreshes
/// restarts our expiry; when they stop, BYE at interval - min(32, I/3).
#[test]
fn peer_refreshes_keep_the_call_up() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered_with(&mut h, "sip:bob@biloxi.example.com", |ok| {
        ok.headers.push(HeaderName::SessionExpires, "90;refresher=uas");
        ok.headers.push(HeaderName::Require, "timer");
    });
    for n in 1..=5u32 {
        h.advance(Duration::from_secs(45));
        assert!(h.sent().is_empty(), "no BYE while the peer refreshes (refresh {n})");
        let reinv = with_sdp(
            with_header(
                with_header(
                    peer_request(&ok, "INVITE", n, &format!("z9hG4bKrefresh{n}")),
                    HeaderName::SessionExpires,
                    "90;refresher=uac",
                ),
                HeaderName::Supported,
                "timer",
            ),
            PEER_OFFER,
        );
        h.deliver(&reinv);
        assert_answers(&h.sent_one(), &reinv, 100);
        assert_eq!(
            h.events(),
            vec![
                CallEvent::SessionRefreshed { interval: 90 },
                CallEvent::RemoteOffer { sdp: Bytes::from_static(PEER_OFFER), kind: OfferKind::ReInvite }
            ]
        );
        h.ua.answer(h.now, call, Bytes::from_static(OUR_ANSWER)).expect("answer");
        let r = h.sent_one();
        assert_answers(&r, &reinv, 200);
        assert_eq!(hdr(&r, HeaderName::SessionExpires).as_deref(), Some("90;refresher=uac"));
        assert_eq!(hdr(&r, HeaderName::Require).as_deref(), Some("timer"));
        h.deliver(&peer_request(&ok, "ACK", n, &format!("z9hG4bKrefreshack{n}")));
    }
    assert_eq!(h.elapsed(), Duration::from_secs(225));
    h.advance(Duration::from_millis(59_900));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(100));
    let bye = h.sent_one();
    assert_in_dialog(&bye, &invite, Method::Bye, 2);
    assert_eq!(h.elapsed(), Duration::from_secs(285));
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::SessionExpired }]);
}

/// RFC 4028 §9: a refresh asking for less than our Min-SE (90 s) is refused with 422 and our
/// Min-SE when the far end supports timers (it asks again), and raised to it when it does not
/// (then we refresh). A 2xx answering below our Min-SE is not followed there either: no refresh
/// every half second.
#[test]
fn session_intervals_below_min_se_are_refused_or_raised() {
    let mut h = Harness::new(Transport::Udp);
    let (call, _invite, ok) = answered_with(&mut h, "sip:bob@biloxi.example.com", |_| {});
    let small = |n: u32, supported: bool| {
        let r = with_header(
            peer_request(&ok, "UPDATE", n, &format!("z9hG4bKsmall{n}")),
            HeaderName::SessionExpires,
            "1;refresher=uas",
        );
        if supported {
            with_header(r, HeaderName::Supported, "timer")
        } else {
            r
        }
    };
    let refused = small(1, true);
    h.deliver(&refused);
    let r = h.sent_one();
    assert_answers(&r, &refused, 422);
    assert_eq!(hdr(&r, HeaderName::MinSe).as_deref(), Some("90"));
    assert!(h.events().is_empty(), "nothing reported for a refused refresh");

    let raised = small(2, false);
    h.deliver(&raised);
    let r = h.sent_one();
    assert_answers(&r, &raised, 200);
    assert_eq!(hdr(&r, HeaderName::SessionExpires).as_deref(), Some("90;refresher=uas"), "raised, and ours to refresh");
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 90 }]);
    h.advance(Duration::from_secs(44));
    assert!(h.sent().is_empty(), "no refresh before half of 90 s");
    h.advance(Duration::from_secs(1));
    let refresh = h.sent_one();
    assert!(matches!(refresh.method(), Some(Method::Update | Method::Invite)), "{}", start(&refresh));
    let _ = call;

    let mut h = Harness::new(Transport::Udp);
    let _ = answered_with(&mut h, "sip:bob@biloxi.example.com", |ok| {
        ok.headers.push(HeaderName::SessionExpires, "1;refresher=uac");
        ok.headers.push(HeaderName::Require, "timer");
    });
    h.advance(Duration::from_secs(44));
    assert!(h.sent().is_empty(), "a 1 s interval answered is not refreshed every half second");
    h.advance(Duration::from_secs(1));
    assert!(matches!(h.sent_one().method(), Some(Method::Update | Method::Invite)));
}

// ----- 10. CSeq order -----

/// RFC 3261 12.2.2: a request with a CSeq lower than (or equal to) the last
/// one from the peer gets 500 and no event.
#[test]
fn lower_cseq_gets_500() {
    let mut h = Harness::new(Transport::Udp);
    let (_call, _invite, ok) = answered(&mut h);
    let info = with_body(peer_request(&ok, "INFO", 5, "z9hG4bKc5"), "application/dtmf-relay", DTMF);
    h.deliver(&info);
    assert_answers(&h.sent_one(), &info, 200);
    assert_eq!(h.events().len(), 1);
    for (n, method, br) in [(4, "INFO", "z9hG4bKc4"), (5, "INFO", "z9hG4bKc5b"), (3, "INVITE", "z9hG4bKc3")] {
        let old = with_body(peer_request(&ok, method, n, br), "application/sdp", PEER_OFFER);
        h.deliver(&old);
        let r = h.sent_one();
        assert_answers(&r, &old, 500);
        assert!(h.events().is_empty(), "{method} {n}: no event");
    }
    let next = peer_request(&ok, "OPTIONS", 6, "z9hG4bKc6");
    h.deliver(&next);
    let r = h.sent_one();
    assert_answers(&r, &next, 200);
    assert_eq!(hdr(&r, HeaderName::Allow).as_deref(), Some(ALLOW));
    assert_eq!(h.ua.call_count(), 1);
}

// ----- 11. requests we do not take -----

/// A wrong remote tag is outside the dialog: 481, no event. Unknown methods
/// get 501, known ones we do not do (REFER) 405 with Allow.
#[test]
fn foreign_tag_unknown_method_and_refer() {
    let mut h = Harness::new(Transport::Udp);
    let (_call, _invite, ok) = answered(&mut h);
    let txs = h.ua.transaction_count();

    let mut bye = peer_request(&ok, "BYE", 1, "z9hG4bKwrongtag");
    let from = hdr(&bye, HeaderName::From).expect("from").replace("tag=bobtag", "tag=mallory");
    bye.headers.set(HeaderName::From, from);
    h.deliver(&bye);
    let r = h.sent_one();
    assert_answers(&r, &bye, 481);
    assert!(h.events().is_empty());
    assert_eq!(h.ua.call_count(), 1);
    assert_eq!(h.ua.transaction_count(), txs, "answered statelessly");

    let foo = peer_request(&ok, "FOO", 2, "z9hG4bKfoo");
    h.deliver(&foo);
    let r = h.sent_one();
    assert_answers(&r, &foo, 501);
    assert!(h.events().is_empty());

    let refer =
        with_header(peer_request(&ok, "REFER", 3, "z9hG4bKrefer"), HeaderName::ReferTo, "<sip:carol@192.0.2.99>");
    h.deliver(&refer);
    let r = h.sent_one();
    assert_answers(&r, &refer, 405);
    assert_eq!(hdr(&r, HeaderName::Allow).as_deref(), Some(ALLOW));
    assert!(h.events().is_empty());
    assert_eq!(h.ua.call_count(), 1);
}

// ----- 12. ring timeout -----

/// Ringing too long: CANCEL at the ring timeout, and after the 487 the
/// call fails with 408.
#[test]
fn ring_timeout_cancels() {
    let mut cfg = config(Transport::Udp);
    cfg.ring_timeout = Some(Duration::from_secs(5));
    let mut h = Harness::with_config(cfg);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    assert_eq!(h.events(), vec![CallEvent::Ringing { code: 180 }]);
    h.advance(Duration::from_millis(4_900));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(100));
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(hdr(&cancel, HeaderName::CSeq).as_deref(), Some("1 CANCEL"));
    assert_eq!(branch(&cancel), branch(&invite));
    assert_eq!(ruri(&cancel), ruri(&invite));
    assert_eq!(cancel.headers.get(&HeaderName::From), invite.headers.get(&HeaderName::From));
    assert_eq!(cancel.headers.get(&HeaderName::To), invite.headers.get(&HeaderName::To));
    assert_eq!(cancel.call_id().expect("cid"), invite.call_id().expect("cid"));
    assert!(h.events().is_empty());
    h.deliver(&respond(&cancel, 200, "OK", None));
    assert!(h.sent().is_empty());
    h.deliver(&respond(&invite, 487, "Request Terminated", Some("b")));
    let ack = h.sent_one();
    assert_eq!(hdr(&ack, HeaderName::CSeq).as_deref(), Some("1 ACK"));
    assert_eq!(branch(&ack), branch(&invite));
    assert_eq!(h.events(), vec![CallEvent::Failed { code: 408, reason: "Request Timeout (no answer)".into() }]);
    assert_eq!(h.ua.call_count(), 0);
}

/// A call that rang (180) for the whole 5 s ring timeout: the harness, its INVITE and the
/// CANCEL the timeout sent.
fn rung_out() -> (Harness, Message, Message) {
    let mut cfg = config(Transport::Udp);
    cfg.ring_timeout = Some(Duration::from_secs(5));
    let mut h = Harness::with_config(cfg);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.events();
    h.advance(Duration::from_secs(5));
    let cancel = h.sent_one();
    (h, invite, cancel)
}

/// RFC 3261 9.1: when the 487 never comes, the INVITE is given up 64*T1
/// after the CANCEL.
#[test]
fn cancelled_invite_without_final_response_is_given_up() {
    let (mut h, _invite, cancel) = rung_out();
    h.deliver(&respond(&cancel, 200, "OK", None));
    h.advance(Duration::from_millis(31_900));
    assert!(h.events().is_empty());
    h.advance(Duration::from_millis(100));
    assert_eq!(h.events(), vec![CallEvent::Failed { code: 408, reason: "Request Timeout".into() }]);
    assert_eq!(h.ua.call_count(), 0);
    assert!(h.sent().is_empty());

    // The same after a hang-up while ringing: the call ends as cancelled,
    // even though the ring timeout passes while the 487 is awaited.
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
    let cancel = h.sent_one();
    h.deliver(&respond(&cancel, 200, "OK", None));
    h.advance(Duration::from_secs(32));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::Cancelled }]);
    assert_eq!(h.ua.call_count(), 0);
}

/// The ring timeout's CANCEL crossed by the far end's 200: ACK, BYE, and the call ends as a
/// no-answer, as the 487 would have made it (not as a cancellation by us).
#[test]
fn ring_timeout_crossed_by_the_answer_is_a_no_answer() {
    let (mut h, invite, cancel) = rung_out();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    h.deliver(&ok_with_sdp(&invite, "b"));
    let sent = h.sent();
    assert_eq!(methods(&sent), vec!["ACK", "BYE"], "the crossing answer ACKed and ended");
    let bye = sent.into_iter().find(|m| m.method() == Some(&Method::Bye)).expect("BYE");
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::NoAnswer }]);
}

/// A hang-up while ringing stays a cancellation when the ring timeout
/// passes before the 487: no second CANCEL, no "no answer" failure.
#[test]
fn hangup_then_ring_timeout_stays_cancelled() {
    let mut cfg = config(Transport::Udp);
    cfg.ring_timeout = Some(Duration::from_secs(5));
    let mut h = Harness::with_config(cfg);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.events();
    h.advance(Duration::from_secs(2));
    h.ua.hangup(h.now, call).expect("hangup");
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(branch(&cancel), branch(&invite));
    h.deliver(&respond(&cancel, 200, "OK", None));
    h.advance(Duration::from_secs(4));
    assert!(h.sent().is_empty(), "one CANCEL only");
    assert!(h.events().is_empty());
    h.deliver(&respond(&invite, 487, "Request Terminated", Some("b")));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::Cancelled }]);
}

// ----- 13. transport errors -----

/// RFC 3261 8.1.3.1: a transport error before any response fails the call
/// with 503; a broken connection under an answered call ends it.
#[test]
fn transport_errors() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let _invite = h.sent_one();
    let peer = h.peer();
    h.ua.handle_transport_error(h.now, &peer);
    assert_eq!(
        h.events(),
        vec![CallEvent::Failed { code: 503, reason: "Service Unavailable (transport failure)".into() }]
    );
    assert_eq!(h.ua.call_count(), 0);
    h.advance(Duration::from_secs(40));
    assert!(h.sent().is_empty(), "no retransmission of the failed INVITE");
    assert_eq!(h.ua.transaction_count(), 0);

    let mut h = Harness::new(Transport::Tcp);
    let (call, _invite, _ok) = answered_with(&mut h, "sip:bob@biloxi.example.com;transport=tcp", |_| {});
    // Another connection failing changes nothing.
    let other = Target::new(Transport::Tcp, "192.0.2.99:5060".parse().expect("addr"));
    h.ua.handle_transport_error(h.now, &other);
    assert!(h.events().is_empty());
    assert_eq!(h.ua.call_count(), 1);
    let peer = h.peer();
    h.ua.handle_transport_error(h.now, &peer);
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::TransportFailure }]);
    assert!(h.sent().is_empty());
    assert_eq!(h.ua.call_count(), 0);
    assert!(matches!(h.ua.hangup(h.now, call), Err(Error::UnknownCall)));
}

/// A connection under an answered call that closes cleanly is not an error
/// in itself: the peer is probed with an in-dialog OPTIONS over a new
/// connection. An answer (even 405) keeps the call; a refused connection, or
/// 481, ends it.
#[test]
fn closed_connection_probes_the_dialog() {
    let mut h = Harness::new(Transport::Tcp);
    let (_call, invite, _ok) = answered_with(&mut h, "sip:bob@biloxi.example.com;transport=tcp", |_| {});
    let peer = h.peer();
    // UDP "connections" and other connections do not matter.
    h.ua.handle_connection_closed(h.now, &Target::new(Transport::Udp, PEER.parse().expect("addr")));
    h.ua.handle_connection_closed(h.now, &Target::new(Transport::Tcp, "192.0.2.99:5060".parse().expect("addr")));
    assert!(h.sent().is_empty());

    let mut cseq = seq(&invite);
    for answer in [200, 405] {
        h.ua.handle_connection_closed(h.now, &peer);
        let sent = h.sent_with_targets();
        assert_eq!(sent.len(), 1, "one probe");
        let (to, options) = &sent[0];
        assert_eq!(to, &peer, "over the dialog's transport");
        cseq += 1;
        assert_in_dialog(options, &invite, Method::Options, cseq);
        assert_eq!(hdr(options, HeaderName::Accept).as_deref(), Some("application/sdp"));
        // A second close while the probe is out sends nothing more.
        h.ua.handle_connection_closed(h.now, &peer);
        assert!(h.sent().is_empty());
        h.deliver(&respond(options, answer, "whatever", Some("bobtag")));
        assert!(h.events().is_empty(), "{answer} keeps the call up");
        assert_eq!(h.ua.call_count(), 1);
    }

    // The peer is gone: the new connection is refused.
    h.ua.handle_connection_closed(h.now, &peer);
    assert_eq!(h.sent().len(), 1);
    h.ua.handle_transport_error(h.now, &peer);
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::TransportFailure }]);
    assert_eq!(h.ua.call_count(), 0);
    h.advance(Duration::from_secs(40));
    assert!(h.sent().is_empty(), "nothing more to a dead peer");

    // The peer restarted and forgot the dialog: 481.
    let mut h = Harness::new(Transport::Tcp);
    let _ = answered_with(&mut h, "sip:bob@biloxi.example.com;transport=tcp", |_| {});
    let peer = h.peer();
    h.ua.handle_connection_closed(h.now, &peer);
    let options = h.sent_one();
    h.deliver(&respond(&options, 481, "Call/Transaction Does Not Exist", Some("bobtag")));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::DialogGone }]);
    assert_eq!(h.ua.call_count(), 0);
}

// ----- 14. routing -----

/// RFC 3261 12.1.2 / 12.2.1.1: the Record-Route of the 200, reversed, is
/// the Route of the ACK and the BYE; their Request-URI is the Contact of
/// the 200 and they go to the first route.
#[test]
fn record_route_becomes_route() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let mut ok = ok_with_sdp(&invite, "bobtag");
    ok.headers.push(HeaderName::RecordRoute, "<sip:192.0.2.30;lr>, <sip:192.0.2.31:5070;lr>");
    ok.headers.push(HeaderName::RecordRoute, "<sip:192.0.2.32;lr;transport=udp>");
    ok.headers.set(HeaderName::Contact, "<sip:bob@198.51.100.7:5080>");
    h.deliver(&ok);
    let proxy = Target::new(Transport::Udp, "192.0.2.32:5060".parse().expect("addr"));
    let routes = ["<sip:192.0.2.32;lr;transport=udp>", "<sip:192.0.2.31:5070;lr>", "<sip:192.0.2.30;lr>"];
    let sent = h.sent_with_targets();
    assert_eq!(sent.len(), 1);
    let (target, ack) = &sent[0];
    assert_eq!(target, &proxy);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ruri(ack), "sip:bob@198.51.100.7:5080");
    assert_eq!(ack.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(), routes);
    assert!(matches!(h.events()[..], [CallEvent::Answered { .. }]));

    h.ua.hangup(h.now, call).expect("hangup");
    let sent = h.sent_with_targets();
    assert_eq!(sent.len(), 1);
    let (target, bye) = &sent[0];
    assert_eq!(target, &proxy);
    assert_eq!(hdr(bye, HeaderName::CSeq).as_deref(), Some("2 BYE"));
    assert_eq!(ruri(bye), "sip:bob@198.51.100.7:5080");
    assert_eq!(bye.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(), routes);
    h.deliver(&respond(bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::LocalHangup }]);
}

// ----- 15. retransmissions -----

/// RFC 3261 17.2.2: a retransmitted BYE gets the identical 200 while the
/// server transaction lives (Timer J, 64*T1 over UDP), and a stateless 481
/// after it.
#[test]
fn retransmitted_bye_gets_the_same_200() {
    let mut h = Harness::new(Transport::Udp);
    let (_call, _invite, ok) = answered(&mut h);
    let bye = peer_request(&ok, "BYE", 1, "z9hG4bKbye1");
    h.deliver(&bye);
    let r = h.sent_one();
    assert_answers(&r, &bye, 200);
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::RemoteHangup }]);
    for _ in 0..3 {
        h.advance(Duration::from_secs(4));
        h.deliver(&bye);
        assert_eq!(h.sent_one().to_bytes(), r.to_bytes());
    }
    assert!(h.events().is_empty(), "no second event");
    h.advance(Duration::from_secs(21));
    assert_eq!(h.ua.transaction_count(), 0);
    h.deliver(&bye);
    assert_answers(&h.sent_one(), &bye, 481);
}

/// RFC 3261 13.3.1.4: our 2xx to a re-INVITE is resent at T1, 2*T1... (up
/// to T2) until the ACK, which stops it.
#[test]
fn ack_stops_2xx_retransmissions() {
    let mut h = Harness::new(Transport::Udp);
    let (call, _invite, ok) = answered(&mut h);
    let reinv = with_sdp(peer_request(&ok, "INVITE", 1, "z9hG4bKre1"), PEER_OFFER);
    h.deliver(&reinv);
    assert_answers(&h.sent_one(), &reinv, 100);
    h.events();
    h.ua.answer(h.now, call, Bytes::from_static(OUR_ANSWER)).expect("answer");
    let r = h.sent_one();
    assert_answers(&r, &reinv, 200);
    for (wait, expect) in [(500, 1), (999, 0), (1, 1), (1_999, 0), (1, 1)] {
        h.advance(Duration::from_millis(wait));
        let sent = h.sent();
        assert_eq!(sent.len(), expect, "at {:?}", h.elapsed());
        assert!(sent.iter().all(|m| m.to_bytes() == r.to_bytes()));
    }
    // The re-INVITE retransmitted: the same 200 from the server transaction.
    h.deliver(&reinv);
    assert_eq!(h.sent_one().to_bytes(), r.to_bytes());
    assert!(h.events().is_empty());
    h.deliver(&peer_request(&ok, "ACK", 1, "z9hG4bKre1ack"));
    assert!(h.events().is_empty(), "no answer expected in this ACK");
    h.advance(Duration::from_secs(60));
    assert!(h.sent().is_empty(), "the ACK stopped the retransmissions, and no BYE");
    assert_eq!(h.ua.call_count(), 1);
}

/// RFC 3261 13.3.1.4: no ACK within 64*T1 ends the call with BYE.
#[test]
fn no_ack_ends_the_call() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered(&mut h);
    let reinv = with_sdp(peer_request(&ok, "INVITE", 1, "z9hG4bKre1"), PEER_OFFER);
    h.deliver(&reinv);
    assert_answers(&h.sent_one(), &reinv, 100);
    h.events();
    h.ua.answer(h.now, call, Bytes::from_static(OUR_ANSWER)).expect("answer");
    let r = h.sent_one();
    h.advance(Duration::from_millis(31_900));
    let sent = h.sent();
    // T1 doubling capped at T2: 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s.
    assert_eq!(sent.len(), 10);
    assert!(sent.iter().all(|m| m.to_bytes() == r.to_bytes()));
    h.advance(Duration::from_millis(100));
    let bye = h.sent_one();
    assert_in_dialog(&bye, &invite, Method::Bye, 2);
    assert!(h.events().is_empty());
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::AckTimeout }]);
}

// ----- 16. stream framing -----

/// RFC 3261 18.3 over TCP: pipelined and split messages are framed by
/// Content-Length; RFC 5626 CRLFCRLF pings get a CRLF pong.
#[test]
fn tcp_stream_framing() {
    let mut h = Harness::new(Transport::Tcp);
    let call = h.dial("sip:bob@biloxi.example.com;transport=tcp");
    let invite = h.sent_one();
    let peer = h.peer();

    // Two responses in one read.
    let ok = ok_with_sdp(&invite, "bobtag");
    let mut chunk = respond(&invite, 180, "Ringing", Some("bobtag")).to_bytes();
    chunk.extend_from_slice(&ok.to_bytes());
    h.ua.handle_input(h.now, peer.clone(), &chunk);
    let ack = h.sent_one();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.top_via().expect("via").transport, "TCP");
    assert_eq!(h.events(), vec![CallEvent::Ringing { code: 180 }, CallEvent::Answered { sdp: Some(ok.body.clone()) }]);

    // One response in three reads: the head split mid-line, then the body.
    h.ua.info(h.now, call, "application/dtmf-relay", Bytes::from_static(DTMF)).expect("info");
    let info = h.sent_one();
    let mut resp = respond(&info, 200, "OK", None);
    resp.headers.push(HeaderName::ContentType, "text/plain");
    resp.body = Bytes::from_static(b"all good");
    let bytes = resp.to_bytes();
    let body_at = bytes.len() - resp.body.len();
    for part in [&bytes[..20], &bytes[20..body_at + 3]] {
        h.ua.handle_input(h.now, peer.clone(), part);
        assert!(h.events().is_empty());
        assert!(h.sent_raw().is_empty());
    }
    h.ua.handle_input(h.now, peer.clone(), &bytes[body_at + 3..]);
    assert_eq!(h.events(), vec![CallEvent::InfoResponse { code: 200 }]);

    // Keep-alives: a ping gets a pong, a pong gets nothing.
    h.ua.handle_input(h.now, peer.clone(), b"\r\n\r\n");
    assert_eq!(h.sent_raw(), vec![(peer.clone(), b"\r\n".to_vec())]);
    h.ua.handle_input(h.now, peer.clone(), b"\r\n");
    assert!(h.sent_raw().is_empty());

    // A ping pipelined in front of a request.
    let mut chunk = b"\r\n\r\n".to_vec();
    let bye = peer_request(&ok, "BYE", 1, "z9hG4bKtcpbye");
    chunk.extend_from_slice(&bye.to_bytes());
    h.ua.handle_input(h.now, peer.clone(), &chunk);
    let sent = h.sent_raw();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], (peer.clone(), b"\r\n".to_vec()));
    assert_eq!(sent[1].0, peer);
    assert!(sent[1].1.starts_with(b"SIP/2.0 200 OK\r\n"));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::RemoteHangup }]);
    assert_eq!(h.ua.stats().malformed, 0);
}

// ----- more: retries keep what they retry -----

/// RFC 3261 22.2: a challenged INFO is sent again with its body.
#[test]
fn challenged_info_keeps_its_body() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    let call = h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "bobtag"));
    h.sent_one();
    h.events();
    h.ua.info(h.now, call, "application/dtmf-relay", Bytes::from_static(DTMF)).expect("info");
    let info = h.sent_one();
    h.deliver(&challenge(&info, 407, "ninfo"));
    let info2 = h.sent_one();
    assert_in_dialog(&info2, &invite, Method::Info, 3);
    assert_eq!(hdr(&info2, HeaderName::ContentType).as_deref(), Some("application/dtmf-relay"));
    assert_eq!(&info2.body[..], DTMF);
    assert_digest(&hdr(&info2, HeaderName::ProxyAuthorization).expect("auth"), "INFO", REMOTE_TARGET, "ninfo");
    h.deliver(&respond(&info2, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::InfoResponse { code: 200 }]);
}

/// A challenged session refresh is sent again as a refresh: same SDP,
/// same Session-Expires.
#[test]
fn challenged_refresh_stays_a_refresh() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    let ok = with_header(ok_with_sdp(&invite, "bobtag"), HeaderName::SessionExpires, "120;refresher=uac");
    h.deliver(&ok);
    h.sent_one();
    h.events();
    h.advance(Duration::from_secs(60));
    let refresh = h.sent_one();
    assert_in_dialog(&refresh, &invite, Method::Invite, 2);
    h.deliver(&challenge(&refresh, 401, "nref"));
    let sent = h.sent();
    assert_eq!(methods(&sent), vec!["ACK", "INVITE"]);
    let again = &sent[1];
    assert_in_dialog(again, &invite, Method::Invite, 3);
    assert_eq!(again.body, first_offer(&h));
    assert_eq!(hdr(again, HeaderName::ContentType).as_deref(), Some("application/sdp"));
    assert_eq!(hdr(again, HeaderName::SessionExpires).as_deref(), Some("120;refresher=uac"));
    assert!(again.headers.has_token(&HeaderName::Supported, "timer"));
    assert_digest(&hdr(again, HeaderName::Authorization).expect("auth"), "INVITE", REMOTE_TARGET, "nref");
    h.deliver(&with_header(ok_with_sdp(again, "bobtag"), HeaderName::SessionExpires, "120;refresher=uac"));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 120 }]);
}

/// RFC 3261 14.1: while our refresh re-INVITE is pending, no second INVITE
/// goes out and the peer's re-INVITE is glare (491).
#[test]
fn refresh_reinvite_is_an_invite_in_progress() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, ok) = answered_with(&mut h, "sip:bob@biloxi.example.com", |ok| {
        ok.headers.push(HeaderName::SessionExpires, "120;refresher=uac");
    });
    h.advance(Duration::from_secs(60));
    let refresh = h.sent_one();
    assert_in_dialog(&refresh, &invite, Method::Invite, 2);
    h.deliver(&respond(&refresh, 100, "Trying", None));
    let e = h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect_err("INVITE in progress");
    assert!(matches!(e, Error::InvalidState(_)), "{e:?}");
    assert!(h.sent().is_empty());
    let theirs = with_sdp(peer_request(&ok, "INVITE", 1, "z9hG4bKcross"), PEER_OFFER);
    h.deliver(&theirs);
    assert_answers(&h.sent_one(), &theirs, 491);
    assert!(h.events().is_empty());
    h.deliver(&peer_request(&ok, "ACK", 1, "z9hG4bKcross"));
    h.deliver(&with_header(ok_with_sdp(&refresh, "bobtag"), HeaderName::SessionExpires, "120;refresher=uac"));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 120 }]);
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("reinvite once the refresh is done");
    assert_in_dialog(&h.sent_one(), &invite, Method::Invite, 3);
}

// ----- redirects -----

/// RFC 3261 §8.1.3.4: a 3xx ends this attempt (ACKed by the transaction) with its `Contact`
/// targets, best `q` first, ties in the order written, anything but sip:, sips: and tel: left
/// out; the call is gone from the user agent (the driver places the next attempt). A 3xx without
/// a usable target, or a 380, is a failure as before.
#[test]
fn a_redirect_reports_its_targets_best_first() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let contacts = "<sip:low@192.0.2.7>;q=0.2, \"Desk\" <sip:desk@192.0.2.8:5070>;q=0.9, <mailto:bob@biloxi.example.com>, <sip:plain@192.0.2.9>, not a uri, <tel:+15551234567>;q=0.9";
    h.deliver(&with_header(respond(&invite, 302, "Moved Temporarily", Some("r1")), HeaderName::Contact, contacts));
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    let events = h.events();
    let [CallEvent::Redirected { code: 302, reason, contacts }] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(reason, "Moved Temporarily");
    let order: Vec<String> = contacts.iter().map(ToString::to_string).collect();
    assert_eq!(order, ["sip:plain@192.0.2.9", "sip:desk@192.0.2.8:5070", "tel:+15551234567", "sip:low@192.0.2.7"]);
    assert_eq!(h.ua.call_count(), 0);

    for (code, contact) in [(302, "<mailto:x@y>"), (380, "<sip:ivr@192.0.2.7>")] {
        let mut h = Harness::new(Transport::Udp);
        h.dial("sip:bob@biloxi.example.com");
        let invite = h.sent_one();
        h.deliver(&with_header(respond(&invite, code, "Moved", Some("r2")), HeaderName::Contact, contact));
        assert_eq!(h.events(), vec![CallEvent::Failed { code, reason: "Moved".into() }], "{code} {contact}");
    }
}

/// A re-INVITE the far end answers only with a 100 is not waited for forever (there is no ring
/// timer for it): 64*T1 after the 100 the dialog is taken as gone (RFC 3261 §12.2.1.2) and ended
/// with a BYE, and no transaction of the call outlives it.
#[test]
fn a_re_invite_left_in_proceeding_ends_the_dialog() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, _ok) = answered(&mut h);
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("re-INVITE");
    let reinvite = h.sent_one();
    assert_in_dialog(&reinvite, &invite, Method::Invite, seq(&invite) + 1);
    h.deliver(&respond(&reinvite, 100, "Trying", Some("bobtag")));
    h.advance(Duration::from_secs(31));
    assert!(h.sent().is_empty() && h.events().is_empty());
    h.advance(Duration::from_millis(1200));
    let bye = h.sent_one();
    assert_in_dialog(&bye, &invite, Method::Bye, seq(&invite) + 2);
    h.deliver(&respond(&bye, 200, "OK", Some("bobtag")));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::DialogGone }]);
    h.advance(Duration::from_secs(40));
    assert_eq!((h.ua.call_count(), h.ua.transaction_count()), (0, 0));
}

/// A flood of in-dialog requests does not grow the timer heap with each one: the call's deadline
/// is scheduled once (the far end chose a session interval of days, which we do not take either:
/// a UAS may only lower what we asked, RFC 4028 §9).
#[test]
fn a_flood_of_requests_does_not_grow_the_timer_heap() {
    let mut h = Harness::new(Transport::Udp);
    let (_call, ok) = answered_with_timer(&mut h, "4000000;refresher=uac", None);
    let before = h.ua.timer_entries();
    for n in 0..2000u32 {
        h.deliver(&peer_request(&ok, "OPTIONS", 10 + n, &format!("z9hG4bKflood{n}")));
        h.sent();
    }
    // Each OPTIONS has its own server transaction (with a deadline); the call itself adds none.
    let after = h.ua.timer_entries();
    assert!(after <= before + 2000 + 2, "{before} entries, then {after} after 2000 requests");
    h.advance(Duration::from_secs(40));
    assert!(h.ua.timer_entries() <= before + 2, "{} entries once the transactions ended", h.ua.timer_entries());
    // Our refresh (a re-INVITE: the far end's Allow does not list UPDATE) comes at half the
    // interval we asked (1800 s), not at 2,000,000 s.
    h.advance(Duration::from_secs(850));
    assert!(h.sent().is_empty(), "nothing before the refresh");
    h.advance(Duration::from_secs(20));
    assert_eq!(h.sent().first().and_then(Message::method), Some(&Method::Invite));
}

/// A 2xx to our re-INVITE that crosses our BYE is ACKed all the same (RFC 3261 §13.2.2.4), not
/// left to be retransmitted for 64*T1.
#[test]
fn a_re_invite_2xx_crossing_our_bye_is_acked() {
    let mut h = Harness::new(Transport::Udp);
    let (call, invite, _ok) = answered(&mut h);
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("re-INVITE");
    let reinvite = h.sent_one();
    h.ua.hangup(h.now, call).expect("hangup");
    let bye = h.sent_one();
    assert_in_dialog(&bye, &invite, Method::Bye, seq(&invite) + 2);
    h.deliver(&with_sdp(respond(&reinvite, 200, "OK", Some("bobtag")), PEER_OFFER));
    let ack = h.sent_one();
    assert_in_dialog(&ack, &invite, Method::Ack, seq(&reinvite));
    h.deliver(&respond(&bye, 200, "OK", Some("bobtag")));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::LocalHangup }]);
    // Our ACK was lost: the 2xx comes again after the call is gone, and gets the same ACK; one
    // for another CSeq or dialog does not, and after 64*T1 nothing is kept.
    let reinvite_ok = with_sdp(respond(&reinvite, 200, "OK", Some("bobtag")), PEER_OFFER);
    h.advance(Duration::from_millis(500));
    h.deliver(&reinvite_ok);
    assert_eq!(h.sent_one().to_bytes(), ack.to_bytes(), "the same ACK again");
    h.deliver(&with_sdp(respond(&invite, 200, "OK", Some("bobtag")), PEER_OFFER));
    assert!(h.sent().is_empty(), "not the ACK of the INVITE's 2xx");
    let mut forked = reinvite_ok.clone();
    for hd in forked.headers.0.iter_mut().filter(|hd| hd.name == HeaderName::To) {
        hd.value = hd.value.replace("tag=bobtag", "tag=othertag");
    }
    h.deliver(&forked);
    assert!(h.sent().is_empty(), "not the ACK of another dialog's 2xx");
    h.advance(Duration::from_secs(32));
    h.deliver(&reinvite_ok);
    assert!(h.sent().is_empty(), "forgotten after 64*T1");
}

/// A session refresh that falls due while an offer exchange is under way waits for it, and is
/// sent once that exchange failed (before, it was marked as sent and never sent: the session
/// expired and we hung up).
#[test]
fn a_refresh_due_during_a_failed_offer_exchange_is_sent_after_it() {
    let mut h = Harness::new(Transport::Udp);
    let (call, _ok) = answered_with_timer(&mut h, "120;refresher=uac", Some("INVITE, ACK, BYE, UPDATE"));
    h.advance(Duration::from_secs(59));
    h.ua.reinvite(h.now, call, Bytes::from_static(OFFER2)).expect("re-INVITE");
    let reinvite = h.sent_one();
    // The refresh falls due at 60 s, during the exchange: nothing else is sent.
    h.deliver(&respond(&reinvite, 100, "Trying", Some("bobtag")));
    h.advance(Duration::from_millis(1500));
    assert!(h.sent().is_empty());
    h.deliver(&respond(&reinvite, 488, "Not Acceptable Here", Some("bobtag")));
    let ack = h.sent_one();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(h.events(), vec![CallEvent::OfferRejected { code: 488 }]);
    h.advance(Duration::from_millis(2100));
    let sent = h.sent();
    let refresh = sent.first().expect("a refresh");
    assert_eq!(refresh.method(), Some(&Method::Update), "the refresh, after the failed exchange");
    assert_eq!(hdr(refresh, HeaderName::SessionExpires).as_deref(), Some("120;refresher=uac"));
}

/// An outbound proxy (RFC 3261 §8.1.2): the INVITE goes to the proxy's address with a Route
/// naming it (loose routing added) and the callee in its Request-URI; its CANCEL carries the same
/// Route. A dialog whose 2xx brought no Record-Route keeps going through the proxy (ACK and BYE
/// to it, with the Route, the Request-URI the far end's Contact); one with a Record-Route follows
/// that instead.
#[test]
fn an_outbound_proxy_carries_every_request() {
    let proxy = sip_signaling::Uri::parse("sip:sbc.carrier.example").expect("uri");
    let dial = |h: &mut Harness| {
        let mut req = h.request("sip:+15551234@carrier.example");
        req.route = vec![proxy.clone()];
        h.ua.call(h.now, req).expect("call")
    };
    let mut h = Harness::new(Transport::Udp);
    let call = dial(&mut h);
    let (to, invite) = h.sent_with_targets().remove(0);
    assert_eq!(to, h.peer(), "to the destination (the proxy's address, which the driver resolves)");
    assert_eq!(ruri(&invite), "sip:+15551234@carrier.example");
    assert_eq!(hdr(&invite, HeaderName::Route).as_deref(), Some("<sip:sbc.carrier.example;lr>"));
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.ua.hangup(h.now, call).expect("hangup");
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(hdr(&cancel, HeaderName::Route).as_deref(), Some("<sip:sbc.carrier.example;lr>"));

    // Answered without a Record-Route: in-dialog requests go through the proxy too.
    let mut h = Harness::new(Transport::Udp);
    let call = dial(&mut h);
    let invite = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "bobtag"));
    let (to, ack) = h.sent_with_targets().remove(0);
    assert_eq!((ack.method(), to), (Some(&Method::Ack), h.peer()));
    assert_eq!(ruri(&ack), REMOTE_TARGET);
    assert_eq!(hdr(&ack, HeaderName::Route).as_deref(), Some("<sip:sbc.carrier.example;lr>"));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
    let (to, bye) = h.sent_with_targets().remove(0);
    assert_eq!((bye.method(), to), (Some(&Method::Bye), h.peer()));
    assert_eq!(hdr(&bye, HeaderName::Route).as_deref(), Some("<sip:sbc.carrier.example;lr>"));

    // With a Record-Route, that is the route set.
    let mut h = Harness::new(Transport::Udp);
    let call = dial(&mut h);
    let invite = h.sent_one();
    h.deliver(&with_header(ok_with_sdp(&invite, "bobtag"), HeaderName::RecordRoute, "<sip:192.0.2.77;lr>"));
    let (to, ack) = h.sent_with_targets().remove(0);
    assert_eq!(to, Target::new(Transport::Udp, "192.0.2.77:5060".parse().expect("addr")));
    assert_eq!(hdr(&ack, HeaderName::Route).as_deref(), Some("<sip:192.0.2.77;lr>"));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
}

/// Two stream connections with one address (a far end that connects back from the port ours went
/// to, as stacks that reuse their listening port do) are framed apart: a message on one arriving
/// between the halves of a message on the other corrupts neither. A connection that is gone
/// leaves nothing behind for the next one with its id.
#[test]
fn two_connections_with_one_address_are_framed_apart() {
    let mut h = Harness::new(Transport::Tcp);
    h.dial("sip:bob@biloxi.example.com;transport=tcp");
    let invite = h.sent_one();
    let peer = h.peer();
    let ringing = respond(&invite, 180, "Ringing", Some("bobtag")).to_bytes();
    let progress = respond(&invite, 183, "Session Progress", Some("bobtag")).to_bytes();
    let (head, tail) = ringing.split_at(ringing.len() / 2);
    h.ua.handle_stream_input(h.now, peer.clone(), 1, head);
    h.ua.handle_stream_input(h.now, peer.clone(), 2, &progress);
    h.ua.handle_stream_input(h.now, peer.clone(), 1, tail);
    assert_eq!(h.events(), vec![CallEvent::Progress { sdp: None }, CallEvent::Ringing { code: 180 }]);

    // Connection 2 closes half-way through a message: its half is dropped, and connection 1's
    // stream is untouched.
    h.ua.handle_stream_input(h.now, peer.clone(), 2, head);
    h.ua.forget_stream(&peer, 2);
    h.ua.handle_stream_input(h.now, peer.clone(), 1, head);
    h.ua.handle_stream_input(h.now, peer.clone(), 2, &progress);
    h.ua.handle_stream_input(h.now, peer.clone(), 1, tail);
    assert_eq!(h.events(), vec![CallEvent::Progress { sdp: None }, CallEvent::Ringing { code: 180 }]);
    assert_eq!(h.ua.stats().malformed, 0);
}

/// A peer whose Allow names UPDATE but that refuses our bodiless UPDATE refresh (500): the
/// refresh goes again at once as a re-INVITE, and later ones too; a 491 (glare) to the re-INVITE
/// is retried after 2.1 to 4 s (RFC 3261 §14.1), not at half the time left; the call lives on.
#[test]
fn a_refused_update_refresh_falls_back_to_re_invite() {
    let mut h = Harness::new(Transport::Udp);
    answered_with_timer(&mut h, "120;refresher=uac", Some("INVITE, ACK, BYE, UPDATE"));
    h.advance(Duration::from_millis(60_100));
    let upd = h.sent_one();
    assert_eq!(upd.method(), Some(&Method::Update));
    h.deliver(&respond(&upd, 500, "Server Internal Error", None));
    h.advance(Duration::from_millis(10));
    let inv = h.sent_one();
    assert_eq!(inv.method(), Some(&Method::Invite), "a re-INVITE at once");
    h.deliver(&respond(&inv, 491, "Request Pending", None));
    let acked = h.sent();
    assert_eq!(methods(&acked), vec!["ACK"], "the 491 ACKed, nothing more yet");
    let mut waited = Duration::ZERO;
    let again = loop {
        h.advance(Duration::from_millis(50));
        waited += Duration::from_millis(50);
        if let Some(m) = h.sent().into_iter().next() {
            break m;
        }
        assert!(waited <= Duration::from_millis(4_000), "retried within 4 s");
    };
    assert!(waited >= Duration::from_millis(2_100), "not before 2.1 s: {waited:?}");
    assert_eq!(again.method(), Some(&Method::Invite), "the glare retried by re-INVITE");
    let mut ok = ok_with_sdp(&again, "bobtag");
    ok.headers.push(HeaderName::SessionExpires, "120;refresher=uac");
    h.deliver(&ok);
    assert_eq!(methods(&h.sent()), vec!["ACK"]);
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 120 }]);
    h.advance(Duration::from_millis(60_100));
    assert_eq!(h.sent_one().method(), Some(&Method::Invite), "re-INVITE from now on");
}

/// A reliable 183 (RSeq, Require: 100rel).
fn reliable(invite: &Message, code: u16, reason: &str, tag: &str, rseq: u32) -> Message {
    let mut r = respond(invite, code, reason, Some(tag));
    r.headers.push(HeaderName::Require, "100rel");
    r.headers.push(HeaderName::RSeq, rseq.to_string());
    r
}

/// RFC 3262: the INVITE says it supports 100rel; each reliable provisional response is PRACKed
/// once, in its early dialog (to its Contact, with its To tag, `RAck: <RSeq> <INVITE CSeq>
/// INVITE`, a CSeq above the INVITE's); a retransmission is neither PRACKed nor reported again;
/// one out of order is dropped; the dialog the 2xx confirms goes on above the PRACKs' CSeq.
#[test]
fn reliable_provisional_responses_are_pracked() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    assert!(invite.headers.has_token(&HeaderName::Supported, "100rel"), "{invite}");
    assert!(invite.headers.has_token(&HeaderName::Allow, "PRACK"));
    let invite_seq = seq(&invite);

    let mut progress = with_sdp(reliable(&invite, 183, "Session Progress", "bobtag", 7), OFFER2);
    progress.headers.0.retain(|x| x.name != HeaderName::Contact);
    progress.headers.push(HeaderName::Contact, "<sip:bob-early@192.0.2.20:5070>");
    h.deliver(&progress);
    let prack = h.sent_one();
    assert_eq!(prack.method(), Some(&Method::Prack));
    assert_eq!(ruri(&prack), "sip:bob-early@192.0.2.20:5070", "to the 183's Contact");
    assert_eq!(hdr(&prack, HeaderName::RAck), Some(format!("7 {invite_seq} INVITE")));
    assert_eq!(seq(&prack), invite_seq + 1);
    assert!(hdr(&prack, HeaderName::To).is_some_and(|t| t.contains("tag=bobtag")));
    assert_eq!(hdr(&prack, HeaderName::CallId), hdr(&invite, HeaderName::CallId));
    assert_eq!(h.events(), vec![CallEvent::Progress { sdp: Some(Bytes::from_static(OFFER2)) }]);
    h.deliver(&respond(&prack, 200, "OK", None));

    // Its retransmission (our PRACK's 200 may not have reached the far end yet), and one out of
    // order: nothing.
    h.deliver(&progress);
    h.deliver(&reliable(&invite, 180, "Ringing", "bobtag", 9));
    assert!(h.sent().is_empty());
    assert!(h.events().is_empty());

    // The next one is PRACKed too.
    h.deliver(&reliable(&invite, 180, "Ringing", "bobtag", 8));
    let prack2 = h.sent_one();
    assert_eq!(
        (hdr(&prack2, HeaderName::RAck), seq(&prack2)),
        (Some(format!("8 {invite_seq} INVITE")), invite_seq + 2)
    );
    assert_ne!(branch(&prack2), branch(&prack));
    assert_eq!(h.events(), vec![CallEvent::Ringing { code: 180 }]);
    // An unreliable one, and a "reliable" one without RSeq: reported, not PRACKed.
    h.deliver(&respond(&invite, 180, "Ringing", Some("bobtag")));
    let mut no_rseq = respond(&invite, 180, "Ringing", Some("bobtag"));
    no_rseq.headers.push(HeaderName::Require, "100rel");
    h.deliver(&no_rseq);
    assert!(h.sent().is_empty());
    assert_eq!(h.events(), vec![CallEvent::Ringing { code: 180 }, CallEvent::Ringing { code: 180 }]);

    // Answered: the BYE goes above the PRACKs.
    h.deliver(&ok_with_sdp(&invite, "bobtag"));
    let ack = h.sent_one();
    assert_eq!((ack.method(), seq(&ack)), (Some(&Method::Ack), invite_seq));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
    let bye = h.sent_one();
    assert_eq!((bye.method(), seq(&bye)), (Some(&Method::Bye), invite_seq + 3));
}

/// Two branches of a fork each send a reliable 183: each is PRACKed in its own dialog; the
/// other branch's 2xx is ACKed and ended with a BYE above its PRACK.
#[test]
fn each_forked_branch_is_pracked_in_its_dialog() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let invite_seq = seq(&invite);
    h.deliver(&reliable(&invite, 183, "Session Progress", "one", 1));
    h.deliver(&reliable(&invite, 183, "Session Progress", "two", 1));
    let pracks = h.sent();
    assert_eq!(methods(&pracks), ["PRACK", "PRACK"]);
    let tags: Vec<bool> =
        pracks.iter().map(|p| hdr(p, HeaderName::To).is_some_and(|t| t.contains("tag=one"))).collect();
    assert_eq!(tags, [true, false]);
    assert!(pracks.iter().all(|p| seq(p) == invite_seq + 1));
    h.deliver(&ok_with_sdp(&invite, "one"));
    h.deliver(&ok_with_sdp(&invite, "two"));
    let sent = h.sent();
    assert_eq!(methods(&sent), ["ACK", "ACK", "BYE"]);
    assert!(hdr(&sent[2], HeaderName::To).is_some_and(|t| t.contains("tag=two")));
    assert!(seq(&sent[2]) > invite_seq + 1, "the fork's BYE goes above its PRACK: {}", seq(&sent[2]));
}

/// An INVITE answered with a challenge after a reliable 183: its early dialog and RSeq end with
/// it (RFC 3261 §12.3, RFC 3262 §4), so the retry's reliable 183, with the same To tag and a new
/// RSeq, is PRACKed and reported again; and a retransmission that comes after our CANCEL still
/// lets the CANCEL go.
#[test]
fn an_invite_retry_starts_its_reliable_responses_afresh() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    let call = h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    h.deliver(&reliable(&invite, 183, "Session Progress", "bobtag", 5));
    assert_eq!(methods(&h.sent()), ["PRACK"]);
    h.deliver(&challenge(&invite, 407, "n1"));
    let sent = h.sent();
    assert_eq!(methods(&sent), ["ACK", "INVITE"]);
    let retry = &sent[1];
    h.events();
    h.deliver(&reliable(retry, 183, "Session Progress", "bobtag", 900));
    let prack = h.sent_one();
    assert_eq!(hdr(&prack, HeaderName::RAck), Some(format!("900 {} INVITE", seq(retry))));
    assert_eq!(h.events(), vec![CallEvent::Progress { sdp: None }]);
    // Hung up: the CANCEL goes at once (a provisional response came).
    h.ua.hangup(h.now, call).expect("hangup");
    assert_eq!(methods(&h.sent()), ["CANCEL"]);
}

/// RFC 3261 §8.2.2.3: an in-dialog request that requires an extension we do not have gets 420
/// naming it in `Unsupported`, and changes nothing (a BYE so refused does not end the call); the
/// extensions we have (timer, 100rel) are taken; OPTIONS lists them.
#[test]
fn a_required_extension_we_lack_gets_420() {
    let mut h = Harness::new(Transport::Udp);
    let (_call, _invite, ok) = answered(&mut h);
    let reinv = with_header(
        with_sdp(peer_request(&ok, "INVITE", 1, "z9hG4bKreq1"), PEER_OFFER),
        HeaderName::Require,
        "precondition, timer",
    );
    h.deliver(&reinv);
    let refused = h.sent_one();
    assert_answers(&refused, &reinv, 420);
    assert_eq!(hdr(&refused, HeaderName::Unsupported).as_deref(), Some("precondition"));
    h.deliver(&peer_request(&ok, "ACK", 1, "z9hG4bKreq1"));
    let bye = with_header(peer_request(&ok, "BYE", 2, "z9hG4bKreq2"), HeaderName::Require, "foo");
    h.deliver(&bye);
    let refused = h.sent_one();
    assert_answers(&refused, &bye, 420);
    assert_eq!(hdr(&refused, HeaderName::Unsupported).as_deref(), Some("foo"));
    assert!(h.events().is_empty(), "nothing reported: the call goes on");
    // What we have is taken.
    let reinv = with_header(
        with_sdp(peer_request(&ok, "INVITE", 3, "z9hG4bKreq3"), PEER_OFFER),
        HeaderName::Require,
        "100rel, Timer",
    );
    h.deliver(&reinv);
    assert_eq!(start(&h.sent_one()), "100", "processed: Trying first");
    assert!(matches!(h.events().as_slice(), [CallEvent::RemoteOffer { .. }]));
    let options = peer_request(&ok, "OPTIONS", 4, "z9hG4bKreq4");
    h.deliver(&options);
    let ok_options = h.sent_one();
    assert_answers(&ok_options, &options, 200);
    assert_eq!(hdr(&ok_options, HeaderName::Supported).as_deref(), Some("100rel, timer"));
}

/// A PRACK challenged by a proxy (407) is sent again with credentials, a CSeq further and the
/// same RAck; a second challenge for the same realm is not answered again (no loop).
#[test]
fn a_challenged_prack_is_sent_again_with_credentials() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    h.deliver(&reliable(&invite, 183, "Session Progress", "bobtag", 3));
    let prack = h.sent_one();
    h.deliver(&challenge(&prack, 407, "pn1"));
    let again = h.sent_one();
    assert_eq!(again.method(), Some(&Method::Prack));
    assert_eq!((seq(&again), hdr(&again, HeaderName::RAck)), (seq(&prack) + 1, hdr(&prack, HeaderName::RAck)));
    let auth = hdr(&again, HeaderName::ProxyAuthorization).expect("credentials");
    assert_digest(&auth, "PRACK", &ruri(&again), "pn1");
    h.deliver(&challenge(&again, 407, "pn2"));
    assert!(h.sent().is_empty(), "no loop");
}
