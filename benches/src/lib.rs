//! Shared inputs for the benchmarks, an in-memory far end, the audio
//! mixer comparison's pipeline and Ogg reader, and the dial-out benches' helpers.

pub mod conference;
pub mod dialling;
pub mod ogg;

use bytes::Bytes;
use sip_signaling::{
    parse_message, CallEvent, CallRequest, Config, Framing, HeaderName, Limits, Message, Target, Transport, Uri,
    UserAgent,
};
use std::time::Instant;

/// A realistic INVITE as a carrier would receive it (two Vias, Record-Route,
/// SDP body).
pub const INVITE: &[u8] = b"INVITE sip:+15551234567@carrier.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9a;rport\r\n\
Via: SIP/2.0/TCP 10.1.2.3:5060;branch=z9hG4bKnashds8;received=198.51.100.7\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:203.0.113.10;lr>\r\n\
From: \"Contact Centre\" <sip:+15550001@gw.example.com>;tag=9fxced76sl\r\n\
To: <sip:+15551234567@carrier.example.net;user=phone>\r\n\
Call-ID: 3848276298220188511@gw.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+15550001@10.1.2.3:5060;transport=tcp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n\
Supported: timer\r\n\
Session-Expires: 1800\r\n\
User-Agent: sip-interconnect/0.1.0\r\n\
X-Session: 1_MX4xMjM0NTZ-fjE3MDAwMDAwMDAwMDB-YWJj\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 230\r\n\
\r\n\
v=0\r\n\
o=- 1700000000 1700000000 IN IP4 10.1.2.3\r\n\
s=-\r\n\
c=IN IP4 10.1.2.3\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 111 9 0 8 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n";

/// A 200 OK with SDP.
pub const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK74bf9a;rport=5060;received=203.0.113.10\r\n\
Record-Route: <sip:203.0.113.10;lr>\r\n\
From: \"Contact Centre\" <sip:+15550001@gw.example.com>;tag=9fxced76sl\r\n\
To: <sip:+15551234567@carrier.example.net;user=phone>;tag=8321234356\r\n\
Call-ID: 3848276298220188511@gw.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+15551234567@198.51.100.20:5060>\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

/// Builds a response to a request the way a simple far end does.
pub fn respond(req: &Message, code: u16, reason: &str, tag: &str, sdp: Option<&Bytes>) -> Vec<u8> {
    let mut r = Message::response(code, reason);
    for v in req.headers.get_all(&HeaderName::Via) {
        r.headers.push(HeaderName::Via, v.to_owned());
    }
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq] {
        if let Some(v) = req.headers.get(&name) {
            let v = if name == HeaderName::To && !v.contains("tag=") && code > 100 {
                format!("{v};tag={tag}")
            } else {
                v.to_owned()
            };
            r.headers.push(name, v);
        }
    }
    if code == 200 && req.method() == Some(&sip_signaling::Method::Invite) {
        r.headers.push(HeaderName::Contact, "<sip:far@192.0.2.50:5060>");
        if let Some(s) = sdp {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = s.clone();
        }
    }
    r.to_bytes()
}

/// One complete call on simulated time, both ends in memory: INVITE, 100,
/// 180, 200, ACK, BYE, 200. Returns the number of messages exchanged.
pub fn one_call(ua: &mut UserAgent, now: Instant, sdp: &Bytes) -> usize {
    let peer = Target::new(Transport::Udp, "192.0.2.50:5060".parse().unwrap_or_else(|_| unreachable!()));
    let req = CallRequest {
        uri: Uri::parse("sip:+15551234567@192.0.2.50").unwrap_or_else(|_| unreachable!()),
        destination: peer.clone(),
        from: Some("+15550001".into()),
        display_name: None,
        headers: Vec::new(),
        credentials: None,
        sdp: Some(sdp.clone()),
        route: Vec::new(),
    };
    let Ok(call) = ua.call(now, req) else { return 0 };
    let limits = Limits::default();
    let mut messages = 0;
    let mut hung_up = false;
    loop {
        let mut progressed = false;
        while let Some(t) = ua.poll_transmit() {
            messages += 1;
            progressed = true;
            let Ok(m) = parse_message(&t.payload, &limits, Framing::Datagram) else { continue };
            match m.method() {
                Some(sip_signaling::Method::Invite) => {
                    for (code, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
                        let r = respond(&m, code, reason, "far1", Some(sdp));
                        ua.handle_input(now, peer.clone(), &r);
                        messages += 1;
                    }
                }
                Some(sip_signaling::Method::Bye) => {
                    let r = respond(&m, 200, "OK", "far1", None);
                    ua.handle_input(now, peer.clone(), &r);
                    messages += 1;
                }
                _ => {}
            }
        }
        while let Some((_, ev)) = ua.poll_event() {
            progressed = true;
            match ev {
                CallEvent::Answered { .. } if !hung_up => {
                    hung_up = true;
                    let _ = ua.hangup(now, call);
                }
                e if e.is_final() => return messages,
                _ => {}
            }
        }
        if !progressed {
            return messages;
        }
    }
}

/// A user agent configured for the benchmark.
pub fn bench_ua() -> UserAgent {
    let c = Config {
        local_addrs: vec![(Transport::Udp, "192.0.2.1:5060".parse().unwrap_or_else(|_| unreachable!()))],
        ..Config::default()
    };
    UserAgent::new(c, 1)
}
