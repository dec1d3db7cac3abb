//! The router under packet loss, in memory with real str0m peers: lost video packets are recovered
//! by NACK and retransmission on both hops (publisher → router, router → subscriber), so every
//! frame reaches the subscriber intact.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{connect, peer, pump, tick};
use session::router::{Router, RouterConfig};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};

fn is_srtp_media(bytes: &[u8]) -> bool {
    // RTP (RFC 7983: first byte 128..=191) that is not RTCP (payload types 192..=223).
    bytes.len() > 12 && (128..=191).contains(&bytes[0]) && !(192..=223).contains(&bytes[1])
}

#[test]
fn lost_video_packets_are_recovered_on_both_hops() {
    let mut router = Router::new(RouterConfig { local: "10.255.0.1:40000".parse().expect("addr"), public: vec![] });
    let start = Instant::now();
    let publisher = peer(MediaKind::Video, Direction::SendOnly, 1, &mut router, true, start);
    let subscriber = peer(MediaKind::Video, Direction::RecvOnly, 2, &mut router, false, start);
    let mut peers = vec![publisher, subscriber];
    let mut now = connect(&mut router, &mut peers, start);
    let mut no_loss = |_: SocketAddr, _: SocketAddr, _: &[u8]| false;

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
