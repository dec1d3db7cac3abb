//! Video on the SIP leg end to end (`video: true`): publishers in a session (a WebRTC participant,
//! the str0m test peer, among them), the gateway dialling a small SIP user agent written here, and
//! `ffmpeg` decoding the grid the gateway sends, checked from pixels; then keyframes on PLI, the
//! SIP party's video reaching a WebRTC subscriber, and keyframe requests passed to the SIP side,
//! checked on the wire.

mod common;
#[path = "../../crates/rest-api/tests/peer/mod.rs"]
mod peer;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge::{BridgeConfig, VideoConfig};
use interop_tests::{free_port, require, Baresip};
use media_mixer::grid::I420;
use media_mixer::h264::{H264Decoder, H264Encoder};
use media_mixer::packetize::{self, Depacketized, H264Depacketizer, Vp8Depacketizer};
use media_mixer::vp8::{Vp8Decoder, Vp8Encoder};
use sdp_negotiation::Codec;
use serde_json::json;
use session::router::{FrameCodec, MediaFrame};
use session::service::SessionService;
use session::{ConnectionKind, SessionId, StreamId, StreamSpec};
use srtp_transport::rtcp::{self, RtcpPacket};
use srtp_transport::{RtpHeader, RtpPacket};
use tokio::net::UdpSocket;

use common::uas::uas;
use common::*;

// BT.601 video-range colours.
const RED: (u8, u8, u8) = (81, 90, 240);
const GREEN: (u8, u8, u8) = (145, 54, 34);
const BLUE: (u8, u8, u8) = (41, 240, 110);
const MAGENTA: (u8, u8, u8) = (106, 202, 222);

/// The payload type the offer gives `encoding` (e.g. `H264/90000`).
fn offered_pt(offer: &str, encoding: &str) -> Option<u8> {
    offer.lines().find_map(|l| {
        let rest = l.strip_prefix("a=rtpmap:")?;
        let (pt, enc) = rest.split_once(' ')?;
        enc.trim().eq_ignore_ascii_case(encoding).then(|| pt.parse().ok()).flatten()
    })
}

/// The port of the offer's video m-line.
fn offered_video_port(offer: &str) -> Option<u16> {
    offer.lines().find_map(|l| l.strip_prefix("m=video ")?.split_whitespace().next()?.parse().ok())
}

fn rtpmap(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "H264/90000",
        _ => "VP8/90000",
    }
}

/// Our answer: PCMU audio to a port nobody reads, and video to `video_port` (0 declines it).
fn answer_sdp(offer: &str, codec: Codec, video_port: u16, rtcp_mux: bool) -> String {
    let pt = offered_pt(offer, rtpmap(codec)).unwrap_or(96);
    let mut sdp = format!(
        "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        free_port()
    );
    if offered_video_port(offer).is_none() {
        return sdp;
    }
    sdp.push_str(&format!("m=video {video_port} RTP/AVP {pt}\r\na=rtpmap:{pt} {}\r\n", rtpmap(codec)));
    if codec == Codec::H264 {
        sdp.push_str(&format!("a=fmtp:{pt} profile-level-id=42e01f;packetization-mode=1\r\n"));
    }
    if rtcp_mux {
        sdp.push_str("a=rtcp-mux\r\n");
    }
    sdp
}

fn video_gateway_config(codec: Codec) -> BridgeConfig {
    BridgeConfig {
        video: VideoConfig {
            codecs: vec![codec],
            width: 640,
            height: 360,
            fps: 15,
            bitrate: 600_000,
            ..VideoConfig::default()
        },
        // The test endpoint sends no audio.
        no_rtp_timeout: Duration::from_secs(120),
        // RTCP reports every second or so, for the tests to see them.
        rtcp_interval: Duration::from_secs(1),
        ..BridgeConfig::default()
    }
}

/// A session participant publishing VP8 video of one colour (320x240 at first, 15 fps), with
/// keyframes when asked for; `size` changes its resolution mid-stream.
struct Publisher {
    connection: session::ConnectionId,
    size: Arc<Mutex<(u32, u32)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn abort(&self) {
        self.task.abort();
    }
}

fn video_publisher(service: &SessionService, sid: &SessionId, id: &str, colour: (u8, u8, u8)) -> Publisher {
    let publisher = service.connect_external(sid, ConnectionKind::Client, id.into()).expect("publisher");
    let stream = StreamId::from_wire(id);
    let spec = StreamSpec { name: id.into(), has_audio: false, has_video: true, video_type: None };
    let (_, mut wanted) = service.publish_external(&publisher.id, stream.clone(), spec, Vec::new()).expect("publish");
    let service = service.clone();
    let size = Arc::new(Mutex::new((320, 240)));
    let wanted_size = size.clone();
    let task = tokio::spawn(async move {
        let mut current = (0, 0);
        let mut enc = None;
        let mut picture = None;
        let mut tick = tokio::time::interval(Duration::from_millis(66));
        for n in 0..900u64 {
            tick.tick().await;
            let mut keyframe = n == 0;
            while wanted.try_recv().is_ok() {
                keyframe = true;
            }
            let want = *wanted_size.lock().expect("size");
            if want != current {
                current = want;
                enc = Some(Vp8Encoder::new(want.0, want.1, 300_000, 15).expect("vp8 encoder"));
                picture = Some(I420::filled(want.0, want.1, colour).expect("picture"));
                keyframe = true;
            }
            let (Some(enc), Some(picture)) = (enc.as_mut(), picture.as_ref()) else { continue };
            let data = enc.encode(picture, keyframe).expect("encode");
            let frame = MediaFrame {
                codec: FrameCodec::Vp8,
                rtp_time: n * 6000,
                data: data.into(),
                contiguous: true,
                audio_level: None,
                arrival: std::time::Instant::now(),
            };
            let _ = service.write_frame(&stream, frame);
        }
    });
    Publisher { connection: publisher.id, size, task }
}

/// A WebRTC participant (the str0m test peer) that joins over the signalling WebSocket and
/// publishes real VP8 of one colour (320x240), with keyframes when asked for.
async fn webrtc_publisher(g: &Gateway, sid: &SessionId, colour: (u8, u8, u8)) -> (peer::Signal, peer::Peer) {
    let mut signal = peer::Signal::connect(g.port).await;
    let joined = signal.request(json!({"type": "join", "sessionId": sid.as_str(), "token": client_token(sid)})).await;
    assert_eq!(joined["type"], "ok", "{joined}");
    let mut enc = Vp8Encoder::new(320, 240, 300_000, 30).expect("vp8");
    let picture = I420::filled(320, 240, colour).expect("picture");
    let camera = move |n: u32, asked: bool| enc.encode(&picture, n == 0 || asked).expect("encode");
    let offer = peer::Offer::new(peer::Mode::Publish, false, true).await.with_video_source(Box::new(camera));
    let reply = signal.request(json!({"type": "publish", "sdp": offer.sdp, "name": "camera"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let publisher = offer.answer(reply["sdp"].as_str().expect("answer"));
    assert!(publisher.wait(Duration::from_secs(10), |l| l.connected).await, "the WebRTC publisher connected");
    (signal, publisher)
}

/// An even UDP port whose successor is free too (ffmpeg takes RTP and RTCP).
fn free_rtp_port() -> u16 {
    // Linux gives bind(0) odd ports: step down to the even one below and check the pair.
    loop {
        let p = free_port() & !1;
        let rtp = std::net::UdpSocket::bind(("127.0.0.1", p));
        let rtcp = std::net::UdpSocket::bind(("127.0.0.1", p + 1));
        if rtp.is_ok() && rtcp.is_ok() {
            return p;
        }
    }
}

/// `(r, g, b)` of pixel `(x, y)` in an RGB24 frame `width` wide.
fn rgb(frame: &[u8], width: usize, x: usize, y: usize) -> (u8, u8, u8) {
    let i = (y * width + x) * 3;
    (frame[i], frame[i + 1], frame[i + 2])
}

fn is_colour((r, g, b): (u8, u8, u8), want: &str) -> bool {
    match want {
        "red" => r > 180 && g < 90 && b < 90,
        "green" => g > 180 && r < 90 && b < 90,
        "blue" => b > 180 && r < 90 && g < 90,
        // The placeholder of a tile without video: dark grey (Y 48), not black.
        "placeholder" => [r, g, b].iter().all(|c| (25..=55).contains(c)),
        _ => r < 20 && g < 20 && b < 20,
    }
}

/// Three video publishers (red, green, blue, 4:3) and an audio-only one, and the gateway dialling
/// our user agent with `video: true`; ffmpeg receives the video from an SDP file and decodes it.
/// The grid is 2x2: the three colours in publication order, aspect ratio kept (black bars left and
/// right of each 4:3 picture in its 16:9 cell), the audio-only participant's cell the placeholder.
/// In H.264 and in VP8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_grid_of_the_session() {
    require("ffmpeg", "ffmpeg");
    let dir = std::env::temp_dir().join(format!("video-grid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for codec in [Codec::H264, Codec::Vp8] {
        let mut g = gateway(video_gateway_config(codec)).await;
        let sid = routed(&g);
        // Red and blue from synthetic publishers, green from a WebRTC participant (str0m, DTLS-SRTP,
        // through the router), published in that order.
        let mut publishers = vec![video_publisher(&g.service, &sid, "red", RED)];
        let (mut signal, webrtc) = webrtc_publisher(&g, &sid, GREEN).await;
        publishers.push(video_publisher(&g.service, &sid, "blue", BLUE));
        // An audio-only participant keeps a tile too, with the placeholder.
        let voice = g.service.connect_external(&sid, ConnectionKind::Client, "voice".into()).expect("voice");
        let spec = StreamSpec { name: "voice".into(), has_audio: true, has_video: false, video_type: None };
        g.service.publish_external(&voice.id, StreamId::from_wire("voice"), spec, Vec::new()).expect("publish voice");
        let port = free_rtp_port();
        let sdp_path = dir.join(format!("{}.sdp", rtpmap(codec).replace('/', "-")));
        let raw_path = dir.join(format!("{}.rgb", rtpmap(codec).replace('/', "-")));
        let fmtp = if codec == Codec::H264 { "a=fmtp:102 packetization-mode=1\r\n" } else { "" };
        std::fs::write(
            &sdp_path,
            format!(
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=grid\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video {port} RTP/AVP 102\r\na=rtpmap:102 {}\r\n{fmtp}",
                rtpmap(codec)
            ),
        )
        .expect("sdp");
        let mut ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file,udp,rtp"])
            .arg("-i")
            .arg(&sdp_path)
            // Each decoded frame once (no duplicates to fill a constant rate).
            .args(["-fps_mode", "passthrough", "-frames:v", "45", "-f", "rawvideo", "-pix_fmt", "rgb24", "-y"])
            .arg(&raw_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg");
        // ffmpeg listening before the call starts (its first frames carry the parameter sets).
        for _ in 0..100 {
            let udp = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
            if udp.lines().any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&format!(":{port:04X}")))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        // Our answer sends the grid to ffmpeg, payload type 102 (our offer's, which ffmpeg expects).
        let far = uas(move |offer| {
            let mut a = answer_sdp(offer, codec, port, false);
            if let Some(pt) = offered_pt(offer, rtpmap(codec)) {
                a = a.replace(&format!(" {pt}\r\n"), " 102\r\n").replace(&format!(":{pt} "), ":102 ");
            }
            a
        })
        .await;
        let (status, answer) =
            dial(&g, &sid, json!({"uri": format!("sip:grid@127.0.0.1:{}", far.port), "video": true})).await;
        assert_eq!(status, 200, "{answer}");
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(s)) = ffmpeg.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = ffmpeg.kill();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut err = String::new();
        if let Some(mut e) = ffmpeg.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(status.is_some_and(|s| s.success()), "ffmpeg decoded 45 frames of {codec:?}: {status:?}\n{err}");
        let cid = answer["connectionId"].as_str().expect("cid");
        let events = force_disconnect(&mut g, &sid, cid).await;
        for p in publishers {
            p.abort();
        }
        let _ = signal.request(json!({"type": "leave"})).await;
        webrtc.stop().await;
        assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
        let raw = std::fs::read(&raw_path).expect("frames");
        let size = 640 * 360 * 3;
        assert!(raw.len() >= size && raw.len().is_multiple_of(size), "whole 640x360 frames: {} bytes", raw.len());
        let last = &raw[raw.len() - size..];
        for ((x, y), want) in
            [((160, 90), "red"), ((480, 90), "green"), ((160, 270), "blue"), ((480, 270), "placeholder")]
        {
            let px = rgb(last, 640, x, y);
            assert!(is_colour(px, want), "{codec:?}: the tile at ({x}, {y}) is {want}: {px:?}");
        }
        // 320x240 in a 320x180 cell: 240x180, centred, black bars 40 pixels wide.
        for (x, y) in [(15, 90), (305, 90), (335, 90), (15, 270)] {
            let px = rgb(last, 640, x, y);
            assert!(is_colour(px, "black"), "{codec:?}: ({x}, {y}) is a black bar: {px:?}");
        }
        let inside = rgb(last, 640, 60, 90);
        assert!(is_colour(inside, "red"), "{codec:?}: (60, 90) is inside the red picture: {inside:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// What the test endpoint saw on its video port.
#[derive(Default)]
struct Seen {
    /// Each grid frame: when, and whether it was a keyframe.
    frames: Vec<(Instant, bool)>,
    /// The gateway's video SSRC.
    ssrc: Option<u32>,
    /// PLIs for our SSRC.
    plis: Vec<Instant>,
    /// Every compound RTCP packet from the gateway.
    rtcp: Vec<Vec<RtcpPacket>>,
    /// The size of the last grid picture decoded.
    size: Option<(u32, u32)>,
}

/// The rest of the video path, per codec, with the test endpoint reading and writing RTP itself:
/// a PLI yields a keyframe of the grid; the SIP party's video (magenta) reaches the session as
/// decodable frames of its stream; a keyframe request for that stream reaches the SIP party as a
/// PLI. Declining video (port 0) leaves an audio-only call, and `video: false` offers no video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframes_and_the_sip_party_video() {
    for codec in [Codec::H264, Codec::Vp8] {
        let mut g = gateway(video_gateway_config(codec)).await;
        let sid = routed(&g);
        let publisher = video_publisher(&g.service, &sid, "red", RED);
        let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let media_port = media.local_addr().expect("addr").port();
        // The endpoint receives at most 480x270 (RFC 6236 imageattr): the canvas shrinks to fit.
        let mut far = uas(move |offer| {
            let pt = offered_pt(offer, rtpmap(codec)).unwrap_or(96);
            format!("{}a=imageattr:{pt} recv [x=[160:480],y=[120:270]]\r\n", answer_sdp(offer, codec, media_port, true))
        })
        .await;
        let (status, answer) =
            dial(&g, &sid, json!({"uri": format!("sip:cam@127.0.0.1:{}", far.port), "video": true})).await;
        assert_eq!(status, 200, "{answer}");
        let offer = (&mut far.offer).await.expect("offer");
        assert!(offer.contains("packetization-mode=1") == (codec == Codec::H264), "{offer}");
        let pt = offered_pt(&offer, rtpmap(codec)).expect("offered");
        let gateway_video = std::net::SocketAddr::from(([127, 0, 0, 1], offered_video_port(&offer).expect("m=video")));
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
        let sip_stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));

        // Read the grid as it comes.
        let log = Arc::new(Mutex::new(Seen::default()));
        let our_ssrc = 0x5eed_u32;
        let reader = {
            let (media, log) = (media.clone(), log.clone());
            tokio::spawn(async move {
                let mut h264 = H264Depacketizer::default();
                let mut vp8 = Vp8Depacketizer::default();
                let (mut h264_dec, mut vp8_dec) = (H264Decoder::new().expect("dec"), Vp8Decoder::new().expect("dec"));
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = media.recv(&mut buf).await {
                    let b = &buf[..n];
                    if b.len() > 1 && (200..=206).contains(&b[1]) {
                        let packets = rtcp::parse_compound(b).unwrap_or_default();
                        let mut l = log.lock().expect("log");
                        if packets.iter().any(|p| matches!(p, RtcpPacket::Pli { media, .. } if *media == our_ssrc)) {
                            l.plis.push(Instant::now());
                        }
                        l.rtcp.push(packets);
                        continue;
                    }
                    let Ok(p) = RtpPacket::parse(b) else { continue };
                    if p.payload_type().0 != pt {
                        continue;
                    }
                    let got = match codec {
                        Codec::H264 => h264.push(p.seq(), p.timestamp(), p.marker(), p.payload()),
                        _ => vp8.push(p.seq(), p.marker(), p.payload()),
                    };
                    let mut l = log.lock().expect("log");
                    l.ssrc = Some(p.ssrc().0);
                    if let Depacketized::Frame(f) = got {
                        l.frames.push((Instant::now(), f.keyframe));
                        let pic = if codec == Codec::H264 { h264_dec.decode(&f.data) } else { vp8_dec.decode(&f.data) };
                        if let Ok(Some(p)) = pic {
                            l.size = Some((p.width, p.height));
                        }
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (gateway_ssrc, before) = {
            let l = log.lock().expect("log");
            (l.ssrc, l.frames.clone())
        };
        assert!(before.len() >= 15, "{codec:?}: about 15 grid frames a second arrive ({})", before.len());
        assert!(before[0].1, "{codec:?}: the first grid frame is a keyframe");
        let size = log.lock().expect("log").size;
        assert_eq!(size, Some((480, 270)), "{codec:?}: the canvas fits the endpoint's imageattr");
        let quiet_from = Instant::now() - Duration::from_millis(1500);
        let recent_keyframes = before.iter().filter(|(t, k)| *k && *t > quiet_from).count();
        assert_eq!(recent_keyframes, 0, "{codec:?}: no keyframes while nobody asks");
        let pli = rtcp::write_compound(&[
            RtcpPacket::ReceiverReport { ssrc: our_ssrc, reports: Vec::new() },
            RtcpPacket::Pli { sender: our_ssrc, media: gateway_ssrc.expect("gateway SSRC") },
        ]);
        let asked = Instant::now();
        media.send_to(&pli, gateway_video).await.expect("send PLI");
        // A second request 200 ms later (the keyframe it answered may be the one lost): answered
        // too, once the 300 ms between forced keyframes are over.
        tokio::time::sleep(Duration::from_millis(200)).await;
        media.send_to(&pli, gateway_video).await.expect("send PLI");
        tokio::time::sleep(Duration::from_millis(800)).await;
        let keyframes: Vec<Duration> =
            log.lock().expect("log").frames.iter().filter(|(t, k)| *k && *t > asked).map(|(t, _)| *t - asked).collect();
        assert!(
            keyframes.first().is_some_and(|d| *d < Duration::from_millis(500)),
            "{codec:?}: a keyframe follows the PLI ({keyframes:?})"
        );
        assert_eq!(keyframes.len(), 2, "{codec:?}: and another the second PLI ({keyframes:?})");
        // RFC 5168: a hardware endpoint's keyframe request in a SIP INFO.
        let asked = Instant::now();
        far.info(
            "application/media_control+xml",
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?><media_control><vc_primitive><to_encoder>\
<picture_fast_update/></to_encoder></vc_primitive></media_control>",
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let keyframe_after =
            log.lock().expect("log").frames.iter().find(|(t, k)| *k && *t > asked).map(|(t, _)| *t - asked);
        assert!(
            keyframe_after.is_some_and(|d| d < Duration::from_millis(500)),
            "{codec:?}: a keyframe follows the INFO ({keyframe_after:?})"
        );

        // The SIP party's camera (magenta) into the session, to a WebRTC subscriber of its stream.
        let mut signal = peer::Signal::connect(g.port).await;
        let joined =
            signal.request(json!({"type": "join", "sessionId": sid.as_str(), "token": client_token(&sid)})).await;
        assert_eq!(joined["type"], "ok", "{joined}");
        let offer = peer::Offer::new(peer::Mode::Subscribe, false, true).await;
        let reply =
            signal.request(json!({"type": "subscribe", "streamId": sip_stream.as_str(), "sdp": offer.sdp})).await;
        assert_eq!(reply["type"], "ok", "{reply}");
        let viewer = offer.answer(reply["sdp"].as_str().expect("answer"));
        assert!(viewer.wait(Duration::from_secs(10), |l| l.connected).await, "the WebRTC subscriber connected");
        let (_, mut tap) = g.service.tap(&sip_stream).expect("tap");
        // Thirty frames, with keyframes at the start and half way (the subscriber's own request
        // is checked below).
        let camera = SipCamera { codec, pt, colour: MAGENTA, ssrc: our_ssrc, frames: 30 };
        camera.spawn(media.clone(), gateway_video).await.expect("the camera ran");
        let mut decoded = None;
        let mut frames_in = 0;
        let (mut h264_dec, mut vp8_dec) = (H264Decoder::new().expect("dec"), Vp8Decoder::new().expect("dec"));
        while let Ok(f) = tap.try_recv() {
            let want = if codec == Codec::H264 { FrameCodec::H264 } else { FrameCodec::Vp8 };
            if f.codec != want {
                continue;
            }
            frames_in += 1;
            let pic = match codec {
                Codec::H264 => h264_dec.decode(&f.data),
                _ => vp8_dec.decode(&f.data),
            };
            if let Ok(Some(p)) = pic {
                decoded = Some(p);
            }
        }
        assert!(frames_in >= 29, "{codec:?}: the session got the SIP party's frames ({frames_in})");
        let magenta = |pic: &I420| {
            let (y, u, v) = pic.pixel(160, 120);
            pic.width == 320 && y.abs_diff(MAGENTA.0) < 12 && u.abs_diff(MAGENTA.1) < 12 && v.abs_diff(MAGENTA.2) < 12
        };
        let pic = decoded.unwrap_or_else(|| panic!("{codec:?}: decodable frames"));
        assert!(magenta(&pic), "{codec:?}: magenta in the session: {:?}", pic.pixel(160, 120));
        // The WebRTC subscriber decodes the same.
        let seen_by_viewer = viewer.with(|l| {
            let (mut h, mut v) = (H264Decoder::new().expect("dec"), Vp8Decoder::new().expect("dec"));
            let mut last = None;
            for f in &l.video_frames {
                let pic = if codec == Codec::H264 { h.decode(f) } else { v.decode(f) };
                if let Ok(Some(p)) = pic {
                    last = Some(p);
                }
            }
            (l.video_frames.len(), last)
        });
        assert!(seen_by_viewer.0 >= 15, "{codec:?}: frames at the WebRTC subscriber: {}", seen_by_viewer.0);
        let pic = seen_by_viewer.1.unwrap_or_else(|| panic!("{codec:?}: the subscriber decodes the SIP party's video"));
        assert!(magenta(&pic), "{codec:?}: magenta at the subscriber: {:?}", pic.pixel(160, 120));

        // The subscriber's keyframe request (RTCP PLI to the router) reaches the SIP party as a
        // PLI and, since its SDP agreed to no RTCP feedback, as an RFC 5168 INFO (at most one a
        // second: the wait lets the one the subscription asked for go by).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let asked = Instant::now();
        viewer.request_keyframe();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let pli_after = log.lock().expect("log").plis.iter().find(|t| **t > asked).map(|t| *t - asked);
        assert!(pli_after.is_some(), "{codec:?}: the SIP party was asked for a keyframe");
        let info_after = far.infos().into_iter().find(|i| i.at > asked);
        assert!(
            info_after.as_ref().is_some_and(
                |i| i.content_type == "application/media_control+xml" && i.body.contains("<picture_fast_update/>")
            ),
            "{codec:?}: and by INFO: {info_after:?}"
        );
        // RTCP (RFC 3550): every compound packet starts with a report and carries our CNAME (the
        // PLIs too); sender reports count the grid's packets.
        let (compounds, ssrc) = {
            let l = log.lock().expect("log");
            (l.rtcp.clone(), l.ssrc.expect("gateway SSRC"))
        };
        assert!(compounds.iter().all(|c| matches!(
            c.first(),
            Some(RtcpPacket::SenderReport { ssrc: s, .. } | RtcpPacket::ReceiverReport { ssrc: s, .. }) if *s == ssrc
        )), "{codec:?}: a report first: {compounds:?}");
        assert!(
            compounds.iter().all(|c| c.iter().any(|p| matches!(p, RtcpPacket::Sdes(chunks) if chunks[0].0 == ssrc))),
            "{codec:?}: our CNAME in each: {compounds:?}"
        );
        let sent = compounds.iter().filter_map(|c| match c.first() {
            Some(RtcpPacket::SenderReport { packets, .. }) => Some(*packets),
            _ => None,
        });
        assert!(sent.max().is_some_and(|n| n > 50), "{codec:?}: sender reports of the grid: {compounds:?}");

        hang_up(&mut g, &sid, &answer).await;
        reader.abort();
        publisher.abort();
        viewer.stop().await;
        let _ = signal.request(json!({"type": "leave"})).await;
    }

    // Declined video (port 0): an audio-only call. `video: false`: no video offered.
    let mut g = gateway(video_gateway_config(Codec::H264)).await;
    let sid = routed(&g);
    for video in [true, false] {
        let mut far = uas(move |offer| answer_sdp(offer, Codec::H264, 0, false)).await;
        let (status, answer) =
            dial(&g, &sid, json!({"uri": format!("sip:audio@127.0.0.1:{}", far.port), "video": video})).await;
        assert_eq!(status, 200, "{answer}");
        let offer = (&mut far.offer).await.expect("offer");
        assert_eq!(offer.contains("m=video"), video, "{offer}");
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "video {video}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cid = answer["connectionId"].as_str().expect("cid");
        let events = force_disconnect(&mut g, &sid, cid).await;
        assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "video {video}: {events:?}");
    }
}

/// The colour name nearest to a YUV pixel.
fn colour_name((y, u, v): (u8, u8, u8)) -> &'static str {
    [("red", RED), ("green", GREEN), ("blue", BLUE), ("black", (16, 128, 128)), ("placeholder", (48, 128, 128))]
        .into_iter()
        .min_by_key(|(_, (cy, cu, cv))| {
            u32::from(y.abs_diff(*cy)).pow(2) + u32::from(u.abs_diff(*cu)).pow(2) + u32::from(v.abs_diff(*cv)).pow(2)
        })
        .map(|(n, _)| n)
        .unwrap_or("?")
}

/// The grid follows the session: a call dialled with `streams: [green, blue]` never shows red;
/// green alone fills the canvas (4:3 in 16:9, black bars); blue joining makes it 2x2; green
/// leaving gives blue the whole canvas; blue switching to 16:9 mid-stream fills it edge to edge.
/// Read from the grid the gateway sends, decoded here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grid_reflows_as_streams_join_leave_and_resize() {
    let mut g = gateway(video_gateway_config(Codec::Vp8)).await;
    let sid = routed(&g);
    let red = video_publisher(&g.service, &sid, "red", RED);
    let green = video_publisher(&g.service, &sid, "green", GREEN);
    let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let media_port = media.local_addr().expect("addr").port();
    let far = uas(move |offer| answer_sdp(offer, Codec::Vp8, media_port, true)).await;
    let (status, answer) = dial(
        &g,
        &sid,
        json!({"uri": format!("sip:grid@127.0.0.1:{}", far.port), "video": true, "streams": ["green", "blue"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let (reader, latest) = grid_reader(media.clone());
    // The grid at these points, once it shows what is expected (bounded wait).
    async fn grid_shows(latest: &Mutex<Option<I420>>, expect: &[((u32, u32), &str)]) -> Vec<&'static str> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let names: Vec<&'static str> = match latest.lock().expect("latest").as_ref() {
                Some(p) => expect.iter().map(|((x, y), _)| colour_name(p.pixel(*x, *y))).collect(),
                None => Vec::new(),
            };
            if names.iter().copied().eq(expect.iter().map(|(_, n)| *n)) || Instant::now() > deadline {
                return names;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let full_4_3 = [((320, 180), "green"), ((40, 180), "black"), ((600, 180), "black")];
    assert_eq!(grid_shows(&latest, &full_4_3).await, ["green", "black", "black"], "green alone, full canvas");
    let blue = video_publisher(&g.service, &sid, "blue", BLUE);
    let two = [((160, 90), "green"), ((480, 90), "blue"), ((160, 270), "black"), ((480, 270), "black")];
    assert_eq!(grid_shows(&latest, &two).await, ["green", "blue", "black", "black"], "blue joins: 2x2");
    g.service
        .disconnect_as(&sid, &green.connection, session::DisconnectReason::ClientDisconnected)
        .expect("green leaves");
    green.abort();
    let blue_full = [((320, 180), "blue"), ((40, 180), "black"), ((600, 180), "black")];
    assert_eq!(grid_shows(&latest, &blue_full).await, ["blue", "black", "black"], "green left: blue alone");
    *blue.size.lock().expect("size") = (640, 360);
    let edge_to_edge = [((320, 180), "blue"), ((40, 180), "blue"), ((600, 180), "blue")];
    assert_eq!(grid_shows(&latest, &edge_to_edge).await, ["blue", "blue", "blue"], "blue at 16:9 fills the canvas");
    hang_up(&mut g, &sid, &answer).await;
    reader.abort();
    red.abort();
    blue.abort();
}

/// A real SIP video phone: baresip (VP8, a synthetic camera) with SRTP keyed by SDES, then by
/// DTLS-SRTP (one handshake per m-line). Its video reaches the session as decodable VP8 of its
/// camera's size, and it receives and decodes the grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_video_over_srtp_both_ways() {
    for (offer, mediaenc) in [(bridge::SrtpOffer::Sdes, "srtp-mand"), (bridge::SrtpOffer::Dtls, "dtls_srtp")] {
        baresip_video(offer, mediaenc).await;
    }
}

async fn baresip_video(offer: bridge::SrtpOffer, mediaenc: &str) {
    let mut config = video_gateway_config(Codec::Vp8);
    config.srtp_offer_by_project.insert(KEY.to_owned(), offer);
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let red = video_publisher(&g.service, &sid, "red", RED);
    let port = free_port();
    let bs = Baresip::start_with_video(&format!("video-{mediaenc}"), port, mediaenc);
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}"), "video": true, "secure": true})).await;
    assert_eq!(status, 200, "{answer}");
    let sip_stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    let (_, mut tap) = g.service.tap(&sip_stream).expect("tap");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}\n{}", bs.log());
    // DTLS handshakes (two of them) can take a moment on a loaded machine.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let mut decoder = Vp8Decoder::new().expect("dec");
    let (mut frames, mut last) = (0, None);
    while let Ok(f) = tap.try_recv() {
        if f.codec == FrameCodec::Vp8 {
            frames += 1;
            if let Ok(Some(p)) = decoder.decode(&f.data) {
                last = Some(p);
            }
        }
    }
    let cid = answer["connectionId"].as_str().expect("cid");
    let events = force_disconnect(&mut g, &sid, cid).await;
    red.abort();
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    let log = bs.log();
    assert!(log.contains("video: receiving with resolution 640 x 360"), "baresip decodes the 640x360 grid\n{log}");
    assert!(frames >= 20, "{mediaenc}: baresip's camera reached the session ({frames} frames)\n{log}");
    let pic = last.unwrap_or_else(|| panic!("decodable VP8 from baresip\n{log}"));
    assert_eq!((pic.width, pic.height), (320, 240), "baresip's camera size");
    let keyed = if mediaenc == "dtls_srtp" { "DTLS-SRTP complete" } else { "SRTP is Enabled" };
    for media in ["audio", "video"] {
        let line = log.lines().find(|l| l.contains(keyed) && l.contains(media));
        assert!(line.is_some(), "{mediaenc}: SRTP keyed for the {media}\n{log}");
    }
}

/// More than nine: ten publishers, nine red then one blue. The 3x3 grid shows the first nine (all
/// red, no blue anywhere); when the first red leaves, blue takes the freed place (the ninth tile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_more_than_nine_the_first_nine_are_shown() {
    let mut g = gateway(video_gateway_config(Codec::Vp8)).await;
    let sid = routed(&g);
    let mut publishers: Vec<Publisher> =
        (1..=9).map(|i| video_publisher(&g.service, &sid, &format!("red-{i}"), RED)).collect();
    publishers.push(video_publisher(&g.service, &sid, "blue", BLUE));
    let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let media_port = media.local_addr().expect("addr").port();
    let far = uas(move |offer| answer_sdp(offer, Codec::Vp8, media_port, true)).await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:ten@127.0.0.1:{}", far.port), "video": true})).await;
    assert_eq!(status, 200, "{answer}");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let (reader, latest) = grid_reader(media.clone());
    // The centres of the nine 212x120 cells of a 640x360 canvas.
    let centres: Vec<(u32, u32)> = (0..9).map(|i| ((i % 3) * 212 + 106, (i / 3) * 120 + 60)).collect();
    let tiles = |latest: &Mutex<Option<I420>>| -> Vec<&'static str> {
        latest
            .lock()
            .expect("latest")
            .as_ref()
            .map(|p| centres.iter().map(|(x, y)| colour_name(p.pixel(*x, *y))).collect())
            .unwrap_or_default()
    };
    let wait_for = |want: Vec<&'static str>| {
        let latest = latest.clone();
        let tiles = &tiles;
        async move {
            let deadline = Instant::now() + Duration::from_secs(6);
            loop {
                let now = tiles(&latest);
                if now == want || Instant::now() > deadline {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let all_red = vec!["red"; 9];
    assert_eq!(wait_for(all_red.clone()).await, all_red, "the first nine, all red");
    g.service
        .disconnect_as(&sid, &publishers[0].connection, session::DisconnectReason::ClientDisconnected)
        .expect("red-1 leaves");
    let mut then = vec!["red"; 8];
    then.push("blue");
    assert_eq!(wait_for(then.clone()).await, then, "blue takes the ninth tile");
    hang_up(&mut g, &sid, &answer).await;
    reader.abort();
    for p in &publishers {
        p.abort();
    }
}

/// Decodes the VP8 grid arriving on `media`; the latest picture is kept.
fn grid_reader(media: Arc<UdpSocket>) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Option<I420>>>) {
    let latest: Arc<Mutex<Option<I420>>> = Arc::default();
    let keep = latest.clone();
    let task = tokio::spawn(async move {
        let mut depacketizer = Vp8Depacketizer::default();
        let mut decoder = Vp8Decoder::new().expect("dec");
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = media.recv(&mut buf).await {
            // RTCP (rtcp-mux) is not video.
            if n > 1 && (200..=206).contains(&buf[1]) {
                continue;
            }
            let Ok(p) = RtpPacket::parse(&buf[..n]) else { continue };
            if let Depacketized::Frame(f) = depacketizer.push(p.seq(), p.marker(), p.payload()) {
                if let Ok(Some(pic)) = decoder.decode(&f.data) {
                    *keep.lock().expect("latest") = Some(pic);
                }
            }
        }
    });
    (task, latest)
}

/// A SIP party's camera: `frames` pictures of one colour (320x240, 15 fps, a keyframe every
/// second) in `codec`, sent as RTP with payload type `pt`.
struct SipCamera {
    codec: Codec,
    pt: u8,
    colour: (u8, u8, u8),
    ssrc: u32,
    frames: u32,
}

impl SipCamera {
    /// Sends from `media` to `to` until done (or aborted).
    fn spawn(self, media: Arc<UdpSocket>, to: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let picture = I420::filled(320, 240, self.colour).expect("picture");
            let mut h264 = H264Encoder::new(320, 240, 300_000, 15.0).expect("h264");
            let mut vp8 = Vp8Encoder::new(320, 240, 300_000, 15).expect("vp8");
            let mut tick = tokio::time::interval(Duration::from_millis(66));
            let mut seq = 1u16;
            for n in 0..self.frames {
                tick.tick().await;
                let key = n % 15 == 0;
                let payloads = match self.codec {
                    Codec::H264 => {
                        let au = h264.encode(&picture, key).expect("encode");
                        packetize::h264_packetize(&packetize::split_annex_b(&au), 1200)
                    }
                    _ => packetize::vp8_packetize(&vp8.encode(&picture, key).expect("encode"), n as u16, 1200),
                };
                let last = payloads.len() - 1;
                for (i, p) in payloads.iter().enumerate() {
                    let header = RtpHeader {
                        marker: i == last,
                        payload_type: self.pt,
                        seq,
                        timestamp: n * 6000,
                        ssrc: self.ssrc,
                        ..RtpHeader::default()
                    };
                    seq = seq.wrapping_add(1);
                    let mut out = Vec::new();
                    header.write(p, 0, &mut out).expect("rtp");
                    let _ = media.send_to(&out, to).await;
                }
            }
        })
    }
}

/// Two SIP video calls in one session: each SIP party's camera is a tile in the other's grid and
/// never in its own (its stream is left out), next to the WebRTC-side publisher. The session's
/// streams are decoded once for both calls (one hub per session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sip_video_calls_see_each_other_but_not_themselves() {
    let mut g = gateway(video_gateway_config(Codec::Vp8)).await;
    let sid = routed(&g);
    let red = video_publisher(&g.service, &sid, "red", RED);
    let mut calls = Vec::new();
    for (name, colour) in [("green-phone", GREEN), ("blue-phone", BLUE)] {
        let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let media_port = media.local_addr().expect("addr").port();
        let mut far = uas(move |offer| answer_sdp(offer, Codec::Vp8, media_port, true)).await;
        let (status, answer) =
            dial(&g, &sid, json!({"uri": format!("sip:{name}@127.0.0.1:{}", far.port), "video": true})).await;
        assert_eq!(status, 200, "{answer}");
        let offer = (&mut far.offer).await.expect("offer");
        let pt = offered_pt(&offer, "VP8/90000").expect("VP8 offered");
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], offered_video_port(&offer).expect("m=video")));
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
        let ssrc = 0x1000 + calls.len() as u32;
        let camera = SipCamera { codec: Codec::Vp8, pt, colour, ssrc, frames: 600 }.spawn(media.clone(), to);
        let (reader, latest) = grid_reader(media);
        calls.push((answer, far, camera, reader, latest));
    }
    // Publication order: red, then the green phone's stream, then the blue phone's. Each call's
    // grid has two tiles (2x2): red first, then the other phone.
    let tiles = |latest: &Mutex<Option<I420>>| -> Vec<&'static str> {
        latest
            .lock()
            .expect("latest")
            .as_ref()
            .map(|p| {
                [(160, 90), (480, 90), (160, 270), (480, 270)]
                    .iter()
                    .map(|(x, y)| colour_name(p.pixel(*x, *y)))
                    .collect()
            })
            .unwrap_or_default()
    };
    for ((_, _, _, _, latest), other) in calls.iter().zip(["blue", "green"]) {
        let want = vec!["red", other, "black", "black"];
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut got = tiles(latest);
        while got != want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            got = tiles(latest);
        }
        assert_eq!(got, want, "red and the other phone, never itself");
    }
    for (answer, _far, camera, reader, _) in calls {
        hang_up(&mut g, &sid, &answer).await;
        camera.abort();
        reader.abort();
    }
    red.abort();
}

/// A session participant publishing a busy, moving VP8 picture (640x360, 15 fps, 2.5 Mbit/s):
/// a grid made of it takes whatever bitrate it is allowed.
fn moving_publisher(service: &SessionService, sid: &SessionId, id: &str) -> tokio::task::JoinHandle<()> {
    let publisher = service.connect_external(sid, ConnectionKind::Client, id.into()).expect("publisher");
    let stream = StreamId::from_wire(id);
    let spec = StreamSpec { name: id.into(), has_audio: false, has_video: true, video_type: None };
    let (_, mut wanted) = service.publish_external(&publisher.id, stream.clone(), spec, Vec::new()).expect("publish");
    let service = service.clone();
    tokio::spawn(async move {
        let mut enc = Vp8Encoder::new(640, 360, 2_500_000, 15).expect("vp8 encoder");
        let mut tick = tokio::time::interval(Duration::from_millis(66));
        for n in 0..900u32 {
            tick.tick().await;
            let mut keyframe = n == 0;
            while wanted.try_recv().is_ok() {
                keyframe = true;
            }
            let picture = I420::moving(640, 360, n).expect("picture");
            let data = enc.encode(&picture, keyframe).expect("encode");
            let frame = MediaFrame {
                codec: FrameCodec::Vp8,
                rtp_time: u64::from(n) * 6000,
                data: data.into(),
                contiguous: true,
                audio_level: None,
                arrival: std::time::Instant::now(),
            };
            let _ = service.write_frame(&stream, frame);
        }
    })
}

/// What the SIP party of the bandwidth test sees.
#[derive(Default)]
struct Wire {
    /// Each grid RTP packet: when, its sequence number and the packet as it came.
    rtp: Vec<(Instant, u16, Vec<u8>)>,
    /// The gateway's video SSRC.
    ssrc: Option<u32>,
    /// Each RTCP compound from the gateway, and when.
    rtcp: Vec<(Instant, Vec<RtcpPacket>)>,
}

impl Wire {
    /// The grid's payload bitrate over the `window` before now, each packet counted once (a
    /// resent one is not new media).
    fn bitrate(&self, window: Duration) -> u64 {
        let from = Instant::now() - window;
        let mut seen = std::collections::HashSet::new();
        let bytes: usize = self
            .rtp
            .iter()
            .filter(|(t, seq, _)| *t >= from && seen.insert(*seq))
            .map(|(_, _, p)| p.len().saturating_sub(12))
            .sum();
        bytes as u64 * 8 * 1000 / window.as_millis() as u64
    }
}

/// The grid keeps to what the SIP party can take and repairs what it loses, on the wire: the
/// `b=TIAS` of its answer caps the bitrate (the configured 1.5 Mbit/s would be spent on this
/// picture); a packet it NACKs comes back byte for byte; its TMMBR lowers the bitrate further and
/// is answered by a TMMBN naming it; receiver reports of heavy loss lower it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grid_keeps_to_the_sip_partys_bandwidth_and_repairs_its_losses() {
    for codec in [Codec::H264, Codec::Vp8] {
        let mut config = video_gateway_config(codec);
        config.video.bitrate = 1_500_000;
        // No periodic keyframe: at these bitrates one is several seconds' worth, which the
        // encoders pay back over the following seconds (OpenH264 by skipping frames).
        config.video.keyframe_interval = Duration::from_secs(3600);
        // And what we ask of it, in our offer.
        config.video.receive_bitrate = Some(1_000_000);
        let mut g = gateway(config).await;
        let sid = routed(&g);
        let publisher = moving_publisher(&g.service, &sid, "pan");
        let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let media_port = media.local_addr().expect("addr").port();
        let mut far = uas(move |offer| {
            let pt = offered_pt(offer, rtpmap(codec)).unwrap_or(96);
            let sdp = answer_sdp(offer, codec, media_port, true);
            let with_fb = format!("{sdp}a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} ccm tmmbr\r\n");
            with_fb.replacen(&format!(" RTP/AVP {pt}\r\n"), &format!(" RTP/AVP {pt}\r\nb=TIAS:400000\r\n"), 1)
        })
        .await;
        let (status, answer) =
            dial(&g, &sid, json!({"uri": format!("sip:room@127.0.0.1:{}", far.port), "video": true})).await;
        assert_eq!(status, 200, "{answer}");
        let offer = (&mut far.offer).await.expect("offer");
        let pt = offered_pt(&offer, rtpmap(codec)).expect("offered");
        assert!(offer.contains(&format!("a=rtcp-fb:{pt} ccm tmmbr")), "{codec:?}: TMMBR offered: {offer}");
        let video_section = &offer[offer.find("m=video").expect("m=video")..];
        assert!(video_section.contains("b=AS:1050\r\nb=TIAS:1000000\r\n"), "{codec:?}: our receive limit: {offer}");
        let gateway_video = std::net::SocketAddr::from(([127, 0, 0, 1], offered_video_port(&offer).expect("m=video")));
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");

        let wire = Arc::new(Mutex::new(Wire::default()));
        let reader = {
            let (media, wire) = (media.clone(), wire.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = media.recv(&mut buf).await {
                    let b = &buf[..n];
                    let mut w = wire.lock().expect("wire");
                    if b.len() > 1 && (200..=206).contains(&b[1]) {
                        w.rtcp.push((Instant::now(), rtcp::parse_compound(b).unwrap_or_default()));
                        continue;
                    }
                    let Ok(p) = RtpPacket::parse(b) else { continue };
                    if p.payload_type().0 == pt {
                        w.ssrc = Some(p.ssrc().0);
                        w.rtp.push((Instant::now(), p.seq(), b.to_vec()));
                    }
                }
            })
        };
        let ours = 0x0bad_cafe_u32;
        let send = |packets: Vec<RtcpPacket>| {
            let media = media.clone();
            async move {
                let mut compound = vec![RtcpPacket::ReceiverReport { ssrc: ours, reports: Vec::new() }];
                compound.extend(packets);
                media.send_to(&rtcp::write_compound(&compound), gateway_video).await.expect("send RTCP");
            }
        };

        // The SDP's limit, on a picture that would take more.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let (rate, theirs) = {
            let w = wire.lock().expect("wire");
            (w.bitrate(Duration::from_secs(2)), w.ssrc.expect("the gateway's SSRC"))
        };
        assert!((120_000..=520_000).contains(&rate), "{codec:?}: {rate} bit/s under b=TIAS:400000");

        // Four packets of the last 600 ms (well within the second we keep) NACKed: each comes
        // back as it was. (300 ms held too few packets when the hub ran late on a loaded machine.)
        let lost: Vec<(u16, Vec<u8>)> = {
            let w = wire.lock().expect("wire");
            let recent = Instant::now() - Duration::from_millis(600);
            w.rtp.iter().filter(|(t, _, _)| *t >= recent).step_by(2).take(4).map(|(_, s, p)| (*s, p.clone())).collect()
        };
        assert_eq!(lost.len(), 4, "{codec:?}: packets in the last 600 ms");
        let asked = Instant::now();
        send(vec![RtcpPacket::Nack { sender: ours, media: theirs, lost: lost.iter().map(|(s, _)| *s).collect() }])
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let w = wire.lock().expect("wire");
            for (seq, packet) in &lost {
                let again = w.rtp.iter().find(|(t, s, _)| *t > asked && s == seq).map(|(_, _, p)| p);
                assert_eq!(again, Some(packet), "{codec:?}: packet {seq} resent as it was");
            }
        }

        // TMMBR: 150 kbit/s, answered by a TMMBN that names us as its owner.
        let asked = Instant::now();
        let limit = rtcp::Tmmb { ssrc: theirs, bitrate: 150_000, overhead: 40 };
        send(vec![RtcpPacket::Tmmbr { sender: ours, entries: vec![limit] }]).await;
        // The encoders reach a new rate within about a second; the window starts 1.5 s after.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let limited = {
            let w = wire.lock().expect("wire");
            let notified = w.rtcp.iter().filter(|(t, _)| *t > asked).find_map(|(_, c)| {
                c.iter().find_map(|p| match p {
                    RtcpPacket::Tmmbn { sender, entries } => Some((*sender, entries.clone(), c.first().cloned())),
                    _ => None,
                })
            });
            let (sender, entries, first) = notified.unwrap_or_else(|| panic!("{codec:?}: no TMMBN: {:?}", w.rtcp));
            assert_eq!((sender, entries), (theirs, vec![rtcp::Tmmb { ssrc: ours, ..limit }]), "{codec:?}");
            assert!(matches!(first, Some(RtcpPacket::SenderReport { .. })), "{codec:?}: in a compound led by a report");
            let rate = w.bitrate(Duration::from_secs(2));
            // Within 1.5 times the limit on a loaded machine (the limit ignored: about 410 kbit/s).
            assert!(rate <= 225_000, "{codec:?}: {rate} bit/s after a TMMBR of 150 kbit/s");
            rate
        };

        // Receiver reports of all our packets lost (the first one used; the others come within half
        // a second of it).
        for _ in 0..3 {
            let block = rtcp::ReportBlock {
                ssrc: theirs,
                fraction_lost: 255,
                cumulative_lost: 0,
                highest_seq: 0,
                jitter: 0,
                last_sr: 0,
                delay_since_last_sr: 0,
            };
            media
                .send_to(
                    &rtcp::write_compound(&[RtcpPacket::ReceiverReport { ssrc: ours, reports: vec![block] }]),
                    gateway_video,
                )
                .await
                .expect("send RR");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let rate = wire.lock().expect("wire").bitrate(Duration::from_secs(2));
        // About 73 kbit/s asked (half of the TMMBR's 145 k; VP8 overshoots it on this picture, to
        // about 100 k); without the reports acted on, the 145 k would stay. A loaded machine only
        // lowers what is measured.
        assert!(rate <= 130_000, "{codec:?}: {rate} bit/s after reports of heavy loss, {limited} before");

        hang_up(&mut g, &sid, &answer).await;
        reader.abort();
        publisher.abort();
        // What the operator sees of it.
        let q = tokio::time::timeout(Duration::from_secs(5), g.video_quality.recv())
            .await
            .expect("in time")
            .expect("reported");
        assert!(q.packets_resent >= 4, "{codec:?}: {q:?}");
        // OpenH264 skips most pictures of this busy grid at the low bitrates: few are sent.
        assert!(q.lowest_bitrate < 100_000 && q.frames_sent >= 10, "{codec:?}: {q:?}");
    }
}

/// The SIP party's video reaches the session whole through reordering and loss: two packets of a
/// frame swapped on the path are put back in order; a packet lost is asked for with a NACK (the
/// party declared `nack`) and, resent, repairs its frame; a packet lost for good loses its frame,
/// brings a PLI, and nothing after it is published until the keyframe that answers it (a frame
/// referring to the lost one would decode to a smear); so does a whole frame lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sip_partys_video_is_put_back_in_order_and_repaired() {
    for codec in [Codec::H264, Codec::Vp8] {
        let mut g = gateway(video_gateway_config(codec)).await;
        let sid = routed(&g);
        let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let media_port = media.local_addr().expect("addr").port();
        let mut far = uas(move |offer| {
            let pt = offered_pt(offer, rtpmap(codec)).unwrap_or(96);
            // H.264: PLI; VP8: FIR only (an endpoint that may ignore a PLI is asked with a FIR).
            let keyframes = if codec == Codec::H264 { "nack pli" } else { "ccm fir" };
            format!(
                "{}a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} {keyframes}\r\n",
                answer_sdp(offer, codec, media_port, true)
            )
        })
        .await;
        let (status, answer) =
            dial(&g, &sid, json!({"uri": format!("sip:cam@127.0.0.1:{}", far.port), "video": true})).await;
        assert_eq!(status, 200, "{answer}");
        let offer = (&mut far.offer).await.expect("offer");
        let pt = offered_pt(&offer, rtpmap(codec)).expect("offered");
        let gateway_video = std::net::SocketAddr::from(([127, 0, 0, 1], offered_video_port(&offer).expect("m=video")));
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
        let sip_stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
        let (_, mut tap) = g.service.tap(&sip_stream).expect("tap");

        // The party's side: NACKs answered from the packets it may resend, PLIs noted.
        let ours = 0x0c0f_fee0_u32;
        let resendable: Arc<Mutex<HashMap<u16, Vec<u8>>>> = Arc::default();
        let nacked: Arc<Mutex<Vec<u16>>> = Arc::default();
        let plis: Arc<Mutex<Vec<(Instant, &'static str)>>> = Arc::default();
        let reader = {
            let (media, resendable, nacked, plis) = (media.clone(), resendable.clone(), nacked.clone(), plis.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = media.recv(&mut buf).await {
                    if n < 2 || !(200..=206).contains(&buf[1]) {
                        continue;
                    }
                    for p in rtcp::parse_compound(&buf[..n]).unwrap_or_default() {
                        match p {
                            RtcpPacket::Nack { media: m, lost, .. } if m == ours => {
                                for seq in lost {
                                    nacked.lock().expect("nacked").push(seq);
                                    let again = resendable.lock().expect("resendable").get(&seq).cloned();
                                    if let Some(packet) = again {
                                        let _ = media.send_to(&packet, gateway_video).await;
                                    }
                                }
                            }
                            RtcpPacket::Pli { media: m, .. } if m == ours => {
                                plis.lock().expect("plis").push((Instant::now(), "PLI"))
                            }
                            RtcpPacket::Fir { entries, .. } if entries.iter().any(|(m, _)| *m == ours) => {
                                plis.lock().expect("plis").push((Instant::now(), "FIR"))
                            }
                            _ => {}
                        }
                    }
                }
            })
        };

        // 60 busy frames (about five packets each) at 15 a second; a keyframe first and whenever
        // a PLI came since the last one. An encoder may skip a frame (no packets): only frames
        // sent count below.
        const FRAMES: u32 = 60;
        let mut h264 = H264Encoder::new(320, 240, 600_000, 15.0).expect("h264");
        let mut vp8 = Vp8Encoder::new(320, 240, 600_000, 15).expect("vp8");
        let mut tick = tokio::time::interval(Duration::from_millis(66));
        let mut seq = 7u16;
        let (mut sent_frames, mut lost_seqs) = (Vec::new(), Vec::new());
        let mut lost_for_good_at = None;
        let mut last_keyframe_at = Instant::now();
        for n in 0..FRAMES {
            tick.tick().await;
            let picture = I420::moving(320, 240, n).expect("picture");
            let key = n == 0 || plis.lock().expect("plis").iter().any(|(t, _)| *t > last_keyframe_at);
            if key {
                last_keyframe_at = Instant::now();
            }
            let (data, payloads) = match codec {
                Codec::H264 => {
                    let au = h264.encode(&picture, key).expect("encode");
                    let payloads = packetize::h264_packetize(&packetize::split_annex_b(&au), 1000);
                    (au, payloads)
                }
                _ => {
                    let frame = vp8.encode(&picture, key).expect("encode");
                    let payloads = packetize::vp8_packetize(&frame, n as u16, 1000);
                    (frame, payloads)
                }
            };
            if [10, 20, 30].contains(&n) {
                assert!(payloads.len() >= 3, "{codec:?}: frame {n} has {} packets", payloads.len());
            }
            if payloads.is_empty() {
                continue;
            }
            sent_frames.push((n, key, data));
            let mut packets: Vec<(u16, Vec<u8>)> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let header = RtpHeader {
                        marker: i == payloads.len() - 1,
                        payload_type: pt,
                        seq: seq.wrapping_add(i as u16),
                        timestamp: n * 6000,
                        ssrc: ours,
                        ..RtpHeader::default()
                    };
                    let mut out = Vec::new();
                    header.write(p, 0, &mut out).expect("rtp");
                    (seq.wrapping_add(i as u16), out)
                })
                .collect();
            seq = seq.wrapping_add(payloads.len() as u16);
            match n {
                // Swapped on the path.
                10 => packets.swap(0, 1),
                // Lost, and resent when asked for.
                20 => {
                    let (s, p) = packets.remove(1);
                    resendable.lock().expect("resendable").insert(s, p);
                    lost_seqs.push(s);
                }
                // Lost for good.
                30 => {
                    lost_seqs.push(packets.remove(1).0);
                    lost_for_good_at = Some(Instant::now());
                }
                // A whole frame lost for good (a depacketiser alone cannot see that one).
                45 => packets.clear(),
                _ => {}
            }
            for (_, p) in packets {
                media.send_to(&p, gateway_video).await.expect("send");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut published = Vec::new();
        while let Ok(f) = tap.try_recv() {
            published.push(f);
        }
        let first = published.first().map(|f| f.rtp_time).expect("frames published");
        let numbers: Vec<u64> = published.iter().map(|f| (f.rtp_time - first) / 6000).collect();
        let sent_between = |from: u64, to: u64| {
            sent_frames.iter().map(|(n, _, _)| u64::from(*n)).filter(move |n| (from..to).contains(n))
        };
        let expected_before: Vec<u64> = sent_between(0, 30).collect();
        assert_eq!(
            numbers.iter().copied().filter(|n| *n < 30).collect::<Vec<_>>(),
            expected_before,
            "{codec:?}: frames 0 to 29, the swapped and the repaired among them"
        );
        assert!(!numbers.contains(&30), "{codec:?}: the frame lost for good: {numbers:?}");
        // After each loss for good: nothing until the keyframe a PLI brought, then every frame.
        for (lost, until) in [(30u64, 45u64), (45, u64::from(FRAMES))] {
            let keyframe =
                sent_frames.iter().find(|(n, k, _)| *k && u64::from(*n) > lost).map(|(n, _, _)| u64::from(*n));
            let keyframe = keyframe.unwrap_or_else(|| panic!("{codec:?}: a PLI after frame {lost} brought a keyframe"));
            assert!(keyframe < until, "{codec:?}: the keyframe after {lost} came in time ({keyframe})");
            assert_eq!(
                numbers.iter().copied().filter(|n| (lost + 1..until).contains(n)).collect::<Vec<_>>(),
                sent_between(keyframe, until).collect::<Vec<_>>(),
                "{codec:?}: after the loss at {lost}, nothing until the keyframe ({keyframe}), then every frame"
            );
        }
        // What was published is what the party sent (H.264 as its NAL units).
        let nals = |d: &[u8]| packetize::split_annex_b(d).iter().map(|n| n.to_vec()).collect::<Vec<_>>();
        for f in &published {
            let n = (f.rtp_time - first) / 6000;
            let sent = &sent_frames.iter().find(|(m, _, _)| u64::from(*m) == n).expect("a frame sent").2;
            let same =
                if codec == Codec::H264 { nals(&f.data) == nals(sent) } else { f.data.as_ref() == sent.as_slice() };
            assert!(same, "{codec:?}: frame {n} published as it was sent");
        }
        let nacked = nacked.lock().expect("nacked").clone();
        assert!(lost_seqs.iter().all(|s| nacked.contains(s)), "{codec:?}: {lost_seqs:?} asked for: {nacked:?}");
        let first_pli = plis.lock().expect("plis").first().copied();
        assert!(
            first_pli.map(|(t, _)| t).zip(lost_for_good_at).is_some_and(|(p, l)| p > l),
            "{codec:?}: the first keyframe request follows the loss for good"
        );
        let kinds: Vec<&str> = plis.lock().expect("plis").iter().map(|(_, k)| *k).collect();
        let want = if codec == Codec::H264 { "PLI" } else { "FIR" };
        assert!(kinds.iter().all(|k| *k == want), "{codec:?}: asked as agreed ({kinds:?})");
        assert!(far.infos().is_empty(), "{codec:?}: RTCP feedback agreed: no INFO ({:?})", far.infos());

        hang_up(&mut g, &sid, &answer).await;
        reader.abort();
        let q = tokio::time::timeout(Duration::from_secs(5), g.video_quality.recv())
            .await
            .expect("in time")
            .expect("reported");
        assert!(q.packets_reordered >= 1 && q.packets_nacked >= 2, "{codec:?}: {q:?}");
        assert!(q.packets_lost >= 1 && q.frames_skipped >= 1 && q.keyframes_asked_of_party >= 2, "{codec:?}: {q:?}");
        assert_eq!(q.frames_received, published.len() as u64, "{codec:?}: {q:?}");
    }
}

/// An endpoint that takes H.264 only in packetization-mode 0 (single NAL units: older SIP video
/// phones) gets it: our offer carries H.264 in mode 1 and in mode 0, and when the answer picks
/// mode 0 every packet holds one whole NAL unit (no STAP-A, no FU-A) within the MTU, the encoder
/// cutting its pictures into slices that fit; the grid decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_nal_unit_endpoint_gets_h264_it_can_take() {
    let mut g = gateway(video_gateway_config(Codec::H264)).await;
    let sid = routed(&g);
    let publisher = moving_publisher(&g.service, &sid, "pan");
    let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let media_port = media.local_addr().expect("addr").port();
    // The payload type our offer gives H.264 in mode 0.
    let mode0 = |offer: &str| {
        offer.lines().find_map(|l| {
            let rest = l.strip_prefix("a=fmtp:")?;
            let (pt, params) = rest.split_once(' ')?;
            params.contains("packetization-mode=0").then(|| pt.parse::<u8>().ok()).flatten()
        })
    };
    let mut far = uas(move |offer| {
        let pt = mode0(offer).unwrap_or(96);
        let sdp = answer_sdp(offer, Codec::Vp8, media_port, true);
        // H.264 in its place, with no packetization-mode (0 by default).
        sdp.replace(&format!("RTP/AVP {}", offered_pt(offer, "VP8/90000").unwrap_or(96)), &format!("RTP/AVP {pt}"))
            .replace(
                &format!("a=rtpmap:{} VP8/90000", offered_pt(offer, "VP8/90000").unwrap_or(96)),
                &format!("a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} profile-level-id=42e01f"),
            )
    })
    .await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:oldphone@127.0.0.1:{}", far.port), "video": true})).await;
    assert_eq!(status, 200, "{answer}");
    let offer = (&mut far.offer).await.expect("offer");
    assert!(
        offer.contains("packetization-mode=1") && offer.contains("packetization-mode=0"),
        "both modes offered: {offer}"
    );
    let pt = mode0(&offer).expect("mode 0 offered");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let (mut types, mut largest, mut frames, mut decoded) = (std::collections::BTreeSet::new(), 0, 0, 0);
    let mut depacketizer = H264Depacketizer::default();
    let mut decoder = H264Decoder::new().expect("decoder");
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), media.recv(&mut buf)).await else { continue };
        if n > 1 && (200..=206).contains(&buf[1]) {
            continue;
        }
        let Ok(p) = RtpPacket::parse(&buf[..n]) else { continue };
        if p.payload_type().0 != pt {
            continue;
        }
        types.insert(p.payload()[0] & 0x1f);
        largest = largest.max(p.payload().len());
        if let Depacketized::Frame(f) = depacketizer.push(p.seq(), p.timestamp(), p.marker(), p.payload()) {
            frames += 1;
            if let Ok(Some(pic)) = decoder.decode(&f.data) {
                assert_eq!((pic.width, pic.height), (640, 360));
                decoded += 1;
            }
        }
    }
    hang_up(&mut g, &sid, &answer).await;
    publisher.abort();
    assert!(types.iter().all(|t| (1..=23).contains(t)), "single NAL units only: NAL types {types:?}");
    assert!(types.contains(&5) && types.contains(&1), "IDR and non-IDR slices: {types:?}");
    assert!(largest <= 1200, "every NAL unit within the MTU: {largest} bytes");
    // OpenH264's rate control skips pictures of a busy grid at this bitrate, more on a loaded
    // machine: every frame that came decodes, and enough came.
    assert!(frames >= 10 && decoded == frames, "the grid decodes: {decoded} of {frames} frames in 3 s");
}

/// A re-offer that removes the video stream (port 0, RFC 3264 §8.2) gets nothing more on it, RTP
/// or RTCP, while the call goes on; one that gives it a port again gets the grid again. Before,
/// the grid went on to the removed stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_video_stream_gets_nothing() {
    let mut g = gateway(video_gateway_config(Codec::Vp8)).await;
    let sid = routed(&g);
    let red = video_publisher(&g.service, &sid, "red", RED);
    let media = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let media_port = media.local_addr().expect("addr").port();
    let mut far = uas(move |offer| answer_sdp(offer, Codec::Vp8, media_port, true)).await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:grid@127.0.0.1:{}", far.port), "video": true})).await;
    assert_eq!(status, 200, "{answer}");
    let offer = (&mut far.offer).await.expect("offer");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let count = |window: Duration| {
        let media = &media;
        async move {
            let (mut n, mut buf) = (0, vec![0u8; 2048]);
            let end = tokio::time::Instant::now() + window;
            while let Ok(Ok(_)) = tokio::time::timeout_at(end, media.recv(&mut buf)).await {
                n += 1;
            }
            n
        }
    };
    assert!(count(Duration::from_millis(1500)).await > 5, "the grid flows");
    let with_video = answer_sdp(&offer, Codec::Vp8, media_port, true);
    far.reinvite(&with_video.replace("o=uas 1 1", "o=uas 1 2").replace(&format!("m=video {media_port}"), "m=video 0"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = count(Duration::from_millis(10)).await;
    assert_eq!(count(Duration::from_millis(1500)).await, 0, "nothing on the removed stream");
    far.reinvite(&with_video.replace("o=uas 1 1", "o=uas 1 3"));
    assert!(count(Duration::from_millis(2000)).await > 5, "the grid again once the stream is back");
    hang_up(&mut g, &sid, &answer).await;
    red.abort();
}

/// A party whose SDP agreed to no RTCP feedback (many SIP phones and room systems) is asked for
/// keyframes by RFC 5168 INFO as well as by PLI: at most one INFO a second, and none after it
/// refused one (415), when PLIs alone go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_without_rtcp_feedback_is_asked_for_keyframes_by_info() {
    let mut g = gateway(video_gateway_config(Codec::H264)).await;
    let sid = routed(&g);
    let media = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let media_port = media.local_addr().expect("addr").port();
    let mut far = uas(move |offer| answer_sdp(offer, Codec::H264, media_port, true)).await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:phone@127.0.0.1:{}", far.port), "video": true})).await;
    assert_eq!(status, 200, "{answer}");
    let offer = (&mut far.offer).await.expect("offer");
    let pt = offered_pt(&offer, rtpmap(Codec::H264)).expect("offered");
    let gateway_video = std::net::SocketAddr::from(([127, 0, 0, 1], offered_video_port(&offer).expect("m=video")));
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let ours = 0x0fab_1e00_u32;
    let plis: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let reader = {
        let (media, plis) = (media.clone(), plis.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(n) = media.recv(&mut buf).await {
                if n > 1 && (200..=206).contains(&buf[1]) {
                    let packets = rtcp::parse_compound(&buf[..n]).unwrap_or_default();
                    if packets.iter().any(|p| matches!(p, RtcpPacket::Pli { media, .. } if *media == ours)) {
                        plis.lock().expect("plis").push(Instant::now());
                    }
                }
            }
        })
    };
    // The party's camera sends inter frames only (a decoder that joined late would wait for a
    // keyframe): each asks for one, paced by the gateway.
    let mut seq = 1u16;
    inter_frames(&media, gateway_video, pt, ours, &mut seq, Duration::from_millis(3000)).await;
    let infos = far.infos();
    assert!((2..=4).contains(&infos.len()), "about one INFO a second for three seconds: {infos:?}");
    // One a second as the call task counts; their arrival here may be nearer when one was held up.
    assert!(infos.windows(2).all(|w| w[1].at - w[0].at >= Duration::from_millis(800)), "paced: {infos:?}");
    assert!(
        infos.iter().all(|i| i.content_type == "application/media_control+xml"
            && i.body.contains("<to_encoder><picture_fast_update/></to_encoder>")),
        "{infos:?}"
    );
    let plis_then = plis.lock().expect("plis").len();
    assert!(plis_then >= infos.len(), "PLIs too: {plis_then}");

    // The party refuses the next INFO: it is the last one.
    far.set_info_status(415);
    inter_frames(&media, gateway_video, pt, ours, &mut seq, Duration::from_millis(3000)).await;
    let refused = far.infos().len() - infos.len();
    assert_eq!(refused, 1, "one INFO refused, none after: {:?}", far.infos());
    assert!(plis.lock().expect("plis").len() >= plis_then + 3, "PLIs go on");
    // Still up (the refusal did not end it), and ended normally.
    hang_up(&mut g, &sid, &answer).await;
    reader.abort();
}

/// Sends H.264 inter frames (one NAL unit, no keyframe) at 15 a second for `duration`.
async fn inter_frames(
    media: &UdpSocket,
    to: std::net::SocketAddr,
    pt: u8,
    ssrc: u32,
    seq: &mut u16,
    duration: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(66));
    let end = Instant::now() + duration;
    while Instant::now() < end {
        tick.tick().await;
        let header = RtpHeader {
            marker: true,
            payload_type: pt,
            seq: *seq,
            timestamp: u32::from(*seq) * 6000,
            ssrc,
            ..RtpHeader::default()
        };
        *seq = seq.wrapping_add(1);
        let mut out = Vec::new();
        header.write(&[0x41, 0x9a, 0x02, 0x03, 0x04], 0, &mut out).expect("rtp");
        let _ = media.send_to(&out, to).await;
    }
}
