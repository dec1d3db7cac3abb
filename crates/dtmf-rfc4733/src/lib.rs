//! RFC 4733 telephone-events for DTMF: the payload codec, a sender that
//! turns a digit string into RTP event packets, a receiver that turns
//! packets back into one event per key press, and key-sequence detection
//! (the `*6` mute toggle).
//!
//! Everything here is sans-IO: no sockets, no tasks, no sleeping, no clock
//! reads. Time goes in as `std::time::Instant` arguments and RTP timestamps;
//! packets, digits and the next deadline come out of `poll_*` methods. The
//! RTP layer owns the stream (payload type, SSRC, sequence numbers, SRTP)
//! and hands this crate only what is DTMF.
//!
//! - [`TelephoneEvent`]: the 4-byte payload of RFC 4733 section 2.3;
//!   [`Digit`] maps event codes 0-15 to `0-9 * # A-D`; [`Volume`] is the
//!   power level.
//! - [`Sender`]: digit strings (`0-9 * # A-D`, `p` for a pause) to
//!   [`EventPacket`]s with growing durations, the marker bit on each event's
//!   first packet, the end report sent three times, and long events split
//!   into segments.
//! - [`Receiver`]: packets to [`DigitEvent`]s, each key press exactly once,
//!   whatever was lost, duplicated, reordered or left without a marker bit,
//!   and whatever payload type the packets came with.
//! - [`SequenceDetector`]: fires when a key sequence such as `*6` is typed
//!   within a window.
//! - [`parse_sip_info`]: the key of a SIP INFO DTMF body (`application/dtmf-relay`,
//!   `application/dtmf`), for peers that signal keys that way instead.
//! - [`InfoSender`]: the other way, digit strings to `application/dtmf-relay` INFO bodies, paced
//!   as tones would be, one in flight, stopped when the far end refuses one.
//!
//! ```
//! use dtmf_rfc4733::{Receiver, ReceiverConfig, Sender, SenderConfig};
//! use std::time::Instant;
//!
//! let mut tx = Sender::new(SenderConfig::default()).unwrap();
//! let mut rx = Receiver::new(ReceiverConfig::default());
//! tx.enqueue("*6").unwrap();
//! let t0 = Instant::now();
//! let (mut now, mut seq) = (t0, 0u16);
//! loop {
//!     let ts = (now - t0).as_millis() as u32 * 8;
//!     while let Some(p) = tx.poll_packet(now, ts) {
//!         seq = seq.wrapping_add(1);
//!         rx.handle_packet(now, seq, p.timestamp, p.marker, &p.payload).unwrap();
//!     }
//!     let Some(due) = tx.poll_timeout() else { break };
//!     now = now.max(due);
//! }
//! let keys: String = std::iter::from_fn(|| rx.poll_event()).map(|e| e.digit.to_char()).collect();
//! assert_eq!(keys, "*6");
//! ```

mod clock;
mod digit;
mod error;
mod info;
mod payload;
mod receiver;
mod sender;
mod sequence;

pub use clock::ClockRate;
pub use digit::Digit;
pub use error::Error;
pub use info::{parse_sip_info, refuses_info, InfoOutcome, InfoSender, DTMF_RELAY};
pub use payload::{TelephoneEvent, Volume};
pub use receiver::{DigitEvent, Receiver, ReceiverConfig};
pub use sender::{EventPacket, Sender, SenderConfig};
pub use sequence::SequenceDetector;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
