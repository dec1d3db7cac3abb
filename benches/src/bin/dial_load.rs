//! Load: N concurrent dial-outs, each into its own routed session whose other participant is a
//! synthetic publisher (pre-encoded Opus, 20 ms frames), answered by one sipp process that echoes
//! every call's RTP (`-rtp_echo`). Reports the set-up rate, the gateway process's CPU and memory
//! per call in steady state, and whether the audio is clean: the echo of what each sampled call
//! sent comes back into its session byte-exact and on time.
//!
//! usage: `dial_load [CALLS] [SECONDS] [opus|pcmu]` (needs sipp; release build:
//!        cargo run --release -p benches --bin dial_load -- 1000 20 opus)

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
use tokio::sync::mpsc;

struct Counter(mpsc::UnboundedSender<(String, String)>);

impl CallReporter for Counter {
    fn report(&self, _project: &ProjectId, key: &str, body: serde_json::Value) {
        let what = format!(
            "{}{}",
            body["event"].as_str().unwrap_or(""),
            body["state"].as_str().or(body["reason_code"].as_str()).map(|s| format!(":{s}")).unwrap_or_default()
        );
        let _ = self.0.send((key.to_owned(), what));
    }
}

/// (user + system CPU seconds, resident MiB) of this process.
fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / ticks
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / ticks;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, rss_kib / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let codec = match args.next().as_deref() {
        Some("pcmu") => Codec::Pcmu,
        _ => Codec::Opus,
    };
    let sipp_port = free_port();
    let sipp_media = free_port();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/sipp/uas_opus_echo.xml");
    let scenario = if codec == Codec::Pcmu {
        let pcmu = std::fs::read_to_string(scenario)
            .expect("scenario")
            .replace("RTP/AVP 96", "RTP/AVP 0")
            .replace("a=rtpmap:96 opus/48000/2", "a=rtpmap:0 PCMU/8000");
        let path = std::env::temp_dir().join("uas_pcmu_echo.xml");
        std::fs::write(&path, pcmu).expect("write scenario");
        path.to_string_lossy().into_owned()
    } else {
        scenario.to_owned()
    };
    let mut sipp = std::process::Command::new("sipp")
        .args(["-sf", &scenario, "-i", "127.0.0.1", "-p", &sipp_port.to_string(), "-mi", "127.0.0.1"])
        .args(["-mp", &sipp_media.to_string(), "-rtp_echo", "-m", &calls.to_string(), "-l", &calls.to_string()])
        .args(["-nostdin", "-bg"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed");
    let _ = sipp.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let key = ProjectId::api_key("100001").expect("key");
    let service = SessionService::start(ServiceConfig::default(), Projects::new()).await.expect("service");
    let sip = driver::start(DriverConfig::default()).await.expect("sip");
    let ports = PortAllocator::new("127.0.0.1".parse().expect("ip"), 20000, 39999).expect("ports");
    let (tx, mut events) = mpsc::unbounded_channel();
    let config = BridgeConfig { audio_codecs: vec![codec], ..BridgeConfig::default() };
    let bridge = Bridge::new(service.clone(), sip.clone(), ports, config, Arc::new(Counter(tx)));

    // Sessions, each with a publisher of pre-encoded Opus (a numbered packet per frame).
    let mut publishers = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..calls {
        let sid = service.create_session(&key, MediaMode::Routed, None, SystemTime::now());
        let c = service.connect_external(&sid, ConnectionKind::Client, format!("pub{i}")).expect("connect");
        let id = StreamId::random(&mut rand::thread_rng());
        let spec = StreamSpec { name: "synthetic".into(), has_audio: true, has_video: false, video_type: None };
        service.publish_external(&c.id, id.clone(), spec, Vec::new()).expect("publish");
        publishers.push(id);
        sessions.push(sid);
    }
    let mut enc = media_mixer::opus::OpusEncoder::new(media_mixer::opus::OpusEncoderConfig::default()).expect("opus");
    let frames: Vec<Arc<[u8]>> = (0..50)
        .map(|n| {
            let pcm: Vec<i16> = (0..960)
                .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * (n * 960 + i) as f64 / 48000.0).sin()) as i16)
                .collect();
            let mut out = Vec::new();
            enc.encode(&pcm, &mut out).expect("encode");
            out.into()
        })
        .collect();
    let feeder = {
        let service = service.clone();
        let publishers = publishers.clone();
        let frames = frames.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let data = frames[(n % 50) as usize].clone();
                for p in &publishers {
                    let frame = MediaFrame {
                        codec: FrameCodec::Opus,
                        rtp_time: n * 960,
                        data: data.clone(),
                        contiguous: true,
                        audio_level: None,
                        arrival: std::time::Instant::now(),
                    };
                    let _ = service.write_frame(p, frame);
                }
                n += 1;
            }
        })
    };

    // Dial them all.
    let start = Instant::now();
    let mut sip_streams = Vec::new();
    for sid in &sessions {
        let request = dial_request(&key, sid, format!("sip:load@127.0.0.1:{sipp_port}"));
        let answer = bridge.dial(request).expect("dial");
        sip_streams.push(StreamId::from_wire(&answer.stream_id));
    }
    let mut active = 0usize;
    let mut failed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while active + failed < calls && Instant::now() < deadline {
        if let Ok(Some((_, what))) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
            if what == "callUpdated:ACTIVE" {
                active += 1;
            } else if what.starts_with("callDestroyed") {
                failed += 1;
                eprintln!("failed: {what}");
            }
        }
    }
    let setup = start.elapsed();
    println!(
        "{calls} calls ({codec:?}): {active} active, {failed} failed, set up in {:.2} s ({:.0} calls/s)",
        setup.as_secs_f64(),
        active as f64 / setup.as_secs_f64()
    );

    // Steady state: CPU and memory while media flows; audio checked on a sample of calls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sample: Vec<usize> = (0..calls).step_by((calls / 20).max(1)).collect();
    let mut taps = Vec::new();
    for &i in &sample {
        if let Ok((_, rx)) = service.tap(&sip_streams[i]) {
            taps.push(rx);
        }
    }
    let (cpu0, _) = usage();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, rss) = usage();
    let wall = t0.elapsed().as_secs_f64();
    let expected = wall * 50.0;
    let mut clean = 0;
    let mut worst = f64::MAX;
    for rx in &mut taps {
        let mut got = 0usize;
        let mut exact = 0usize;
        while let Ok(f) = rx.try_recv() {
            got += 1;
            if codec == Codec::Opus && frames.iter().any(|s| **s == *f.data) {
                exact += 1;
            }
        }
        let ratio = got as f64 / expected;
        worst = worst.min(ratio);
        let exact_ok = codec != Codec::Opus || exact * 100 >= got * 99;
        if ratio >= 0.95 && exact_ok {
            clean += 1;
        }
    }
    let cpu = (cpu1 - cpu0) / wall;
    println!(
        "steady state over {wall:.1} s: gateway CPU {:.1}% of one core ({:.3}% per call), RSS {rss:.0} MiB ({:.1} KiB per call)",
        cpu * 100.0,
        cpu * 100.0 / active.max(1) as f64,
        rss * 1024.0 / active.max(1) as f64
    );
    println!(
        "audio: {clean} of {} sampled calls clean (echo back in the session: >= 95% of frames{}); worst {:.1}% of frames",
        taps.len(),
        if codec == Codec::Opus { ", byte-exact" } else { "" },
        worst * 100.0
    );
    feeder.abort();
    bridge.shutdown(Duration::from_secs(30)).await;
    sip.shutdown().await;
    let _ = std::process::Command::new("pkill").args(["-f", &format!("sipp -sf .* -p {sipp_port} ")]).status();
}
