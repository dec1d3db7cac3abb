//! Laws of the sender and receiver: whatever digit string goes into the
//! `Sender`, exactly that string comes out of the `Receiver`, whatever the
//! network does within reason; and the payload codec round-trips.

use dtmf_rfc4733::{
    ClockRate, Digit, EventPacket, Receiver, ReceiverConfig, Sender, SenderConfig, SequenceDetector, TelephoneEvent,
    Volume,
};
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// One packet as the RTP layer sent it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    seq: u16,
    packet: EventPacket,
}

/// A simulated RTP layer: runs the sender on exact simulated time, numbers
/// its packets, and lets a 20 ms audio packet consume a sequence number for
/// every tick spent not sending DTMF, as a real stream would.
fn send(digits: &str, config: &SenderConfig, t0: Instant, seq0: u16, ts0: u32) -> Vec<Sent> {
    let rate = config.clock_rate;
    let mut sender = Sender::new(config.clone()).expect("valid config");
    sender.enqueue(digits).expect("valid digits");
    let (mut now, mut seq, mut out) = (t0, seq0, Vec::new());
    loop {
        let ts = ts0.wrapping_add(rate.samples(now - t0) as u32);
        while let Some(packet) = sender.poll_packet(now, ts) {
            out.push(Sent { at: now, seq, packet });
            seq = seq.wrapping_add(1);
        }
        let Some(due) = sender.poll_timeout() else { return out };
        let due = due.max(now);
        if !sender.is_sending() {
            seq = seq.wrapping_add(((due - now).as_millis() / 20) as u16);
        }
        now = due;
        assert!(out.len() < 1_000_000, "runaway sender");
    }
}

/// Feeds packets in the given order, each arriving at the send time of the
/// slot it is delivered in (arrival times stay monotonic), firing the
/// receiver's timeouts in between, and returns what it reported.
fn receive(
    slots: &[Instant],
    packets: &[Sent],
    config: &ReceiverConfig,
    strip_marker: bool,
) -> Vec<dtmf_rfc4733::DigitEvent> {
    let mut rx = Receiver::new(config.clone());
    let mut events = Vec::new();
    let mut last = slots.first().copied();
    for (at, sent) in slots.iter().zip(packets) {
        while let Some(due) = rx.poll_timeout().filter(|due| due <= at) {
            rx.handle_timeout(due);
        }
        let p = &sent.packet;
        rx.handle_packet(*at, sent.seq, p.timestamp, p.marker && !strip_marker, &p.payload).expect("valid packet");
        events.extend(std::iter::from_fn(|| rx.poll_event()));
        last = Some(*at);
    }
    if let Some(last) = last {
        rx.handle_timeout(last + Duration::from_secs(10));
    }
    events.extend(std::iter::from_fn(|| rx.poll_event()));
    assert_eq!(rx.poll_timeout(), None, "nothing left pending");
    events
}

fn keys(events: &[dtmf_rfc4733::DigitEvent]) -> String {
    events.iter().map(|e| e.digit.to_char()).collect()
}

/// What the receiver should report for a digit string: the keys, pauses
/// removed, letters upper case.
fn expected(digits: &str) -> String {
    digits.chars().filter(|c| !c.eq_ignore_ascii_case(&'p')).map(|c| c.to_ascii_uppercase()).collect()
}

/// A tiny deterministic generator for shuffles (the seed comes from
/// proptest).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Delays every packet by 0 to `window` places (a stable sort on index plus
/// a random delay), so no packet moves more than `window` places.
fn displace(sent: &[Sent], window: usize, seed: u64) -> Vec<Sent> {
    let mut state = seed;
    let mut order: Vec<(usize, Sent)> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| (i + (next_random(&mut state) % (window as u64 + 1)) as usize, *s))
        .collect();
    order.sort_by_key(|(key, _)| *key);
    order.into_iter().map(|(_, s)| s).collect()
}

/// The fewest packets any one event was sent in.
fn shortest_event(sent: &[Sent]) -> usize {
    let mut counts = Vec::new();
    for s in sent {
        if s.packet.marker {
            counts.push(0);
        }
        if let Some(c) = counts.last_mut() {
            *c += 1;
        }
    }
    counts.into_iter().min().unwrap_or(1)
}

fn digit_strings() -> impl Strategy<Value = String> {
    "[0-9*#A-Da-dpP]{1,10}"
}

fn sender_configs() -> impl Strategy<Value = SenderConfig> {
    (
        prop_oneof![Just(8000u32), Just(16000), Just(48000)],
        prop_oneof![Just(10u64), Just(20), Just(30), Just(50)],
        40u64..=300,
        0u64..=200,
        0u8..=63,
    )
        .prop_map(|(hz, interval, tone, gap, volume)| SenderConfig {
            clock_rate: ClockRate::new(hz).expect("valid rate"),
            packet_interval: Duration::from_millis(interval),
            tone_duration: Duration::from_millis(tone),
            inter_digit_gap: Duration::from_millis(gap),
            volume: Volume::new(volume).expect("valid volume"),
            ..SenderConfig::default()
        })
}

/// Starting points that often sit just below the wrap of the 16-bit
/// sequence number and the 32-bit timestamp.
fn origins() -> impl Strategy<Value = (u16, u32)> {
    (prop_oneof![u16::MAX - 30..=u16::MAX, any::<u16>()], prop_oneof![u32::MAX - 20_000..=u32::MAX, any::<u32>()])
}

fn receiver_config(sender: &SenderConfig) -> ReceiverConfig {
    ReceiverConfig { clock_rate: sender.clock_rate, ..ReceiverConfig::default() }
}

fn slots(packets: &[Sent]) -> Vec<Instant> {
    packets.iter().map(|s| s.at).collect()
}

proptest! {
    /// (a) No loss: every digit exactly, complete, with the sender's
    /// timestamp, duration and volume.
    #[test]
    fn recovered_without_loss(digits in digit_strings(), config in sender_configs(), (seq0, ts0) in origins()) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let events = receive(&slots(&sent), &sent, &receiver_config(&config), false);
        prop_assert_eq!(keys(&events), expected(&digits));
        let starts: Vec<u32> = sent.iter().filter(|s| s.packet.marker).map(|s| s.packet.timestamp).collect();
        let tone = config.clock_rate.samples(config.tone_duration) as u32;
        for (event, start) in events.iter().zip(&starts) {
            prop_assert!(event.complete);
            prop_assert_eq!(event.timestamp, *start);
            prop_assert_eq!(event.duration_samples, tone);
            prop_assert_eq!(event.volume, config.volume);
        }
    }

    /// (b) Any single packet lost, tried at every position.
    #[test]
    fn recovered_under_any_single_loss(digits in digit_strings(), config in sender_configs(), (seq0, ts0) in origins()) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let want = expected(&digits);
        for lost in 0..sent.len() {
            let mut kept = sent.clone();
            kept.remove(lost);
            let events = receive(&slots(&kept), &kept, &receiver_config(&config), false);
            prop_assert_eq!(keys(&events), want.clone(), "packet {} lost", lost);
        }
    }

    /// (c) Reordering within small windows: every packet displaced by at
    /// most `window` places, where the window is shorter than one event
    /// (otherwise a whole event can be overtaken by the next one; see
    /// `reordered_beyond_an_event_still_reports_each_digit_once`).
    #[test]
    fn recovered_under_reordering(
        digits in digit_strings(),
        config in sender_configs(),
        (seq0, ts0) in origins(),
        window in 1usize..=4,
        seed in 1u64..,
    ) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let window = window.min(shortest_event(&sent) - 1);
        let shuffled = displace(&sent, window, seed);
        let events = receive(&slots(&sent), &shuffled, &receiver_config(&config), false);
        prop_assert_eq!(keys(&events), expected(&digits));
    }

    /// Reordering wide enough for a whole event to arrive after the next
    /// one: each digit is still reported exactly once, in arrival order.
    #[test]
    fn reordered_beyond_an_event_still_reports_each_digit_once(
        digits in digit_strings(),
        config in sender_configs(),
        (seq0, ts0) in origins(),
        window in 1usize..=12,
        seed in 1u64..,
    ) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let shuffled = displace(&sent, window, seed);
        let events = receive(&slots(&sent), &shuffled, &receiver_config(&config), false);
        let mut got: Vec<char> = keys(&events).chars().collect();
        let mut want: Vec<char> = expected(&digits).chars().collect();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want);
    }

    /// (d) Every packet duplicated (back to back, and the whole stream
    /// replayed once more a little later).
    #[test]
    fn recovered_with_duplicates(digits in digit_strings(), config in sender_configs(), (seq0, ts0) in origins()) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let mut doubled: Vec<Sent> = sent.iter().flat_map(|s| [*s, *s]).collect();
        let mut arrivals = slots(&doubled);
        let end = arrivals.last().copied().unwrap_or(t0);
        doubled.extend(sent.iter().copied());
        arrivals.extend((1..=sent.len() as u32).map(|i| end + Duration::from_millis(20) * i));
        let events = receive(&arrivals, &doubled, &receiver_config(&config), false);
        prop_assert_eq!(keys(&events), expected(&digits));
        for e in &events {
            prop_assert!(e.complete);
        }
    }

    /// (e) Marker bits stripped by a middlebox.
    #[test]
    fn recovered_without_markers(digits in digit_strings(), config in sender_configs(), (seq0, ts0) in origins()) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let events = receive(&slots(&sent), &sent, &receiver_config(&config), true);
        prop_assert_eq!(keys(&events), expected(&digits));
    }

    /// Only the end packets get through.
    #[test]
    fn recovered_from_end_packets_alone(digits in digit_strings(), config in sender_configs(), (seq0, ts0) in origins()) {
        let t0 = Instant::now();
        let sent: Vec<Sent> = send(&digits, &config, t0, seq0, ts0).into_iter().filter(|s| s.packet.end).collect();
        let events = receive(&slots(&sent), &sent, &receiver_config(&config), false);
        prop_assert_eq!(keys(&events), expected(&digits));
    }

    /// Long tones, sent in segments (RFC 4733 section 2.5.1.3), are still one
    /// digit each, with or without a single loss or duplicates.
    #[test]
    fn segmented_tones_are_one_digit_each(
        digits in "[0-9*#]{1,3}",
        tone_ms in 1400u64..=3000,
        (seq0, ts0) in origins(),
        lost in any::<prop::sample::Index>(),
    ) {
        let config = SenderConfig {
            clock_rate: ClockRate::HZ_48000,
            tone_duration: Duration::from_millis(tone_ms),
            ..SenderConfig::default()
        };
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        prop_assert!(sent.iter().any(|s| s.packet.event().duration == 0xFFFF), "really segmented");
        let rx = receiver_config(&config);
        let events = receive(&slots(&sent), &sent, &rx, false);
        prop_assert_eq!(keys(&events), digits.clone());
        let total = config.clock_rate.samples(config.tone_duration) as u32;
        for e in &events {
            prop_assert_eq!(e.duration_samples, total);
        }
        let mut kept = sent.clone();
        kept.remove(lost.index(sent.len()));
        prop_assert_eq!(keys(&receive(&slots(&kept), &kept, &rx, false)), digits.clone());
        let doubled: Vec<Sent> = sent.iter().flat_map(|s| [*s, *s]).collect();
        prop_assert_eq!(keys(&receive(&slots(&doubled), &doubled, &rx, true)), digits);
    }

    /// The sender's own laws: one marker per digit, events never interleave,
    /// one timestamp per (short) event, durations never shrink within an
    /// event, exactly `end_packets` end reports with the final duration.
    #[test]
    fn sender_packet_shape(digits in digit_strings(), config in sender_configs(), (seq0, ts0) in origins()) {
        let t0 = Instant::now();
        let sent = send(&digits, &config, t0, seq0, ts0);
        let want = expected(&digits);
        prop_assert_eq!(sent.iter().filter(|s| s.packet.marker).count(), want.len());
        let mut events: Vec<Vec<EventPacket>> = Vec::new();
        for s in &sent {
            if s.packet.marker {
                events.push(Vec::new());
            }
            events.last_mut().expect("first packet has the marker").push(s.packet);
        }
        let tone = config.clock_rate.samples(config.tone_duration) as u16;
        for (packets, key) in events.iter().zip(want.chars()) {
            let code = Digit::from_char(key).expect("key").event_code();
            prop_assert!(packets.iter().all(|p| p.payload[0] == code && p.timestamp == packets[0].timestamp));
            prop_assert!(packets.windows(2).all(|w| w[0].event().duration <= w[1].event().duration));
            let ends: Vec<_> = packets.iter().filter(|p| p.end).collect();
            prop_assert_eq!(ends.len(), 3);
            prop_assert!(ends.iter().all(|p| p.event().duration == tone && p.event().end));
            prop_assert!(packets.iter().rev().take(3).all(|p| p.end), "end reports come last");
        }
        for w in sent.windows(2) {
            prop_assert!(w[0].at <= w[1].at);
        }
    }

    /// The payload codec: parse then serialise gives back the first four
    /// bytes, whatever follows them.
    #[test]
    fn payload_round_trip(bytes in prop::collection::vec(any::<u8>(), 4..16)) {
        let event = TelephoneEvent::parse(&bytes).expect("at least 4 bytes");
        prop_assert_eq!(&event.to_bytes()[..], &bytes[..4]);
    }

    /// Short payloads are errors, never panics, and leave the receiver as it was.
    #[test]
    fn short_payloads_are_rejected(bytes in prop::collection::vec(any::<u8>(), 0..4), seq in any::<u16>(), ts in any::<u32>()) {
        let mut rx = Receiver::new(ReceiverConfig::default());
        prop_assert!(rx.handle_packet(Instant::now(), seq, ts, true, &bytes).is_err());
        prop_assert!(!rx.is_receiving());
    }

    /// Arbitrary packets never panic the receiver, and it never reports more
    /// digits than packets it accepted.
    #[test]
    fn receiver_survives_garbage(packets in prop::collection::vec((any::<u16>(), any::<u32>(), any::<bool>(), any::<[u8; 4]>(), 0u64..300), 0..64)) {
        let mut rx = Receiver::new(ReceiverConfig::default());
        let mut now = Instant::now();
        let mut accepted = 0;
        for (seq, ts, marker, payload, gap_ms) in packets {
            now += Duration::from_millis(gap_ms);
            rx.handle_timeout(now);
            if rx.handle_packet(now, seq, ts, marker, &payload).is_ok() {
                accepted += 1;
            }
        }
        rx.handle_timeout(now + Duration::from_secs(1));
        let reported = std::iter::from_fn(|| rx.poll_event()).count();
        prop_assert!(reported <= accepted);
    }

    /// `*6` fires once per adjacent `*6` in the key stream, when typed quickly.
    #[test]
    fn star_six_counts_adjacent_pairs(keys in "[0-9*#]{0,30}") {
        let mut detector = SequenceDetector::star_six();
        let t0 = Instant::now();
        let fired = keys
            .chars()
            .enumerate()
            .filter(|(i, c)| {
                let at = t0 + Duration::from_millis(300 * *i as u64);
                detector.handle_digit(at, Digit::from_char(*c).expect("key"))
            })
            .count();
        prop_assert_eq!(fired, keys.matches("*6").count());
    }
}

#[test]
fn digit_characters_round_trip() {
    for d in Digit::ALL {
        assert_eq!(Digit::from_char(d.to_char()), Some(d));
        assert_eq!(Digit::from_event_code(d.event_code()), Some(d));
    }
}
