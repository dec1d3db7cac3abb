//! RTCP packets (RFC 3550 section 6, RFC 4585 feedback, RFC 5104 FIR):
//! parsing and building compound packets.

use crate::error::Error;

/// One reception report block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// Source reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report, /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub last_sr: u32,
    /// Delay since that SR, 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// One SDES chunk: a source and its `(item type, value)` items (1 = CNAME).
pub type SdesChunk = (u32, Vec<(u8, Vec<u8>)>);

/// An RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// SR (200).
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// NTP timestamp (64-bit fixed point).
        ntp: u64,
        /// RTP timestamp matching `ntp`.
        rtp_timestamp: u32,
        /// Packets sent.
        packets: u32,
        /// Payload octets sent.
        octets: u32,
        /// Report blocks.
        reports: Vec<ReportBlock>,
    },
    /// RR (201).
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Report blocks.
        reports: Vec<ReportBlock>,
    },
    /// SDES (202): CNAME (and other items) per source.
    Sdes(Vec<SdesChunk>),
    /// BYE (203).
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
        /// Optional reason.
        reason: Option<Vec<u8>>,
    },
    /// Generic NACK (205, FMT 1): lost sequence numbers.
    Nack {
        /// Sender of the feedback.
        sender: u32,
        /// Media source.
        media: u32,
        /// Lost sequence numbers.
        lost: Vec<u16>,
    },
    /// Picture Loss Indication (206, FMT 1).
    Pli {
        /// Sender of the feedback.
        sender: u32,
        /// Media source.
        media: u32,
    },
    /// Full Intra Request (206, FMT 4).
    Fir {
        /// Sender of the feedback.
        sender: u32,
        /// (media SSRC, command sequence number) entries.
        entries: Vec<(u32, u8)>,
    },
    /// Temporary Maximum Media Stream Bit Rate Request (205, FMT 3, RFC 5104 §4.2.1): the
    /// sender asks the media senders named in `entries` to keep under a bitrate.
    Tmmbr {
        /// Sender of the request.
        sender: u32,
        /// One per media sender asked.
        entries: Vec<Tmmb>,
    },
    /// Temporary Maximum Media Stream Bit Rate Notification (205, FMT 4, RFC 5104 §4.2.2): a
    /// media sender's answer to TMMBR, the bounding set it now keeps to.
    Tmmbn {
        /// Sender of the notification.
        sender: u32,
        /// The bounding set (the owners of the limits in force).
        entries: Vec<Tmmb>,
    },
    /// Anything else, kept raw (packet type, FMT/count, body after the 4-byte header).
    Other {
        /// Packet type.
        packet_type: u8,
        /// FMT or count field.
        count: u8,
        /// Body.
        body: Vec<u8>,
    },
}

/// One TMMBR or TMMBN entry (RFC 5104 §4.2.1.1, §4.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tmmb {
    /// The media sender asked (TMMBR), or the owner of a limit in the bounding set (TMMBN).
    pub ssrc: u32,
    /// The maximum total media bitrate, bit/s (sent as a 17-bit mantissa and a 6-bit exponent,
    /// rounded down).
    pub bitrate: u64,
    /// The per-packet overhead it was measured with (IP, UDP and RTP headers), bytes (9 bits).
    pub overhead: u16,
}

impl Tmmb {
    fn read(b: &[u8]) -> Tmmb {
        let word = be32(b, 4);
        let exp = word >> 26;
        let mantissa = u128::from((word >> 9) & 0x1_ffff);
        // Up to 2^80: beyond u64 is "no limit" (saturated), never wrapped to a small one.
        let bitrate = u64::try_from(mantissa << exp).unwrap_or(u64::MAX);
        Tmmb { ssrc: be32(b, 0), bitrate, overhead: (word & 0x1ff) as u16 }
    }

    fn write(&self, b: &mut Vec<u8>) {
        let (mut mantissa, mut exp) = (self.bitrate, 0u32);
        while mantissa >= 1 << 17 {
            mantissa >>= 1;
            exp += 1;
        }
        let word = exp << 26 | (mantissa as u32) << 9 | u32::from(self.overhead.min(511));
        b.extend_from_slice(&self.ssrc.to_be_bytes());
        b.extend_from_slice(&word.to_be_bytes());
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const BAD: fn(&'static str) -> Error = |reason| Error::Malformed { what: "RTCP", reason };

fn report_blocks(b: &[u8], count: usize) -> Result<Vec<ReportBlock>, Error> {
    if b.len() < count * 24 {
        return Err(BAD("report blocks beyond the packet"));
    }
    Ok((0..count)
        .map(|i| {
            let o = i * 24;
            let lost = be32(b, o + 4) & 0x00ff_ffff;
            let lost = if lost & 0x0080_0000 != 0 { lost as i32 - 0x0100_0000 } else { lost as i32 };
            ReportBlock {
                ssrc: be32(b, o),
                fraction_lost: b[o + 4],
                cumulative_lost: lost,
                highest_seq: be32(b, o + 8),
                jitter: be32(b, o + 12),
                last_sr: be32(b, o + 16),
                delay_since_last_sr: be32(b, o + 20),
            }
        })
        .collect())
}

/// Parses a compound RTCP packet (each part is length-checked).
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        if buf.len() - at < 4 {
            return Err(BAD("truncated header"));
        }
        let h = &buf[at..];
        if h[0] >> 6 != 2 {
            return Err(BAD("version is not 2"));
        }
        let count = h[0] & 0x1f;
        let pt = h[1];
        let len = (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1) * 4;
        if len > h.len() {
            return Err(BAD("length beyond the packet"));
        }
        let mut body = &h[4..len];
        if h[0] & 0x20 != 0 {
            let pad = usize::from(*body.last().ok_or(BAD("padding in an empty packet"))?);
            if pad == 0 || pad > body.len() {
                return Err(BAD("bad padding"));
            }
            body = &body[..body.len() - pad];
        }
        let n = usize::from(count);
        let p = match pt {
            200 => {
                if body.len() < 24 {
                    return Err(BAD("short SR"));
                }
                RtcpPacket::SenderReport {
                    ssrc: be32(body, 0),
                    ntp: u64::from(be32(body, 4)) << 32 | u64::from(be32(body, 8)),
                    rtp_timestamp: be32(body, 12),
                    packets: be32(body, 16),
                    octets: be32(body, 20),
                    reports: report_blocks(&body[24..], n)?,
                }
            }
            201 => {
                if body.len() < 4 {
                    return Err(BAD("short RR"));
                }
                RtcpPacket::ReceiverReport { ssrc: be32(body, 0), reports: report_blocks(&body[4..], n)? }
            }
            202 => {
                let mut chunks = Vec::new();
                let mut i = 0;
                for _ in 0..n {
                    if body.len() < i + 4 {
                        return Err(BAD("short SDES chunk"));
                    }
                    let ssrc = be32(body, i);
                    i += 4;
                    let mut items = Vec::new();
                    loop {
                        let Some(&t) = body.get(i) else { return Err(BAD("unterminated SDES chunk")) };
                        if t == 0 {
                            i = (i + 4) & !3;
                            break;
                        }
                        let l = usize::from(*body.get(i + 1).ok_or(BAD("short SDES item"))?);
                        let v = body.get(i + 2..i + 2 + l).ok_or(BAD("SDES item beyond the packet"))?;
                        items.push((t, v.to_vec()));
                        i += 2 + l;
                    }
                    chunks.push((ssrc, items));
                }
                RtcpPacket::Sdes(chunks)
            }
            203 => {
                if body.len() < 4 * n {
                    return Err(BAD("short BYE"));
                }
                let ssrcs = (0..n).map(|i| be32(body, 4 * i)).collect();
                let rest = &body[4 * n..];
                let reason = rest.first().and_then(|&l| rest.get(1..1 + usize::from(l))).map(<[u8]>::to_vec);
                RtcpPacket::Bye { ssrcs, reason }
            }
            205 if count == 1 => {
                if body.len() < 8 {
                    return Err(BAD("short NACK"));
                }
                let mut lost = Vec::new();
                for fci in body[8..].chunks_exact(4) {
                    let pid = u16::from_be_bytes([fci[0], fci[1]]);
                    let blp = u16::from_be_bytes([fci[2], fci[3]]);
                    lost.push(pid);
                    for bit in 0..16 {
                        if blp >> bit & 1 == 1 {
                            lost.push(pid.wrapping_add(bit + 1));
                        }
                    }
                }
                RtcpPacket::Nack { sender: be32(body, 0), media: be32(body, 4), lost }
            }
            205 if count == 3 || count == 4 => {
                if body.len() < 8 {
                    return Err(BAD("short TMMBR/TMMBN"));
                }
                let entries = body[8..].chunks_exact(8).map(Tmmb::read).collect();
                if count == 3 {
                    RtcpPacket::Tmmbr { sender: be32(body, 0), entries }
                } else {
                    RtcpPacket::Tmmbn { sender: be32(body, 0), entries }
                }
            }
            206 if count == 1 => {
                if body.len() < 8 {
                    return Err(BAD("short PLI"));
                }
                RtcpPacket::Pli { sender: be32(body, 0), media: be32(body, 4) }
            }
            206 if count == 4 => {
                if body.len() < 8 {
                    return Err(BAD("short FIR"));
                }
                let entries = body[8..].chunks_exact(8).map(|e| (be32(e, 0), e[4])).collect();
                RtcpPacket::Fir { sender: be32(body, 0), entries }
            }
            _ => RtcpPacket::Other { packet_type: pt, count, body: body.to_vec() },
        };
        out.push(p);
        at += len;
    }
    if out.is_empty() {
        return Err(BAD("empty"));
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: u8, pt: u8, body: &[u8]) {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    out.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
    out.extend_from_slice(&body);
}

fn write_blocks(b: &mut Vec<u8>, reports: &[ReportBlock]) {
    for r in reports {
        b.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost = (r.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
        b.extend_from_slice(&(u32::from(r.fraction_lost) << 24 | lost).to_be_bytes());
        b.extend_from_slice(&r.highest_seq.to_be_bytes());
        b.extend_from_slice(&r.jitter.to_be_bytes());
        b.extend_from_slice(&r.last_sr.to_be_bytes());
        b.extend_from_slice(&r.delay_since_last_sr.to_be_bytes());
    }
}

/// Serialises packets into one compound packet.
pub fn write_compound(packets: &[RtcpPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        let mut b = Vec::new();
        match p {
            RtcpPacket::SenderReport { ssrc, ntp, rtp_timestamp, packets, octets, reports } => {
                b.extend_from_slice(&ssrc.to_be_bytes());
                b.extend_from_slice(&ntp.to_be_bytes());
                b.extend_from_slice(&rtp_timestamp.to_be_bytes());
                b.extend_from_slice(&packets.to_be_bytes());
                b.extend_from_slice(&octets.to_be_bytes());
                write_blocks(&mut b, &reports[..reports.len().min(31)]);
                header(&mut out, reports.len().min(31) as u8, 200, &b);
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                b.extend_from_slice(&ssrc.to_be_bytes());
                write_blocks(&mut b, &reports[..reports.len().min(31)]);
                header(&mut out, reports.len().min(31) as u8, 201, &b);
            }
            RtcpPacket::Sdes(chunks) => {
                for (ssrc, items) in chunks.iter().take(31) {
                    b.extend_from_slice(&ssrc.to_be_bytes());
                    for (t, v) in items {
                        let v = &v[..v.len().min(255)];
                        b.push(*t);
                        b.push(v.len() as u8);
                        b.extend_from_slice(v);
                    }
                    b.push(0);
                    while b.len() % 4 != 0 {
                        b.push(0);
                    }
                }
                header(&mut out, chunks.len().min(31) as u8, 202, &b);
            }
            RtcpPacket::Bye { ssrcs, reason } => {
                for s in ssrcs.iter().take(31) {
                    b.extend_from_slice(&s.to_be_bytes());
                }
                if let Some(r) = reason {
                    let r = &r[..r.len().min(255)];
                    b.push(r.len() as u8);
                    b.extend_from_slice(r);
                }
                header(&mut out, ssrcs.len().min(31) as u8, 203, &b);
            }
            RtcpPacket::Nack { sender, media, lost } => {
                b.extend_from_slice(&sender.to_be_bytes());
                b.extend_from_slice(&media.to_be_bytes());
                let mut sorted = lost.clone();
                sorted.sort_unstable();
                sorted.dedup();
                let mut i = 0;
                while i < sorted.len() {
                    let pid = sorted[i];
                    let mut blp = 0u16;
                    let mut j = i + 1;
                    while j < sorted.len() && sorted[j].wrapping_sub(pid) <= 16 {
                        blp |= 1 << (sorted[j].wrapping_sub(pid) - 1);
                        j += 1;
                    }
                    b.extend_from_slice(&pid.to_be_bytes());
                    b.extend_from_slice(&blp.to_be_bytes());
                    i = j;
                }
                header(&mut out, 1, 205, &b);
            }
            RtcpPacket::Pli { sender, media } => {
                b.extend_from_slice(&sender.to_be_bytes());
                b.extend_from_slice(&media.to_be_bytes());
                header(&mut out, 1, 206, &b);
            }
            RtcpPacket::Fir { sender, entries } => {
                b.extend_from_slice(&sender.to_be_bytes());
                b.extend_from_slice(&0u32.to_be_bytes());
                for (ssrc, seq) in entries {
                    b.extend_from_slice(&ssrc.to_be_bytes());
                    b.extend_from_slice(&[*seq, 0, 0, 0]);
                }
                header(&mut out, 4, 206, &b);
            }
            RtcpPacket::Tmmbr { sender, entries } | RtcpPacket::Tmmbn { sender, entries } => {
                b.extend_from_slice(&sender.to_be_bytes());
                // The media source field is not used (RFC 5104 §4.2.1.2).
                b.extend_from_slice(&0u32.to_be_bytes());
                for e in entries {
                    e.write(&mut b);
                }
                let fmt = if matches!(p, RtcpPacket::Tmmbr { .. }) { 3 } else { 4 };
                header(&mut out, fmt, 205, &b);
            }
            RtcpPacket::Other { packet_type, count, body } => header(&mut out, *count, *packet_type, body),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_round_trip() {
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 12,
            cumulative_lost: -3,
            highest_seq: 70000,
            jitter: 40,
            last_sr: 1,
            delay_since_last_sr: 2,
        };
        let pkts = vec![
            RtcpPacket::SenderReport {
                ssrc: 1,
                ntp: 0x1122_3344_5566_7788,
                rtp_timestamp: 160,
                packets: 10,
                octets: 1600,
                reports: vec![block],
            },
            RtcpPacket::Sdes(vec![(1, vec![(1, b"gw@example".to_vec())])]),
            RtcpPacket::Nack { sender: 1, media: 7, lost: vec![10, 11, 26, 27, 100] },
            RtcpPacket::Pli { sender: 1, media: 7 },
            RtcpPacket::Fir { sender: 1, entries: vec![(7, 3)] },
            RtcpPacket::Tmmbr { sender: 1, entries: vec![Tmmb { ssrc: 7, bitrate: 384_000, overhead: 40 }] },
            RtcpPacket::Tmmbn { sender: 7, entries: vec![] },
            RtcpPacket::Bye { ssrcs: vec![1], reason: Some(b"bye".to_vec()) },
        ];
        let bytes = write_compound(&pkts);
        let back = parse_compound(&bytes).expect("parse");
        assert_eq!(back, pkts);
    }

    /// RFC 5104's bitrate is a 17-bit mantissa times a power of two: exact below 2^17 bit/s,
    /// rounded down (never above the limit meant) beyond, and the overhead keeps its 9 bits.
    #[test]
    fn tmmbr_bitrates_round_down_and_survive_the_wire() {
        for (bitrate, back) in [
            (0u64, 0u64),
            (64_000, 64_000),
            (131_071, 131_071),
            (131_072, 131_072),
            (384_123, 384_120),
            (2_000_001, 2_000_000),
            (u64::from(u32::MAX), 4_294_934_528),
        ] {
            let p = RtcpPacket::Tmmbr { sender: 9, entries: vec![Tmmb { ssrc: 5, bitrate, overhead: 600 }] };
            match parse_compound(&write_compound(&[p])).expect("parses").as_slice() {
                [RtcpPacket::Tmmbr { sender: 9, entries }] => {
                    assert_eq!(entries, &[Tmmb { ssrc: 5, bitrate: back, overhead: 511 }], "{bitrate}");
                    assert!(back <= bitrate && back * 100_001 / 100_000 >= bitrate, "{bitrate} -> {back}");
                }
                other => panic!("{other:?}"),
            }
        }
        // The largest exponents saturate rather than wrap (a wrapped "no limit" would be tiny).
        let huge = [0x83, 205, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xfc, 0, 0x04, 0];
        match parse_compound(&huge).expect("parses").as_slice() {
            [RtcpPacket::Tmmbr { entries, .. }] => assert_eq!(entries[0].bitrate, u64::MAX),
            other => panic!("{other:?}"),
        }
        // A TMMBR without its FCI is malformed; one with a partial entry has none.
        assert!(parse_compound(&[0x83, 205, 0, 1, 0, 0, 0, 1]).is_err());
        let partial = [0x83, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(parse_compound(&partial).expect("parses"), vec![RtcpPacket::Tmmbr { sender: 1, entries: vec![] }]);
    }

    #[test]
    fn hostile_input() {
        for b in [
            &[][..],
            &[0x80, 200, 0, 50][..],
            &[0x40, 200, 0, 0][..],
            &[0x81, 201, 0, 1, 0, 0, 0, 1][..],
            &[0x81, 202, 0, 1, 0, 0, 0, 1][..],
        ] {
            assert!(parse_compound(b).is_err(), "{b:?}");
        }
    }
}
