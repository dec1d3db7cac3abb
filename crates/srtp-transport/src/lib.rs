//! Media transport for one call leg: RTP/RTCP packets, SRTP/SRTCP keyed by
//! SDES or DTLS-SRTP, replay protection, symmetric RTP and media activity.
//!
//! The core is sans-IO: [`MediaLeg`], [`Context`] and the packet types never
//! open a socket or read the clock. Two thin tokio layers sit beside it:
//! `driver` (feature `driver`: ports from a range, the receive loop,
//! shutdown) and `dtls` (feature `dtls`: the DTLS-SRTP handshake).

#[cfg(feature = "driver")]
pub mod driver;
#[cfg(feature = "dtls")]
pub mod dtls;
mod error;
pub mod leg;
mod replay;
pub mod rtcp;
pub mod rtp;
pub mod sdes;
mod srtp;
pub mod stats;

pub use error::Error;
pub use leg::{classify, Activity, LegConfig, MediaLeg, PacketKind, Received};
pub use replay::ReplayWindow;
pub use rtp::{PayloadType, RtpHeader, RtpPacket, SeqExtender, Ssrc};
#[doc(hidden)]
pub use srtp::SessionKeys;
pub use srtp::{derive, Context, MasterKey, Options, Suite, RESYNC_PACE};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
