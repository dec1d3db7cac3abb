//! A far end that does anything, in any order, on simulated time: responses of any status to any
//! request we sent (its own tags, a CSeq off by one, the headers real peers get wrong: contacts,
//! route sets, session timers, reliable provisionals, digest challenges), its own requests in and
//! outside the dialog, truncated messages and garbage, connections failing, time passing, and the
//! application calling the user agent meanwhile.
//!
//! Whatever happens: no panic; every message we send parses; one final event per call (`Ended`,
//! `Failed` or `Redirected`), and nothing reported after it; once the application has hung up and
//! ten minutes have passed, no call and no transaction is left, and the timers left (stale entries
//! of the lazy heap) go by within a day, doing nothing.

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use sip_signaling::{parse_message, Credentials, Framing, HeaderName, Limits, Message, Method, Target, Transport};
use std::time::Duration;

const SDP: &str =
    "v=0\r\no=- 2 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

/// Header values real peers send, well formed or not, by header.
const EXTRAS: &[(&str, &[&str])] = &[
    (
        "Contact",
        &[
            "<sip:bob@192.0.2.10:5060>",
            "<sip:bob@[2001:db8::1]:5070;transport=tcp>",
            "<sips:bob@biloxi.example.com>",
            "<tel:+15551234>",
            "*",
            "<sip:@>",
            "garbage <",
        ],
    ),
    (
        "Record-Route",
        &[
            "<sip:p1@192.0.2.20;lr>",
            "<sip:p2@192.0.2.21>",
            "<sip:p3.invalid;lr>, <sip:p4@192.0.2.22:5080;lr;transport=tcp>",
            "<sips:p5@192.0.2.23;lr>",
            "nonsense",
        ],
    ),
    ("Session-Expires", &["90", "1800;refresher=uac", "1800;refresher=uas", "0", "4294967296", "abc;refresher="]),
    ("Min-SE", &["90", "3600", "86400", "x"]),
    ("Require", &["timer", "100rel", "timer, 100rel", "x-unknown"]),
    ("RSeq", &["1", "2", "4294967295", "x"]),
    (
        "WWW-Authenticate",
        &[
            "Digest realm=\"r\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"n2\", stale=true",
            "Digest algorithm=SHA-256, realm=\"r\", nonce=\"n3\", qop=\"auth-int,auth\"",
            "Basic realm=\"x\"",
            "Digest",
        ],
    ),
    ("Proxy-Authenticate", &["Digest realm=\"p\", nonce=\"m1\"", "Digest realm=\"p\", nonce=\"m2\", qop=\"x\""]),
    ("Retry-After", &["5", "x"]),
    ("Allow", &["INVITE, ACK, BYE, UPDATE, INFO", "INVITE", ""]),
    ("Supported", &["timer, 100rel", "path"]),
    ("Content-Type", &["application/sdp", "text/plain", "application/dtmf-relay", "multipart/mixed;boundary=x"]),
    ("Reason", &["SIP;cause=200;text=\"elsewhere\"", "Q.850;cause=16"]),
];

const CODES: &[u16] = &[
    100, 180, 181, 183, 199, 200, 202, 299, 301, 302, 380, 401, 403, 404, 407, 408, 422, 480, 481, 486, 487, 488, 491,
    500, 503, 504, 600, 603, 699,
];

const METHODS: &[&str] =
    &["BYE", "INVITE", "UPDATE", "INFO", "OPTIONS", "ACK", "CANCEL", "PRACK", "NOTIFY", "REFER", "FOO"];

#[derive(Debug, Clone)]
enum Action {
    /// A response to one of the requests we sent (`pick` modulo how many).
    Respond {
        pick: usize,
        code: u16,
        tag: u8,
        sdp: u8,
        cseq_off: i8,
        extras: Vec<(usize, usize)>,
        cut: Option<usize>,
    },
    /// A request of the far end, in our dialog (its tag `tag`) or outside it.
    Request {
        method: usize,
        tag: u8,
        seq: u32,
        sdp: u8,
        extras: Vec<(usize, usize)>,
    },
    Garbage(Vec<u8>),
    Advance(u32),
    Hangup,
    Reinvite,
    Update,
    Info,
    Answer,
    Reject(u16),
    TransportError,
    ConnectionClosed,
}

fn extras() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((0..EXTRAS.len(), 0usize..8), 0..4)
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (any::<usize>(), prop::sample::select(CODES), 0u8..4, 0u8..3, prop::sample::select(vec![0i8, 0, 0, -1, 1]), extras(), prop::option::weighted(0.1, 0usize..400))
            .prop_map(|(pick, code, tag, sdp, cseq_off, extras, cut)| Action::Respond { pick, code, tag, sdp, cseq_off, extras, cut }),
        3 => (0..METHODS.len(), 0u8..4, prop::sample::select(vec![0u32, 1, 2, 5, 100, u32::MAX]), 0u8..3, extras())
            .prop_map(|(method, tag, seq, sdp, extras)| Action::Request { method, tag, seq, sdp, extras }),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Action::Garbage),
        4 => prop::sample::select(vec![0u32, 10, 500, 4_000, 32_000, 70_000, 1_000_000]).prop_map(Action::Advance),
        1 => Just(Action::Hangup),
        1 => Just(Action::Reinvite),
        1 => Just(Action::Update),
        1 => Just(Action::Info),
        1 => Just(Action::Answer),
        1 => prop::sample::select(vec![488u16, 491, 500]).prop_map(Action::Reject),
        1 => Just(Action::TransportError),
        1 => Just(Action::ConnectionClosed),
    ]
}

/// The far end's tags: none, or one of three dialogs (a forking proxy).
fn tag(t: u8) -> Option<&'static str> {
    ["", "bob-a", "bob-b", "bob-c"].get(usize::from(t)).copied().filter(|t| !t.is_empty())
}

fn with_extras(m: &mut Message, extras: &[(usize, usize)]) {
    for &(h, v) in extras {
        let (name, values) = EXTRAS[h];
        m.headers.push(HeaderName::parse(name), values[v % values.len()]);
    }
}

fn with_body(m: &mut Message, sdp: u8) {
    match sdp {
        1 => {
            m.headers.push(HeaderName::ContentType, "application/sdp");
            m.body = Bytes::from_static(SDP.as_bytes());
        }
        2 => {
            m.headers.push(HeaderName::ContentType, "application/sdp");
            m.body = Bytes::from_static(b"v=0\r\nm=audio x\r\n");
        }
        _ => {}
    }
}

/// A request of the far end: its From is our To (with its tag), its To our From.
fn far_request(invite: &Message, method: &str, tag: Option<&str>, seq: u32, branch: u64) -> Option<Message> {
    let from = invite.headers.get(&HeaderName::To)?;
    let from = match tag {
        Some(t) => format!("{from};tag={t}"),
        None => from.to_owned(),
    };
    let raw = format!(
        "{method} sip:gw@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKfar{branch}\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\nContact: <sip:bob@{PEER}>\r\nContent-Length: 0\r\n\r\n",
        invite.headers.get(&HeaderName::From)?,
        invite.headers.get(&HeaderName::CallId)?,
    );
    parse_message(raw.as_bytes(), &Limits::default(), Framing::Datagram).ok()
}

/// What the user agent sent since the last look: every message must parse; requests are kept.
fn collect(h: &mut Harness, requests: &mut Vec<Message>) {
    for (_, bytes) in h.sent_raw() {
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            continue; // a keep-alive
        }
        let m = parse_message(&bytes, &Limits::default(), Framing::Datagram)
            .unwrap_or_else(|e| panic!("we sent unparseable SIP ({e}): {}", String::from_utf8_lossy(&bytes)));
        if m.is_request() {
            requests.push(m);
        }
    }
}

/// Events since the last look; none may follow the call's end, and it ends once.
fn check_events(h: &mut Harness, ended: &mut bool) {
    while let Some((_, e)) = h.ua.poll_event() {
        assert!(!*ended, "an event after the call ended: {e:?}");
        *ended |= e.is_final();
    }
}

fn run(actions: &[Action], session_timer: bool, credentials: bool, transport: Transport) {
    let mut config = config(transport);
    if session_timer {
        config.session_expires = Some(90);
    }
    config.ring_timeout = Some(Duration::from_secs(120));
    let mut h = Harness::with_config(config);
    let mut req = h.request("sip:bob@biloxi.example.com");
    if credentials {
        req.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
    }
    let call = h.ua.call(h.now, req).expect("call");
    let mut sent = Vec::new();
    collect(&mut h, &mut sent);
    let invite = sent.first().cloned().expect("the INVITE");
    let peer = Target::new(transport, PEER.parse().expect("addr"));
    let mut ended = false;
    for (n, a) in actions.iter().enumerate() {
        match a {
            Action::Respond { pick, code, tag: t, sdp, cseq_off, extras, cut } => {
                let Some(req) = sent.get(pick % sent.len()) else { continue };
                if req.method() == Some(&Method::Ack) {
                    continue;
                }
                let mut r = respond(req, *code, "Whatever", tag(*t));
                if *cseq_off != 0 {
                    if let (Ok(c), Some(h)) = (req.cseq(), r.headers.0.iter_mut().find(|h| h.name == HeaderName::CSeq))
                    {
                        h.value = format!("{} {}", c.seq.wrapping_add_signed(i32::from(*cseq_off)), c.method);
                    }
                }
                with_extras(&mut r, extras);
                with_body(&mut r, *sdp);
                let mut bytes = r.to_bytes();
                if let Some(cut) = cut {
                    bytes.truncate(*cut);
                }
                h.ua.handle_input(h.now, peer.clone(), &bytes);
            }
            Action::Request { method, tag: t, seq, sdp, extras } => {
                if let Some(mut r) = far_request(&invite, METHODS[*method], tag(*t), *seq, n as u64) {
                    with_extras(&mut r, extras);
                    with_body(&mut r, *sdp);
                    h.deliver(&r);
                }
            }
            Action::Garbage(bytes) => h.deliver_raw(bytes),
            Action::Advance(ms) => h.advance(Duration::from_millis(u64::from(*ms))),
            Action::Hangup => drop(h.ua.hangup(h.now, call)),
            Action::Reinvite => drop(h.ua.reinvite(h.now, call, Bytes::from_static(SDP.as_bytes()))),
            Action::Update => drop(h.ua.update(h.now, call, Bytes::from_static(SDP.as_bytes()))),
            Action::Info => drop(h.ua.info(h.now, call, "application/dtmf-relay", Bytes::from_static(b"Signal=5\r\n"))),
            Action::Answer => drop(h.ua.answer(h.now, call, Bytes::from_static(SDP.as_bytes()))),
            Action::Reject(code) => drop(h.ua.reject_offer(h.now, call, *code, "No")),
            Action::TransportError => h.ua.handle_transport_error(h.now, &peer),
            Action::ConnectionClosed => h.ua.handle_connection_closed(h.now, &peer),
        }
        collect(&mut h, &mut sent);
        check_events(&mut h, &mut ended);
    }
    // The application hangs up; the far end answers nothing more.
    let _ = h.ua.hangup(h.now, call);
    for _ in 0..20 {
        h.advance(Duration::from_secs(30));
    }
    collect(&mut h, &mut sent);
    check_events(&mut h, &mut ended);
    assert!(ended, "the call ended");
    assert_eq!(h.ua.call_count(), 0, "no call left");
    assert_eq!(h.ua.transaction_count(), 0, "no transaction left");
    // The timer heap is lazy: an entry of a call that is gone stays until its time (a session
    // refresh, at most a day away) and then goes, doing nothing.
    let horizon = h.now + Duration::from_secs(86_400);
    for _ in 0..1000 {
        let Some(t) = h.ua.poll_timeout() else { break };
        assert!(t <= horizon, "a timer more than a day away");
        h.now = t.max(h.now);
        h.ua.handle_timeout(h.now);
    }
    assert_eq!(h.ua.timer_entries(), 0, "no timer left");
    assert!(h.sent_raw().is_empty(), "nothing sent by a stale timer");
    assert!(h.ua.poll_event().is_none(), "nothing reported by a stale timer");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_hostile_far_end_leaves_nothing_behind(
        actions in prop::collection::vec(action(), 1..40),
        session_timer in any::<bool>(),
        tcp in any::<bool>(),
        credentials in any::<bool>(),
    ) {
        // Over TCP the bytes go through the stream framer: a truncated message waits for the
        // rest, and garbage must not wedge what follows it.
        run(&actions, session_timer, credentials, if tcp { Transport::Tcp } else { Transport::Udp });
    }
}
