//! RFC 3665-style call flows replayed in memory against a scripted far end.

mod common;

use bytes::Bytes;
use common::*;
use sip_signaling::{CallEvent, Credentials, EndReason, HeaderName, Method, OfferKind, Transport};
use std::time::Duration;

/// RFC 3665 3.1 (UAC side): INVITE, 100, 180, 200, ACK; then we hang up.
#[test]
fn successful_session_and_local_bye() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    assert_eq!(invite.method(), Some(&Method::Invite));
    assert_eq!(invite.headers.get(&HeaderName::Other("X-Test".into())), Some("1"));
    assert!(invite.headers.has_token(&HeaderName::Supported, "timer"));
    let via = invite.top_via().expect("via");
    assert!(via.branch().expect("branch").starts_with("z9hG4bK"));
    assert!(via.params.contains("rport"));
    let from = invite.from().expect("from");
    assert_eq!(from.uri.as_sip().and_then(|u| u.user.clone()).as_deref(), Some("+15550001"));
    assert!(from.tag().is_some());

    h.deliver(&respond(&invite, 100, "Trying", None));
    h.deliver(&respond(&invite, 180, "Ringing", Some("bobtag")));
    let ok = ok_with_sdp(&invite, "bobtag");
    h.deliver(&ok);
    let ack = h.sent_one();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().expect("cseq").seq, invite.cseq().expect("cseq").seq);
    assert_ne!(ack.top_via().expect("via").branch(), via.branch(), "ACK for 2xx is a new transaction");
    assert_eq!(ack.to().expect("to").tag(), Some("bobtag"));
    let ev = h.events();
    assert_eq!(ev[0], CallEvent::Trying);
    assert_eq!(ev[1], CallEvent::Ringing { code: 180 });
    assert!(matches!(&ev[2], CallEvent::Answered { sdp: Some(_) }));

    // A retransmitted 200 gets the same ACK again.
    h.deliver(&ok);
    let ack2 = h.sent_one();
    assert_eq!(ack2.to_bytes(), ack.to_bytes());

    h.ua.hangup(h.now, call).expect("hangup");
    let bye = h.sent_one();
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.cseq().expect("cseq").seq, invite.cseq().expect("c").seq + 1);
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::LocalHangup }]);
    assert_eq!(h.ua.call_count(), 0);
}

/// RFC 3665 3.8: busy. The 486 is ACKed on the INVITE's branch, a
/// retransmitted 486 is ACKed again, and the real status is reported.
#[test]
fn busy_here() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let busy = respond(&invite, 486, "Busy Here", Some("t1"));
    h.deliver(&busy);
    let ack = h.sent_one();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.top_via().expect("v").branch(), invite.top_via().expect("v").branch());
    assert_eq!(h.events(), vec![CallEvent::Failed { code: 486, reason: "Busy Here".into() }]);
    h.deliver(&busy);
    assert_eq!(h.sent_one().to_bytes(), ack.to_bytes());
    h.advance(Duration::from_secs(33));
    assert_eq!(h.ua.transaction_count(), 0, "Timer D cleared the transaction");
}

/// Timer A retransmits over UDP, Timer B fails the call with 408.
#[test]
fn no_response_times_out() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let first = h.sent_one();
    h.advance(Duration::from_secs(40));
    let again = h.sent();
    assert_eq!(again.len(), 6, "retransmissions at 0.5,1.5,3.5,7.5,15.5,31.5 s");
    assert!(again.iter().all(|m| m.to_bytes() == first.to_bytes()));
    assert_eq!(h.events(), vec![CallEvent::Failed { code: 408, reason: "Request Timeout".into() }]);
}

/// A lossy path: the first INVITE and the first 200 are lost; the
/// retransmissions carry the call through.
#[test]
fn lossy_udp_path_recovers() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let _lost = h.sent_one();
    h.advance(Duration::from_millis(600));
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.deliver(&ok_with_sdp(&invite, "b"));
    let _ack_lost = h.sent_one();
    // The far end retransmits its 200 since no ACK arrived.
    h.advance(Duration::from_millis(500));
    h.deliver(&ok_with_sdp(&invite, "b"));
    assert_eq!(h.sent_one().method(), Some(&Method::Ack));
    let ev = h.events();
    assert_eq!(ev.iter().filter(|e| matches!(e, CallEvent::Answered { .. })).count(), 1);
}

/// Over TCP nothing is retransmitted.
#[test]
fn reliable_transport_does_not_retransmit() {
    let mut h = Harness::new(Transport::Tcp);
    h.dial("sip:bob@biloxi.example.com;transport=tcp");
    let invite = h.sent_one();
    assert!(invite.top_via().expect("v").transport == "TCP");
    assert!(invite.headers.get(&HeaderName::Contact).expect("contact").contains("transport=tcp"));
    h.advance(Duration::from_secs(31));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_secs(2));
    assert!(matches!(h.events()[..], [CallEvent::Failed { code: 408, .. }]));
}

/// RFC 3665 3.9-style CANCEL while ringing.
#[test]
fn cancel_while_ringing() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(cancel.top_via().expect("v").branch(), invite.top_via().expect("v").branch());
    assert_eq!(cancel.cseq().expect("c").seq, invite.cseq().expect("c").seq);
    assert_eq!(cancel.to().expect("to").tag(), None);
    h.deliver(&respond(&cancel, 200, "OK", None));
    h.deliver(&respond(&invite, 487, "Request Terminated", Some("b")));
    assert_eq!(h.sent_one().method(), Some(&Method::Ack));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::Cancelled }]);
}

/// A hang-up before any provisional response waits for one (RFC 3261 9.1).
#[test]
fn cancel_waits_for_provisional() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.ua.hangup(h.now, call).expect("hangup");
    assert!(h.sent().is_empty(), "no CANCEL before a provisional");
    h.deliver(&respond(&invite, 100, "Trying", None));
    assert_eq!(h.sent_one().method(), Some(&Method::Cancel));
}

/// The answer crosses our CANCEL: ACK it, then BYE.
#[test]
fn answer_after_cancel_is_acked_and_byed() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    h.ua.hangup(h.now, call).expect("hangup");
    let _cancel = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "b"));
    let sent = h.sent();
    assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK", "BYE"]);
    h.deliver(&respond(&sent[1], 200, "OK", None));
    assert!(h.events().contains(&CallEvent::Ended { reason: EndReason::Cancelled }));
}

fn challenge(req: &sip_signaling::Message, code: u16, nonce: &str, stale: bool) -> sip_signaling::Message {
    let (reason, name) = if code == 401 {
        ("Unauthorized", HeaderName::WwwAuthenticate)
    } else {
        ("Proxy Authentication Required", HeaderName::ProxyAuthenticate)
    };
    let mut r = respond(req, code, reason, Some("auth"));
    let stale = if stale { ", stale=true" } else { "" };
    r.headers.push(
        name,
        format!("Digest realm=\"biloxi.example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{stale}"),
    );
    r
}

/// RFC 3665 3.2-style digest challenge answered with the right response.
#[test]
fn answers_401_and_407() {
    for code in [401, 407] {
        let mut h = Harness::new(Transport::Udp);
        let mut req = h.request("sip:bob@biloxi.example.com");
        req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
        h.ua.call(h.now, req).expect("call");
        let invite = h.sent_one();
        h.deliver(&challenge(&invite, code, "abc123", false));
        let sent = h.sent();
        assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK", "INVITE"]);
        let inv2 = &sent[1];
        assert_eq!(inv2.cseq().expect("c").seq, invite.cseq().expect("c").seq + 1);
        assert_eq!(inv2.call_id().expect("cid"), invite.call_id().expect("cid"));
        let hdr = if code == 401 { HeaderName::Authorization } else { HeaderName::ProxyAuthorization };
        let auth = inv2.headers.get(&hdr).expect("authorization");
        // Check the response independently of the crate's digest code.
        let field = |k: &str| {
            let i = auth.find(&format!("{k}=")).expect(k) + k.len() + 1;
            auth[i..].split(',').next().expect("v").trim().trim_matches('"').to_owned()
        };
        let md5 = |s: String| md5_hex(s.as_bytes());
        let ha1 = md5("alice:biloxi.example.com:secret".into());
        let ha2 = md5("INVITE:sip:bob@biloxi.example.com".into());
        let expect = md5(format!("{ha1}:abc123:{}:{}:auth:{ha2}", field("nc"), field("cnonce")));
        assert_eq!(field("response"), expect);
        assert_eq!(field("uri"), "sip:bob@biloxi.example.com");
        // Wrong password: a second challenge for the same realm ends the call.
        h.deliver(&challenge(inv2, code, "def456", false));
        let sent = h.sent();
        assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK"], "no loop");
        let ev = h.events();
        assert!(matches!(ev.last(), Some(CallEvent::Failed { code: c, .. }) if *c == code), "{ev:?}");
    }
}

/// `stale=true` with a new nonce is answered again.
#[test]
fn stale_nonce_is_retried() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    h.deliver(&challenge(&invite, 401, "n1", false));
    let inv2 = h.sent().remove(1);
    h.deliver(&challenge(&inv2, 401, "n2", true));
    let sent = h.sent();
    assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK", "INVITE"]);
    assert!(sent[1].headers.get(&HeaderName::Authorization).expect("auth").contains("nonce=\"n2\""));
}

/// Without credentials a 401 is final.
#[test]
fn challenge_without_credentials_fails() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&challenge(&invite, 401, "n", false));
    assert!(matches!(h.events()[..], [CallEvent::Failed { code: 401, .. }]));
}

fn answered(h: &mut Harness) -> (sip_signaling::CallHandle, sip_signaling::Message, sip_signaling::Message) {
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let ok = ok_with_sdp(&invite, "bobtag");
    h.deliver(&ok);
    h.sent_one();
    h.events();
    (call, invite, ok)
}

/// BYE from the far end; its retransmission gets the same 200.
#[test]
fn remote_bye() {
    let mut h = Harness::new(Transport::Udp);
    let (_call, _invite, ok) = answered(&mut h);
    let bye = peer_request(&ok, "BYE", 1, "z9hG4bKpeerbye");
    h.deliver(&bye);
    let r = h.sent_one();
    assert_eq!(r.status(), Some(200));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::RemoteHangup }]);
    h.deliver(&bye);
    assert_eq!(h.sent_one().to_bytes(), r.to_bytes());
}

/// Hold by re-INVITE: the offer is surfaced, our answer is sent in a 200
/// that is retransmitted until the ACK.
#[test]
fn remote_reinvite_hold() {
    let mut h = Harness::new(Transport::Udp);
    let (call, _invite, ok) = answered(&mut h);
    let mut reinv = peer_request(&ok, "INVITE", 2, "z9hG4bKreinv");
    reinv.headers.push(HeaderName::ContentType, "application/sdp");
    reinv.body = Bytes::from_static(b"v=0\r\nm=audio 5000 RTP/AVP 0\r\na=sendonly\r\n");
    h.deliver(&reinv);
    // RFC 3261 §17.2.1: a 100 at once, the application's answer may take a while.
    assert_eq!(h.sent_one().status(), Some(100));
    let ev = h.events();
    assert!(matches!(&ev[..], [CallEvent::RemoteOffer { kind: OfferKind::ReInvite, .. }]), "{ev:?}");
    // Retransmitted meanwhile: the 100 again, not a second offer, not a 500 for its CSeq.
    h.advance(Duration::from_millis(500));
    h.deliver(&reinv);
    assert_eq!(h.sent_one().status(), Some(100));
    assert!(h.events().is_empty());
    h.ua.answer(h.now, call, Bytes::from_static(b"v=0\r\na=recvonly\r\n")).expect("answer");
    let ok2 = h.sent_one();
    assert_eq!(ok2.status(), Some(200));
    assert_eq!(&ok2.body[..], b"v=0\r\na=recvonly\r\n");
    h.advance(Duration::from_millis(600));
    assert_eq!(h.sent_one().status(), Some(200), "2xx retransmitted");
    let mut ack = peer_request(&ok, "ACK", 2, "z9hG4bKack2");
    ack.body = Bytes::new();
    h.deliver(&ack);
    h.advance(Duration::from_secs(10));
    assert!(h.sent().is_empty(), "retransmission stopped by the ACK");
}

/// Requests from outside our dialogs get a stateless answer and no state.
#[test]
fn strays_are_rejected_statelessly() {
    let mut h = Harness::new(Transport::Udp);
    let raw = |method: &str, to_tag: &str, n: u32| {
        format!(
            "{method} sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKs{n};rport\r\nFrom: <sip:evil@x>;tag=e{n}\r\n\
To: <sip:gw@192.0.2.1>{to_tag}\r\nCall-ID: stray{n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    h.deliver_raw(raw("INVITE", "", 1).as_bytes());
    let r = h.sent_one();
    assert_eq!(r.status(), Some(403));
    assert!(r.to().expect("to").tag().is_some());
    let via = r.top_via().expect("via");
    assert_eq!(via.params.value("rport"), Some("5060"));
    assert_eq!(via.params.value("received"), Some("192.0.2.10"));
    h.deliver_raw(raw("BYE", ";tag=x", 2).as_bytes());
    assert_eq!(h.sent_one().status(), Some(481));
    h.deliver_raw(raw("OPTIONS", "", 3).as_bytes());
    assert_eq!(h.sent_one().status(), Some(403));
    h.deliver_raw(raw("ACK", "", 4).as_bytes());
    assert!(h.sent().is_empty(), "ACK is never answered");
    // A flood: no state grows, answers are rate limited.
    for n in 0..50_000 {
        h.deliver_raw(raw("INVITE", "", n).as_bytes());
        let _ = h.ua.poll_transmit();
    }
    assert_eq!(h.ua.transaction_count(), 0);
    assert_eq!(h.ua.call_count(), 0);
    assert!(h.ua.stats().dropped > 40_000, "{:?}", h.ua.stats());
}

/// A request missing CSeq gets 400 naming the problem.
#[test]
fn malformed_request_gets_400() {
    let mut h = Harness::new(Transport::Udp);
    h.deliver_raw(b"OPTIONS sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:gw@x>\r\nCall-ID: 1\r\n\r\n");
    let r = h.sent_one();
    assert_eq!(r.status(), Some(400));
    assert!(format!("{:?}", r.start).contains("CSeq"));
    h.deliver_raw(b"\x00\xff garbage");
    assert!(h.sent().is_empty());
    assert_eq!(h.ua.stats().malformed, 2);
}

/// Custom headers that would break the message are refused by name.
#[test]
fn custom_headers_are_validated() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@b");
    req.headers = vec![("Call-ID".into(), "x".into())];
    let e = h.ua.call(h.now, req).expect_err("core header");
    assert!(e.to_string().contains("Call-ID"));
    let mut req = h.request("sip:bob@b");
    req.headers = vec![("X-Ok".into(), "a\r\nVia: x".into())];
    assert!(h.ua.call(h.now, req).is_err());
    assert!(h.sent().is_empty());
}

/// RFC 4028: we refresh at half the interval with UPDATE when allowed.
#[test]
fn session_timer_refresh_as_uac() {
    let mut h = Harness::new(Transport::Udp);
    answered_with_timer(&mut h, "120;refresher=uac", Some("INVITE, ACK, BYE, UPDATE"));
    h.advance(Duration::from_secs(59));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(1100));
    let upd = h.sent_one();
    assert_eq!(upd.method(), Some(&Method::Update));
    assert_eq!(upd.headers.get(&HeaderName::SessionExpires), Some("120;refresher=uac"));
    let mut r = respond(&upd, 200, "OK", None);
    r.headers.push(HeaderName::SessionExpires, "120;refresher=uac");
    h.deliver(&r);
    assert_eq!(h.events(), vec![CallEvent::SessionRefreshed { interval: 120 }]);
    h.advance(Duration::from_millis(60_100));
    assert_eq!(h.sent_one().method(), Some(&Method::Update));
}

/// RFC 4028: when the peer should refresh and does not, we send BYE.
#[test]
fn session_expires_without_refresh() {
    let mut h = Harness::new(Transport::Udp);
    answered_with_timer(&mut h, "90;refresher=uas", None);
    h.advance(Duration::from_secs(59));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(1100));
    let bye = h.sent_one();
    assert_eq!(bye.method(), Some(&Method::Bye));
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::SessionExpired }]);
}

/// A forked second 2xx is ACKed and BYEd; the first dialog stays.
#[test]
fn forked_2xx() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "first"));
    h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "second"));
    let sent = h.sent();
    assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK", "BYE"]);
    assert!(sent.iter().all(|m| m.to().expect("to").tag() == Some("second")));
    let ev = h.events();
    assert_eq!(ev.iter().filter(|e| matches!(e, CallEvent::Answered { .. })).count(), 1);
    assert!(!ev.iter().any(CallEvent::is_final));
}

/// A forked 2xx sent again is acknowledged again, without a second BYE; a 2xx that does not
/// answer our INVITE (another From tag, another CSeq) is dropped; and a far end answering with
/// new To tags over and over gets at most eight dialogs acknowledged and ended.
#[test]
fn forked_2xx_retransmissions_forgeries_and_floods() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "first"));
    h.sent_one();
    let second = ok_with_sdp(&invite, "second");
    h.deliver(&second);
    let sent = h.sent();
    assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK", "BYE"]);
    let ack = sent[0].clone();
    h.deliver(&second);
    let again = h.sent();
    assert_eq!(again.iter().map(start).collect::<Vec<_>>(), vec!["ACK"], "the retransmission is only acknowledged");
    assert_eq!(again[0].to_bytes(), ack.to_bytes(), "with the same ACK");

    let mut forged = ok_with_sdp(&invite, "third");
    for hd in forged.headers.0.iter_mut().filter(|hd| hd.name == HeaderName::From) {
        hd.value = "<sip:+15550001@192.0.2.10>;tag=not-ours".into();
    }
    h.deliver(&forged);
    let mut other_cseq = ok_with_sdp(&invite, "fourth");
    for hd in other_cseq.headers.0.iter_mut().filter(|hd| hd.name == HeaderName::CSeq) {
        hd.value = "77 INVITE".into();
    }
    h.deliver(&other_cseq);
    assert!(h.sent().is_empty(), "nothing sent for 2xx that do not answer our INVITE");

    for n in 0..20 {
        h.deliver(&ok_with_sdp(&invite, &format!("flood{n}")));
    }
    let byes = h.sent().iter().filter(|m| m.method() == Some(&Method::Bye)).count();
    assert_eq!(byes, 7, "eight forked dialogs ended in all, the first one included");
    let ev = h.events();
    assert!(!ev.iter().any(CallEvent::is_final), "the call goes on: {ev:?}");
}

/// Requests inside an early dialog (after a 180 with a To tag) are
/// recognised: INFO is answered and reported (a retransmission answered only),
/// an offer is postponed with 500 + Retry-After, a wrong tag is 481.
#[test]
fn early_dialog_requests() {
    let mut h = Harness::new(Transport::Udp);
    h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let ringing = respond(&invite, 180, "Ringing", Some("early1"));
    h.deliver(&ringing);
    h.events();
    let mut info = peer_request(&ringing, "INFO", 1, "z9hG4bKei1");
    info.headers.push(HeaderName::ContentType, "application/dtmf-relay");
    info.body = Bytes::from_static(b"Signal=5\r\nDuration=160\r\n");
    h.deliver(&info);
    assert_eq!(h.sent_one().status(), Some(200));
    assert!(matches!(&h.events()[..], [CallEvent::Info { .. }]));
    // Its retransmission (our 200 lost) is answered again, not reported again; the next INFO is.
    h.deliver(&info);
    assert_eq!(h.sent_one().status(), Some(200));
    assert!(h.events().is_empty(), "a retransmitted INFO is not a second key press");
    let mut next = peer_request(&ringing, "INFO", 3, "z9hG4bKei2");
    next.headers.push(HeaderName::ContentType, "application/dtmf-relay");
    next.body = Bytes::from_static(b"Signal=6\r\nDuration=160\r\n");
    h.deliver(&next);
    assert_eq!(h.sent_one().status(), Some(200));
    assert!(matches!(&h.events()[..], [CallEvent::Info { .. }]));
    let upd = peer_request(&ringing, "UPDATE", 2, "z9hG4bKeu1");
    h.deliver(&upd);
    let r = h.sent_one();
    assert_eq!(r.status(), Some(500));
    assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some("1"));
    let other = respond(&invite, 180, "Ringing", Some("unknown-branch"));
    let mut wrong = peer_request(&other, "INFO", 1, "z9hG4bKew1");
    wrong.headers.set(HeaderName::From, "<sip:bob@biloxi.example.com>;tag=nope");
    h.deliver(&wrong);
    assert_eq!(h.sent_one().status(), Some(481));
    // The 2xx confirms the dialog as usual.
    h.deliver(&ok_with_sdp(&invite, "early1"));
    assert_eq!(h.sent_one().method(), Some(&Method::Ack));
    assert!(matches!(&h.events()[..], [CallEvent::Answered { .. }]));
}

/// RFC 3261 §9.1 across a digest retry: a CANCEL waits for a provisional response to the INVITE
/// that is pending now, not to the one challenged before it (whose 100 came long ago).
#[test]
fn cancel_after_a_challenge_waits_for_the_new_invites_provisional() {
    let mut h = Harness::new(Transport::Udp);
    let mut req = h.request("sip:bob@biloxi.example.com");
    req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    let call = h.ua.call(h.now, req).expect("call");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 100, "Trying", None));
    h.deliver(&challenge(&invite, 407, "abc123", false));
    let sent = h.sent();
    assert_eq!(sent.iter().map(start).collect::<Vec<_>>(), vec!["ACK", "INVITE"]);
    let inv2 = sent[1].clone();
    h.ua.hangup(h.now, call).expect("hangup");
    assert!(h.sent().is_empty(), "no CANCEL before a provisional response to the new INVITE");
    h.deliver(&respond(&inv2, 180, "Ringing", Some("b")));
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(cancel.top_via().expect("v").branch(), inv2.top_via().expect("v").branch());
}

/// A CANCEL refused with 481 (the INVITE had not reached the far end's transaction layer) is sent
/// again with the next provisional response; and a provisional response after the CANCEL does
/// not lift RFC 3261 §9.1's give-up time (64*T1 after the CANCEL).
#[test]
fn a_refused_cancel_is_sent_again_and_the_invite_is_given_up_in_time() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&respond(&invite, 100, "Trying", None));
    h.ua.hangup(h.now, call).expect("hangup");
    let cancel = h.sent_one();
    h.deliver(&respond(&cancel, 481, "Call/Transaction Does Not Exist", None));
    assert!(h.sent().is_empty());
    h.deliver(&respond(&invite, 180, "Ringing", Some("b")));
    let again = h.sent_one();
    assert_eq!(again.method(), Some(&Method::Cancel), "sent again: {again}");
    h.deliver(&respond(&again, 200, "OK", None));
    // The far end never sends its 487: the INVITE is given up 64*T1 after the first CANCEL.
    h.events();
    h.advance(Duration::from_secs(31));
    assert!(h.events().is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::Cancelled }]);
    assert_eq!(h.ua.call_count(), 0);
}

/// The BYE to an extra forked dialog goes on being retransmitted after the call itself ended:
/// that dialog is not the call's, and its phone would otherwise stay off-hook.
#[test]
fn a_forked_dialogs_bye_outlives_the_call() {
    let mut h = Harness::new(Transport::Udp);
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "first"));
    h.sent_one();
    h.deliver(&ok_with_sdp(&invite, "second"));
    let sent = h.sent();
    let fork_bye = sent.iter().find(|m| m.method() == Some(&Method::Bye)).expect("the fork's BYE").clone();
    h.events();
    // The call ends at once: our BYE to the first dialog is answered.
    h.ua.hangup(h.now, call).expect("hangup");
    let bye = h.sent_one();
    h.deliver(&respond(&bye, 200, "OK", None));
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::LocalHangup }]);
    // The fork's BYE (its first datagram lost) is sent again.
    h.advance(Duration::from_millis(600));
    let again = h.sent_one();
    assert_eq!(again.method(), Some(&Method::Bye));
    assert_eq!(again.top_via().expect("v").branch(), fork_bye.top_via().expect("v").branch());
}

/// A far end that refreshes by a longer interval than we asked (not RFC 4028 §9's way, but it is
/// the refresher) is not hung up on at the end of ours: it refreshes by its own.
#[test]
fn a_longer_interval_refreshed_by_the_far_end_is_kept() {
    let mut h = Harness::new(Transport::Udp);
    answered_with_timer(&mut h, "3600;refresher=uas", None);
    h.advance(Duration::from_secs(1900));
    assert!(h.sent().is_empty(), "no BYE at the end of the 1800 s we asked");
    h.advance(Duration::from_secs(1700));
    assert_eq!(h.sent().first().and_then(|m| m.method().cloned()), Some(Method::Bye), "at the end of its own");
}
