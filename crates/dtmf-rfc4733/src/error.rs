//! The one error type of this crate, with variants grouped by cause.

/// Everything that can go wrong in this crate.
///
/// The variants fall into three groups:
/// - **the peer sent something we cannot use** ([`Error::PayloadTooShort`],
///   [`Error::UnsupportedEvent`]): returned by the payload parser and the
///   [`Receiver`](crate::Receiver); the packet is dropped and the receiver's
///   state is unchanged, so the caller may log the error and carry on;
/// - **the caller misused the API** ([`Error::InvalidDigit`],
///   [`Error::QueueFull`], [`Error::InvalidClockRate`],
///   [`Error::InvalidVolume`], [`Error::InvalidConfig`]): nothing was
///   queued or built;
/// - **the far end refused** ([`Error::InfoRefused`]): it takes no DTMF in
///   SIP INFO, so nothing more is queued for it.
///
/// The crate does no IO, so there is no environment variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A telephone-event payload shorter than the 4 bytes RFC 4733 section
    /// 2.3 requires.
    #[error("telephone-event payload of {len} bytes is shorter than 4")]
    PayloadTooShort {
        /// The length received.
        len: usize,
    },
    /// A well-formed telephone-event whose event code is not a DTMF digit
    /// (codes 0-15). Other events (flash, fax tones, line events) are not
    /// negotiated by this crate.
    #[error("event code {code} is not a DTMF digit")]
    UnsupportedEvent {
        /// The event code received.
        code: u8,
    },
    /// A digit string contains a character that is not `0-9`, `*`, `#`,
    /// `A-D` or `p`.
    #[error("invalid character {character:?} at position {position} in the digit string")]
    InvalidDigit {
        /// The offending character.
        character: char,
        /// Its index in the string, counted in characters from 0.
        position: usize,
    },
    /// Queueing the digit string would exceed the sender's queue limit.
    #[error("digit queue full: at most {limit} digits and pauses may wait")]
    QueueFull {
        /// The configured limit.
        limit: usize,
    },
    /// A clock rate outside the supported range.
    #[error("clock rate {0} Hz is outside 1000..=192000")]
    InvalidClockRate(u32),
    /// A volume (power level in -dBm0) above 63.
    #[error("volume {0} is outside 0..=63 (-dBm0)")]
    InvalidVolume(u8),
    /// A configuration value out of range; the text names the field.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The far end refused DTMF in SIP INFO ([`InfoSender`](crate::InfoSender)): nothing more
    /// is sent that way.
    #[error("the far end refuses DTMF in SIP INFO")]
    InfoRefused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = Error::InvalidDigit { character: 'x', position: 3 };
        assert_eq!(e.to_string(), "invalid character 'x' at position 3 in the digit string");
        assert_eq!(
            Error::PayloadTooShort { len: 2 }.to_string(),
            "telephone-event payload of 2 bytes is shorter than 4"
        );
        assert_eq!(Error::UnsupportedEvent { code: 16 }.to_string(), "event code 16 is not a DTMF digit");
    }
}
