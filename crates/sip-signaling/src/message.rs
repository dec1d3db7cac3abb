//! SIP messages and the typed views of the headers the user agent reads.

use crate::error::ParseError;
use crate::header::{HeaderName, Headers};
use crate::method::{is_token_byte, Method};
use crate::uri::{split_host_port, split_outside_quotes, Host, Params, Uri};
use bytes::Bytes;
use std::fmt::{self, Write as _};

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`
    Request {
        /// Method.
        method: Method,
        /// Request-URI.
        uri: Uri,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase as received.
        reason: String,
    },
}

/// A parsed SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// Header fields in received order.
    pub headers: Headers,
    /// The body (exactly Content-Length bytes).
    pub body: Bytes,
}

impl Message {
    /// A new request with no headers.
    pub fn request(method: Method, uri: Uri) -> Message {
        Message { start: StartLine::Request { method, uri }, headers: Headers::default(), body: Bytes::new() }
    }

    /// A new response with no headers.
    pub fn response(code: u16, reason: impl Into<String>) -> Message {
        Message {
            start: StartLine::Response { code, reason: reason.into() },
            headers: Headers::default(),
            body: Bytes::new(),
        }
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.headers.get(&HeaderName::CallId).filter(|v| !v.is_empty()).ok_or(ParseError::Missing("Call-ID"))
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.headers.get(&HeaderName::CSeq).ok_or(ParseError::Missing("CSeq"))?)
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.headers.get(&HeaderName::From).ok_or(ParseError::Missing("From"))?)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.headers.get(&HeaderName::To).ok_or(ParseError::Missing("To"))?)
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        Via::parse(self.headers.values(&HeaderName::Via).next().ok_or(ParseError::Missing("Via"))?)
    }

    /// The first Contact, if any.
    pub fn contact(&self) -> Option<Result<NameAddr, ParseError>> {
        self.headers.values(&HeaderName::Contact).next().map(NameAddr::parse)
    }

    /// Every value of a list header parsed as name-addr (Route, Record-Route).
    pub fn name_addrs(&self, name: &HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.values(name).map(NameAddr::parse).collect()
    }

    /// Checks the headers every request and response must carry
    /// (RFC 3261 section 8.1.1): To, From, CSeq, Call-ID, Via, each of the
    /// first four exactly once (RFC 4475 section 3.3.8); and that the CSeq
    /// method matches a request's method.
    pub fn validate(&self) -> Result<(), ParseError> {
        const SINGLE: [(HeaderName, &str); 4] = [
            (HeaderName::CallId, "Call-ID"),
            (HeaderName::CSeq, "CSeq"),
            (HeaderName::From, "From"),
            (HeaderName::To, "To"),
        ];
        for (name, label) in SINGLE {
            // From and To are counted as list elements too, so that
            // `To: <sip:a@x>, <sip:b@x>` is caught; a Call-ID may hold `"`
            // and `<`, so only its fields are counted.
            let count = match name {
                HeaderName::From | HeaderName::To => self.headers.values(&name).count(),
                _ => self.headers.get_all(&name).count(),
            };
            if count > 1 {
                return Err(ParseError::HeaderValue { name: label, reason: "more than one value" });
            }
        }
        self.call_id()?;
        let cseq = self.cseq()?;
        self.from()?;
        self.to()?;
        self.top_via()?;
        if let Some(m) = self.method() {
            if *m != cseq.method {
                return Err(ParseError::HeaderValue { name: "CSeq", reason: "method differs from the request line" });
            }
        }
        Ok(())
    }

    /// Serialises the message; Content-Length is always written and always
    /// matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in &self.headers.0 {
            if h.name == HeaderName::ContentLength {
                continue;
            }
            out.push_str(h.name.as_str());
            out.push_str(": ");
            out.push_str(&h.value);
            out.push_str("\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// `CSeq: 4711 INVITE`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2^31 per RFC 3261).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        const BAD: ParseError = ParseError::HeaderValue { name: "CSeq", reason: "expected <number> <method>" };
        let mut it = s.split_ascii_whitespace();
        let num = it.next().ok_or(BAD)?;
        let method = it.next().ok_or(BAD)?;
        if it.next().is_some() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        let seq: u32 = num.parse().map_err(|_| BAD)?;
        if seq >= 1 << 31 {
            return Err(ParseError::HeaderValue { name: "CSeq", reason: "sequence number above 2^31" });
        }
        Ok(CSeq { seq, method: Method::parse(method).ok_or(BAD)? })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact,
/// Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `lr` on a Route URI stays in the URI).
    pub params: Params,
    /// Whether the URI was written in angle brackets.
    pub angle: bool,
}

impl NameAddr {
    /// `<uri>` without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr { display: None, uri, params: Params::default(), angle: true }
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// Parses a name-addr / addr-spec with parameters.
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        const NAME: &str = "name-addr";
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::HeaderValue { name: NAME, reason: "empty" });
        }
        let bytes = s.as_bytes();
        let mut display = None;
        let mut rest = s;
        if bytes[0] == b'"' {
            let (text, after) = read_quoted(s)?;
            display = Some(text);
            rest = after.trim_start();
            if !rest.starts_with('<') {
                return Err(ParseError::HeaderValue { name: NAME, reason: "quoted display name without <URI>" });
            }
        } else if let Some(lt) = find_unquoted(s, b'<') {
            let d = s[..lt].trim();
            // RFC 3261 display-name = *(token LWS) / quoted-string
            // (RFC 4475 section 3.1.2.15). Non-ASCII letters are tolerated:
            // phones send unquoted UTF-8 names (docs/interop.md).
            if !d.split_ascii_whitespace().all(|t| t.bytes().all(|b| is_token_byte(b) || b >= 0x80)) {
                return Err(ParseError::HeaderValue { name: NAME, reason: "unquoted display name is not tokens" });
            }
            if !d.is_empty() {
                display = Some(d.to_owned());
            }
            rest = &s[lt..];
        }
        if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner.find('>').ok_or(ParseError::HeaderValue { name: NAME, reason: "missing >" })?;
            let text = &inner[..gt];
            // LAQUOT and RAQUOT take no whitespace inside the brackets
            // (RFC 4475 section 3.1.2.14).
            if text.starts_with(|c: char| c.is_ascii_whitespace()) || text.ends_with(|c: char| c.is_ascii_whitespace())
            {
                return Err(ParseError::HeaderValue { name: NAME, reason: "whitespace inside <>" });
            }
            let uri = Uri::parse(text)?;
            let params = Params::parse(&inner[gt + 1..])?;
            return Ok(NameAddr { display, uri, params, angle: true });
        }
        // addr-spec: parameters after the URI belong to the header.
        let (uri_text, params) = match s.find(';') {
            Some(i) => (&s[..i], Params::parse(&s[i..])?),
            None => (s, Params::default()),
        };
        if uri_text.contains(',') || uri_text.contains('?') {
            return Err(ParseError::HeaderValue { name: NAME, reason: "addr-spec with reserved characters needs <>" });
        }
        Ok(NameAddr { display: None, uri: Uri::parse(uri_text)?, params, angle: false })
    }
}

/// Finds `needle` outside double quotes.
fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut q = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if q => i += 1,
            b'"' => q = !q,
            c if c == needle && !q => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads a quoted string at the start of `s`; returns the unescaped text and
/// what follows the closing quote.
fn read_quoted(s: &str) -> Result<(String, &str), ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let c = *b
                    .get(i + 1)
                    .ok_or(ParseError::HeaderValue { name: "quoted-string", reason: "dangling escape" })?;
                if c == b'\r' || c == b'\n' {
                    return Err(ParseError::HeaderValue { name: "quoted-string", reason: "escaped line break" });
                }
                out.push(c);
                i += 2;
            }
            b'"' => {
                let text = String::from_utf8(out).map_err(|_| ParseError::Utf8)?;
                return Ok((text, &s[i + 1..]));
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(ParseError::HeaderValue { name: "quoted-string", reason: "unterminated quote" })
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_char('"')?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
            f.write_str("\" ")?;
        }
        if self.angle || self.display.is_some() || !matches!(self.uri, Uri::Tel(_)) {
            write!(f, "<{}>", self.uri)?;
        } else {
            write!(f, "{}", self.uri)?;
        }
        write!(f, "{}", self.params)
    }
}

/// One Via value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`...).
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `rport`, `received`, `maddr`, `ttl`...).
    pub params: Params,
}

impl Via {
    /// Parses one Via value (whitespace around `/` tolerated).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        const BAD: ParseError = ParseError::HeaderValue { name: "Via", reason: "expected SIP/2.0/<transport> <host>" };
        let s = s.trim();
        let mut parts = s.splitn(3, '/');
        let proto = parts.next().ok_or(BAD)?.trim();
        let ver = parts.next().ok_or(BAD)?.trim();
        let rest = parts.next().ok_or(BAD)?.trim_start();
        if !proto.eq_ignore_ascii_case("SIP") || ver != "2.0" {
            return Err(BAD);
        }
        let tend = rest.find(|c: char| c.is_ascii_whitespace()).ok_or(BAD)?;
        let transport = rest[..tend].to_ascii_uppercase();
        if transport.is_empty() || !transport.bytes().all(is_token_byte) {
            return Err(BAD);
        }
        let rest = rest[tend..].trim_start();
        // Drop a trailing comment, as some old stacks send.
        let rest = match rest.find('(') {
            Some(i) => rest[..i].trim_end(),
            None => rest,
        };
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], Params::parse(&rest[i..])?),
            None => (rest, Params::default()),
        };
        let (host, port) = split_host_port(sent_by)?;
        for key in ["received", "maddr"] {
            if let Some(v) = params.value(key) {
                Host::parse(v)?;
            }
        }
        if let Some(Some(v)) = params.get("rport") {
            v.parse::<u16>().map_err(|_| ParseError::HeaderValue { name: "Via", reason: "bad rport" })?;
        }
        Ok(Via { transport, host, port, params })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// Splits a list header value at top-level commas (exported for callers
/// that read their own list headers).
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    split_outside_quotes(value, b',').map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""Doe, \"JD\" John" <sip:jd@example.com;transport=tcp>;tag=abc"#).expect("quoted");
        assert_eq!(n.display.as_deref(), Some("Doe, \"JD\" John"));
        assert_eq!(n.tag(), Some("abc"));
        assert_eq!(n.uri.as_sip().and_then(|u| u.transport_param()).as_deref(), Some("tcp"));
        let n = NameAddr::parse("sip:alice@atlanta.com;tag=88").expect("addr-spec");
        assert_eq!(n.tag(), Some("88"));
        assert!(!n.angle);
        let n = NameAddr::parse("Bob Smith <tel:+15551234;phone-context=x>").expect("tel");
        assert_eq!(n.display.as_deref(), Some("Bob Smith"));
        let n = NameAddr::parse("<sip:[2001:db8::1]:5060>").expect("v6");
        assert_eq!(n.uri.as_sip().map(|u| u.port), Some(Some(5060)));
        let round = NameAddr::parse(&n.to_string()).expect("round");
        assert_eq!(round, n);
    }

    #[test]
    fn name_addr_errors() {
        for s in ["", "\"unterminated <sip:a@b>", "\"x\" sip:a@b", "<sip:a@b", "<>", "x <notauri>"] {
            assert!(NameAddr::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn strict_name_addr() {
        // RFC 4475 section 3.1.2.14 (badaspec): no whitespace inside <>.
        for s in ["\"Watson, Thomas\" < sip:t.watson@example.org >", "<sip:a@b >", "x <\tsip:a@b>"] {
            assert!(NameAddr::parse(s).is_err(), "{s:?}");
        }
        // RFC 4475 section 3.1.2.15 (baddn): unquoted display names are tokens.
        for s in ["Bell, Alexander <sip:a.g.bell@example.com>;tag=43", "a@b <sip:a@b>", "J\"D <sip:a@b>"] {
            assert!(NameAddr::parse(s).is_err(), "{s:?}");
        }
        let n = NameAddr::parse("Jörg Müller <sip:j@x>").expect("unquoted UTF-8 tolerated");
        assert_eq!(n.display.as_deref(), Some("Jörg Müller"));
        // RFC 4475 sections 3.1.1.2 and 3.1.1.6: token display names, with
        // or without LWS before <.
        let n = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").expect("tokens");
        assert_eq!(n.display.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").expect("no LWS");
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert_eq!(n.tag(), Some("323"));
        // Whitespace outside the brackets is SWS and stays allowed.
        assert!(NameAddr::parse("  <sip:a@b>  ;tag=1 ").is_ok());
    }

    fn msg(headers: &str) -> Message {
        let raw = format!(
            "OPTIONS sip:a@b SIP/2.0\r\n{headers}Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n\r\n"
        );
        crate::parse_message(raw.as_bytes(), &crate::Limits::default(), crate::Framing::Datagram).expect("parse")
    }

    #[test]
    fn validate_single_valued_headers() {
        let base = "Call-ID: c1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\n";
        msg(base).validate().expect("valid");
        // RFC 4475 section 3.3.8 (multi01): a second Call-ID, From, To or
        // CSeq, as another field or as a comma-separated value.
        for extra in ["Call-ID: c2\r\n", "f: <sip:c@b>;tag=2\r\n", "To: sip:d@b\r\n", "CSeq: 2 OPTIONS\r\n"] {
            let m = msg(&format!("{base}{extra}"));
            assert!(
                matches!(m.validate(), Err(ParseError::HeaderValue { reason: "more than one value", .. })),
                "{extra:?}"
            );
        }
        let m = msg("Call-ID: c1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>, <sip:c@b>\r\n");
        assert!(m.validate().is_err());
        // A comma inside a quoted display name or inside <> is not a list separator.
        msg("Call-ID: c1\r\nFrom: \"Doe, J\" <sip:a@b>;tag=1\r\nTo: <sip:b,c@b>\r\n").validate().expect("quoted comma");
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP / 2.0 / UDP [2001:db8::9:1]:5070;branch=z9hG4bKx;received=2001:db8::9:255;rport=5071")
            .expect("v6");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        let v = Via::parse("SIP/2.0/tcp host.example ;branch=z9hG4bK1 ;rport").expect("ws");
        assert_eq!(v.transport, "TCP");
        assert!(v.params.contains("rport"));
        assert!(Via::parse("SIP/3.0/UDP a").is_err());
        assert!(Via::parse("SIP/2.0/UDP a;received=not^host").is_err());
    }

    #[test]
    fn cseq() {
        assert_eq!(CSeq::parse("  4711   INVITE ").expect("ok").seq, 4711);
        assert!(CSeq::parse("4711").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("99999999999 INVITE").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
    }
}
