//! Fuzzes `parse_message` with both framings. Whatever parses must
//! serialise to bytes that parse again, to the same message, and
//! serialise identically a second time; `validate()` and the typed
//! accessors must not panic on anything the parser accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_signaling::{parse_message, Framing, HeaderName, Limits, Message, Via};

/// Limits for re-parsing a serialisation: it may legitimately be a little
/// larger than the input (compact names are written in full, Content-Length
/// is added), so the caps that are policy, not syntax, are relaxed.
fn relaxed(l: &Limits) -> Limits {
    Limits { max_message: l.max_message * 2 + 64, max_headers: l.max_headers + 1, max_line: l.max_line * 2 + 64 }
}

fn accessors(msg: &Message) {
    let _ = msg.validate();
    let _ = msg.call_id();
    let _ = msg.cseq();
    let _ = msg.from().map(|n| n.tag().map(str::len));
    let _ = msg.to().map(|n| n.to_string());
    let _ = msg.top_via().map(|v| v.to_string());
    let _ = msg.contact().map(|c| c.map(|n| n.uri.to_string()));
    for name in [HeaderName::Contact, HeaderName::Route, HeaderName::RecordRoute] {
        let _ = msg.name_addrs(&name);
    }
    for v in msg.headers.values(&HeaderName::Via) {
        let _ = Via::parse(v);
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for framing in [Framing::Datagram, Framing::Stream] {
        let Ok(msg) = parse_message(data, &limits, framing) else { continue };
        accessors(&msg);
        let bytes = msg.to_bytes();
        let again = match parse_message(&bytes, &relaxed(&limits), Framing::Stream) {
            Ok(m) => m,
            Err(e) => panic!("{framing:?}: accepted input serialised to bytes that do not parse: {e}"),
        };
        // Equal but for Content-Length, which is written once, last.
        assert_eq!(again.start, msg.start);
        assert_eq!(again.body, msg.body);
        let strip = |m: &Message| {
            let mut h = m.headers.clone();
            h.remove(&HeaderName::ContentLength);
            h
        };
        assert_eq!(strip(&again), strip(&msg));
        assert_eq!(again.to_bytes(), bytes, "serialisation is not stable");
        assert_eq!(again.validate().is_ok(), msg.validate().is_ok());
    }
});
