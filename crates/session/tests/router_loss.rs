//! The router under packet loss, in memory with real str0m peers: lost video packets are recovered
//! by NACK and retransmission on both hops (publisher → router, router → subscriber), so every
//! frame reaches the subscriber intact.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session::router::{Router, RouterConfig};
use session::{ConnectionId, StreamId};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

struct Peer {
    rtc: Rtc,
    mid: Mid,
    addr: SocketAddr,
    connected: bool,
    frames: Vec<Vec<u8>>,
}

fn peer(dir: Direction, host: u8, router: &mut Router, publish: bool, now: Instant) -> Peer {
    let addr = SocketAddr::from(([10, 0, 0, host], 5000));
    let mut rtc = Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, dir, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let stream = StreamId::from_wire("s");
    let owner = ConnectionId::from_wire(&host.to_string());
    let (_, answer) = if publish {
        router.add_publisher(now, owner, stream, &offer.to_sdp_string())
    } else {
        router.add_subscriber(now, owner, stream, &offer.to_sdp_string())
    }
    .expect("accepted");
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).expect("answer")).expect("ok");
    Peer { rtc, mid, addr, connected: false, frames: Vec::new() }
}

/// Delivers everything until quiet; `drop` decides which media datagrams are lost.
fn pump(
    router: &mut Router,
    peers: &mut [Peer],
    now: Instant,
    drop: &mut dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool,
) {
    let local: SocketAddr = "10.255.0.1:40000".parse().expect("addr");
    loop {
        let mut moved = false;
        for p in peers.iter_mut() {
            loop {
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        moved = true;
                        if !drop(p.addr, local, &t.contents) {
                            router.handle_receive(now, p.addr, &t.contents);
                        }
                    }
                    Ok(Output::Event(Event::Connected)) => p.connected = true,
                    Ok(Output::Event(Event::MediaData(d))) => p.frames.push(d.data.to_vec()),
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
        }
        while let Some(d) = router.poll_transmit() {
            moved = true;
            if drop(local, d.destination, &d.contents) {
                continue;
            }
            let Some(p) = peers.iter_mut().find(|p| p.addr == d.destination) else { continue };
            let Ok(contents) = d.contents.as_slice().try_into() else { continue };
            let input =
                Input::Receive(now, Receive { proto: Protocol::Udp, source: local, destination: p.addr, contents });
            let _ = p.rtc.handle_input(input);
        }
        while router.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

fn tick(router: &mut Router, peers: &mut [Peer], now: Instant) {
    router.handle_timeout(now);
    for p in peers.iter_mut() {
        let _ = p.rtc.handle_input(Input::Timeout(now));
    }
}

fn is_srtp_media(bytes: &[u8]) -> bool {
    // RTP (RFC 7983: first byte 128..=191) that is not RTCP (payload types 192..=223).
    bytes.len() > 12 && (128..=191).contains(&bytes[0]) && !(192..=223).contains(&bytes[1])
}

#[test]
fn lost_video_packets_are_recovered_on_both_hops() {
    let start = Instant::now();
    let mut now = start;
    let mut router = Router::new(RouterConfig { local: "10.255.0.1:40000".parse().expect("addr"), public: vec![] });
    let publisher = peer(Direction::SendOnly, 1, &mut router, true, now);
    let subscriber = peer(Direction::RecvOnly, 2, &mut router, false, now);
    let mut peers = vec![publisher, subscriber];
    let mut no_loss = |_: SocketAddr, _: SocketAddr, _: &[u8]| false;
    for _ in 0..400 {
        pump(&mut router, &mut peers, now, &mut no_loss);
        if peers.iter().all(|p| p.connected) {
            break;
        }
        now += Duration::from_millis(5);
        tick(&mut router, &mut peers, now);
    }
    assert!(peers.iter().all(|p| p.connected), "peers connect in memory");
    for _ in 0..40 {
        now += Duration::from_millis(5);
        tick(&mut router, &mut peers, now);
        pump(&mut router, &mut peers, now, &mut no_loss);
    }

    // Every 7th media packet lost on each hop (first transmissions and retransmissions alike).
    let mut counter = 0u32;
    let mut lossy = |_: SocketAddr, _: SocketAddr, bytes: &[u8]| {
        if !is_srtp_media(bytes) {
            return false;
        }
        counter += 1;
        counter.is_multiple_of(7)
    };
    let frames = 60u64;
    let mut sent = Vec::new();
    for n in 0..frames {
        let data: Vec<u8> = std::iter::once(b'V').chain((0..3000u32).map(|i| (i * 7 + n as u32) as u8)).collect();
        {
            let p = &mut peers[0];
            let w = p.rtc.writer(p.mid).expect("writer");
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt()).expect("vp8");
            let time = MediaTime::new(n * 3000, Frequency::NINETY_KHZ);
            w.write(pt, now, time, data.clone()).expect("write");
        }
        sent.push(data);
        // 33 ms per frame, in small steps so NACK timers run.
        for _ in 0..11 {
            pump(&mut router, &mut peers, now, &mut lossy);
            now += Duration::from_millis(3);
            tick(&mut router, &mut peers, now);
        }
    }
    for _ in 0..200 {
        pump(&mut router, &mut peers, now, &mut no_loss);
        now += Duration::from_millis(5);
        tick(&mut router, &mut peers, now);
    }
    let got = &peers[1].frames;
    assert!(counter > 100, "the loss pattern hit media packets ({counter} seen)");
    let intact = got.iter().filter(|f| sent.contains(f)).count();
    assert_eq!(got.len(), intact, "no altered frame reached the subscriber");
    assert!(
        intact as u64 >= frames - 2,
        "with one media packet in seven lost on each hop, NACK recovered {intact} of {frames} frames"
    );
}
