//! RTCP on a call's audio leg (RFC 3550 section 6): what we send (a sender report while we send
//! audio, else a receiver report, each with a report block on the far end's stream and our CNAME,
//! at randomised intervals; a BYE when the call ends) and what the far end reports (its sender
//! reports, for the LSR and DLSR of ours; its report blocks on our stream: the loss and jitter it
//! sees, and the round trip). Also the rule for which of the far end's sources a leg takes media
//! from ([`SourceLock`]).

use std::time::{Duration, Instant, SystemTime};

use srtp_transport::rtcp::{self, ReportBlock, RtcpPacket};
use srtp_transport::stats::{ntp_timestamp, ReceiverStats, SenderStats};

/// RFC 3550 §6.3.1: the randomised interval is divided by e - 3/2 to make up for the timer
/// reconsideration that would otherwise send reports early on average.
const COMPENSATION: f64 = 1.218_28;

/// What the far end says of our stream, from its last report block about it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct FarEndView {
    /// Fraction of our packets lost in its last interval, 0 to 1.
    pub(crate) fraction_lost: f64,
    /// Our packets it never got.
    pub(crate) cumulative_lost: i32,
    /// Interarrival jitter of our stream at its end.
    pub(crate) jitter: Duration,
    /// The round trip, when it echoed one of our sender reports.
    pub(crate) round_trip: Option<Duration>,
    /// Report blocks on our stream received so far.
    pub(crate) blocks: u64,
}

/// A call's RTCP state.
#[derive(Debug)]
pub(crate) struct Rtcp {
    ssrc: u32,
    cname: Vec<u8>,
    clock_rate: u32,
    interval: Duration,
    sent: SenderStats,
    /// Reports still due as sender reports: media sent in this interval or the one before (RFC
    /// 3550 A.7 keeps a sender a sender for two intervals).
    sender_reports_due: u8,
    /// The far end's sources, by SSRC, oldest first (a stray or interleaved SSRC does not wipe the
    /// others' counts).
    received: Vec<(u32, ReceiverStats)>,
    next: Instant,
    /// Reports received from the far end.
    pub(crate) reports_received: u64,
    /// Its view of our stream.
    pub(crate) far_end: FarEndView,
}

/// A uniformly random factor between 0.5 and 1.5.
fn jitter_factor() -> f64 {
    0.5 + rand::random::<f64>()
}

impl Rtcp {
    /// RTCP for our stream `ssrc` in an RTP clock of `clock_rate`, a report every `interval` on
    /// average (the first after half of it, RFC 3550 §6.3.1), from `now`, with a new random
    /// CNAME (RFC 7022).
    pub(crate) fn new(ssrc: u32, clock_rate: u32, interval: Duration, now: Instant) -> Rtcp {
        let cname = format!("{:016x}@sip-interconnect", rand::random::<u64>()).into_bytes();
        Rtcp::with_cname(ssrc, clock_rate, interval, now, cname)
    }

    /// [`new`](Self::new) with the CNAME of another of the call's streams: one CNAME for the
    /// call's audio and video is what lets the far end play them in sync (RFC 3550 §6.5.1).
    pub(crate) fn with_cname(ssrc: u32, clock_rate: u32, interval: Duration, now: Instant, cname: Vec<u8>) -> Rtcp {
        Rtcp {
            ssrc,
            cname,
            clock_rate,
            interval,
            sent: SenderStats::default(),
            sender_reports_due: 0,
            received: Vec::new(),
            next: now + interval.mul_f64(0.5 * jitter_factor() / COMPENSATION),
            reports_received: 0,
            far_end: FarEndView::default(),
        }
    }

    /// Packets received from the far end (all its sources), how many of them never arrived, and
    /// the jitter of its busiest source.
    pub(crate) fn received(&self) -> (u64, i64, Duration) {
        let received = self.received.iter().map(|(_, s)| s.received()).sum();
        let lost = self.received.iter().map(|(_, s)| s.cumulative_lost()).sum();
        let jitter = self.received.iter().max_by_key(|(_, s)| s.received()).map_or(Duration::ZERO, |(_, s)| s.jitter());
        (received, lost, jitter)
    }

    /// Our SSRC.
    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Our CNAME.
    pub(crate) fn cname(&self) -> &[u8] {
        &self.cname
    }

    /// A compound packet now, out of schedule, carrying `extra` (feedback such as a PLI) after
    /// the report and the CNAME every compound packet needs (RFC 3550 §6.1, RFC 4585 §3.1).
    /// The report carries no report blocks: a block covers the interval since the last one, and
    /// feedback sent on every gap would cut the regular reports' intervals into slivers whose
    /// loss fractions mean nothing (one lost in six reads as 16%).
    pub(crate) fn with_feedback(&mut self, now: Instant, wall: SystemTime, extra: RtcpPacket) -> Vec<u8> {
        let report = if self.sender_reports_due > 0 {
            self.sent.sender_report(self.ssrc, now, wall, self.clock_rate, Vec::new())
        } else {
            RtcpPacket::ReceiverReport { ssrc: self.ssrc, reports: Vec::new() }
        };
        rtcp::write_compound(&[report, self.sdes(), extra])
    }

    /// We sent an RTP packet; `timed` is false for an RFC 4733 event's (whose timestamp is the
    /// event's start, no reference for the sender report's RTP time).
    pub(crate) fn on_sent(&mut self, now: Instant, timestamp: u32, payload_len: usize, timed: bool) {
        if timed {
            self.sent.on_rtp(now, timestamp, payload_len);
        } else {
            self.sent.on_rtp_untimed(payload_len);
        }
        self.sender_reports_due = 2;
    }

    /// The far end's RTP packet; `timed` is false for one whose timestamp does not follow the
    /// media clock (an RFC 4733 event's is its start), which counts for loss but not for jitter.
    /// False when its sequence number jumped far from its source's and nothing confirmed the jump
    /// yet (RFC 3550 A.1): such a packet is not to be played.
    pub(crate) fn on_received(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32, timed: bool) -> bool {
        /// Sources kept at once (RFC 3550 allows 31 report blocks; a SIP party has one or two).
        const SOURCES: usize = 4;
        let at = match self.received.iter().position(|(s, _)| *s == ssrc) {
            Some(at) => at,
            None => {
                if self.received.len() == SOURCES {
                    // The one that sent least goes (a stray SSRC, not the stream).
                    if let Some(least) =
                        self.received.iter().enumerate().min_by_key(|(_, (_, s))| s.received()).map(|(i, _)| i)
                    {
                        self.received.remove(least);
                    }
                }
                self.received.push((ssrc, ReceiverStats::new(ssrc, self.clock_rate)));
                self.received.len() - 1
            }
        };
        let stats = &mut self.received[at].1;
        if timed {
            stats.on_rtp(now, seq, timestamp)
        } else {
            stats.on_rtp_untimed(seq)
        }
    }

    /// A compound RTCP packet from the far end: its sender report is noted for the LSR and DLSR of
    /// ours, and its report block on our stream gives the far end's view (the round trip from
    /// `wall`, RFC 3550 §6.4.1). Returns the sources it says BYE for. Malformed packets are an
    /// error and change nothing.
    pub(crate) fn on_rtcp(&mut self, now: Instant, wall: SystemTime, bytes: &[u8]) -> Result<Vec<u32>, String> {
        let packets = rtcp::parse_compound(bytes).map_err(|e| e.to_string())?;
        Ok(self.on_packets(now, wall, &packets))
    }

    /// [`on_rtcp`](Self::on_rtcp) for a compound packet parsed already (by a caller that acts on
    /// its feedback too).
    pub(crate) fn on_packets(&mut self, now: Instant, wall: SystemTime, packets: &[RtcpPacket]) -> Vec<u32> {
        let mut byes = Vec::new();
        for p in packets {
            let blocks = match p {
                RtcpPacket::SenderReport { ssrc, ntp, reports, .. } => {
                    if let Some((_, stats)) = self.received.iter_mut().find(|(s, _)| s == ssrc) {
                        stats.on_sender_report(now, *ntp);
                    }
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { ssrcs, .. } => {
                    byes.extend_from_slice(ssrcs);
                    continue;
                }
                _ => continue,
            };
            self.reports_received += 1;
            if let Some(b) = blocks.iter().find(|b| b.ssrc == self.ssrc) {
                self.far_end.blocks += 1;
                self.far_end.fraction_lost = f64::from(b.fraction_lost) / 256.0;
                self.far_end.cumulative_lost = b.cumulative_lost;
                self.far_end.jitter = Duration::from_secs_f64(f64::from(b.jitter) / f64::from(self.clock_rate.max(1)));
                if b.last_sr != 0 {
                    // Middle 32 bits of NTP times, in 1/65536 s.
                    let arrival = (ntp_timestamp(wall) >> 16) as u32;
                    let rtt = arrival.wrapping_sub(b.last_sr).wrapping_sub(b.delay_since_last_sr);
                    // A "negative" or absurd round trip (clocks, a bogus report) is not kept.
                    if rtt < 60 << 16 {
                        self.far_end.round_trip = Some(Duration::from_secs_f64(f64::from(rtt) / 65536.0));
                    }
                }
            }
        }
        byes
    }

    fn report(&mut self, now: Instant, wall: SystemTime) -> RtcpPacket {
        // RFC 3550 §6.4: a block for each source heard since the last report.
        let reports: Vec<ReportBlock> = self
            .received
            .iter_mut()
            .filter(|(_, stats)| stats.heard_since_report())
            .map(|(_, stats)| stats.report_block(now))
            .collect();
        let packet = if self.sender_reports_due > 0 {
            self.sent.sender_report(self.ssrc, now, wall, self.clock_rate, reports)
        } else {
            RtcpPacket::ReceiverReport { ssrc: self.ssrc, reports }
        };
        self.sender_reports_due = self.sender_reports_due.saturating_sub(1);
        packet
    }

    fn sdes(&self) -> RtcpPacket {
        RtcpPacket::Sdes(vec![(self.ssrc, vec![(1, self.cname.clone())])])
    }

    /// The compound report to send now, when one is due (and the next one scheduled).
    pub(crate) fn due(&mut self, now: Instant, wall: SystemTime) -> Option<Vec<u8>> {
        if now < self.next {
            return None;
        }
        self.next = now + self.interval.mul_f64(jitter_factor() / COMPENSATION);
        let report = self.report(now, wall);
        Some(rtcp::write_compound(&[report, self.sdes()]))
    }

    /// The last compound, with a BYE for our stream, as the call ends.
    pub(crate) fn bye(&mut self, now: Instant, wall: SystemTime) -> Vec<u8> {
        let report = self.report(now, wall);
        let bye = RtcpPacket::Bye { ssrcs: vec![self.ssrc], reason: None };
        rtcp::write_compound(&[report, self.sdes(), bye])
    }
}

/// The one source a call's audio (or video) is taken from (RFC 3550 §8.2 lets a far end change
/// SSRC: a transfer, a media server behind an SBC, hold music). A packet of another SSRC is taken
/// for a stray (or an attack) until that SSRC has sent three packets in sequence, or the current
/// source has been quiet for 200 ms: then the new one takes over.
#[derive(Debug, Default)]
pub(crate) struct SourceLock {
    current: Option<(u32, Instant)>,
    /// Another SSRC and its packets in sequence so far: SSRC, last sequence number, count.
    candidate: Option<(u32, u16, u8)>,
}

/// How long the current source must have been quiet before another takes over at once.
const SOURCE_QUIET: Duration = Duration::from_millis(200);
/// Packets in sequence with which another source takes over while the current one still sends.
const SOURCE_TAKEOVER: u8 = 3;

impl SourceLock {
    /// Whether a packet of `ssrc` (sequence number `seq`) arriving at `now` is the media's (and
    /// notes it).
    pub(crate) fn accept(&mut self, now: Instant, ssrc: u32, seq: u16) -> bool {
        let take = match self.current {
            None => true,
            Some((current, _)) if current == ssrc => true,
            Some((_, last)) if now.saturating_duration_since(last) >= SOURCE_QUIET => true,
            Some(_) => {
                let count = match self.candidate {
                    Some((c, last_seq, n)) if c == ssrc && seq == last_seq.wrapping_add(1) => n + 1,
                    _ => 1,
                };
                self.candidate = Some((ssrc, seq, count));
                count >= SOURCE_TAKEOVER
            }
        };
        if take {
            if self.current.is_none_or(|(current, _)| current != ssrc) {
                self.candidate = None;
            }
            self.current = Some((ssrc, now));
        }
        take
    }

    /// Forgets the current source (a re-offer, its RTCP BYE): the next packet's takes over.
    pub(crate) fn reset(&mut self) {
        *self = SourceLock::default();
    }

    /// The current source.
    pub(crate) fn current(&self) -> Option<u32> {
        self.current.map(|(s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn reports_carry_what_was_sent_and_received_and_the_far_end_view_is_read() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut ours = Rtcp::new(0x1111, 8000, Duration::from_secs(5), t0);
        assert!(ours.due(t0, wall).is_none(), "not at once");
        // 50 packets each way, the far end's tenth lost.
        for n in 0..50u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(n));
            ours.on_sent(at, 1000 + n * 160, 160, true);
            if n != 10 {
                assert!(ours.on_received(at, 0x2222, n as u16, n * 160, true));
            }
        }
        let first = t0 + Duration::from_millis(4000);
        let bytes = ours.due(first, wall).expect("a report within 0.5 x 1.5 x 5 s / 1.22");
        let packets = rtcp::parse_compound(&bytes).expect("parses");
        let RtcpPacket::SenderReport { ssrc, packets: sent, octets, reports, .. } = &packets[0] else {
            panic!("a sender report first: {packets:?}")
        };
        assert_eq!((*ssrc, *sent, *octets), (0x1111, 50, 8000));
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].ssrc, reports[0].cumulative_lost), (0x2222, 1));
        assert!(reports[0].fraction_lost > 0);
        assert!(matches!(&packets[1], RtcpPacket::Sdes(chunks) if chunks[0].0 == 0x1111 && chunks[0].1[0].0 == 1));
        assert!(ours.due(first + Duration::from_millis(100), wall).is_none(), "the next one later");
        // Nothing sent since: still a sender report for one more interval (RFC 3550 A.7), then
        // receiver reports.
        let next = ours.due(first + Duration::from_secs(10), wall).expect("due");
        assert!(matches!(rtcp::parse_compound(&next).expect("parses")[0], RtcpPacket::SenderReport { .. }));
        let next = ours.due(first + Duration::from_secs(20), wall).expect("due");
        assert!(matches!(rtcp::parse_compound(&next).expect("parses")[0], RtcpPacket::ReceiverReport { .. }));
        // The far end's receiver report on our stream, echoing a sender report of ours sent 300 ms
        // before and held 100 ms: a 200 ms round trip.
        let our_sr = (ntp_timestamp(wall) >> 16) as u32;
        let later = wall + Duration::from_millis(300);
        let theirs = rtcp::write_compound(&[RtcpPacket::ReceiverReport {
            ssrc: 0x2222,
            reports: vec![ReportBlock {
                ssrc: 0x1111,
                fraction_lost: 64,
                cumulative_lost: 3,
                highest_seq: 49,
                jitter: 80,
                last_sr: our_sr,
                delay_since_last_sr: 6554,
            }],
        }]);
        ours.on_rtcp(first, later, &theirs).expect("parses");
        assert_eq!(ours.reports_received, 1);
        assert_eq!((ours.far_end.fraction_lost, ours.far_end.cumulative_lost), (0.25, 3));
        assert_eq!(ours.far_end.jitter, Duration::from_millis(10));
        let rtt = ours.far_end.round_trip.expect("a round trip").as_secs_f64();
        assert!((rtt - 0.2).abs() < 0.002, "{rtt}");
        // Their sender report is echoed in our next report block.
        let sr = rtcp::write_compound(&[RtcpPacket::SenderReport {
            ssrc: 0x2222,
            ntp: 0xAAAA_BBBB_CCCC_DDDD,
            rtp_timestamp: 0,
            packets: 0,
            octets: 0,
            reports: Vec::new(),
        }]);
        ours.on_rtcp(first, later, &sr).expect("parses");
        // Reports carry blocks only for sources heard since the one before.
        assert!(ours.on_received(first + Duration::from_millis(400), 0x2222, 50, 50 * 160, true));
        let last = ours.bye(first + Duration::from_millis(500), wall);
        let packets = rtcp::parse_compound(&last).expect("parses");
        let RtcpPacket::ReceiverReport { reports, .. } = &packets[0] else { panic!("{packets:?}") };
        assert_eq!(reports[0].last_sr, 0xBBBB_CCCC);
        assert_eq!(reports[0].delay_since_last_sr, 32768, "0.5 s");
        assert!(matches!(&packets[2], RtcpPacket::Bye { ssrcs, .. } if ssrcs == &vec![0x1111]));
    }

    #[test]
    fn the_media_keeps_to_one_source_while_it_sends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut lock = SourceLock::default();
        assert!(lock.accept(t0, 1, 100), "the first source");
        assert!(!lock.accept(t0 + ms(10), 2, 7), "a stray while the first sends");
        assert!(!lock.accept(t0 + ms(15), 3, 8), "another stray");
        assert!(lock.accept(t0 + ms(20), 1, 101));
        // Another source in sequence while the first still sends: it takes over at its third.
        assert!(!lock.accept(t0 + ms(30), 2, 500));
        assert!(lock.accept(t0 + ms(35), 1, 102));
        assert!(!lock.accept(t0 + ms(40), 2, 501));
        assert!(lock.accept(t0 + ms(50), 2, 502), "three in sequence");
        assert!(!lock.accept(t0 + ms(55), 1, 103), "the old one is now the stray");
        // Quiet for 200 ms: any other takes over at once.
        assert!(lock.accept(t0 + ms(250), 9, 0));
        assert_eq!(lock.current(), Some(9));
        lock.reset();
        assert!(lock.accept(t0 + ms(260), 4, 0), "after a reset, the next packet's");
    }

    #[test]
    fn garbage_and_events_change_nothing_they_should_not() {
        let t0 = Instant::now();
        let mut ours = Rtcp::new(1, 8000, Duration::from_secs(5), t0);
        assert!(ours.on_rtcp(t0, SystemTime::now(), &[0x80, 0xC9, 0xFF, 0xFF]).is_err());
        assert!(ours.on_rtcp(t0, SystemTime::now(), &[]).is_err());
        assert_eq!((ours.reports_received, ours.far_end), (0, FarEndView::default()));
        // An RFC 4733 event's packets count in the sequence, not in the jitter.
        for n in 0..20u32 {
            ours.on_received(t0 + Duration::from_millis(20 * u64::from(n)), 9, n as u16, 4000, false);
        }
        let block = ours.received.first_mut().map(|(_, s)| s.report_block(t0)).expect("stats");
        assert_eq!((block.cumulative_lost, block.jitter), (0, 0));
        // Another SSRC, interleaved: each keeps its own counts, and both are reported.
        ours.on_received(t0, 10, 500, 0, true);
        ours.on_received(t0, 9, 20, 4000, false);
        ours.on_received(t0, 10, 501, 160, true);
        assert_eq!(ours.received(), (23, 0, Duration::ZERO));
        assert_eq!(ours.received.len(), 2);
        // DTMF we send counts in the sender report but does not set its RTP time.
        ours.on_sent(t0, 1000, 160, true);
        ours.on_sent(t0 + Duration::from_millis(400), 1000, 4, false);
        let RtcpPacket::SenderReport { packets, rtp_timestamp, reports, .. } =
            rtcp::parse_compound(&ours.bye(t0 + Duration::from_millis(500), SystemTime::now())).expect("parses")[0]
                .clone()
        else {
            panic!("a sender report")
        };
        assert_eq!((packets, rtp_timestamp, reports.len()), (2, 1000 + 4000, 2), "extrapolated from the audio packet");
    }
}
