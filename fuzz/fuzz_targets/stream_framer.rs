//! Fuzzes `StreamFramer`: the input is a byte stream fed in chunks whose
//! sizes come from the input's own bytes; every frame is drained and every
//! message frame parsed. Checks that the buffer stays bounded, that message
//! frames do not depend on how the stream was cut (up to the first error),
//! and that nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_signaling::{parse_message, Frame, Framing, Limits, StreamFramer};

/// The message frames obtained by feeding `data` in chunks of the given
/// sizes, up to the first framing error.
fn frames(data: &[u8], limits: Limits, mut size: impl FnMut(usize) -> usize) -> Vec<Vec<u8>> {
    let mut framer = StreamFramer::new(limits);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < data.len() {
        let n = size(k).clamp(1, data.len() - pos);
        k += 1;
        framer.push(&data[pos..pos + n]);
        pos += n;
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    assert!(!m.is_empty(), "empty message frame");
                    assert!(m.len() <= limits.max_message, "frame larger than the limit");
                    if let Ok(msg) = parse_message(&m, &limits, Framing::Stream) {
                        let _ = msg.validate();
                        let _ = (msg.cseq(), msg.from(), msg.to(), msg.top_via(), msg.contact());
                    }
                    out.push(m);
                }
                Ok(Some(Frame::Ping | Frame::Pong)) => {}
                Ok(None) => break,
                Err(_) => return out,
            }
            // Whatever is left waits for more bytes: never beyond the cap
            // plus the last chunk.
        }
        assert!(framer.buffered() <= limits.max_message + n, "buffer grew past the limit");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Small limits so that the fuzzer reaches them.
    let limits = Limits { max_message: 4096, max_headers: 32, max_line: 512 };
    let chunked = frames(data, limits, |k| usize::from(data[k % data.len()] & 0x3f) + 1);
    let mut others = vec![frames(data, limits, |_| data.len())];
    // One byte at a time costs a rescan of the buffer per byte: only for
    // short inputs, to keep the executions per second up.
    if data.len() <= 512 {
        others.push(frames(data, limits, |_| 1));
    }
    // A framing error may come earlier with smaller reads (a line is
    // judged too long before its end arrives), so compare up to the
    // shorter list.
    for other in &others {
        let n = chunked.len().min(other.len());
        assert_eq!(chunked[..n], other[..n], "frames depend on read sizes");
    }
});
