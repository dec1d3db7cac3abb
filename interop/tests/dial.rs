//! Dial-out end to end on loopback: the REST dial (as an SDK sends it), the bridge placing the
//! call with our SIP stack, real far ends (sipp scenarios, baresip with audio), the session's
//! connection and stream, and the call events in order.

mod common;
#[path = "../../crates/rest-api/tests/peer/mod.rs"]
mod peer;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bridge::BridgeConfig;
use interop_tests::{free_port, read_wav, require, sine, tone_ratio, ulaw_decode, ulaw_encode, Baresip, Kamailio};
use serde_json::{json, Value};
use session::router::{FrameCodec, MediaFrame};
use session::service::{ServiceConfig, SessionService};
use session::{ConnectionKind, MediaMode, ProjectId, SessionId, StreamId, StreamSpec};
use sip_signaling::driver::DriverConfig;
use tokio::sync::mpsc;

use common::*;

struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/sip-signaling/tests/sipp").join(format!("{name}.xml"))
}

fn sipp(name: &str, port: u16) -> Sipp {
    sipp_file(&scenario(name), port)
}

fn sipp_file(scenario: &Path, port: u16) -> Sipp {
    sipp_with(scenario, port, &[])
}

/// sipp running `scenario` on `port`, with `extra` arguments (`-set name value` for the
/// scenario's `[$name]`).
fn sipp_with(scenario: &Path, port: u16, extra: &[&str]) -> Sipp {
    require("sipp", "sip-tester");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-mi", "127.0.0.1"])
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-timeout", "25s", "-nostdin"])
        .args(["-mp", &free_port().to_string()])
        .args(extra)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    std::thread::sleep(Duration::from_millis(300));
    Sipp(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_then_far_end_bye() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp("remote_bye", port);
    let (status, answer) = dial(
        &g,
        &sid,
        json!({"uri": format!("sip:alice@127.0.0.1:{port}"), "from": "gw@example.com",
        "headers": {"X-Test": "1"}, "secure": false, "video": null}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for k in ["id", "connectionId", "streamId", "projectId", "sessionId", "createdAt", "updatedAt"] {
        assert!(!answer[k].is_null(), "{k} in {answer}");
    }
    // The connection and stream exist at once, before the far end answers.
    let conn = session::ConnectionId::from_wire(answer["connectionId"].as_str().expect("cid"));
    let c = g.service.connection(&sid, &conn).expect("SIP connection in the session");
    assert_eq!(c.kind, ConnectionKind::Sip);
    assert_eq!(c.data, "from-dial-token");
    let stream = g.service.stream(&sid, &StreamId::from_wire(answer["streamId"].as_str().expect("sid")));
    let classes = stream.map(|s| s.layout_class_list);
    assert_eq!(classes, Some(vec!["focus".to_owned(), "sip".to_owned()]), "the token's layout classes");
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(
        events,
        ["callCreated", "callUpdated:DIALING", "callUpdated:ACTIVE", "callUpdated:HANGUP", "callDestroyed:700"]
    );
    assert!(g.service.connection(&sid, &conn).is_none(), "the connection ends with the call");
    assert_eq!(g.bridge.active_calls(), 0);
}

/// A token that may only subscribe cannot bring a SIP party in (its stream publishes): 403, and
/// nothing is created or reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_token_cannot_dial() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let token = jwt(json!({"iss": KEY, "scope": "session.connect", "session_id": sid.as_str(), "iat": t,
        "exp": t + 600, "role": "subscriber"}));
    let body = json!({"sessionId": sid.as_str(), "token": token, "sip": {"uri": "sip:bob@127.0.0.1:9"}});
    let (status, text) = http(g.port, "POST", &format!("/v2/project/{KEY}/dial"), Some(&body)).await;
    assert_eq!(status, 403, "{text}");
    let error: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(error["code"], 403);
    assert!(error["message"].as_str().is_some_and(|m| m.contains("subscriber")), "{error}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(g.calls.try_recv().is_err(), "nothing reported");
    assert_eq!(g.bridge.active_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_the_real_sip_status() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let not_found = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/not_found.xml");
    for (scenario, sip_extra, code) in [
        (scenario("busy"), json!({}), "486"),
        (scenario("auth401"), json!({"auth": {"username": "alice", "password": "wrong"}}), "403"),
        (not_found, json!({"from": "gw@example.com", "headers": {"X-Test": "1"}}), "404"),
    ] {
        let port = free_port();
        let _sipp = sipp_file(&scenario, port);
        let mut sip = json!({"uri": format!("sip:bob@127.0.0.1:{port}")});
        if let (Some(o), Value::Object(extra)) = (sip.as_object_mut(), sip_extra) {
            o.extend(extra);
        }
        let (status, answer) = dial(&g, &sid, sip).await;
        assert_eq!(status, 200, "{answer}");
        let events = call_events(&mut g, Duration::from_secs(20)).await;
        assert_eq!(
            events.last().map(String::as_str),
            Some(format!("callDestroyed:{code}").as_str()),
            "{scenario:?}: {events:?}"
        );
    }
    // The right password gets through the challenge.
    let port = free_port();
    let _sipp = sipp("auth401", port);
    let (status, answer) = dial(
        &g,
        &sid,
        json!({"uri": format!("sip:bob@127.0.0.1:{port}"),
        "auth": {"username": "alice", "password": "s3cret"}}),
    )
    .await;
    assert_eq!(status, 200);
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "no ACTIVE after the challenge: {seen:?}");
    let cid = answer["connectionId"].as_str().expect("cid");
    let rest = force_disconnect(&mut g, &sid, cid).await;
    assert_eq!(rest.last().map(String::as_str), Some("callDestroyed:700"), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_ringing_and_bad_requests() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp("cancel", port);
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:carol@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200);
    let ringing = call_events_until(&mut g, "callUpdated", Duration::from_secs(10)).await;
    let ringing2 = call_events_until(&mut g, "callUpdated", Duration::from_secs(10)).await;
    assert!(ringing.iter().chain(&ringing2).any(|e| e == "callUpdated:RINGING"), "{ringing:?} {ringing2:?}");
    let cid = answer["connectionId"].as_str().expect("cid");
    let rest = force_disconnect(&mut g, &sid, cid).await;
    assert_eq!(rest.last().map(String::as_str), Some("callDestroyed:700"), "CANCEL then a normal end: {rest:?}");

    // Contract errors.
    let relayed =
        g.service.create_session(&ProjectId::api_key(KEY).expect("key"), MediaMode::Relayed, None, SystemTime::now());
    let (status, body) = dial(&g, &relayed, json!({"uri": "sip:a@127.0.0.1"})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = dial(&g, &sid, json!({"uri": "mailto:a@b"})).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(400)), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("sip.uri")));
    let body = json!({"sessionId": sid.as_str(), "token": "T1==bogus", "sip": {"uri": "sip:a@127.0.0.1"}});
    let (status, _) = http(g.port, "POST", &format!("/v2/project/{KEY}/dial"), Some(&body)).await;
    assert_eq!(status, 403);
    let unknown =
        SessionId::mint(&ProjectId::api_key(KEY).expect("key"), None, SystemTime::now(), &mut rand::thread_rng());
    let (status, _) = dial(&g, &unknown, json!({"uri": "sip:a@127.0.0.1"})).await;
    assert_eq!(status, 404);
    assert!(g.calls.try_recv().is_err(), "refused dials report nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rtp_from_the_far_end_is_704() {
    let config = BridgeConfig { no_rtp_timeout: Duration::from_millis(1500), ..BridgeConfig::default() };
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp("answer", port);
    let (status, _) = dial(&g, &sid, json!({"uri": format!("sip:dave@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200);
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:704"), "{events:?}");
}

/// A far end that only receives (`a=recvonly`: a voicemail system, a call recorder) sends nothing
/// by design (RFC 3264 §5.1): it gets the session's audio and its silence is no media timeout.
/// When it re-offers `sendrecv` and still sends nothing, the timeout counts from that re-offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_end_that_only_receives_is_not_timed_out() {
    let config = BridgeConfig {
        no_rtp_timeout: Duration::from_millis(1200),
        inactivity_timeout: Duration::from_millis(1200),
        ..BridgeConfig::default()
    };
    let ToneCall { mut g, tone, media, port, far, answer, .. } =
        tone_call(config, "recorder", move |port| format!("{}a=recvonly\r\n", pcmu_answer(port, false))).await;
    // Three times the timeouts, the far end silent.
    let (packets, tone_share) = heard(&media, Duration::from_millis(3600)).await;
    let events = call_events(&mut g, Duration::from_millis(100)).await;
    assert!(!events.iter().any(|e| e.starts_with("callDestroyed")), "no timeout: {events:?}");
    assert!(packets >= 150 && tone_share > 0.8, "the recorder gets the session's audio: {packets} packets");
    // Now it says it sends, and does not: 704 about 1.2 s after the re-offer, not at once.
    far.reinvite(&pcmu_answer(port, false).replace("o=uas 1 1", "o=uas 1 2"));
    let reoffered = Instant::now();
    let events = call_events(&mut g, Duration::from_secs(5)).await;
    tone.abort();
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:704"), "{events:?}");
    let after = reoffered.elapsed();
    assert!(after >= Duration::from_millis(1000), "counted from the re-offer: {after:?}");
    drop(answer);
}

/// The marker bit starts each talkspurt (RFC 3551 §4.1): our first audio packet carries it, the
/// ones that follow do not, and the first after a hold (nothing sent meanwhile, the timestamp
/// gone on with the clock) carries it again, so the far end's jitter buffer takes the jump for a
/// new start instead of a burst of loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marker_bit_starts_each_talkspurt() {
    let ToneCall { mut g, sid, tone, media, port, far, answer } =
        tone_call(BridgeConfig::default(), "pbx", move |port| pcmu_answer(port, false)).await;
    // PCMU packets only (RTCP aside): (marker, timestamp), for `window`.
    let pcmu = |window: Duration| {
        let media = &media;
        async move {
            let (mut out, mut buf) = (Vec::new(), vec![0u8; 2048]);
            let end = tokio::time::Instant::now() + window;
            while let Ok(Ok(n)) = tokio::time::timeout_at(end, media.recv(&mut buf)).await {
                if n >= 12 && buf[1] & 0x7f == 0 {
                    out.push((buf[1] & 0x80 != 0, u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]])));
                }
            }
            out
        }
    };
    let first = pcmu(Duration::from_millis(600)).await;
    assert!(first.len() >= 20, "{} packets", first.len());
    assert!(first[0].0, "the first packet starts a talkspurt");
    assert!(first[1..].iter().all(|(m, _)| !m), "no marker within the talkspurt: {first:?}");
    far.reinvite(
        &pcmu_answer(port, false).replace("o=uas 1 1", "o=uas 1 2").replace("m=audio", "a=sendonly\r\nm=audio"),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let held = pcmu(Duration::from_millis(500)).await;
    assert!(held.len() <= 2, "nothing while held: {} packets", held.len());
    far.reinvite(&pcmu_answer(port, false).replace("o=uas 1 1", "o=uas 1 3"));
    let resumed = pcmu(Duration::from_millis(600)).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(resumed.len() >= 20, "{} packets after the resume", resumed.len());
    assert!(resumed[0].0, "the first packet after the hold starts a talkspurt");
    assert!(resumed[1..].iter().all(|(m, _)| !m), "and only it: {resumed:?}");
    let last = first.last().map_or(0, |p| p.1);
    assert!(resumed[0].1.wrapping_sub(last) >= 8 * 800, "the timestamp went on with the clock while held");
}

/// An answer whose `c=` names a host (RFC 4566 allows a fully qualified name; here `localhost`)
/// gets the audio at the address the name resolves to. Before, the call stayed silent: the
/// negotiation does no IO and the address was left empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_in_the_answer_is_resolved() {
    let ToneCall { mut g, sid, tone, media, answer, .. } = tone_call(BridgeConfig::default(), "named", move |port| {
        pcmu_answer(port, false).replace("c=IN IP4 127.0.0.1", "c=IN IP4 localhost")
    })
    .await;
    let (packets, tone_share) = heard(&media, Duration::from_millis(800)).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(packets >= 25 && tone_share > 0.8, "the audio at the resolved address: {packets} packets");
}

/// A re-offer that removes the audio stream (port 0, RFC 3264 §8.2) gets nothing more on it, RTP
/// or RTCP, and its silence is no timeout; a later re-offer that brings it back gets the audio
/// again. Before, we went on sending to the removed stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_audio_stream_gets_nothing() {
    let config = BridgeConfig {
        no_rtp_timeout: Duration::from_millis(1000),
        inactivity_timeout: Duration::from_millis(1000),
        rtcp_interval: Duration::from_millis(300),
        ..BridgeConfig::default()
    };
    let ToneCall { mut g, sid, tone, media, port, far, answer } =
        tone_call(config, "pbx", move |port| pcmu_answer(port, false)).await;
    // The far end sends too (for the timeouts), until it removes the stream.
    let mut buf = vec![0u8; 2048];
    let (_, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    let sending = {
        let media = std::sync::Arc::new(media);
        let m = media.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            for n in 0..40u32 {
                every.tick().await;
                let _ = m.send_to(&rtp_packet(0, n as u16, n * 160, 0x51, &[0xff; 160]), gateway_rtp).await;
            }
        });
        (media, task)
    };
    let (media, feeder) = sending;
    let _ = feeder.await;
    far.reinvite(&pcmu_answer(0, false).replace("o=uas 1 1", "o=uas 1 2"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    while media.try_recv(&mut buf).is_ok() {}
    let mut after = 0;
    let end = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Ok(_)) = tokio::time::timeout_at(end, media.recv(&mut buf)).await {
        after += 1;
    }
    let events = call_events(&mut g, Duration::from_millis(100)).await;
    assert!(!events.iter().any(|e| e.starts_with("callDestroyed")), "no timeout while removed: {events:?}");
    assert_eq!(after, 0, "nothing sent to a removed stream (RTP or RTCP)");
    far.reinvite(
        &pcmu_answer(port, false).replace("o=uas 1 1", "o=uas 1 3").replace("m=audio", "a=recvonly\r\nm=audio"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (packets, tone_share) = heard(&media, Duration::from_millis(600)).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(packets >= 20 && tone_share > 0.8, "the audio again once the stream is back: {packets} packets");
}

/// Audio both ways through the session: a publisher in the session sends 1000 Hz (Opus); baresip
/// answers with 440 Hz in PCMU (transcoded both ways) or in Opus (forwarded as it is both ways:
/// the SIP party hears exactly one stream). baresip's recording must hold 1000 Hz, and the SIP
/// stream in the session must carry 440 Hz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways_through_the_session() {
    audio_both_ways("PCMU", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g722_audio_flows_both_ways() {
    // baresip names it by its sample rate.
    audio_both_ways("G722/16000/1", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_audio_flows_both_ways() {
    audio_both_ways("PCMA", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_audio_is_forwarded_both_ways() {
    audio_both_ways("opus", None).await;
}

/// `secure: true`: SRTP by SDES (baresip requires it: `srtp-mand`), audio checked both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_calls_carry_srtp_both_ways() {
    audio_both_ways("PCMU", Some(bridge::SrtpOffer::Sdes)).await;
}

/// `secure: true` with the project set to offer DTLS-SRTP (baresip: `dtls_srtp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_calls_by_dtls_srtp_carry_audio_both_ways() {
    audio_both_ways("PCMU", Some(bridge::SrtpOffer::Dtls)).await;
}

async fn audio_both_ways(codec: &str, srtp: Option<bridge::SrtpOffer>) {
    let secure = srtp.is_some();
    let mut config = BridgeConfig::default();
    if let Some(offer) = srtp {
        config.srtp_offer_by_project.insert(KEY.to_owned(), offer);
    }
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let feeder = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let port = free_port();
    let mediaenc = match srtp {
        None => "",
        Some(bridge::SrtpOffer::Sdes) => "srtp-mand",
        Some(bridge::SrtpOffer::Dtls) => "dtls_srtp",
    };
    let tag = codec.split('/').next().unwrap_or(codec);
    let bs = Baresip::start_with_codec(&format!("dial-audio-{tag}-{mediaenc}"), port, mediaenc, 440, codec);
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}"), "secure": secure})).await;
    assert_eq!(status, 200, "{answer}");
    let sip_stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    let (_, mut tap) = g.service.tap(&sip_stream).expect("tap the SIP stream");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}\n{}", bs.log());
    // Three seconds of the SIP party's audio as the session receives it.
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut heard = Vec::new();
    let start = Instant::now();
    // Three seconds of it, waiting up to 15 s for the first (a DTLS-SRTP handshake on a loaded
    // machine can take a few seconds before any media flows).
    while heard.len() < 3 * 48_000 && start.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), tap.recv()).await {
            let mut pcm = Vec::new();
            if dec.decode(&f.data, &mut pcm).is_ok() {
                heard.extend(pcm);
            }
        }
    }
    let cid = answer["connectionId"].as_str().expect("cid");
    let _ = force_disconnect(&mut g, &sid, cid).await;
    feeder.abort();
    // The session heard baresip's 440 Hz (skip the first half second of start-up).
    let tail = &heard[heard.len().min(24_000)..];
    let ratio = tone_ratio(tail, 440.0, 48_000.0);
    assert!(
        tail.len() > 48_000,
        "at least a second of SIP audio reached the session ({} samples); baresip:\n{}",
        tail.len(),
        bs.log()
    );
    assert!(ratio > 0.5, "the SIP stream carries 440 Hz (ratio {ratio:.3})");
    let negotiated = format!("Set audio encoder: {}", codec.split('/').next().unwrap_or(codec));
    assert!(bs.log().contains(&negotiated), "baresip used {codec}:\n{}", bs.log());
    // baresip heard our 1000 Hz.
    std::thread::sleep(Duration::from_millis(500));
    let recs = bs.recordings("dec");
    let (rate, samples) =
        recs.iter().find_map(|p| read_wav(p)).unwrap_or_else(|| panic!("no recording: {:?}\n{}", recs, bs.log()));
    let tail = &samples[samples.len().min(rate as usize / 2)..];
    let ratio = tone_ratio(tail, 1000.0, f64::from(rate));
    assert!(ratio > 0.5, "baresip heard the session's 1000 Hz (ratio {ratio:.3}, {} samples at {rate})", tail.len());
}

/// The official Python SDK dials through the gateway unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_dials() {
    let mut g = gateway(BridgeConfig::default()).await;
    let port = free_port();
    let _sipp = sipp("remote_bye", port);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/dial.py");
    let url = format!("http://127.0.0.1:{}", g.port);
    let uri = format!("sip:sdk@127.0.0.1:{port}");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).args([&url, KEY, SECRET, &uri]).output()
    })
    .await
    .expect("join")
    .expect("python3 (Debian python3) must be installed");
    assert_ne!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "SDK dial failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).expect("json");
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(events.first().map(String::as_str), Some("callCreated"), "{events:?}");
    assert!(events.iter().any(|e| e == "callUpdated:ACTIVE"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?} for {out}");
    assert!(out["connectionId"].as_str().is_some_and(|c| c.len() == 36), "{out}");
}

/// DTMF both ways: digits a real peer sends as RFC 4733 (sipp replaying captured telephone-events)
/// reach the session as `dtmf` signals from the SIP connection, in order; digits played through
/// REST reach baresip as RFC 4733 events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_both_ways() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let mut events = g.service.subscribe();
    let port = free_port();
    let _sipp = sipp_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/dtmf_uas.xml"), port);
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:dtmf@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200, "{answer}");
    let conn = answer["connectionId"].as_str().expect("cid").to_owned();
    let ended = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(ended.last().map(String::as_str), Some("callDestroyed:700"), "{ended:?}");
    let mut digits = String::new();
    while let Ok(e) = events.try_recv() {
        if let session::EventKind::Signal { from: Some(f), signal_type, data, .. } = &e.kind {
            if signal_type == "dtmf" && f.as_str() == conn {
                digits.push_str(data);
            }
        }
    }
    assert_eq!(digits, "15902", "the digits pressed, once each, in order");

    // Out: REST play-dtmf to baresip.
    let port = free_port();
    let bs = Baresip::start("dial-dtmf", port, "", 440);
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200, "{answer}");
    let cid = answer["connectionId"].as_str().expect("cid").to_owned();
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let path = format!("/v2/project/{KEY}/session/{}/connection/{cid}/play-dtmf", sid.as_str());
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "1a"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "159"}))).await;
    assert_eq!(status, 200, "{body}");
    let all = format!("/v2/project/{KEY}/session/{}/play-dtmf", sid.as_str());
    let (status, body) = http(g.port, "POST", &all, Some(&json!({"digits": "p0#"}))).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = bs.log();
    let _ = force_disconnect(&mut g, &sid, &cid).await;
    // baresip (with its menu module) logs `received event: '1' (end=1)` once per key release.
    let received: String = log
        .split("received event: '")
        .skip(1)
        .filter(|rest| rest.get(1..9) == Some("' (end=1"))
        .filter_map(|rest| rest.chars().next())
        .collect();
    assert_eq!(received, "1590#", "baresip received the digits as RFC 4733 events:\n{log}");
}

/// Dials the sipp on `port` and follows the SIP stream's mute state until the call ends normally:
/// the sequence of states seen, starting unmuted.
async fn mute_states_of_a_call(g: &mut Gateway, sid: &SessionId, port: u16, observe: bool) -> Vec<bool> {
    let (status, answer) =
        dial(g, sid, json!({"uri": format!("sip:s6@127.0.0.1:{port}"), "observeForceMute": observe})).await;
    assert_eq!(status, 200, "{answer}");
    let stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    let mut states = vec![false];
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let Some(s) = g.service.stream(sid, &stream) else { break };
        if states.last() != Some(&s.audio_muted) {
            states.push(s.audio_muted);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = call_events(g, Duration::from_secs(10)).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    states
}

/// `*6` from the SIP party (RFC 4733 events replayed by sipp) toggles its stream's mute, for a call
/// dialled with `observeForceMute` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_six_toggles_the_mute_only_when_observed() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/dtmf_star6.xml");
    for observe in [true, false] {
        let port = free_port();
        let _sipp = sipp_file(&scenario, port);
        let states = mute_states_of_a_call(&mut g, &sid, port, observe).await;
        if observe {
            assert_eq!(states, [false, true], "*6 muted the SIP party");
        } else {
            assert_eq!(states, [false], "without observeForceMute *6 changes nothing");
        }
    }
}

/// A force mute (REST, session-wide) of a call dialled with `observeForceMute`: `muteForced` is
/// reported, the SIP party's audio stops reaching the session, and it hears the announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_mute_is_reported_silences_the_sip_party_and_is_announced() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let port = free_port();
    let bs = Baresip::start("dial-mute", port, "", 440);
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}"), "observeForceMute": true})).await;
    assert_eq!(status, 200, "{answer}");
    let sip_stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    let (_, mut tap) = g.service.tap(&sip_stream).expect("tap");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut rms = |tap: &mut mpsc::Receiver<MediaFrame>| {
        let mut pcm = Vec::new();
        while let Ok(f) = tap.try_recv() {
            let _ = dec.decode(&f.data, &mut pcm);
        }
        let tail = &pcm[pcm.len().saturating_sub(24_000)..];
        (tail.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / tail.len().max(1) as f64).sqrt()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = rms(&mut tap);
    let muted_at = Instant::now();
    let (status, body) = http(
        g.port,
        "POST",
        &format!("/v2/project/{KEY}/session/{}/mute", sid.as_str()),
        Some(&json!({"active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let more = call_events_until(&mut g, "muteForced", Duration::from_secs(5)).await;
    assert_eq!(more.last().map(String::as_str), Some("muteForced"), "{more:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = rms(&mut tap);
    assert!(before > 1000.0, "baresip's tone reached the session before the mute (rms {before:.0})");
    assert!(after < before / 20.0, "silence after the mute (rms {after:.0}, before {before:.0})");
    let mute_offset = muted_at.elapsed();
    let cid = answer["connectionId"].as_str().expect("cid");
    let _ = force_disconnect(&mut g, &sid, cid).await;
    // baresip heard silence (nobody else in the session), then the announcement.
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let (rate, samples) = recs.iter().find_map(|p| read_wav(p)).expect("baresip recording");
    let rate = rate as usize;
    let window_rms = |from: usize, len: usize| {
        let w = &samples[from.min(samples.len())..(from + len).min(samples.len())];
        (w.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / w.len().max(1) as f64).sqrt()
    };
    // The recording ends at hang-up; the mute came `mute_offset` before that.
    let end = samples.len();
    let mute_at = end.saturating_sub(mute_offset.as_millis() as usize * rate / 1000);
    let quiet = window_rms(mute_at.saturating_sub(rate), rate * 9 / 10);
    let spoken = window_rms(mute_at, rate * 2);
    assert!(quiet < 100.0, "nothing to hear before the announcement (rms {quiet:.0})");
    assert!(spoken > 500.0, "the announcement is audible after the mute (rms {spoken:.0})");
}

/// The SIP leg ends when the session ends: a session left with only the SIP call in it ends after
/// the configured empty time, and the call gets its BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_ends_with_its_session() {
    let rooms = session::RoomsConfig { empty_timeout: Duration::from_millis(1500), ..session::RoomsConfig::default() };
    let mut g = gateway_with(BridgeConfig::default(), ServiceConfig { rooms, ..ServiceConfig::default() }).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp("answer", port);
    let (status, _) = dial(&g, &sid, json!({"uri": format!("sip:erin@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200);
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert!(events.iter().any(|e| e == "callUpdated:ACTIVE"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    assert!(!g.service.is_live(&sid), "the session ended");
}

/// Hold and resume from the far end (sipp re-INVITEs; the scenario itself checks that `sendonly`
/// is answered `recvonly` and `sendrecv` is answered `sendrecv`, failing the call otherwise):
/// ON_HOLD then ACTIVE, and hold does not trip the media timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_from_the_far_end() {
    // sipp sends no RTP at all: 1.2 s without RTP ends a call (704), unless on hold. Hold lasts
    // 1.5 s, resume is followed by the BYE 0.5 s later: the call must end normally.
    let config = BridgeConfig { no_rtp_timeout: Duration::from_millis(1200), ..BridgeConfig::default() };
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/hold_resume.xml"), port);
    let (status, _) = dial(&g, &sid, json!({"uri": format!("sip:hold@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200);
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    let states: Vec<&str> = events.iter().filter_map(|e| e.strip_prefix("callUpdated:")).collect();
    assert_eq!(states, ["DIALING", "ACTIVE", "ON_HOLD", "ACTIVE", "HANGUP"], "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "a normal end, not 704: {events:?}");
}

/// The other media timeouts: RTP that stops (706 Max Inactive) and a call that reaches its maximum
/// duration (705).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_and_max_duration_end_calls_with_their_codes() {
    let config = BridgeConfig { inactivity_timeout: Duration::from_secs(1), ..BridgeConfig::default() };
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/rtp_then_quiet.xml"), port);
    let (status, _) = dial(&g, &sid, json!({"uri": format!("sip:quiet@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200);
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:706"), "{events:?}");

    let config = BridgeConfig { max_duration: Duration::from_millis(1500), ..BridgeConfig::default() };
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let port = free_port();
    let _sipp = sipp("answer", port);
    let (status, _) = dial(&g, &sid, json!({"uri": format!("sip:long@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200);
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:705"), "{events:?}");
}

/// A copy of one of sipp's RFC 4733 captures with the RTP sequence numbers and timestamps moved on,
/// so that replaying it is a new key press rather than a retransmission of the first.
fn shifted_capture(name: &str, dir: &Path, seq_shift: u16, ts_shift: u32) -> PathBuf {
    let mut d = std::fs::read(format!("/usr/share/sip-tester/{name}")).expect("sipp capture (sip-tester)");
    assert_eq!(&d[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut off = 24;
    while off + 16 <= d.len() {
        let incl = u32::from_le_bytes([d[off + 8], d[off + 9], d[off + 10], d[off + 11]]) as usize;
        // Ethernet (14) + IPv4 without options (20) + UDP (8), then RTP.
        let rtp = off + 16 + 42;
        if incl >= 54 && d[off + 16 + 14] == 0x45 {
            let seq = u16::from_be_bytes([d[rtp + 2], d[rtp + 3]]).wrapping_add(seq_shift);
            d[rtp + 2..rtp + 4].copy_from_slice(&seq.to_be_bytes());
            let ts = u32::from_be_bytes([d[rtp + 4], d[rtp + 5], d[rtp + 6], d[rtp + 7]]).wrapping_add(ts_shift);
            d[rtp + 4..rtp + 8].copy_from_slice(&ts.to_be_bytes());
            // The UDP checksum no longer matches: zero means "none" over IPv4.
            d[off + 16 + 40] = 0;
            d[off + 16 + 41] = 0;
        }
        off += 16 + incl;
    }
    let path = dir.join(format!("shifted-{name}"));
    std::fs::write(&path, d).expect("write capture");
    path
}

/// `*6` twice: mute, then unmute (the second presses replayed from shifted copies of the captures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_six_twice_mutes_then_unmutes() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let dir = std::env::temp_dir().join(format!("star6-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let star = shifted_capture("dtmf_2833_star.pcap", &dir, 1000, 80_000);
    let six = shifted_capture("dtmf_2833_6.pcap", &dir, 1000, 80_000);
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/dtmf_star6.xml"))
        .expect("scenario");
    let second = format!(
        "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  <pause milliseconds=\"400\"/>\n  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  <pause milliseconds=\"1500\"/>\n",
        star.display(),
        six.display()
    );
    let marker = "  <pause milliseconds=\"1500\"/>\n";
    let at = base.find(marker).expect("pause after the first *6") + marker.len();
    let scenario = dir.join("star6_twice.xml");
    std::fs::write(&scenario, format!("{}{second}{}", &base[..at], &base[at..])).expect("scenario");
    let port = free_port();
    let _sipp = sipp_file(&scenario, port);
    let states = mute_states_of_a_call(&mut g, &sid, port, true).await;
    assert_eq!(states, [false, true, false], "*6 muted, the second *6 unmuted");
    let _ = std::fs::remove_dir_all(dir);
}

/// `transport=tls` signalling with certificate verification: with the test CA trusted the call
/// goes through; trusting only the system roots, the far end's certificate is refused and the
/// call fails (503) without a single message in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_signalling_verifies_the_far_end_certificate() {
    let dir = std::env::temp_dir().join(format!("dial-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for trusted in [true, false] {
        let (tls_port, tcp_port) = (free_port(), free_port());
        let front = interop_tests::TlsFront::start(&dir, tls_port, tcp_port);
        let mut sip_config = DriverConfig::default();
        if trusted {
            sip_config.tls.ca_file = Some(front.ca.clone());
            sip_config.tls.only_ca_file = true;
        }
        let mut g = gateway_sip(BridgeConfig::default(), ServiceConfig::default(), sip_config).await;
        let sid = routed(&g);
        let _sipp = sipp_tcp(&scenario("remote_bye"), tcp_port);
        let uri = format!("sip:tls@127.0.0.1:{tls_port};transport=tls");
        let (status, answer) = dial(&g, &sid, json!({"uri": uri})).await;
        assert_eq!(status, 200, "{answer}");
        let events = call_events(&mut g, Duration::from_secs(30)).await;
        if trusted {
            assert!(events.iter().any(|e| e == "callUpdated:ACTIVE"), "{events:?}");
            assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
        } else {
            assert!(!events.iter().any(|e| e == "callUpdated:ACTIVE"), "an untrusted certificate: {events:?}");
            assert_eq!(events.last().map(String::as_str), Some("callDestroyed:503"), "{events:?}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Through a SIP proxy of the kind carriers and PBXs put in front of their endpoints (Kamailio,
/// to baresip behind it): the INVITE is challenged (407) and sent again with the dial's
/// credentials; the proxy record-routes, and every later request of the dialog goes through it
/// (RFC 3261 §16.12 loose routing; over TCP and TLS the proxy changes transport to reach the far
/// end, so its Record-Route has two entries); the BYE comes from either end; audio flows both
/// ways. Over UDP, TCP and TLS to the proxy (its certificate checked against the test CA), and
/// with the proxy as the gateway's outbound proxy (`sip.outbound_proxy`: a carrier's number at a
/// domain only the proxy knows, the INVITE carrying the pre-loaded `Route`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_proxy_that_challenges_and_record_routes() {
    for (transport, outbound) in [("udp", false), ("tcp", false), ("tls", false), ("udp", true)] {
        let port = free_port();
        let bs = Baresip::start(&format!("proxy-{transport}-{outbound}"), port, "", 440);
        let proxy = Kamailio::start(transport, &format!("sip:bs@127.0.0.1:{port}"));
        let mut sip_config = DriverConfig::default();
        sip_config.tls.ca_file = Some(proxy.ca.clone());
        sip_config.tls.only_ca_file = true;
        let proxy_port = if transport == "tls" { proxy.tls_port } else { proxy.port };
        let uri = if outbound {
            sip_config.outbound_proxy = Some(format!("sip:127.0.0.1:{proxy_port}"));
            "sip:+15550100@trunk.carrier.invalid".to_owned()
        } else {
            format!("sip:bs@127.0.0.1:{proxy_port};transport={transport}")
        };
        let mut g = gateway_sip(BridgeConfig::default(), ServiceConfig::default(), sip_config).await;
        let sid = routed(&g);
        let feeder = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
        let auth = json!({"username": "gateway", "password": Kamailio::PASSWORD});
        let (status, answer) = dial(&g, &sid, json!({"uri": uri, "auth": auth})).await;
        assert_eq!(status, 200, "{answer}");
        let mut tap = tap_sip_stream(&g, &answer);
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{transport}: {seen:?}\n{}\n{}", proxy.log(), bs.log());
        // Two seconds of the far end's 440 Hz as the session hears it.
        let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
        let mut heard = Vec::new();
        let start = Instant::now();
        while heard.len() < 2 * 48_000 && start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), tap.recv()).await {
                let mut pcm = Vec::new();
                if dec.decode(&f.data, &mut pcm).is_ok() {
                    heard.extend(pcm);
                }
            }
        }
        let tail = &heard[heard.len().min(24_000)..];
        assert!(tail.len() > 24_000, "{transport}: the far end's audio reached the session ({})", tail.len());
        let ratio = tone_ratio(tail, 440.0, 48_000.0);
        assert!(ratio > 0.5, "{transport}: 440 Hz in the session (ratio {ratio:.3})");
        // The far end hangs up over TCP (its BYE comes back through the proxy, which changes
        // transport to reach us) and behind the outbound proxy, the gateway over UDP and TLS.
        let events = if transport == "tcp" || outbound {
            bs.command("hangup", "").expect("baresip hangs up");
            call_events(&mut g, Duration::from_secs(20)).await
        } else {
            force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await
        };
        feeder.abort();
        assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{transport}: {events:?}");
        std::thread::sleep(Duration::from_millis(300));
        let (rate, samples) = recording(&bs);
        let tail = &samples[samples.len().min(rate as usize / 2)..];
        let ratio = tone_ratio(tail, 1000.0, f64::from(rate));
        assert!(ratio > 0.5, "{transport}: the far end heard the session's 1000 Hz (ratio {ratio:.3})");
        let bye_from = if transport == "tcp" || outbound { "udp" } else { transport };
        let mut decisions = vec![
            format!("CHALLENGED INVITE from {transport}"),
            format!("AUTHENTICATED INVITE user=gateway from {transport}"),
            format!("LOOSE-ROUTED ACK from {transport}"),
            format!("LOOSE-ROUTED BYE from {bye_from}"),
        ];
        if outbound {
            decisions.insert(2, "PRELOADED-ROUTE INVITE to sip:+15550100@trunk.carrier.invalid".to_owned());
        }
        // A retransmission (a 200 sent again before its ACK came, a BYE not answered in 500 ms)
        // logs its decision again: once each counts.
        let mut seen = proxy.decisions();
        seen.dedup();
        assert_eq!(seen, decisions, "{transport}: the proxy's decisions\n{}", proxy.log());
    }
}

/// A trunk that wants mutual TLS (Kamailio asking every client for a certificate signed by a CA it
/// trusts): without a client certificate the call fails with 503 (no connection); with one
/// (`TlsOptions::client_cert_file`, the gateway's `sip.tls_client_cert`) the call is answered and audio
/// flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_wants_our_certificate_gets_it() {
    let client_dir = std::env::temp_dir().join(format!("dial-mtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&client_dir);
    std::fs::create_dir_all(&client_dir).expect("dir");
    let ours = interop_tests::TestCertificate::create(&client_dir);
    for with_certificate in [false, true] {
        let port = free_port();
        let bs = Baresip::start(&format!("mtls-{with_certificate}"), port, "", 440);
        let proxy = Kamailio::start_requiring_client_certificate(
            &format!("mtls-{with_certificate}"),
            &format!("sip:bs@127.0.0.1:{port}"),
            &ours.ca,
        );
        let mut sip_config = DriverConfig::default();
        sip_config.tls.ca_file = Some(proxy.ca.clone());
        sip_config.tls.only_ca_file = true;
        if with_certificate {
            sip_config.tls.client_cert_file = Some(ours.cert.clone());
            sip_config.tls.client_key_file = Some(ours.key.clone());
        }
        let mut g = gateway_sip(BridgeConfig::default(), ServiceConfig::default(), sip_config).await;
        let sid = routed(&g);
        let uri = format!("sip:bs@127.0.0.1:{};transport=tls", proxy.tls_port);
        let auth = json!({"username": "gateway", "password": Kamailio::PASSWORD});
        let (status, answer) = dial(&g, &sid, json!({"uri": uri, "auth": auth})).await;
        assert_eq!(status, 200, "{answer}");
        if with_certificate {
            let seen = until_active(&mut g).await;
            assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}\n{}\n{}", proxy.log(), bs.log());
            let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
            assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
        } else {
            let events = call_events(&mut g, Duration::from_secs(30)).await;
            assert!(!events.iter().any(|e| e == "callUpdated:ACTIVE"), "no certificate, no call: {events:?}");
            assert_eq!(events.last().map(String::as_str), Some("callDestroyed:503"), "{events:?}");
            assert!(proxy.decisions().is_empty(), "nothing reached the proxy's script: {:?}", proxy.decisions());
        }
    }
    let _ = std::fs::remove_dir_all(client_dir);
}

fn sipp_tcp(scenario: &Path, port: u16) -> Sipp {
    require("sipp", "sip-tester");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-t", "t1", "-mi", "127.0.0.1"])
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-timeout", "25s", "-nostdin"])
        .args(["-mp", &free_port().to_string()])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    std::thread::sleep(Duration::from_millis(300));
    Sipp(child)
}

/// A far end that vanishes mid-call (sipp answers over TCP, then exits without a BYE): the
/// connection closes, the gateway probes the dialog with OPTIONS over a new connection, which is
/// refused, and the call ends at once with 703 rather than at the media timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_end_that_vanishes_mid_call_is_703() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let port = free_port();
    let sipp = sipp_tcp(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/answer_then_vanish.xml"), port);
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:gone@127.0.0.1:{port};transport=tcp")})).await;
    assert_eq!(status, 200, "{answer}");
    let started = Instant::now();
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert!(events.iter().any(|e| e == "callUpdated:ACTIVE"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:703"), "{events:?}");
    // sipp sent no RTP: the 30 s no-RTP timeout (704) would have come much later.
    assert!(started.elapsed() < Duration::from_secs(10), "ended by the probe, after {:?}", started.elapsed());
    let cid = session::ConnectionId::from_wire(answer["connectionId"].as_str().expect("cid"));
    assert!(g.service.connection(&sid, &cid).is_none(), "the SIP connection left the session");
    drop(sipp);
}

/// RMS of the last `window` samples the tap delivered since the last call (Opus decoded at 48 kHz).
fn tap_rms(tap: &mut mpsc::Receiver<MediaFrame>, dec: &mut media_mixer::opus::OpusDecoder, window: usize) -> f64 {
    let mut pcm = Vec::new();
    while let Ok(f) = tap.try_recv() {
        let _ = dec.decode(&f.data, &mut pcm);
    }
    let tail = &pcm[pcm.len().saturating_sub(window)..];
    (tail.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / tail.len().max(1) as f64).sqrt()
}

/// Where each announcement is heard in a recording at `rate`: (offset in seconds, match score).
fn announcements(samples: &[i16], rate: u32) -> Vec<(media_mixer::Prompt, f64, f64)> {
    use media_mixer::Prompt;
    [Prompt::YouHaveBeenMuted, Prompt::YouAreMuted, Prompt::YouAreUnmuted]
        .into_iter()
        .map(|p| {
            // What the SIP party was sent: the prompt at 8 kHz through G.711, at the recording's rate.
            let narrow: Vec<i16> = p.pcm(8000).expect("prompt").iter().map(|s| ulaw_decode(ulaw_encode(*s))).collect();
            let template = if rate == 8000 {
                narrow
            } else {
                let mut r = media_mixer::resample::Resampler::new(8000, rate).expect("resampler");
                let mut out = Vec::new();
                r.process(&narrow, &mut out);
                out
            };
            let (at, score) = interop_tests::find_in(samples, &template, rate);
            (p, at as f64 / f64::from(rate), score)
        })
        .collect()
}

/// `*6` pressed on a real SIP phone (baresip sends RFC 4733 events): the first mutes the SIP party
/// (its audio stops reaching the session) and it hears "you are muted"; the second unmutes it
/// (audible again) and it hears "you are unmuted". Both announcements are found in baresip's
/// recording by waveform, in that order, and the force-mute one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_six_from_a_phone_is_announced_to_it_and_toggles_what_the_session_hears() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let port = free_port();
    let bs = Baresip::start("dial-star6", port, "", 440);
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}"), "observeForceMute": true})).await;
    assert_eq!(status, 200, "{answer}");
    let stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    let (_, mut tap) = g.service.tap(&stream).expect("tap");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut levels = vec![tap_rms(&mut tap, &mut dec, 24_000)];
    let mut states = vec![g.service.stream(&sid, &stream).expect("stream").audio_muted];
    for _ in 0..2 {
        let r = bs.command("sndcode", "*6");
        assert!(r.is_ok(), "{r:?}\n{}", bs.log());
        tokio::time::sleep(Duration::from_millis(3000)).await;
        levels.push(tap_rms(&mut tap, &mut dec, 24_000));
        states.push(g.service.stream(&sid, &stream).expect("stream").audio_muted);
    }
    let cid = answer["connectionId"].as_str().expect("cid");
    let events = force_disconnect(&mut g, &sid, cid).await;
    assert!(!events.iter().any(|e| e == "muteForced"), "a mute of one's own is not a force mute: {events:?}");
    assert_eq!(states, [false, true, false], "muted by the first *6, unmuted by the second\n{}", bs.log());
    assert!(levels[0] > 1000.0, "the session heard the phone at first: {levels:?}");
    assert!(levels[1] < levels[0] / 20.0, "then silence: {levels:?}");
    assert!(levels[2] > levels[0] / 2.0, "then the phone again: {levels:?}");
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let (rate, samples) = recs.iter().find_map(|p| read_wav(p)).expect("baresip recording");
    let found = announcements(&samples, rate);
    let [forced, muted, unmuted] = found[..] else { unreachable!() };
    assert!(muted.2 > 0.8 && unmuted.2 > 0.8, "both announcements heard: {found:?}");
    assert!(muted.1 < unmuted.1, "\"muted\" before \"unmuted\": {found:?}");
    assert!(forced.2 < 0.5, "not the force-mute announcement: {found:?}");
}

/// A long hold on a secure call: baresip (SDES-SRTP) holds by re-INVITE and resumes several
/// times both media timeouts later. The call goes ON_HOLD and back to ACTIVE without a timeout,
/// and audio flows both ways again after the resume, through SRTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_again_after_a_long_hold_on_a_secure_call() {
    let mut config = BridgeConfig {
        no_rtp_timeout: Duration::from_millis(1500),
        inactivity_timeout: Duration::from_millis(1500),
        ..BridgeConfig::default()
    };
    config.srtp_offer_by_project.insert(KEY.to_owned(), bridge::SrtpOffer::Sdes);
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let feeder = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let port = free_port();
    let bs = Baresip::start("dial-long-hold", port, "srtp-mand", 440);
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}"), "secure": true})).await;
    assert_eq!(status, 200, "{answer}");
    let stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    let (_, mut tap) = g.service.tap(&stream).expect("tap");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}\n{}", bs.log());
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut heard = |tap: &mut mpsc::Receiver<MediaFrame>| {
        let mut pcm = Vec::new();
        while let Ok(f) = tap.try_recv() {
            let _ = dec.decode(&f.data, &mut pcm);
        }
        let tail = pcm[pcm.len().saturating_sub(48_000)..].to_vec();
        tone_ratio(&tail, 440.0, 48_000.0)
    };
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let before = heard(&mut tap);

    let r = bs.command("hold", "");
    assert!(r.is_ok(), "{r:?}\n{}", bs.log());
    let held = call_events_until(&mut g, "callUpdated", Duration::from_secs(5)).await;
    assert_eq!(held, ["callUpdated:ON_HOLD"], "\n{}", bs.log());
    // Four times both timeouts.
    tokio::time::sleep(Duration::from_millis(6000)).await;
    let r = bs.command("resume", "");
    assert!(r.is_ok(), "{r:?}\n{}", bs.log());
    let resumed = call_events_until(&mut g, "callUpdated", Duration::from_secs(5)).await;
    assert_eq!(resumed, ["callUpdated:ACTIVE"], "no timeout during the hold\n{}", bs.log());
    let _ = heard(&mut tap);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after = heard(&mut tap);
    let resumed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cid = answer["connectionId"].as_str().expect("cid");
    let events = force_disconnect(&mut g, &sid, cid).await;
    feeder.abort();
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    assert!(before > 0.5, "the session heard the phone's 440 Hz before the hold ({before:.2})");
    assert!(after > 0.5, "and again after the resume ({after:.2})");
    // The phone heard the session's 1000 Hz in its last second, after the resume.
    let tail_ms = resumed_at.elapsed().as_millis() as usize + 1000;
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let (rate, samples) = recs.iter().find_map(|p| read_wav(p)).expect("baresip recording");
    let last = &samples[samples.len().saturating_sub(tail_ms * rate as usize / 1000)..];
    let last = &last[..last.len().min(rate as usize)];
    let ratio = tone_ratio(last, 1000.0, f64::from(rate));
    assert!(ratio > 0.5, "the phone hears the session after the resume (ratio {ratio:.2})\n{}", bs.log());
    // baresip (srtp-mand) keyed SRTP at the answer, the hold and the resume.
    assert!(bs.log().matches("SRTP is Enabled").count() >= 3, "{}", bs.log());
}

/// The whole path with a real WebRTC participant: a str0m peer joins the session over the
/// signalling WebSocket and publishes a 1000 Hz tone in Opus (DTLS-SRTP, through the router); the
/// gateway dials baresip (440 Hz, PCMU); baresip hears 1000 Hz, and a second str0m peer that
/// subscribes to the SIP stream decodes 440 Hz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_participant_and_the_sip_party_hear_each_other() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let mut signal = peer::Signal::connect(g.port).await;
    let joined = signal.request(json!({"type": "join", "sessionId": sid.as_str(), "token": client_token(&sid)})).await;
    assert_eq!(joined["type"], "ok", "{joined}");
    let mut enc = media_mixer::opus::OpusEncoder::new(media_mixer::opus::OpusEncoderConfig::default()).expect("enc");
    let tone = move |n: u32| {
        let pcm = sine(1000.0, 48_000.0, n as usize * 960, 960, 8000.0);
        let mut out = Vec::new();
        enc.encode(&pcm, &mut out).expect("encode");
        out
    };
    let offer = peer::Offer::new(peer::Mode::Publish, true, false).await.with_audio_source(Box::new(tone));
    let reply = signal.request(json!({"type": "publish", "sdp": offer.sdp, "name": "browser"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let publisher = offer.answer(reply["sdp"].as_str().expect("answer"));
    assert!(publisher.wait(Duration::from_secs(10), |l| l.connected).await, "publisher connected");

    let port = free_port();
    let bs = Baresip::start("dial-webrtc", port, "", 440);
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}")})).await;
    let sip_stream = answer["streamId"].as_str().expect("stream").to_owned();
    let offer = peer::Offer::new(peer::Mode::Subscribe, true, false).await;
    let reply = signal.request(json!({"type": "subscribe", "streamId": sip_stream, "sdp": offer.sdp})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let listener = offer.answer(reply["sdp"].as_str().expect("answer"));
    assert!(
        listener.wait(Duration::from_secs(15), |l| l.audio_frames.len() >= 150).await,
        "the SIP stream reached the subscriber"
    );
    let cid = answer["connectionId"].as_str().expect("cid");
    let _ = force_disconnect(&mut g, &sid, cid).await;
    // The subscriber decodes baresip's 440 Hz (after the first half second).
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut heard = Vec::new();
    listener.with(|l| {
        for f in l.audio_frames.iter().skip(25) {
            let _ = dec.decode(f, &mut heard);
        }
    });
    let ratio = tone_ratio(&heard, 440.0, 48_000.0);
    assert!(ratio > 0.5, "the WebRTC subscriber hears the SIP party's 440 Hz (ratio {ratio:.3})");
    // baresip heard the WebRTC participant's 1000 Hz.
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let (rate, samples) = recs.iter().find_map(|p| read_wav(p)).expect("baresip recording");
    let tail = &samples[samples.len().min(rate as usize / 2)..];
    let ratio = tone_ratio(tail, 1000.0, f64::from(rate));
    assert!(ratio > 0.5, "baresip hears the WebRTC participant's 1000 Hz (ratio {ratio:.3})");
    publisher.stop().await;
    listener.stop().await;
}

/// A synthetic publisher in the session: Opus frames of a `freq` tone every 20 ms.
fn tone_publisher(service: &SessionService, sid: &SessionId, id: &str, freq: f64) -> tokio::task::JoinHandle<()> {
    tone_publisher_framed(service, sid, id, freq, 20)
}

/// An external client connected to `sid` with one audio stream `id`, published.
fn publish_audio(service: &SessionService, sid: &SessionId, id: &str) -> StreamId {
    let publisher = service.connect_external(sid, ConnectionKind::Client, id.into()).expect("publisher");
    let stream = StreamId::from_wire(id);
    let spec = StreamSpec { name: id.into(), has_audio: true, has_video: false, video_type: None };
    service.publish_external(&publisher.id, stream.clone(), spec, Vec::new()).expect("publish");
    stream
}

/// Packet `n` of a tone in Opus packets of `samples` samples at 48 kHz.
fn opus_tone_frame(enc: &mut media_mixer::opus::OpusEncoder, freq: f64, n: u64, samples: u64) -> MediaFrame {
    let pcm = sine(freq, 48_000.0, (n * samples) as usize, samples as usize, 6000.0);
    let mut out = Vec::new();
    enc.encode(&pcm, &mut out).expect("encode");
    MediaFrame {
        codec: FrameCodec::Opus,
        rtp_time: n * samples,
        data: out.into(),
        contiguous: true,
        audio_level: None,
        arrival: std::time::Instant::now(),
    }
}

/// A publisher of a tone in Opus packets of `frame_ms` (10, 20, 40 or 60 ms), paced in real time.
fn tone_publisher_framed(
    service: &SessionService,
    sid: &SessionId,
    id: &str,
    freq: f64,
    frame_ms: u64,
) -> tokio::task::JoinHandle<()> {
    let stream = publish_audio(service, sid, id);
    let service = service.clone();
    tokio::spawn(async move {
        let mut enc =
            media_mixer::opus::OpusEncoder::new(media_mixer::opus::OpusEncoderConfig::default()).expect("enc");
        let mut tick = tokio::time::interval(Duration::from_millis(frame_ms));
        for n in 0..20_000 / frame_ms {
            tick.tick().await;
            let _ = service.write_frame(&stream, opus_tone_frame(&mut enc, freq, n, 48 * frame_ms));
        }
    })
}

/// `streams` limits what the SIP party hears: of two publishers (1000 Hz and 2000 Hz), the call
/// that names only the second hears only 2000 Hz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_list_limits_what_the_sip_party_hears() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let low = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let high = tone_publisher(&g.service, &sid, "tone-2000", 2000.0);
    let port = free_port();
    let bs = Baresip::start("dial-streams", port, "", 440);
    let answer =
        dial_answered(&mut g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}"), "streams": ["tone-2000"]})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cid = answer["connectionId"].as_str().expect("cid");
    let _ = force_disconnect(&mut g, &sid, cid).await;
    low.abort();
    high.abort();
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let (rate, samples) = recs.iter().find_map(|p| read_wav(p)).expect("baresip recording");
    let tail = &samples[samples.len().min(rate as usize / 2)..];
    let named = tone_ratio(tail, 2000.0, f64::from(rate));
    let other = tone_ratio(tail, 1000.0, f64::from(rate));
    assert!(named > 0.5, "the named stream is heard (2000 Hz ratio {named:.3})");
    assert!(other < 0.05, "the other is not (1000 Hz ratio {other:.3})");
}

/// Streams that join and leave mid-call are picked up and dropped: the SIP party hears 1000 Hz,
/// then 1000 Hz and 2000 Hz together, then only 2000 Hz once the first publisher has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_joining_and_leaving_mid_call_are_picked_up_and_dropped() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let first = tone_publisher(&g.service, &sid, "tone-a-1000", 1000.0);
    let port = free_port();
    let bs = Baresip::start("dial-join-leave", port, "", 440);
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}")})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = tone_publisher(&g.service, &sid, "tone-b-2000", 2000.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.abort();
    let a = g.service.connections(&sid).into_iter().find(|c| c.data == "tone-a-1000").expect("first publisher");
    g.service.disconnect_as(&sid, &a.id, session::DisconnectReason::ClientDisconnected).expect("leave");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cid = answer["connectionId"].as_str().expect("cid");
    let _ = force_disconnect(&mut g, &sid, cid).await;
    second.abort();
    std::thread::sleep(Duration::from_millis(300));
    let recs = bs.recordings("dec");
    let (rate, samples) = recs.iter().find_map(|p| read_wav(p)).expect("baresip recording");
    let r = rate as usize;
    let end = samples.len();
    let window = |from: usize, to: usize| &samples[from.min(end)..to.min(end)];
    // About 6 s were recorded: A alone, then A and B, then B alone (margins around the changes).
    let only_a = window(r / 2, 3 * r / 2);
    let both = window(end.saturating_sub(7 * r / 2), end.saturating_sub(5 * r / 2));
    let only_b = window(end.saturating_sub(3 * r / 2), end.saturating_sub(r / 4));
    let hz = |w: &[i16], f: f64| tone_ratio(w, f, f64::from(rate));
    assert!(
        hz(only_a, 1000.0) > 0.5 && hz(only_a, 2000.0) < 0.05,
        "A alone: {:.2} {:.2}",
        hz(only_a, 1000.0),
        hz(only_a, 2000.0)
    );
    assert!(hz(both, 1000.0) > 0.2 && hz(both, 2000.0) > 0.2, "both: {:.2} {:.2}", hz(both, 1000.0), hz(both, 2000.0));
    assert!(
        hz(only_b, 2000.0) > 0.5 && hz(only_b, 1000.0) < 0.05,
        "B alone: {:.2} {:.2}",
        hz(only_b, 1000.0),
        hz(only_b, 2000.0)
    );
}

/// Starts a baresip offering `codec` and sending `tone_hz`, dials it into `sid` and waits until the
/// call is active; returns the far end and the dial's answer.
async fn dial_baresip(g: &mut Gateway, sid: &SessionId, name: &str, codec: &str, tone_hz: u32) -> (Baresip, Value) {
    let port = free_port();
    let bs = Baresip::start_with_codec(name, port, "", tone_hz, codec);
    let (status, answer) = dial(g, sid, json!({"uri": format!("sip:bs@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200, "{answer}");
    let seen = until_active(g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}\n{}", bs.log());
    (bs, answer)
}

/// What a baresip heard: its recording's rate and samples.
fn recording(bs: &Baresip) -> (u32, Vec<i16>) {
    let recs = bs.recordings("dec");
    recs.iter().find_map(|p| read_wav(p)).unwrap_or_else(|| panic!("no recording: {recs:?}\n{}", bs.log()))
}

/// The session's mix runs at the highest rate its calls' codecs take: a PCMU call alone is mixed
/// at 8 kHz; when a G.722 call joins, the mix moves to 16 kHz (the G.722 party hears a 6 kHz tone
/// that an 8 kHz mix could not carry) and the PCMU party keeps hearing; when the G.722 call
/// leaves, the mix goes back to 8 kHz and the PCMU party still hears the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_follows_the_calls_codec_rates() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let low = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let high = tone_publisher(&g.service, &sid, "tone-6000", 6000.0);
    let (narrow, a1) = dial_baresip(&mut g, &sid, "dial-rate-pcmu", "PCMU/8000/1", 440).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (wide, a2) = dial_baresip(&mut g, &sid, "dial-rate-g722", "G722/16000/1", 660).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = force_disconnect(&mut g, &sid, a2["connectionId"].as_str().expect("cid")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = force_disconnect(&mut g, &sid, a1["connectionId"].as_str().expect("cid")).await;
    low.abort();
    high.abort();
    std::thread::sleep(Duration::from_millis(300));
    // The G.722 party: the 6 kHz tone (only a 16 kHz mix carries it), the 1 kHz tone and the PCMU
    // party's 440 Hz.
    let (rate, samples) = recording(&wide);
    assert_eq!(rate, 16_000, "baresip decoded G.722:\n{}", wide.log());
    let tail = &samples[samples.len().min(rate as usize / 2)..];
    let hz = |w: &[i16], f: f64| tone_ratio(w, f, f64::from(rate));
    assert!(tail.len() > rate as usize, "{} samples", tail.len());
    // The PCMU party's 440 Hz is the loudest; the two session tones share the rest about equally.
    let (six, one) = (hz(tail, 6000.0), hz(tail, 1000.0));
    assert!(six > 0.05 && one > 0.05, "the G.722 party hears 6 kHz ({six:.3}) and 1 kHz ({one:.3})");
    assert!(six > one / 2.0, "6 kHz is not cut: {six:.3} against 1 kHz {one:.3}");
    assert!(hz(tail, 440.0) > 0.1, "and the PCMU party: {:.3}", hz(tail, 440.0));
    // The PCMU party, before, during and after: always the 1 kHz tone, never 6 kHz; the G.722
    // party's 660 Hz only while it was in the call.
    let (rate, samples) = recording(&narrow);
    let r = rate as usize;
    let end = samples.len();
    let window = |from: usize, to: usize| &samples[from.min(end)..to.min(end)];
    let before = window(r / 2, 3 * r / 2);
    let during = window(end.saturating_sub(4 * r), end.saturating_sub(3 * r));
    let after = window(end.saturating_sub(3 * r / 2), end.saturating_sub(r / 4));
    let hz = |w: &[i16], f: f64| tone_ratio(w, f, f64::from(rate));
    for (name, w) in [("before", before), ("during", during), ("after", after)] {
        assert!(w.len() > r / 2, "{name}: {} samples", w.len());
        assert!(hz(w, 1000.0) > 0.1, "{name}: the PCMU party hears 1 kHz: {:.3}", hz(w, 1000.0));
        assert!(hz(w, 6000.0) < 0.05, "{name}: and no 6 kHz: {:.3}", hz(w, 6000.0));
    }
    assert!(hz(during, 660.0) > 0.1, "during: the G.722 party is heard: {:.3}", hz(during, 660.0));
    assert!(hz(after, 660.0) < 0.05, "after: the G.722 party is gone: {:.3}", hz(after, 660.0));
}

/// Publishers that send 10 ms and 60 ms Opus packets instead of WebRTC's usual 20 ms are heard
/// whole: the mixer takes two short packets per tick and spreads a long one over three ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_packets_of_any_length_are_heard() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let short = tone_publisher_framed(&g.service, &sid, "tone-10ms", 1000.0, 10);
    let long = tone_publisher_framed(&g.service, &sid, "tone-60ms", 2000.0, 60);
    let (bs, answer) = dial_baresip(&mut g, &sid, "dial-opus-lengths", "PCMU", 440).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    short.abort();
    long.abort();
    std::thread::sleep(Duration::from_millis(300));
    let (rate, samples) = recording(&bs);
    let r = rate as usize;
    let end = samples.len();
    let tail = &samples[(end.saturating_sub(2 * r)).min(end)..end.saturating_sub(r / 4)];
    assert!(tail.len() > r, "{} samples", tail.len());
    let hz = |f: f64| tone_ratio(tail, f, f64::from(rate));
    assert!(hz(1000.0) > 0.2, "the 10 ms publisher is heard: {:.3}", hz(1000.0));
    assert!(hz(2000.0) > 0.2, "the 60 ms publisher is heard: {:.3}", hz(2000.0));
    // Heard whole: no 20 ms stretch of the last seconds falls silent.
    let quietest = tail
        .chunks_exact(r / 50)
        .map(|c| (c.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .fold(f64::MAX, f64::min);
    assert!(quietest > 300.0, "a gap in the mix: quietest 20 ms at rms {quietest:.0}");
}

/// An Opus call that hears one stream gets that stream's packets as they are, whatever their
/// length, at the pace of their durations (10 ms packets two per tick, a 60 ms packet once every
/// three ticks), each advancing the RTP timestamp by its own length (RFC 7587: the 48 kHz
/// clock). Checked on the wire: sipp answers with Opus and points the RTP at the test's socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_opus_keeps_each_packets_length_on_the_wire() {
    for frame_ms in [10u64, 60] {
        let mut g = gateway(BridgeConfig::default()).await;
        let sid = routed(&g);
        let (media, rtp_port) = media_socket().await;
        let feeder = tone_publisher_framed(&g.service, &sid, &format!("tone-{frame_ms}ms"), 1000.0, frame_ms);
        let (answer, _sipp) = dial_socket_far_end(&mut g, &sid, "opus_to_socket", rtp_port, &[]).await;
        // (sequence number, timestamp, duration, arrival) of 3 s of packets.
        let mut packets = Vec::new();
        let mut buf = vec![0u8; 2048];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), media.recv(&mut buf)).await else {
                continue;
            };
            let Ok(p) = srtp_transport::RtpPacket::parse(&buf[..n]) else { continue };
            let duration = media_mixer::opus::packet_duration(p.payload()).expect("an Opus packet");
            packets.push((p.seq(), p.timestamp(), duration, Instant::now()));
        }
        let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
        feeder.abort();
        // The first half second is start-up (the prebuffer filling).
        let steady: Vec<_> = packets.iter().filter(|p| p.3 >= start + Duration::from_millis(500)).collect();
        assert!(steady.len() > 20, "{frame_ms} ms: {} packets", steady.len());
        let want = u32::try_from(frame_ms * 48).expect("samples");
        assert!(steady.iter().all(|p| p.2 == want), "{frame_ms} ms: every packet forwarded as it was made");
        for pair in steady.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.0 == a.0.wrapping_add(1) {
                assert_eq!(b.1.wrapping_sub(a.1), a.2, "{frame_ms} ms: the timestamp advances by the packet's length");
            }
        }
        // Sent at real time: the audio of the packets matches the time they took to arrive.
        let (first, last) = (steady[0], steady[steady.len() - 1]);
        let audio: u32 = steady[..steady.len() - 1].iter().map(|p| p.2).sum();
        let pace = f64::from(audio) / 48_000.0 / (last.3 - first.3).as_secs_f64();
        assert!((0.85..1.15).contains(&pace), "{frame_ms} ms: {pace:.2} s of audio per second");
    }
}

/// A call dialled into `sid` to sipp answering with `tests/sipp/{scenario}.xml`, which points the
/// media at the test's own `rtp_port` (`vars`: more sipp variables), until it is answered: the
/// dial's answer, and sipp (kept alive as long as the call).
async fn dial_socket_far_end(
    g: &mut Gateway,
    sid: &SessionId,
    scenario: &str,
    rtp_port: u16,
    vars: &[(&str, &str)],
) -> (Value, Sipp) {
    let port = free_port();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/sipp/{scenario}.xml"));
    let rtp_port = rtp_port.to_string();
    let mut args = vec!["-set", "rtp_port", rtp_port.as_str()];
    for (name, value) in vars {
        args.extend(["-set", name, value]);
    }
    let sipp = sipp_with(&path, port, &args);
    let (status, answer) = dial(g, sid, json!({"uri": format!("sip:{scenario}@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200, "{answer}");
    let seen = until_active(g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    (answer, sipp)
}

/// The SIP stream of a dialled call, tapped.
fn tap_sip_stream(g: &Gateway, answer: &Value) -> mpsc::Receiver<MediaFrame> {
    let stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    g.service.tap(&stream).expect("tap the SIP stream").1
}

/// Dials (`sip`: the dial request's `sip` object), expects 200 and waits for the call to be
/// ACTIVE: the dial's answer.
async fn dial_answered(g: &mut Gateway, sid: &SessionId, sip: Value) -> Value {
    let (status, answer) = dial(g, sid, sip).await;
    assert_eq!(status, 200, "{answer}");
    let seen = until_active(g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    answer
}

/// An RTP packet as a far end sends it.
fn rtp_packet(payload_type: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let header = srtp_transport::RtpHeader { payload_type, seq, timestamp, ssrc, ..Default::default() };
    let mut packet = Vec::new();
    header.write(payload, 0, &mut packet).expect("rtp");
    packet
}

/// A far end with a packet time of its own (`a=ptime:30` or `10`, not the 20 ms the mix ticks at)
/// gets the session's audio in packets of that length, the RTP clock advancing by as much, at real
/// time; and what it sends in packets of that length (two of them swapped on the way, one lost)
/// reaches the session whole, in order and at real time, the lost one made up from the sound
/// before it (never silence). Checked on the wire: sipp answers PCMU with that ptime
/// and points the RTP at the test's socket, which plays the far end's media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_far_ends_packet_time_is_kept_both_ways() {
    for ptime in [30u32, 10] {
        let mut g = gateway(BridgeConfig::default()).await;
        let sid = routed(&g);
        let media = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("media socket"));
        let rtp_port = media.local_addr().expect("addr").port();
        let feeder = tone_publisher(&g.service, &sid, &format!("tone-ptime-{ptime}"), 1000.0);
        let vars = [("ptime", ptime.to_string())];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (answer, _sipp) = dial_socket_far_end(&mut g, &sid, "pcmu_ptime_to_socket", rtp_port, &vars).await;
        let mut tap = tap_sip_stream(&g, &answer);
        // (sequence number, timestamp, payload, arrival) of 3 s of our packets; once the first
        // shows where they come from, the far end's 440 Hz goes back there.
        let (mut ours, mut far_end) = (Vec::new(), None);
        let mut buf = vec![0u8; 2048];
        let start = Instant::now();
        let per_packet = 8 * ptime as usize;
        let sent_packets = 2500 / ptime as usize;
        while start.elapsed() < Duration::from_secs(3) {
            let Ok(Ok((n, from))) = tokio::time::timeout(Duration::from_millis(200), media.recv_from(&mut buf)).await
            else {
                continue;
            };
            let Ok(p) = srtp_transport::RtpPacket::parse(&buf[..n]) else { continue };
            ours.push((p.seq(), p.timestamp(), p.payload().to_vec(), Instant::now()));
            if far_end.is_none() {
                let socket = media.clone();
                far_end = Some(tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_millis(u64::from(ptime)));
                    let mut held = None;
                    for n in 0..sent_packets {
                        every.tick().await;
                        let pcm = sine(440.0, 8000.0, n * per_packet, per_packet, 8000.0);
                        let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
                        let packet = rtp_packet(0, n as u16, (n * per_packet) as u32, 0x5eed, &payload);
                        // The seventieth is lost.
                        if n == 70 {
                            continue;
                        }
                        // The fortieth arrives after the forty-first.
                        if n == 40 {
                            held = Some(packet);
                            continue;
                        }
                        let _ = socket.send_to(&packet, from).await;
                        if let Some(late) = held.take() {
                            let _ = socket.send_to(&late, from).await;
                        }
                    }
                }));
            }
        }
        if let Some(task) = far_end {
            let _ = task.await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
        feeder.abort();
        // Ours, after half a second of start-up: packets of its ptime, the timestamp advancing by
        // as much, at real time, carrying the session's 1000 Hz.
        let steady: Vec<_> = ours.iter().filter(|p| p.3 >= start + Duration::from_millis(500)).collect();
        assert!(steady.len() > 1500 / ptime as usize, "{ptime} ms: {} packets", steady.len());
        assert!(
            steady.iter().all(|p| p.2.len() == per_packet),
            "{ptime} ms: every packet {per_packet} bytes: {:?}",
            steady.iter().map(|p| p.2.len()).collect::<Vec<_>>()
        );
        for pair in steady.windows(2) {
            if pair[1].0 == pair[0].0.wrapping_add(1) {
                assert_eq!(pair[1].1.wrapping_sub(pair[0].1), per_packet as u32, "{ptime} ms: timestamp step");
            }
        }
        let (first, last) = (steady[0], steady[steady.len() - 1]);
        let pace = ((steady.len() - 1) * per_packet) as f64 / 8000.0 / (last.3 - first.3).as_secs_f64();
        assert!((0.85..1.15).contains(&pace), "{ptime} ms: {pace:.2} s of audio per second");
        let pcm: Vec<i16> = steady.iter().flat_map(|p| p.2.iter().map(|b| ulaw_decode(*b))).collect();
        let ratio = tone_ratio(&pcm, 1000.0, 8000.0);
        assert!(ratio > 0.5, "{ptime} ms: the far end hears the session's 1000 Hz ({ratio:.2})");
        // Theirs, as the session got it: every 20 ms frame after the start carries 440 Hz, and
        // all of it arrived (2.5 s sent, the jitter buffer's start aside).
        let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
        let mut frames = Vec::new();
        while let Ok(f) = tap.try_recv() {
            let mut pcm = Vec::new();
            if dec.decode(&f.data, &mut pcm).is_ok() {
                frames.push((f.rtp_time, pcm));
            }
        }
        assert!(frames.windows(2).all(|w| w[1].0 > w[0].0), "{ptime} ms: published in time order");
        let toned = frames
            .iter()
            .filter(|(_, pcm)| {
                let rms = (pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
                rms > 2000.0 && tone_ratio(pcm, 440.0, 48_000.0) > 0.5
            })
            .count();
        assert!(toned >= 120, "{ptime} ms: 2.5 s sent, {toned} x 20 ms of it published");
        assert!(toned <= 126, "{ptime} ms: and no more than was sent: {toned} x 20 ms");
        // Between the first and the last frames, no 5 ms is silent: not the lost packet's, not the
        // swapped ones'.
        let inner: Vec<i16> =
            frames[2..frames.len().saturating_sub(2)].iter().flat_map(|(_, pcm)| pcm.iter().copied()).collect();
        let weakest = inner
            .chunks_exact(240)
            .map(|c| (c.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
            .fold(f64::MAX, f64::min);
        assert!(weakest > 1500.0, "{ptime} ms: the weakest 5 ms has an rms of {weakest:.0}");
    }
}

/// RTCP on the audio leg (RFC 3550 section 6), on the wire: while the call sends audio it sends
/// sender reports (our SSRC, packet and octet counts that match the RTP, an RTP timestamp in step
/// with it, our CNAME) with a report block on the far end's stream (the packet it lost counted,
/// the far end's sender report echoed in LSR and DLSR), and a BYE when it ends. sipp answers
/// PCMU without rtcp-mux and points the media at the test's sockets (RTP at p, RTCP at p + 1);
/// the reports come every second here (`rtcp_interval`; 5 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audio_leg_reports_on_rtcp_and_says_bye() {
    use srtp_transport::rtcp::{parse_compound, write_compound, RtcpPacket};
    let mut g = gateway(BridgeConfig { rtcp_interval: Duration::from_secs(1), ..BridgeConfig::default() }).await;
    let sid = routed(&g);
    let p = free_port();
    let media = std::sync::Arc::new(tokio::net::UdpSocket::bind(("127.0.0.1", p)).await.expect("rtp socket"));
    let reports = tokio::net::UdpSocket::bind(("127.0.0.1", p + 1)).await.expect("rtcp socket");
    let feeder = tone_publisher(&g.service, &sid, "tone-rtcp", 1000.0);
    let (answer, _sipp) = dial_socket_far_end(&mut g, &sid, "pcmu_ptime_to_socket", p, &[("ptime", "20")]).await;
    // Our RTP as (ssrc, timestamp, arrival), and our RTCP as (packets, arrival); our last sender
    // report's NTP time and arrival, for the far end to echo.
    let (mut ours, mut compounds) = (Vec::new(), Vec::new());
    let (mut far_end, mut gateway_rtcp, mut their_sr, mut our_sr) = (None, None, None, None);
    let (mut buf, mut rbuf) = (vec![0u8; 2048], vec![0u8; 2048]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            r = media.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Ok(pkt) = srtp_transport::RtpPacket::parse(&buf[..n]) else { continue };
                ours.push((pkt.ssrc().0, pkt.timestamp(), Instant::now()));
                if far_end.is_none() {
                    gateway_rtcp = Some(std::net::SocketAddr::new(from.ip(), from.port() + 1));
                    let socket = media.clone();
                    far_end = Some(tokio::spawn(async move {
                        let mut every = tokio::time::interval(Duration::from_millis(20));
                        for n in 0..150usize {
                            every.tick().await;
                            // The thirtieth is lost.
                            if n == 30 {
                                continue;
                            }
                            let pcm = sine(440.0, 8000.0, n * 160, 160, 8000.0);
                            let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
                            let packet = rtp_packet(0, n as u16, (n * 160) as u32, 0x5eed, &payload);
                            let _ = socket.send_to(&packet, from).await;
                        }
                    }));
                }
            }
            r = reports.recv_from(&mut rbuf) => {
                let Ok((n, _)) = r else { continue };
                let packets = parse_compound(&rbuf[..n]).expect("our RTCP parses");
                if let Some(RtcpPacket::SenderReport { ntp, .. }) = packets.first() {
                    our_sr = Some((*ntp, Instant::now()));
                }
                compounds.push((packets, Instant::now()));
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        // Two seconds in, the far end's own sender report.
        if their_sr.is_none() && start.elapsed() > Duration::from_secs(2) {
            if let (Some(to), Some((our_ntp, got))) = (gateway_rtcp, our_sr) {
                let ntp = 0x1234_5678_9abc_def0u64;
                // Its report block on our stream echoes our last sender report (the round trip).
                let echo = srtp_transport::rtcp::ReportBlock {
                    ssrc: ours.last().map_or(0, |o| o.0),
                    last_sr: (our_ntp >> 16) as u32,
                    delay_since_last_sr: (got.elapsed().as_secs_f64() * 65536.0) as u32,
                    ..Default::default()
                };
                let sr = RtcpPacket::SenderReport {
                    ssrc: 0x5eed,
                    ntp,
                    rtp_timestamp: 16_000,
                    packets: 100,
                    octets: 16_000,
                    reports: vec![echo],
                };
                reports.send_to(&write_compound(&[sr]), to).await.expect("the far end's report");
                their_sr = Some((ntp, Instant::now()));
            }
        }
    }
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    feeder.abort();
    if let Some(task) = far_end {
        let _ = task.await;
    }
    // The BYE, after the hang-up.
    let mut bye = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    while bye.is_none() && Instant::now() < deadline {
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(200), reports.recv_from(&mut rbuf)).await {
            let packets = parse_compound(&rbuf[..n]).expect("our RTCP parses");
            if packets.iter().any(|p| matches!(p, RtcpPacket::Bye { .. })) {
                bye = Some(packets);
            }
        }
    }
    let our_ssrc = ours.last().map(|o| o.0).expect("our RTP");
    assert!(compounds.len() >= 3, "a report a second: {} in 5 s", compounds.len());
    for (packets, at) in &compounds {
        let RtcpPacket::SenderReport { ssrc, packets: sent, octets, rtp_timestamp, .. } = &packets[0] else {
            panic!("we send audio: a sender report first: {packets:?}")
        };
        assert_eq!(*ssrc, our_ssrc);
        let seen_by_then = ours.iter().filter(|o| o.2 <= *at).count() as i64;
        assert!((i64::from(*sent) - seen_by_then).abs() <= 5, "{sent} packets reported, {seen_by_then} seen");
        assert_eq!(*octets, *sent * 160, "PCMU 20 ms: 160 octets a packet");
        let last = ours.iter().rev().find(|o| o.2 <= *at).expect("RTP before the report");
        let expected = last.1.wrapping_add((at.duration_since(last.2).as_secs_f64() * 8000.0) as u32);
        let off = rtp_timestamp.wrapping_sub(expected) as i32;
        assert!(off.abs() < 800, "the report's RTP time is in step with the RTP: {off} off");
        assert!(
            packets.iter().any(|p| matches!(p, RtcpPacket::Sdes(c) if c[0].0 == our_ssrc && c[0].1[0].0 == 1)),
            "our CNAME: {packets:?}"
        );
    }
    // The report blocks on the far end's stream: the lost one counted, its sender report echoed.
    let blocks: Vec<_> = compounds
        .iter()
        .filter_map(|(packets, at)| match &packets[0] {
            RtcpPacket::SenderReport { reports, .. } => reports.first().map(|b| (*b, *at)),
            _ => None,
        })
        .collect();
    assert!(blocks.iter().all(|(b, _)| b.ssrc == 0x5eed), "{blocks:?}");
    let (last, _) = blocks.last().expect("blocks");
    assert_eq!(last.cumulative_lost, 1, "the one packet lost: {blocks:?}");
    assert!(blocks.iter().any(|(b, _)| b.fraction_lost > 0), "{blocks:?}");
    assert!(last.jitter < 80, "loopback: under 10 ms of jitter, {} units", last.jitter);
    let (ntp, sent_at) = their_sr.expect("the far end's sender report was sent");
    let echoed = blocks.iter().find(|(b, at)| *at > sent_at && b.last_sr != 0).expect("a report after it");
    assert_eq!(echoed.0.last_sr, (ntp >> 16) as u32, "LSR: the middle of its NTP time");
    let dlsr = f64::from(echoed.0.delay_since_last_sr) / 65536.0;
    let held = echoed.1.duration_since(sent_at).as_secs_f64();
    assert!(dlsr > 0.0 && dlsr <= held + 0.05, "DLSR {dlsr:.3} s, held at most {held:.3} s");
    let bye = bye.expect("an RTCP BYE when the call ends");
    assert!(bye.iter().any(|p| matches!(p, RtcpPacket::Bye { ssrcs, .. } if ssrcs == &vec![our_ssrc])), "{bye:?}");
    // And the call's audio quality, reported as its media ended.
    let q = tokio::time::timeout(Duration::from_secs(2), g.quality.recv()).await.ok().flatten().expect("quality");
    assert_eq!((q.packets_received, q.packets_lost), (149, 1), "{q:?}");
    // The lost packet's 20 ms are concealed, unless (on a loaded machine) its loss ran the jitter
    // buffer dry: then the playout's own fill covers it, and nothing is concealed twice.
    assert!(q.concealed <= Duration::from_millis(25), "{q:?}");
    assert_eq!(q.far_end_reports, 1, "{q:?}");
    let rtt = q.round_trip.expect("a round trip from the echoed report");
    assert!(rtt < Duration::from_millis(100), "loopback: {rtt:?}");
}

/// A hostile or broken far end (garbage datagrams, packets of other payload types, empty and
/// oversized payloads, timestamps and sequence numbers jumping anywhere, a flood of overlapping
/// packets, RTCP with bogus lengths and absurd counts) between stretches of good audio: the call
/// stays up, keeps sending at real time, and the good audio after it is heard whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_media_from_the_far_end_changes_nothing() {
    use srtp_transport::rtcp::{write_compound, ReportBlock, RtcpPacket};
    let mut g = gateway(BridgeConfig { rtcp_interval: Duration::from_secs(1), ..BridgeConfig::default() }).await;
    let sid = routed(&g);
    let p = free_port();
    let media = tokio::net::UdpSocket::bind(("127.0.0.1", p)).await.expect("rtp socket");
    let reports = tokio::net::UdpSocket::bind(("127.0.0.1", p + 1)).await.expect("rtcp socket");
    let (answer, _sipp) = dial_socket_far_end(&mut g, &sid, "pcmu_ptime_to_socket", p, &[("ptime", "20")]).await;
    let mut tap = tap_sip_stream(&g, &answer);
    let mut buf = vec![0u8; 2048];
    let (_, from) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    let rtcp_to = std::net::SocketAddr::new(from.ip(), from.port() + 1);
    let mut every = tokio::time::interval(Duration::from_millis(20));
    // A round that took longer (the flood) is caught up by the next ones, as a real source keeps
    // its clock: the good packets stay on time on average.
    let (mut seq, mut ts) = (0u16, 0u32);
    let good = |seq: &mut u16, ts: &mut u32| {
        let pcm = sine(440.0, 8000.0, *ts as usize, 160, 8000.0);
        let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
        let packet = rtp_packet(0, *seq, *ts, 0xbad, &payload);
        *seq = seq.wrapping_add(1);
        *ts = ts.wrapping_add(160);
        packet
    };
    // Good audio for a second.
    for _ in 0..50 {
        every.tick().await;
        media.send_to(&good(&mut seq, &mut ts), from).await.expect("send");
    }
    // Then all of it at once, with the good packets still going.
    let hostile_from = Instant::now();
    let mut flood_at = hostile_from;
    let mut x = 0x2545_f491u32;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for round in 0..50u32 {
        every.tick().await;
        media.send_to(&good(&mut seq, &mut ts), from).await.expect("send");
        let junk: Vec<u8> = (0..(rand() % 300) as usize).map(|_| rand() as u8).collect();
        let _ = media.send_to(&junk, from).await;
        let _ = media.send_to(&rtp_packet(96, rand() as u16, rand(), 0xbad, &junk), from).await;
        let _ = media.send_to(&rtp_packet(0, seq, ts, 0xbad, &[]), from).await;
        let _ = media.send_to(&rtp_packet(0, rand() as u16, rand(), 0xbad, &[0xff; 1400]), from).await;
        let _ = media
            .send_to(&rtp_packet(0, seq.wrapping_add(30_000), ts.wrapping_add(1 << 31), rand(), &[0xff; 160]), from)
            .await;
        if round == 25 {
            flood_at = Instant::now();
            // Overlapping packets: 20-byte payloads one timestamp apart, in sequence.
            for k in 0..1500u32 {
                let _ =
                    media.send_to(&rtp_packet(0, seq.wrapping_add(k as u16), ts + k, 0xbad, &[0xff; 20]), from).await;
            }
        }
        let _ = reports.send_to(&junk, rtcp_to).await;
        let bogus = write_compound(&[RtcpPacket::SenderReport {
            ssrc: 0xbad,
            ntp: u64::from(rand()) << 32,
            rtp_timestamp: rand(),
            packets: u32::MAX,
            octets: u32::MAX,
            reports: vec![ReportBlock {
                ssrc: rand(),
                last_sr: rand(),
                delay_since_last_sr: rand(),
                ..Default::default()
            }],
        }]);
        let _ = reports.send_to(&bogus, rtcp_to).await;
        let mut cut = bogus.clone();
        cut.truncate(bogus.len() / 2);
        cut[2] = 0xff;
        let _ = reports.send_to(&cut, rtcp_to).await;
    }
    // Good audio again, for a second and a half; then what the session heard. Our packets that
    // waited in the socket meanwhile are drained first, so that only those of this stretch count.
    let heard_from = Instant::now();
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), media.recv_from(&mut buf)).await {}
    let mut ours = 0;
    for _ in 0..75 {
        every.tick().await;
        media.send_to(&good(&mut seq, &mut ts), from).await.expect("send");
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), media.recv_from(&mut buf)).await {
            ours += 1;
        }
    }
    let rate = f64::from(ours) / heard_from.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut frames = Vec::new();
    while let Ok(f) = tap.try_recv() {
        let mut pcm = Vec::new();
        if dec.decode(&f.data, &mut pcm).is_ok() {
            frames.push((f.arrival, pcm));
        }
    }
    let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("callDestroyed:700"),
        "the call lived to be hung up: {events:?}"
    );
    assert!((40.0..=60.0).contains(&rate), "we kept sending at real time: {rate:.1} packets a second");
    let toned_between = |from: Instant, to: Instant| {
        frames.iter().filter(|(at, pcm)| *at >= from && *at < to && tone_ratio(pcm, 440.0, 48_000.0) > 0.5).count()
    };
    let ms = Duration::from_millis;
    // During the hostile stretch (away from the flood, which overwrites the good packets' times):
    // its second quarter and its last, about 20 frames.
    let during =
        toned_between(hostile_from + ms(200), flood_at - ms(100)) + toned_between(flood_at + ms(400), heard_from);
    let expected =
        (flood_at - ms(100) - (hostile_from + ms(200)) + (heard_from - (flood_at + ms(400)))).as_millis() / 20;
    assert!(during as u128 * 10 >= expected * 8, "the good audio during it heard: {during} x 20 ms of {expected}");
    let after = toned_between(heard_from + ms(300), Instant::now());
    assert!(after >= 50, "the good audio after it heard: {after} x 20 ms of 440 Hz in the last 1.2 s");
}

/// A far end that stamps G.722 with its 16 kHz sampling clock instead of RFC 3551's 8 kHz (a
/// known fault of some endpoints) is followed: its audio reaches the session whole, not as every
/// other packet "lost" and concealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_g722_far_end_stamping_at_16_khz_is_heard_whole() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let (media, rtp_port) = media_socket().await;
    let (answer, _sipp) = dial_socket_far_end(&mut g, &sid, "g722_to_socket", rtp_port, &[]).await;
    let mut tap = tap_sip_stream(&g, &answer);
    let mut buf = vec![0u8; 2048];
    // Where our RTP comes from is where theirs goes.
    let (_, from) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    // 2.5 s of 440 Hz in 20 ms packets, timestamps stepping by 320.
    let mut encoder = media_mixer::g722::G722Encoder::new();
    let mut every = tokio::time::interval(Duration::from_millis(20));
    for n in 0..125usize {
        every.tick().await;
        let mut payload = Vec::new();
        encoder.encode(&sine(440.0, 16_000.0, n * 320, 320, 8000.0), &mut payload);
        let packet = rtp_packet(9, n as u16, (n * 320) as u32, 0x722, &payload);
        let _ = media.send_to(&packet, from).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut toned = 0;
    while let Ok(f) = tap.try_recv() {
        let mut pcm = Vec::new();
        if dec.decode(&f.data, &mut pcm).is_ok() && tone_ratio(&pcm, 440.0, 48_000.0) > 0.5 {
            toned += 1;
        }
    }
    let q = tokio::time::timeout(Duration::from_secs(2), g.quality.recv()).await.ok().flatten().expect("quality");
    // Until the eighth step tells, every other tick is taken for a loss: about 60 ms.
    assert!(q.concealed <= Duration::from_millis(120), "only the packets before the clock was told: {q:?}");
    assert!(toned >= 115, "2.5 s sent, {toned} x 20 ms of 440 Hz published");
}

/// A text-to-speech source that sends four seconds of audio at once is heard whole, at real time,
/// not cut to the few frames a jitter buffer keeps for a live talker, and not trimmed while it plays
/// (speech is trimmed only when a delay stays high for five seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_audio_is_played_whole() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let (bs, answer) = dial_baresip(&mut g, &sid, "dial-burst", "PCMU/8000/1", 440).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stream = publish_audio(&g.service, &sid, "tts-burst");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut enc = media_mixer::opus::OpusEncoder::new(media_mixer::opus::OpusEncoderConfig::default()).expect("enc");
    for n in 0..200u64 {
        let _ = g.service.write_frame(&stream, opus_tone_frame(&mut enc, 1000.0, n, 960));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    std::thread::sleep(Duration::from_millis(300));
    let (rate, samples) = recording(&bs);
    // 20 ms windows that carry the tone.
    let window = rate as usize / 50;
    let toned = samples
        .chunks_exact(window)
        .filter(|c| {
            let rms = (c.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
            rms > 1000.0 && tone_ratio(c, 1000.0, f64::from(rate)) > 0.3
        })
        .count();
    // 201 here; the trimming before (a packet a second once a second above the target) left 198.
    assert!(toned >= 199, "4 s sent at once, {toned} x 20 ms heard");
    assert!(toned <= 210, "and not more than was sent: {toned} x 20 ms");
}

/// A call whose answer has no telephone-event gets its digits in SIP INFO
/// (`application/dtmf-relay`, one a key, paced as tones would be, a `p` 500 ms); once the far end
/// refuses an INFO (415), play-dtmf says the call cannot carry DTMF (400). A connection that is
/// no SIP call is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_without_telephone_event_goes_in_sip_info() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let (_media, port) = media_socket().await;
    let far = common::uas::uas(move |_| pcmu_answer(port, false)).await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:pbx@127.0.0.1:{}", far.port)})).await;
    let cid = answer["connectionId"].as_str().expect("cid").to_owned();
    let path = format!("/v2/project/{KEY}/session/{}/connection/{cid}/play-dtmf", sid.as_str());
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "1p#"}))).await;
    assert_eq!(status, 200, "{body}");
    let end = Instant::now() + Duration::from_secs(5);
    while far.infos().len() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let infos = far.infos();
    let keys: Vec<(&str, &str)> = infos.iter().map(|i| (i.content_type.as_str(), i.body.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("application/dtmf-relay", "Signal=1\r\nDuration=100\r\n"),
            ("application/dtmf-relay", "Signal=#\r\nDuration=100\r\n")
        ]
    );
    // A tone, a gap and the pause apart (670 ms as sent; their arrival here may be nearer when
    // the first was held up on a loaded machine, but never by the pause).
    let apart = infos[1].at - infos[0].at;
    assert!(apart >= Duration::from_millis(500), "the pause between them: {apart:?}");

    // The far end refuses the next: the call can carry no DTMF from then on.
    far.set_info_status(415);
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "5"}))).await;
    assert_eq!(status, 200, "{body}");
    let refused = async {
        loop {
            let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "6"}))).await;
            if status == 400 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(5), refused).await.expect("refused once the INFO was");
    assert!(body.contains("telephone-event") && body.contains("SIP INFO"), "{body}");
    assert_eq!(far.infos().len(), 3, "the refused one, and no more: {:?}", far.infos());
    let other = format!("/v2/project/{KEY}/session/{}/connection/not-a-call/play-dtmf", sid.as_str());
    let (status, _) = http(g.port, "POST", &other, Some(&json!({"digits": "12"}))).await;
    assert_eq!(status, 404);
    let events = force_disconnect(&mut g, &sid, &cid).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("callDestroyed:700"),
        "the refusal did not end the call: {events:?}"
    );
}

/// A session-wide mute still in force applies to a SIP call dialled later (with
/// `observeForceMute`): its stream starts muted and `muteForced` is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_wide_mute_applies_to_a_later_call() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let (status, body) = http(
        g.port,
        "POST",
        &format!("/v2/project/{KEY}/session/{}/mute", sid.as_str()),
        Some(&json!({"active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let port = free_port();
    let _sipp = sipp("remote_bye", port);
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:late@127.0.0.1:{port}"), "observeForceMute": true})).await;
    assert_eq!(status, 200, "{answer}");
    let stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    assert!(g.service.stream(&sid, &stream).is_some_and(|s| s.audio_muted), "muted from the start");
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert!(events.iter().any(|e| e == "muteForced"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
}

/// Plain RTP from anywhere but the far end is not part of the call (strict source): a stranger
/// that has learnt our RTP port and sends RFC 4733 digits (under the far end's SSRC) and loud audio
/// (under its own) gets no digit and no sound into the session, and our media does not move to it;
/// the same kind of digit from the far end itself is heard, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_from_a_stranger_is_not_the_call() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let mut signals = g.service.subscribe();
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("media socket");
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("stranger socket");
    let rtp_port = media.local_addr().expect("addr").port();
    let (answer, _sipp) = dial_socket_far_end(&mut g, &sid, "pcmu_dtmf_to_socket", rtp_port, &[]).await;
    let conn = answer["connectionId"].as_str().expect("cid").to_owned();
    let mut tap = tap_sip_stream(&g, &answer);
    let mut buf = vec![0u8; 2048];
    let (_, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    // RFC 4733 payload: event, end bit and volume, duration.
    let event = |digit: u8, end: bool, duration: u16| {
        let d = duration.to_be_bytes();
        vec![digit, if end { 0x80 } else { 0 } | 10, d[0], d[1]]
    };
    let mut every = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut ts) = (100u16, 8000u32);
    let (mut stranger_seq, mut stranger_ts) = (5000u16, 0u32);
    let mut attack = (Instant::now(), Instant::now());
    for tick in 0..140u32 {
        every.tick().await;
        match tick {
            // The far end's own digit 5: ten packets of the event, then three ends (RFC 4733 §2.5.1.4).
            100..=112 => {
                let packet = event(5, tick >= 110, (tick - 99).min(10) as u16 * 160);
                let mut p = rtp_packet(101, seq, ts, 0xbad, &packet);
                if tick == 100 {
                    p[1] |= 0x80;
                }
                media.send_to(&p, gateway_rtp).await.expect("send");
                seq = seq.wrapping_add(1);
                if tick == 112 {
                    ts = ts.wrapping_add(13 * 160);
                }
            }
            _ => {
                let pcm = sine(440.0, 8000.0, ts as usize, 160, 8000.0);
                let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
                media.send_to(&rtp_packet(0, seq, ts, 0xbad, &payload), gateway_rtp).await.expect("send");
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
            }
        }
        if (20..80).contains(&tick) {
            if tick == 20 {
                attack.0 = Instant::now();
            }
            // Loud 1 kHz under its own SSRC, in sequence.
            let pcm = sine(1000.0, 8000.0, stranger_ts as usize, 160, 30_000.0);
            let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
            stranger
                .send_to(&rtp_packet(0, stranger_seq, stranger_ts, 0x666, &payload), gateway_rtp)
                .await
                .expect("send");
            stranger_seq = stranger_seq.wrapping_add(1);
            stranger_ts = stranger_ts.wrapping_add(160);
            // Digit 9 under the far end's SSRC and among its sequence numbers (the strongest
            // stranger: one that sees the stream), one event of 1.2 s ending at the last ticks.
            let packet = event(9, tick >= 77, ((tick - 19) * 160).min(65_535) as u16);
            let mut p = rtp_packet(101, seq.wrapping_sub(2), 90_000, 0xbad, &packet);
            if tick == 20 {
                p[1] |= 0x80;
            }
            stranger.send_to(&p, gateway_rtp).await.expect("send");
            attack.1 = Instant::now();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Our media went to the far end only.
    let mut reached_stranger = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(5), stranger.recv_from(&mut buf)).await {
        reached_stranger += 1;
    }
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let (mut frames, mut heard_440, mut heard_1000) = (0, 0, 0);
    while let Ok(f) = tap.try_recv() {
        let mut pcm = Vec::new();
        if f.arrival < attack.0 + Duration::from_millis(100)
            || f.arrival > attack.1
            || dec.decode(&f.data, &mut pcm).is_err()
        {
            continue;
        }
        frames += 1;
        heard_440 += usize::from(tone_ratio(&pcm, 440.0, 48_000.0) > 0.5);
        heard_1000 += usize::from(tone_ratio(&pcm, 1000.0, 48_000.0) > 0.05);
    }
    let mut digits = String::new();
    while let Ok(e) = signals.try_recv() {
        if let session::EventKind::Signal { from: Some(f), signal_type, data, .. } = &e.kind {
            if signal_type == "dtmf" && f.as_str() == conn {
                digits.push_str(data);
            }
        }
    }
    let events = force_disconnect(&mut g, &sid, &conn).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    assert_eq!(digits, "5", "the far end's digit, and none of the stranger's");
    assert_eq!(reached_stranger, 0, "none of our media went to the stranger");
    assert_eq!(heard_1000, 0, "none of the stranger's audio: {heard_1000} of {frames} frames");
    assert!(frames >= 45, "the session heard the call during the attack: {frames} frames");
    assert!(heard_440 * 10 >= frames * 9, "the far end's audio: {heard_440} of {frames} frames");
}

/// A far end's media socket on loopback, and its port.
async fn media_socket() -> (tokio::net::UdpSocket, u16) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("media socket");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// Our answer as a far end that receives PCMU at `port`, with telephone-event or without.
fn pcmu_answer(port: u16, telephone_event: bool) -> String {
    let (formats, events) =
        if telephone_event { (" 101", "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n") } else { ("", "") };
    format!(
        "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0{formats}\r\na=rtpmap:0 PCMU/8000\r\n{events}"
    )
}

/// One press of `key` as RFC 4733 with payload type `pt` (event starting at `ts`, sequence
/// numbers from `seq`): three updates and the end three times.
fn press(pt: u8, key: u8, seq: u16, ts: u32) -> Vec<Vec<u8>> {
    [(false, 160u16), (false, 320), (false, 480), (true, 640), (true, 640), (true, 640)]
        .into_iter()
        .enumerate()
        .map(|(k, (end, duration))| {
            let d = duration.to_be_bytes();
            let mut p = rtp_packet(pt, seq + k as u16, ts, 0x77, &[key, if end { 0x8a } else { 0x0a }, d[0], d[1]]);
            if k == 0 {
                p[1] |= 0x80;
            }
            p
        })
        .collect()
}

/// An answerer that renumbers telephone-event (its answer says 96, our offer 101) still sends
/// with our number, as RFC 3264 §6.1 has it: its key presses are heard, and ours go to it with its
/// number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telephone_events_with_the_offers_number_are_heard_when_the_answer_renumbered() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let mut signals = g.service.subscribe();
    let (media, port) = media_socket().await;
    let far = common::uas::uas(move |_| {
        format!(
            "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"
        )
    })
    .await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:ivr@127.0.0.1:{}", far.port)})).await;
    let conn = answer["connectionId"].as_str().expect("cid").to_owned();
    let mut buf = vec![0u8; 2048];
    let (_, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    for (n, key) in [4u8, 2].into_iter().enumerate() {
        for p in press(101, key, 100 + 10 * n as u16, 8_000 * (n as u32 + 1)) {
            media.send_to(&p, gateway_rtp).await.expect("send");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(dtmf_signals(&mut signals, &conn), "42", "the far end's presses, with our offer's number");
    // Ours go with its number.
    let path = format!("/v2/project/{KEY}/session/{}/connection/{conn}/play-dtmf", sid.as_str());
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "5"}))).await;
    assert_eq!(status, 200, "{body}");
    let mut ours = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, media.recv(&mut buf)).await {
        if let Ok(p) = srtp_transport::RtpPacket::parse(&buf[..n]) {
            // Not our PCMU, and not RTCP (its packet types read as 72 to 79 here).
            if p.payload_type().0 != 0 && !(72..80).contains(&p.payload_type().0) {
                ours.push(p.payload_type().0);
            }
        }
    }
    let _ = force_disconnect(&mut g, &sid, &conn).await;
    assert!(!ours.is_empty() && ours.iter().all(|pt| *pt == 96), "our events with the answer's number: {ours:?}");
}

/// `play-dtmf` answers 200 only for digits that will be played: more than the call's queue holds
/// (256 waiting) is a 400 naming how many wait, and so is any digit while the far end holds the
/// call (the digits not started are dropped then); after the hold they are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_dtmf_refuses_what_would_not_be_played() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let (media, port) = media_socket().await;
    let sdp = move |dir: &str| {
        format!(
            "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={dir}\r\n"
        )
    };
    let far = common::uas::uas(move |_| sdp("sendrecv")).await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:ivr@127.0.0.1:{}", far.port)})).await;
    let conn = answer["connectionId"].as_str().expect("cid").to_owned();
    let path = format!("/v2/project/{KEY}/session/{}/connection/{conn}/play-dtmf", sid.as_str());
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "1".repeat(200)}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "2".repeat(100)}))).await;
    assert_eq!(status, 400, "the queue holds 256: {body}");
    assert!(body.contains("still waiting"), "{body}");
    let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "3".repeat(50)}))).await;
    assert_eq!(status, 200, "what fits is taken: {body}");

    // The far end holds the call (sendonly: we only receive): digits are refused.
    far.reinvite(&sdp("sendonly"));
    let held = async {
        loop {
            let (status, body) = http(g.port, "POST", &path, Some(&json!({"digits": "4"}))).await;
            if status == 400 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(5), held).await.expect("refused once held");
    assert!(body.contains("on hold"), "{body}");
    // Taken off hold: digits are taken again, the queue emptied by the hold.
    far.reinvite(&sdp("sendrecv"));
    let resumed = async {
        loop {
            let (status, _) = http(g.port, "POST", &path, Some(&json!({"digits": "5".repeat(250)}))).await;
            if status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), resumed).await.expect("taken again after the hold");
    drop(media);
    let _ = force_disconnect(&mut g, &sid, &conn).await;
}

/// The `dtmf` signals of connection `conn` received so far, as one string.
fn dtmf_signals(signals: &mut mpsc::UnboundedReceiver<std::sync::Arc<session::Event>>, conn: &str) -> String {
    let mut digits = String::new();
    while let Ok(e) = signals.try_recv() {
        if let session::EventKind::Signal { from: Some(f), signal_type, data, .. } = &e.kind {
            if signal_type == "dtmf" && f.as_str() == conn {
                digits.push_str(data);
            }
        }
    }
    digits
}

/// The session's audio for an answered call, as the far end hears it: the packets that came in
/// `window` and the 1000 Hz tone's share of their decoded PCMU.
async fn heard(media: &tokio::net::UdpSocket, window: Duration) -> (usize, f64) {
    let (mut packets, mut pcm) = (0, Vec::new());
    let mut buf = vec![0u8; 2048];
    let end = tokio::time::Instant::now() + window;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, media.recv(&mut buf)).await {
        if let Ok(p) = srtp_transport::RtpPacket::parse(&buf[..n]) {
            if p.payload_type().0 == 0 {
                packets += 1;
                pcm.extend(p.payload().iter().map(|b| ulaw_decode(*b)));
            }
        }
    }
    (packets, tone_ratio(&pcm, 1000.0, 8000.0))
}

/// A call that fails (or is cancelled) before its media starts leaves the session's mixer to the
/// calls that use it. Before, every call's end counted as one listener leaving, so a 486 to a
/// second call stopped the mixer of the first: it heard nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_leaves_the_other_calls_audio_alone() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let feeder = tone_publisher(&g.service, &sid, "tone-mixer", 1000.0);
    let (media, media_port) = media_socket().await;
    let far = common::uas::uas(move |_| pcmu_answer(media_port, false)).await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:pbx@127.0.0.1:{}", far.port)})).await;
    let (packets, tone) = heard(&media, Duration::from_secs(1)).await;
    assert!(packets >= 40 && tone > 0.8, "the first call hears the session: {packets} packets, tone {tone:.2}");

    let port = free_port();
    let _busy = sipp("busy", port);
    let (status, busy) = dial(&g, &sid, json!({"uri": format!("sip:bob@127.0.0.1:{port}")})).await;
    assert_eq!(status, 200, "{busy}");
    let events = call_events(&mut g, Duration::from_secs(20)).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:486"), "{events:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (packets, tone) = heard(&media, Duration::from_secs(1)).await;
    feeder.abort();
    assert!(packets >= 40 && tone > 0.8, "still, after the other call's 486: {packets} packets, tone {tone:.2}");
    let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
}

/// A hang-up through the API ends the media first (RFC 3550 §6.6): the far end gets our RTCP BYE
/// before the SIP BYE is answered (it answers it a second late here; before, our BYE waited for
/// that answer), and no RTP after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_says_bye_on_the_media_first() {
    use srtp_transport::rtcp::{parse_compound, RtcpPacket};
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let feeder = tone_publisher(&g.service, &sid, "tone-bye", 1000.0);
    let (media, media_port) = media_socket().await;
    let far = common::uas::uas(move |_| format!("{}a=rtcp-mux\r\n", pcmu_answer(media_port, false))).await;
    far.delay_bye_replies(Duration::from_secs(1));
    let uri = format!("sip:pbx@127.0.0.1:{}", far.port);
    let answer = dial_answered(&mut g, &sid, json!({"uri": uri})).await;
    // What reaches the far end's media socket: RTP, and when the RTCP BYE came.
    let recorder = tokio::spawn(async move {
        let (mut rtp, mut bye_at, mut rtp_after_bye) = (0usize, None, 0usize);
        let mut buf = vec![0u8; 2048];
        let end = tokio::time::Instant::now() + Duration::from_secs(4);
        while let Ok(Ok(n)) = tokio::time::timeout_at(end, media.recv(&mut buf)).await {
            let at = Instant::now();
            match buf.get(1).map(|b| b & 0x7f) {
                // RTCP (rtcp-mux: packet types 200 to 204 read as payload types 72 to 76).
                Some(72..=76) => {
                    let bye =
                        parse_compound(&buf[..n]).is_ok_and(|c| c.iter().any(|p| matches!(p, RtcpPacket::Bye { .. })));
                    if bye && bye_at.is_none() {
                        bye_at = Some(at);
                    }
                }
                Some(_) if bye_at.is_some() => rtp_after_bye += 1,
                Some(_) => rtp += 1,
                None => {}
            }
        }
        (rtp, bye_at, rtp_after_bye)
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    let (rtp, bye_at, rtp_after_bye) = recorder.await.expect("recorder");
    feeder.abort();
    assert!(rtp >= 10, "the call's audio flowed: {rtp} packets");
    let bye_at = bye_at.expect("an RTCP BYE");
    let sip_bye = far.bye_at().expect("the SIP BYE");
    // Its 200 left the far end a second after the SIP BYE came: an RTCP BYE sent only once that
    // answer arrived would come at least a second after it.
    let lead = bye_at.saturating_duration_since(sip_bye);
    assert!(lead < Duration::from_millis(500), "the RTCP BYE came {lead:?} after the SIP BYE");
    assert_eq!(rtp_after_bye, 0, "no RTP after our RTCP BYE");
}

/// Keys a SIP party signals in SIP INFO (`application/dtmf-relay`, `application/dtmf`: PBXs and
/// SBCs set to "INFO" DTMF) reach the session as `dtmf` signals and work the `*6` toggle; a party
/// that sends both RFC 4733 and INFO for the same press has it counted once, whichever comes
/// first, and its INFO-only keys still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_in_sip_info_are_heard_once() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let mut signals = g.service.subscribe();

    // A party without telephone-event: its keys come as INFO only.
    let (_media, media_port) = media_socket().await;
    let far = common::uas::uas(move |_| pcmu_answer(media_port, false)).await;
    let uri = format!("sip:pbx@127.0.0.1:{}", far.port);
    let answer = dial_answered(&mut g, &sid, json!({"uri": uri, "observeForceMute": true})).await;
    let conn = answer["connectionId"].as_str().expect("cid").to_owned();
    let stream = StreamId::from_wire(answer["streamId"].as_str().expect("stream"));
    for (content_type, body) in [
        ("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n"),
        ("application/dtmf", "#"),
        ("application/dtmf-relay", "Signal=x\r\n"),
        ("application/dtmf-relay", "Signal=10\r\nDuration=100\r\n"),
        ("application/dtmf-relay", "Signal=6\r\nDuration=100\r\n"),
    ] {
        far.info(content_type, body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(dtmf_signals(&mut signals, &conn), "1#*6", "the keys, the unreadable one left out");
    assert!(g.service.stream(&sid, &stream).is_some_and(|s| s.audio_muted), "*6 in INFO muted the SIP party");
    let events = force_disconnect(&mut g, &sid, &conn).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");

    // A party that sends each press both ways: RFC 4733 from its media, then the same key in INFO.
    let (media, media_port) = media_socket().await;
    let far = common::uas::uas(move |_| pcmu_answer(media_port, true)).await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:both@127.0.0.1:{}", far.port)})).await;
    let conn = answer["connectionId"].as_str().expect("cid").to_owned();
    let mut buf = vec![0u8; 2048];
    let (_, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    let press = |key: u8, seq: u16, ts: u32| press(101, key, seq, ts);
    // 7: its INFO at key-down, the RFC 4733 events after. 1: RFC 4733 first, the INFO after.
    far.info("application/dtmf-relay", "Signal=7\r\nDuration=120\r\n");
    for p in press(7, 40, 16_000) {
        media.send_to(&p, gateway_rtp).await.expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for p in press(1, 50, 32_000) {
        media.send_to(&p, gateway_rtp).await.expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    far.info("application/dtmf-relay", "Signal=1\r\nDuration=120\r\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 9: INFO alone, after RFC 4733 digits: still heard.
    far.info("application/dtmf", "9");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(dtmf_signals(&mut signals, &conn), "719", "each press once, whichever way comes first");
    let events = force_disconnect(&mut g, &sid, &conn).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
}

/// An Opus far end's receive parameters (RFC 7587 §6.1) shape what it gets from the session's
/// mix: `maxplaybackrate=16000` keeps the coded band to wideband (the session's 9 kHz tone is not
/// spent on), `cbr=1` with `maxaveragebitrate=24000` makes every packet 60 bytes; without them the
/// same mix goes out in variable packets, wider than wideband.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opus_far_end_gets_what_it_says_it_receives() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    // Two speakers: the call hears a mix, encoded for it (not one stream forwarded).
    let low = tone_publisher_framed(&g.service, &sid, "low", 500.0, 20);
    let high = tone_publisher_framed(&g.service, &sid, "high", 9000.0, 20);
    for (round, (fmtp, widest, cbr)) in [
        (Some("maxplaybackrate=16000;maxaveragebitrate=24000;cbr=1;useinbandfec=1"), 16_000, Some(60)),
        (None, 24_000, None),
        // One speaker heard (`streams`): a far end that asks for less still gets Opus made for
        // it, not the publisher's packets forwarded as they are.
        (Some("maxaveragebitrate=24000;cbr=1"), 48_000, Some(60)),
    ]
    .into_iter()
    .enumerate()
    {
        let (media, port) = media_socket().await;
        let answer_sdp = move |_: &str| {
            let fmtp = fmtp.map(|f| format!("a=fmtp:111 {f}\r\n")).unwrap_or_default();
            format!("v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n{fmtp}")
        };
        let far = common::uas::uas(answer_sdp).await;
        let mut request = json!({"uri": format!("sip:opus@127.0.0.1:{}", far.port)});
        if round == 2 {
            request["streams"] = json!(["low"]);
        }
        let (status, answer) = dial(&g, &sid, request).await;
        assert_eq!(status, 200, "{answer}");
        let seen = until_active(&mut g).await;
        assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
        let (mut bands, mut sizes) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 2048];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), media.recv(&mut buf)).await else {
                continue;
            };
            let Ok(p) = srtp_transport::RtpPacket::parse(&buf[..n]) else { continue };
            let Some(&toc) = p.payload().first() else { continue };
            if start.elapsed() < Duration::from_millis(500) || p.payload().len() < 3 {
                continue;
            }
            // RFC 6716 §3.1: the band of the table-of-contents byte's configuration.
            bands.push(match toc >> 3 {
                0..=3 | 16..=19 => 8_000,
                4..=7 => 12_000,
                8..=11 | 20..=23 => 16_000,
                12..=13 | 24..=27 => 24_000,
                _ => 48_000,
            });
            sizes.push(p.payload().len());
        }
        let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
        assert!(bands.len() > 50, "{fmtp:?}: {} packets", bands.len());
        let most = bands.iter().copied().max().unwrap_or(0);
        if fmtp.is_some() {
            assert!(most <= widest, "{fmtp:?}: coded up to {most} Hz");
        } else {
            assert!(most >= widest, "{fmtp:?}: the 9 kHz tone coded: up to {most} Hz");
        }
        match cbr {
            Some(bytes) => assert!(sizes.iter().all(|n| *n == bytes), "{fmtp:?}: {sizes:?}"),
            None => assert!(sizes.iter().any(|n| *n != sizes[0]), "{fmtp:?}: variable: {sizes:?}"),
        }
    }
    low.abort();
    high.abort();
}

/// A far end that takes SRTP only with 256-bit keys (SBCs and carriers set that way) gets it: with
/// the suite configured, our SDES offer carries AES_256_CM_HMAC_SHA1_80 after the 128-bit one, and
/// when the answer picks it, both directions are protected with it (checked here with our own SRTP as the far end: its
/// 440 Hz reaches the session, and our packets unprotect under the key we offered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_end_that_takes_only_aes_256_gets_it() {
    use srtp_transport::{sdes, Context, MasterKey, Options, Suite};
    let sdes_suites = vec![Suite::AesCm128HmacSha1_80, Suite::AesCm256HmacSha1_80];
    let mut g = gateway(BridgeConfig { sdes_suites, ..BridgeConfig::default() }).await;
    let sid = routed(&g);
    let (media, port) = media_socket().await;
    let suite = Suite::AesCm256HmacSha1_80;
    let theirs =
        MasterKey { key: (0..32).map(|i| i * 5 + 1).collect(), salt: (0..14).collect(), mki: None, lifetime: None };
    let their_params = sdes::format_key_params(&theirs);
    let far = common::uas::uas(move |offer| {
        // The tag our offer gave the suite.
        let tag = offer
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("a=crypto:")?;
                let (tag, rest) = rest.split_once(' ')?;
                rest.starts_with("AES_256_CM_HMAC_SHA1_80 ").then(|| tag.to_owned())
            })
            .unwrap_or_default();
        format!(
            "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{tag} AES_256_CM_HMAC_SHA1_80 {their_params}\r\n"
        )
    })
    .await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:sbc@127.0.0.1:{}", far.port), "secure": true})).await;
    assert_eq!(status, 200, "{answer}");
    let mut far = far;
    let offer = (&mut far.offer).await.expect("offer");
    let ours = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:")?.split_once(" AES_256_CM_HMAC_SHA1_80 ").map(|(_, k)| k.to_owned()))
        .unwrap_or_else(|| panic!("AES-256 offered: {offer}"));
    let ours = sdes::parse_key_params(suite, &ours).expect("our key");
    let (k128, k256) = (offer.find("AES_CM_128_HMAC_SHA1_80"), offer.find("AES_256_CM_HMAC_SHA1_80"));
    assert!(k128.zip(k256).is_some_and(|(a, b)| a < b), "both, 128 first: {offer}");
    assert!(!offer.contains("AES_CM_128_HMAC_SHA1_32"), "only the suites configured: {offer}");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let mut tap = tap_sip_stream(&g, &answer);
    // Our packets, under the key we offered.
    let mut rx = Context::new(suite, &ours, Options::default()).expect("rx");
    let mut tx = Context::new(suite, &theirs, Options::default()).expect("tx");
    let mut buf = vec![0u8; 2048];
    let (_, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 0..100).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    assert!(unprotected >= 80 && refused == 0, "our SRTP under AES-256: {unprotected} unprotected, {refused} refused");
    assert!(toned >= 60, "the far end's AES-256 SRTP heard in the session: {toned} frames of 440 Hz");
}

/// A far end's sending context for `k` (AES_CM_128_HMAC_SHA1_80).
fn sender(k: &srtp_transport::MasterKey) -> srtp_transport::Context {
    let suite = srtp_transport::Suite::AesCm128HmacSha1_80;
    srtp_transport::Context::new(suite, k, srtp_transport::Options::default()).expect("tx")
}

/// A routed session hearing a 1000 Hz tone (its publisher `tone`), with a call dialled from it to
/// `user` at a far end of ours (`common::uas`) whose SDP answer `answer_sdp` writes for the far
/// end's media port, and answered (ACTIVE seen). `media` is the far end's media socket.
struct ToneCall {
    g: Gateway,
    sid: SessionId,
    tone: tokio::task::JoinHandle<()>,
    media: tokio::net::UdpSocket,
    port: u16,
    far: common::uas::Uas,
    answer: Value,
}

async fn tone_call(config: BridgeConfig, user: &str, answer_sdp: impl Fn(u16) -> String + Send + 'static) -> ToneCall {
    let mut g = gateway(config).await;
    let sid = routed(&g);
    let tone = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let (media, port) = media_socket().await;
    let far = common::uas::uas(move |_| answer_sdp(port)).await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:{user}@127.0.0.1:{}", far.port)})).await;
    ToneCall { g, sid, tone, media, port, far, answer }
}

/// PCMU packets of 440 Hz numbered `packets`, protected by `tx` and sent every 20 ms to the
/// gateway at `to`: our packets unprotected by `rx` and refused meanwhile, and the far end's
/// 20 ms frames of 440 Hz heard in the session.
async fn srtp_exchange(
    media: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    rx: &mut srtp_transport::Context,
    tx: &mut srtp_transport::Context,
    tap: &mut mpsc::Receiver<MediaFrame>,
    packets: std::ops::Range<u32>,
) -> (usize, usize, usize) {
    let (mut unprotected, mut refused) = (0, 0);
    let mut buf = vec![0u8; 2048];
    let mut every = tokio::time::interval(Duration::from_millis(20));
    for n in packets {
        every.tick().await;
        let pcm = sine(440.0, 8000.0, (n * 160) as usize, 160, 8000.0);
        let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
        let mut p = rtp_packet(0, n as u16, n * 160, 0x5ec, &payload);
        tx.protect_rtp(&mut p).expect("protect");
        media.send_to(&p, to).await.expect("send");
        while let Ok(Ok(len)) = tokio::time::timeout(Duration::from_millis(1), media.recv(&mut buf)).await {
            if len > 1 && (200..=206).contains(&buf[1]) {
                continue;
            }
            let mut packet = buf[..len].to_vec();
            match rx.unprotect_rtp(&mut packet) {
                Ok(()) => unprotected += 1,
                Err(_) => refused += 1,
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
    let mut toned = 0;
    while let Ok(f) = tap.try_recv() {
        let mut pcm = Vec::new();
        if dec.decode(&f.data, &mut pcm).is_ok() && tone_ratio(&pcm, 440.0, 48_000.0) > 0.5 {
            toned += 1;
        }
    }
    (unprotected, refused, toned)
}

/// A far end that re-keys in a re-INVITE (RFC 4568 §7.1.4: SBCs do on transfers and
/// re-anchoring) is heard under its new key; our stream goes on under our key, with its context
/// kept. Before, the new key was never applied: everything after the re-offer failed
/// authentication until the call timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_offer_with_new_sdes_keys_is_followed() {
    use srtp_transport::{sdes, Context, MasterKey, Options, Suite};
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let tone = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let (media, port) = media_socket().await;
    let suite = Suite::AesCm128HmacSha1_80;
    let key = |seed: u8| MasterKey {
        key: (0..16).map(|i| i * 7 + seed).collect(),
        salt: (0..14).map(|i| i + seed).collect(),
        mki: None,
        lifetime: None,
    };
    let (first, second) = (key(1), key(101));
    let sdp = move |version: u32, tag: &str, k: &MasterKey| {
        format!(
            "v=0\r\no=uas 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{tag} AES_CM_128_HMAC_SHA1_80 {}\r\n",
            sdes::format_key_params(k)
        )
    };
    let answer_key = first.clone();
    let far = common::uas::uas(move |offer| {
        let tag = offer
            .lines()
            .find_map(|l| {
                let (tag, rest) = l.strip_prefix("a=crypto:")?.split_once(' ')?;
                rest.starts_with("AES_CM_128_HMAC_SHA1_80 ").then(|| tag.to_owned())
            })
            .unwrap_or_default();
        sdp(1, &tag, &answer_key)
    })
    .await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:sbc@127.0.0.1:{}", far.port), "secure": true})).await;
    assert_eq!(status, 200, "{answer}");
    let mut far = far;
    let offer = (&mut far.offer).await.expect("offer");
    let ours = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:")?.split_once(" AES_CM_128_HMAC_SHA1_80 ").map(|(_, k)| k.to_owned()))
        .unwrap_or_else(|| panic!("AES_CM_128_HMAC_SHA1_80 offered: {offer}"));
    let ours = sdes::parse_key_params(suite, &ours).expect("our key");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let mut tap = tap_sip_stream(&g, &answer);
    let mut rx = Context::new(suite, &ours, Options::default()).expect("rx");
    let mut buf = vec![0u8; 2048];
    let (_, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(5), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    let (unprotected, refused, toned) =
        srtp_exchange(&media, gateway_rtp, &mut rx, &mut sender(&first), &mut tap, 0..50).await;
    assert!(unprotected >= 40 && refused == 0 && toned >= 30, "first key: {unprotected}/{refused}/{toned}");
    far.reinvite(&sdp(2, "1", &second));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tx = sender(&second);
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 50..100).await;
    assert!(unprotected >= 40 && refused == 0 && toned >= 30, "second key: {unprotected}/{refused}/{toned}");
    // A re-offer whose key is unusable (too short for its suite) is refused, and the call goes on
    // under the keys in force.
    far.reinvite(&sdp(3, "1", &second).replace(&sdes::format_key_params(&second), "inline:AAAA"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(far.reinvite_statuses(), [200, 488], "the unusable key refused");
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 100..150).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(
        unprotected >= 40 && refused == 0,
        "ours under our key still: {unprotected} unprotected, {refused} refused"
    );
    assert!(toned >= 30, "the far end heard under its new key: {toned} frames of 440 Hz");
}

/// RFC 8842 §5.2: a re-offer with another DTLS fingerprint (the far end's media moved to another
/// box, with another certificate) gets a new handshake, and the audio goes on under its keys both
/// ways. Before, the change was only logged and the call went silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_offer_with_a_new_dtls_fingerprint_gets_a_new_handshake() {
    use srtp_transport::dtls::DtlsIdentity;
    let (mut g, sid, tone) = dtls_gateway().await;
    let (media, port) = media_socket().await;
    let (first, second) = (DtlsIdentity::generate().expect("cert"), DtlsIdentity::generate().expect("cert"));
    let sdp = move |version: u32, setup: &str, fingerprint: &str| {
        format!(
            "v=0\r\no=uas 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} UDP/TLS/RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=setup:{setup}\r\na=fingerprint:{fingerprint}\r\na=rtcp-mux\r\n"
        )
    };
    let answer = sdp(1, "passive", first.fingerprint());
    let mut far = common::uas::uas(move |_| answer.clone()).await;
    let (answer, _, ours, mut tap) = dial_secure(&mut g, &sid, &mut far, "sbc").await;
    let (mut rx, mut tx, gateway_rtp) = dtls_far_end(&media, &first, &ours).await;
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 0..50).await;
    assert!(unprotected >= 40 && refused == 0 && toned >= 30, "first association: {unprotected}/{refused}/{toned}");
    far.reinvite(&sdp(2, "actpass", second.fingerprint()));
    let (mut rx, mut tx, gateway_rtp) = dtls_far_end(&media, &second, &ours).await;
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 50..100).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(unprotected >= 40 && refused == 0, "ours under the new keys: {unprotected} unprotected, {refused} refused");
    assert!(toned >= 30, "the far end heard under the new keys: {toned} frames of 440 Hz");
}

/// A call whose video handshake failed (the far end's certificate is not the one its SDP named)
/// goes on with audio, and a later re-offer gets its video rejected (port 0): the video's port
/// was closed with its task, so accepting it there would send the far end's video nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_whose_handshake_failed_is_rejected_in_re_offers() {
    use srtp_transport::dtls::DtlsIdentity;
    let (mut g, sid, tone) = dtls_gateway().await;
    let (media, port) = media_socket().await;
    let (video, video_port) = media_socket().await;
    let (named, other) = (DtlsIdentity::generate().expect("cert"), DtlsIdentity::generate().expect("cert"));
    let fingerprint = named.fingerprint().to_owned();
    let sdp = move |offer: &str, version: u32| {
        let pt = offer
            .lines()
            .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" H264/90000")?.parse::<u8>().ok())
            .unwrap_or(96);
        format!(
            "v=0\r\no=uas 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} UDP/TLS/RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=setup:passive\r\na=fingerprint:{fingerprint}\r\na=rtcp-mux\r\n\
m=video {video_port} UDP/TLS/RTP/SAVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1\r\n\
a=setup:passive\r\na=fingerprint:{fingerprint}\r\na=rtcp-mux\r\n"
        )
    };
    let answer_sdp = sdp.clone();
    let mut far = common::uas::uas(move |offer| answer_sdp(offer, 1)).await;
    let (status, answer) =
        dial(&g, &sid, json!({"uri": format!("sip:room@127.0.0.1:{}", far.port), "secure": true, "video": true})).await;
    assert_eq!(status, 200, "{answer}");
    let offer = (&mut far.offer).await.expect("offer");
    assert!(offer.contains("m=video "), "{offer}");
    let ours = offered_fingerprint(&offer);
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let mut tap = tap_sip_stream(&g, &answer);
    // The video's handshake, with a certificate other than the one the SDP named: the gateway
    // refuses it.
    let video_ours = ours.clone();
    let video_side = tokio::spawn(async move { try_dtls_server(&video, &other, &video_ours).await.map(|_| ()) });
    let (mut rx, mut tx, gateway_rtp) = dtls_far_end(&media, &named, &ours).await;
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 0..50).await;
    assert!(unprotected >= 40 && refused == 0 && toned >= 30, "audio: {unprotected}/{refused}/{toned}");
    let video_result = tokio::time::timeout(Duration::from_secs(10), video_side).await.expect("in time").expect("join");
    assert!(video_result.is_err(), "the video handshake failed");
    // The gateway refused the certificate before the far end heard of it; its video task ends
    // just after.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    far.reinvite(&sdp(&offer, 2));
    let answered = Instant::now();
    while far.reinvite_statuses().is_empty() && answered.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(far.reinvite_statuses(), [200]);
    let answers = far.reinvite_answers();
    let re_answer = answers.first().map(String::as_str).unwrap_or_default();
    assert!(re_answer.contains("m=video 0 "), "video rejected in the answer: {re_answer}");
    assert!(!re_answer.contains("m=audio 0 "), "audio kept: {re_answer}");
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 50..100).await;
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(
        unprotected >= 40 && refused == 0 && toned >= 30,
        "audio after the re-offer: {unprotected}/{refused}/{toned}"
    );
}

/// Dials `user` at the far end `far` with `secure: true` and waits for the answer: the dial's
/// answer, our offer, its DTLS fingerprint, and a tap on the SIP party's stream.
async fn dial_secure(
    g: &mut Gateway,
    sid: &SessionId,
    far: &mut common::uas::Uas,
    user: &str,
) -> (Value, String, String, mpsc::Receiver<MediaFrame>) {
    let (status, answer) =
        dial(g, sid, json!({"uri": format!("sip:{user}@127.0.0.1:{}", far.port), "secure": true})).await;
    assert_eq!(status, 200, "{answer}");
    let offer = (&mut far.offer).await.expect("offer");
    let ours = offered_fingerprint(&offer);
    let seen = until_active(g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
    let tap = tap_sip_stream(g, &answer);
    (answer, offer, ours, tap)
}

/// The far end's side of a DTLS-SRTP association on `media` as `identity`: its SRTP contexts
/// (receiving, sending) and where the gateway's media comes from.
async fn dtls_far_end(
    media: &tokio::net::UdpSocket,
    identity: &srtp_transport::dtls::DtlsIdentity,
    ours: &str,
) -> (srtp_transport::Context, srtp_transport::Context, std::net::SocketAddr) {
    let (keys, _association, gateway_rtp) = dtls_server(media, identity, ours).await;
    let rx = srtp_transport::Context::new(keys.suite, &keys.remote, srtp_transport::Options::default()).expect("rx");
    (rx, sender(&keys.local), gateway_rtp)
}

/// A gateway whose project's calls offer DTLS-SRTP, a routed session, and a 1000 Hz publisher
/// in it.
async fn dtls_gateway() -> (Gateway, SessionId, tokio::task::JoinHandle<()>) {
    let mut config = BridgeConfig::default();
    config.srtp_offer_by_project.insert(KEY.to_owned(), bridge::SrtpOffer::Dtls);
    let g = gateway(config).await;
    let sid = routed(&g);
    let tone = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    (g, sid, tone)
}

/// The DTLS fingerprint of our offer.
fn offered_fingerprint(offer: &str) -> String {
    offer
        .lines()
        .find_map(|l| l.strip_prefix("a=fingerprint:"))
        .unwrap_or_else(|| panic!("a DTLS-SRTP offer: {offer}"))
        .to_owned()
}

/// A far end whose 183 carries the answer and whose 200 leaves it out (RFC 3262: with 100rel the
/// 183's answer is the answer), on a DTLS-SRTP call, whose early media waits for the answer: the
/// 183's answer is taken, the handshake follows, and audio flows both ways. Before, the 200
/// without SDP ended the call with 488.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_came_only_in_the_183_is_taken() {
    use srtp_transport::dtls::DtlsIdentity;
    let (mut g, sid, tone) = dtls_gateway().await;
    let (media, port) = media_socket().await;
    let identity = DtlsIdentity::generate().expect("cert");
    let fingerprint = identity.fingerprint().to_owned();
    let mut far = common::uas::uas_early(
        move |_| {
            format!(
                "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} UDP/TLS/RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=setup:passive\r\na=fingerprint:{fingerprint}\r\na=rtcp-mux\r\n"
            )
        },
        Some((Duration::from_millis(500), "200 OK", None)),
    )
    .await;
    let (answer, _, ours, mut tap) = dial_secure(&mut g, &sid, &mut far, "ims").await;
    let (mut rx, mut tx, gateway_rtp) = dtls_far_end(&media, &identity, &ours).await;
    let (unprotected, refused, toned) = srtp_exchange(&media, gateway_rtp, &mut rx, &mut tx, &mut tap, 0..50).await;
    let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
    assert!(unprotected >= 40 && refused == 0 && toned >= 30, "audio both ways: {unprotected}/{refused}/{toned}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
}

/// The far end's side of a DTLS-SRTP handshake, as server on `media` with `identity` (the gateway
/// is the client: its ClientHello comes first, within 10 s): the keys, the association (to keep
/// while media flows) and the gateway's media address. Only AES_CM_128_HMAC_SHA1_80 is accepted.
async fn dtls_server(
    media: &tokio::net::UdpSocket,
    identity: &srtp_transport::dtls::DtlsIdentity,
    gateway_fingerprint: &str,
) -> (srtp_transport::dtls::DtlsKeys, srtp_transport::dtls::DtlsSession, std::net::SocketAddr) {
    try_dtls_server(media, identity, gateway_fingerprint).await.expect("the far end's handshake")
}

/// [`dtls_server`], its handshake's failure returned.
async fn try_dtls_server(
    media: &tokio::net::UdpSocket,
    identity: &srtp_transport::dtls::DtlsIdentity,
    gateway_fingerprint: &str,
) -> Result<(srtp_transport::dtls::DtlsKeys, srtp_transport::dtls::DtlsSession, std::net::SocketAddr), String> {
    use srtp_transport::dtls::{handshake, DtlsParams, DtlsRole};
    // RFC 7983: a first byte of 20 to 63 is DTLS.
    let is_dtls = |b: &[u8]| b.first().is_some_and(|b| (20..=63).contains(b));
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (hello, gateway) = loop {
        let (n, from) = tokio::time::timeout_at(deadline, media.recv_from(&mut buf))
            .await
            .expect("the gateway's ClientHello within 10 s")
            .expect("recv");
        if is_dtls(&buf[..n]) {
            break (buf[..n].to_vec(), from);
        }
    };
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    in_tx.send(hello).await.expect("to the handshake");
    let suites = [srtp_transport::Suite::AesCm128HmacSha1_80];
    let params = DtlsParams {
        role: DtlsRole::Server,
        remote_fingerprint: gateway_fingerprint,
        suites: &suites,
        remote: gateway,
        timeout: Duration::from_secs(10),
    };
    let hs = handshake(identity, params, in_rx, out_tx);
    tokio::pin!(hs);
    let (keys, association) = loop {
        tokio::select! {
            biased;
            Some(record) = out_rx.recv() => {
                media.send_to(&record, gateway).await.expect("send");
            }
            r = &mut hs => break r.map_err(|e| e.to_string())?,
            r = media.recv_from(&mut buf) => {
                let (n, from) = r.expect("recv");
                if from == gateway && is_dtls(&buf[..n]) {
                    let _ = in_tx.try_send(buf[..n].to_vec());
                }
            }
        }
    };
    // The last flight may still be queued when the handshake reports success.
    while let Ok(record) = out_rx.try_recv() {
        media.send_to(&record, gateway).await.expect("send");
    }
    Ok((keys, association, gateway))
}

/// Our offer's audio address: where the far end sends its RTP.
fn offered_audio(offer: &str) -> std::net::SocketAddr {
    let port = offer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio ")?.split(' ').next()?.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("an audio m-line: {offer}"));
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// Early media (RFC 3960): a carrier's ringback, sent as RTP after a 183 with the answer, is
/// heard in the session before the call is ACTIVE; the far end gets nothing from us before the
/// answer (RTP or RTCP: the far end multiplexes RTCP on its RTP port, and reports fall due every
/// 300 ms here), and the session's audio once answered. An announcement followed by a 404 (the
/// number does not exist) is heard, then the call ends with the 404 and nothing left behind. A
/// 200 whose answer puts the call on hold (`sendonly`, after a `sendrecv` 183) gets no audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_is_heard_before_the_answer() {
    let mut g = gateway(BridgeConfig { rtcp_interval: Duration::from_millis(300), ..BridgeConfig::default() }).await;
    let sid = routed(&g);
    let tone = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let cases = [("200 OK", None, ""), ("404 Not Found", Some("404"), ""), ("200 OK", None, "a=sendonly\r\n")];
    for (final_status, code, added) in cases {
        let (media, port) = media_socket().await;
        let mut far = common::uas::uas_early(
            move |_| format!("{}a=rtcp-mux\r\n", pcmu_answer(port, false)),
            Some((Duration::from_millis(1500), final_status, Some(added))),
        )
        .await;
        let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:pstn@127.0.0.1:{}", far.port)})).await;
        assert_eq!(status, 200, "{answer}");
        let offer = tokio::time::timeout(Duration::from_secs(2), &mut far.offer).await.expect("offer").expect("offer");
        let gateway_rtp = offered_audio(&offer);
        let mut tap = tap_sip_stream(&g, &answer);
        // One second of 425 Hz ringback from the far end, while nothing has answered.
        let mut every = tokio::time::interval(Duration::from_millis(20));
        let (mut ours_early, mut buf) = (0, vec![0u8; 2048]);
        for n in 0..50usize {
            every.tick().await;
            let pcm = sine(425.0, 8000.0, n * 160, 160, 8000.0);
            let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
            media
                .send_to(&rtp_packet(0, n as u16, (n * 160) as u32, 0xea21, &payload), gateway_rtp)
                .await
                .expect("send");
            while media.try_recv(&mut buf).is_ok() {
                ours_early += 1;
            }
        }
        // Every event so far (none is ACTIVE: the answer comes at 1.5 s).
        let mut early_events = Vec::new();
        while let Ok(e) = g.calls.try_recv() {
            early_events.push(format!("{}:{}", e["event"].as_str().unwrap_or("?"), e["state"].as_str().unwrap_or("")));
        }
        assert!(early_events.iter().any(|e| e == "callUpdated:RINGING"), "{early_events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut dec = media_mixer::opus::OpusDecoder::new(48_000).expect("dec");
        let mut ringback = 0;
        while let Ok(f) = tap.try_recv() {
            let mut pcm = Vec::new();
            if dec.decode(&f.data, &mut pcm).is_ok() && tone_ratio(&pcm, 425.0, 48_000.0) > 0.5 {
                ringback += 1;
            }
        }
        assert!(ringback >= 30, "{final_status}: the ringback heard in the session: {ringback} frames");
        assert_eq!(ours_early, 0, "{final_status}: nothing sent to the far end before the answer");
        assert!(!early_events.iter().any(|e| e == "callUpdated:ACTIVE"), "not answered yet: {early_events:?}");
        match code {
            None => {
                let seen = until_active(&mut g).await;
                assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "{seen:?}");
                let (packets, tone_share) = heard(&media, Duration::from_millis(600)).await;
                if added.is_empty() {
                    assert!(packets >= 20 && tone_share > 0.8, "the session's audio once answered: {packets} packets");
                } else {
                    assert_eq!(packets, 0, "a far end that answers on hold gets no audio");
                }
                let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
                assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
                // Answered on hold: reported right after ACTIVE (so the resume reads as one).
                let held = events.iter().any(|e| e == "callUpdated:ON_HOLD");
                assert_eq!(held, !added.is_empty(), "{final_status} {added:?}: {events:?}");
            }
            Some(code) => {
                let events = call_events(&mut g, Duration::from_secs(5)).await;
                assert_eq!(
                    events.last().map(String::as_str),
                    Some(format!("callDestroyed:{code}").as_str()),
                    "{events:?}"
                );
            }
        }
    }
    tone.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(g.bridge.active_calls(), 0);
}

/// An outbound proxy (`sip.outbound_proxy`, RFC 3261 §8.1.2): a call to a carrier's number whose
/// host only the carrier's SBC knows (here `.invalid`, which never resolves) goes to the proxy,
/// with a Route naming it and the callee in the Request-URI; the proxy (here the far end itself,
/// answering without a Record-Route) gets the BYE too, through the same Route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_the_outbound_proxy() {
    let (media, port) = media_socket().await;
    let sbc = common::uas::uas(move |_| pcmu_answer(port, false)).await;
    let proxy = format!("sip:127.0.0.1:{}", sbc.port);
    let sip = DriverConfig { outbound_proxy: Some(proxy.clone()), ..DriverConfig::default() };
    let mut g = common::gateway_sip(BridgeConfig::default(), ServiceConfig::default(), sip).await;
    let sid = routed(&g);
    let tone = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let (status, answer) = dial(&g, &sid, json!({"uri": "sip:+15551234@carrier.invalid"})).await;
    assert_eq!(status, 200, "{answer}");
    let seen = until_active(&mut g).await;
    assert!(seen.iter().any(|e| e == "callUpdated:ACTIVE"), "through the proxy: {seen:?}");
    let (packets, tone_share) = heard(&media, Duration::from_millis(600)).await;
    assert!(packets >= 20 && tone_share > 0.8, "the call's audio: {packets} packets");
    let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    tone.abort();
    let (invite, bye) = sbc.heads();
    let invite = invite.expect("the INVITE reached the proxy");
    assert!(invite.starts_with("INVITE sip:+15551234@carrier.invalid SIP/2.0"), "{invite}");
    let route = format!("Route: <{proxy};lr>");
    assert!(invite.lines().any(|l| l == route), "{route} in {invite}");
    let bye = bye.expect("the BYE reached the proxy");
    assert!(bye.starts_with("BYE sip:uas@127.0.0.1:"), "to the far end's Contact: {bye}");
    assert!(bye.lines().any(|l| l == route), "{route} in {bye}");
}

/// A 3xx is followed (RFC 3261 §8.1.3.4): a redirect server's 302 sends the call to the target its
/// `Contact` names, which answers, and the call goes on as any other; a redirect back to a target
/// already tried is not followed (no loop), and the call fails with the 3xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_followed_and_a_loop_is_not() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let (media, port) = media_socket().await;
    let mut desk = common::uas::uas(move |_| pcmu_answer(port, false)).await;
    let desk_port = desk.port;
    let server = common::uas::redirector(move |_| format!("<sip:desk@127.0.0.1:{desk_port}>;q=0.8")).await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:main@127.0.0.1:{}", server.port)})).await;
    let offer = tokio::time::timeout(Duration::from_secs(1), &mut desk.offer).await.expect("in time").expect("offer");
    assert!(offer.contains("m=audio"), "the desk got the INVITE, with our offer: {offer}");
    assert_eq!(server.invites.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Our media goes to the desk.
    let mut buf = vec![0u8; 2048];
    tokio::time::timeout(Duration::from_secs(3), media.recv_from(&mut buf))
        .await
        .expect("RTP at the desk")
        .expect("recv");
    let events = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");

    // A redirect server that sends the call back to itself.
    let looping = common::uas::redirector(|own| format!("<sip:main@127.0.0.1:{own}>")).await;
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:main@127.0.0.1:{}", looping.port)})).await;
    assert_eq!(status, 200, "{answer}");
    let events = call_events(&mut g, Duration::from_secs(5)).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:302"), "{events:?}");
    assert_eq!(looping.invites.load(std::sync::atomic::Ordering::Relaxed), 1, "asked once, not in a loop");
}

/// A re-INVITE without an offer (third-party call control: CUCM, Asterisk and FreeSWITCH move
/// calls this way) gets our offer in the 200, and the far end's answer in the ACK is followed:
/// here from Opus to PCMU. Before, that answer was dropped (Opus went on under its old payload
/// type), and after a codec change away from Opus the far end's audio entered the session at a
/// fifth of real time (the call kept Opus's 100 ms tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offerless_re_invite_is_answered_and_followed() {
    let mut g = gateway(BridgeConfig::default()).await;
    let sid = routed(&g);
    let tone = tone_publisher(&g.service, &sid, "tone-1000", 1000.0);
    let (media, port) = media_socket().await;
    let far = common::uas::uas(move |_| {
        format!(
            "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
        )
    })
    .await;
    let answer = dial_answered(&mut g, &sid, json!({"uri": format!("sip:moved@127.0.0.1:{}", far.port)})).await;
    let mut buf = vec![0u8; 2048];
    let (n, gateway_rtp) =
        tokio::time::timeout(Duration::from_secs(2), media.recv_from(&mut buf)).await.expect("our RTP").expect("recv");
    let first = srtp_transport::RtpPacket::parse(&buf[..n]).expect("RTP");
    assert_eq!(first.payload_type().0, 111, "Opus first");

    far.reinvite_offerless(&pcmu_answer(port, false));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (packets, tone_share) = heard(&media, Duration::from_secs(1)).await;
    assert!(packets >= 40 && tone_share > 0.8, "PCMU after the ACK's answer: {packets} packets, tone {tone_share:.2}");

    // The far end's PCMU reaches the session at real time: 100 packets in 2 s.
    let mut frames = tap_sip_stream(&g, &answer);
    while frames.try_recv().is_ok() {}
    let sender = {
        let socket = media;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            for n in 0..100usize {
                every.tick().await;
                let pcm = sine(440.0, 8000.0, n * 160, 160, 8000.0);
                let payload: Vec<u8> = pcm.iter().map(|s| ulaw_encode(*s)).collect();
                let _ = socket.send_to(&rtp_packet(0, n as u16, (n * 160) as u32, 0x0ff1, &payload), gateway_rtp).await;
            }
        })
    };
    let end = tokio::time::Instant::now() + Duration::from_millis(2400);
    let mut published = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, frames.recv()).await {
        published += 1;
    }
    sender.await.expect("sender");
    assert!(published >= 85, "the far end's 2 s of audio published at real time: {published} frames of 20 ms");
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
}

/// A far end that holds the call with `a=sendonly` gets nothing from us until it resumes (RFC 3264
/// §6.1: our answer is recvonly); before, only `a=inactive` stopped our audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sendonly_hold_stops_our_audio_until_the_resume() {
    let ToneCall { mut g, sid, tone, media, port, far, answer } =
        tone_call(BridgeConfig::default(), "held", move |port| pcmu_answer(port, false)).await;
    let (packets, _) = heard(&media, Duration::from_millis(600)).await;
    assert!(packets >= 20, "audio before the hold: {packets} packets");
    let offer = |version: u32, direction: &str| {
        format!(
            "v=0\r\no=uas 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
        )
    };
    far.reinvite(&offer(2, "sendonly"));
    let events = call_events_until(&mut g, "callUpdated", Duration::from_secs(5)).await;
    assert_eq!(events.last().map(String::as_str), Some("callUpdated:ON_HOLD"), "{events:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // What came before the hold and waits in the socket does not count.
    let mut buf = vec![0u8; 2048];
    while media.try_recv(&mut buf).is_ok() {}
    let (packets, _) = heard(&media, Duration::from_secs(1)).await;
    assert_eq!(packets, 0, "no audio to a far end on hold");
    far.reinvite(&offer(3, "sendrecv"));
    let events = call_events_until(&mut g, "callUpdated", Duration::from_secs(5)).await;
    assert_eq!(events.last().map(String::as_str), Some("callUpdated:ACTIVE"), "{events:?}");
    let (packets, tone_share) = heard(&media, Duration::from_secs(1)).await;
    assert!(packets >= 40 && tone_share > 0.8, "audio again after the resume: {packets} packets, tone {tone_share:.2}");
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
}

/// A re-offer that changes the audio codec (a transfer to another media server, an SBC
/// re-anchoring the call) is followed: after a re-INVITE from PCMU to G.722, our packets carry
/// G.722 of the session's audio under a new SSRC, not PCMU under G.722's payload type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_offer_that_changes_the_codec_is_followed() {
    let ToneCall { mut g, sid, tone, media, port, far, answer } =
        tone_call(BridgeConfig::default(), "moved", move |port| pcmu_answer(port, false)).await;
    // Packets of `pt` for `ms`: their SSRCs and payloads.
    let collect = |pt: u8, ms: u64| {
        let media = &media;
        async move {
            let (mut ssrcs, mut payloads) = (std::collections::BTreeSet::new(), Vec::new());
            let mut buf = vec![0u8; 2048];
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), media.recv(&mut buf)).await else {
                    continue;
                };
                let Ok(p) = srtp_transport::RtpPacket::parse(&buf[..n]) else { continue };
                if p.payload_type().0 == pt {
                    ssrcs.insert(p.ssrc().0);
                    payloads.push(p.payload().to_vec());
                }
            }
            (ssrcs, payloads)
        }
    };
    let (before, pcmu) = collect(0, 1000).await;
    assert!(pcmu.len() > 30, "PCMU first: {} packets", pcmu.len());
    let heard: Vec<i16> = pcmu.iter().flatten().map(|b| ulaw_decode(*b)).collect();
    assert!(tone_ratio(&heard, 1000.0, 8000.0) > 0.5, "the session's tone in PCMU");
    far.reinvite(&format!(
        "v=0\r\no=uas 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, g722) = collect(9, 1000).await;
    assert!(g722.len() > 30, "G.722 after the re-offer: {} packets", g722.len());
    assert!(after.is_disjoint(&before), "a new RTP stream for the new codec: {before:?} then {after:?}");
    let mut dec = media_mixer::g722::G722Decoder::new();
    let mut heard = Vec::new();
    for p in &g722 {
        let mut pcm = Vec::new();
        dec.decode(p, &mut pcm);
        heard.extend(pcm);
    }
    let tail = &heard[heard.len() / 2..];
    assert!(
        tone_ratio(tail, 1000.0, 16_000.0) > 0.5,
        "the session's tone, really G.722: {:.3}",
        tone_ratio(tail, 1000.0, 16_000.0)
    );
    let _ = force_disconnect(&mut g, &sid, answer["connectionId"].as_str().expect("cid")).await;
    tone.abort();
}

/// A DNS server that answers A queries for any name with 127.0.0.1, `delay` after each query
/// (AAAA and the rest: no records), on a port of its own.
async fn slow_dns(delay: Duration) -> std::net::SocketAddr {
    let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let query = buf[..n].to_vec();
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // The question ends after its name (labels to a zero byte) and type and class.
                let Some(end) = query.get(12..).and_then(|q| q.iter().position(|b| *b == 0)).map(|p| 12 + p + 5) else {
                    return;
                };
                let Some(question) = query.get(12..end) else { return };
                let is_a = query.get(end - 4..end - 2) == Some(&[0, 1][..]);
                let mut reply = vec![query[0], query[1], 0x81, 0x80, 0, 1, 0, u8::from(is_a), 0, 0, 0, 0];
                reply.extend_from_slice(question);
                if is_a {
                    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
                }
                let _ = socket.send_to(&reply, from).await;
            });
        }
    });
    addr
}

/// A force disconnect while the far end's name is still being looked up: no INVITE goes out at
/// all (before, the far end rang for a call already deleted), and the call ends reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_disconnect_during_the_lookup_sends_no_invite() {
    let dns = slow_dns(Duration::from_millis(1500)).await;
    let sip = DriverConfig { dns_server: Some(dns), ..DriverConfig::default() };
    let mut g = common::gateway_sip(BridgeConfig::default(), ServiceConfig::default(), sip).await;
    let sid = routed(&g);
    let far = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = far.local_addr().expect("addr").port();
    let (status, answer) = dial(&g, &sid, json!({"uri": format!("sip:late@slow.test:{port}")})).await;
    assert_eq!(status, 200, "{answer}");
    let cid = answer["connectionId"].as_str().expect("cid").to_owned();
    let events = force_disconnect(&mut g, &sid, &cid).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_secs(3), far.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "an INVITE went out for a deleted call: {:?}",
        got.map(|r| r.map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned()))
    );
}
