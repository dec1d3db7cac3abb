//! SDP for a SIP leg: a tolerant, bounded parser and RFC 3264 offer/answer.
//!
//! [`LocalSession`] builds the gateway's offer (Opus, G.722, PCMU, PCMA and
//! telephone-event; optional H.264 and VP8; plain RTP, SDES or DTLS-SRTP),
//! reads the answer into an [`Agreement`], and answers the peer's
//! re-offers (hold by `sendonly`, `inactive`, port 0 or `c=0.0.0.0`,
//! resume, new addresses or keys, changed payload types) per RFC 3264,
//! with the `o=` version increasing exactly when our description changes.
//! No IO.

pub mod codec;
mod error;
mod negotiate;
pub mod sdp;

pub use codec::Codec;
pub use error::{NegotiationError, ParseError};
pub use negotiate::{
    Agreement, DtlsAgreement, LocalSession, MediaAgreement, MediaSecurity, OfferOptions, SdesAgreement, SdesKey,
    SdesKeyCheck, Setup,
};
pub use sdp::{Attribute, Bandwidth, Connection, Direction, Media, Origin, Sdp};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
