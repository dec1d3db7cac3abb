//! SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966).

use crate::error::ParseError;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host: a domain name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as written (compare case-insensitively).
    Domain(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (written in brackets in URIs and Via).
    V6(Ipv6Addr),
}

impl Host {
    /// Parses a host; IPv6 must be bracketed.
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(ParseError::Uri("unterminated IPv6 reference"))?;
            return inner.parse().map(Host::V6).map_err(|_| ParseError::Uri("bad IPv6 address"));
        }
        if s.is_empty() {
            return Err(ParseError::Uri("empty host"));
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Host::V4(v4));
        }
        // Some peers send a bare IPv6 address in `received` or `maddr`.
        if s.contains(':') {
            return s.parse().map(Host::V6).map_err(|_| ParseError::Uri("bad host"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return Err(ParseError::Uri("invalid character in host name"));
        }
        Ok(Host::Domain(s.to_owned()))
    }

    /// The IP address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A generic `;name[=value]` parameter list, order and spelling preserved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Looks a parameter up by name, case-insensitively. `Some(None)` means
    /// present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// The value of a parameter that has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Whether the parameter is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (or replaces) a parameter.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            slot.1 = value;
        } else {
            self.0.push((name.to_owned(), value));
        }
    }

    /// Removes a parameter.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Parses `;a=b;c` (the leading `;` optional). Values may be quoted.
    /// An empty parameter (`;;`, or a `;` with nothing after it) is an
    /// error: RFC 3261 `generic-param` and `uri-parameter` are never empty
    /// (RFC 4475 section 3.1.2.1).
    pub fn parse(s: &str) -> Result<Params, ParseError> {
        let mut out = Vec::new();
        for (i, part) in split_outside_quotes(s, b';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                // Only the text before the leading `;` may be empty.
                if i == 0 {
                    continue;
                }
                return Err(ParseError::Header("empty parameter"));
            }
            match part.split_once('=') {
                Some((n, v)) => {
                    let n = n.trim();
                    if n.is_empty() {
                        return Err(ParseError::Header("empty parameter name"));
                    }
                    out.push((n.to_owned(), Some(v.trim().to_owned())))
                }
                None => out.push((part.to_owned(), None)),
            }
        }
        Ok(Params(out))
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            f.write_char(';')?;
            f.write_str(n)?;
            if let Some(v) = v {
                f.write_char('=')?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

/// Splits `s` at `sep` bytes that are outside double quotes (honouring
/// backslash escapes) and outside angle brackets.
pub(crate) fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut in_quote = false;
    let mut angle = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < bytes.len() {
            let b = bytes[i];
            if in_quote {
                if b == b'\\' {
                    i += 1;
                } else if b == b'"' {
                    in_quote = false;
                }
            } else if b == b'"' {
                in_quote = true;
            } else if b == b'<' {
                angle += 1;
            } else if b == b'>' {
                angle = angle.saturating_sub(1);
            } else if b == sep && angle == 0 {
                let piece = &s[start..i];
                i += 1;
                start = i;
                return Some(piece);
            }
            i += 1;
        }
        done = true;
        Some(&s[start.min(s.len())..])
    })
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, still %-escaped as received.
    pub user: Option<String>,
    /// The password part (deprecated, kept for round trips).
    pub password: Option<String>,
    /// Host.
    pub host: Host,
    /// Port, when present.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp`...).
    pub params: Params,
    /// The raw `?headers` part without the `?`.
    pub headers: Option<String>,
}

impl SipUri {
    /// A URI `sip:host` / `sips:host`.
    pub fn new(secure: bool, user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure,
            user: user.map(escape_user),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }

    /// The user part with %-escapes decoded (invalid escapes kept literally).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport_param(&self) -> Option<String> {
        self.params.value("transport").map(|t| t.to_ascii_lowercase())
    }

    /// The URI without `?headers` and without the parameters not allowed in
    /// a Request-URI (`method`, RFC 3261 19.1.5 table 1).
    pub fn request_uri(&self) -> SipUri {
        let mut u = self.clone();
        u.headers = None;
        u.params.remove("method");
        u
    }

    fn parse_after_scheme(secure: bool, rest: &str) -> Result<SipUri, ParseError> {
        // `@` is not allowed unescaped anywhere but as the end of userinfo,
        // while the user part may hold `?`, `;` and `,` (RFC 3261
        // `user-unreserved`; RFC 4475 section 3.1.1.2): the first `@` ends
        // the userinfo wherever it is.
        let (userinfo, hostpart) = match rest.find('@') {
            Some(a) => (Some(&rest[..a]), &rest[a + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                if ui.is_empty() {
                    return Err(ParseError::Uri("empty user part"));
                }
                if ui.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>' || b == b'"' || b == 0x7f) {
                    return Err(ParseError::Uri("invalid character in user part"));
                }
                match ui.split_once(':') {
                    Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                    None => (Some(ui.to_owned()), None),
                }
            }
        };
        let (before_headers, headers) = match hostpart.split_once('?') {
            Some((a, h)) => (a, Some(h.to_owned())),
            None => (hostpart, None),
        };
        let (hostport, params) = match before_headers.find(';') {
            Some(i) => (&before_headers[..i], Params::parse(&before_headers[i..])?),
            None => (before_headers, Params::default()),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(SipUri { secure, user, password, host, port, params, headers })
    }
}

/// Splits `host[:port]` where host may be a bracketed IPv6 reference.
pub(crate) fn split_host_port(s: &str) -> Result<(Host, Option<u16>), ParseError> {
    let s = s.trim();
    if s.starts_with('[') {
        let end = s.find(']').ok_or(ParseError::Uri("unterminated IPv6 reference"))?;
        let host = Host::parse(&s[..=end])?;
        let rest = &s[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if rest.is_empty() => None,
            None => return Err(ParseError::Uri("garbage after IPv6 reference")),
        };
        return Ok((host, port));
    }
    match s.split_once(':') {
        Some((h, p)) => Ok((Host::parse(h.trim())?, Some(parse_port(p.trim())?))),
        None => Ok((Host::parse(s)?, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, ParseError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Uri("bad port"));
    }
    p.parse().map_err(|_| ParseError::Uri("port out of range"))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                f.write_char(':')?;
                f.write_str(p)?;
            }
            f.write_char('@')?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            f.write_char('?')?;
            f.write_str(h)?;
        }
        Ok(())
    }
}

/// A `tel:` URI (RFC 3966): the number and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    /// The number as written (`+1-201-555-0123`, `7042;phone-context=...` without params).
    pub number: String,
    /// Parameters such as `phone-context`.
    pub params: Params,
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}{}", self.number, self.params)
    }
}

/// Any URI that may appear in a SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:`.
    Tel(TelUri),
    /// Any other absolute URI, kept verbatim.
    Other(String),
}

impl Uri {
    /// Parses a URI. Schemes are case-insensitive.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':').ok_or(ParseError::Uri("missing scheme"))?;
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(ParseError::Uri("invalid scheme"));
        }
        if rest.is_empty() {
            return Err(ParseError::Uri("empty URI"));
        }
        if rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ParseError::Uri("whitespace or control character in URI"));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_after_scheme(false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_after_scheme(true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = match rest.find(';') {
                Some(i) => (&rest[..i], Params::parse(&rest[i..])?),
                None => (rest, Params::default()),
            };
            if number.is_empty() {
                return Err(ParseError::Uri("empty telephone number"));
            }
            Ok(Uri::Tel(TelUri { number: number.to_owned(), params }))
        } else {
            Ok(Uri::Other(s.to_owned()))
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(u) => u.fmt(f),
            Uri::Other(s) => f.write_str(s),
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Uri, ParseError> {
        Uri::parse(s)
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a user part: unreserved and user-unreserved characters stay, the
/// rest becomes `%XX`.
pub fn escape_user(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_round_trip() {
        for s in [
            "sip:alice@atlanta.com",
            "sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project",
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "sip:[2001:db8::10]:5070;transport=udp",
            "sip:user%20name@10.0.0.1",
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        ] {
            let u = Uri::parse(s).expect(s);
            assert_eq!(u.to_string(), s);
        }
    }

    #[test]
    fn ipv6_and_escapes() {
        let Uri::Sip(u) = Uri::parse("sip:%61lice@[::1]:5062").expect("parse") else { panic!() };
        assert_eq!(u.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.port, Some(5062));
        assert_eq!(u.user_unescaped().as_deref(), Some("alice"));
    }

    #[test]
    fn tel_uri() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").expect("tel");
        let Uri::Tel(t) = &u else { panic!() };
        assert_eq!(t.number, "+1-201-555-0123");
        assert_eq!(t.params.value("phone-context"), Some("example.com"));
        assert_eq!(u.to_string(), "tel:+1-201-555-0123;phone-context=example.com");
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "sip:", "nocolon", "sip:a@", "sip:host:99999", "sip:[::1", "sip:a b@c", "1sip:x"] {
            assert!(Uri::parse(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn request_uri_drops_headers_and_method() {
        let Uri::Sip(u) = Uri::parse("sip:bob@b.com;method=INVITE;transport=tcp?x=y").expect("p") else { panic!() };
        assert_eq!(u.request_uri().to_string(), "sip:bob@b.com;transport=tcp");
    }

    #[test]
    fn user_part_with_question_mark_and_semicolons() {
        // RFC 4475 section 3.1.1.2 (intmeth): `?`, `;` and `,` are
        // user-unreserved and may come before the `@`.
        let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let Uri::Sip(u) = Uri::parse(s).expect("intmeth URI") else { panic!("not sip") };
        assert_eq!(u.user.as_deref(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        assert_eq!(u.password.as_deref(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert!(u.params.0.is_empty());
        assert_eq!(u.headers, None);
        assert_eq!(u.to_string(), s);
        // Headers after the host still hold an unescaped `@` some stacks send.
        let Uri::Sip(u) = Uri::parse("sip:bob@b.example?Replaces=123@h%3Bto-tag%3D1").expect("replaces") else {
            panic!("not sip")
        };
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.headers.as_deref(), Some("Replaces=123@h%3Bto-tag%3D1"));
    }

    #[test]
    fn empty_parameters_rejected() {
        // RFC 4475 section 3.1.2.1 (badinv01): `;;` carries no parameter.
        for s in [";;", ";a;;b", ";a;", "a;;", "; ;"] {
            assert!(Params::parse(s).is_err(), "{s:?}");
        }
        for s in ["", ";a", "a;b=c", " ;a ; b = c "] {
            assert!(Params::parse(s).is_ok(), "{s:?}");
        }
        assert!(Uri::parse("sip:a@b;;lr").is_err());
        assert!(Uri::parse("sip:a@b;lr;").is_err());
    }

    #[test]
    fn escape_round_trip() {
        let e = escape_user("a b@c");
        assert_eq!(e, "a%20b%40c");
        assert_eq!(unescape(&e), "a b@c");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz"), "%zz");
    }
}
