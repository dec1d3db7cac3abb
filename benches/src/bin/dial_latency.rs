//! Latency added by the gateway on a dialled call, in each direction, with Opus on the SIP leg.
//!
//! sipp answers the call with an SDP that points the media at a UDP socket of this program, which
//! plays the SIP party. Session → SIP: a frame written by the session's publisher is timed until
//! its packet reaches that socket (Opus is forwarded as it is, so every frame is recognisable by
//! its bytes). SIP → session: a frame sent from that socket to the gateway's media port (learnt
//! from the gateway's own packets, symmetric RTP) is timed until it comes out of a tap on the SIP
//! stream in the session (Opus enters the session as it arrives; a transcoded codec would add the
//! jitter buffer's playout delay).
//!
//! usage: `dial_latency [SECONDS]` (needs sipp)

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use benches::dialling::{dial_request, free_port};
use bridge::{Bridge, BridgeConfig, CallReporter};
use rest_api::Dialer;
use sdp_negotiation::Codec;
use session::router::{FrameCodec, MediaFrame};
use session::service::{ServiceConfig, SessionService};
use session::{ConnectionKind, MediaMode, ProjectId, Projects, StreamId, StreamSpec};
use sip_signaling::driver::{self, DriverConfig};
use srtp_transport::driver::PortAllocator;
use srtp_transport::{RtpHeader, RtpPacket};

struct Quiet;

impl CallReporter for Quiet {
    fn report(&self, _project: &ProjectId, _key: &str, _body: serde_json::Value) {}
}

/// A recognisable Opus-shaped payload: TOC byte of a 20 ms CELT frame, then the frame number.
fn payload(tag: u8, n: u32) -> Vec<u8> {
    let mut p = vec![0xfc, tag];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend(std::iter::repeat_n(0x55, 40));
    p
}

fn number(p: &[u8], tag: u8) -> Option<u32> {
    (p.len() >= 6 && p[0] == 0xfc && p[1] == tag).then(|| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
}

fn summary(name: &str, mut v: Vec<f64>) {
    if v.is_empty() {
        println!("{name}: no samples");
        return;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "{name}: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, min {:.2} ms ({} frames)",
        p(0.5),
        p(0.9),
        p(0.99),
        v[0],
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let far = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("far end socket");
    let far_port = far.local_addr().expect("addr").port();
    let sipp_port = free_port();
    let scenario = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sipp/uas_opus_echo.xml"))
        .expect("scenario")
        .replace("m=audio [media_port]", &format!("m=audio {far_port}"));
    let path = std::env::temp_dir().join(format!("uas_latency_{}.xml", std::process::id()));
    std::fs::write(&path, scenario).expect("scenario file");
    let mut sipp = std::process::Command::new("sipp")
        .arg("-sf")
        .arg(&path)
        .args(["-i", "127.0.0.1", "-p", &sipp_port.to_string(), "-m", "1", "-nostdin", "-bg"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed");
    let _ = sipp.wait();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let key = ProjectId::api_key("100002").expect("key");
    let service = SessionService::start(ServiceConfig::default(), Projects::new()).await.expect("service");
    let sip = driver::start(DriverConfig::default()).await.expect("sip");
    let ports = PortAllocator::new("127.0.0.1".parse().expect("ip"), 45000, 45999).expect("ports");
    let config = BridgeConfig { audio_codecs: vec![Codec::Opus], ..BridgeConfig::default() };
    let bridge = Bridge::new(service.clone(), sip.clone(), ports, config, Arc::new(Quiet));
    let sid = service.create_session(&key, MediaMode::Routed, None, SystemTime::now());
    let publisher = service.connect_external(&sid, ConnectionKind::Client, "pub".into()).expect("connect");
    let pub_stream = StreamId::from_wire("latency-publisher");
    let spec = StreamSpec { name: "pub".into(), has_audio: true, has_video: false, video_type: None };
    service.publish_external(&publisher.id, pub_stream.clone(), spec, Vec::new()).expect("publish");
    let request = dial_request(&key, &sid, format!("sip:latency@127.0.0.1:{sipp_port}"));
    let answer = bridge.dial(request).expect("dial");
    let sip_stream = StreamId::from_wire(&answer.stream_id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, mut tap) = service.tap(&sip_stream).expect("tap");

    let start = Instant::now();
    let sent_out: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let writer = {
        let (service, sent_out) = (service.clone(), sent_out.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0..(seconds * 50) as u32 {
                tick.tick().await;
                let frame = MediaFrame {
                    codec: FrameCodec::Opus,
                    rtp_time: u64::from(n) * 960,
                    data: payload(b'S', n).into(),
                    contiguous: true,
                    audio_level: None,
                    arrival: std::time::Instant::now(),
                };
                if let Ok(mut s) = sent_out.lock() {
                    s.push(Instant::now());
                }
                let _ = service.write_frame(&pub_stream, frame);
            }
        })
    };
    let mut out_latency = Vec::new();
    let mut in_latency = Vec::new();
    let mut sent_in: Vec<Instant> = Vec::new();
    let mut gateway_addr = None;
    let mut next_in = Instant::now();
    let mut buf = vec![0u8; 2048];
    let deadline = start + Duration::from_secs(seconds) + Duration::from_secs(1);
    let ssrc = 0x1234_5678;
    while Instant::now() < deadline {
        tokio::select! {
            r = far.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                let at = Instant::now();
                gateway_addr.get_or_insert(from);
                if let Ok(p) = RtpPacket::parse(&buf[..len]) {
                    if let Some(n) = number(p.payload(), b'S') {
                        if let Some(t) = sent_out.lock().ok().and_then(|s| s.get(n as usize).copied()) {
                            out_latency.push(at.duration_since(t).as_secs_f64() * 1000.0);
                        }
                    }
                }
            }
            f = tap.recv() => {
                let at = Instant::now();
                if let Some(f) = f {
                    if let Some(t) = number(&f.data, b'R').and_then(|n| sent_in.get(n as usize)) {
                        in_latency.push(at.duration_since(*t).as_secs_f64() * 1000.0);
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next_in)) => {
                next_in += Duration::from_millis(20);
                if let Some(to) = gateway_addr {
                    let n = sent_in.len() as u32;
                    let mut pkt = Vec::new();
                    let header = RtpHeader { payload_type: 96, seq: n as u16, timestamp: n * 960, ssrc, ..RtpHeader::default() };
                    if header.write(&payload(b'R', n), 0, &mut pkt).is_ok() {
                        sent_in.push(Instant::now());
                        let _ = far.send_to(&pkt, to).await;
                    }
                }
            }
        }
    }
    writer.abort();
    summary("session -> SIP (publisher frame to the SIP party's socket)", out_latency);
    summary(
        "SIP -> session (SIP party's packet to a subscriber of its stream; Opus is forwarded as it arrives)",
        in_latency,
    );
    bridge.shutdown(Duration::from_secs(5)).await;
    sip.shutdown().await;
    let _ = std::fs::remove_file(path);
}
