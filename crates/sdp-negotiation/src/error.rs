//! Errors of SDP parsing and negotiation.

/// Why an SDP could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Larger than the configured limit.
    #[error("SDP larger than {0} bytes")]
    TooLarge(usize),
    /// More lines or m-lines than allowed.
    #[error("SDP has too many {0}")]
    TooMany(&'static str),
    /// A line is not `<letter>=<value>`.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A mandatory line is missing.
    #[error("missing {0} line")]
    Missing(&'static str),
    /// Not UTF-8.
    #[error("SDP is not UTF-8")]
    Utf8,
}

/// Why an offer or answer cannot be accepted. Each maps to a SIP status
/// with [`NegotiationError::sip_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The body is not valid SDP.
    #[error("invalid SDP: {0}")]
    Parse(#[from] ParseError),
    /// The answer's m-lines do not match the offer's (RFC 3264 section 6).
    #[error("answer has {answer} m-lines, offer had {offer}")]
    MediaCount {
        /// m-lines in the offer.
        offer: usize,
        /// m-lines in the answer.
        answer: usize,
    },
    /// The answer accepted a stream listing only codecs that were not
    /// offered (extra formats beside an offered one are ignored).
    #[error("answer uses codec {0} that was not offered")]
    NotOffered(String),
    /// No codec in common on an accepted stream.
    #[error("no common {0} codec")]
    NoCommonCodec(&'static str),
    /// The audio stream was rejected or is absent.
    #[error("audio rejected")]
    AudioRejected,
    /// Media security does not match what was required.
    #[error("media security mismatch: {0}")]
    Security(&'static str),
    /// Some other violation of RFC 3264.
    #[error("{0}")]
    Invalid(&'static str),
}

impl NegotiationError {
    /// The SIP response status for this failure (488 Not Acceptable Here
    /// for incompatible media, 400 for a broken body).
    pub fn sip_status(&self) -> u16 {
        match self {
            NegotiationError::Parse(_) => 400,
            _ => 488,
        }
    }
}
