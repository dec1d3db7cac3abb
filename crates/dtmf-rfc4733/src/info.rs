//! DTMF carried in SIP INFO bodies, the signalling-path alternative to RFC 4733 that some PBXs,
//! SBCs and older endpoints use (there is no RFC for it; the formats are de facto):
//!
//! - `application/dtmf-relay` (Cisco's, the common one): `Signal=5` and `Duration=160` lines
//!   (milliseconds), keys case-insensitive, `\r\n` or `\n` line ends; `Signal` is the key
//!   character or, from some senders, its event code (`10` for `*`, `11` for `#`, `12` to `15` for
//!   `A` to `D`);
//! - `application/dtmf`: the key alone (or its event code).
//!
//! Only the key press is read: SIP INFO carries no timing the receiver could use.

use crate::Digit;

/// The longest body read (real ones are a few dozen bytes).
const MAX_BODY: usize = 1024;

/// The key a SIP INFO body carries, for the content types above (parameters after `;` and case
/// ignored); `None` for another content type or a body that names no key.
pub fn parse_sip_info(content_type: &str, body: &[u8]) -> Option<Digit> {
    if body.len() > MAX_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let media_type = content_type.split(';').next()?.trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim().eq_ignore_ascii_case("signal").then(|| key_of(value.trim())).flatten()
        }),
        "application/dtmf" => key_of(text.trim()),
        _ => None,
    }
}

/// A key character, or an event code (0 to 15).
fn key_of(value: &str) -> Option<Digit> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c),
        _ => value.parse::<u8>().ok().and_then(Digit::from_event_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(parse_sip_info(relay, b"Signal=5\r\nDuration=160\r\n"), Some(Digit::Five));
        assert_eq!(parse_sip_info(relay, b"Signal= *\nDuration= 250\n"), Some(Digit::Star));
        assert_eq!(parse_sip_info(relay, b"duration=100\r\nsignal=#"), Some(Digit::Pound));
        assert_eq!(parse_sip_info(relay, b"Signal=10\r\nDuration=160"), Some(Digit::Star), "event code");
        assert_eq!(parse_sip_info(relay, b"Signal=11"), Some(Digit::Pound));
        assert_eq!(parse_sip_info(relay, b"Signal=d"), Some(Digit::D));
        assert_eq!(parse_sip_info("Application/DTMF-Relay; charset=utf-8", b"Signal=0"), Some(Digit::Zero));
        assert_eq!(parse_sip_info("application/dtmf", b"7\r\n"), Some(Digit::Seven));
        assert_eq!(parse_sip_info("application/dtmf", b"12"), Some(Digit::A));
    }

    #[test]
    fn anything_else_names_no_key() {
        let relay = "application/dtmf-relay";
        for body in [&b""[..], b"Duration=160", b"Signal=", b"Signal=16", b"Signal=55", b"Signal=x", b"Signal=\xff"] {
            assert_eq!(parse_sip_info(relay, body), None, "{body:?}");
        }
        assert_eq!(parse_sip_info("application/sdp", b"Signal=5"), None);
        assert_eq!(parse_sip_info("text/plain", b"5"), None);
        assert_eq!(parse_sip_info("application/dtmf", b"56"), None);
        let long = [b"Signal=5\r\n".as_slice(), &[b' '; 2000]].concat();
        assert_eq!(parse_sip_info(relay, &long), None, "bounded");
    }
}
