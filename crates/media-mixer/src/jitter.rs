//! An adaptive jitter buffer for one input, measured in time: packets go in as they arrive, each
//! with its RTP time and duration (a 10, 20, 30 or 60 ms packet, whatever the source sends), and
//! the consumer takes, tick after tick, what covers its tick.
//!
//! - **Adaptive delay.** Playing starts (and starts again after the source ran dry) once a tick
//!   plus a margin is held. The margin follows the RFC 3550 interarrival jitter (three times the
//!   estimate, between a minimum and a maximum), so a clean network gets the least delay and a
//!   jittery one gets what it needs. A packet longer than a tick asks for its extra length too.
//! - **Bursts are kept.** A text-to-speech source that sends seconds of audio in a few
//!   milliseconds is played in full at real time, not cut into silence. A delay that stays above
//!   the target (a burst, clock drift, a consumer that fell behind) is brought back down by
//!   dropping packets one at a time: quiet ones (the pauses between words, when the consumer can
//!   tell, see [`JitterBuffer::start_tick_with`]) after [`JitterConfig::trim_after`], and any
//!   packet only after [`JitterConfig::trim_loud_after`], so speech itself is cut last. Up to
//!   [`JitterConfig::max_held`] is held.
//! - **Losses are reported with their length.** A gap in the RTP times up to
//!   [`JitterConfig::max_concealed`] (a lost 10 ms packet as much as a lost 60 ms one) comes out as
//!   [`Next::Lost`] with its duration, for the decoder to conceal (Opus PLC, or FEC from the packet
//!   that follows, which [`JitterBuffer::peek`] shows). A longer gap is the source pausing (DTX, a
//!   muted publisher), and playing simply goes on from the next packet.
//! - **Late, duplicated and reordered packets**: reordered ones take their place, duplicates and
//!   packets behind the playout point are dropped, and a source whose clock went back by more than
//!   [`JitterConfig::max_late`] (a publisher that started over) restarts the buffer.
//!
//! - **What the consumer made up itself** (the rest of a tick a late packet left short) is
//!   reported with [`JitterBuffer::made_up`]: it is taken off the next gap, or skipped from the
//!   start of the late packet ([`Next::Packet`]'s `skip`), so the stream is neither shifted nor
//!   concealed twice.
//!
//! No clock of its own: every call that needs the time is given `now`.
//!
//! ```
//! use media_mixer::jitter::{JitterBuffer, JitterConfig, Next};
//! use std::time::{Duration, Instant};
//!
//! // G.711 at 8 kHz from a peer that sends 30 ms packets; the consumer ticks every 20 ms.
//! let mut jb = JitterBuffer::new(JitterConfig { clock_rate: 8000, ..JitterConfig::default() });
//! let t0 = Instant::now();
//! for n in 0..2u64 {
//!     jb.push(t0 + Duration::from_millis(30 * n), n * 240, 240, vec![0xffu8; 240]);
//! }
//! jb.start_tick(t0 + Duration::from_millis(40));
//! assert!(matches!(jb.pop(), Next::Packet { duration: 240, .. }));
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream's timestamps and durations.
    pub clock_rate: u32,
    /// How often the consumer takes audio (20 ms).
    pub tick: Duration,
    /// Least margin held beyond a tick when playing starts: it absorbs the consumer's own timer
    /// and the phase between packets and ticks, even on a clean network.
    pub min_margin: Duration,
    /// Most margin the jitter estimate may ask for.
    pub max_margin: Duration,
    /// Most audio held: beyond it, the oldest packets are dropped.
    pub max_held: Duration,
    /// Most packets held, whatever their length (5 s of the shortest, 2.5 ms): beyond it, the
    /// oldest are dropped. With packets under 2.5 ms refused, this bounds the work a hostile source
    /// can cause.
    pub max_packets: usize,
    /// Longest gap in the RTP times taken for lost packets (concealed); a longer one is a pause.
    pub max_concealed: Duration,
    /// How far behind the playout point a packet may arrive and still be taken for a late or
    /// duplicate one (dropped); further back, the source's clock started over, and so does the
    /// buffer.
    pub max_late: Duration,
    /// How long more than the target plus two ticks must stay held before quiet packets are
    /// dropped to bring the delay back down (one a tick while it stays: pauses play at twice
    /// their speed).
    pub trim_after: Duration,
    /// How long before any packet is dropped for it, quiet or not (then one every
    /// [`trim_after`](Self::trim_after) while it stays).
    pub trim_loud_after: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            clock_rate: 48_000,
            tick: Duration::from_millis(20),
            min_margin: Duration::from_millis(20),
            max_margin: Duration::from_millis(180),
            max_held: Duration::from_secs(5),
            max_packets: 2000,
            max_concealed: Duration::from_millis(100),
            max_late: Duration::from_secs(1),
            trim_after: Duration::from_secs(1),
            trim_loud_after: Duration::from_secs(5),
        }
    }
}

/// What became of a packet given to [`JitterBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Queued in its place.
    Queued,
    /// Queued after everything held was dropped: the source's clock went back by more than
    /// [`JitterConfig::max_late`] (the packet before this one started there too: one packet alone
    /// that far back is dropped as late).
    Restarted,
    /// Dropped: its time was already played (or given up as lost).
    Late,
    /// Dropped: a packet with the same time is held.
    Duplicate,
    /// Dropped: shorter than 2.5 ms (no codec makes such packets; only a hostile or broken source
    /// would, to make the buffer hold many of them).
    TooShort,
    /// Dropped: longer than [`JitterConfig::max_held`] (it would push out everything held).
    TooLong,
}

/// What plays next, from [`JitterBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<T> {
    /// A packet and its duration (in the RTP clock).
    Packet {
        /// What was pushed.
        item: T,
        /// Its duration.
        duration: u32,
        /// How much of its start the consumer already made up (see
        /// [`JitterBuffer::made_up`]): to be skipped, so the stream stays in time.
        skip: u32,
    },
    /// This much audio (in the RTP clock, a multiple of 2.5 ms) is missing before the next packet:
    /// conceal it. The next packet, shown by [`JitterBuffer::peek`], follows the gap directly
    /// and may carry it as in-band FEC.
    Lost {
        /// The gap's duration.
        duration: u32,
    },
    /// Nothing more this tick: not playing yet, buffering again, or the source stalled.
    Empty,
}

/// Counters, durations in the RTP clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets played.
    pub played: u64,
    /// Audio reported lost.
    pub concealed: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets dropped to bring a delay that stayed too long above the target back down.
    pub trimmed: u64,
    /// Packets dropped because more than [`JitterConfig::max_held`] was held.
    pub overflowed: u64,
    /// Times the source's clock went back and the buffer started over.
    pub restarts: u64,
    /// Ticks on which a playing buffer had nothing (it buffers again).
    pub underruns: u64,
    /// Packets dropped because the one played before them already covered their start (a source
    /// whose durations and timestamps disagree).
    pub overlapped: u64,
}

/// One packet held.
#[derive(Debug)]
struct Held<T> {
    time: u64,
    duration: u32,
    item: T,
}

/// The buffer of one input stream; `T` is whatever the consumer needs of a packet (its payload,
/// and anything else such as its audio level).
#[derive(Debug)]
pub struct JitterBuffer<T> {
    config: JitterConfig,
    /// The config's durations in the RTP clock.
    tick: u64,
    min_margin: u64,
    max_margin: u64,
    max_held: u64,
    max_concealed: u64,
    max_late: u64,
    /// 2.5 ms: the shortest gap reported lost (and the unit Opus conceals in).
    quantum: u64,
    /// Packets in RTP time order.
    queue: VecDeque<Held<T>>,
    /// Their total duration.
    held: u64,
    /// Where the next packet should start: after the last one played or the last gap reported.
    next_time: Option<u64>,
    /// Audio the consumer made up past `next_time` (a tick it filled itself when a packet was
    /// late): taken off the next gap or the start of the next packet.
    owed: u64,
    /// Where a packet far behind the playout point ended: the buffer restarts only if the next
    /// one starts there (a clock that really went back), not for one stray packet.
    restart_from: Option<u64>,
    playing: bool,
    /// Playing stopped for want of packets and has not resumed yet: what went missing before is
    /// behind the new timeline, not a gap to conceal.
    rebuffering: bool,
    /// Something was played or reported lost since the tick started.
    took: bool,
    /// While more than the target plus two ticks is held: when a quiet packet, and when any
    /// packet, may next be dropped for it.
    trim_at: Option<(Instant, Instant)>,
    /// RFC 3550 A.8 interarrival jitter, in the RTP clock.
    jitter: f64,
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    stats: JitterStats,
}

impl<T> JitterBuffer<T> {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer<T> {
        let rate = u128::from(config.clock_rate.max(1));
        let units = |d: Duration| u64::try_from(d.as_nanos() * rate / 1_000_000_000).unwrap_or(u64::MAX);
        JitterBuffer {
            tick: units(config.tick).max(1),
            min_margin: units(config.min_margin),
            max_margin: units(config.max_margin),
            max_held: units(config.max_held).max(1),
            max_concealed: units(config.max_concealed),
            max_late: units(config.max_late),
            quantum: (u64::from(config.clock_rate) / 400).max(1),
            config,
            queue: VecDeque::new(),
            held: 0,
            next_time: None,
            owed: 0,
            restart_from: None,
            playing: false,
            rebuffering: false,
            took: false,
            trim_at: None,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            stats: JitterStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter.max(0.0) / f64::from(self.config.clock_rate.max(1)))
    }

    /// The audio held before playing starts, in the RTP clock: a tick, plus the margin the jitter
    /// asks for, plus what the next packet holds beyond a tick.
    pub fn target(&self) -> u64 {
        let margin = ((self.jitter * 3.0) as u64).clamp(self.min_margin, self.max_margin.max(self.min_margin));
        let head = self.queue.front().map_or(0, |h| u64::from(h.duration).saturating_sub(self.tick));
        self.tick + margin + head
    }

    /// [`target`](Self::target) as a duration.
    pub fn target_delay(&self) -> Duration {
        Duration::from_secs_f64(self.target() as f64 / f64::from(self.config.clock_rate.max(1)))
    }

    /// The audio held, in the RTP clock.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether packets are being played (rather than buffered before playing).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// The next packet, without taking it (after [`Next::Lost`], the one that may carry FEC).
    pub fn peek(&self) -> Option<&T> {
        self.queue.front().map(|h| &h.item)
    }

    /// Forgets everything held; the next packet starts a new stream (the jitter estimate stays).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.held = 0;
        self.next_time = None;
        self.owed = 0;
        self.restart_from = None;
        self.playing = false;
        self.rebuffering = false;
        self.trim_at = None;
    }

    /// The consumer made up `duration` of the stream itself (the rest of a tick that a late
    /// packet left short): counted as concealed, and taken off what comes next (a gap shrinks by
    /// it, a packet's start is to be skipped), so the stream is neither shifted nor concealed twice.
    pub fn made_up(&mut self, duration: u32) {
        self.owed = (self.owed + u64::from(duration)).min(self.max_concealed);
        self.stats.concealed += u64::from(duration);
    }

    /// A packet arrived at `now`: its RTP time (extended past wrap-around, see
    /// [`TimestampExtender`]) and duration, both in the RTP clock.
    pub fn push(&mut self, now: Instant, time: u64, duration: u32, item: T) -> Arrival {
        if u64::from(duration) < self.quantum {
            return Arrival::TooShort;
        }
        if u64::from(duration) > self.max_held {
            return Arrival::TooLong;
        }
        let mut arrival = Arrival::Queued;
        if let Some(expected) = self.next_time.filter(|e| time < *e) {
            // Far behind: the source's clock went back if the next packet follows this one; a
            // packet alone that far back is a stray, and must not throw away what is held.
            let far_behind = expected - time > self.max_late;
            if !far_behind || self.restart_from != Some(time) {
                if far_behind {
                    self.restart_from = Some(time + u64::from(duration));
                } else if expected - time <= self.max_margin {
                    // Late by what a larger margin would have absorbed (reordering, a jittery
                    // path): it counts, so the delay grows to take the next one. A stale copy
                    // further back (a replay, a stray retransmission) does not.
                    self.measure(now, time);
                }
                self.stats.late += 1;
                return Arrival::Late;
            }
            self.clear();
            self.stats.restarts += 1;
            arrival = Arrival::Restarted;
        }
        // Usually at the back; a reordered packet goes to its place, a duplicate nowhere.
        let at = self.queue.partition_point(|h| h.time < time);
        if self.queue.get(at).is_some_and(|h| h.time == time) {
            self.stats.duplicates += 1;
            return Arrival::Duplicate;
        }
        // Packets taken count for the jitter, and late ones a larger margin would have taken; a
        // duplicate, or a copy far behind (a replay, a stray retransmission), would otherwise
        // raise the delay of everything after it.
        self.measure(now, time);
        self.queue.insert(at, Held { time, duration, item });
        self.held += u64::from(duration);
        while self.held > self.max_held || self.queue.len() > self.config.max_packets {
            self.drop_oldest();
            self.stats.overflowed += 1;
        }
        arrival
    }

    /// RFC 3550 A.8: the jitter is the mean deviation of the packets' transit times.
    fn measure(&mut self, now: Instant, time: u64) {
        let rate = f64::from(self.config.clock_rate.max(1));
        let epoch = *self.epoch.get_or_insert(now);
        let transit = now.saturating_duration_since(epoch).as_secs_f64() * rate - time as f64;
        if let Some(previous) = self.last_transit {
            let d = (transit - previous).abs();
            // A step of a second or more is the source's clock jumping (a new talk spurt after a
            // long pause, a restart), not jitter.
            if d < rate {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Drops the oldest packet to shorten the delay: the stream goes on from the next one as if
    /// the dropped one had played (not a loss to conceal).
    fn drop_oldest(&mut self) {
        if let Some(h) = self.queue.pop_front() {
            self.held -= u64::from(h.duration);
            let end = h.time + u64::from(h.duration);
            self.next_time = Some(self.next_time.map_or(end, |t| t.max(end)));
        }
    }

    /// A tick starts: playing starts once the target is held, and a delay that has stayed above
    /// the target plus two ticks for [`JitterConfig::trim_loud_after`] loses its oldest packet
    /// (nothing here says which packets are quiet: see [`start_tick_with`](Self::start_tick_with)).
    pub fn start_tick(&mut self, now: Instant) {
        self.start_tick_with(now, |_| false);
    }

    /// [`start_tick`](Self::start_tick), where `quiet` tells the packets that may be dropped first
    /// (a pause between words): when the delay has stayed above the target plus two ticks for
    /// [`JitterConfig::trim_after`], the oldest packet goes if it is quiet (one a tick while that
    /// lasts); any packet goes after [`JitterConfig::trim_loud_after`].
    pub fn start_tick_with(&mut self, now: Instant, quiet: impl Fn(&T) -> bool) {
        self.took = false;
        let target = self.target();
        if self.playing && self.held > target + 2 * self.tick {
            let config = &self.config;
            let (quiet_at, any_at) =
                *self.trim_at.get_or_insert((now + config.trim_after, now + config.trim_loud_after));
            let head_quiet = self.queue.front().is_some_and(|h| quiet(&h.item));
            if (head_quiet && now >= quiet_at) || now >= any_at {
                let after = config.trim_after;
                self.trim_at = Some(if head_quiet { (now, any_at) } else { (now + after, now + after) });
                self.drop_oldest();
                self.stats.trimmed += 1;
            }
        } else {
            self.trim_at = None;
        }
        if !self.playing && self.held >= target {
            self.playing = true;
        }
    }

    /// What plays next in this tick; the consumer calls it until it has a tick's worth or gets
    /// [`Next::Empty`]. A tick that gets nothing at all while playing stops playing: the buffer
    /// waits for its target again.
    pub fn pop(&mut self) -> Next<T> {
        if !self.playing {
            return Next::Empty;
        }
        // Packets whose start was already played with the one before are dropped first.
        while let (Some(head), Some(expected)) = (self.queue.front(), self.next_time) {
            if head.time >= expected {
                break;
            }
            // Dropped without moving the playout point (what it held beyond it is not played).
            let length = u64::from(head.duration);
            self.queue.pop_front();
            self.held -= length;
            self.stats.overlapped += 1;
        }
        let Some(head) = self.queue.front() else {
            if !self.took {
                self.playing = false;
                self.rebuffering = true;
                self.stats.underruns += 1;
                // Buffering again starts a new timeline: nothing made up is owed by it.
                self.owed = 0;
            }
            return Next::Empty;
        };
        let (time, duration) = (head.time, head.duration);
        if std::mem::take(&mut self.rebuffering) {
            // Playing again after running dry: the consumer already filled the ticks it had
            // nothing for, and the time spent buffering is added delay; a gap before this packet
            // (the packets whose loss ran the buffer dry) is not concealed on top of both.
        } else if let Some(expected) = self.next_time {
            let gap = time - expected;
            let lost = gap - gap % self.quantum;
            if lost > 0 && gap <= self.max_concealed {
                self.next_time = Some(time);
                self.took = true;
                // What the consumer made up already covers (part of) the gap.
                let covered = self.owed.min(lost);
                self.owed -= covered;
                if lost > covered {
                    self.stats.concealed += lost - covered;
                    return Next::Lost { duration: u32::try_from(lost - covered).unwrap_or(u32::MAX) };
                }
            } else if gap > self.max_concealed {
                // A pause: nothing made up before it is owed by what follows.
                self.owed = 0;
            }
        }
        let Some(h) = self.queue.pop_front() else { return Next::Empty };
        self.held -= u64::from(duration);
        self.next_time = Some(time + u64::from(duration));
        self.took = true;
        self.stats.played += 1;
        let skip = self.owed.min(u64::from(duration));
        self.owed -= skip;
        Next::Packet { item: h.item, duration, skip: skip as u32 }
    }
}

/// Extends 32-bit RTP timestamps into a 64-bit timeline that does not wrap: each timestamp is
/// placed nearest to the newest one seen (so a reordered packet lands just behind it, and the
/// wrap from `u32::MAX` to 0 moves on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampExtender {
    newest: Option<u64>,
}

impl TimestampExtender {
    /// An extender that has seen nothing.
    pub fn new() -> TimestampExtender {
        TimestampExtender::default()
    }

    /// `timestamp` on the extended timeline. The first one lands at `2^32 + timestamp`, so that
    /// packets a little behind it stay positive.
    pub fn extend(&mut self, timestamp: u32) -> u64 {
        let Some(newest) = self.newest else {
            let first = (1u64 << 32) + u64::from(timestamp);
            self.newest = Some(first);
            return first;
        };
        // The signed distance from the newest: within half the 32-bit range either way.
        let ahead = timestamp.wrapping_sub(newest as u32) as i32;
        let t = newest.saturating_add_signed(i64::from(ahead));
        if ahead > 0 {
            self.newest = Some(t);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TICK: Duration = Duration::from_millis(20);

    fn g711() -> JitterBuffer<u64> {
        JitterBuffer::new(JitterConfig { clock_rate: 8000, ..JitterConfig::default() })
    }

    /// Runs ticks from `t0` until `until`, taking a tick's worth (`per_tick` in the clock) each
    /// time the way a decoder would; returns what came out, in order.
    fn drain(b: &mut JitterBuffer<u64>, t0: Instant, ticks: u32, per_tick: u64) -> Vec<Next<u64>> {
        let mut out = Vec::new();
        let mut ahead = 0u64;
        for k in 0..ticks {
            b.start_tick(t0 + TICK * k);
            while ahead < per_tick {
                match b.pop() {
                    Next::Packet { item, duration, .. } => {
                        ahead += u64::from(duration);
                        out.push(Next::Packet { item, duration, skip: 0 });
                    }
                    Next::Lost { duration } => {
                        ahead += u64::from(duration);
                        out.push(Next::Lost { duration });
                    }
                    Next::Empty => break,
                }
            }
            ahead = ahead.saturating_sub(per_tick);
        }
        out
    }

    fn packets(out: &[Next<u64>]) -> Vec<u64> {
        out.iter().filter_map(|n| if let Next::Packet { item, .. } = n { Some(*item) } else { None }).collect()
    }

    /// Two packets lost where the buffer holds little: it runs dry (the consumer fills that
    /// tick) and buffers again; the lost audio is not concealed a second time after that, which
    /// would only add its length to the delay for good.
    #[test]
    fn a_loss_that_runs_the_buffer_dry_is_not_concealed_again() {
        let mut b = g711();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut played_at = std::collections::HashMap::new();
        for k in 0..30u32 {
            let now = t0 + TICK * k;
            if !(10..12).contains(&k) {
                b.push(now, u64::from(k) * 160, 160, u64::from(k));
            }
            b.start_tick(now);
            let n = b.pop();
            if let Next::Packet { item, .. } = n {
                played_at.insert(item, k);
            }
            out.push(n);
        }
        assert_eq!(b.stats().underruns, 1, "{out:?}");
        assert!(!out.iter().any(|n| matches!(n, Next::Lost { .. })), "{out:?}");
        let delay = |p: u64| played_at[&p] - p as u32;
        assert!(delay(12) <= delay(9) + 1, "at most the rebuffering tick added: {played_at:?}");
    }

    /// Late and duplicate packets (a replay, a stray retransmission) do not count for the jitter:
    /// the delay stays where the clean stream put it.
    #[test]
    fn late_and_duplicate_packets_do_not_raise_the_delay() {
        let mut b = g711();
        let t0 = Instant::now();
        for k in 0..50u32 {
            let now = t0 + TICK * k;
            b.push(now, u64::from(k) * 160, 160, u64::from(k));
            b.start_tick(now);
            let _ = b.pop();
        }
        let before = b.target();
        for k in 50..60u32 {
            let now = t0 + TICK * k;
            b.push(now, u64::from(k) * 160, 160, u64::from(k));
            assert_eq!(b.push(now, 10 * 160, 160, 10), Arrival::Late, "a stale copy of packet 10");
            assert_eq!(b.push(now, u64::from(k) * 160, 160, u64::from(k)), Arrival::Duplicate);
            b.start_tick(now);
            let _ = b.pop();
        }
        assert_eq!(b.target(), before);
    }

    /// Packets late by a little (a path that reorders) do count: the delay grows until they are
    /// on time again, rather than each being lost for good.
    #[test]
    fn packets_a_little_late_raise_the_delay() {
        let mut b = g711();
        let t0 = Instant::now();
        let mut held_back = None;
        for k in 0..40u32 {
            let now = t0 + TICK * k;
            // Every fifth packet comes 60 ms after its time, behind the ones after it.
            if k % 5 == 0 && k > 0 {
                held_back = Some(k);
            } else {
                b.push(now, u64::from(k) * 160, 160, u64::from(k));
            }
            if let Some(late) = held_back.filter(|l| k == l + 3) {
                b.push(now, u64::from(late) * 160, 160, u64::from(late));
                held_back = None;
            }
            b.start_tick(now);
            let _ = b.pop();
        }
        assert!(b.target() > 2 * 160 + 160, "the delay grew for the late packets: {}", b.target());
        assert!(b.stats().late > 0);
    }

    /// A packet longer than everything the buffer may hold is refused; what is held stays.
    #[test]
    fn a_packet_longer_than_the_buffer_is_refused() {
        let mut b = g711();
        let t0 = Instant::now();
        for k in 0..10u32 {
            b.push(t0, u64::from(k) * 160, 160, u64::from(k));
        }
        assert_eq!(b.push(t0, 1600, 40_001, 99), Arrival::TooLong);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn a_clean_stream_starts_after_a_tick_and_the_least_margin() {
        let mut b = g711();
        let t0 = Instant::now();
        let mut first_played = None;
        for k in 0..50u32 {
            let now = t0 + TICK * k;
            b.push(now, u64::from(k) * 160, 160, u64::from(k));
            b.start_tick(now);
            if let Next::Packet { item, .. } = b.pop() {
                first_played.get_or_insert((k, item));
            }
        }
        // 40 ms held (a tick and the 20 ms least margin) on the second packet's arrival.
        assert_eq!(first_played, Some((1, 0)));
        assert_eq!(b.stats().played, 49);
        assert_eq!(b.stats().underruns, 0);
        assert_eq!(b.target(), 320);
    }

    #[test]
    fn any_packet_length_is_played_at_its_own_pace() {
        // 30 ms G.711 (a ptime our 20 ms tick does not divide), 10 ms and 60 ms packets: the audio
        // taken keeps up with the ticks and never runs more than a packet ahead.
        for ms in [10u32, 30, 60] {
            let mut b = g711();
            let t0 = Instant::now();
            let dur = ms * 8;
            let mut sent = 0u32;
            let (mut ahead, mut total) = (0u64, 0u64);
            for k in 0..300u32 {
                let now = t0 + TICK * k;
                while sent * ms <= k * 20 {
                    b.push(now, u64::from(sent * dur), dur, u64::from(sent));
                    sent += 1;
                }
                b.start_tick(now);
                while ahead < 160 {
                    match b.pop() {
                        Next::Packet { duration, .. } => {
                            ahead += u64::from(duration);
                            total += u64::from(duration);
                        }
                        Next::Lost { .. } => panic!("{ms} ms: a loss at tick {k}"),
                        Next::Empty => break,
                    }
                }
                if k >= 5 {
                    assert!(ahead >= 160, "{ms} ms: tick {k} short");
                }
                ahead = ahead.saturating_sub(160);
            }
            assert_eq!(b.stats().underruns, 0, "{ms} ms");
            assert_eq!(b.stats().concealed, 0, "{ms} ms");
            assert!(total >= 299 * 160 - u64::from(2 * dur), "{ms} ms: {total}");
        }
    }

    #[test]
    fn loss_reorder_duplicates_and_late() {
        let mut b = g711();
        let t0 = Instant::now();
        for (k, n) in [0u64, 2, 1, 1, 4, 5].iter().enumerate() {
            let arrival = b.push(t0 + Duration::from_millis(k as u64), n * 160, 160, *n);
            assert_eq!(arrival, if k == 3 { Arrival::Duplicate } else { Arrival::Queued });
        }
        let out = drain(&mut b, t0 + TICK, 8, 160);
        assert_eq!(
            &out[..],
            &[
                Next::Packet { item: 0, duration: 160, skip: 0 },
                Next::Packet { item: 1, duration: 160, skip: 0 },
                Next::Packet { item: 2, duration: 160, skip: 0 },
                Next::Lost { duration: 160 },
                Next::Packet { item: 4, duration: 160, skip: 0 },
                Next::Packet { item: 5, duration: 160, skip: 0 },
            ],
            "then a stalled source gives nothing: no endless concealment"
        );
        assert_eq!(b.stats().duplicates, 1);
        assert!(!b.is_playing(), "ran dry: buffering again");
        assert_eq!(b.stats().underruns, 1);
        assert_eq!(b.push(t0 + TICK * 10, 3 * 160, 160, 3), Arrival::Late, "3 was given up as lost");
    }

    #[test]
    fn a_lost_packet_shorter_than_a_tick_is_reported_with_its_length() {
        // 10 ms packets at 48 kHz, the fourth lost.
        let mut b = JitterBuffer::new(JitterConfig::default());
        let t0 = Instant::now();
        for n in (0..8u64).filter(|n| *n != 3) {
            b.push(t0 + Duration::from_millis(10 * n), n * 480, 480, n);
        }
        let mut out = drain(&mut b, t0 + TICK * 4, 2, 960);
        assert_eq!(out.last(), Some(&Next::Lost { duration: 480 }), "{out:?}");
        assert_eq!(b.peek(), Some(&4), "the packet after the gap, for its FEC");
        out.extend(drain(&mut b, t0 + TICK * 6, 2, 960));
        assert_eq!(packets(&out), vec![0, 1, 2, 4, 5, 6, 7]);
        // A gap that is not a whole number of 2.5 ms is reported rounded down; a sliver is none.
        let mut b = g711();
        b.push(t0, 0, 160, 0);
        b.push(t0, 160 + 25, 160, 1);
        b.push(t0, 320 + 25 + 3, 160, 2);
        b.start_tick(t0);
        assert!(matches!(b.pop(), Next::Packet { item: 0, .. }));
        assert_eq!(b.pop(), Next::Lost { duration: 20 });
        assert!(matches!(b.pop(), Next::Packet { item: 1, .. }));
        assert!(matches!(b.pop(), Next::Packet { item: 2, .. }), "3 samples at 8 kHz is no loss");
    }

    #[test]
    fn what_the_consumer_made_up_is_neither_shifted_nor_concealed_twice() {
        // 10 ms packets at 8 kHz. The consumer filled the rest of a tick itself (10 ms) when the
        // next packet was late: that packet, when it comes, is to be skipped by as much.
        let mut b = g711();
        let t0 = Instant::now();
        for n in 0..4u64 {
            b.push(t0, n * 80, 80, n);
        }
        b.start_tick(t0);
        for n in 0..4u64 {
            assert!(matches!(b.pop(), Next::Packet { item, skip: 0, .. } if item == n));
        }
        b.made_up(80);
        b.push(t0, 320, 80, 4);
        assert_eq!(b.pop(), Next::Packet { item: 4, duration: 80, skip: 80 }, "all of it made up already");
        // Made up, then the late packet is lost too: the gap shrinks by what was made up.
        b.made_up(40);
        b.push(t0, 480, 80, 6);
        assert_eq!(b.pop(), Next::Lost { duration: 40 }, "80 lost, 40 of it made up");
        assert_eq!(b.pop(), Next::Packet { item: 6, duration: 80, skip: 0 });
        assert_eq!(b.stats().concealed, 80 + 40 + 40);
    }

    #[test]
    fn a_long_gap_is_a_pause_not_a_loss() {
        let mut b = g711();
        let t0 = Instant::now();
        // 400 ms of DTX silence between two packets, then the next talk spurt.
        for (n, at) in [(0u64, 0u32), (1, 1), (2, 22), (3, 23)] {
            b.push(t0 + TICK * at, u64::from(at) * 160, 160, n);
        }
        let out = drain(&mut b, t0 + TICK * 23, 5, 160);
        assert_eq!(packets(&out), vec![0, 1, 2, 3]);
        assert_eq!(b.stats().concealed, 0);
        assert_eq!(b.target(), 320, "a pause is not jitter");
        // A source whose clock jumps 5 s ahead while its packets keep coming every 20 ms: the step
        // is not taken for jitter either (it is one second or more).
        for n in 0..10u32 {
            b.push(t0 + TICK * (30 + n), 40_000 + u64::from(n) * 160 + 160 * 30, 160, 9);
        }
        assert_eq!(b.target(), 320, "a clock jump is not jitter");
    }

    #[test]
    fn a_burst_is_played_in_full_at_real_time() {
        let mut b = g711();
        let t0 = Instant::now();
        // One second of text-to-speech arrives within 5 ms.
        for n in 0..50u64 {
            b.push(t0 + Duration::from_micros(100 * n), n * 160, 160, n);
        }
        let out = drain(&mut b, t0, 60, 160);
        assert_eq!(packets(&out), (0..50).collect::<Vec<_>>(), "nothing dropped or replaced by silence");
        assert_eq!(b.stats().concealed, 0);
        assert_eq!(b.stats().trimmed, 0);
    }

    #[test]
    fn the_delay_follows_the_jitter_both_ways() {
        let mut b = g711();
        let t0 = Instant::now();
        let mut x = 0x2545_f491u32;
        let mut k = 0u32;
        let mut arrive = |b: &mut JitterBuffer<u64>, wobble_ms: u32, n: u32| {
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let wobble = Duration::from_millis(u64::from(x % wobble_ms.max(1)));
                b.push(t0 + TICK * k + wobble, u64::from(k) * 160, 160, 0);
                k += 1;
            }
        };
        arrive(&mut b, 0, 100);
        assert_eq!(b.target_delay(), Duration::from_millis(40), "clean: a tick and the least margin");
        arrive(&mut b, 60, 200);
        let jittery = b.target_delay();
        assert!(jittery > Duration::from_millis(70) && jittery <= Duration::from_millis(200), "{jittery:?}");
        arrive(&mut b, 0, 300);
        assert!(b.target_delay() < Duration::from_millis(45), "settles back: {:?}", b.target_delay());
        assert!(b.jitter() < Duration::from_millis(2));
    }

    #[test]
    fn a_jittery_source_plays_without_gaps_once_buffered() {
        // Packets wobble by up to 50 ms; after the first underruns raise the bar, none follow.
        let mut b = g711();
        let t0 = Instant::now();
        let mut x = 0x9e37_79b9u32;
        let mut arrivals: Vec<(Duration, u64)> = (0..1500u64)
            .map(|n| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (TICK * n as u32 + Duration::from_millis(u64::from(x % 50)), n)
            })
            .collect();
        arrivals.sort();
        let mut i = 0;
        let mut underruns_late = 0;
        for k in 0..1500u32 {
            let now = t0 + TICK * k;
            while i < arrivals.len() && t0 + arrivals[i].0 <= now {
                let n = arrivals[i].1;
                b.push(t0 + arrivals[i].0, n * 160, 160, n);
                i += 1;
            }
            let before = b.stats().underruns;
            b.start_tick(now);
            let _ = b.pop();
            if k > 500 {
                underruns_late += b.stats().underruns - before;
            }
        }
        assert_eq!(b.stats().late, 0, "reordered packets are put in their place");
        assert_eq!(underruns_late, 0, "target {:?}, jitter {:?}", b.target_delay(), b.jitter());
        assert!(b.target_delay() >= Duration::from_millis(60));
    }

    #[test]
    fn a_burst_loses_pauses_not_speech_and_the_delay_comes_back_down() {
        // Three seconds of text to speech at once (words of 400 ms, pauses of 200 ms: quiet packets
        // are item 1), then the source goes on with silence at real time.
        let mut b: JitterBuffer<u64> = g711();
        let t0 = Instant::now();
        let word = |n: u64| u64::from(n >= 150 || n % 30 >= 20);
        for n in 0..150u64 {
            b.push(t0, n * 160, 160, word(n));
        }
        let (mut words_played, mut sent) = (0u64, 150u64);
        let mut caught_up = None;
        for k in 0..600u32 {
            let now = t0 + TICK * k;
            while sent < 150 + u64::from(k) {
                b.push(now, sent * 160, 160, word(sent));
                sent += 1;
            }
            b.start_tick_with(now, |quiet| *quiet == 1);
            if let Next::Packet { item: 0, .. } = b.pop() {
                words_played += 1;
            }
            if b.held() <= b.target() + 2 * 160 {
                caught_up.get_or_insert(k);
            }
        }
        assert_eq!(words_played, (0..150).filter(|n| word(*n) == 0).count() as u64, "every packet of speech played");
        let caught_up = caught_up.expect("the delay comes back down");
        // The burst plays for about 3 s less its shortened pauses, then the silence behind it goes
        // at one dropped packet a tick.
        assert!((100..300).contains(&caught_up), "caught up at tick {caught_up}");
        assert!(b.stats().trimmed > 100, "{}", b.stats().trimmed);
    }

    #[test]
    fn a_loud_delay_is_trimmed_only_later() {
        // The same burst with no quiet packet in it: nothing is trimmed for five seconds.
        let mut b: JitterBuffer<u64> = g711();
        let t0 = Instant::now();
        for n in 0..400u64 {
            b.push(t0, n * 160, 160, n);
        }
        let mut first_trim = None;
        for k in 0..400u32 {
            let now = t0 + TICK * k;
            b.push(now, u64::from(400 + k) * 160, 160, 0);
            b.start_tick_with(now, |_| false);
            let _ = b.pop();
            if b.stats().trimmed > 0 {
                first_trim.get_or_insert(k);
            }
        }
        // Playing from the first tick on, so over the target from the second.
        assert_eq!(first_trim, Some(251), "the first packet dropped after 5 s over the target");
        assert_eq!(b.stats().trimmed, 3, "then one a second");
    }

    #[test]
    fn a_consumer_that_falls_behind_does_not_let_the_delay_grow() {
        // The source sends every 20 ms; the consumer's clock runs 1% slow (20.2 ms per tick: far
        // more than real clock drift) for two minutes. Up to one packet per second is trimmed.
        let mut b = g711();
        let t0 = Instant::now();
        let (mut sent, mut held_max_late) = (0u32, 0u64);
        for k in 0..6000u32 {
            let now = t0 + Duration::from_micros(20_200 * u64::from(k));
            while t0 + TICK * sent <= now {
                b.push(now, u64::from(sent) * 160, 160, 0);
                sent += 1;
            }
            b.start_tick(now);
            let _ = b.pop();
            if k > 3000 {
                held_max_late = held_max_late.max(b.held());
            }
        }
        assert!(b.stats().trimmed > 0);
        // Without trimming about 1.2 s would be waiting by now.
        assert!(held_max_late <= 10 * 160, "the delay stays near the target: {held_max_late} held");
    }

    #[test]
    fn a_clock_that_goes_back_restarts_and_too_much_is_not_held() {
        let mut b = g711();
        let t0 = Instant::now();
        for n in 0..10u64 {
            b.push(t0, 100_000 + n * 160, 160, n);
        }
        let _ = drain(&mut b, t0, 3, 160);
        assert_eq!(b.push(t0, 100_000 - 4000, 160, 99), Arrival::Late, "half a second back: late");
        assert_eq!(b.push(t0, 50, 160, 100), Arrival::Late, "12 s back, alone: a stray");
        assert_eq!(b.len(), 7, "nothing thrown away for it");
        assert_eq!(b.push(t0, 5000, 160, 100), Arrival::Late, "another alone, elsewhere");
        assert_eq!(b.push(t0, 5160, 160, 101), Arrival::Restarted, "followed: the clock went back");
        assert_eq!((b.len(), b.stats().restarts), (1, 1));
        assert_eq!(b.push(t0, 0, 0, 101), Arrival::TooShort);
        assert_eq!(b.push(t0, 0, 19, 101), Arrival::TooShort, "under 2.5 ms at 8 kHz");
        // Ten seconds at once: five are kept, the oldest dropped.
        let mut b = g711();
        for n in 0..500u64 {
            b.push(t0, n * 160, 160, n);
        }
        assert_eq!(b.held(), 40_000);
        assert_eq!(b.stats().overflowed, 250);
        b.start_tick(t0);
        assert_eq!(b.pop(), Next::Packet { item: 250, duration: 160, skip: 0 }, "not a loss of the dropped ones");
    }

    #[test]
    fn a_long_packet_waits_for_its_length() {
        // A 60 ms packet alone is not enough to start: the next one must be there before it ends.
        let mut b = JitterBuffer::new(JitterConfig::default());
        let t0 = Instant::now();
        b.push(t0, 0, 2880, 0u64);
        b.start_tick(t0);
        assert_eq!(b.pop(), Next::Empty);
        assert_eq!(b.target(), 960 + 960 + 1920);
        b.push(t0, 2880, 2880, 1);
        b.start_tick(t0 + TICK);
        assert!(matches!(b.pop(), Next::Packet { item: 0, .. }));
    }

    #[test]
    fn a_hostile_source_cannot_make_the_buffer_work_hard() {
        // Overlapping packets (each 2.5 ms long, a step of 1 apart): after one plays, those it
        // covered are dropped in a loop (a recursion per packet once overflowed the stack), and
        // the next that starts where it ended plays.
        let mut b = g711();
        let t0 = Instant::now();
        for n in 0..2000u64 {
            b.push(t0, n, 20, n);
        }
        assert_eq!(b.len(), 2000);
        b.start_tick(t0);
        assert!(matches!(b.pop(), Next::Packet { item: 0, .. }));
        assert!(matches!(b.pop(), Next::Packet { item: 20, .. }));
        assert_eq!(b.stats().overlapped, 19, "those the first one covered");
        let played = std::iter::from_fn(|| match b.pop() {
            Next::Packet { item, .. } => Some(item),
            _ => None,
        });
        assert_eq!(played.count(), 98, "every twentieth");
        assert_eq!(b.stats().overlapped, 1900, "all but the hundred played");
        // More packets than the cap: the oldest go.
        let mut b = g711();
        for n in 0..3000u64 {
            b.push(t0, n * 20, 20, n);
        }
        assert_eq!((b.len(), b.stats().overflowed), (2000, 1000));
    }

    #[test]
    fn timestamps_extend_across_the_wrap_and_reorder() {
        let mut e = TimestampExtender::new();
        let a = e.extend(u32::MAX - 159);
        assert_eq!(e.extend(u32::MAX - 319), a - 160, "reordered: just behind");
        assert_eq!(e.extend(0), a + 160);
        assert_eq!(e.extend(160), a + 320);
        assert_eq!(e.extend(u32::MAX - 159), a, "behind again after the wrap");
    }

    proptest! {
        /// Whatever arrives (any times, lengths, order, repeats, clock jumps), nothing panics,
        /// the held audio is accounted exactly, what plays moves forward in time, and everything
        /// pushed is played, dropped or still held.
        #[test]
        fn any_arrivals_keep_the_books(
            events in proptest::collection::vec((0u64..4000, 0u32..1000, 0u8..4), 1..300)
        ) {
            let mut b: JitterBuffer<u64> = g711();
            let t0 = Instant::now();
            // Counted since the last restart.
            let (mut queued, mut base) = (0u64, JitterStats::default());
            let mut played_to = 0u64;
            let mut now = t0;
            for (time, duration, action) in events {
                now += Duration::from_millis(u64::from(action) * 7);
                if action == 3 {
                    b.start_tick(now);
                    for _ in 0..4 {
                        match b.pop() {
                            Next::Packet { item, duration, .. } => {
                                prop_assert!(item >= played_to, "{} after {}", item, played_to);
                                played_to = item + u64::from(duration);
                            }
                            Next::Lost { duration } => {
                                prop_assert!(duration > 0 && u64::from(duration) <= 800);
                                played_to += u64::from(duration);
                            }
                            Next::Empty => break,
                        }
                    }
                } else {
                    match b.push(now, time * 40, duration, time * 40) {
                        Arrival::Queued => queued += 1,
                        Arrival::Restarted => {
                            (queued, base, played_to) = (1, b.stats(), 0);
                        }
                        _ => {}
                    }
                }
                let s = b.stats();
                prop_assert_eq!(b.queue.iter().map(|h| u64::from(h.duration)).sum::<u64>(), b.held());
                prop_assert!(b.held() <= 40_000);
                prop_assert!(b.queue.iter().zip(b.queue.iter().skip(1)).all(|(x, y)| x.time < y.time));
                let gone = (s.played - base.played)
                    + (s.trimmed - base.trimmed)
                    + (s.overflowed - base.overflowed)
                    + (s.overlapped - base.overlapped);
                prop_assert_eq!(gone + b.len() as u64, queued);
            }
        }
    }
}
