//! An adaptive jitter buffer for one input: packets in as they arrive,
//! one frame out per 20 ms tick.
//!
//! The playout delay follows the measured jitter (RFC 3550 interarrival
//! jitter, with head-room), between a minimum and a maximum. Bursts are kept,
//! not dropped: a text-to-speech source that sends a second of audio in a
//! few milliseconds is played in full at real time instead of being cut into
//! silence. Late packets (behind the playout point) and duplicates are
//! dropped; a gap is reported as `Lost` so the decoder can conceal it; a
//! stalled source yields `Empty` without disturbing anyone else.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// Frame duration (20 ms).
    pub frame: Duration,
    /// Lowest playout delay.
    pub min_delay: Duration,
    /// Highest playout delay the jitter estimate may ask for.
    pub max_delay: Duration,
    /// Most frames held (bursts beyond this drop their oldest frames).
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            clock_rate: 48_000,
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            capacity: 500,
        }
    }
}

/// What a tick gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop {
    /// The next frame's payload.
    Frame(Vec<u8>),
    /// The next frame is missing: conceal it (PLC / FEC).
    Lost,
    /// Nothing to play (not started, buffering, or the source stalled).
    Empty,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames played.
    pub played: u64,
    /// Frames concealed.
    pub lost: u64,
    /// Packets dropped as late.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Frames dropped to bring a delay that had grown (clock drift, a consumer that fell behind)
    /// back towards the target.
    pub trimmed: u64,
}

/// The buffer of one input stream.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    frames: BTreeMap<u64, Vec<u8>>,
    highest: Option<u64>,
    next: Option<u64>,
    last_played: Option<u64>,
    jitter: f64,
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    buffering_until: Option<Instant>,
    stats: JitterStats,
    /// Consecutive ticks on which more than the target delay (plus slack) was buffered.
    over_target: u32,
}

/// Ticks the buffered delay must stay above target before one frame is trimmed (1 s at 20 ms).
const TRIM_AFTER_TICKS: u32 = 50;

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        JitterBuffer {
            config,
            frames: BTreeMap::new(),
            highest: None,
            next: None,
            last_played: None,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            buffering_until: None,
            stats: JitterStats::default(),
            over_target: 0,
        }
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter / f64::from(self.config.clock_rate))
    }

    /// The playout delay the buffer aims for now.
    pub fn target_delay(&self) -> Duration {
        let j = self.jitter() * 3 + self.config.frame;
        j.clamp(self.config.min_delay, self.config.max_delay)
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn extend(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else { return u64::from(seq) + (1 << 16) };
        let base = h & !0xffff;
        let cand = base | u64::from(seq);
        let cands = [cand.wrapping_sub(1 << 16), cand, cand + (1 << 16)];
        cands.into_iter().min_by_key(|c| c.abs_diff(h)).unwrap_or(cand)
    }

    /// A packet arrived: sequence number, RTP timestamp, payload.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Vec<u8>) {
        let idx = self.extend(seq);
        // RFC 3550 A.8 interarrival jitter.
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.saturating_duration_since(epoch).as_secs_f64() * f64::from(self.config.clock_rate);
        let transit = arrival - f64::from(timestamp);
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            // A timestamp jump (new talk spurt, stream restart) is not jitter.
            if d < f64::from(self.config.clock_rate) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        if self.next.is_some_and(|n| idx < n) || self.last_played.is_some_and(|p| idx <= p) {
            self.stats.late += 1;
            return;
        }
        if self.frames.contains_key(&idx) {
            self.stats.duplicates += 1;
            return;
        }
        self.frames.insert(idx, payload);
        self.highest = Some(self.highest.map_or(idx, |h| h.max(idx)));
        while self.frames.len() > self.config.capacity {
            if let Some((&first, _)) = self.frames.iter().next() {
                self.frames.remove(&first);
                self.next = Some(first + 1);
            }
        }
        if self.next.is_none() && self.buffering_until.is_none() {
            self.buffering_until = Some(now + self.target_delay());
        }
    }

    /// The frame for this tick. When more than the target delay plus two frames has stayed
    /// buffered for a second, one frame is skipped (counted as `trimmed`): a burst (text to
    /// speech) still plays almost entirely, but a delay that only grows is brought back down.
    pub fn pop(&mut self, now: Instant) -> Pop {
        if let (Some(next), Some(highest)) = (self.next, self.highest) {
            let held = highest.saturating_sub(next) + 1;
            let frame_ms = self.config.frame.as_millis().max(1) as u64;
            let limit = (self.target_delay().as_millis() as u64 / frame_ms) + 2;
            if held > limit {
                self.over_target += 1;
                if self.over_target >= TRIM_AFTER_TICKS && self.frames.remove(&next).is_some() {
                    self.over_target = 0;
                    self.next = Some(next + 1);
                    self.last_played = Some(next);
                    self.stats.trimmed += 1;
                }
            } else {
                self.over_target = 0;
            }
        }
        if let Some(until) = self.buffering_until {
            if now < until {
                return Pop::Empty;
            }
            self.buffering_until = None;
            self.next = self.frames.keys().next().copied();
        }
        let Some(next) = self.next else { return Pop::Empty };
        if let Some(p) = self.frames.remove(&next) {
            self.next = Some(next + 1);
            self.last_played = Some(next);
            self.stats.played += 1;
            return Pop::Frame(p);
        }
        if self.frames.is_empty() {
            // The source stalled: wait for it and re-buffer when it returns.
            self.next = None;
            return Pop::Empty;
        }
        // A gap with later frames waiting: conceal one frame and move on.
        self.next = Some(next + 1);
        self.last_played = Some(next);
        self.stats.lost += 1;
        Pop::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Duration = Duration::from_millis(20);

    fn jb() -> JitterBuffer {
        JitterBuffer::new(JitterConfig { clock_rate: 8000, ..JitterConfig::default() })
    }

    #[test]
    fn in_order_stream_plays_after_the_minimum_delay() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..50u16 {
            let now = t0 + F * u32::from(i);
            b.push(now, i, u32::from(i) * 160, vec![i as u8]);
            out.push(b.pop(now));
        }
        assert_eq!(out[0], Pop::Empty, "buffering");
        let frames: Vec<u8> =
            out.iter().filter_map(|p| if let Pop::Frame(f) = p { Some(f[0]) } else { None }).collect();
        assert_eq!(frames, (0..frames.len() as u8).collect::<Vec<_>>());
        assert!(frames.len() >= 48);
    }

    #[test]
    fn loss_reorder_duplicates_and_late() {
        let mut b = jb();
        let t0 = Instant::now();
        for (k, seq) in [0u16, 2, 1, 1, 4, 5].iter().enumerate() {
            b.push(t0 + Duration::from_millis(k as u64), *seq, u32::from(*seq) * 160, vec![*seq as u8]);
        }
        let mut out = Vec::new();
        for i in 0..8u32 {
            out.push(b.pop(t0 + F * (i + 2)));
        }
        assert_eq!(
            &out[..6],
            &[
                Pop::Frame(vec![0]),
                Pop::Frame(vec![1]),
                Pop::Frame(vec![2]),
                Pop::Lost,
                Pop::Frame(vec![4]),
                Pop::Frame(vec![5])
            ]
        );
        assert_eq!(out[6], Pop::Empty, "stalled source: nothing, no endless concealment");
        assert_eq!(b.stats().duplicates, 1);
        b.push(t0 + F * 10, 3, 480, vec![3]);
        assert_eq!(b.stats().late, 1, "seq 3 is behind the playout point");
    }

    #[test]
    fn a_burst_is_played_in_full_at_real_time() {
        let mut b = jb();
        let t0 = Instant::now();
        // One second of TTS audio arrives within 5 ms.
        for i in 0..50u16 {
            b.push(t0 + Duration::from_micros(100 * u64::from(i)), i, u32::from(i) * 160, vec![i as u8]);
        }
        let mut played = Vec::new();
        for tick in 0..60u32 {
            if let Pop::Frame(f) = b.pop(t0 + F * tick) {
                played.push(f[0]);
            }
        }
        assert_eq!(played, (0..50).collect::<Vec<u8>>(), "no frame of the burst dropped or replaced by silence");
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn delay_adapts_to_jitter_and_wraps() {
        let mut b = jb();
        let t0 = Instant::now();
        let mut x = 0x2545_f491u32;
        for i in 0..200u32 {
            // Arrivals wobble randomly by up to 40 ms.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let wobble = Duration::from_millis(u64::from(x % 40));
            b.push(t0 + F * i + wobble, (65_500u32 + i) as u16, i * 160, vec![]);
        }
        assert!(b.target_delay() > Duration::from_millis(40), "{:?}", b.target_delay());
        assert!(b.target_delay() <= Duration::from_millis(200));
        assert_eq!(b.len(), 200, "sequence numbers wrapped without confusion");
    }

    #[test]
    fn a_consumer_that_falls_behind_does_not_let_the_delay_grow() {
        // The source sends every 20 ms; the consumer's clock runs 1% slow (20.2 ms per tick: far
        // more than real clock drift) for two minutes. Up to one frame per second (2%) is trimmed.
        let mut b = jb();
        let t0 = Instant::now();
        let (mut sent, mut held_max_late) = (0u16, 0usize);
        for tick in 0..6000u32 {
            let now = t0 + Duration::from_micros(20_200 * u64::from(tick));
            while t0 + F * u32::from(sent) <= now {
                b.push(now, sent, u32::from(sent) * 160, vec![0]);
                sent += 1;
            }
            let _ = b.pop(now);
            if tick > 3000 {
                held_max_late = held_max_late.max(b.len());
            }
        }
        assert!(b.stats().trimmed > 0, "frames trimmed");
        // Without trimming about 60 frames (1.2 s) would be waiting by now.
        assert!(held_max_late <= 6, "the delay stays near the target: {held_max_late} frames held");
    }
}
