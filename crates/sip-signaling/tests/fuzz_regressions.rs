//! Replays the inputs in `tests/data/fuzz-regressions/` through the
//! invariants the fuzz targets in `fuzz/` check: whatever parses
//! re-parses from its own serialisation to the same message, the stream
//! framer's message frames do not depend on read sizes, and nothing
//! panics.

use sip_signaling::{parse_message, Frame, Framing, HeaderName, Limits, Message, ParseError, StreamFramer};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions")
}

fn without_content_length(m: &Message) -> Message {
    let mut m = m.clone();
    m.headers.remove(&HeaderName::ContentLength);
    m
}

/// The `parse_message` fuzz target's invariants.
fn parse_invariants(data: &[u8]) {
    let limits = Limits::default();
    for framing in [Framing::Datagram, Framing::Stream] {
        let Ok(msg) = parse_message(data, &limits, framing) else { continue };
        let _ = (msg.validate(), msg.cseq(), msg.from(), msg.to(), msg.top_via(), msg.contact());
        let bytes = msg.to_bytes();
        let again = parse_message(&bytes, &limits, Framing::Stream).expect("serialisation re-parses");
        assert_eq!(without_content_length(&again), without_content_length(&msg));
        assert_eq!(again.to_bytes(), bytes);
    }
}

/// Message frames from feeding `data` in chunks of `size` bytes, up to the
/// first framing error.
fn frames(data: &[u8], size: usize) -> Vec<Vec<u8>> {
    let mut framer = StreamFramer::new(Limits::default());
    let mut out = Vec::new();
    for piece in data.chunks(size.max(1)) {
        framer.push(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    let _ = parse_message(&m, &Limits::default(), Framing::Stream).map(|m| m.validate());
                    out.push(m);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return out,
            }
        }
    }
    out
}

/// The `stream_framer` fuzz target's invariants.
fn framer_invariants(data: &[u8]) {
    let whole = frames(data, data.len());
    for size in [1, 2, 7, 64] {
        let cut = frames(data, size);
        let n = cut.len().min(whole.len());
        assert_eq!(cut[..n], whole[..n], "chunks of {size}");
    }
}

#[test]
fn replay_all() {
    let mut count = 0;
    for entry in std::fs::read_dir(dir()).expect("regressions dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).expect("read");
        parse_invariants(&data);
        framer_invariants(&data);
        count += 1;
    }
    assert!(count >= 1, "no regression inputs found");
}

/// A NUL on a folded continuation line is refused like one on the first
/// line (it used to be accepted, and the serialisation then failed).
#[test]
fn folded_nul() {
    let data = std::fs::read(dir().join("folded-nul.dat")).expect("read");
    assert_eq!(
        parse_message(&data, &Limits::default(), Framing::Datagram),
        Err(ParseError::Header("NUL in header value"))
    );
}
