//! The receiving side: telephone-event packets in, one [`DigitEvent`] per
//! key press out.
//!
//! # How packets are grouped into events
//!
//! An event is identified by its digit and its RTP start timestamp, which
//! every packet of it repeats (RFC 4733 section 2.5.1.2). The receiver
//! remembers the newest event and the last 32 before it; a packet is
//! - **part of a known event** when it carries the same digit and a
//!   timestamp between the event's first and latest segment start
//!   (wrap-around aware). Packets of an event already reported (duplicates,
//!   end retransmissions, stragglers) change nothing;
//! - **the next segment of the newest event** (RFC 4733 section 2.5.1.3)
//!   when that event has not ended, the digit is the same, the marker bit is
//!   clear and the timestamp advanced by close to 65535 units (at least the
//!   duration already seen, at most 65535, no more than 100 ms short of
//!   65535);
//! - **a new event** when its timestamp is later than the newest event's
//!   start. A newest event that had not ended is reported at that moment:
//!   a new key press means the old one is over;
//! - **a late event** when its timestamp is earlier, by at most 10 s, and
//!   its sequence number is not ahead of the highest seen: a reordered
//!   packet of an event whose other packets were lost or are still on the
//!   way. It is reported at once;
//! - otherwise **a restarted stream**: the timestamp went back while the
//!   sequence number moved forward (a re-INVITE that re-bases the sender's
//!   timestamps), or went back by more than 10 s (a new SSRC with a random
//!   timeline). The receiver forgets the old timeline (reporting an
//!   unfinished event first) and starts over. [`Receiver::reset`] does the
//!   same on request, for a caller that sees the SSRC change.
//!
//! The two can only be confused when a restarted stream with a random
//! sequence number lands less than 10 s behind the old timeline (about one
//! chance in 50000 at 8000 Hz); its digits are then reported as late
//! events, each still exactly once. Taking a late packet for a restart
//! would be worse (the interrupted event would be reported twice), hence
//! the generous horizon: no packet arrives 10 s late.
//!
//! Nothing depends on the marker bit being present or on the payload type:
//! the caller hands over the packets of the negotiated telephone-event
//! payload type, whatever number it has after a re-negotiation.
//!
//! # When a digit is reported
//!
//! On the first packet with the E bit (the duration is then exact:
//! [`DigitEvent::complete`]); or when all end packets were lost, after
//! [`ReceiverConfig::end_timeout`] without a packet for the event, when a
//! newer event starts, or when the stream restarts (the duration is then
//! the longest seen). Each event is reported exactly once.

use crate::clock::{ts_in_range, ts_newer};
use crate::{ClockRate, Digit, Error, TelephoneEvent, Volume};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Reported events remembered to recognise their late packets.
const HISTORY: usize = 32;
/// How far behind the newest event a packet's timestamp may be and still
/// count as reordered rather than as a restarted stream.
const LATE_HORIZON: Duration = Duration::from_secs(10);
/// Reported events kept for [`Receiver::poll_event`]; beyond this the
/// oldest are dropped (a caller that drains after every input never gets
/// near it).
const MAX_QUEUED_EVENTS: usize = 64;
/// The longest duration one segment can report.
const SEGMENT: u32 = 0xFFFF;
/// The most of a segment's end that may go unseen (lost) for the next segment still to count as
/// its continuation: a real next segment starts where the previous one's duration ended.
const UNSEEN_SEGMENT_END: Duration = Duration::from_millis(500);

/// Settings of a [`Receiver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// The clock rate of the negotiated `telephone-event` format, used to
    /// turn durations into time. Default 8000 Hz.
    pub clock_rate: ClockRate,
    /// How long after the last packet of an event that has not ended the
    /// event is reported anyway. Default 200 ms.
    ///
    /// Why 200 ms: it only matters when all three end packets were lost. A
    /// live event refreshes at least every 50 ms (RFC 4733's suggested
    /// interval; most senders use 20 ms), so 200 ms is four missed updates
    /// at 50 ms, ten at 20 ms, plus room for jitter; a sender whose tone
    /// merely paused longer than that would be broken anyway. Longer
    /// delays the report (and a `*6` mute toggle) noticeably; shorter risks
    /// reporting a long press before it ends (with a short duration, never
    /// twice). Keep it above the peer's update interval.
    pub end_timeout: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig { clock_rate: ClockRate::HZ_8000, end_timeout: Duration::from_millis(200) }
    }
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DigitEvent {
    /// The key.
    pub digit: Digit,
    /// The RTP timestamp at which the event started.
    pub timestamp: u32,
    /// The duration in RTP clock units, over all segments.
    pub duration_samples: u32,
    /// The same duration as time, at the configured clock rate.
    pub duration: Duration,
    /// The volume of the last report received.
    pub volume: Volume,
    /// `true` when an end (E bit) packet was received, so the duration is
    /// the sender's final figure; `false` when the end was inferred (timeout,
    /// a newer event, a late or restarted stream) and the duration is the
    /// longest seen.
    pub complete: bool,
}

/// What the receiver knows of one event.
#[derive(Debug, Clone)]
struct Tracked {
    digit: Digit,
    start_ts: u32,
    /// Start of the latest segment seen.
    segment_ts: u32,
    /// Longest duration seen in that segment.
    segment_duration: u16,
    volume: Volume,
    ended: bool,
    reported: bool,
    last_packet: Instant,
}

impl Tracked {
    fn new(now: Instant, digit: Digit, ts: u32, ev: &TelephoneEvent) -> Self {
        Tracked {
            digit,
            start_ts: ts,
            segment_ts: ts,
            segment_duration: ev.duration,
            volume: ev.volume,
            ended: false,
            reported: false,
            last_packet: now,
        }
    }

    fn owns(&self, digit: Digit, ts: u32) -> bool {
        self.digit == digit && ts_in_range(ts, self.start_ts, self.segment_ts)
    }

    fn total_samples(&self) -> u32 {
        self.segment_ts.wrapping_sub(self.start_ts).saturating_add(u32::from(self.segment_duration))
    }
}

/// A sans-IO RFC 4733 DTMF receiver.
///
/// Feed it every packet of the telephone-event payload type with
/// [`Receiver::handle_packet`], call [`Receiver::handle_timeout`] when
/// [`Receiver::poll_timeout`] passes, and drain [`Receiver::poll_event`]
/// after each.
///
/// ```
/// use dtmf_rfc4733::{Digit, Receiver, ReceiverConfig};
/// use std::time::{Duration, Instant};
///
/// let mut rx = Receiver::new(ReceiverConfig::default());
/// let now = Instant::now();
/// // Only the middle of the event and one end packet arrive; no marker.
/// rx.handle_packet(now, 11, 4000, false, &[5, 0x0a, 0x01, 0xe0]).unwrap();
/// rx.handle_packet(now + Duration::from_millis(40), 13, 4000, false, &[5, 0x8a, 0x03, 0x20]).unwrap();
/// rx.handle_packet(now + Duration::from_millis(60), 14, 4000, false, &[5, 0x8a, 0x03, 0x20]).unwrap();
/// let ev = rx.poll_event().unwrap();
/// assert_eq!((ev.digit, ev.duration, ev.complete), (Digit::Five, Duration::from_millis(100), true));
/// assert_eq!(rx.poll_event(), None); // the retransmitted end changed nothing
/// ```
#[derive(Debug, Clone)]
pub struct Receiver {
    config: ReceiverConfig,
    /// The event with the latest start timestamp.
    newest: Option<Tracked>,
    /// Older events, all reported; oldest first.
    history: VecDeque<Tracked>,
    highest_seq: Option<u16>,
    events: VecDeque<DigitEvent>,
}

impl Receiver {
    /// A receiver with the given settings.
    pub fn new(config: ReceiverConfig) -> Self {
        Receiver { config, newest: None, history: VecDeque::new(), highest_seq: None, events: VecDeque::new() }
    }

    /// The settings in use.
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// Changes the clock rate used for durations, for a re-negotiation that
    /// changed it. Events already tracked keep their timestamps.
    pub fn set_clock_rate(&mut self, clock_rate: ClockRate) {
        self.config.clock_rate = clock_rate;
    }

    /// Takes one telephone-event packet: its RTP sequence number, timestamp
    /// and marker bit, and its payload.
    ///
    /// Errors are about this packet only and leave the receiver unchanged:
    /// [`Error::PayloadTooShort`] for fewer than 4 bytes,
    /// [`Error::UnsupportedEvent`] for an event code that is not a DTMF
    /// digit. The marker bit is never required; it only stops a packet from
    /// being taken as the continuation segment of a long event.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        let ev = TelephoneEvent::parse(payload)?;
        let digit = ev.digit().ok_or(Error::UnsupportedEvent { code: ev.event_code })?;

        if let Some(newest) = self.newest.as_mut() {
            if newest.owns(digit, timestamp) {
                newest.last_packet = now;
                if timestamp == newest.segment_ts {
                    newest.segment_duration = newest.segment_duration.max(ev.duration);
                    newest.volume = ev.volume;
                    if ev.end {
                        newest.ended = true;
                    }
                }
                let report = newest.ended && !newest.reported;
                self.note_seq(seq);
                if report {
                    self.report_newest(true);
                }
                return Ok(());
            }
            if !marker && !newest.ended && newest.digit == digit && self.continues_newest(timestamp) {
                if let Some(newest) = self.newest.as_mut() {
                    newest.segment_ts = timestamp;
                    newest.segment_duration = ev.duration;
                    newest.volume = ev.volume;
                    newest.last_packet = now;
                    newest.ended = ev.end;
                }
                self.note_seq(seq);
                // An event already reported (its packets stopped for the end timeout) is not
                // reported again when its next segment ends.
                if ev.end && self.newest.as_ref().is_some_and(|n| !n.reported) {
                    self.report_newest(true);
                }
                return Ok(());
            }
        }

        if self.history.iter().any(|t| t.owns(digit, timestamp)) {
            // A straggler of an event already reported.
            self.note_seq(seq);
            return Ok(());
        }

        let Some(newest) = &self.newest else {
            self.start_newest(now, seq, digit, timestamp, &ev);
            return Ok(());
        };
        let behind = newest.start_ts.wrapping_sub(timestamp);
        let seq_ahead = self.highest_seq.is_some_and(|h| {
            let d = seq.wrapping_sub(h);
            d != 0 && d < 0x8000
        });
        if ts_newer(timestamp, newest.start_ts) || timestamp == newest.start_ts {
            self.start_newest(now, seq, digit, timestamp, &ev);
        } else if !seq_ahead && u64::from(behind) <= self.config.clock_rate.samples(LATE_HORIZON) {
            // An older event we never saw, reordered behind newer packets.
            let mut late = Tracked::new(now, digit, timestamp, &ev);
            late.ended = ev.end;
            self.report(&mut late, ev.end);
            self.remember(late);
        } else {
            // The timestamp went back while the sequence number went on, or
            // went back too far to be a late packet: a new timeline.
            self.reset();
            self.start_newest(now, seq, digit, timestamp, &ev);
        }
        Ok(())
    }

    /// Reports an event whose end packets were all lost, once
    /// [`ReceiverConfig::end_timeout`] has passed since its last packet.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = self.poll_timeout().is_some_and(|due| now >= due);
        if expired {
            self.report_newest(false);
        }
    }

    /// When [`Receiver::handle_timeout`] should next be called, if an event
    /// is waiting for its end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A timeout too large for `Instant` never fires.
        self.newest.as_ref().filter(|n| !n.reported).and_then(|n| n.last_packet.checked_add(self.config.end_timeout))
    }

    /// The next reported digit, oldest first.
    pub fn poll_event(&mut self) -> Option<DigitEvent> {
        self.events.pop_front()
    }

    /// Whether an event has started and not been reported yet.
    pub fn is_receiving(&self) -> bool {
        self.newest.as_ref().is_some_and(|n| !n.reported)
    }

    /// Forgets every event seen, for a new RTP stream (an SSRC change). An
    /// event that had started and not been reported is reported first, with
    /// the duration seen so far.
    pub fn reset(&mut self) {
        if self.newest.as_ref().is_some_and(|n| !n.reported) {
            self.report_newest(false);
        }
        self.newest = None;
        self.history.clear();
        self.highest_seq = None;
    }

    /// Whether a packet of the newest event's digit without a marker bit is the next segment of
    /// that event (RFC 4733 §2.5.1.3): it starts about 0xFFFF units after the current segment, and
    /// where the current segment's duration (as far as it was seen) could have ended. Without the
    /// second rule, a press of the same key about 0xFFFF units later whose first packet was lost
    /// would be taken for a continuation while the previous press's end packets are late.
    fn continues_newest(&self, timestamp: u32) -> bool {
        let Some(newest) = &self.newest else { return false };
        let advance = timestamp.wrapping_sub(newest.segment_ts);
        let slack = (self.config.clock_rate.hz() / 10).min(SEGMENT);
        let seen = u32::from(newest.segment_duration);
        let shortest = seen.max(SEGMENT - slack);
        let unseen = u64::from(advance.saturating_sub(seen));
        ts_newer(timestamp, newest.segment_ts)
            && (shortest..=SEGMENT).contains(&advance)
            && unseen <= self.config.clock_rate.samples(UNSEEN_SEGMENT_END)
    }

    fn start_newest(&mut self, now: Instant, seq: u16, digit: Digit, timestamp: u32, ev: &TelephoneEvent) {
        if let Some(mut previous) = self.newest.take() {
            if !previous.reported {
                self.report(&mut previous, false);
            }
            self.remember(previous);
        }
        // A newer event has a newer sequence number than anything before it,
        // so this also re-anchors after a long silence wrapped the counter.
        self.highest_seq = Some(seq);
        let mut tracked = Tracked::new(now, digit, timestamp, ev);
        if ev.end {
            tracked.ended = true;
            self.report(&mut tracked, true);
        }
        self.newest = Some(tracked);
    }

    fn note_seq(&mut self, seq: u16) {
        match self.highest_seq {
            Some(h) if seq.wrapping_sub(h) == 0 || seq.wrapping_sub(h) >= 0x8000 => {}
            _ => self.highest_seq = Some(seq),
        }
    }

    fn remember(&mut self, tracked: Tracked) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(tracked);
    }

    fn report_newest(&mut self, complete: bool) {
        if let Some(mut newest) = self.newest.take() {
            self.report(&mut newest, complete);
            self.newest = Some(newest);
        }
    }

    fn report(&mut self, tracked: &mut Tracked, complete: bool) {
        tracked.reported = true;
        let duration_samples = tracked.total_samples();
        if self.events.len() == MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(DigitEvent {
            digit: tracked.digit,
            timestamp: tracked.start_ts,
            duration_samples,
            duration: self.config.clock_rate.duration(u64::from(duration_samples)),
            volume: tracked.volume,
            complete,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn payload(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = Digit::from_event_code(code).expect("dtmf code");
        TelephoneEvent::dtmf(d, end, Volume::DEFAULT, duration).to_bytes()
    }

    fn drain(rx: &mut Receiver) -> Vec<(char, u32, u32, bool)> {
        std::iter::from_fn(|| rx.poll_event())
            .map(|e| (e.digit.to_char(), e.timestamp, e.duration_samples, e.complete))
            .collect()
    }

    /// The seven packets of one default digit (20 ms, 100 ms tone).
    fn digit_packets(code: u8, seq0: u16, ts: u32) -> Vec<(u16, u32, bool, [u8; 4])> {
        let mut out = Vec::new();
        for (i, d) in [160u16, 320, 480, 640, 800, 800, 800].into_iter().enumerate() {
            out.push((seq0.wrapping_add(i as u16), ts, i == 0, payload(code, i >= 4, d)));
        }
        out
    }

    fn feed(rx: &mut Receiver, t0: Instant, packets: &[(u16, u32, bool, [u8; 4])]) {
        for (i, (seq, ts, m, p)) in packets.iter().enumerate() {
            rx.handle_packet(t0 + MS * 20 * i as u32, *seq, *ts, *m, p).expect("valid packet");
        }
    }

    #[test]
    fn one_digit_reported_once_on_the_first_end() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let packets = digit_packets(1, 100, 5000);
        feed(&mut rx, t0, &packets[..5]);
        let ev = rx.poll_event().expect("reported on the first end packet");
        assert_eq!(ev.digit, Digit::One);
        assert_eq!(ev.duration_samples, 800);
        assert_eq!(ev.duration, 100 * MS);
        assert_eq!(ev.volume, Volume::DEFAULT);
        assert!(ev.complete);
        feed(&mut rx, t0, &packets[5..]);
        feed(&mut rx, t0, &packets);
        assert_eq!(rx.poll_event(), None);
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn only_end_packets() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let packets = digit_packets(10, 1, 0);
        feed(&mut rx, t0, &packets[4..]);
        assert_eq!(drain(&mut rx), vec![('*', 0, 800, true)]);
    }

    #[test]
    fn without_marker_bits() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let mut packets = digit_packets(3, 1, 0);
        packets.extend(digit_packets(3, 20, 1360));
        for p in &mut packets {
            p.2 = false;
        }
        feed(&mut rx, t0, &packets);
        assert_eq!(drain(&mut rx), vec![('3', 0, 800, true), ('3', 1360, 800, true)]);
    }

    #[test]
    fn all_end_packets_lost_reports_after_timeout() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let packets = digit_packets(9, 1, 0);
        feed(&mut rx, t0, &packets[..4]);
        assert_eq!(rx.poll_event(), None);
        assert!(rx.is_receiving());
        let due = rx.poll_timeout().expect("waiting for the end");
        assert_eq!(due, t0 + 60 * MS + 200 * MS);
        rx.handle_timeout(due - MS);
        assert_eq!(rx.poll_event(), None);
        rx.handle_timeout(due);
        assert_eq!(drain(&mut rx), vec![('9', 0, 640, false)]);
        assert_eq!(rx.poll_timeout(), None);
        // The end packets arriving after all change nothing.
        feed(&mut rx, t0, &packets[4..]);
        assert_eq!(rx.poll_event(), None);
    }

    #[test]
    fn a_new_event_ends_an_unfinished_one() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let mut packets = digit_packets(4, 1, 0)[..3].to_vec();
        packets.extend(digit_packets(2, 10, 1360));
        feed(&mut rx, t0, &packets);
        assert_eq!(drain(&mut rx), vec![('4', 0, 480, false), ('2', 1360, 800, true)]);
    }

    #[test]
    fn late_event_behind_a_newer_one() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let first = digit_packets(7, 1, 0);
        let second = digit_packets(8, 8, 1360);
        // The second event's first packet overtakes the whole first event.
        feed(&mut rx, t0, &second[..1]);
        feed(&mut rx, t0, &first[3..]);
        feed(&mut rx, t0, &second[1..]);
        assert_eq!(drain(&mut rx), vec![('7', 0, 640, false), ('8', 1360, 800, true)]);
    }

    #[test]
    fn wraps_timestamps_and_sequence_numbers() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let mut packets = digit_packets(1, u16::MAX - 3, u32::MAX - 500);
        packets.extend(digit_packets(2, 4, (u32::MAX - 500).wrapping_add(1360)));
        feed(&mut rx, t0, &packets);
        // A stale duplicate of the first event after the wrap.
        feed(&mut rx, t0, &packets[..2]);
        assert_eq!(drain(&mut rx), vec![('1', u32::MAX - 500, 800, true), ('2', 859, 800, true)]);
    }

    #[test]
    fn restarted_timeline_is_followed() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        feed(&mut rx, t0, &digit_packets(1, 1000, 900_000));
        // A re-INVITE: same sequence numbers continue, timestamps start over.
        feed(&mut rx, t0, &digit_packets(2, 1100, 10));
        // A new SSRC: everything random, the sequence number "behind".
        feed(&mut rx, t0, &digit_packets(3, 500, 3_000_000_000));
        assert_eq!(
            drain(&mut rx),
            vec![('1', 900_000, 800, true), ('2', 10, 800, true), ('3', 3_000_000_000, 800, true)]
        );
    }

    #[test]
    fn late_packets_long_after_a_pause_are_not_a_restart() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        let first = digit_packets(1, 1, 0);
        // Two seconds of audio later (100 sequence numbers), the next digit.
        let second = digit_packets(2, 108, 16_000);
        // The whole first digit arrives after the start of the second.
        feed(&mut rx, t0, &second[..2]);
        feed(&mut rx, t0, &first);
        feed(&mut rx, t0, &second[2..]);
        assert_eq!(drain(&mut rx), vec![('1', 0, 160, false), ('2', 16_000, 800, true)]);
    }

    #[test]
    fn restart_close_behind_the_old_timeline_still_reports_once() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        feed(&mut rx, t0, &digit_packets(1, 30_000, 50_000));
        // New random sequence numbers (behind) and a timeline 2 s behind.
        feed(&mut rx, t0, &digit_packets(4, 100, 34_000));
        feed(&mut rx, t0, &digit_packets(5, 120, 35_360));
        assert_eq!(
            drain(&mut rx),
            vec![('1', 50_000, 800, true), ('4', 34_000, 160, false), ('5', 35_360, 160, false)]
        );
    }

    #[test]
    fn reset_reports_the_unfinished_event() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        feed(&mut rx, t0, &digit_packets(6, 1, 0)[..2]);
        rx.reset();
        assert_eq!(drain(&mut rx), vec![('6', 0, 320, false)]);
        assert!(!rx.is_receiving());
        // The same packets again are a new event for a new stream.
        feed(&mut rx, t0, &digit_packets(6, 1, 0));
        assert_eq!(drain(&mut rx), vec![('6', 0, 800, true)]);
    }

    #[test]
    fn segmented_long_event_is_one_digit() {
        let mut rx = Receiver::new(ReceiverConfig { clock_rate: ClockRate::HZ_48000, ..ReceiverConfig::default() });
        let t0 = Instant::now();
        let ts = u32::MAX - 1000;
        let mut seq = 0u16;
        let mut send = |rx: &mut Receiver, ts: u32, marker: bool, end: bool, d: u16| {
            seq = seq.wrapping_add(1);
            rx.handle_packet(t0, seq, ts, marker, &payload(0, end, d)).expect("valid");
        };
        send(&mut rx, ts, true, false, 960);
        send(&mut rx, ts, false, false, 60_000);
        // The segment's closing report is lost; the next segment arrives.
        send(&mut rx, ts.wrapping_add(65535), false, false, 705);
        send(&mut rx, ts.wrapping_add(65535), false, false, 40_000);
        assert!(rx.is_receiving());
        // A straggler from the first segment.
        send(&mut rx, ts, false, false, 65535);
        send(&mut rx, ts.wrapping_add(65535), false, true, 50_000);
        send(&mut rx, ts.wrapping_add(65535), false, true, 50_000);
        assert_eq!(drain(&mut rx), vec![('0', ts, 115_535, true)]);
    }

    /// The same key pressed again 62400 units later at 48 kHz, its first (marker) packet lost and
    /// the previous press's end packets late: a new press, since the first was seen at 100 ms,
    /// far from the 1.3 s a segment it continues would have reached.
    #[test]
    fn same_digit_far_beyond_the_seen_duration_is_not_a_segment() {
        let mut rx = Receiver::new(ReceiverConfig { clock_rate: ClockRate::HZ_48000, ..ReceiverConfig::default() });
        let t0 = Instant::now();
        let b = 62_400;
        rx.handle_packet(t0, 1, 0, true, &payload(1, false, 960)).expect("valid");
        rx.handle_packet(t0, 2, 0, false, &payload(1, false, 4800)).expect("valid");
        // The second press's marker packet is lost; its next packet overtakes the first's ends.
        rx.handle_packet(t0, 9, b, false, &payload(1, false, 1920)).expect("valid");
        for seq in 3..6 {
            rx.handle_packet(t0, seq, 0, false, &payload(1, true, 4800)).expect("valid");
        }
        for seq in 10..13 {
            rx.handle_packet(t0, seq, b, false, &payload(1, true, 4800)).expect("valid");
        }
        assert_eq!(drain(&mut rx), vec![('1', 0, 4800, false), ('1', b, 4800, true)]);
    }

    /// A long event whose packets stop for the end timeout is reported then; the end of its next
    /// segment does not report it again.
    #[test]
    fn an_event_reported_by_timeout_is_not_reported_again_by_its_next_segment() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        rx.handle_packet(t0, 1, 0, true, &payload(4, false, 800)).expect("valid");
        rx.handle_packet(t0, 2, 0, false, &payload(4, false, 65_000)).expect("valid");
        rx.handle_timeout(t0 + 300 * MS);
        assert_eq!(drain(&mut rx), vec![('4', 0, 65_000, false)]);
        rx.handle_packet(t0 + 400 * MS, 3, 65_535, false, &payload(4, true, 800)).expect("valid");
        rx.handle_packet(t0 + 400 * MS, 4, 65_535, false, &payload(4, true, 800)).expect("valid");
        assert_eq!(drain(&mut rx), vec![]);
    }

    #[test]
    fn same_digit_with_marker_is_not_a_segment() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        rx.handle_packet(t0, 1, 0, true, &payload(5, false, 65000)).expect("valid");
        rx.handle_packet(t0, 2, 65500, true, &payload(5, false, 160)).expect("valid");
        rx.handle_packet(t0, 3, 65500, false, &payload(5, true, 800)).expect("valid");
        assert_eq!(drain(&mut rx), vec![('5', 0, 65000, false), ('5', 65500, 800, true)]);
    }

    #[test]
    fn same_timestamp_different_digit_is_a_new_event() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        rx.handle_packet(t0, 1, 7, true, &payload(1, true, 800)).expect("valid");
        rx.handle_packet(t0, 2, 7, true, &payload(2, true, 800)).expect("valid");
        assert_eq!(drain(&mut rx), vec![('1', 7, 800, true), ('2', 7, 800, true)]);
    }

    #[test]
    fn bad_packets_are_errors_and_change_nothing() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        assert_eq!(rx.handle_packet(t0, 1, 0, true, &[1, 2, 3]), Err(Error::PayloadTooShort { len: 3 }));
        assert_eq!(rx.handle_packet(t0, 1, 0, true, &[]), Err(Error::PayloadTooShort { len: 0 }));
        assert_eq!(rx.handle_packet(t0, 1, 0, true, &[16, 0x8a, 0, 0]), Err(Error::UnsupportedEvent { code: 16 }));
        assert!(!rx.is_receiving());
        assert_eq!(rx.poll_event(), None);
        // Padding after the four bytes is fine.
        rx.handle_packet(t0, 2, 0, true, &[11, 0x8a, 0x03, 0x20, 0, 0, 0, 0]).expect("valid");
        assert_eq!(drain(&mut rx), vec![('#', 0, 800, true)]);
    }

    #[test]
    fn durations_follow_the_clock_rate() {
        let mut rx = Receiver::new(ReceiverConfig { clock_rate: ClockRate::HZ_16000, ..ReceiverConfig::default() });
        let t0 = Instant::now();
        rx.handle_packet(t0, 1, 0, true, &payload(1, true, 1600)).expect("valid");
        assert_eq!(rx.poll_event().map(|e| e.duration), Some(100 * MS));
        rx.set_clock_rate(ClockRate::HZ_48000);
        rx.handle_packet(t0, 2, 9000, true, &payload(1, true, 4800)).expect("valid");
        assert_eq!(rx.poll_event().map(|e| e.duration), Some(100 * MS));
    }

    #[test]
    fn huge_timeout_never_fires_and_never_panics() {
        let mut rx = Receiver::new(ReceiverConfig { end_timeout: Duration::MAX, ..ReceiverConfig::default() });
        let t0 = Instant::now();
        rx.handle_packet(t0, 1, 0, true, &payload(1, false, 160)).expect("valid");
        assert_eq!(rx.poll_timeout(), None);
        rx.handle_timeout(t0 + Duration::from_secs(3600));
        assert_eq!(rx.poll_event(), None);
        assert!(rx.is_receiving());
    }

    #[test]
    fn event_queue_is_bounded() {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let t0 = Instant::now();
        for i in 0..100u16 {
            rx.handle_packet(t0, i, u32::from(i) * 2000, true, &payload(1, true, 800)).expect("valid");
        }
        let got = drain(&mut rx);
        assert_eq!(got.len(), MAX_QUEUED_EVENTS);
        assert_eq!(got.last().map(|e| e.1), Some(99 * 2000));
    }
}
