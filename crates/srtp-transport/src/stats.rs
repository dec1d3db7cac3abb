//! RTCP statistics (RFC 3550 section 6.4 and appendix A.3, A.8): what the
//! leg received from each source, turned into report blocks, and what it
//! sent, turned into sender reports.

use crate::rtcp::{ReportBlock, RtcpPacket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RFC 3550 A.1: a jump ahead of more than this many sequence numbers is not taken at face value.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a packet this far behind the highest is a reordered or repeated one.
const MAX_MISORDER: u16 = 100;

/// Reception statistics of one source.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    clock_rate: u32,
    /// RFC 3550 A.1: the highest sequence number, the wrap-arounds counted (times 2^16), the first.
    max_seq: Option<u16>,
    cycles: u64,
    base_seq: u64,
    /// The sequence numbers that would follow the last few large jumps: a packet with one of them
    /// confirms its jump (the source restarted). A few, not one (A.1 keeps one), so that packets
    /// of another stream interleaved with the restarted one cannot keep it from resyncing.
    bad_seqs: [Option<u16>; 4],
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Packets received and lost before the source restarted its sequence numbers.
    received_before: u64,
    lost_before: i64,
    jitter: f64,
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    /// Statistics for `ssrc` at the codec's clock rate.
    pub fn new(ssrc: u32, clock_rate: u32) -> ReceiverStats {
        ReceiverStats {
            ssrc,
            clock_rate: clock_rate.max(1),
            max_seq: None,
            cycles: 0,
            base_seq: 0,
            bad_seqs: [None; 4],
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            received_before: 0,
            lost_before: 0,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            last_sr: None,
        }
    }

    /// Starts counting at `seq` (the first packet, or a source that restarted its numbers).
    fn init_seq(&mut self, seq: u16) {
        self.received_before += self.received;
        self.lost_before += self.lost_now();
        self.max_seq = Some(seq);
        self.cycles = 0;
        self.base_seq = u64::from(seq);
        self.bad_seqs = [None; 4];
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
    }

    /// RFC 3550 A.1's `update_seq`: counts a packet unless it is the first of a large jump (which
    /// counts, and starts the numbering over, only if the next packet follows it).
    fn update_seq(&mut self, seq: u16) -> bool {
        let Some(max) = self.max_seq else {
            self.init_seq(seq);
            self.received += 1;
            return true;
        };
        let ahead = seq.wrapping_sub(max);
        if ahead < MAX_DROPOUT {
            if seq < max {
                self.cycles += 1 << 16;
            }
            self.max_seq = Some(seq);
        } else if u32::from(ahead) <= (1 << 16) - u32::from(MAX_MISORDER) {
            // A very large jump: the source restarted, or a stray packet.
            if self.bad_seqs.contains(&Some(seq)) {
                self.init_seq(seq);
            } else {
                self.bad_seqs.rotate_right(1);
                self.bad_seqs[0] = Some(seq.wrapping_add(1));
                return false;
            }
        }
        // Otherwise a reordered or repeated packet: counted, the highest unchanged.
        self.received += 1;
        true
    }

    fn extended_max(&self) -> Option<u64> {
        self.max_seq.map(|m| self.cycles + u64::from(m))
    }

    fn lost_now(&self) -> i64 {
        match self.extended_max() {
            Some(max) => (max + 1).saturating_sub(self.base_seq) as i64 - self.received as i64,
            None => 0,
        }
    }

    /// Records an RTP packet (after authentication); false when its sequence number jumped far
    /// from the stream's and no packet confirmed the jump yet (RFC 3550 A.1: not counted, and not
    /// to be played either: a stray or hostile packet, or the first of a source that restarted).
    pub fn on_rtp(&mut self, now: Instant, seq: u16, timestamp: u32) -> bool {
        if !self.update_seq(seq) {
            return false;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.saturating_duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate);
        let transit = arrival - f64::from(timestamp);
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            if d < f64::from(self.clock_rate) * 10.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        true
    }

    /// Records an RTP packet whose timestamp does not follow the media clock (an RFC 4733 event's
    /// is the event's start in every packet of it): counted for loss, not for jitter. False as
    /// for [`on_rtp`](Self::on_rtp).
    pub fn on_rtp_untimed(&mut self, seq: u16) -> bool {
        self.update_seq(seq)
    }

    /// Records a sender report from this source (for LSR/DLSR).
    pub fn on_sender_report(&mut self, now: Instant, ntp: u64) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// Whether packets came since the last report block (RFC 3550 §6.4 reports only on those).
    pub fn heard_since_report(&self) -> bool {
        self.received != self.received_prior
    }

    /// Packets received so far (across restarts of the source's numbering).
    pub fn received(&self) -> u64 {
        self.received_before + self.received
    }

    /// The interarrival jitter estimate (RFC 3550 A.8).
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter.max(0.0) / f64::from(self.clock_rate))
    }

    /// Packets expected but not received so far, across restarts of the source's numbering
    /// (RFC 3550 A.3: negative when duplicates arrived).
    pub fn cumulative_lost(&self) -> i64 {
        self.lost_before + self.lost_now()
    }

    /// The report block for the next RR/SR; updates the interval counters.
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let Some(highest) = self.extended_max() else {
            return ReportBlock { ssrc: self.ssrc, ..ReportBlock::default() };
        };
        let base = self.base_seq;
        let expected = (highest + 1).saturating_sub(base);
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32),
            None => (0, 0),
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost: fraction,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: highest as u32,
            jitter: self.jitter as u32,
            last_sr,
            delay_since_last_sr: dlsr,
        }
    }
}

/// A wall-clock time as NTP's 64-bit fixed point (seconds since 1900 and a binary fraction), as
/// sender reports carry it; its middle 32 bits are what report blocks echo as LSR.
pub fn ntp_timestamp(wall: SystemTime) -> u64 {
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    // NTP epoch is 1900: 70 years (17 leap days) before the Unix epoch.
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// What the leg sent, for sender reports.
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    packets: u32,
    octets: u32,
    last_rtp: Option<(u32, Instant)>,
}

impl SenderStats {
    /// Records a sent RTP packet.
    pub fn on_rtp(&mut self, now: Instant, timestamp: u32, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_rtp = Some((timestamp, now));
    }

    /// Records a sent RTP packet whose timestamp does not follow the media clock (an RFC 4733
    /// event's): counted, but not a reference for the sender report's RTP time.
    pub fn on_rtp_untimed(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// A sender report for `ssrc` with the given report blocks; the RTP
    /// timestamp is extrapolated from the last packet sent to `now`.
    pub fn sender_report(
        &self,
        ssrc: u32,
        now: Instant,
        wall: SystemTime,
        clock_rate: u32,
        reports: Vec<ReportBlock>,
    ) -> RtcpPacket {
        let ntp = ntp_timestamp(wall);
        let rtp_timestamp = match self.last_rtp {
            Some((ts, at)) => {
                ts.wrapping_add((now.saturating_duration_since(at).as_secs_f64() * f64::from(clock_rate)) as u32)
            }
            None => 0,
        };
        RtcpPacket::SenderReport { ssrc, ntp, rtp_timestamp, packets: self.packets, octets: self.octets, reports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_fraction_and_cumulative() {
        let t0 = Instant::now();
        let mut r = ReceiverStats::new(7, 8000);
        // 100 packets expected, 10 lost (every tenth), across a wrap.
        for i in 0..100u32 {
            if i % 10 == 5 {
                continue;
            }
            let seq = (65_500 + i) as u16;
            r.on_rtp(t0 + Duration::from_millis(20 * u64::from(i)), seq, i * 160);
        }
        let b = r.report_block(t0 + Duration::from_secs(2));
        assert_eq!(b.cumulative_lost, 10);
        assert_eq!(b.fraction_lost, 25, "10/100 of 256");
        assert_eq!(
            b.highest_seq - (b.highest_seq & !0xffff),
            u32::from((65_500u32 + 99) as u16),
            "extended across the wrap"
        );
        assert!(b.jitter < 2, "regular arrivals: {}", b.jitter);
        // Next interval: no loss.
        for i in 100..150u32 {
            r.on_rtp(t0 + Duration::from_millis(20 * u64::from(i)), (65_500 + i) as u16, i * 160);
        }
        let b = r.report_block(t0 + Duration::from_secs(3));
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 10));
    }

    #[test]
    fn a_stray_number_or_a_restarted_source_is_not_counted_as_loss() {
        let t0 = Instant::now();
        let mut r = ReceiverStats::new(7, 8000);
        for n in 0..10u16 {
            r.on_rtp(t0, 1000 + n, u32::from(n) * 160);
        }
        // One stray packet far ahead: not counted, nothing lost.
        r.on_rtp(t0, 40_000, 0);
        for n in 10..20u16 {
            r.on_rtp(t0, 1000 + n, u32::from(n) * 160);
        }
        assert_eq!((r.received(), r.cumulative_lost()), (20, 0));
        assert_eq!(r.report_block(t0).cumulative_lost, 0);
        // The source restarts its numbering: two packets in sequence, and counting starts over.
        r.on_rtp(t0, 50_000, 0);
        r.on_rtp(t0, 50_001, 160);
        r.on_rtp(t0, 50_003, 480);
        assert_eq!((r.received(), r.cumulative_lost()), (22, 1), "the restart's packet, then one lost");
        let b = r.report_block(t0);
        assert_eq!((b.cumulative_lost, b.highest_seq), (1, 50_003));
        // A restart with strays interleaved (one between each of its packets) still resyncs.
        let mut r2 = ReceiverStats::new(8, 8000);
        for n in 0..5u16 {
            r2.on_rtp(t0, n, u32::from(n) * 160);
        }
        assert!(!r2.on_rtp(t0, 20_000, 0));
        assert!(!r2.on_rtp(t0, 45_000, 0), "a stray in between");
        assert!(r2.on_rtp(t0, 20_001, 160), "the restart confirmed all the same");
        // Reordered and repeated packets just behind: counted, the highest unchanged.
        r.on_rtp(t0, 50_002, 320);
        r.on_rtp(t0, 50_002, 320);
        assert_eq!(r.cumulative_lost(), -1, "a duplicate makes the count negative, as A.3 says");
        // A.1's bounds: 99 behind is reordering (taken); exactly 100 behind is a jump (held back
        // until confirmed).
        let mut r3 = ReceiverStats::new(9, 8000);
        for n in 200..210u16 {
            r3.on_rtp(t0, n, u32::from(n) * 160);
        }
        assert!(r3.on_rtp(t0, 209 - 99, 0), "99 behind");
        assert!(!r3.on_rtp(t0, 209 - 100, 0), "100 behind: RTP_SEQ_MOD - MAX_MISORDER");
    }

    #[test]
    fn lsr_dlsr_and_sender_report() {
        let t0 = Instant::now();
        let mut r = ReceiverStats::new(7, 8000);
        r.on_rtp(t0, 1, 160);
        r.on_sender_report(t0, 0x1234_5678_9abc_def0);
        let b = r.report_block(t0 + Duration::from_millis(500));
        assert_eq!(b.last_sr, 0x5678_9abc);
        assert_eq!(b.delay_since_last_sr, 32768, "0.5 s in 1/65536 s");
        let mut s = SenderStats::default();
        s.on_rtp(t0, 1000, 160);
        s.on_rtp(t0, 1160, 160);
        let RtcpPacket::SenderReport { packets, octets, rtp_timestamp, ntp, .. } =
            s.sender_report(9, t0 + Duration::from_millis(100), UNIX_EPOCH + Duration::from_secs(1), 8000, vec![b])
        else {
            panic!()
        };
        assert_eq!((packets, octets), (2, 320));
        assert_eq!(rtp_timestamp, 1160 + 800);
        assert_eq!(ntp >> 32, 2_208_988_801);
    }
}
