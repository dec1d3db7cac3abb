//! The codecs a SIP leg can negotiate.

/// A media codec known to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus 48000/2 (RFC 7587).
    Opus,
    /// G.722 (RTP clock 8000 by RFC 3551's historical error, sampled at 16 kHz).
    G722,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// H.264 (RFC 6184), packetization-mode 1 (single NAL units, STAP-A, FU-A).
    H264,
    /// H.264 in packetization-mode 0, single NAL unit mode (RFC 6184 §6.2): one NAL unit per
    /// packet, no aggregation or fragmentation, for endpoints that take nothing else (its
    /// `packetization-mode` absent or 0).
    H264SingleNal,
    /// VP8 (RFC 7741).
    Vp8,
}

impl Codec {
    /// Encoding name in `a=rtpmap`.
    pub fn encoding(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::G722 => "G722",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::H264 | Codec::H264SingleNal => "H264",
            Codec::Vp8 => "VP8",
        }
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::G722 | Codec::Pcmu | Codec::Pcma => 8_000,
            Codec::H264 | Codec::H264SingleNal | Codec::Vp8 => 90_000,
        }
    }

    /// Channels in `a=rtpmap`, if written.
    pub fn channels(self) -> Option<u16> {
        (self == Codec::Opus).then_some(2)
    }

    /// The static payload type, if any (RFC 3551).
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            _ => None,
        }
    }

    /// The dynamic payload type we prefer to offer.
    pub fn preferred_dynamic_pt(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::H264 => 102,
            Codec::H264SingleNal => 104,
            Codec::Vp8 => 103,
            _ => 96,
        }
    }

    /// Our `a=fmtp` parameters.
    pub fn fmtp(self) -> Option<&'static str> {
        match self {
            Codec::Opus => Some("minptime=10;useinbandfec=1"),
            Codec::H264 => Some("profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1"),
            Codec::H264SingleNal => Some("profile-level-id=42e01f;packetization-mode=0;level-asymmetry-allowed=1"),
            _ => None,
        }
    }

    /// Whether this is an audio codec.
    pub fn is_audio(self) -> bool {
        !matches!(self, Codec::H264 | Codec::H264SingleNal | Codec::Vp8)
    }

    /// Whether this is H.264, in either packetization mode.
    pub fn is_h264(self) -> bool {
        matches!(self, Codec::H264 | Codec::H264SingleNal)
    }

    /// Identifies a codec from an rtpmap (or a static payload type without
    /// one) and its fmtp. H.264 is [`Codec::H264`] in packetization-mode 1, [`Codec::H264SingleNal`]
    /// in mode 0 (or with no mode: 0 is the default); mode 2 (interleaved) is not carried.
    pub fn identify(pt: u8, rtpmap: Option<(&str, u32, Option<u16>)>, fmtp: Option<&str>) -> Option<Codec> {
        let Some((enc, clock, ch)) = rtpmap else {
            return match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                9 => Some(Codec::G722),
                _ => None,
            };
        };
        let c = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma, Codec::H264, Codec::Vp8]
            .into_iter()
            .find(|c| c.encoding().eq_ignore_ascii_case(enc) && c.clock_rate() == clock)?;
        if c == Codec::Opus && ch.is_some_and(|n| n != 2) {
            return None;
        }
        if c == Codec::H264 {
            return match fmtp_param(fmtp.unwrap_or_default(), "packetization-mode").unwrap_or("0").trim() {
                "1" => Some(Codec::H264),
                "0" => Some(Codec::H264SingleNal),
                _ => None,
            };
        }
        Some(c)
    }
}

/// Reads one `key=value` parameter of an fmtp line.
pub fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify() {
        assert_eq!(Codec::identify(0, None, None), Some(Codec::Pcmu));
        assert_eq!(Codec::identify(96, None, None), None);
        assert_eq!(Codec::identify(111, Some(("OPUS", 48000, Some(2))), None), Some(Codec::Opus));
        assert_eq!(Codec::identify(111, Some(("opus", 48000, Some(1))), None), None);
        assert_eq!(Codec::identify(9, Some(("G722", 8000, None)), None), Some(Codec::G722));
        assert_eq!(
            Codec::identify(126, Some(("H264", 90000, None)), Some("profile-level-id=42e01f;packetization-mode=1")),
            Some(Codec::H264)
        );
        assert_eq!(
            Codec::identify(97, Some(("H264", 90000, None)), Some("profile-level-id=42e01f")),
            Some(Codec::H264SingleNal),
            "mode 0 by default"
        );
        assert_eq!(
            Codec::identify(97, Some(("H264", 90000, None)), Some("packetization-mode=0")),
            Some(Codec::H264SingleNal)
        );
        assert_eq!(Codec::identify(97, Some(("H264", 90000, None)), None), Some(Codec::H264SingleNal));
        assert_eq!(Codec::identify(97, Some(("H264", 90000, None)), Some("packetization-mode=2")), None, "interleaved");
        assert!(Codec::H264SingleNal.is_h264() && !Codec::H264SingleNal.is_audio());
        assert_eq!(fmtp_param("a=1; b = 2", "b"), Some("2"));
    }
}
