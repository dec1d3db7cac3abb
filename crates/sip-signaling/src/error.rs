//! The one error type of this crate, with variants grouped by cause.

/// Why a SIP message could not be parsed. Every variant is a property of
/// the bytes received, so a parser error always means "the peer sent
/// something we cannot accept" and maps to `400 Bad Request` (or to
/// dropping the datagram when no response can be built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The message is larger than the configured maximum.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size seen (or at least seen so far).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A line is longer than the configured maximum.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// More header fields than the configured maximum.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The blank line that ends the header section is missing.
    #[error("header section is not terminated by an empty line")]
    Incomplete,
    /// The request or status line is malformed.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// A header line is malformed.
    #[error("malformed header field: {0}")]
    Header(&'static str),
    /// A specific header's value is malformed.
    #[error("malformed {name} header: {reason}")]
    HeaderValue {
        /// Header name.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A URI is malformed.
    #[error("malformed URI: {0}")]
    Uri(&'static str),
    /// Content-Length disagrees with the body received.
    #[error("Content-Length {declared} but only {available} body bytes")]
    BodyLength {
        /// Declared by Content-Length.
        declared: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The text is not UTF-8 where SIP requires it.
    #[error("header section is not valid UTF-8")]
    Utf8,
    /// A mandatory header is missing.
    #[error("missing mandatory header {0}")]
    Missing(&'static str),
}

/// Errors of the call API and the driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer sent bytes we cannot parse.
    #[error("malformed message from peer: {0}")]
    Parse(#[from] ParseError),
    /// The caller passed a custom header we refuse to send.
    #[error("invalid custom header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The caller passed an invalid argument (bad URI, bad identity...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The call handle is unknown or the call has ended.
    #[error("no such call")]
    UnknownCall,
    /// The action is not possible in the call's current state.
    #[error("not possible in state {0}")]
    InvalidState(&'static str),
    /// Name resolution failed.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// Host name that failed.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// TLS configuration or handshake failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// A socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The driver task has stopped.
    #[error("the SIP driver has stopped")]
    DriverGone,
}
