//! The media router: RTP packets forwarded per second on one core, one publisher to N
//! subscribers, SRTP in (the publisher's packets are unprotected) and out (each subscriber's copy
//! is protected), with real str0m peers in memory (ICE, DTLS-SRTP, RTCP all running).
//!
//! Only the router's own work is timed (`iter_custom`): every datagram it receives (media, RTCP
//! and STUN from all peers), its timers, and the datagrams it emits. The clients' work (the
//! publisher's protect, the subscribers' unprotect) runs between the timed sections. The figure
//! of interest is `N / time per frame` = packets forwarded per second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use session::router::{Router, RouterConfig};
use session::{ConnectionId, StreamId};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    mid: Mid,
    connected: bool,
    received: usize,
}

struct World {
    router: Router,
    router_addr: SocketAddr,
    publisher: Client,
    subs: Vec<Client>,
    now: Instant,
    /// Time spent inside the router.
    router_time: Duration,
}

fn client(kind: MediaKind, dir: Direction, n: u16, now: Instant) -> (Client, String, str0m::change::SdpPendingOffer) {
    let addr: SocketAddr = SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 5000));
    let mut rtc = Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let mid = api.add_media(kind, dir, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    (Client { rtc, addr, mid, connected: false, received: 0 }, offer.to_sdp_string(), pending)
}

impl World {
    fn new(kind: MediaKind, subscribers: usize) -> World {
        let now = Instant::now();
        let router_addr: SocketAddr = "10.255.0.1:40000".parse().expect("addr");
        let mut router = Router::new(RouterConfig { local: router_addr, public: vec![] });
        let stream = StreamId::from_wire("bench-stream");
        let (mut publisher, offer, pending) = client(kind, Direction::SendOnly, 1, now);
        let (_, answer) =
            router.add_publisher(now, ConnectionId::from_wire("p"), stream.clone(), &offer).expect("publisher");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer");
        publisher.rtc.sdp_api().accept_answer(pending, answer).expect("accepted");
        let mut subs = Vec::new();
        for i in 0..subscribers {
            let (mut s, offer, pending) = client(kind, Direction::RecvOnly, 2 + i as u16, now);
            let owner = ConnectionId::from_wire(&format!("s{i}"));
            let (_, answer) = router.add_subscriber(now, owner, stream.clone(), &offer).expect("subscriber");
            s.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).expect("answer")).expect("ok");
            subs.push(s);
        }
        let mut w = World { router, router_addr, publisher, subs, now, router_time: Duration::ZERO };
        for _ in 0..2000 {
            w.pump();
            if w.publisher.connected && w.subs.iter().all(|s| s.connected) {
                // A little more for the router's side of DTLS to settle.
                for _ in 0..20 {
                    w.advance(Duration::from_millis(5));
                }
                return w;
            }
            w.advance(Duration::from_millis(5));
        }
        panic!("peers did not connect in memory");
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        let t = Instant::now();
        self.router.handle_timeout(now);
        self.router_time += t.elapsed();
        for c in std::iter::once(&mut self.publisher).chain(self.subs.iter_mut()) {
            let _ = c.rtc.handle_input(Input::Timeout(now));
        }
        self.pump();
    }

    /// Moves datagrams until nobody has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            let mut to_router = Vec::new();
            for c in std::iter::once(&mut self.publisher).chain(self.subs.iter_mut()) {
                loop {
                    match c.rtc.poll_output() {
                        Ok(Output::Transmit(t)) => to_router.push((c.addr, t.contents.to_vec())),
                        Ok(Output::Timeout(_)) | Err(_) => break,
                        Ok(Output::Event(Event::Connected)) => c.connected = true,
                        Ok(Output::Event(Event::MediaData(_))) => c.received += 1,
                        Ok(Output::Event(_)) => {}
                    }
                }
            }
            let t = Instant::now();
            for (from, bytes) in &to_router {
                self.router.handle_receive(self.now, *from, bytes);
            }
            let mut out = Vec::new();
            while let Some(d) = self.router.poll_transmit() {
                out.push(d);
            }
            while self.router.poll_event().is_some() {}
            self.router_time += t.elapsed();
            moved |= !to_router.is_empty() || !out.is_empty();
            for d in out {
                let Some(c) =
                    std::iter::once(&mut self.publisher).chain(self.subs.iter_mut()).find(|c| c.addr == d.destination)
                else {
                    continue;
                };
                let Ok(contents) = d.contents.as_slice().try_into() else { continue };
                let input = Input::Receive(
                    self.now,
                    Receive { proto: Protocol::Udp, source: self.router_addr, destination: c.addr, contents },
                );
                let _ = c.rtc.handle_input(input);
            }
            if !moved {
                return;
            }
        }
    }

    /// The publisher sends one frame (one RTP packet); everything is delivered.
    fn frame(&mut self, n: u64, kind: MediaKind) {
        let (codec, len, clock, step) = match kind {
            MediaKind::Audio => (Codec::Opus, 80, 48_000, 20),
            MediaKind::Video => (Codec::Vp8, 1000, 90_000, 33),
        };
        let mid = self.publisher.mid;
        if let Some(w) = self.publisher.rtc.writer(mid) {
            let pt = w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt());
            if let Some(pt) = pt {
                let time = MediaTime::new(n * step * clock / 1000, Frequency::new(clock as u32).expect("clock"));
                let data: Vec<u8> = (0..len).map(|i| (i as u64 + n) as u8).collect();
                let _ = w.write(pt, self.now, time, data);
            }
        }
        self.pump();
        self.advance(Duration::from_millis(step));
    }
}

fn router(c: &mut Criterion) {
    let mut g = c.benchmark_group("router_forward");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (kind, label) in [(MediaKind::Audio, "opus_80B"), (MediaKind::Video, "vp8_1000B")] {
        for subs in [1usize, 10, 50] {
            let mut world = World::new(kind, subs);
            let mut n = 0u64;
            g.throughput(Throughput::Elements(subs as u64));
            g.bench_with_input(BenchmarkId::new(label, subs), &subs, |b, _| {
                b.iter_custom(|iters| {
                    let before = world.router_time;
                    for _ in 0..iters {
                        n += 1;
                        world.frame(n, kind);
                    }
                    world.router_time - before
                })
            });
            // A sanity check of a measured run (in `cargo test` mode a bench runs a frame or two,
            // too few to judge).
            let got: usize = world.subs.iter().map(|s| s.received).sum();
            if n >= 100 {
                let sent = n * subs as u64;
                assert!(got as u64 >= sent * 9 / 10, "{label}/{subs}: only {got} of {sent} frames arrived");
            }
        }
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    router(&mut c);
    c.final_summary();
}
