//! RFC 4733 payloads and packet flows from `tests/data/` (see the README
//! there): the codec against hand-made vectors, the receiver against each
//! flow, and the sender against the flows it must reproduce.

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

#[derive(Debug)]
struct Flow {
    name: String,
    sender: Option<SenderConfig>,
    expect: Vec<(char, u32, bool)>,
    packets: Vec<(u16, u32, bool, Vec<u8>)>,
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
            _ => flow.packets.push((
                words[0].parse().expect("seq"),
                words[1].parse().expect("timestamp"),
                words[2] == "1",
                hex_bytes(&words[3..].join(" ")),
            )),
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
    assert!(flows.len() >= 5, "flows missing: {paths:?}");
    flows
}

#[test]
fn receiver_reports_each_flow() {
    for flow in flows() {
        let clock_rate = flow.sender.as_ref().map(|s| s.clock_rate).unwrap_or_default();
        let mut rx = Receiver::new(ReceiverConfig { clock_rate, ..ReceiverConfig::default() });
        let t0 = Instant::now();
        let mut now = t0;
        for (seq, ts, marker, payload) in &flow.packets {
            rx.handle_packet(now, *seq, *ts, *marker, payload).expect("valid packet");
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
        let ts0 = flow.packets[0].1;
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
        let want: Vec<(u32, bool, Vec<u8>)> = flow.packets.iter().map(|(_, ts, m, p)| (*ts, *m, p.clone())).collect();
        assert_eq!(got, want, "{}", flow.name);
        checked += 1;
    }
    assert!(checked >= 3);
}
