//! DTMF hot paths: a 10-digit string sent into RFC 4733 packets, and those
//! packets received back into digits, on simulated time.

mod common;

use criterion::{black_box, Criterion, Throughput};
use dtmf_rfc4733::{EventPacket, Receiver, ReceiverConfig, Sender, SenderConfig};
use std::time::Instant;

const DIGITS: &str = "0123456789";

/// Runs a sender for `digits` to completion, polling exactly when it asks,
/// and returns (arrival time, sequence number, packet).
fn send(t0: Instant, digits: &str) -> Vec<(Instant, u16, EventPacket)> {
    let mut sender = Sender::new(SenderConfig::default()).expect("default config is valid");
    sender.enqueue(digits).expect("valid digits");
    let mut now = t0;
    let mut seq = 0u16;
    let mut out = Vec::with_capacity(digits.len() * 7);
    loop {
        let ts = (now - t0).as_millis() as u32 * 8;
        while let Some(p) = sender.poll_packet(now, ts) {
            seq = seq.wrapping_add(1);
            out.push((now, seq, p));
        }
        match sender.poll_timeout() {
            Some(due) => now = now.max(due),
            None => return out,
        }
    }
}

fn receive(packets: &[(Instant, u16, EventPacket)]) -> usize {
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut digits = 0;
    for (at, seq, p) in packets {
        rx.handle_packet(*at, *seq, p.timestamp, p.marker, &p.payload).expect("valid packet");
        while rx.poll_event().is_some() {
            digits += 1;
        }
    }
    digits
}

fn dtmf(c: &mut Criterion) {
    let t0 = Instant::now();
    let packets = send(t0, DIGITS);
    assert_eq!(packets.len(), 70);
    assert_eq!(receive(&packets), 10);

    let mut g = c.benchmark_group("dtmf_10_digits");
    g.throughput(Throughput::Elements(DIGITS.len() as u64));
    g.bench_function("send", |b| b.iter(|| send(t0, black_box(DIGITS)).len()));
    g.bench_function("receive", |b| b.iter(|| receive(black_box(&packets))));
    g.bench_function("send_and_receive", |b| b.iter(|| receive(&send(t0, black_box(DIGITS)))));
    g.finish();
}

fn main() {
    common::run(&[dtmf]);
}
