//! RTP packets (RFC 3550 section 5.1, RFC 8285 header extensions).

use crate::error::Error;

/// A payload type (7 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(pub u8);

/// A synchronisation source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

/// The length of the header (fixed part, CSRCs and extension) of the RTP
/// packet in `buf`, bounds-checked. Unlike [`RtpPacket::parse`] it does not
/// look at the padding count, which SRTP encrypts.
pub(crate) fn header_len(buf: &[u8]) -> Result<usize, Error> {
    if buf.len() < 12 {
        return Err(MALFORMED("shorter than 12 bytes"));
    }
    if buf[0] >> 6 != 2 {
        return Err(MALFORMED("version is not 2"));
    }
    let cc = usize::from(buf[0] & 0x0f);
    let mut header_len = 12 + 4 * cc;
    if buf.len() < header_len {
        return Err(MALFORMED("CSRC list beyond the packet"));
    }
    if buf[0] & 0x10 != 0 {
        if buf.len() < header_len + 4 {
            return Err(MALFORMED("extension header beyond the packet"));
        }
        let words = usize::from(u16::from_be_bytes([buf[header_len + 2], buf[header_len + 3]]));
        header_len += 4 + 4 * words;
        if buf.len() < header_len {
            return Err(MALFORMED("extension beyond the packet"));
        }
    }
    Ok(header_len)
}

/// A parsed view of an RTP packet; borrows the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
}

const MALFORMED: fn(&'static str) -> Error = |reason| Error::Malformed { what: "RTP", reason };

impl<'a> RtpPacket<'a> {
    /// Parses and bounds-checks a packet.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, Error> {
        let header_len = header_len(buf)?;
        let mut payload_end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || header_len + pad > buf.len() {
                return Err(MALFORMED("bad padding length"));
            }
            payload_end -= pad;
        }
        Ok(RtpPacket { buf, header_len, payload_end })
    }

    /// Marker bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// Payload type.
    pub fn payload_type(&self) -> PayloadType {
        PayloadType(self.buf[1] & 0x7f)
    }

    /// Sequence number.
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// Timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    /// SSRC.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]))
    }

    /// The CSRC list.
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        let cc = usize::from(self.buf[0] & 0x0f);
        let b = self.buf;
        (0..cc).map(move |i| Ssrc(u32::from_be_bytes([b[12 + 4 * i], b[13 + 4 * i], b[14 + 4 * i], b[15 + 4 * i]])))
    }

    /// The header extension: profile and data, if present.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if self.buf[0] & 0x10 == 0 {
            return None;
        }
        let at = 12 + 4 * usize::from(self.buf[0] & 0x0f);
        let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
        Some((profile, &self.buf[at + 4..self.header_len]))
    }

    /// RFC 8285 one-byte-header extension elements `(id, data)`.
    pub fn extension_elements(&self) -> Vec<(u8, &'a [u8])> {
        let mut out = Vec::new();
        let Some((profile, data)) = self.extension() else { return out };
        let mut i = 0;
        if profile == 0xBEDE {
            while i < data.len() {
                let b = data[i];
                if b == 0 {
                    i += 1;
                    continue;
                }
                let id = b >> 4;
                let len = usize::from(b & 0x0f) + 1;
                if id == 15 || i + 1 + len > data.len() {
                    break;
                }
                out.push((id, &data[i + 1..i + 1 + len]));
                i += 1 + len;
            }
        } else if profile & 0xfff0 == 0x1000 {
            while i + 1 < data.len() {
                let id = data[i];
                if id == 0 {
                    i += 1;
                    continue;
                }
                let len = usize::from(data[i + 1]);
                if i + 2 + len > data.len() {
                    break;
                }
                out.push((id, &data[i + 2..i + 2 + len]));
                i += 2 + len;
            }
        }
        out
    }

    /// Header length in bytes (fixed header, CSRCs and extension).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// RFC 6464 audio level from a one-byte extension element: `(voice, -dBov)`.
pub fn audio_level(pkt: &RtpPacket<'_>, id: u8) -> Option<(bool, u8)> {
    pkt.extension_elements()
        .into_iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, d)| d.first())
        .map(|b| (b & 0x80 != 0, b & 0x7f))
}

/// Builds RTP packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// CSRCs (at most 15).
    pub csrcs: Vec<u32>,
    /// Extension profile and data (data length a multiple of 4).
    pub extension: Option<(u16, Vec<u8>)>,
}

impl RtpHeader {
    /// Writes header and payload into `out` (cleared first), padding the
    /// packet to a multiple of `pad_to` bytes when `pad_to > 1`.
    pub fn write(&self, payload: &[u8], pad_to: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.csrcs.len() > 15 || self.payload_type > 127 {
            return Err(MALFORMED("more than 15 CSRCs or payload type above 127"));
        }
        out.clear();
        let ext = self.extension.as_ref();
        if ext.is_some_and(|(_, d)| d.len() % 4 != 0 || d.len() / 4 > 0xffff) {
            return Err(MALFORMED("extension length not a multiple of 4"));
        }
        let mut b0 = 0x80 | self.csrcs.len() as u8;
        if ext.is_some() {
            b0 |= 0x10;
        }
        let base = 12 + 4 * self.csrcs.len() + ext.map_or(0, |(_, d)| 4 + d.len()) + payload.len();
        let pad = if pad_to > 1 && !base.is_multiple_of(pad_to) { pad_to - base % pad_to } else { 0 };
        if pad > 255 {
            return Err(MALFORMED("padding above 255 bytes"));
        }
        if pad > 0 {
            b0 |= 0x20;
        }
        out.reserve(base + pad + 16);
        out.push(b0);
        out.push(if self.marker { 0x80 } else { 0 } | self.payload_type);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrcs {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = ext {
            out.extend_from_slice(&profile.to_be_bytes());
            out.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(payload);
        if pad > 0 {
            out.resize(out.len() + pad - 1, 0);
            out.push(pad as u8);
        }
        Ok(())
    }
}

/// Extends 16-bit sequence numbers to 64-bit indices across wrap-around
/// (RFC 3550 appendix A.1 style, without the probation logic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// The extended index of `seq`, the one closest to the highest seen;
    /// updates the highest.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            self.highest = Some(u64::from(seq));
            return u64::from(seq);
        };
        let roc = h >> 16;
        let hs = (h & 0xffff) as u16;
        let candidate = |r: u64| (r << 16) | u64::from(seq);
        let idx = if seq.wrapping_sub(hs) < 0x8000 {
            // Ahead (maybe across a wrap).
            if seq < hs {
                candidate(roc + 1)
            } else {
                candidate(roc)
            }
        } else if seq > hs && roc > 0 {
            candidate(roc - 1)
        } else {
            candidate(roc)
        };
        if idx > h {
            self.highest = Some(idx);
        }
        idx
    }

    /// The highest extended index seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_everything() {
        let h = RtpHeader {
            marker: true,
            payload_type: 111,
            seq: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
            csrcs: vec![1, 2, 3],
            extension: Some((0xBEDE, vec![0x10, 0xff, 0x00, 0x00])),
        };
        let mut out = Vec::new();
        h.write(b"hello", 4, &mut out).expect("write");
        assert_eq!(out.len() % 4, 0);
        let p = RtpPacket::parse(&out).expect("parse");
        assert!(p.marker());
        assert_eq!(p.payload_type(), PayloadType(111));
        assert_eq!(p.seq(), 65535);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), Ssrc(0x1234_5678));
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![Ssrc(1), Ssrc(2), Ssrc(3)]);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.extension_elements(), vec![(1u8, &[0xffu8][..])]);
        assert_eq!(audio_level(&p, 1), Some((true, 0x7f)));
    }

    #[test]
    fn hostile_packets_are_errors() {
        assert!(RtpPacket::parse(&[0x80; 11]).is_err());
        assert!(RtpPacket::parse(&[0x40; 12]).is_err());
        let mut p = vec![0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(RtpPacket::parse(&p).is_err(), "15 CSRCs missing");
        p[0] = 0x90;
        p.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        assert!(RtpPacket::parse(&p).is_err(), "extension too long");
        let mut q = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 200];
        assert!(RtpPacket::parse(&q).is_err(), "padding longer than packet");
        q[14] = 0;
        assert!(RtpPacket::parse(&q).is_err(), "zero padding");
    }

    #[test]
    fn sequence_wraps() {
        let mut e = SeqExtender::default();
        assert_eq!(e.extend(65534), 65534);
        assert_eq!(e.extend(65535), 65535);
        assert_eq!(e.extend(0), 65536);
        assert_eq!(e.extend(65533), 65533, "late packet from before the wrap");
        assert_eq!(e.extend(2), 65538);
        assert_eq!(e.highest(), Some(65538));
    }
}
