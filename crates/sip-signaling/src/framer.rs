//! Cutting a byte stream (TCP, TLS) into SIP messages by Content-Length,
//! with RFC 5626 CRLF keep-alives.

use crate::error::ParseError;
use crate::parse::Limits;

/// What the framer found at the head of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (header section and body), ready for
    /// [`crate::parse_message`] with [`crate::Framing::Stream`].
    Message(Vec<u8>),
    /// A double CRLF keep-alive ping: answer with a single CRLF.
    Ping,
    /// A single CRLF keep-alive pong.
    Pong,
}

/// Accumulates stream bytes and yields whole frames. Partial messages wait
/// for more bytes; pipelined messages come out one by one. The buffer
/// never grows beyond the message-size limit: past it, [`next_frame`](Self::next_frame)
/// fails and the connection must be closed.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
    /// How far the search for the end of the header section got, so a
    /// slow sender does not make every call rescan the buffer.
    scanned: usize,
}

impl StreamFramer {
    /// A framer with these limits.
    pub fn new(limits: Limits) -> StreamFramer {
        StreamFramer { buf: Vec::new(), limits, scanned: 0 }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            self.scanned = 0;
            return Ok(Some(Frame::Ping));
        }
        if self.buf.starts_with(b"\n\n") {
            self.buf.drain(..2);
            self.scanned = 0;
            return Ok(Some(Frame::Ping));
        }
        if self.buf.starts_with(b"\r\n") {
            if self.buf.len() == 3 && self.buf[2] == b'\r' {
                return Ok(None);
            }
            self.buf.drain(..2);
            self.scanned = 0;
            return Ok(Some(Frame::Pong));
        }
        if self.buf.starts_with(b"\n") {
            self.buf.drain(..1);
            self.scanned = 0;
            return Ok(Some(Frame::Pong));
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        // Resume a few bytes back: the terminator may straddle two reads.
        let from = self.scanned.saturating_sub(3);
        let Some(body_start) = header_end(&self.buf[from..]).map(|e| e + from) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.limits.max_message {
                return Err(ParseError::TooLarge { size: self.buf.len(), limit: self.limits.max_message });
            }
            let last_line = self.buf.rsplit(|&b| b == b'\n').next().map_or(0, <[u8]>::len);
            if last_line > self.limits.max_line {
                return Err(ParseError::LineTooLong { limit: self.limits.max_line });
            }
            return Ok(None);
        };
        let length = content_length(&self.buf[..body_start])?;
        let total = body_start
            .checked_add(length)
            .ok_or(ParseError::TooLarge { size: usize::MAX, limit: self.limits.max_message })?;
        if total > self.limits.max_message {
            return Err(ParseError::TooLarge { size: total, limit: self.limits.max_message });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let msg = std::mem::replace(&mut self.buf, rest);
        self.scanned = 0;
        Ok(Some(Frame::Message(msg)))
    }
}

/// Offset just after the empty line that ends the header section.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

/// Reads Content-Length (or `l`) from a header section; absent means 0.
fn content_length(head: &[u8]) -> Result<usize, ParseError> {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::HeaderValue { name: "Content-Length", reason: "not a number" });
            }
            return std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ParseError::HeaderValue { name: "Content-Length", reason: "too large" });
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";
    const M2: &[u8] = b"BYE sip:a@b SIP/2.0\nContent-Length: 0\n\n";

    #[test]
    fn partial_and_pipelined() {
        let mut f = StreamFramer::new(Limits::default());
        let mut all = Vec::new();
        all.extend_from_slice(b"\r\n\r\n");
        all.extend_from_slice(M1);
        all.extend_from_slice(M2);
        all.extend_from_slice(b"\r\n");
        let mut out = Vec::new();
        for chunk in all.chunks(5) {
            f.push(chunk);
            while let Some(fr) = f.next_frame().expect("frame") {
                out.push(fr);
            }
        }
        assert_eq!(out, vec![Frame::Ping, Frame::Message(M1.to_vec()), Frame::Message(M2.to_vec()), Frame::Pong]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn bounded() {
        let l = Limits { max_message: 100, max_headers: 10, max_line: 50 };
        let mut f = StreamFramer::new(l);
        f.push(&[b'a'; 60]);
        assert!(matches!(f.next_frame(), Err(ParseError::LineTooLong { .. })));
        let mut f = StreamFramer::new(l);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 500\r\n\r\n");
        assert!(matches!(f.next_frame(), Err(ParseError::TooLarge { .. })));
        let mut f = StreamFramer::new(l);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n");
        assert!(f.next_frame().is_err());
    }
}
