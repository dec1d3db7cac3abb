//! Media transport for one call leg: RTP/RTCP packets, SRTP/SRTCP keyed by
//! SDES or DTLS-SRTP, replay protection, symmetric RTP and media activity.
//!
//! Sans-IO: nothing here opens a socket or reads the clock.

#[cfg(feature = "dtls")]
pub mod dtls;
mod error;
pub mod leg;
mod replay;
pub mod rtcp;
pub mod rtp;
pub mod sdes;
mod srtp;

pub use error::Error;
pub use leg::{classify, Activity, LegConfig, MediaLeg, PacketKind, Received};
pub use replay::ReplayWindow;
pub use rtp::{PayloadType, RtpHeader, RtpPacket, SeqExtender, Ssrc};
#[doc(hidden)]
pub use srtp::SessionKeys;
pub use srtp::{derive, Context, MasterKey, Options, Suite};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
