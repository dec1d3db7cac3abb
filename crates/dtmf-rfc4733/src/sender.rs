//! The sending side: a digit string in, telephone-event packets out.
//!
//! # Timeline of one digit
//!
//! With the defaults (8000 Hz, 20 ms packets, 100 ms tones, 70 ms gaps), a
//! digit that starts at `t` produces:
//!
//! | due    | marker | timestamp | duration | E |
//! |--------|--------|-----------|----------|---|
//! | t      | 1      | T         | 160      | 0 |
//! | t+20ms | 0      | T         | 320      | 0 |
//! | t+40ms | 0      | T         | 480      | 0 |
//! | t+60ms | 0      | T         | 640      | 0 |
//! | t+80ms | 0      | T         | 800      | 1 |
//! | t+100ms| 0      | T         | 800      | 1 |
//! | t+120ms| 0      | T         | 800      | 1 |
//!
//! where `T` is the `rtp_timestamp_now` passed to the
//! [`Sender::poll_packet`] call that emitted the first packet. Each packet,
//! like an audio packet, covers the packet interval that starts at its send
//! time, so its duration counts to the end of that interval (RFC 4733
//! section 2.5.1.2: the duration of the event so far, in timestamp units).
//! The final report carries the E bit and is sent three times in total
//! (section 2.5.1.4), one packet interval apart, so that a burst loss of
//! two packets cannot hide the end. The next digit starts 70 ms after the
//! tone ended (`t+170ms`), and never before the last end packet went out.
//!
//! # Long events
//!
//! A duration counts in 16 bits: 65535 units is 8.2 s at 8000 Hz but only
//! 1.37 s at 48000 Hz. A tone longer than that is sent in segments (RFC 4733
//! section 2.5.1.3): a report of exactly 65535 without the E bit closes the
//! segment, and the next segment's packets carry the timestamp advanced by
//! 65535, durations counting again from there, and no marker bit. Only the
//! last segment ends with E-bit packets.

use crate::{ClockRate, Digit, Error, TelephoneEvent, Volume};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest duration one segment can report.
const SEGMENT: u64 = 0xFFFF;

/// The upper bound accepted for every duration in [`SenderConfig`].
const MAX_CONFIG_DURATION: Duration = Duration::from_secs(3600);

/// How a [`Sender`] shapes its tones. All fields are public; start from
/// [`SenderConfig::default`] and change what the negotiation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// The clock rate of the negotiated `telephone-event` format. Default
    /// 8000 Hz.
    pub clock_rate: ClockRate,
    /// Time between two packets of one event. Default 20 ms, the packet
    /// time of most SIP audio and what most gateways use; RFC 4733 section
    /// 2.5.1.2 suggests 50 ms, which also works with every receiver we know.
    /// Must be at least one clock unit and at most 65535 units.
    pub packet_interval: Duration,
    /// How long each tone lasts. Default 100 ms: what telephones and most
    /// gateways send, well above the 40 ms DTMF detectors are built to
    /// recognise.
    pub tone_duration: Duration,
    /// Silence between the end of one tone and the start of the next.
    /// Default 70 ms.
    pub inter_digit_gap: Duration,
    /// The silence a `p` in the digit string adds. Default 500 ms.
    pub pause: Duration,
    /// The volume written into every packet. Default -10 dBm0.
    pub volume: Volume,
    /// How many times the final (E bit) report is sent. Default 3, as RFC
    /// 4733 section 2.5.1.4 recommends; at least 1.
    pub end_packets: u8,
    /// At most this many digits and pauses may wait in the queue; an
    /// [`Sender::enqueue`] that would exceed it fails with
    /// [`Error::QueueFull`]. Default 256.
    pub max_pending: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            clock_rate: ClockRate::HZ_8000,
            packet_interval: Duration::from_millis(20),
            tone_duration: Duration::from_millis(100),
            inter_digit_gap: Duration::from_millis(70),
            pause: Duration::from_millis(500),
            volume: Volume::DEFAULT,
            end_packets: 3,
            max_pending: 256,
        }
    }
}

/// One telephone-event packet for the RTP layer to send. The RTP layer adds
/// the header: the negotiated telephone-event payload type, the stream's
/// SSRC, the next sequence number, and the `marker` and `timestamp` given
/// here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventPacket {
    /// The RTP marker bit: set on the first packet of each event only.
    pub marker: bool,
    /// The RTP timestamp: the start of the event (of its segment, for events
    /// longer than 65535 units), the same in every packet of it.
    pub timestamp: u32,
    /// The RTP payload: one telephone-event report.
    pub payload: [u8; 4],
    /// Whether this is one of the final (E bit) reports of the event.
    pub end: bool,
}

impl EventPacket {
    /// The payload as a typed value.
    pub fn event(&self) -> TelephoneEvent {
        TelephoneEvent::from_bytes(self.payload)
    }
}

/// One queued element of a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Tone(Digit),
    Pause,
}

/// The tone being sent.
#[derive(Debug, Clone)]
struct Tone {
    digit: Digit,
    /// When the first packet went out.
    start: Instant,
    /// The RTP timestamp of the first packet.
    start_ts: u32,
    /// Tone length in clock units.
    total: u64,
    /// Index of the next regular (non-retransmitted) packet; packet `k` is
    /// due at `start + k * interval` and reports `(k + 1) * interval` units.
    next_index: u64,
    /// The position (units since the start) the last packet reported.
    reported: u64,
    /// Final reports sent so far.
    ends_sent: u8,
    next_due: Instant,
    marker_pending: bool,
}

/// A sans-IO RFC 4733 DTMF sender.
///
/// Queue digit strings with [`Sender::enqueue`]; then, on every tick of the
/// RTP layer (and whenever [`Sender::poll_timeout`] passes), drain
/// [`Sender::poll_packet`] until it returns `None`. While
/// [`Sender::is_sending`] is true the RTP layer sends these packets instead
/// of audio; its RTP timestamps keep advancing as if audio were flowing.
///
/// ```
/// use dtmf_rfc4733::{Sender, SenderConfig};
/// use std::time::{Duration, Instant};
///
/// let mut sender = Sender::new(SenderConfig::default()).unwrap();
/// sender.enqueue("1#").unwrap();
/// let t0 = Instant::now();
/// let (mut now, mut packets) = (t0, Vec::new());
/// loop {
///     let ts = 1000 + (now - t0).as_millis() as u32 * 8; // the RTP clock, 8000 Hz
///     while let Some(p) = sender.poll_packet(now, ts) {
///         packets.push(p);
///     }
///     match sender.poll_timeout() {
///         Some(due) => now = now.max(due),
///         None => break,
///     }
/// }
/// assert_eq!(packets.len(), 14); // two digits, seven packets each
/// assert!(packets[0].marker && packets[7].marker);
/// assert_eq!(packets[7].timestamp, 1000 + 170 * 8); // 100 ms tone + 70 ms gap
/// ```
#[derive(Debug, Clone)]
pub struct Sender {
    config: SenderConfig,
    interval_samples: u64,
    tone_samples: u64,
    queue: VecDeque<Item>,
    /// Digits queued or being sent.
    pending_digits: usize,
    tone: Option<Tone>,
    /// The next queued item may not start before this instant.
    ready_at: Option<Instant>,
    last_now: Option<Instant>,
}

impl Sender {
    /// A sender with the given configuration; fails with
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn new(config: SenderConfig) -> Result<Self, Error> {
        let interval_samples = config.clock_rate.samples(config.packet_interval);
        if interval_samples == 0 {
            return Err(Error::InvalidConfig("packet_interval is shorter than one clock unit"));
        }
        if interval_samples > SEGMENT {
            return Err(Error::InvalidConfig("packet_interval exceeds 65535 clock units"));
        }
        let tone_samples = config.clock_rate.samples(config.tone_duration);
        if tone_samples == 0 {
            return Err(Error::InvalidConfig("tone_duration is shorter than one clock unit"));
        }
        if config.tone_duration > MAX_CONFIG_DURATION {
            return Err(Error::InvalidConfig("tone_duration exceeds one hour"));
        }
        if config.inter_digit_gap > MAX_CONFIG_DURATION {
            return Err(Error::InvalidConfig("inter_digit_gap exceeds one hour"));
        }
        if config.pause > MAX_CONFIG_DURATION {
            return Err(Error::InvalidConfig("pause exceeds one hour"));
        }
        if config.end_packets == 0 {
            return Err(Error::InvalidConfig("end_packets must be at least 1"));
        }
        if config.max_pending == 0 {
            return Err(Error::InvalidConfig("max_pending must be at least 1"));
        }
        Ok(Sender {
            config,
            interval_samples,
            tone_samples,
            queue: VecDeque::new(),
            pending_digits: 0,
            tone: None,
            ready_at: None,
            last_now: None,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// Queues a digit string to be played after everything queued before.
    ///
    /// Accepted: `0-9`, `*`, `#`, `A-D` (either case), and `p` (either case),
    /// a pause of [`SenderConfig::pause`]. Any other character fails with
    /// [`Error::InvalidDigit`] naming it and its position; a string that
    /// would overflow [`SenderConfig::max_pending`] fails with
    /// [`Error::QueueFull`]. On error nothing is queued.
    ///
    /// The first tone starts at the next [`Sender::poll_packet`] (call it
    /// right after enqueueing), or once the gap after the previous tone has
    /// passed.
    pub fn enqueue(&mut self, digits: &str) -> Result<(), Error> {
        let mut items = Vec::new();
        for (position, character) in digits.chars().enumerate() {
            let item = match character {
                'p' | 'P' => Item::Pause,
                c => Item::Tone(Digit::from_char(c).ok_or(Error::InvalidDigit { character, position })?),
            };
            items.push(item);
        }
        if self.queue.len() + items.len() > self.config.max_pending {
            return Err(Error::QueueFull { limit: self.config.max_pending });
        }
        self.pending_digits += items.iter().filter(|i| matches!(i, Item::Tone(_))).count();
        self.queue.extend(items);
        Ok(())
    }

    /// Drops every queued digit and pause that has not started. A tone in
    /// progress is finished properly (its end packets are still sent).
    pub fn cancel_pending(&mut self) {
        self.queue.clear();
        self.pending_digits = usize::from(self.tone.is_some());
    }

    /// The next packet due at `now`, if any.
    ///
    /// `rtp_timestamp_now` is the RTP timestamp of the stream at `now` (what
    /// an audio packet sent now would carry); the sender reads it when an
    /// event starts and stamps every packet of that event with it. Call
    /// repeatedly until `None`: when the caller was late, several packets
    /// may be due at once (progress reports that were missed are merged into
    /// one, end packets are never merged).
    pub fn poll_packet(&mut self, now: Instant, rtp_timestamp_now: u32) -> Option<EventPacket> {
        self.last_now = Some(now);
        loop {
            if let Some(tone) = self.tone.as_mut() {
                if now < tone.next_due {
                    return None;
                }
                let packet =
                    tone.next_packet(now, self.interval_samples, self.config.packet_interval, self.config.volume);
                if tone.ends_sent >= self.config.end_packets {
                    let tone_end = tone.start + self.config.tone_duration + self.config.inter_digit_gap;
                    self.ready_at = Some(tone_end.max(now + self.config.packet_interval));
                    self.tone = None;
                    self.pending_digits = self.pending_digits.saturating_sub(1);
                }
                return Some(packet);
            }
            if self.ready_at.is_some_and(|ready| now < ready) {
                return None;
            }
            match self.queue.pop_front()? {
                Item::Pause => self.ready_at = Some(now + self.config.pause),
                Item::Tone(digit) => {
                    self.tone = Some(Tone {
                        digit,
                        start: now,
                        start_ts: rtp_timestamp_now,
                        total: self.tone_samples,
                        next_index: 0,
                        reported: 0,
                        ends_sent: 0,
                        next_due: now,
                        marker_pending: true,
                    })
                }
            }
        }
    }

    /// When [`Sender::poll_packet`] should next be called: the due time of
    /// the next packet, or the end of the current gap or pause. `None` when
    /// nothing is queued (or when digits were queued but the sender has
    /// never been polled; poll it once after [`Sender::enqueue`]). An
    /// instant in the past means "now".
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(tone) = &self.tone {
            return Some(tone.next_due);
        }
        if self.queue.is_empty() {
            return None;
        }
        self.ready_at.or(self.last_now)
    }

    /// Whether an event is being sent: from its first packet to its last end
    /// packet. The RTP layer suppresses audio while this is true; during
    /// gaps and pauses audio flows again.
    pub fn is_sending(&self) -> bool {
        self.tone.is_some()
    }

    /// Digits queued or being sent (pauses not counted).
    pub fn pending_digits(&self) -> usize {
        self.pending_digits
    }

    /// Digits and pauses queued that have not started: what [`SenderConfig::max_pending`]
    /// bounds.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Takes the digits and pauses that have not started, as [`enqueue`](Self::enqueue) takes
    /// them (`p` for a pause), for another sender to play (the stream changed under this one); a
    /// tone in progress is finished here.
    pub fn take_queued(&mut self) -> String {
        let queued = self
            .queue
            .iter()
            .map(|i| match i {
                Item::Tone(d) => d.to_char(),
                Item::Pause => 'p',
            })
            .collect();
        self.cancel_pending();
        queued
    }

    /// Whether nothing is queued and nothing is being sent.
    pub fn is_idle(&self) -> bool {
        self.tone.is_none() && self.queue.is_empty()
    }
}

impl Tone {
    /// Builds the next packet and advances the schedule. Only called when a
    /// packet is due.
    fn next_packet(&mut self, now: Instant, interval: u64, interval_time: Duration, volume: Volume) -> EventPacket {
        let position = if self.reported == self.total {
            // A retransmission of the final report.
            self.ends_sent += 1;
            self.next_due += interval_time;
            self.total
        } else {
            let last_index = (self.total - 1) / interval;
            let elapsed = now.saturating_duration_since(self.start).as_nanos() / interval_time.as_nanos().max(1);
            let index = u64::try_from(elapsed).unwrap_or(u64::MAX).clamp(self.next_index, last_index);
            let target = ((index + 1) * interval).min(self.total);
            let boundary = (self.reported / SEGMENT + 1) * SEGMENT;
            if target > boundary {
                // Close the segment with a report of the maximum duration; the
                // schedule does not move, so the regular report follows at once.
                boundary
            } else {
                self.next_index = index + 1;
                self.next_due = self.start + interval_time * u32::try_from(self.next_index).unwrap_or(u32::MAX);
                if target == self.total {
                    self.ends_sent = 1;
                }
                target
            }
        };
        self.reported = position;
        let segment_start = (position - 1) / SEGMENT * SEGMENT;
        let end = position == self.total;
        // `position - segment_start` is in 1..=65535 by construction.
        let duration = u16::try_from(position - segment_start).unwrap_or(u16::MAX);
        let offset = u32::try_from(segment_start).unwrap_or(u32::MAX);
        EventPacket {
            marker: std::mem::take(&mut self.marker_pending),
            timestamp: self.start_ts.wrapping_add(offset),
            payload: TelephoneEvent::dtmf(self.digit, end, volume, duration).to_bytes(),
            end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs the sender on simulated time from `t0`, with the RTP clock at
    /// `ts0` at `t0`, polling exactly when asked. Returns (ms since t0,
    /// packet) pairs.
    fn run(sender: &mut Sender, t0: Instant, ts0: u32) -> Vec<(u128, EventPacket)> {
        let rate = u128::from(sender.config.clock_rate.hz());
        let mut now = t0;
        let mut out = Vec::new();
        loop {
            let ts = ts0.wrapping_add(((now - t0).as_nanos() * rate / 1_000_000_000) as u32);
            while let Some(p) = sender.poll_packet(now, ts) {
                out.push(((now - t0).as_millis(), p));
            }
            assert!(out.len() < 100_000, "runaway sender");
            match sender.poll_timeout() {
                Some(due) => now = now.max(due),
                None => return out,
            }
        }
    }

    fn summary(p: &EventPacket) -> (bool, u32, u8, bool, u16) {
        let e = p.event();
        (p.marker, p.timestamp, e.event_code, e.end, e.duration)
    }

    #[test]
    fn default_digit_timeline() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("5").expect("valid digits");
        let t0 = Instant::now();
        let got = run(&mut s, t0, 1000);
        let want = [
            (0, (true, 1000, 5, false, 160)),
            (20, (false, 1000, 5, false, 320)),
            (40, (false, 1000, 5, false, 480)),
            (60, (false, 1000, 5, false, 640)),
            (80, (false, 1000, 5, true, 800)),
            (100, (false, 1000, 5, true, 800)),
            (120, (false, 1000, 5, true, 800)),
        ];
        let got: Vec<_> = got.iter().map(|(t, p)| (*t, summary(p))).collect();
        assert_eq!(got, want);
        assert!(s.is_idle());
        assert_eq!(s.pending_digits(), 0);
    }

    #[test]
    fn payload_bytes_carry_volume_and_end() {
        let mut s = Sender::new(SenderConfig { volume: Volume::new(7).expect("ok"), ..SenderConfig::default() })
            .expect("valid");
        s.enqueue("#").expect("valid");
        let got = run(&mut s, Instant::now(), 0);
        assert_eq!(got[0].1.payload, [11, 0x07, 0x00, 0xa0]);
        assert_eq!(got[6].1.payload, [11, 0x87, 0x03, 0x20]);
        assert!(got[6].1.end && !got[3].1.end);
    }

    #[test]
    fn digits_in_order_with_gap_and_pause() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("1p2").expect("valid");
        s.enqueue("3").expect("valid");
        assert_eq!(s.pending_digits(), 3);
        let got = run(&mut s, Instant::now(), 0);
        let starts: Vec<_> =
            got.iter().filter(|(_, p)| p.marker).map(|(t, p)| (*t, p.payload[0], p.timestamp)).collect();
        // 1 at 0; 2 after 100 ms tone + 70 ms gap + 500 ms pause; 3 after another tone and gap.
        assert_eq!(starts, vec![(0, 1, 0), (670, 2, 670 * 8), (840, 3, 840 * 8)]);
        assert_eq!(got.len(), 21);
        // Never interleaved: each event's packets are contiguous.
        let codes: Vec<u8> = got.iter().map(|(_, p)| p.payload[0]).collect();
        assert_eq!(codes, [[1u8; 7], [2; 7], [3; 7]].concat());
    }

    #[test]
    fn invalid_character_queues_nothing() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        assert_eq!(s.enqueue("12x4"), Err(Error::InvalidDigit { character: 'x', position: 2 }));
        assert_eq!(s.enqueue("1 2"), Err(Error::InvalidDigit { character: ' ', position: 1 }));
        assert_eq!(s.enqueue("é"), Err(Error::InvalidDigit { character: 'é', position: 0 }));
        assert!(s.is_idle());
        assert_eq!(s.pending_digits(), 0);
        assert_eq!(s.poll_packet(Instant::now(), 0), None);
        s.enqueue("").expect("empty is fine");
        s.enqueue("abcdABCD*#0P").expect("letters either case");
        assert_eq!(s.pending_digits(), 11);
    }

    #[test]
    fn queue_limit() {
        let mut s = Sender::new(SenderConfig { max_pending: 4, ..SenderConfig::default() }).expect("valid");
        s.enqueue("12").expect("fits");
        assert_eq!(s.enqueue("345"), Err(Error::QueueFull { limit: 4 }));
        s.enqueue("3p").expect("fits exactly");
        assert_eq!(s.pending_digits(), 3);
        assert_eq!(s.queued(), 4);
        assert_eq!(s.take_queued(), "123p", "what has not started, for another sender");
        assert_eq!((s.queued(), s.pending_digits()), (0, 0));
        s.enqueue("1234").expect("room again");
    }

    #[test]
    fn is_sending_only_during_events() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("12").expect("valid");
        let t0 = Instant::now();
        assert!(!s.is_sending());
        assert!(s.poll_packet(t0, 0).is_some());
        assert!(s.is_sending());
        assert_eq!(s.poll_packet(t0, 0), None);
        assert_eq!(s.poll_timeout(), Some(t0 + 20 * MS));
        for ms in [20, 40, 60, 80, 100] {
            assert!(s.poll_packet(t0 + ms * MS, 0).is_some());
            assert!(s.is_sending());
        }
        assert!(s.poll_packet(t0 + 120 * MS, 0).is_some());
        assert!(!s.is_sending(), "audio resumes in the gap");
        assert_eq!(s.pending_digits(), 1);
        assert_eq!(s.poll_timeout(), Some(t0 + 170 * MS));
        assert_eq!(s.poll_packet(t0 + 169 * MS, 0), None);
        assert!(s.poll_packet(t0 + 170 * MS, 0).is_some_and(|p| p.marker));
    }

    #[test]
    fn late_polls_merge_progress_but_keep_end_packets() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("9").expect("valid");
        let t0 = Instant::now();
        assert!(s.poll_packet(t0, 0).is_some());
        // The caller sleeps 150 ms: the missed progress reports merge into the
        // end report, which is still sent three times.
        let late: Vec<_> = std::iter::from_fn(|| s.poll_packet(t0 + 150 * MS, 0)).map(|p| summary(&p)).collect();
        assert_eq!(late, vec![(false, 0, 9, true, 800); 3]);
        assert!(s.is_idle());
    }

    #[test]
    fn short_tone_is_one_packet_with_marker_and_end() {
        let cfg = SenderConfig { tone_duration: 10 * MS, end_packets: 2, ..SenderConfig::default() };
        let mut s = Sender::new(cfg).expect("valid");
        s.enqueue("0").expect("valid");
        let got: Vec<_> = run(&mut s, Instant::now(), 7).iter().map(|(t, p)| (*t, summary(p))).collect();
        assert_eq!(got, vec![(0, (true, 7, 0, true, 80)), (20, (false, 7, 0, true, 80))]);
    }

    #[test]
    fn tone_not_a_multiple_of_the_interval() {
        let cfg = SenderConfig { packet_interval: 50 * MS, tone_duration: 120 * MS, ..SenderConfig::default() };
        let mut s = Sender::new(cfg).expect("valid");
        s.enqueue("4").expect("valid");
        let got: Vec<_> = run(&mut s, Instant::now(), 0).iter().map(|(t, p)| (*t, p.event().duration, p.end)).collect();
        assert_eq!(got, vec![(0, 400, false), (50, 800, false), (100, 960, true), (150, 960, true), (200, 960, true)]);
    }

    #[test]
    fn long_events_are_segmented_without_marker() {
        // 3 s at 48000 Hz = 144000 units: segments of 65535, 65535, 12930.
        let cfg = SenderConfig {
            clock_rate: ClockRate::HZ_48000,
            tone_duration: Duration::from_secs(3),
            ..SenderConfig::default()
        };
        let mut s = Sender::new(cfg).expect("valid");
        s.enqueue("7").expect("valid");
        let ts0 = u32::MAX - 100_000; // the second segment's timestamp wraps
        let got = run(&mut s, Instant::now(), ts0);
        let markers = got.iter().filter(|(_, p)| p.marker).count();
        assert_eq!(markers, 1);
        assert!(got[0].1.marker);
        let mut timestamps: Vec<u32> = got.iter().map(|(_, p)| p.timestamp).collect();
        timestamps.dedup();
        assert_eq!(timestamps, vec![ts0, ts0.wrapping_add(65535), ts0.wrapping_add(131_070)]);
        // Each segment but the last closes with exactly 65535 and no E bit.
        for seg_ts in &timestamps[..2] {
            let last = got.iter().rev().find(|(_, p)| p.timestamp == *seg_ts).map(|(_, p)| p.event());
            assert_eq!(last.map(|e| (e.duration, e.end)), Some((65535, false)));
        }
        // The boundary report and the first report of the next segment go out together.
        let boundary = got.iter().position(|(_, p)| p.event().duration == 65535).expect("boundary");
        assert_eq!(got[boundary].0, got[boundary + 1].0);
        assert_eq!(got[boundary + 1].1.event().duration, 705); // 69 * 960 - 65535
        let ends: Vec<_> = got.iter().filter(|(_, p)| p.end).map(|(_, p)| (p.timestamp, p.event().duration)).collect();
        assert_eq!(ends, vec![(ts0.wrapping_add(131_070), 12_930); 3]);
        // Durations never decrease within a segment.
        for w in got.windows(2) {
            if w[0].1.timestamp == w[1].1.timestamp {
                assert!(w[0].1.event().duration <= w[1].1.event().duration);
            }
        }
    }

    #[test]
    fn exact_segment_multiple_has_no_empty_segment() {
        // 65535 * 2 units at 8000 Hz with an interval dividing it: 5 units * 26214 = 131070.
        let rate = ClockRate::HZ_8000;
        let cfg = SenderConfig {
            clock_rate: rate,
            packet_interval: rate.duration(65535 / 3),
            tone_duration: rate.duration(131_070),
            end_packets: 1,
            ..SenderConfig::default()
        };
        let mut s = Sender::new(cfg).expect("valid");
        s.enqueue("3").expect("valid");
        let got: Vec<_> = run(&mut s, Instant::now(), 0).iter().map(|(_, p)| summary(p)).collect();
        assert_eq!(
            got,
            vec![
                (true, 0, 3, false, 21845),
                (false, 0, 3, false, 43690),
                (false, 0, 3, false, 65535),
                (false, 65535, 3, false, 21845),
                (false, 65535, 3, false, 43690),
                (false, 65535, 3, true, 65535),
            ]
        );
    }

    #[test]
    fn cancel_keeps_the_current_tone() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("123").expect("valid");
        let t0 = Instant::now();
        assert!(s.poll_packet(t0, 0).is_some());
        s.cancel_pending();
        assert_eq!(s.pending_digits(), 1);
        let rest = run(&mut s, t0, 0);
        assert_eq!(rest.len(), 6);
        assert!(rest.iter().all(|(_, p)| p.payload[0] == 1));
    }

    #[test]
    fn leading_pause_delays_the_first_tone() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("pp1").expect("valid");
        assert_eq!(s.poll_timeout(), None, "never polled: no reference time yet");
        let t0 = Instant::now();
        assert_eq!(s.poll_packet(t0, 0), None);
        assert_eq!(s.poll_timeout(), Some(t0 + 500 * MS));
        assert_eq!(s.poll_packet(t0 + 500 * MS, 0), None);
        assert_eq!(s.poll_timeout(), Some(t0 + 1000 * MS));
        assert!(s.poll_packet(t0 + 1000 * MS, 0).is_some_and(|p| p.marker));
    }

    #[test]
    fn a_new_string_after_idle_starts_at_once() {
        let mut s = Sender::new(SenderConfig::default()).expect("valid");
        s.enqueue("1").expect("valid");
        let t0 = Instant::now();
        run(&mut s, t0, 0);
        s.enqueue("2").expect("valid");
        let later = t0 + Duration::from_secs(60);
        assert!(s.poll_timeout().is_some_and(|t| t <= later));
        assert!(s.poll_packet(later, 0).is_some_and(|p| p.marker && p.payload[0] == 2));
    }

    #[test]
    fn rejects_bad_configuration() {
        let bad = |cfg: SenderConfig| Sender::new(cfg).err();
        let d = SenderConfig::default;
        assert!(bad(SenderConfig { packet_interval: Duration::ZERO, ..d() }).is_some());
        assert!(bad(SenderConfig { packet_interval: Duration::from_secs(10), ..d() }).is_some());
        assert!(bad(SenderConfig { tone_duration: Duration::from_micros(10), ..d() }).is_some());
        assert!(bad(SenderConfig { tone_duration: Duration::from_secs(7200), ..d() }).is_some());
        assert!(bad(SenderConfig { inter_digit_gap: Duration::from_secs(7200), ..d() }).is_some());
        assert!(bad(SenderConfig { pause: Duration::from_secs(7200), ..d() }).is_some());
        assert!(bad(SenderConfig { end_packets: 0, ..d() }).is_some());
        assert!(bad(SenderConfig { max_pending: 0, ..d() }).is_some());
        assert!(bad(d()).is_none());
    }
}
