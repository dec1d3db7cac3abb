//! Validation of caller-supplied headers.

use crate::error::Error;
use crate::header::HeaderName;

/// Headers the user agent owns; a caller may never set them.
const CORE: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "max-forwards",
    "contact",
    "content-length",
    "content-type",
    "route",
    "record-route",
    // Owned by the UA too: auth and session timers are computed per request.
    "authorization",
    "proxy-authorization",
    "session-expires",
    "min-se",
];

/// Checks one custom header: a valid token name, not a core header (nor
/// its compact form), a value without CR, LF or NUL.
pub fn validate_custom_header(name: &str, value: &str) -> Result<(), Error> {
    let err = |reason| Err(Error::InvalidHeader { name: name.to_owned(), reason });
    if !HeaderName::is_valid(name) {
        return err("not a valid header name (RFC 3261 token)");
    }
    let canonical = HeaderName::parse(name);
    if CORE.iter().any(|c| canonical.as_str().eq_ignore_ascii_case(c)) {
        return err("is set by the user agent and cannot be overridden");
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return err("value contains CR, LF or NUL");
    }
    if value.len() > 4096 {
        return err("value longer than 4096 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(validate_custom_header("X-Foo", "bar baz").is_ok());
        assert!(validate_custom_header("P-Asserted-Identity", "<sip:+1555@x>").is_ok());
        for (n, v) in [
            ("Via", "x"),
            ("v", "x"),
            ("call-id", "x"),
            ("i", "x"),
            ("Content-Length", "0"),
            ("l", "0"),
            ("Route", "<sip:x>"),
            ("Record-Route", "<sip:x>"),
            ("Max-Forwards", "1"),
            ("Contact", "<sip:x>"),
            ("m", "<sip:x>"),
            ("X Bad", "x"),
            ("", "x"),
            ("X-Foo", "a\r\nVia: evil"),
            ("X-Foo", "a\0"),
        ] {
            let e = validate_custom_header(n, v).expect_err(n);
            assert!(e.to_string().contains(&format!("{n:?}")), "{e}");
        }
    }
}
