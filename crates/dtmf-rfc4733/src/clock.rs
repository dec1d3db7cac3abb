//! The RTP clock rate of the telephone-event stream and conversions between
//! wall-clock durations and RTP timestamp units (samples).

use crate::Error;
use std::time::Duration;

/// The RTP clock rate negotiated for `telephone-event` (the rate in
/// `a=rtpmap:<pt> telephone-event/<rate>`), in Hz.
///
/// RFC 4733 section 2.1 ties it to the audio codec the events accompany:
/// 8000 for G.711 (and, by the RFC 3551 convention, G.722), 16000 for
/// wide-band codecs that declare it, 48000 for Opus. Durations and RTP
/// timestamps of events count in units of this clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClockRate(u32);

impl ClockRate {
    /// 8000 Hz, the default (narrow-band audio).
    pub const HZ_8000: ClockRate = ClockRate(8000);
    /// 16000 Hz (wide-band audio).
    pub const HZ_16000: ClockRate = ClockRate(16000);
    /// 48000 Hz (Opus).
    pub const HZ_48000: ClockRate = ClockRate(48000);

    /// A clock rate in Hz; anything from 1000 to 192000 is accepted.
    pub fn new(hz: u32) -> Result<Self, Error> {
        if (1000..=192_000).contains(&hz) {
            Ok(ClockRate(hz))
        } else {
            Err(Error::InvalidClockRate(hz))
        }
    }

    /// The rate in Hz.
    pub fn hz(self) -> u32 {
        self.0
    }

    /// How many clock units `duration` spans, rounded down.
    pub fn samples(self, duration: Duration) -> u64 {
        let samples = duration.as_nanos() * u128::from(self.0) / 1_000_000_000;
        u64::try_from(samples).unwrap_or(u64::MAX)
    }

    /// The wall-clock length of `samples` clock units, rounded down to the
    /// nanosecond.
    pub fn duration(self, samples: u64) -> Duration {
        let nanos = u128::from(samples) * 1_000_000_000 / u128::from(self.0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Default for ClockRate {
    fn default() -> Self {
        ClockRate::HZ_8000
    }
}

impl std::fmt::Display for ClockRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

/// Wrap-around-aware "is `a` later than `b`" for 32-bit RTP timestamps
/// (RFC 3550 serial arithmetic: `a` is later when `a - b`, taken modulo
/// 2^32, lies in `1..2^31`).
pub(crate) fn ts_newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000_0000
}

/// Whether timestamp `ts` lies in the inclusive range `from..=to`, which
/// may wrap past `u32::MAX`.
pub(crate) fn ts_in_range(ts: u32, from: u32, to: u32) -> bool {
    ts.wrapping_sub(from) <= to.wrapping_sub(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_rates_and_rejects_nonsense() {
        assert_eq!(ClockRate::new(8000), Ok(ClockRate::HZ_8000));
        assert_eq!(ClockRate::new(48000).map(ClockRate::hz), Ok(48000));
        assert_eq!(ClockRate::new(0), Err(Error::InvalidClockRate(0)));
        assert_eq!(ClockRate::new(999), Err(Error::InvalidClockRate(999)));
        assert_eq!(ClockRate::new(192_001), Err(Error::InvalidClockRate(192_001)));
        assert_eq!(ClockRate::default(), ClockRate::HZ_8000);
        assert_eq!(ClockRate::HZ_16000.to_string(), "16000 Hz");
    }

    #[test]
    fn converts_durations_and_samples() {
        assert_eq!(ClockRate::HZ_8000.samples(Duration::from_millis(20)), 160);
        assert_eq!(ClockRate::HZ_16000.samples(Duration::from_millis(100)), 1600);
        assert_eq!(ClockRate::HZ_48000.samples(Duration::from_millis(20)), 960);
        assert_eq!(ClockRate::HZ_8000.duration(800), Duration::from_millis(100));
        assert_eq!(ClockRate::HZ_48000.duration(65535), Duration::from_nanos(1_365_312_500));
        assert_eq!(ClockRate::HZ_8000.samples(Duration::MAX), u64::MAX);
    }

    #[test]
    fn serial_number_comparison_wraps() {
        assert!(ts_newer(1, 0));
        assert!(ts_newer(0, u32::MAX));
        assert!(ts_newer(5, u32::MAX - 5));
        assert!(!ts_newer(u32::MAX, 0));
        assert!(!ts_newer(7, 7));
        assert!(ts_newer(0x7fff_ffff, 0));
        assert!(!ts_newer(0x8000_0000, 0));
    }

    #[test]
    fn ranges_wrap() {
        assert!(ts_in_range(5, 5, 5));
        assert!(ts_in_range(u32::MAX, u32::MAX - 1, 3));
        assert!(ts_in_range(2, u32::MAX - 1, 3));
        assert!(!ts_in_range(4, u32::MAX - 1, 3));
        assert!(!ts_in_range(u32::MAX - 2, u32::MAX - 1, 3));
    }
}
