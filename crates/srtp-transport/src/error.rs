//! The crate's error type.

/// Errors, by cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A packet is shorter than its headers say, or malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// RTP, RTCP, SRTP...
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The authentication tag does not match.
    #[error("authentication failed")]
    AuthFailed,
    /// The packet index was already received or is too old.
    #[error("replayed or too old packet (index {0})")]
    Replay(u64),
    /// An `a=crypto` attribute or key material is invalid.
    #[error("invalid key parameters: {0}")]
    BadKey(&'static str),
    /// The crypto suite is not supported.
    #[error("unsupported crypto suite {0}")]
    UnsupportedSuite(String),
    /// The key reached its lifetime (2^48 packets for SRTP, 2^31 for SRTCP, or the `a=crypto` lifetime).
    #[error("key lifetime exhausted: re-key")]
    KeyExhausted,
    /// The DTLS handshake failed (or its certificate did not match the
    /// SDP fingerprint).
    #[error("DTLS: {0}")]
    Dtls(String),
    /// A socket operation failed (or no port was free).
    #[error("I/O: {0}")]
    Io(String),
    /// The buffer given for output is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}
