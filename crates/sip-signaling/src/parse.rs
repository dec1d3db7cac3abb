//! The bounded message parser.
//!
//! Limits are checked before anything is allocated for the part that
//! exceeds them: the message size first, then each line's length and the
//! running header count while the header section is scanned.

use crate::error::ParseError;
use crate::header::{Header, HeaderName, Headers};
use crate::message::{Message, StartLine};
use crate::method::Method;
use crate::uri::Uri;
use bytes::Bytes;

/// Caps applied to every message read from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of a whole message (header section and body), bytes.
    pub max_message: usize,
    /// Maximum number of header fields (after unfolding).
    pub max_headers: usize,
    /// Maximum length of one physical line, bytes.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message: 65_535, max_headers: 128, max_line: 8_192 }
    }
}

/// Where the bytes came from: it decides what a missing or short
/// Content-Length means (RFC 3261 section 18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One datagram is one message; without Content-Length the body is
    /// the rest of the datagram; extra bytes after the body are dropped.
    Datagram,
    /// The bytes are exactly one message cut out by [`crate::StreamFramer`].
    Stream,
}

/// Iterates physical lines (ending in CRLF or a bare LF).
struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// Next line without its terminator, and the offset after it.
    fn next_line(&mut self, limit: usize) -> Result<&'a [u8], ParseError> {
        let rest = &self.data[self.pos..];
        let nl = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => nl,
            None => {
                if rest.len() > limit {
                    return Err(ParseError::LineTooLong { limit });
                }
                return Err(ParseError::Incomplete);
            }
        };
        if nl > limit {
            return Err(ParseError::LineTooLong { limit });
        }
        let mut line = &rest[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        self.pos += nl + 1;
        Ok(line)
    }
}

/// Parses one message.
pub fn parse_message(data: &[u8], limits: &Limits, framing: Framing) -> Result<Message, ParseError> {
    if data.len() > limits.max_message {
        return Err(ParseError::TooLarge { size: data.len(), limit: limits.max_message });
    }
    let mut lines = Lines { data, pos: 0 };
    // RFC 3261 7.5: ignore empty lines before the start line.
    let start_line = loop {
        let line = lines.next_line(limits.max_line)?;
        if !line.is_empty() {
            break line;
        }
    };
    let start = parse_start_line(std::str::from_utf8(start_line).map_err(|_| ParseError::Utf8)?)?;

    let mut headers: Vec<Header> = Vec::with_capacity(16);
    loop {
        let line = lines.next_line(limits.max_line)?;
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::Utf8)?;
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous field.
            let last = headers.last_mut().ok_or(ParseError::Header("continuation line before any header"))?;
            let cont = line.trim();
            if !cont.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(cont);
            }
            continue;
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::TooManyHeaders { limit: limits.max_headers });
        }
        let colon = line.find(':').ok_or(ParseError::Header("missing colon"))?;
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !HeaderName::is_valid(name) {
            return Err(ParseError::Header("invalid header name"));
        }
        let value = line[colon + 1..].trim_matches([' ', '\t']);
        headers.push(Header { name: HeaderName::parse(name), value: value.to_owned() });
    }
    // Checked on the unfolded values: a quoted-string may span a fold, and
    // a NUL on a continuation line must not slip through.
    if headers.iter().any(|h| has_bare_nul(&h.value)) {
        return Err(ParseError::Header("NUL in header value"));
    }
    let headers = Headers(headers);
    let body_start = lines.pos;
    let available = data.len() - body_start;

    let mut declared: Option<usize> = None;
    for v in headers.get_all(&HeaderName::ContentLength) {
        let v = v.trim();
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::HeaderValue { name: "Content-Length", reason: "not a number" });
        }
        let n: usize =
            v.parse().map_err(|_| ParseError::HeaderValue { name: "Content-Length", reason: "too large" })?;
        if declared.is_some_and(|d| d != n) {
            return Err(ParseError::HeaderValue { name: "Content-Length", reason: "conflicting values" });
        }
        declared = Some(n);
    }
    let body_len = match (declared, framing) {
        (Some(n), _) if n > available => return Err(ParseError::BodyLength { declared: n, available }),
        (Some(n), _) => n,
        (None, Framing::Datagram) => available,
        (None, Framing::Stream) => 0,
    };
    let body = Bytes::copy_from_slice(&data[body_start..body_start + body_len]);
    Ok(Message { start, headers, body })
}

/// Whether a header value holds a NUL octet other than as the second octet
/// of a quoted-pair inside a quoted-string, the only place RFC 3261 allows
/// one (RFC 4475 section 3.1.1.2: `"NUL:\<00>"`).
fn has_bare_nul(value: &str) -> bool {
    let b = value.as_bytes();
    let mut in_quote = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0 => return true,
            b'"' => in_quote = !in_quote,
            b'\\' if in_quote => i += 1,
            _ => {}
        }
        i += 1;
    }
    false
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (ver, rest) = rest.split_once(' ').ok_or(ParseError::StartLine("status line without code"))?;
        if ver != "2.0" {
            return Err(ParseError::StartLine("unsupported SIP version"));
        }
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StartLine("status code is not three digits"));
        }
        let code: u16 = code.parse().map_err(|_| ParseError::StartLine("bad status code"))?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine("status code out of range"));
        }
        return Ok(StartLine::Response { code, reason: reason.to_owned() });
    }
    let mut parts = line.split(' ');
    let (Some(m), Some(u), Some(v), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::StartLine("request line is not METHOD SP URI SP SIP/2.0"));
    };
    let method = Method::parse(m).ok_or(ParseError::StartLine("invalid method"))?;
    if !v.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::StartLine("unsupported SIP version"));
    }
    let uri = Uri::parse(u)?;
    // RFC 3261 section 19.1.5 table 1: a Request-URI never carries
    // `?headers` (RFC 4475 section 3.1.2.11, escruri).
    if uri.as_sip().is_some_and(|u| u.headers.is_some()) {
        return Err(ParseError::StartLine("headers in the Request-URI"));
    }
    Ok(StartLine::Request { method, uri })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn p(s: &str) -> Result<Message, ParseError> {
        parse_message(s.as_bytes(), &Limits::default(), Framing::Datagram)
    }

    #[test]
    fn rfc3261_invite() {
        let m = p(INVITE).expect("parse");
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.cseq().expect("cseq").seq, 314159);
        assert_eq!(m.from().expect("from").tag(), Some("1928301774"));
        assert_eq!(&m.body[..], b"v=0\n");
        m.validate().expect("valid");
        let again = parse_message(&m.to_bytes(), &Limits::default(), Framing::Stream).expect("reparse");
        assert_eq!(again, m);
    }

    #[test]
    fn lf_only_folding_and_compact() {
        let s = "\r\nOPTIONS sip:x@y SIP/2.0\nv: SIP/2.0/UDP a;branch=z9hG4bK1\nf: <sip:a@b>\n ;tag=1\nt: <sip:x@y>\ni: abc\nCSeq: 1\n\tOPTIONS\nX-Custom:  keep  me \nl: 0\n\n";
        let m = p(s).expect("parse");
        assert_eq!(m.from().expect("from").tag(), Some("1"));
        assert_eq!(m.cseq().expect("cseq").method, Method::Options);
        assert_eq!(m.headers.get(&HeaderName::Other("x-custom".into())), None);
        assert_eq!(m.headers.get(&HeaderName::Other("X-Custom".into())), Some("keep  me"));
        m.validate().expect("valid");
        assert!(String::from_utf8_lossy(&m.to_bytes()).contains("X-Custom: keep  me\r\n"));
    }

    #[test]
    fn response_and_unknown_method() {
        let m = p("SIP/2.0 180 Ringing Now\r\nVia: SIP/2.0/UDP a\r\n\r\n").expect("resp");
        assert_eq!(m.status(), Some(180));
        let m = p("NEWMETHOD sip:a@b SIP/2.0\r\nCSeq: 1 NEWMETHOD\r\n\r\n").expect("ext");
        assert_eq!(m.method().map(|m| m.as_str()), Some("NEWMETHOD"));
        assert_eq!(p("SIP/2.0 200\r\n\r\n").expect("no reason").status(), Some(200));
    }

    #[test]
    fn limits() {
        let l = Limits { max_message: 200, max_headers: 3, max_line: 40 };
        let big = "x".repeat(300);
        assert!(matches!(parse_message(big.as_bytes(), &l, Framing::Datagram), Err(ParseError::TooLarge { .. })));
        let long = format!("OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n", "y".repeat(50));
        assert!(matches!(parse_message(long.as_bytes(), &l, Framing::Datagram), Err(ParseError::LineTooLong { .. })));
        let many = "OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert!(matches!(
            parse_message(many.as_bytes(), &l, Framing::Datagram),
            Err(ParseError::TooManyHeaders { .. })
        ));
    }

    #[test]
    fn content_length_rules() {
        let base = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(p(base), Err(ParseError::BodyLength { declared: 10, available: 3 })));
        let m = p("OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nabcdef").expect("truncate");
        assert_eq!(&m.body[..], b"ab");
        assert!(p("OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\nl: 3\r\n\r\nabcdef").is_err());
        assert!(p("OPTIONS sip:a@b SIP/2.0\r\nl: -2\r\n\r\n").is_err());
        let m = p("OPTIONS sip:a@b SIP/2.0\r\n\r\nrest").expect("no length");
        assert_eq!(&m.body[..], b"rest");
    }

    #[test]
    fn nul_only_in_quoted_pair() {
        // RFC 4475 section 3.1.1.2 (intmeth): a quoted-pair may escape NUL.
        let ok = "OPTIONS sip:a@b SIP/2.0\r\nTo: \"x\\\0y\" <sip:a@b>\r\n\r\n";
        let m = p(ok).expect("quoted NUL");
        assert_eq!(m.to().expect("to").display.as_deref(), Some("x\0y"));
        // A quoted-string folded across lines keeps its quoted-pair.
        let folded = "OPTIONS sip:a@b SIP/2.0\r\nTo: \"x\r\n y\\\0z\" <sip:a@b>\r\n\r\n";
        assert_eq!(p(folded).expect("folded").to().expect("to").display.as_deref(), Some("x y\0z"));
        for bad in [
            "OPTIONS sip:a@b SIP/2.0\r\nTo: x\0y <sip:a@b>\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\nTo: \"x\0y\" <sip:a@b>\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\nX: a\\\0b\r\n\r\n",
            // On a continuation line (found by the RFC 4475 mutation sweep).
            "OPTIONS sip:a@b SIP/2.0\r\nX: a\r\n b\0c\r\n\r\n",
        ] {
            assert!(matches!(p(bad), Err(ParseError::Header(_))), "{bad:?}");
        }
    }

    #[test]
    fn request_uri_headers_rejected() {
        // RFC 4475 section 3.1.2.11 (escruri).
        let s = "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\r\n\r\n";
        assert!(matches!(p(s), Err(ParseError::StartLine(_))));
        // The same URI is fine in a header field.
        let s = "OPTIONS sip:a@b SIP/2.0\r\nContact: <sip:user@example.com?Route=%3Csip:example.com%3E>\r\n\r\n";
        let m = p(s).expect("contact with headers");
        let c = m.contact().expect("contact").expect("parses");
        assert_eq!(c.uri.as_sip().and_then(|u| u.headers.as_deref()), Some("Route=%3Csip:example.com%3E"));
    }

    #[test]
    fn malformed_start_lines() {
        for s in [
            "INVITE  sip:a@b SIP/2.0\r\n\r\n",
            "INVITE sip:a@b SIP/3.0\r\n\r\n",
            "INVITE sip:a@b\r\n\r\n",
            "SIP/2.0 99 Low\r\n\r\n",
            "SIP/2.0 2000 OK\r\n\r\n",
            "SIP/1.0 200 OK\r\n\r\n",
            "INV@TE sip:a@b SIP/2.0\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\n folded-first\r\n\r\n",
            "OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\n",
            "\r\n\r\n",
        ] {
            assert!(p(s).is_err(), "{s:?}");
        }
    }
}
