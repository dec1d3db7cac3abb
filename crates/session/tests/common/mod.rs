//! In-memory str0m peers around a router: what the router tests share.
#![allow(dead_code)] // Each test crate uses its own subset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session::router::Router;
use session::{ConnectionId, StreamId};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// One browser's side: its peer connection, its one m-line, and what it received.
pub struct Peer {
    pub rtc: Rtc,
    pub mid: Mid,
    pub addr: SocketAddr,
    pub connected: bool,
    pub frames: Vec<Vec<u8>>,
    /// Every media frame received, whole.
    pub media: Vec<MediaData>,
}

/// A peer at 10.0.0.`host` publishing (or subscribing to) stream `s` with one `kind` m-line.
pub fn peer(kind: MediaKind, dir: Direction, host: u8, router: &mut Router, publish: bool, now: Instant) -> Peer {
    let addr = SocketAddr::from(([10, 0, 0, host], 5000));
    let mut rtc = Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags())).build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let mid = api.add_media(kind, dir, None, None, None);
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
    Peer { rtc, mid, addr, connected: false, frames: Vec::new(), media: Vec::new() }
}

/// Delivers everything until quiet; `drop` decides which media datagrams are lost.
pub fn pump(
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
                    Ok(Output::Event(Event::MediaData(d))) => {
                        p.frames.push(d.data.to_vec());
                        p.media.push(d);
                    }
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

/// Advances everyone's clock to `now`.
pub fn tick(router: &mut Router, peers: &mut [Peer], now: Instant) {
    router.handle_timeout(now);
    for p in peers.iter_mut() {
        let _ = p.rtc.handle_input(Input::Timeout(now));
    }
}

/// Runs until every peer is connected, then a little longer; returns the time reached.
pub fn connect(router: &mut Router, peers: &mut [Peer], mut now: Instant) -> Instant {
    let mut no_loss = |_: SocketAddr, _: SocketAddr, _: &[u8]| false;
    for _ in 0..400 {
        pump(router, peers, now, &mut no_loss);
        if peers.iter().all(|p| p.connected) {
            break;
        }
        now += Duration::from_millis(5);
        tick(router, peers, now);
    }
    assert!(peers.iter().all(|p| p.connected), "peers connect in memory");
    for _ in 0..40 {
        now += Duration::from_millis(5);
        tick(router, peers, now);
        pump(router, peers, now, &mut no_loss);
    }
    now
}
