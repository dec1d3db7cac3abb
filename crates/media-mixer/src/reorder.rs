//! Video RTP packets put back in order before they are depacketised ([`Reorder`]).
//!
//! A depacketiser needs a frame's packets in sequence: one packet swapped on the path would
//! otherwise lose the frame, and every frame after it until a keyframe. A packet that is missing
//! is waited for a little: long enough for the path's reordering, or, when the sender resends on
//! RFC 4585 generic NACKs, for the NACK ([`Reorder::nacks`]) to reach it and the packet to come
//! back. Then it is given up ([`Released::Lost`]), and what follows is released. Sans-IO: the
//! caller passes the time and wakes at [`Reorder::deadline`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Sequence numbers asked for in one call of [`Reorder::nacks`] at most (a NACK of this many fits
/// in any MTU).
pub const NACK_MOST: usize = 128;

/// How long to wait and how much to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// How long a missing packet is waited for, from when a later one arrived.
    pub max_wait: Duration,
    /// Packets held at most; beyond, the oldest gap is given up at once.
    pub max_packets: usize,
    /// How many times a missing packet is asked for at most.
    pub max_nacks: u8,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig { max_wait: Duration::from_millis(40), max_packets: 512, max_nacks: 3 }
    }
}

/// What comes out, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released<T> {
    /// The next packet.
    Packet {
        /// Its RTP sequence number.
        seq: u16,
        /// What was pushed with it.
        item: T,
    },
    /// Packets given up: `count` sequence numbers never came in time.
    Lost {
        /// How many.
        count: u64,
    },
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held until its turn.
    Held,
    /// Already held or released.
    Duplicate,
    /// Its turn is past (it was given up, or it is a stray from far back).
    Late,
    /// The sender's numbering restarted (a second packet far from the stream's followed a first
    /// one): everything held was dropped and the stream starts again from this packet.
    Restarted,
}

/// A missing sequence number.
#[derive(Debug, Clone, Copy)]
struct Missing {
    /// When a later packet showed it missing.
    since: Instant,
    /// When it was last asked for, and how often.
    asked: Option<Instant>,
    times: u8,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    /// Packets released in order.
    pub released: u64,
    /// Packets that came after a later one and were put back in place.
    pub reordered: u64,
    /// Sequence numbers given up.
    pub lost: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that came after their turn.
    pub late: u64,
    /// Sequence numbers asked for again.
    pub nacked: u64,
    /// Times the sender's numbering restarted.
    pub restarts: u64,
}

/// Puts one RTP stream's packets back in sequence order (see the module docs).
#[derive(Debug)]
pub struct Reorder<T> {
    config: ReorderConfig,
    /// Extended sequence numbers (never wrapping) of the packets held.
    held: BTreeMap<u64, T>,
    /// The next sequence number to release.
    next: Option<u64>,
    /// The highest sequence number seen.
    highest: u64,
    missing: BTreeMap<u64, Missing>,
    /// After a packet far behind the stream: the number that would confirm a restart.
    restart_at: Option<u64>,
    stats: ReorderStats,
}

impl<T> Reorder<T> {
    /// An empty buffer.
    pub fn new(config: ReorderConfig) -> Reorder<T> {
        Reorder {
            config,
            held: BTreeMap::new(),
            next: None,
            highest: 0,
            missing: BTreeMap::new(),
            restart_at: None,
            stats: Default::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ReorderConfig {
        &self.config
    }

    /// A new wait (the round trip changed, or the sender turned out to resend).
    pub fn set_max_wait(&mut self, wait: Duration) {
        self.config.max_wait = wait;
    }

    /// Counters.
    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets everything: the next packet starts the stream again (a new source).
    pub fn reset(&mut self) {
        self.held.clear();
        self.missing.clear();
        self.next = None;
        self.restart_at = None;
    }

    /// The extended sequence number nearest to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        self.highest.saturating_add_signed(delta)
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u16, item: T) -> Pushed {
        let Some(next) = self.next else {
            self.start(seq, item);
            return Pushed::Held;
        };
        let ext = self.extend(seq);
        if ext < next {
            // Far behind (more than can be held): a stray, or a sender whose numbering restarted
            // (backwards, or forwards by more than half the sequence space): the second packet
            // in sequence from there confirms the restart, as RFC 3550 A.1 does.
            if next - ext > self.config.max_packets as u64 {
                if self.restart_at == Some(ext) {
                    self.reset();
                    self.start(seq, item);
                    self.stats.restarts += 1;
                    return Pushed::Restarted;
                }
                self.restart_at = Some(ext + 1);
            }
            self.stats.late += 1;
            return Pushed::Late;
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        if ext > self.highest {
            // The sequence numbers skipped are missing. More outstanding than can be held (a
            // jump, a sender that restarted its numbering forwards, or a hostile one stepping
            // far each packet) is not waited for: with nothing missing on record, every gap is
            // given up at once, and what is on record stays bounded.
            if ext - next > self.config.max_packets as u64 {
                self.missing.clear();
            } else {
                for gap in self.highest + 1..ext {
                    if gap >= next {
                        self.missing.insert(gap, Missing { since: now, asked: None, times: 0 });
                    }
                }
            }
            self.highest = ext;
        } else if self.missing.remove(&ext).is_some() {
            self.stats.reordered += 1;
        }
        self.held.insert(ext, item);
        Pushed::Held
    }

    /// The first packet, or the first after a restart: sequence numbers start far from zero, so
    /// going back never underflows.
    fn start(&mut self, seq: u16, item: T) {
        let start = (1u64 << 32) + u64::from(seq);
        self.next = Some(start);
        self.highest = start;
        self.held.insert(start, item);
    }

    /// The next thing to release at `now`, in order: a packet whose turn came, or the packets
    /// given up before the first one held (waited for [`ReorderConfig::max_wait`], or too much
    /// held). `None` until then.
    pub fn pop(&mut self, now: Instant) -> Option<Released<T>> {
        let next = self.next?;
        if let Some(item) = self.held.remove(&next) {
            self.next = Some(next + 1);
            self.missing.remove(&next);
            self.stats.released += 1;
            return Some(Released::Packet { seq: next as u16, item });
        }
        let first = *self.held.keys().next()?;
        let waited =
            self.missing.get(&next).is_none_or(|m| now.saturating_duration_since(m.since) >= self.config.max_wait);
        if !waited && self.held.len() <= self.config.max_packets {
            return None;
        }
        let count = first - next;
        self.missing = self.missing.split_off(&first);
        self.next = Some(first);
        self.stats.lost += count;
        Some(Released::Lost { count })
    }

    /// When the oldest missing packet will be given up (wake then and [`pop`](Self::pop)).
    pub fn deadline(&self) -> Option<Instant> {
        let next = self.next?;
        self.held.keys().next()?;
        self.missing.get(&next).map(|m| m.since + self.config.max_wait)
    }

    /// The missing sequence numbers to ask for now (RFC 4585 generic NACK): each once it is
    /// noticed, and again every `retry` (about a round trip) up to
    /// [`ReorderConfig::max_nacks`] times, while it is still waited for; the oldest
    /// [`NACK_MOST`] at most.
    pub fn nacks(&mut self, now: Instant, retry: Duration) -> Vec<u16> {
        let mut out = Vec::new();
        for (seq, m) in self.missing.iter_mut() {
            if out.len() == NACK_MOST {
                break;
            }
            let due = m.asked.is_none_or(|t| now.saturating_duration_since(t) >= retry);
            if due && m.times < self.config.max_nacks && now.saturating_duration_since(m.since) < self.config.max_wait {
                m.asked = Some(now);
                m.times += 1;
                out.push(*seq as u16);
            }
        }
        self.stats.nacked += out.len() as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(r: &mut Reorder<u16>, now: Instant) -> Vec<Released<u16>> {
        std::iter::from_fn(|| r.pop(now)).collect()
    }

    fn packet(seq: u16) -> Released<u16> {
        Released::Packet { seq, item: seq }
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig::default());
        for seq in 65_530..=65_535u16 {
            assert_eq!(r.push(t0, seq, seq), Pushed::Held);
            assert_eq!(drain(&mut r, t0), vec![packet(seq)]);
        }
        for seq in 0..5u16 {
            r.push(t0, seq, seq);
            assert_eq!(drain(&mut r, t0), vec![packet(seq)], "across the wrap");
        }
        assert_eq!(r.push(t0, 3, 3), Pushed::Late);
        assert!(r.is_empty() && r.deadline().is_none());
    }

    #[test]
    fn a_swapped_pair_is_put_back_in_order() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig::default());
        r.push(t0, 10, 10);
        r.push(t0, 12, 12);
        assert_eq!(drain(&mut r, t0), vec![packet(10)], "11 is waited for");
        assert_eq!(r.deadline(), Some(t0 + ms(40)));
        assert_eq!(r.push(t0 + ms(5), 12, 12), Pushed::Duplicate);
        r.push(t0 + ms(5), 11, 11);
        assert_eq!(drain(&mut r, t0 + ms(5)), vec![packet(11), packet(12)]);
        assert_eq!(r.stats().reordered, 1);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn a_lost_packet_is_given_up_after_the_wait_and_a_late_one_refused() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig::default());
        r.push(t0, 1, 1);
        r.push(t0 + ms(10), 4, 4);
        r.push(t0 + ms(20), 5, 5);
        assert_eq!(drain(&mut r, t0 + ms(49)), vec![packet(1)]);
        assert_eq!(drain(&mut r, t0 + ms(50)), vec![Released::Lost { count: 2 }, packet(4), packet(5)]);
        assert_eq!(r.push(t0 + ms(60), 3, 3), Pushed::Late);
        assert_eq!(r.stats().lost, 2);
    }

    /// Each missing number is asked for when noticed, again after the retry time, at most three
    /// times, and not once it is given up or arrived.
    #[test]
    fn missing_packets_are_asked_for_again_each_round_trip() {
        let t0 = Instant::now();
        let config = ReorderConfig { max_wait: ms(500), ..ReorderConfig::default() };
        let mut r = Reorder::new(config);
        r.push(t0, 100, 100);
        r.push(t0, 104, 104);
        assert_eq!(r.nacks(t0, ms(50)), vec![101, 102, 103]);
        assert!(r.nacks(t0 + ms(20), ms(50)).is_empty(), "not again within the round trip");
        r.push(t0 + ms(30), 102, 102);
        assert_eq!(r.nacks(t0 + ms(60), ms(50)), vec![101, 103]);
        assert_eq!(r.nacks(t0 + ms(120), ms(50)), vec![101, 103]);
        assert!(r.nacks(t0 + ms(180), ms(50)).is_empty(), "three times at most");
        drain(&mut r, t0 + ms(500));
        assert_eq!(r.stats().lost, 2);
        r.push(t0 + ms(500), 106, 106);
        assert_eq!(r.nacks(t0 + ms(1000), ms(50)), Vec::<u16>::new(), "given up: no longer asked for");
        assert_eq!(r.stats().nacked, 7);
    }

    /// A sender that jumps its numbering far ahead is followed at once, not waited for; too much
    /// held gives up the oldest gap without waiting.
    #[test]
    fn a_jump_and_a_full_buffer_do_not_stall_the_stream() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig { max_packets: 8, ..ReorderConfig::default() });
        r.push(t0, 1, 1);
        r.push(t0, 30_000, 30_000);
        assert_eq!(drain(&mut r, t0), vec![packet(1), Released::Lost { count: 29_998 }, packet(30_000)]);
        r.push(t0, 30_002, 30_002);
        for seq in 30_003..30_010u16 {
            r.push(t0, seq, seq);
        }
        assert_eq!(drain(&mut r, t0), vec![], "eight held: still waiting");
        r.push(t0, 30_010, 30_010);
        let out = drain(&mut r, t0);
        assert_eq!(out.first(), Some(&Released::Lost { count: 1 }));
        assert_eq!(out.len(), 10);
    }

    /// A sender whose numbering restarts (backwards, or forwards by more than half the space) is
    /// followed from the second packet that confirms it; one stray packet from far away is only
    /// late.
    #[test]
    fn a_restarted_numbering_is_followed_once_confirmed() {
        let t0 = Instant::now();
        for restart in [100u16, 40_000] {
            let mut r = Reorder::new(ReorderConfig::default());
            for seq in 5000..5010u16 {
                r.push(t0, seq, seq);
            }
            drain(&mut r, t0);
            assert_eq!(r.push(t0, restart, restart), Pushed::Late, "a stray, or a restart not confirmed yet");
            assert_eq!(r.push(t0, 5010, 5010), Pushed::Held);
            assert_eq!(r.push(t0, restart + 1, restart + 1), Pushed::Restarted, "confirmed: {restart}");
            assert_eq!(r.push(t0, restart + 2, restart + 2), Pushed::Held);
            assert_eq!(drain(&mut r, t0), vec![packet(restart + 1), packet(restart + 2)]);
            assert_eq!(r.stats().restarts, 1);
        }
    }

    /// A source stepping its numbers far ahead with every packet leaves nothing unbounded on
    /// record: what is missing stays within what can be held, and a NACK within its cap.
    #[test]
    fn a_source_stepping_far_ahead_keeps_the_books_small() {
        let t0 = Instant::now();
        let config = ReorderConfig { max_wait: Duration::from_secs(10), ..ReorderConfig::default() };
        let mut r = Reorder::new(config);
        let mut seq = 0u16;
        for _ in 0..5000 {
            seq = seq.wrapping_add(500);
            r.push(t0, seq, seq);
            assert!(r.missing.len() <= config.max_packets, "{}", r.missing.len());
            assert!(r.nacks(t0, Duration::from_millis(100)).len() <= NACK_MOST);
            drain(&mut r, t0);
        }
        assert!(r.len() <= config.max_packets + 1);
    }

    proptest! {
        /// Whatever the arrival order, duplicates and losses: packets come out once each, in
        /// sequence order, and packets plus losses account for every number from the first
        /// released to the last.
        #[test]
        fn released_in_order_once_each(
            start in any::<u16>(),
            moves in proptest::collection::vec((0usize..400, 0u8..4), 1..300),
        ) {
            let t0 = Instant::now();
            let mut r = Reorder::new(ReorderConfig::default());
            let mut out = Vec::new();
            for (i, (offset, copies)) in moves.iter().enumerate() {
                let now = t0 + ms(i as u64);
                let seq = start.wrapping_add(*offset as u16);
                for _ in 0..*copies {
                    r.push(now, seq, seq);
                }
                out.extend(std::iter::from_fn(|| r.pop(now)));
            }
            out.extend(std::iter::from_fn(|| r.pop(t0 + ms(100_000))));
            let mut expected: Option<u16> = None;
            let mut accounted = 0u64;
            for o in &out {
                match o {
                    Released::Packet { seq, item } => {
                        prop_assert_eq!(seq, item);
                        if let Some(e) = expected {
                            prop_assert_eq!(*seq, e, "in order: {:?}", out);
                        }
                        expected = Some(seq.wrapping_add(1));
                        accounted += 1;
                    }
                    Released::Lost { count } => {
                        prop_assert!(expected.is_some(), "a loss before anything released");
                        expected = expected.map(|e| e.wrapping_add(*count as u16));
                        accounted += count;
                    }
                }
            }
            prop_assert!(r.is_empty(), "everything released in the end");
            let s = r.stats();
            prop_assert_eq!(s.released + s.lost, accounted);
        }
    }
}
