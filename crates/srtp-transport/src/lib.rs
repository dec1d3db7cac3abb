//! Media transport for one call leg: RTP/RTCP packets, SRTP/SRTCP keyed by
//! SDES or DTLS-SRTP, replay protection, symmetric RTP and media activity.
//!
//! Sans-IO: nothing here opens a socket or reads the clock.

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
pub use srtp::{derive, Context, MasterKey, Options, Suite};
