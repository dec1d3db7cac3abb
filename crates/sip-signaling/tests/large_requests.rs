//! RFC 3261 §18.1.1 on simulated time: a request too large for UDP (an INVITE with audio, video
//! and SDES keys easily is) goes over TCP to the same address; its CANCEL and ACK follow it; the
//! dialog stays on the transport its peer's Contact says; a connection that cannot be made sends
//! the request over UDP after all, as the same transaction.

mod common;

use bytes::Bytes;
use common::*;
use sip_signaling::{CallEvent, CallHandle, Config, EndReason, HeaderName, Message, Method, Target, Transport};
use std::time::Duration;

/// An SDP offer of about 1.6 kB (the size of a real audio + video offer with SDES keys).
fn large_sdp(version: u32) -> Bytes {
    let mut s = format!(
        "v=0\r\no=- 1 {version} IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
    for i in 0..40 {
        s.push_str(&format!("a=x-filler:{i:02} {}\r\n", "f".repeat(24)));
    }
    Bytes::from(s)
}

fn udp() -> Target {
    Target::new(Transport::Udp, PEER.parse().expect("addr"))
}

fn tcp() -> Target {
    Target::new(Transport::Tcp, PEER.parse().expect("addr"))
}

/// A user agent with a UDP socket and a TCP listener (the far end can connect back to the TCP
/// Via, RFC 3261 §18.1.2).
fn harness() -> Harness {
    harness_with(|_| {})
}

fn harness_with(tweak: impl FnOnce(&mut Config)) -> Harness {
    let mut c = config(Transport::Udp);
    c.local_addrs.push((Transport::Tcp, LOCAL.parse().expect("addr")));
    tweak(&mut c);
    Harness::with_config(c)
}

fn deliver_from(h: &mut Harness, from: &Target, m: &Message) {
    h.ua.handle_input(h.now, from.clone(), &m.to_bytes());
}

fn dial_large(h: &mut Harness, uri: &str) -> CallHandle {
    let mut req = h.request(uri);
    req.sdp = Some(large_sdp(1));
    h.ua.call(h.now, req).expect("call")
}

/// The one message sent, with where it went and its size on the wire.
fn sent_one(h: &mut Harness) -> (Target, Message, usize) {
    let mut raw = h.sent_raw();
    assert_eq!(raw.len(), 1, "expected one message, got {}", raw.len());
    let (target, bytes) = raw.remove(0);
    let m = sip_signaling::parse_message(&bytes, &sip_signaling::Limits::default(), sip_signaling::Framing::Datagram)
        .expect("we send valid SIP");
    (target, m, bytes.len())
}

fn top_via(m: &Message) -> String {
    m.headers.get(&HeaderName::Via).expect("via").to_owned()
}

fn via_transport(m: &Message) -> String {
    m.top_via().expect("via").transport.clone()
}

#[test]
fn a_large_invite_goes_over_tcp_and_its_cancel_and_ack_follow_it() {
    let mut h = harness();
    let call = dial_large(&mut h, "sip:bob@biloxi.example.com");
    let (target, invite, size) = sent_one(&mut h);
    assert!(size > 1300, "the test's INVITE is large: {size} bytes");
    assert_eq!(target, tcp());
    assert_eq!(via_transport(&invite), "TCP");
    assert_eq!(invite.body, large_sdp(1));

    deliver_from(&mut h, &tcp(), &respond(&invite, 180, "Ringing", Some("b")));
    assert!(matches!(h.events()[..], [CallEvent::Ringing { .. }]));
    h.ua.hangup(h.now, call).expect("hangup");
    let (target, cancel, _) = sent_one(&mut h);
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(target, tcp(), "a CANCEL goes where its INVITE went");
    assert_eq!(top_via(&cancel), top_via(&invite), "RFC 3261 §9.1: the INVITE's Via");
    deliver_from(&mut h, &tcp(), &respond(&cancel, 200, "OK", None));
    deliver_from(&mut h, &tcp(), &respond(&invite, 487, "Request Terminated", Some("b")));
    let (target, ack, _) = sent_one(&mut h);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!((target, top_via(&ack)), (tcp(), top_via(&invite)), "a non-2xx ACK follows its INVITE");
    assert_eq!(h.events(), vec![CallEvent::Ended { reason: EndReason::Cancelled }]);
    h.advance(Duration::from_secs(40));
    assert!(h.sent_raw().is_empty(), "nothing retransmitted over a stream");
}

#[test]
fn the_dialog_of_a_large_invite_stays_where_the_peer_said() {
    let mut h = harness();
    let call = dial_large(&mut h, "sip:bob@biloxi.example.com");
    let (_, invite, _) = sent_one(&mut h);
    // The 200 comes back over the connection; its Contact has no transport parameter.
    deliver_from(&mut h, &tcp(), &ok_with_sdp(&invite, "bobtag"));
    let (target, ack, _) = sent_one(&mut h);
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!((target, via_transport(&ack)), (udp(), "UDP".to_owned()), "the 2xx ACK goes to the remote target");
    assert!(matches!(h.events()[..], [CallEvent::Answered { .. }]));

    // A large re-offer moves to TCP too; a small request stays on UDP.
    h.ua.reinvite(h.now, call, large_sdp(2)).expect("re-INVITE");
    let (target, reinvite, _) = sent_one(&mut h);
    assert_eq!((target, via_transport(&reinvite)), (tcp(), "TCP".to_owned()));
    deliver_from(&mut h, &tcp(), &ok_with_sdp(&reinvite, "bobtag"));
    let (target, ack, _) = sent_one(&mut h);
    assert_eq!((ack.method(), target), (Some(&Method::Ack), udp()));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
    let (target, bye, size) = sent_one(&mut h);
    assert_eq!((bye.method(), target, via_transport(&bye)), (Some(&Method::Bye), udp(), "UDP".to_owned()));
    assert!(size <= 1300);
}

#[test]
fn a_connection_that_cannot_be_made_sends_the_large_invite_over_udp() {
    let mut h = harness();
    let call = dial_large(&mut h, "sip:bob@biloxi.example.com");
    let (_, invite, _) = sent_one(&mut h);
    h.ua.handle_connect_failed(h.now, &tcp());
    assert!(h.events().is_empty(), "not a failure: UDP is tried");
    let (target, fallback, _) = sent_one(&mut h);
    assert_eq!(target, udp());
    assert_eq!(via_transport(&fallback), "UDP");
    assert_eq!(fallback.top_via().expect("via").branch(), invite.top_via().expect("via").branch());
    assert_eq!(fallback.body, invite.body);
    assert_eq!(fallback.headers.get(&HeaderName::CSeq), invite.headers.get(&HeaderName::CSeq));
    // Timer A runs again, over UDP.
    h.advance(Duration::from_millis(600));
    let (target, again, _) = sent_one(&mut h);
    assert_eq!((target, top_via(&again)), (udp(), top_via(&fallback)));
    // The same connection failing again changes nothing.
    h.ua.handle_connect_failed(h.now, &tcp());
    assert!(h.events().is_empty() && h.sent_raw().is_empty());

    deliver_from(&mut h, &udp(), &respond(&fallback, 180, "Ringing", Some("b")));
    h.events();
    h.ua.hangup(h.now, call).expect("hangup");
    let (target, cancel, _) = sent_one(&mut h);
    assert_eq!((cancel.method(), target), (Some(&Method::Cancel), udp()));
    assert_eq!(top_via(&cancel), top_via(&fallback));
}

/// An address whose TCP connection failed gets its large requests over UDP for a while, without a
/// connect timeout each time; then TCP is tried again.
#[test]
fn an_address_that_refused_tcp_gets_udp_for_a_while() {
    let mut h = harness();
    dial_large(&mut h, "sip:bob@biloxi.example.com");
    sent_one(&mut h);
    h.ua.handle_connect_failed(h.now, &tcp());
    assert_eq!(sent_one(&mut h).0, udp());
    h.advance(Duration::from_secs(60));
    h.sent_raw();
    h.events();
    dial_large(&mut h, "sip:carol@biloxi.example.com");
    assert_eq!(sent_one(&mut h).0, udp(), "no second try of TCP within minutes");
    h.advance(sip_signaling::TCP_REFUSED_FOR);
    h.sent_raw();
    h.events();
    dial_large(&mut h, "sip:dave@biloxi.example.com");
    assert_eq!(sent_one(&mut h).0, tcp(), "TCP again later");
}

/// An in-dialog request moved to TCP whose connection fails or closes once made, before its
/// final response, fails alone (503): the dialog, on UDP, is not the connection's; and it is not
/// sent again over UDP (it may have arrived: the far end could take a copy for a second request).
#[test]
fn a_moved_in_dialog_request_fails_alone_when_its_connection_goes() {
    let mut h = harness();
    let call = dial_large(&mut h, "sip:bob@biloxi.example.com");
    let (_, invite, _) = sent_one(&mut h);
    deliver_from(&mut h, &tcp(), &ok_with_sdp(&invite, "bobtag"));
    sent_one(&mut h);
    h.events();
    h.ua.reinvite(h.now, call, large_sdp(2)).expect("re-INVITE");
    let (target, reinvite, _) = sent_one(&mut h);
    assert_eq!(target, tcp());
    deliver_from(&mut h, &tcp(), &respond(&reinvite, 100, "Trying", None));
    h.ua.handle_transport_error(h.now, &tcp());
    assert_eq!(h.events(), vec![CallEvent::OfferRejected { code: 503 }]);
    assert!(h.sent_raw().is_empty(), "no BYE: the call goes on");
    assert_eq!(h.ua.call_count(), 1);

    // The next large re-offer: its connection closes cleanly before anything came back.
    h.ua.reinvite(h.now, call, large_sdp(3)).expect("re-INVITE");
    let (target, _, _) = sent_one(&mut h);
    assert_eq!(target, tcp());
    h.ua.handle_connection_closed(h.now, &tcp());
    assert_eq!(h.events(), vec![CallEvent::OfferRejected { code: 503 }]);
    assert!(h.sent_raw().is_empty(), "no copy over UDP, no BYE");
    assert_eq!(h.ua.call_count(), 1);
    // A smaller request still goes over UDP meanwhile.
    h.ua.reinvite(h.now, call, Bytes::from_static(b"v=0\r\n")).expect("re-INVITE");
    assert_eq!(sent_one(&mut h).0, udp());
}

/// An initial INVITE moved to TCP whose connection is made and then fails before any response is
/// not sent again over UDP (the far end may be handling it): the call fails as over any stream.
#[test]
fn an_established_connection_that_fails_is_not_a_fallback() {
    let mut h = harness();
    dial_large(&mut h, "sip:bob@biloxi.example.com");
    sent_one(&mut h);
    h.ua.handle_transport_error(h.now, &tcp());
    assert!(h.sent_raw().is_empty(), "no copy over UDP");
    assert_eq!(
        h.events(),
        vec![CallEvent::Failed { code: 503, reason: "Service Unavailable (transport failure)".into() }]
    );
}

#[test]
fn a_large_request_stays_on_udp_when_told_to() {
    // The dialled URI says transport=udp.
    let mut h = harness();
    dial_large(&mut h, "sip:bob@biloxi.example.com;transport=udp");
    let (target, invite, size) = sent_one(&mut h);
    assert!(size > 1300);
    assert_eq!((target, via_transport(&invite)), (udp(), "UDP".to_owned()));

    // No limit configured.
    let mut h = harness_with(|c| c.udp_size_limit = None);
    dial_large(&mut h, "sip:bob@biloxi.example.com");
    assert_eq!(sent_one(&mut h).0, udp());

    // No TCP listener: the far end could not connect back to a TCP Via (RFC 3261 §18.1.2).
    let mut h = Harness::new(Transport::Udp);
    dial_large(&mut h, "sip:bob@biloxi.example.com");
    assert_eq!(sent_one(&mut h).0, udp());
}

#[test]
fn the_limit_is_the_size_on_the_wire() {
    // The same seed gives the same tags and branches, so the same INVITE size.
    let size_with = |limit: Option<usize>| {
        let mut h = harness_with(|c| c.udp_size_limit = limit);
        dial_large(&mut h, "sip:bob@biloxi.example.com");
        let (target, _, size) = sent_one(&mut h);
        (target.transport, size)
    };
    let (transport, size) = size_with(None);
    assert_eq!(transport, Transport::Udp);
    assert_eq!(size_with(Some(size)), (Transport::Udp, size), "a request of exactly the limit stays on UDP");
    let (transport, tcp_size) = size_with(Some(size - 1));
    assert_eq!(transport, Transport::Tcp);
    assert_eq!(tcp_size, size, "only the Via's transport changes");
    // Over TCP nothing is moved, whatever the size.
    let mut h = Harness::new(Transport::Tcp);
    dial_large(&mut h, "sip:bob@biloxi.example.com;transport=tcp");
    assert_eq!(sent_one(&mut h).0, Target::new(Transport::Tcp, PEER.parse().expect("addr")));
}

// ----- over real sockets, through the driver -----

/// Reads one SIP message from a stream (headers, then Content-Length bytes of body).
async fn read_message(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + len {
                seen.truncate(end + len);
                return seen;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the rest of the message within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed mid-message");
        seen.extend_from_slice(&buf[..n]);
    }
}

fn parse(bytes: &[u8]) -> Message {
    sip_signaling::parse_message(bytes, &sip_signaling::Limits::default(), sip_signaling::Framing::Datagram)
        .expect("valid SIP")
}

async fn final_event(call: &mut sip_signaling::driver::Call) -> CallEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), call.events.recv())
            .await
            .expect("an event within 5 s")
            .expect("an event");
        if ev.is_final() {
            return ev;
        }
    }
}

/// A peer with a TCP listener gets the large INVITE over TCP and answers on the connection; a
/// peer with UDP only (the connection is refused) gets it over UDP at once.
#[tokio::test]
async fn the_driver_sends_large_invites_over_tcp_or_udp_as_the_peer_allows() {
    use sip_signaling::driver::{self, Dial, DriverConfig};
    use tokio::io::AsyncWriteExt;
    let ua = driver::start(DriverConfig::default()).await.expect("driver");
    let dial =
        |port: u16| Dial { uri: format!("sip:peer@127.0.0.1:{port}"), sdp: Some(large_sdp(1)), ..Dial::default() };

    // UDP and TCP on the same port.
    let mut bound = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            bound = Some((udp, l, port));
            break;
        }
    }
    let (udp, listener, port) = bound.expect("a port free for UDP and TCP");
    let mut call = ua.call(dial(port)).await.expect("dial");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("a connection").expect("accept");
    let bytes = read_message(&mut conn).await;
    assert!(bytes.len() > 1300, "{} bytes", bytes.len());
    let invite = parse(&bytes);
    assert_eq!(via_transport(&invite), "TCP");
    assert_eq!(invite.body, large_sdp(1));
    conn.write_all(&respond(&invite, 486, "Busy Here", Some("b")).to_bytes()).await.expect("write");
    assert_eq!(final_event(&mut call).await, CallEvent::Failed { code: 486, reason: "Busy Here".into() });
    let mut buf = vec![0u8; 65_536];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), udp.recv_from(&mut buf)).await.is_err(),
        "nothing over UDP"
    );

    // UDP only: nothing listens on the TCP port (and the first connection is gone).
    drop(listener);
    drop(conn);
    for _ in 0..100 {
        if ua.stats().await.expect("stats").connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = std::time::Instant::now();
    let mut call = ua.call(dial(port)).await.expect("dial");
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
        .await
        .expect("the INVITE over UDP")
        .expect("recv");
    assert!(t0.elapsed() < Duration::from_secs(2), "the refused connection is not waited out");
    let invite = parse(&buf[..n]);
    assert_eq!(via_transport(&invite), "UDP");
    assert_eq!(invite.body, large_sdp(1));
    udp.send_to(&respond(&invite, 486, "Busy Here", Some("b")).to_bytes(), from).await.expect("send");
    assert_eq!(final_event(&mut call).await, CallEvent::Failed { code: 486, reason: "Busy Here".into() });
    ua.shutdown().await;
}
