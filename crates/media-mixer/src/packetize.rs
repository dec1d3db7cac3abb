//! RTP payload formats for video: H.264 (RFC 6184: single NAL unit,
//! STAP-A, FU-A; packetization-mode 1) and VP8 (RFC 7741).
//!
//! Packetisers turn one encoded frame into RTP payloads no larger than the
//! MTU budget (the caller adds the RTP header, one timestamp per frame, the
//! marker on the last payload). Depacketisers take payloads in sequence
//! order and give back whole frames; a lost packet drops the frame and asks
//! for a keyframe rather than handing a decoder something broken.

use crate::error::Error;

/// Splits an H.264 Annex B byte stream into NAL units (start codes removed).
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && (data[i + 2] == 1 || (data[i + 2] == 0 && data.get(i + 3) == Some(&1))) {
            let code_len = if data[i + 2] == 1 { 3 } else { 4 };
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    out.push(&data[s..end]);
                }
            }
            i += code_len;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        if s < data.len() {
            out.push(&data[s..]);
        }
    } else if !data.is_empty() {
        out.push(data);
    }
    out
}

/// Packetises one H.264 access unit (its NAL units) into payloads of at
/// most `mtu` bytes: small NALs aggregated in STAP-A, large ones cut in FU-A.
pub fn h264_packetize(nals: &[&[u8]], mtu: usize) -> Vec<Vec<u8>> {
    let mtu = mtu.max(16);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut stap: Vec<&[u8]> = Vec::new();
    let flush = |stap: &mut Vec<&[u8]>, out: &mut Vec<Vec<u8>>| {
        match stap.len() {
            0 => {}
            1 => out.push(stap[0].to_vec()),
            _ => {
                let nri = stap.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                let mut p = vec![nri | 24];
                for n in stap.iter() {
                    p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    p.extend_from_slice(n);
                }
                out.push(p);
            }
        }
        stap.clear();
    };
    for nal in nals.iter().filter(|n| !n.is_empty()) {
        if nal.len() > mtu {
            flush(&mut stap, &mut out);
            let header = nal[0];
            let indicator = (header & 0xe0) | 28;
            let body = &nal[1..];
            let chunk = mtu - 2;
            let count = body.len().div_ceil(chunk);
            for (k, part) in body.chunks(chunk).enumerate() {
                let mut fu = header & 0x1f;
                if k == 0 {
                    fu |= 0x80;
                }
                if k + 1 == count {
                    fu |= 0x40;
                }
                let mut p = Vec::with_capacity(part.len() + 2);
                p.push(indicator);
                p.push(fu);
                p.extend_from_slice(part);
                out.push(p);
            }
            continue;
        }
        let stap_len = 1 + stap.iter().map(|n| 2 + n.len()).sum::<usize>() + 2 + nal.len();
        if !stap.is_empty() && stap_len > mtu {
            flush(&mut stap, &mut out);
        }
        stap.push(nal);
    }
    flush(&mut stap, &mut out);
    out
}

/// The most a depacketiser gathers for one frame, bytes (a 1080p keyframe is a few hundred
/// kilobytes): a sender that never sets the marker bit, or never changes its timestamp, loses
/// the frame rather than growing it without end.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// The most NAL units an H.264 access unit may gather (a 1080p keyframe cut into 1200-byte slices
/// has a few hundred): STAP-A packets full of one-byte NAL units would otherwise cost far more
/// memory than [`MAX_FRAME_BYTES`] says.
pub const MAX_NALS: usize = 4096;

/// Reassembles H.264 access units from RTP payloads.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    nals: Vec<Vec<u8>>,
    /// Payload bytes taken for the frame being gathered.
    bytes: usize,
    fu: Option<Vec<u8>>,
    last_seq: Option<u16>,
    broken: bool,
    timestamp: Option<u32>,
    /// The RTP timestamp of the last frame delivered.
    delivered: Option<u32>,
    /// The last sequence and picture parameter sets seen (in band or from the SDP), put in
    /// front of an IDR access unit that comes without them.
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// A second frame one packet completed (see [`H264Depacketizer::take_held`]), with its RTP
    /// timestamp.
    held: Option<(Frame, u32)>,
}

/// A reassembled frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame (H.264: Annex B with 4-byte start codes; VP8: the frame).
    pub data: Vec<u8>,
    /// Whether it is a keyframe (H.264: contains an IDR slice).
    pub keyframe: bool,
}

/// What a depacketiser says after a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Depacketized {
    /// Need more packets.
    Pending,
    /// A whole frame.
    Frame(Frame),
    /// A packet was lost or malformed: the frame is dropped; request a
    /// keyframe (PLI) if this persists.
    Dropped,
}

impl H264Depacketizer {
    /// A depacketiser that knows the parameter sets of an fmtp's `sprop-parameter-sets` (RFC 6184
    /// §8.1: base64 NAL units, comma-separated), for senders that give them only there. Unreadable
    /// values are ignored.
    pub fn with_fmtp(fmtp: Option<&str>) -> H264Depacketizer {
        use base64::Engine as _;
        let mut d = H264Depacketizer::default();
        let sprop = fmtp.into_iter().flat_map(|f| f.split(';')).find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim().eq_ignore_ascii_case("sprop-parameter-sets").then_some(v.trim())
        });
        for nal in sprop.into_iter().flat_map(|v| v.split(',')) {
            if let Ok(nal) = base64::engine::general_purpose::STANDARD.decode(nal.trim()) {
                d.remember(&nal);
            }
        }
        d
    }

    /// Keeps a parameter set (a bounded one: no real SPS or PPS is near 1 kB).
    fn remember(&mut self, nal: &[u8]) {
        let slot = match nal.first().map(|h| h & 0x1f) {
            Some(7) => &mut self.sps,
            Some(8) => &mut self.pps,
            _ => return,
        };
        if nal.len() <= 1024 {
            *slot = Some(nal.to_vec());
        }
    }

    /// Feeds one RTP packet's payload (`marker` = last of the frame).
    ///
    /// A payload of nothing (an RFC 3550 padding-only packet, which senders use to probe the
    /// bandwidth) and NAL unit types this mode does not carry (0, 25-27, 29-31) only take their
    /// sequence number. An access unit whose marker never came is delivered when the next one
    /// starts right after it (a sender that does not set the marker), unless a packet is missing.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Depacketized {
        let contiguous = self.last_seq.is_none_or(|l| seq == l.wrapping_add(1));
        let mut unmarked = None;
        if self.timestamp.is_some_and(|t| t != timestamp) {
            // A new access unit: the last one's marker was lost (then so is a packet) or never
            // set (then the unit is whole).
            if contiguous && !self.broken && self.fu.is_none() {
                unmarked = self.take_frame().map(|f| (f, self.delivered.unwrap_or(timestamp)));
            }
            self.reset();
            self.broken = false;
        }
        self.timestamp = Some(timestamp);
        if !contiguous {
            self.broken = true;
            self.fu = None;
        }
        self.last_seq = Some(seq);
        if !payload.is_empty() && self.parse(payload).is_err() {
            self.broken = true;
        }
        self.bytes += payload.len();
        if self.bytes > MAX_FRAME_BYTES || self.nals.len() > MAX_NALS {
            self.reset();
            self.broken = true;
        }
        if !marker {
            return unmarked.map_or(Depacketized::Pending, |(f, _)| Depacketized::Frame(f));
        }
        let broken = std::mem::take(&mut self.broken) || self.fu.is_some();
        let outcome = if broken {
            Depacketized::Dropped
        } else {
            // Nothing to show and nothing lost (padding with the marker set, parameter sets
            // alone): pending.
            self.take_frame().map_or(Depacketized::Pending, Depacketized::Frame)
        };
        self.reset();
        match (outcome, unmarked) {
            // Two frames at once (an unmarked one, then a whole one in this packet): the older
            // first; the newer waits for `take_held`.
            (Depacketized::Frame(f), Some((older, at))) => {
                let newer = self.delivered.unwrap_or(timestamp);
                self.held = Some((f, newer));
                self.delivered = Some(at);
                Depacketized::Frame(older)
            }
            (Depacketized::Frame(f), None) => Depacketized::Frame(f),
            (_, Some((f, _))) => Depacketized::Frame(f),
            (other, None) => other,
        }
    }

    /// The frame the last [`push`](Self::push) completed besides the one it returned, and its RTP
    /// timestamp: a packet that holds a whole access unit, after one from a sender that does not
    /// set the marker bit, completes both. Call it after every push that returned a frame.
    pub fn take_held(&mut self) -> Option<(Frame, u32)> {
        self.held.take()
    }

    /// The RTP timestamp of the frame [`push`](Self::push) returned last: not always the
    /// packet's just given, when a frame without marker came out as the next one started.
    pub fn frame_timestamp(&self) -> Option<u32> {
        self.delivered
    }

    /// The gathered NAL units as one Annex B access unit; `None` when they hold no slice (the
    /// parameter sets of a sender that sends them on their own are kept for its next IDR).
    fn take_frame(&mut self) -> Option<Frame> {
        let nals = std::mem::take(&mut self.nals);
        let kind = |n: &Vec<u8>| n.first().map_or(0, |h| h & 0x1f);
        for n in nals.iter().filter(|n| matches!(kind(n), 7 | 8)) {
            self.remember(n);
        }
        if !nals.iter().any(|n| (1..=5).contains(&kind(n))) {
            return None;
        }
        self.delivered = self.timestamp;
        let keyframe = nals.iter().any(|n| kind(n) == 5);
        // An IDR without its parameter sets gets the last ones seen: every keyframe decodes on
        // its own (a decoder made later, a subscriber that joins late).
        let mut prefix: Vec<&[u8]> = Vec::new();
        if keyframe && !nals.iter().any(|n| kind(n) == 7) {
            prefix.extend(self.sps.as_deref());
        }
        if keyframe && !nals.iter().any(|n| kind(n) == 8) {
            prefix.extend(self.pps.as_deref());
        }
        let size = prefix.iter().map(|n| n.len() + 4).sum::<usize>() + nals.iter().map(|n| n.len() + 4).sum::<usize>();
        let mut data = Vec::with_capacity(size);
        for n in prefix.into_iter().chain(nals.iter().map(Vec::as_slice)) {
            data.extend_from_slice(&[0, 0, 0, 1]);
            data.extend_from_slice(n);
        }
        Some(Frame { data, keyframe })
    }

    fn reset(&mut self) {
        self.nals.clear();
        self.fu = None;
        self.bytes = 0;
    }

    fn parse(&mut self, p: &[u8]) -> Result<(), Error> {
        let first = *p.first().ok_or(Error::Decode("empty H.264 payload"))?;
        match first & 0x1f {
            1..=23 => self.nals.push(p.to_vec()),
            24 => {
                let mut i = 1;
                while i < p.len() {
                    let len = usize::from(u16::from_be_bytes([
                        *p.get(i).ok_or(Error::Decode("STAP-A"))?,
                        *p.get(i + 1).ok_or(Error::Decode("STAP-A"))?,
                    ]));
                    let nal = p.get(i + 2..i + 2 + len).ok_or(Error::Decode("STAP-A length"))?;
                    if !nal.is_empty() {
                        self.nals.push(nal.to_vec());
                    }
                    i += 2 + len;
                }
            }
            28 => {
                let fu = *p.get(1).ok_or(Error::Decode("FU-A header"))?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    let mut nal = vec![(first & 0xe0) | (fu & 0x1f)];
                    nal.extend_from_slice(&p[2..]);
                    self.fu = Some(nal);
                } else {
                    let f = self.fu.as_mut().ok_or(Error::Decode("FU-A without start"))?;
                    f.extend_from_slice(&p[2..]);
                }
                if end {
                    if let Some(nal) = self.fu.take() {
                        self.nals.push(nal);
                    }
                }
            }
            // Reserved (0, 30, 31) or of the interleaved mode (25-27, 29), which we never agree to:
            // ignored (RFC 6184 §5.2), the frame kept.
            _ => {}
        }
        Ok(())
    }
}

/// Packetises NAL units in packetization-mode 0 (RFC 6184 §6.2, single NAL unit mode): each NAL
/// unit in a packet of its own, never aggregated or fragmented (the mode allows neither). The
/// encoder keeps NAL units within the MTU ([`crate::h264::H264Encoder::with_max_nal`]); one that
/// is not still goes whole, in a larger datagram, rather than not at all.
pub fn h264_packetize_single_nal(nals: &[&[u8]]) -> Vec<Vec<u8>> {
    nals.iter().filter(|n| !n.is_empty()).map(|n| n.to_vec()).collect()
}

/// Packetises one VP8 frame (RFC 7741) with a 15-bit picture ID.
pub fn vp8_packetize(frame: &[u8], picture_id: u16, mtu: usize) -> Vec<Vec<u8>> {
    let chunk = mtu.max(16) - 4;
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(k, part)| {
            let s = if k == 0 { 0x10 } else { 0 };
            let mut p = Vec::with_capacity(part.len() + 4);
            p.push(0x80 | s); // X, S, PID 0
            p.push(0x80); // I: picture ID present
            p.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
            p.extend_from_slice(part);
            p
        })
        .collect()
}

/// Reassembles VP8 frames from RTP payloads.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    data: Vec<u8>,
    started: bool,
    last_seq: Option<u16>,
    broken: bool,
}

impl Vp8Depacketizer {
    /// Feeds one RTP packet's payload. A frame that follows lost packets is dropped unless it
    /// is a keyframe (whole frames may have gone with them: it would decode as a smear).
    pub fn push(&mut self, seq: u16, marker: bool, payload: &[u8]) -> Depacketized {
        let gap = self.last_seq.is_some_and(|l| seq != l.wrapping_add(1));
        if gap {
            self.broken = true;
        }
        self.last_seq = Some(seq);
        match vp8_descriptor_len(payload) {
            Ok((len, start)) => {
                if start {
                    self.data.clear();
                    self.started = true;
                    let keyframe = payload.get(len).is_some_and(|b| b & 1 == 0);
                    self.broken = gap && !keyframe;
                }
                if self.started {
                    self.data.extend_from_slice(&payload[len..]);
                }
                if self.data.len() > MAX_FRAME_BYTES {
                    self.data = Vec::new();
                    self.started = false;
                    self.broken = true;
                }
            }
            Err(_) => self.broken = true,
        }
        if !marker {
            return Depacketized::Pending;
        }
        let ok = self.started && !self.broken && !self.data.is_empty();
        self.started = false;
        self.broken = false;
        let data = std::mem::take(&mut self.data);
        if !ok {
            return Depacketized::Dropped;
        }
        let keyframe = data.first().is_some_and(|b| b & 1 == 0);
        Depacketized::Frame(Frame { data, keyframe })
    }
}

/// Length of the VP8 payload descriptor and whether it starts partition 0.
fn vp8_descriptor_len(p: &[u8]) -> Result<(usize, bool), Error> {
    let b0 = *p.first().ok_or(Error::Decode("empty VP8 payload"))?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1).ok_or(Error::Decode("VP8 X byte"))?;
        len = 2;
        if x & 0x80 != 0 {
            let pid = *p.get(len).ok_or(Error::Decode("VP8 picture ID"))?;
            len += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1;
        }
        if x & 0x30 != 0 {
            len += 1;
        }
    }
    if len > p.len() {
        return Err(Error::Decode("VP8 descriptor longer than payload"));
    }
    Ok((len, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xaa]); // SPS
        v.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]); // PPS
        v.extend_from_slice(&[0, 0, 1, 0x65]); // IDR, large
        v.extend((0..5000).map(|i| (i % 251) as u8 | 1));
        v
    }

    /// A sender that never ends its frame (no marker bit, one timestamp) cannot make a
    /// depacketiser hold more than [`MAX_FRAME_BYTES`]; the next whole frame still comes out.
    #[test]
    fn a_frame_without_end_is_bounded() {
        let mut h = H264Depacketizer::default();
        let mut v = Vp8Depacketizer::default();
        let chunk = [0x41u8; 1200];
        // The first VP8 packet starts the frame (S bit), the others continue it.
        let vp8_chunk =
            |start: bool| [[if start { 0x90u8 } else { 0x80 }, 0x80, 0x80, 1].as_slice(), &[0u8; 1196]].concat();
        let mut most = 0;
        for seq in 0..5000u16 {
            assert_eq!(h.push(seq, 7, false, &chunk), Depacketized::Pending);
            assert_eq!(v.push(seq, false, &vp8_chunk(seq == 0)), Depacketized::Pending);
            most = most.max(v.data.len());
            let held = h.nals.iter().map(Vec::len).sum::<usize>();
            assert!(held <= MAX_FRAME_BYTES && v.data.len() <= MAX_FRAME_BYTES, "{held} {}", v.data.len());
        }
        assert!(most > MAX_FRAME_BYTES / 2, "the VP8 frame did grow: {most}");
        assert_eq!(h.push(5000, 7, true, &chunk), Depacketized::Dropped, "that frame is lost");
        assert_eq!(v.push(5000, true, &vp8_chunk(false)), Depacketized::Dropped);
        assert!(matches!(h.push(5001, 8, true, &chunk), Depacketized::Frame(_)), "the next one comes");
    }

    #[test]
    fn h264_round_trip_with_stap_a_and_fu_a() {
        let data = au();
        let nals = split_annex_b(&data);
        assert_eq!(nals.len(), 3);
        let pkts = h264_packetize(&nals, 1200);
        assert!(pkts.iter().all(|p| p.len() <= 1200));
        assert_eq!(pkts[0][0] & 0x1f, 24, "SPS and PPS aggregated");
        assert_eq!(pkts[1][0] & 0x1f, 28, "IDR fragmented");
        let mut d = H264Depacketizer::default();
        let mut result = Depacketized::Pending;
        for (i, p) in pkts.iter().enumerate() {
            result = d.push(100 + i as u16, 9000, i + 1 == pkts.len(), p);
        }
        let Depacketized::Frame(f) = result else { panic!("{result:?}") };
        assert!(f.keyframe);
        let back: Vec<&[u8]> = split_annex_b(&f.data);
        assert_eq!(back, nals);
    }

    #[test]
    fn h264_loss_drops_the_frame() {
        let data = au();
        let pkts = h264_packetize(&split_annex_b(&data), 1000);
        let mut d = H264Depacketizer::default();
        let mut last = Depacketized::Pending;
        for (i, p) in pkts.iter().enumerate() {
            if i == 2 {
                continue;
            }
            last = d.push(i as u16, 1, i + 1 == pkts.len(), p);
        }
        assert_eq!(last, Depacketized::Dropped);
        // The next frame decodes again.
        let next = h264_packetize(&[&[0x41, 1, 2, 3]], 1000);
        assert!(matches!(
            d.push(pkts.len() as u16, 2, true, &next[0]),
            Depacketized::Frame(Frame { keyframe: false, .. })
        ));
        // Garbage never panics.
        for bad in [&[][..], &[28][..], &[24, 0, 9, 1][..], &[31, 1][..]] {
            let _ = d.push(99, 3, true, bad);
        }
    }

    /// Padding-only packets (bandwidth probes) and NAL types of other modes between frames take
    /// their sequence numbers and nothing else: the next frame is whole, no keyframe asked.
    #[test]
    fn h264_padding_and_foreign_nal_types_between_frames_cost_nothing() {
        let mut d = H264Depacketizer::default();
        assert!(matches!(d.push(1, 100, true, &[0x65, 1, 2]), Depacketized::Frame(Frame { keyframe: true, .. })));
        assert_eq!(d.push(2, 100, false, &[]), Depacketized::Pending, "padding");
        assert_eq!(d.push(3, 100, true, &[]), Depacketized::Pending, "padding with the marker");
        assert_eq!(d.push(4, 150, false, &[0x1f, 9]), Depacketized::Pending, "type 31: ignored");
        assert_eq!(d.push(5, 150, false, &[0x19, 0, 1, 9]), Depacketized::Pending, "STAP-B: ignored");
        let Depacketized::Frame(f) = d.push(6, 200, true, &[0x41, 1, 2]) else { panic!("the next frame") };
        assert_eq!(f.data, [0, 0, 0, 1, 0x41, 1, 2]);
        // Within a frame, an ignored packet does not break it either.
        assert_eq!(d.push(7, 300, false, &[0x41, 5]), Depacketized::Pending);
        assert_eq!(d.push(8, 300, false, &[]), Depacketized::Pending);
        let Depacketized::Frame(f) = d.push(9, 300, true, &[0x41, 6]) else { panic!("whole") };
        assert_eq!(f.data, [0, 0, 0, 1, 0x41, 5, 0, 0, 0, 1, 0x41, 6]);
    }

    /// A sender that never sets the marker: each access unit comes out when the next one starts
    /// right after it; one whose last packet is missing does not.
    #[test]
    fn h264_without_markers_is_delivered_a_frame_late() {
        let mut d = H264Depacketizer::default();
        assert_eq!(d.push(1, 100, false, &[0x65, 1]), Depacketized::Pending);
        assert_eq!(d.push(2, 100, false, &[0x65, 2]), Depacketized::Pending);
        let Depacketized::Frame(f) = d.push(3, 200, false, &[0x41, 3]) else { panic!("the first unit") };
        assert!(f.keyframe);
        assert_eq!(d.frame_timestamp(), Some(100), "the unit's own time, not the packet's");
        assert_eq!(f.data, [0, 0, 0, 1, 0x65, 1, 0, 0, 0, 1, 0x65, 2]);
        // Packet 4 (the end of unit 200, or the start of 300) is lost: unit 200 is not delivered.
        assert_eq!(d.push(5, 300, false, &[0x41, 5]), Depacketized::Pending);
        // Unit 300 lost its start: it is not delivered at 400 either; 400 itself is.
        assert_eq!(d.push(6, 400, false, &[0x41, 6]), Depacketized::Pending);
        assert!(matches!(d.push(7, 400, true, &[0x41, 7]), Depacketized::Frame(_)));
        assert_eq!(d.frame_timestamp(), Some(400));
    }

    /// An unmarked access unit followed at once by a whole one in a single marked packet: both
    /// come out, the older from `push`, the newer from `take_held`, each with its own timestamp.
    #[test]
    fn h264_an_unmarked_unit_and_a_whole_one_in_one_packet_both_come_out() {
        let mut d = H264Depacketizer::default();
        assert_eq!(d.push(1, 100, false, &[0x65, 1]), Depacketized::Pending);
        let Depacketized::Frame(older) = d.push(2, 200, true, &[0x41, 2]) else { panic!("the older unit") };
        assert_eq!(older.data, [0, 0, 0, 1, 0x65, 1]);
        assert_eq!(d.frame_timestamp(), Some(100));
        let (newer, at) = d.take_held().expect("the newer unit");
        assert_eq!((newer.data.as_slice(), at), (&[0, 0, 0, 1, 0x41, 2][..], 200));
        assert!(d.take_held().is_none(), "given once");
        let Depacketized::Frame(next) = d.push(3, 300, true, &[0x41, 3]) else { panic!("the next") };
        assert_eq!(next.data, [0, 0, 0, 1, 0x41, 3]);
        assert_eq!(d.frame_timestamp(), Some(300));
        assert!(d.take_held().is_none());
    }

    /// Parameter sets sent on their own (an access unit of their own before the IDR) or only in
    /// the SDP go in front of the IDR that comes without them, so it decodes on its own.
    #[test]
    fn h264_parameter_sets_are_put_in_front_of_an_idr_without_them() {
        let (sps, pps) = ([0x67u8, 0x42, 0xc0, 0x1f], [0x68u8, 0xce, 0x3c, 0x80]);
        let mut d = H264Depacketizer::default();
        let stap: Vec<u8> = [&[24u8][..], &[0, 4], &sps, &[0, 4], &pps].concat();
        assert_eq!(d.push(1, 100, true, &stap), Depacketized::Pending, "parameter sets alone");
        let Depacketized::Frame(f) = d.push(2, 200, true, &[0x65, 9]) else { panic!("the IDR") };
        assert!(f.keyframe);
        assert_eq!(split_annex_b(&f.data), [&sps[..], &pps[..], &[0x65, 9][..]]);
        let Depacketized::Frame(f) = d.push(3, 300, true, &[0x41, 9]) else { panic!("an inter frame") };
        assert_eq!(f.data, [0, 0, 0, 1, 0x41, 9], "inter frames as they are");
        // An IDR with its own parameter sets keeps them, and only them.
        let own = [0x67u8, 0x42, 0xc0, 0x28];
        let stap: Vec<u8> = [&[24u8][..], &[0, 4], &own, &[0, 4], &pps, &[0, 2], &[0x65, 7]].concat();
        let Depacketized::Frame(f) = d.push(4, 400, true, &stap) else { panic!("the IDR") };
        assert_eq!(split_annex_b(&f.data), [&own[..], &pps[..], &[0x65, 7][..]]);

        // From the SDP: sprop-parameter-sets (base64 of the two NAL units above).
        let mut d = H264Depacketizer::with_fmtp(Some("packetization-mode=1;sprop-parameter-sets=Z0LAHw==,aM48gA=="));
        let Depacketized::Frame(f) = d.push(1, 100, true, &[0x65, 9]) else { panic!("the IDR") };
        assert_eq!(split_annex_b(&f.data), [&sps[..], &pps[..], &[0x65, 9][..]]);
        let _ = H264Depacketizer::with_fmtp(Some("sprop-parameter-sets=!!,"));
    }

    /// STAP-A packets full of one-byte NAL units: the access unit is given up past 4096 units,
    /// not kept growing by tens of bytes of bookkeeping per byte received.
    #[test]
    fn h264_nal_units_per_frame_are_bounded() {
        let mut d = H264Depacketizer::default();
        let stap: Vec<u8> = std::iter::once(24).chain((0..400).flat_map(|_| [0, 1, 0x41])).collect();
        for seq in 0..20u16 {
            let _ = d.push(seq, 1, false, &stap);
            assert!(d.nals.len() <= MAX_NALS, "{}", d.nals.len());
        }
        assert_eq!(d.push(20, 1, true, &[0x41, 1]), Depacketized::Dropped, "the unit was given up");
        assert!(matches!(d.push(21, 2, true, &[0x41, 1]), Depacketized::Frame(_)), "the next one is fine");
    }

    #[test]
    fn vp8_round_trip_and_loss() {
        let frame: Vec<u8> = std::iter::once(0x10).chain((0..3000).map(|i| i as u8)).collect(); // keyframe: bit 0 clear
        let pkts = vp8_packetize(&frame, 4321, 1000);
        assert!(pkts.iter().all(|p| p.len() <= 1000));
        let mut d = Vp8Depacketizer::default();
        let mut r = Depacketized::Pending;
        for (i, p) in pkts.iter().enumerate() {
            r = d.push(i as u16, i + 1 == pkts.len(), p);
        }
        assert_eq!(r, Depacketized::Frame(Frame { data: frame.clone(), keyframe: true }));
        let mut d = Vp8Depacketizer::default();
        let mut r = Depacketized::Pending;
        for (i, p) in pkts.iter().enumerate().filter(|(i, _)| *i != 1) {
            r = d.push(i as u16, i + 1 == pkts.len(), p);
        }
        assert_eq!(r, Depacketized::Dropped);
        assert_eq!(d.push(50, true, &[0x80]), Depacketized::Dropped, "truncated descriptor");

        // A whole one-packet frame lost between two: the inter frame after it is dropped (it
        // refers to the lost one); a keyframe after a loss is not.
        let mut d = Vp8Depacketizer::default();
        assert!(matches!(d.push(0, true, &[0x10, 0x00, 1]), Depacketized::Frame(Frame { keyframe: true, .. })));
        assert!(matches!(d.push(1, true, &[0x10, 0x01, 2]), Depacketized::Frame(Frame { keyframe: false, .. })));
        assert_eq!(d.push(3, true, &[0x10, 0x01, 3]), Depacketized::Dropped, "after the lost packet 2");
        assert!(matches!(d.push(4, true, &[0x10, 0x01, 4]), Depacketized::Frame(_)), "contiguous again");
        assert!(matches!(d.push(9, true, &[0x10, 0x00, 5]), Depacketized::Frame(Frame { keyframe: true, .. })));
    }
}
