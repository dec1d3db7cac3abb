//! A tolerant, bounded SDP (RFC 8866) parser and serialiser.
//!
//! Tolerates what real peers send: LF-only line ends, a missing final line
//! end, trailing whitespace, host names in `c=`, unknown lines and
//! attributes (kept in order and written back as they came).

use crate::error::ParseError;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// Parser limits.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
const MAX_LINES: usize = 2000;
const MAX_MEDIA: usize = 32;

/// A bandwidth from `b=` lines: in offer/answer, what the description's author is willing to
/// receive (RFC 3264 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    /// Bit/s.
    pub bits: u64,
    /// Whether packet headers count in it (`b=AS`, RFC 8866) or not (`b=TIAS`, RFC 3890: transport
    /// independent).
    pub with_headers: bool,
}

impl Bandwidth {
    /// The media bitrate it leaves for `per_second` packets a second with `header_bytes` of
    /// headers each (IP, UDP and RTP, and an SRTP tag): all of it for `b=TIAS`.
    pub fn media_bitrate(self, per_second: u64, header_bytes: u64) -> u64 {
        if self.with_headers {
            self.bits.saturating_sub(per_second.saturating_mul(header_bytes).saturating_mul(8))
        } else {
            self.bits
        }
    }

    /// The media bitrate it leaves for video: packets of about 1200 bytes of payload (plus a
    /// frame's worth more, 30 a second), 40 bytes of headers each.
    pub fn video_bitrate(self) -> u64 {
        self.media_bitrate(self.bits / (8 * 1200) + 30, 40)
    }
}

/// The bandwidth `b=` lines give: `b=TIAS` when there is one, else `b=AS` (kbit/s). Zero,
/// unparsable values and other types (`CT`, `RS`, `RR`) say nothing.
pub fn bandwidth(lines: &[(char, String)]) -> Option<Bandwidth> {
    let value = |kind: &str| {
        lines.iter().filter(|(t, _)| *t == 'b').find_map(|(_, v)| {
            let (k, n) = v.split_once(':')?;
            let n: u64 = n.trim().parse().ok()?;
            (k.trim().eq_ignore_ascii_case(kind) && n > 0).then_some(n)
        })
    };
    value("TIAS")
        .map(|bits| Bandwidth { bits, with_headers: false })
        .or_else(|| value("AS").map(|kbps| Bandwidth { bits: kbps.saturating_mul(1000), with_headers: true }))
}

/// `a=name[:value]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Name.
    pub name: String,
    /// Value after the first `:`.
    pub value: Option<String>,
}

impl Attribute {
    /// A property or value attribute.
    pub fn new(name: &str, value: Option<String>) -> Attribute {
        Attribute { name: name.to_owned(), value }
    }
}

/// `o=`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// username
    pub username: String,
    /// sess-id (kept as text: peers send numbers beyond 64 bits)
    pub session_id: String,
    /// sess-version
    pub session_version: u64,
    /// `IN`
    pub net_type: String,
    /// `IP4` / `IP6`
    pub addr_type: String,
    /// unicast-address (may be a host name)
    pub address: String,
}

/// `c=`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`
    pub net_type: String,
    /// `IP4` / `IP6`
    pub addr_type: String,
    /// Address (IP or host name), without a `/ttl` suffix.
    pub address: String,
}

impl Connection {
    /// For an IP address.
    pub fn ip(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// The IP address, when it is one.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// RFC 2543 hold: `c=IN IP4 0.0.0.0`.
    pub fn is_hold_address(&self) -> bool {
        self.ip_addr().is_some_and(|a| a.is_unspecified())
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`...
    pub kind: String,
    /// Port (0 = rejected or disabled).
    pub port: u16,
    /// `/n` port count.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVP`...
    pub proto: String,
    /// Formats (payload types for RTP).
    pub formats: Vec<String>,
    /// Media-level `c=`.
    pub connection: Option<Connection>,
    /// Other lines (`i=`, `b=`, `k=`), in order.
    pub lines: Vec<(char, String)>,
    /// Attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl Media {
    /// The first value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name)).and_then(|a| a.value.as_deref())
    }

    /// Whether a property attribute is present.
    pub fn has_attr(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// All values of an attribute.
    pub fn attrs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes.iter().filter(move |a| a.name.eq_ignore_ascii_case(name)).filter_map(|a| a.value.as_deref())
    }

    /// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]` for a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<(String, u32, Option<u16>)> {
        self.attrs("rtpmap").find_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            if p.trim().parse::<u8>().ok()? != pt {
                return None;
            }
            let mut it = rest.trim().split('/');
            let enc = it.next()?.to_owned();
            let clock = it.next()?.trim().parse().ok()?;
            let ch = it.next().and_then(|c| c.trim().parse().ok());
            Some((enc, clock, ch))
        })
    }

    /// The `a=rtcp-fb` values (RFC 4585 §4.2) for a payload type, its own and the wildcard
    /// `*`'s, lower-cased, spaces collapsed, without duplicates.
    pub fn rtcp_feedback(&self, pt: u8) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in self.attrs("rtcp-fb") {
            let mut words = v.split_whitespace();
            let applies = match words.next() {
                Some("*") => true,
                Some(p) => p.parse::<u8>().is_ok_and(|p| p == pt),
                None => false,
            };
            let fb = words.collect::<Vec<_>>().join(" ").to_ascii_lowercase();
            if applies && !fb.is_empty() && !out.contains(&fb) {
                out.push(fb);
            }
        }
        out
    }

    /// `a=fmtp:<pt> <params>` for a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attrs("fmtp").find_map(|v| {
            let (p, rest) = v.split_once(' ').unwrap_or((v, ""));
            (p.trim().parse::<u8>().ok()? == pt).then_some(rest.trim())
        })
    }

    /// The largest picture this media says it receives with payload type `pt`: RFC 6236
    /// `a=imageattr:<pt or *> [send ...] recv [x=W,y=H] ...`, each value a number, a range
    /// `[min:max]` or `[min:step:max]`, or a list `[a,b,c]` (the largest is taken). `None` when
    /// it says nothing usable (no attribute, `recv *`, or values below 16).
    pub fn imageattr_recv_max(&self, pt: u8) -> Option<(u32, u32)> {
        let mut best: Option<(u32, u32)> = None;
        for value in self.attrs("imageattr") {
            let Some((target, rest)) = value.trim().split_once(' ') else { continue };
            if target != "*" && target.parse::<u8>().ok() != Some(pt) {
                continue;
            }
            // The recv part runs to a `send` keyword or the end.
            let Some(at) = rest.find("recv") else { continue };
            let recv = &rest[at + 4..];
            let recv = recv.split("send").next().unwrap_or(recv);
            for set in top_level_sets(recv) {
                let (mut w, mut h) = (None, None);
                for pair in split_top_level(set, ',') {
                    let top =
                        |v: &str| v.split([':', ',', '[', ']']).filter_map(|n| n.trim().parse::<u32>().ok()).max();
                    match pair.trim().split_once('=') {
                        Some(("x", v)) => w = top(v),
                        Some(("y", v)) => h = top(v),
                        _ => {}
                    }
                }
                if let (Some(w), Some(h)) = (w, h) {
                    if best.is_none_or(|(bw, bh)| u64::from(w) * u64::from(h) > u64::from(bw) * u64::from(bh)) {
                        best = Some((w, h));
                    }
                }
            }
        }
        best.filter(|(w, h)| *w >= 16 && *h >= 16)
    }

    /// The payload types (formats that are numbers 0..=127).
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok()).filter(|p| *p < 128).collect()
    }

    /// The media-level direction attribute, if any.
    pub fn direction_attr(&self) -> Option<Direction> {
        self.attributes.iter().find_map(|a| Direction::from_attr(&a.name))
    }

    /// Removes every attribute of this name.
    pub fn remove_attr(&mut self, name: &str) {
        self.attributes.retain(|a| !a.name.eq_ignore_ascii_case(name));
    }
}

/// Media direction (RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// The describer only sends.
    SendOnly,
    /// The describer only receives.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// Parses a direction attribute name.
    pub fn from_attr(name: &str) -> Option<Direction> {
        match name.to_ascii_lowercase().as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answerer uses for an offered one, given what the
    /// answerer itself wants (RFC 3264 section 6.1).
    pub fn answer_to(self, wanted: Direction) -> Direction {
        let (we_send, we_recv) = match wanted {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        };
        let (they_send, they_recv) = match self {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        };
        match (we_send && they_recv, we_recv && they_send) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the describer sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the describer receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// `o=`
    pub origin: Origin,
    /// `s=` (a single space when empty)
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Other session-level lines (`i u e p b t r z k`), in order.
    pub lines: Vec<(char, String)>,
    /// Session-level attributes.
    pub attributes: Vec<Attribute>,
    /// Media sections.
    pub media: Vec<Media>,
}

impl Sdp {
    /// Parses an SDP body.
    pub fn parse(body: &[u8]) -> Result<Sdp, ParseError> {
        if body.len() > MAX_SDP_BYTES {
            return Err(ParseError::TooLarge(MAX_SDP_BYTES));
        }
        let text = std::str::from_utf8(body).map_err(|_| ParseError::Utf8)?;
        let mut origin = None;
        let mut session_name = None;
        let mut version_seen = false;
        let mut connection = None;
        let mut lines = Vec::new();
        let mut attributes = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        for (n, raw) in text.split('\n').enumerate() {
            if n >= MAX_LINES {
                return Err(ParseError::TooMany("lines"));
            }
            let line = raw.trim_end_matches(['\r', ' ', '\t']);
            if line.is_empty() {
                continue;
            }
            let err = |reason| ParseError::Line { line: n + 1, reason };
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(err("not <type>=<value>"));
            }
            let kind = bytes[0] as char;
            let value = &line[2..];
            match kind {
                'v' => {
                    if value.trim() != "0" {
                        return Err(err("unsupported version"));
                    }
                    version_seen = true;
                }
                'o' => {
                    let f: Vec<&str> = value.split_whitespace().collect();
                    if f.len() != 6 {
                        return Err(err("o= needs six fields"));
                    }
                    origin = Some(Origin {
                        username: f[0].into(),
                        session_id: f[1].into(),
                        session_version: f[2].parse().map_err(|_| err("o= version is not a number"))?,
                        net_type: f[3].into(),
                        addr_type: f[4].into(),
                        address: f[5].into(),
                    });
                }
                's' => session_name = Some(value.to_owned()),
                'c' => {
                    let f: Vec<&str> = value.split_whitespace().collect();
                    if f.len() != 3 {
                        return Err(err("c= needs three fields"));
                    }
                    let address = f[2].split('/').next().unwrap_or_default().to_owned();
                    if address.is_empty() {
                        return Err(err("c= without an address"));
                    }
                    let c = Connection { net_type: f[0].into(), addr_type: f[1].into(), address };
                    match media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => connection = Some(c),
                    }
                }
                'm' => {
                    if media.len() == MAX_MEDIA {
                        return Err(ParseError::TooMany("m-lines"));
                    }
                    let f: Vec<&str> = value.split_whitespace().collect();
                    if f.len() < 3 {
                        return Err(err("m= needs media, port and proto"));
                    }
                    let (port, count) = match f[1].split_once('/') {
                        Some((p, c)) => (p, Some(c.parse().map_err(|_| err("bad port count"))?)),
                        None => (f[1], None),
                    };
                    media.push(Media {
                        kind: f[0].into(),
                        port: port.parse().map_err(|_| err("bad port"))?,
                        port_count: count,
                        proto: f[2].into(),
                        formats: f[3..].iter().map(|s| (*s).to_owned()).collect(),
                        connection: None,
                        lines: Vec::new(),
                        attributes: Vec::new(),
                    });
                }
                'a' => {
                    let a = match value.split_once(':') {
                        Some((n, v)) => Attribute { name: n.to_owned(), value: Some(v.to_owned()) },
                        None => Attribute { name: value.to_owned(), value: None },
                    };
                    if a.name.is_empty() {
                        return Err(err("empty attribute name"));
                    }
                    match media.last_mut() {
                        Some(m) => m.attributes.push(a),
                        None => attributes.push(a),
                    }
                }
                other => match media.last_mut() {
                    Some(m) => m.lines.push((other, value.to_owned())),
                    None => lines.push((other, value.to_owned())),
                },
            }
        }
        if !version_seen {
            return Err(ParseError::Missing("v="));
        }
        Ok(Sdp {
            origin: origin.ok_or(ParseError::Missing("o="))?,
            session_name: session_name.unwrap_or_else(|| "-".into()),
            connection,
            lines,
            attributes,
            media,
        })
    }

    /// A session attribute's first value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name)).and_then(|a| a.value.as_deref())
    }

    /// The effective direction of media section `i` (media level, then
    /// session level, then sendrecv).
    pub fn direction(&self, i: usize) -> Direction {
        self.media
            .get(i)
            .and_then(Media::direction_attr)
            .or_else(|| self.attributes.iter().find_map(|a| Direction::from_attr(&a.name)))
            .unwrap_or(Direction::SendRecv)
    }

    /// The bandwidth the author of this description takes in media section `i`: the lower of the
    /// section's and the session's `b=` lines (see [`bandwidth`]).
    pub fn bandwidth_of(&self, i: usize) -> Option<Bandwidth> {
        let media = self.media.get(i).and_then(|m| bandwidth(&m.lines));
        [media, bandwidth(&self.lines)].into_iter().flatten().min_by_key(|b| b.bits)
    }

    /// The effective connection of media section `i`.
    pub fn connection_of(&self, i: usize) -> Option<&Connection> {
        self.media.get(i).and_then(|m| m.connection.as_ref()).or(self.connection.as_ref())
    }

    /// The effective value of an attribute that may sit at media or session
    /// level (`fingerprint`, `setup`, `ice-ufrag`).
    pub fn media_or_session_attr(&self, i: usize, name: &str) -> Option<&str> {
        self.media.get(i).and_then(|m| m.attr(name)).or_else(|| self.attr(name))
    }

    /// Serialises with CRLF line ends, `t=0 0` when no timing was given.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
        )?;
        let name = if self.session_name.is_empty() { " " } else { &self.session_name };
        write!(f, "s={name}\r\n")?;
        // RFC 8866 order: i u e p c b t r z k a.
        let order = |c: char| "iuep".contains(c);
        for (k, v) in self.lines.iter().filter(|(k, _)| order(*k)) {
            write!(f, "{k}={v}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address)?;
        }
        for (k, v) in self.lines.iter().filter(|(k, _)| *k == 'b') {
            write!(f, "{k}={v}\r\n")?;
        }
        if !self.lines.iter().any(|(k, _)| *k == 't') {
            f.write_str("t=0 0\r\n")?;
        }
        for (k, v) in self.lines.iter().filter(|(k, _)| "trzk".contains(*k)) {
            write!(f, "{k}={v}\r\n")?;
        }
        for a in &self.attributes {
            write_attr(f, a)?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.kind, m.port)?;
            if let Some(c) = m.port_count {
                write!(f, "/{c}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt_ in &m.formats {
                write!(f, " {fmt_}")?;
            }
            f.write_str("\r\n")?;
            for (k, v) in m.lines.iter().filter(|(k, _)| *k == 'i') {
                write!(f, "{k}={v}\r\n")?;
            }
            if let Some(c) = &m.connection {
                write!(f, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address)?;
            }
            for (k, v) in m.lines.iter().filter(|(k, _)| *k != 'i') {
                write!(f, "{k}={v}\r\n")?;
            }
            for a in &m.attributes {
                write_attr(f, a)?;
            }
        }
        Ok(())
    }
}

fn write_attr(f: &mut fmt::Formatter<'_>, a: &Attribute) -> fmt::Result {
    f.write_str("a=")?;
    f.write_str(&a.name)?;
    if let Some(v) = &a.value {
        f.write_char(':')?;
        f.write_str(v)?;
    }
    f.write_str("\r\n")
}

/// The contents of each outermost `[...]` of `text`.
fn top_level_sets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '[' => {
                if depth == 0 {
                    start = i + 1;
                }
                depth += 1;
            }
            ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(&text[start..i]);
                }
            }
            _ => {}
        }
    }
    out
}

/// `text` split at `sep` outside brackets.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video_with(attr: &str) -> Sdp {
        let s = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\na=imageattr:0 recv [x=9999,y=9999]\r\nm=video 4002 RTP/AVP 96\r\n{attr}\r\n"
        );
        Sdp::parse(s.as_bytes()).expect("parse")
    }

    #[test]
    fn imageattr_recv_bounds() {
        let max = |a: &str| video_with(a).media[1].imageattr_recv_max(96);
        assert_eq!(max("a=imageattr:96 recv [x=640,y=360]"), Some((640, 360)));
        assert_eq!(max("a=imageattr:* send [x=1920,y=1080] recv [x=[320:16:800],y=[240:16:600]]"), Some((800, 600)));
        assert_eq!(max("a=imageattr:96 recv [x=320,y=240] [x=1280,y=720,q=0.5]"), Some((1280, 720)));
        assert_eq!(max("a=imageattr:96 recv [x=[320,640],y=[240,480]]"), Some((640, 480)));
        assert_eq!(max("a=imageattr:97 recv [x=320,y=240]"), None, "another payload type");
        assert_eq!(max("a=imageattr:96 send [x=320,y=240]"), None, "what it sends does not bound what it receives");
        assert_eq!(max("a=imageattr:96 recv *"), None);
        assert_eq!(max("a=imageattr:96 recv [x=oops"), None);
        assert_eq!(max("a=imageattr:96 recv [x=8,y=8]"), None, "too small to mean anything");
        assert_eq!(max("a=rtcp-mux"), None);
    }

    proptest::proptest! {
        #[test]
        fn hostile_imageattr_never_panics(tail in "[\\[\\]=,:*xyqrecvsnd 0-9.-]{0,80}") {
            let sdp = video_with(&format!("a=imageattr:96 recv {tail}"));
            if let Some((w, h)) = sdp.media[1].imageattr_recv_max(96) {
                proptest::prop_assert!(w >= 16 && h >= 16);
            }
        }
    }

    #[test]
    fn tolerant_parse() {
        // LF-only, trailing spaces, a host name in c=, no final newline.
        let s = "v=0\no=- 123 7 IN IP4 pbx.example.com \ns=-\nc=IN IP4 media.example.com\nt=0 0\na=sendonly\nm=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16";
        let sdp = Sdp::parse(s.as_bytes()).expect("parse");
        assert_eq!(sdp.origin.address, "pbx.example.com");
        assert_eq!(sdp.connection_of(0).map(|c| c.address.as_str()), Some("media.example.com"));
        assert_eq!(sdp.direction(0), Direction::SendOnly);
        assert_eq!(sdp.media[0].rtpmap(101), Some(("telephone-event".into(), 8000, None)));
        assert_eq!(sdp.media[0].fmtp(101), Some("0-16"), "the last line is not dropped");
        let again = Sdp::parse(&sdp.to_bytes()).expect("reparse");
        assert_eq!(again, sdp);
    }

    #[test]
    fn rejects_broken() {
        for s in [
            "",
            "o=- 1 1 IN IP4 a\n",
            "v=0\no=- 1 x IN IP4 a\n",
            "v=0\no=- 1 1 IN IP4 a\nm=audio\n",
            "v=0\nnot a line\n",
            "v=1\n",
            "v=0\no=- 1 1 IN IP4 a\nc=IN IP4\n",
        ] {
            assert!(Sdp::parse(s.as_bytes()).is_err(), "{s:?}");
        }
        assert!(Sdp::parse(&vec![b'a'; MAX_SDP_BYTES + 1]).is_err());
    }

    #[test]
    fn answer_directions() {
        use Direction::*;
        assert_eq!(SendOnly.answer_to(SendRecv), RecvOnly);
        assert_eq!(RecvOnly.answer_to(SendRecv), SendOnly);
        assert_eq!(Inactive.answer_to(SendRecv), Inactive);
        assert_eq!(SendRecv.answer_to(SendRecv), SendRecv);
        assert_eq!(SendRecv.answer_to(RecvOnly), RecvOnly);
    }
}
