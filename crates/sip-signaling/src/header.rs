//! Header names (with the RFC 3261 compact forms) and the ordered header list.

use crate::method::is_token_byte;
use crate::uri::split_outside_quotes;
use std::fmt;

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal $(, $compact:literal)? ; )*) => {
        /// A header field name. Known names are matched case-insensitively
        /// and by their compact form; unknown names keep their spelling.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canonical, "`")]
                $variant,
            )*
            /// Any other header, spelled as received.
            Other(String),
        }

        impl HeaderName {
            /// Looks a name up (full or compact form, any case).
            pub fn parse(name: &str) -> HeaderName {
                $(
                    if name.eq_ignore_ascii_case($canonical) $( || name.eq_ignore_ascii_case($compact) )? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(name.to_owned())
            }

            /// The canonical spelling used when serialising.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    Contact => "Contact", "m";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    ContentEncoding => "Content-Encoding", "e";
    Supported => "Supported", "k";
    Subject => "Subject", "s";
    Event => "Event", "o";
    AllowEvents => "Allow-Events", "u";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    SessionExpires => "Session-Expires", "x";
    MinSe => "Min-SE";
    MaxForwards => "Max-Forwards";
    Route => "Route";
    RecordRoute => "Record-Route";
    Allow => "Allow";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Unsupported => "Unsupported";
    WwwAuthenticate => "WWW-Authenticate";
    Authorization => "Authorization";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    UserAgent => "User-Agent";
    Server => "Server";
    Expires => "Expires";
    Reason => "Reason";
    RetryAfter => "Retry-After";
    Accept => "Accept";
    Timestamp => "Timestamp";
    Warning => "Warning";
    RSeq => "RSeq";
    RAck => "RAck";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HeaderName {
    /// Whether a string is a valid header name (an RFC 3261 token).
    pub fn is_valid(name: &str) -> bool {
        !name.is_empty() && name.bytes().all(is_token_byte)
    }

    /// Headers whose value is a comma-separated list that may be split
    /// across several lines (RFC 3261 section 7.3.1).
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Allow
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::AllowEvents
                | HeaderName::Accept
                | HeaderName::ContentEncoding
                | HeaderName::Warning
        )
    }
}

/// One header field as received (folded lines joined with a single space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Name.
    pub name: HeaderName,
    /// Raw value, surrounding whitespace trimmed.
    pub value: String,
}

/// The ordered list of header fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The first field with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0.iter().find(|h| &h.name == name).map(|h| h.value.as_str())
    }

    /// Every field with this name, in order, unsplit.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| &h.name == name).map(|h| h.value.as_str())
    }

    /// Every value of a list header: all fields with this name, each split
    /// at commas outside quotes and angle brackets.
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).flat_map(|v| split_outside_quotes(v, b',')).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether a list header (Supported, Require, Allow...) contains a token.
    pub fn has_token(&self, name: &HeaderName, token: &str) -> bool {
        self.values(name).any(|v| v.eq_ignore_ascii_case(token))
    }

    /// Appends a field.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header { name, value: value.into() });
    }

    /// Replaces every field of this name with one value (appended if absent).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut j = 0;
                self.0.retain(|h| {
                    let keep = h.name != name || j == i;
                    j += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every field with this name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        for (s, n) in [
            ("v", HeaderName::Via),
            ("VIA", HeaderName::Via),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("i", HeaderName::CallId),
            ("call-id", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("x", HeaderName::SessionExpires),
            ("cseq", HeaderName::CSeq),
        ] {
            assert_eq!(HeaderName::parse(s), n, "{s}");
        }
        assert_eq!(HeaderName::parse("X-Foo").as_str(), "X-Foo");
    }

    #[test]
    fn list_values_across_lines() {
        let mut h = Headers::default();
        h.push(HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2");
        h.push(HeaderName::Via, "SIP/2.0/TCP c");
        h.push(HeaderName::Contact, "\"Doe, John\" <sip:j@d>, <sip:k@d>");
        assert_eq!(h.values(&HeaderName::Via).count(), 3);
        let c: Vec<_> = h.values(&HeaderName::Contact).collect();
        assert_eq!(c, vec!["\"Doe, John\" <sip:j@d>", "<sip:k@d>"]);
        h.set(HeaderName::Via, "x");
        assert_eq!(h.get_all(&HeaderName::Via).count(), 1);
    }
}
