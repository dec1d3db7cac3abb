//! SIP hot paths: parse + serialise, and whole in-memory calls.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sip_signaling::{parse_message, Framing, Limits};
use std::time::{Duration, Instant};

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("sip_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite", |b| {
        b.iter(|| parse_message(black_box(benches::INVITE), &limits, Framing::Datagram))
    });
    g.bench_function("parse_serialise_invite", |b| {
        b.iter(|| parse_message(black_box(benches::INVITE), &limits, Framing::Datagram).map(|m| m.to_bytes()))
    });
    g.bench_function("parse_serialise_200", |b| {
        b.iter(|| parse_message(black_box(benches::OK), &limits, Framing::Datagram).map(|m| m.to_bytes()))
    });
    // The same input through rsip 0.4 for a ratio.
    g.bench_function("rsip_parse_serialise_invite", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(benches::INVITE)).map(|m| m.to_string()))
    });
    g.finish();
}

fn calls(c: &mut Criterion) {
    let sdp = Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
    let mut g = c.benchmark_group("sip_call");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_to_bye_in_memory", |b| {
        let mut ua = benches::bench_ua();
        let mut now = Instant::now();
        b.iter(|| {
            // One call per simulated millisecond: transactions linger for
            // their RFC timers (Timer M 32 s, Timer K 5 s) and expire
            // through the timer heap while the benchmark runs.
            now += Duration::from_millis(1);
            ua.handle_timeout(now);
            let n = benches::one_call(&mut ua, now, &sdp);
            assert_eq!(n, 7);
        });
    });
    g.finish();
}

criterion_group! {
    name = sip;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = parse, calls
}
criterion_main!(sip);
