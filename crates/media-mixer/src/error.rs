//! The crate's error type.

/// Errors, by cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame has the wrong number of samples for its rate and duration.
    #[error("frame of {got} samples, expected {expected}")]
    FrameSize {
        /// Samples given.
        got: usize,
        /// Samples expected.
        expected: usize,
    },
    /// A sample rate the crate does not handle.
    #[error("unsupported sample rate {0} Hz")]
    Rate(u32),
    /// An unknown stream or listener.
    #[error("unknown {0}")]
    Unknown(&'static str),
    /// A payload that cannot be decoded.
    #[error("undecodable payload: {0}")]
    Decode(&'static str),
}
