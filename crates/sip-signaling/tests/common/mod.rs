//! A scripted far end for in-memory call-flow tests on simulated time.
#![allow(dead_code)]

pub mod wire;

use bytes::Bytes;
use sip_signaling::{
    parse_message, CallEvent, CallHandle, CallRequest, Config, Framing, HeaderName, Limits, Message, Target, Timers,
    Transport, Uri, UserAgent,
};
use std::time::{Duration, Instant};

pub const PEER: &str = "192.0.2.10:5060";
pub const LOCAL: &str = "192.0.2.1:5060";

/// The user agent under test plus a clock and a list of what it sent.
pub struct Harness {
    pub ua: UserAgent,
    pub now: Instant,
    pub start: Instant,
    pub transport: Transport,
}

pub fn config(transport: Transport) -> Config {
    Config {
        local_addrs: vec![(transport, LOCAL.parse().expect("addr"))],
        timers: Timers::default(),
        ..Config::default()
    }
}

impl Harness {
    pub fn new(transport: Transport) -> Harness {
        Harness::with_config(config(transport))
    }

    pub fn with_config(config: Config) -> Harness {
        let transport = config.local_addrs.first().map(|x| x.0).unwrap_or(Transport::Udp);
        let now = Instant::now();
        Harness { ua: UserAgent::new(config, 7), now, start: now, transport }
    }

    pub fn peer(&self) -> Target {
        Target::new(self.transport, PEER.parse().expect("addr"))
    }

    pub fn request(&self, uri: &str) -> CallRequest {
        CallRequest {
            uri: Uri::parse(uri).expect("uri"),
            destination: self.peer(),
            from: Some("+15550001".into()),
            display_name: None,
            headers: vec![("X-Test".into(), "1".into())],
            credentials: None,
            sdp: Some(Bytes::from_static(
                b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            )),
            route: Vec::new(),
        }
    }

    pub fn dial(&mut self, uri: &str) -> CallHandle {
        let r = self.request(uri);
        self.ua.call(self.now, r).expect("call")
    }

    /// Every message sent so far, parsed.
    pub fn sent(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(t) = self.ua.poll_transmit() {
            assert_eq!(t.target.transport, self.transport);
            out.push(parse_message(&t.payload, &Limits::default(), Framing::Datagram).expect("we send valid SIP"));
        }
        out
    }

    /// Every message sent so far with where it went, parsed.
    pub fn sent_with_targets(&mut self) -> Vec<(Target, Message)> {
        let mut out = Vec::new();
        while let Some(t) = self.ua.poll_transmit() {
            let m = parse_message(&t.payload, &Limits::default(), Framing::Datagram).expect("we send valid SIP");
            out.push((t.target, m));
        }
        out
    }

    /// Every raw payload sent so far (keep-alives are not SIP messages).
    pub fn sent_raw(&mut self) -> Vec<(Target, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = self.ua.poll_transmit() {
            out.push((t.target, t.payload));
        }
        out
    }

    /// The one message sent, asserting there is exactly one.
    pub fn sent_one(&mut self) -> Message {
        let mut v = self.sent();
        assert_eq!(v.len(), 1, "expected one message, got {}: {:?}", v.len(), v.iter().map(start).collect::<Vec<_>>());
        v.remove(0)
    }

    pub fn events(&mut self) -> Vec<CallEvent> {
        let mut out = Vec::new();
        while let Some((_, e)) = self.ua.poll_event() {
            out.push(e);
        }
        out
    }

    pub fn deliver(&mut self, m: &Message) {
        let peer = self.peer();
        self.ua.handle_input(self.now, peer, &m.to_bytes());
    }

    pub fn deliver_raw(&mut self, raw: &[u8]) {
        let peer = self.peer();
        self.ua.handle_input(self.now, peer, raw);
    }

    /// Advances simulated time, firing every timer on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.ua.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.ua.handle_timeout(self.now);
        }
        self.now = end;
        self.ua.handle_timeout(self.now);
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

pub fn start(m: &Message) -> String {
    match m.method() {
        Some(meth) => meth.to_string(),
        None => m.status().map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// A response to `req` as the far end would build it.
pub fn respond(req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
    let mut r = Message::response(code, reason);
    for v in req.headers.get_all(&HeaderName::Via) {
        r.headers.push(HeaderName::Via, v.to_owned());
    }
    r.headers.push(HeaderName::From, req.headers.get(&HeaderName::From).expect("from").to_owned());
    let to = req.headers.get(&HeaderName::To).expect("to").to_owned();
    let to = match to_tag {
        Some(t) if !to.contains(";tag=") => format!("{to};tag={t}"),
        _ => to,
    };
    r.headers.push(HeaderName::To, to);
    r.headers.push(HeaderName::CallId, req.headers.get(&HeaderName::CallId).expect("cid").to_owned());
    r.headers.push(HeaderName::CSeq, req.headers.get(&HeaderName::CSeq).expect("cseq").to_owned());
    if (180..300).contains(&code) {
        r.headers.push(HeaderName::Contact, format!("<sip:bob@{PEER}>"));
    }
    r
}

/// A 200 OK with an SDP answer.
pub fn ok_with_sdp(req: &Message, tag: &str) -> Message {
    let mut r = respond(req, 200, "OK", Some(tag));
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = Bytes::from_static(
        b"v=0\r\no=- 2 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
    );
    r
}

/// Dials and answers with a 2xx carrying `Session-Expires: session_expires` (with `Require: timer`)
/// and, when given, `Allow: allow`; the ACK and events are drained. Returns the call and the 2xx.
pub fn answered_with_timer(h: &mut Harness, session_expires: &str, allow: Option<&str>) -> (CallHandle, Message) {
    let call = h.dial("sip:bob@biloxi.example.com");
    let invite = h.sent_one();
    let mut ok = ok_with_sdp(&invite, "bobtag");
    ok.headers.push(HeaderName::SessionExpires, session_expires);
    if let Some(allow) = allow {
        ok.headers.push(HeaderName::Allow, allow);
    }
    ok.headers.push(HeaderName::Require, "timer");
    h.deliver(&ok);
    h.sent_one();
    h.events();
    (call, ok)
}

/// A request from the far end inside the dialog established by `ok`
/// (the 200 OK we answered the INVITE with).
pub fn peer_request(ok: &Message, method: &str, seq: u32, branch: &str) -> Message {
    let to = ok.headers.get(&HeaderName::To).expect("to");
    let from = ok.headers.get(&HeaderName::From).expect("from");
    let contact = from_contact(ok);
    let raw = format!(
        "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch={branch}\r\nMax-Forwards: 70\r\nFrom: {to}\r\nTo: {from}\r\n\
Call-ID: {}\r\nCSeq: {seq} {method}\r\nContact: <sip:bob@{PEER}>\r\nContent-Length: 0\r\n\r\n",
        ok.headers.get(&HeaderName::CallId).expect("cid")
    );
    parse_message(raw.as_bytes(), &Limits::default(), Framing::Datagram).expect("peer request")
}

/// Our Contact URI as seen in the INVITE (the remote target for the peer).
fn from_contact(ok: &Message) -> String {
    let _ = ok;
    format!("sip:gw@{LOCAL}")
}

/// MD5 (RFC 1321) as lowercase hex, written out here so digest tests do
/// not trust the crate's own digest code.
pub fn md5_hex(data: &[u8]) -> String {
    let s: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
        20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6,
        10, 15, 21,
    ];
    let k: Vec<u32> = (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32).collect();
    let (mut a0, mut b0, mut c0, mut d0) = (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk.chunks(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(s[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    [a0, b0, c0, d0].iter().flat_map(|w| w.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
}
