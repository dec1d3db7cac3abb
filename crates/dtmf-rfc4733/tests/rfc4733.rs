//! RFC 4733 payloads and packet flows from `tests/data/` (see the README
//! there): the codec against the vectors, the receiver against each flow
//! (among them Table 5 of RFC 4733 section 5), and the sender against the
//! flows it must reproduce and against Table 5.

use dtmf_rfc4733::{ClockRate, Digit, Error, Receiver, ReceiverConfig, Sender, SenderConfig, TelephoneEvent, Volume};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn hex_bytes(text: &str) -> Vec<u8> {
    text.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}

#[test]
fn payload_vectors() {
    let text = std::fs::read_to_string(data_dir().join("payloads.txt")).expect("payloads.txt");
    let mut checked = 0;
    // Whole-line comments start with `#`; a trailing comment follows ` -- ` (`#` is a key).
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let line = line.split(" -- ").next().unwrap_or(line);
        let (bytes, fields) = line.split_once("=>").expect("`bytes => fields`");
        let bytes = hex_bytes(bytes);
        let parsed = TelephoneEvent::parse(&bytes);
        if fields.trim() == "too-short" {
            assert_eq!(parsed, Err(Error::PayloadTooShort { len: bytes.len() }), "{line}");
            checked += 1;
            continue;
        }
        let f: Vec<&str> = fields.split_whitespace().collect();
        assert_eq!(f.len(), 6, "{line}");
        let num = |i: usize| f[i].parse::<u32>().expect("number");
        let event = parsed.expect("valid payload");
        let want = TelephoneEvent {
            event_code: num(0) as u8,
            end: num(1) == 1,
            reserved: num(2) == 1,
            volume: Volume::new(num(3) as u8).expect("volume"),
            duration: num(4) as u16,
        };
        assert_eq!(event, want, "{line}");
        let digit = f[5].chars().next().and_then(Digit::from_char);
        assert_eq!(event.digit(), digit, "{line}");
        assert_eq!(&event.to_bytes()[..], &bytes[..4], "{line}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} vectors read");
}

/// One line of a flow: when it was sent (ms, if the flow says), sequence
/// number, timestamp, marker bit, payload.
#[derive(Debug, Clone)]
struct FlowPacket {
    at_ms: Option<u64>,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: Vec<u8>,
}

#[derive(Debug)]
struct Flow {
    name: String,
    sender: Option<SenderConfig>,
    expect: Vec<(char, u32, bool)>,
    packets: Vec<FlowPacket>,
}

fn read_flow(path: &Path) -> Flow {
    let text = std::fs::read_to_string(path).expect("flow file");
    let mut flow = Flow {
        name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        sender: None,
        expect: Vec::new(),
        packets: Vec::new(),
    };
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "sender" => {
                let mut config = SenderConfig::default();
                for setting in &words[1..] {
                    let (key, value) = setting.split_once('=').expect("key=value");
                    let value: u64 = value.parse().expect("number");
                    match key {
                        "clock" => config.clock_rate = ClockRate::new(value as u32).expect("rate"),
                        "interval" => config.packet_interval = Duration::from_millis(value),
                        "tone" => config.tone_duration = Duration::from_millis(value),
                        "volume" => config.volume = Volume::new(value as u8).expect("volume"),
                        other => panic!("unknown sender setting {other}"),
                    }
                }
                flow.sender = Some(config);
            }
            "expect" => {
                let key = words[1].chars().next().expect("key");
                flow.expect.push((key, words[2].parse().expect("duration"), words[3] == "complete"));
            }
            _ => {
                let (at_ms, words) = match words[0].strip_prefix('@') {
                    Some(ms) => (Some(ms.parse().expect("@ms")), &words[1..]),
                    None => (None, &words[..]),
                };
                flow.packets.push(FlowPacket {
                    at_ms,
                    seq: words[0].parse().expect("seq"),
                    timestamp: words[1].parse().expect("timestamp"),
                    marker: words[2] == "1",
                    payload: hex_bytes(&words[3..].join(" ")),
                });
            }
        }
    }
    flow
}

fn flows() -> Vec<Flow> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .collect();
    paths.sort();
    let flows: Vec<Flow> = paths.iter().map(|p| read_flow(p)).collect();
    assert!(flows.len() >= 6, "flows missing: {paths:?}");
    flows
}

fn flow(name: &str) -> Flow {
    read_flow(&data_dir().join(name))
}

#[test]
fn receiver_reports_each_flow() {
    for flow in flows() {
        let clock_rate = flow.sender.as_ref().map(|s| s.clock_rate).unwrap_or_default();
        let mut rx = Receiver::new(ReceiverConfig { clock_rate, ..ReceiverConfig::default() });
        let t0 = Instant::now();
        let mut now = t0;
        for p in &flow.packets {
            // At the flow's own times when it gives them, else 20 ms apart.
            if let Some(ms) = p.at_ms {
                now = t0 + Duration::from_millis(ms);
            }
            rx.handle_packet(now, p.seq, p.timestamp, p.marker, &p.payload).expect("valid packet");
            now += Duration::from_millis(20);
        }
        rx.handle_timeout(now + Duration::from_secs(1));
        let got: Vec<(char, u32, bool)> = std::iter::from_fn(|| rx.poll_event())
            .map(|e| (e.digit.to_char(), e.duration_samples, e.complete))
            .collect();
        assert_eq!(got, flow.expect, "{}", flow.name);
    }
}

#[test]
fn sender_reproduces_flows() {
    let mut checked = 0;
    for flow in flows() {
        let Some(config) = flow.sender.clone() else { continue };
        let keys: String = flow.expect.iter().map(|(k, _, _)| k).collect();
        let ts0 = flow.packets[0].timestamp;
        let rate = config.clock_rate;
        let mut sender = Sender::new(config).expect("valid config");
        sender.enqueue(&keys).expect("valid digits");
        let t0 = Instant::now();
        let mut now = t0;
        let mut got = Vec::new();
        loop {
            let ts = ts0.wrapping_add(rate.samples(now - t0) as u32);
            while let Some(p) = sender.poll_packet(now, ts) {
                got.push((p.timestamp, p.marker, p.payload.to_vec()));
            }
            match sender.poll_timeout() {
                Some(due) => now = now.max(due),
                None => break,
            }
        }
        let want: Vec<(u32, bool, Vec<u8>)> =
            flow.packets.iter().map(|p| (p.timestamp, p.marker, p.payload.clone())).collect();
        assert_eq!(got, want, "{}", flow.name);
        checked += 1;
    }
    assert!(checked >= 2);
}

/// The receiver on RFC 4733 Table 5 at the table's own times: "911", each
/// digit once, with the table's durations, each reported on its first E-bit
/// packet (never earlier: the "9" is not reported by its last report
/// without E, and not again by its retransmission).
#[test]
fn receiver_on_rfc4733_table5() {
    let table = flow("rfc4733_table5.flow");
    assert_eq!(table.packets.len(), 20, "sequence numbers 1-20");
    let mut rx = Receiver::new(ReceiverConfig::default());
    let t0 = Instant::now();
    let mut reported_at = Vec::new();
    for p in &table.packets {
        let now = t0 + Duration::from_millis(p.at_ms.expect("Table 5 has times"));
        rx.handle_packet(now, p.seq, p.timestamp, p.marker, &p.payload).expect("valid packet");
        rx.handle_timeout(now);
        while let Some(e) = rx.poll_event() {
            reported_at.push((p.seq, e.digit.to_char(), e.timestamp, e.duration_samples, e.duration, e.complete));
        }
    }
    rx.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(rx.poll_event(), None, "nothing more, even long after");
    let ms = Duration::from_millis;
    assert_eq!(
        reported_at,
        [(5, '9', 0, 1600, ms(200), true), (12, '1', 7040, 2000, ms(250), true), (18, '1', 11200, 1760, ms(220), true)]
    );
}

/// The sender against RFC 4733 Table 5: one `Sender` per digit, with the
/// table's 50 ms updates, the digit's tone length and volume 20, started at
/// the digit's timestamp. Timestamps, marker bits, event codes, volumes and
/// the sequence of durations are the table's, the final report goes out
/// three times in both. The E bits differ in one place only: when a tone
/// ends on a packet boundary ("9" at 200 ms, the first "1" at 1130 ms) the
/// table's sender, a gateway detecting tones, sends that final report once
/// without E and sets E in the two retransmissions (RFC 4733 section
/// 2.5.1.4 allows this); ours generates the tone, knows its end, and sets E
/// all three times. Ours also sends each report one interval earlier: at
/// the start of the 50 ms it reports up to the end of, where the table's
/// sender reports after the fact.
#[test]
fn sender_against_rfc4733_table5() {
    let table = flow("rfc4733_table5.flow");
    let mut events: Vec<Vec<FlowPacket>> = Vec::new();
    for p in &table.packets {
        match events.last_mut() {
            Some(event) if event[0].timestamp == p.timestamp => event.push(p.clone()),
            _ => events.push(vec![p.clone()]),
        }
    }
    assert_eq!(events.len(), table.expect.len());
    let interval = Duration::from_millis(50);
    // Per digit: the indices where the table's E bit is clear and ours set.
    let deferred_e: [&[usize]; 3] = [&[3], &[4], &[]];
    for ((rfc, (key, units, _)), deferred) in events.iter().zip(&table.expect).zip(deferred_e) {
        let config = SenderConfig {
            packet_interval: interval,
            tone_duration: ClockRate::HZ_8000.duration(u64::from(*units)),
            volume: Volume::new(20).expect("volume"),
            ..SenderConfig::default()
        };
        let mut sender = Sender::new(config).expect("valid config");
        sender.enqueue(&key.to_string()).expect("digit");
        let ts0 = rfc[0].timestamp;
        let t0 = Instant::now();
        let mut now = t0;
        let mut ours = Vec::new();
        loop {
            let ts = ts0.wrapping_add(ClockRate::HZ_8000.samples(now - t0) as u32);
            while let Some(p) = sender.poll_packet(now, ts) {
                ours.push((now - t0, p));
            }
            match sender.poll_timeout() {
                Some(due) => now = now.max(due),
                None => break,
            }
        }
        let theirs: Vec<TelephoneEvent> =
            rfc.iter().map(|p| TelephoneEvent::parse(&p.payload).expect("payload")).collect();
        assert_eq!(ours.len(), rfc.len(), "{key}");
        assert_eq!(
            ours.iter().map(|(_, p)| p.event().duration).collect::<Vec<_>>(),
            theirs.iter().map(|e| e.duration).collect::<Vec<_>>(),
            "{key}: durations"
        );
        assert_eq!(
            ours.iter().map(|(_, p)| (p.timestamp, p.marker)).collect::<Vec<_>>(),
            rfc.iter().map(|p| (p.timestamp, p.marker)).collect::<Vec<_>>(),
            "{key}: timestamps and marker bits"
        );
        for ((_, p), t) in ours.iter().zip(&theirs) {
            let e = p.event();
            assert_eq!((e.event_code, e.volume, e.reserved), (t.event_code, t.volume, t.reserved), "{key}");
        }
        let finals = theirs.iter().filter(|e| u32::from(e.duration) == *units).count();
        assert_eq!(finals, 3, "{key}: the final report, three times");
        let differ: Vec<usize> = (0..rfc.len()).filter(|&i| ours[i].1.event().end != theirs[i].end).collect();
        assert_eq!(differ, deferred, "{key}: where the E bits differ");
        for &i in deferred {
            assert!(ours[i].1.end && !theirs[i].end && theirs[i + 1].end, "{key}: E set by us, deferred by the table");
        }
        // Times from the tone's start (its timestamp at 8 units per ms).
        let tone_start_ms = u64::from(ts0) / 8;
        let table_ms: Vec<u64> = rfc.iter().map(|p| p.at_ms.expect("time") - tone_start_ms).collect();
        let ours_ms: Vec<u64> = ours.iter().map(|(at, _)| at.as_millis() as u64 + 50).collect();
        assert_eq!(ours_ms, table_ms, "{key}: the same 50 ms cadence, one interval earlier");
    }
}
