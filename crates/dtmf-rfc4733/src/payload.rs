//! The 4-byte telephone-event payload of RFC 4733 section 2.3:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::{Digit, Error};
use std::fmt;

/// The power level of a tone, 0 to 63, in units of -dBm0 (RFC 4733
/// section 2.3.4): 0 is the loudest (0 dBm0), 63 the quietest. DTMF senders
/// conventionally use 10 (-10 dBm0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Volume(u8);

impl Volume {
    /// -10 dBm0, the customary DTMF level and this crate's default.
    pub const DEFAULT: Volume = Volume(10);

    /// A volume in -dBm0; values above 63 are refused.
    pub fn new(minus_dbm0: u8) -> Result<Self, Error> {
        if minus_dbm0 <= 63 {
            Ok(Volume(minus_dbm0))
        } else {
            Err(Error::InvalidVolume(minus_dbm0))
        }
    }

    /// The level in -dBm0 (0-63).
    pub fn minus_dbm0(self) -> u8 {
        self.0
    }
}

impl Default for Volume {
    fn default() -> Self {
        Volume::DEFAULT
    }
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{} dBm0", self.0)
    }
}

/// One telephone-event payload (RFC 4733 section 2.3).
///
/// The event code is kept as received so that the parser accepts any
/// event; [`TelephoneEvent::digit`] maps codes 0-15 to DTMF keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// The event code (0-15 are the DTMF digits).
    pub event_code: u8,
    /// The E bit: this packet reports the end of the event.
    pub end: bool,
    /// The R bit: reserved, sent as 0 and ignored on receipt; kept here so
    /// that parsing and serialising round-trip exactly.
    pub reserved: bool,
    /// The power level of the tone.
    pub volume: Volume,
    /// The duration of the event (of its current segment, for events longer
    /// than 65535 units) so far, in RTP clock units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// The size of one event report in bytes.
    pub const LEN: usize = 4;

    /// A report for a DTMF digit, with the R bit clear.
    pub fn dtmf(digit: Digit, end: bool, volume: Volume, duration: u16) -> Self {
        TelephoneEvent { event_code: digit.event_code(), end, reserved: false, volume, duration }
    }

    /// Parses the first four bytes of a telephone-event payload.
    ///
    /// Bytes beyond the fourth are ignored: RFC 4733 carries further events
    /// only through RFC 2198 redundancy, which has its own payload type
    /// and is unwrapped before this point, and some senders pad. Fewer than
    /// four bytes is [`Error::PayloadTooShort`].
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        match *payload {
            [b0, b1, b2, b3, ..] => Ok(TelephoneEvent::from_bytes([b0, b1, b2, b3])),
            _ => Err(Error::PayloadTooShort { len: payload.len() }),
        }
    }

    /// Decodes exactly four payload bytes; every bit pattern is a valid
    /// report.
    pub fn from_bytes(bytes: [u8; 4]) -> Self {
        let [event_code, flags, d0, d1] = bytes;
        TelephoneEvent {
            event_code,
            end: flags & 0x80 != 0,
            reserved: flags & 0x40 != 0,
            volume: Volume(flags & 0x3f),
            duration: u16::from_be_bytes([d0, d1]),
        }
    }

    /// The four payload bytes in network order.
    pub fn to_bytes(&self) -> [u8; 4] {
        let flags = (u8::from(self.end) << 7) | (u8::from(self.reserved) << 6) | self.volume.0;
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event_code, flags, d0, d1]
    }

    /// The DTMF digit, when the event code is 0-15.
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event_code(self.event_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field() {
        let e = TelephoneEvent::parse(&[0x0b, 0x8a, 0x03, 0x20]).expect("4 bytes");
        assert_eq!(e.event_code, 11);
        assert_eq!(e.digit(), Some(Digit::Pound));
        assert!(e.end);
        assert!(!e.reserved);
        assert_eq!(e.volume.minus_dbm0(), 10);
        assert_eq!(e.duration, 800);
    }

    #[test]
    fn serialises_to_network_order() {
        let e = TelephoneEvent::dtmf(Digit::Nine, false, Volume::new(7).expect("in range"), 0x1234);
        assert_eq!(e.to_bytes(), [0x09, 0x07, 0x12, 0x34]);
        let e = TelephoneEvent { reserved: true, end: true, volume: Volume::new(63).expect("in range"), ..e };
        assert_eq!(e.to_bytes(), [0x09, 0xff, 0x12, 0x34]);
    }

    #[test]
    fn short_payload_is_an_error_value() {
        for len in 0..4 {
            let bytes = [1u8; 3];
            assert_eq!(TelephoneEvent::parse(&bytes[..len]), Err(Error::PayloadTooShort { len }));
        }
    }

    #[test]
    fn extra_bytes_are_ignored() {
        let e = TelephoneEvent::parse(&[0x01, 0x0a, 0x00, 0xa0, 0xde, 0xad, 0xbe, 0xef]).expect("long payload");
        assert_eq!(e, TelephoneEvent::dtmf(Digit::One, false, Volume::DEFAULT, 160));
    }

    #[test]
    fn non_dtmf_events_parse_but_have_no_digit() {
        let e = TelephoneEvent::parse(&[16, 0x80, 0, 0]).expect("flash");
        assert_eq!(e.event_code, 16);
        assert_eq!(e.digit(), None);
    }

    #[test]
    fn volume_range() {
        assert_eq!(Volume::new(64), Err(Error::InvalidVolume(64)));
        assert_eq!(Volume::default().minus_dbm0(), 10);
        assert_eq!(Volume::DEFAULT.to_string(), "-10 dBm0");
    }

    #[test]
    fn round_trips_all_bytes() {
        for b in [[0u8, 0, 0, 0], [255, 255, 255, 255], [15, 0x4a, 0xff, 0x00], [9, 0xbf, 0x06, 0x40]] {
            assert_eq!(TelephoneEvent::parse(&b).map(|e| e.to_bytes()), Ok(b));
        }
    }
}
