//! RFC 6464 audio levels reach subscribers: a WebRTC publisher's levels are forwarded with its
//! packets, and an external stream's (the SIP party's, measured by the bridge) are written on
//! them, so a browser or an SFU downstream can tell who is speaking without decoding.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect, peer, pump, tick};
use session::router::{FrameCodec, MediaFrame, Router, RouterConfig};
use session::StreamId;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};

fn router() -> Router {
    Router::new(RouterConfig { local: "10.255.0.1:40000".parse().expect("addr"), public: vec![] })
}

/// Lets a few milliseconds pass, everything delivered.
fn settle(router: &mut Router, peers: &mut [common::Peer], now: &mut Instant) {
    let mut no_loss = |_: std::net::SocketAddr, _: std::net::SocketAddr, _: &[u8]| false;
    for _ in 0..4 {
        pump(router, peers, *now, &mut no_loss);
        *now += Duration::from_millis(5);
        tick(router, peers, *now);
    }
}

/// A tiny Opus packet (a code-0 CELT frame's TOC and a byte).
const OPUS: [u8; 2] = [0xf8, 0xff];

#[test]
fn a_publishers_levels_are_forwarded() {
    let mut router = router();
    let start = Instant::now();
    let publisher = peer(MediaKind::Audio, Direction::SendOnly, 1, &mut router, true, start);
    let subscriber = peer(MediaKind::Audio, Direction::RecvOnly, 2, &mut router, false, start);
    let mut peers = vec![publisher, subscriber];
    let mut now = connect(&mut router, &mut peers, start);
    for (n, level) in [(0u64, -20i8), (1, -90), (2, -127)] {
        let p = &mut peers[0];
        let w = p.rtc.writer(p.mid).expect("writer").audio_level(level, level > -50);
        let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()).expect("opus");
        w.write(pt, now, MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ), OPUS.to_vec()).expect("write");
        settle(&mut router, &mut peers, &mut now);
    }
    let levels: Vec<Option<i8>> = peers[1].media.iter().map(|m| m.ext_vals.audio_level).collect();
    assert_eq!(levels, [Some(-20), Some(-90), Some(-127)]);
    let activity: Vec<Option<bool>> = peers[1].media.iter().map(|m| m.ext_vals.voice_activity).collect();
    assert_eq!(activity, [Some(true), Some(false), Some(false)]);
}

#[test]
fn an_external_streams_levels_are_written() {
    let mut router = router();
    let start = Instant::now();
    router.add_external(StreamId::from_wire("s")).expect("external");
    let subscriber = peer(MediaKind::Audio, Direction::RecvOnly, 2, &mut router, false, start);
    let mut peers = vec![subscriber];
    let mut now = connect(&mut router, &mut peers, start);
    for (n, level) in [(0u64, Some(20u8)), (1, Some(90)), (2, None)] {
        let frame = MediaFrame {
            codec: FrameCodec::Opus,
            rtp_time: n * 960,
            data: Arc::from(OPUS.as_slice()),
            contiguous: true,
            audio_level: level,
            arrival: now,
        };
        router.write_external(now, &StreamId::from_wire("s"), frame).expect("written");
        settle(&mut router, &mut peers, &mut now);
    }
    let levels: Vec<Option<i8>> = peers[0].media.iter().map(|m| m.ext_vals.audio_level).collect();
    assert_eq!(levels, [Some(-20), Some(-90), None], "in -dBov, as RFC 6464 carries them");
    let activity: Vec<Option<bool>> = peers[0].media.iter().map(|m| m.ext_vals.voice_activity).collect();
    assert_eq!(activity, [Some(true), Some(false), None], "voice above -50 dBov");
}
