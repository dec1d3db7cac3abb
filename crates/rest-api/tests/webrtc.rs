//! WebRTC participants end to end: real WebSockets to our REST server, str0m peers on loopback UDP
//! doing ICE, DTLS-SRTP and RTP with our router, and the session's events as participants and the
//! subscription API see them.

mod peer;

use std::io::{Read, Write};
use std::time::Duration;

use peer::{Mode, Offer, Signal};
use rest_api::{serve, ApiConfig, DemoConfig, RestApi};
use serde_json::{json, Value};
use session::service::{ServiceConfig, SessionService};
use session::{ApiSecret, DisconnectReason, EventKind, Project, ProjectId, Projects, RoomsConfig, StreamId};

const KEY: &str = "4615003";
const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
const SECS: Duration = Duration::from_secs(10);

async fn start(rooms: RoomsConfig) -> (SessionService, u16) {
    let mut projects = Projects::new();
    projects.insert(Project::legacy(KEY, ApiSecret::new(SECRET).expect("secret")).expect("project"));
    let config = ServiceConfig { rooms, ..ServiceConfig::default() };
    let service = SessionService::start(config, projects).await.expect("service");
    let demo =
        DemoConfig { project: ProjectId::api_key(KEY).expect("key"), secret: ApiSecret::new(SECRET).expect("secret") };
    let api = RestApi::new(service.clone(), ApiConfig { demo: Some(demo), ..ApiConfig::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(serve(listener, api));
    (service, port)
}

/// `POST /demo/token`: (sessionId, token).
fn demo_token(port: u16, body: Value) -> (String, String) {
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!(
        "POST /demo/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http");
    assert!(head.starts_with("HTTP/1.1 200"), "{out}");
    let v: Value = serde_json::from_str(body).expect("json");
    (v["sessionId"].as_str().expect("sid").to_owned(), v["token"].as_str().expect("token").to_owned())
}

async fn join(port: u16, sid: &str, token: &str) -> (Signal, Value) {
    let mut s = Signal::connect(port).await;
    let reply = s.request(json!({"type": "join", "sessionId": sid, "token": token})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    (s, reply)
}

fn seq(frame: &[u8]) -> u32 {
    peer::frame_number(frame)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_is_forwarded_byte_exact_and_events_arrive_in_order() {
    let (service, port) = start(RoomsConfig::default()).await;
    let mut events = service.subscribe();
    let (sid, token_a) = demo_token(port, json!({"data": "alice"}));
    let (_, token_b) = demo_token(port, json!({"sessionId": sid, "role": "publisher", "data": "bob"}));

    let (mut a, joined_a) = join(port, &sid, &token_a).await;
    let a_id = joined_a["connection"]["id"].as_str().expect("id").to_owned();
    assert_eq!(joined_a["connection"]["data"], "alice");
    assert_eq!(joined_a["connections"], json!([]));
    let (mut b, joined_b) = join(port, &sid, &token_b).await;
    let b_id = joined_b["connection"]["id"].as_str().expect("id").to_owned();
    assert_eq!(joined_b["connections"][0]["id"], a_id.as_str(), "bob sees alice in his snapshot");
    let created = a.event("connectionCreated", SECS).await;
    assert_eq!(created["connection"]["id"], b_id.as_str());
    assert_eq!(created["connection"]["data"], "bob");

    // Alice publishes audio and video.
    let offer = Offer::new(Mode::Publish, true, true).await;
    let reply = a.request(json!({"type": "publish", "sdp": offer.sdp, "name": "alice-cam"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let stream_id = reply["stream"]["id"].as_str().expect("stream").to_owned();
    assert_eq!(reply["stream"]["hasAudio"], true);
    assert_eq!(reply["stream"]["hasVideo"], true);
    assert_eq!(reply["stream"]["videoType"], "camera");
    let publisher = offer.answer(reply["sdp"].as_str().expect("answer"));
    let announced = b.event("streamCreated", SECS).await;
    assert_eq!(announced["stream"]["id"], stream_id.as_str());
    assert_eq!(announced["stream"]["name"], "alice-cam");
    assert_eq!(announced["stream"]["connectionId"], a_id.as_str());

    // A tap sees the same frames the router forwards.
    let (_, mut tap) = service.tap(&StreamId::from_wire(&stream_id)).expect("tap");

    // Bob subscribes.
    let offer = Offer::new(Mode::Subscribe, true, true).await;
    let reply = b.request(json!({"type": "subscribe", "streamId": stream_id, "sdp": offer.sdp})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let subscriber = offer.answer(reply["sdp"].as_str().expect("answer"));
    assert!(
        publisher.wait(SECS, |l| l.connected).await,
        "publisher connected: {:?}",
        publisher.with(|l| l.failed.clone())
    );
    assert!(subscriber.wait(SECS, |l| l.connected).await, "subscriber connected");
    let flowing = subscriber.wait(SECS, |l| l.audio_frames.len() >= 50 && l.video_frames.len() >= 20).await;
    assert!(
        flowing,
        "media reached the subscriber: {} audio, {} video frames; publisher sent {} audio {} video; tap {:?}",
        subscriber.with(|l| l.audio_frames.len()),
        subscriber.with(|l| l.video_frames.len()),
        publisher.with(|l| l.sent_audio.len()),
        publisher.with(|l| l.sent_video.len()),
        tap.try_recv().map(|f| f.data.len()),
    );

    // Byte-exact, in order, nothing invented.
    let (sent_a, sent_v) = publisher.with(|l| (l.sent_audio.clone(), l.sent_video.clone()));
    subscriber.with(|l| {
        for (got, sent) in [(&l.audio_frames, &sent_a), (&l.video_frames, &sent_v)] {
            let mut last = None;
            for f in got {
                let n = seq(f) as usize;
                assert_eq!(Some(f), sent.get(n), "frame {n} arrived altered");
                assert!(last.is_none_or(|p| n > p), "frames out of order");
                last = Some(n);
            }
        }
        assert!(
            l.video_frames.iter().all(|f| f.len() == 3000),
            "3000-byte video frames span several packets and are reassembled"
        );
    });
    let mut tapped = 0;
    while let Ok(f) = tap.try_recv() {
        assert_eq!(
            Some(&f.data.to_vec()),
            if f.data[0] == b'A' { sent_a.get(seq(&f.data) as usize) } else { sent_v.get(seq(&f.data) as usize) }
        );
        // The audio-level header extension reaches the session's taps (the mixer skips decoding
        // what says it is silent); video has none.
        let level = (f.data[0] == b'A').then(|| peer::audio_level(seq(&f.data)).unsigned_abs());
        assert_eq!(f.audio_level, level, "frame {}", seq(&f.data));
        tapped += 1;
    }
    assert!(tapped >= 50, "the tap saw {tapped} frames");

    // The subscriber's PLI reaches the publisher (beyond the one sent when it connected).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = publisher.with(|l| l.keyframe_requests);
    subscriber.request_keyframe();
    assert!(publisher.wait(SECS, |l| l.keyframe_requests > before).await, "keyframe request forwarded");
    assert!(before >= 1, "a new subscriber triggers a keyframe request");

    // Moderation from a client: alice (a moderator) mutes her own stream; bob may not.
    let r = b.request(json!({"type": "forceMute", "streamId": stream_id})).await;
    assert_eq!((r["type"].as_str(), r["code"].as_u64()), (Some("error"), Some(403)), "{r}");
    let r = a.request(json!({"type": "forceMute", "streamId": stream_id})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let muted = a.event("muteForced", SECS).await;
    assert_eq!(muted["streamId"], stream_id.as_str());
    assert!(service
        .stream(&session::SessionId::parse(&sid).expect("sid"), &StreamId::from_wire(&stream_id))
        .is_some_and(|s| s.audio_muted));

    // A signal to everyone, then alice forces bob out.
    let r = b.request(json!({"type": "signal", "signalType": "chat", "data": "hi"})).await;
    assert_eq!(r["type"], "ok");
    let sig = a.event("signal", SECS).await;
    assert_eq!(
        (sig["from"].as_str(), sig["signalType"].as_str(), sig["data"].as_str()),
        (Some(b_id.as_str()), Some("chat"), Some("hi"))
    );
    let r = a.request(json!({"type": "forceDisconnect", "connectionId": b_id})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let bye = b.event("sessionDisconnected", SECS).await;
    assert_eq!(bye["reason"], "forceDisconnected");
    assert!(b.next(SECS).await.is_none(), "the server closes the socket after sessionDisconnected");
    let gone = a.event("connectionDestroyed", SECS).await;
    assert_eq!(
        (gone["connection"]["id"].as_str(), gone["reason"].as_str()),
        (Some(b_id.as_str()), Some("forceDisconnected"))
    );

    // Alice unpublishes and leaves.
    let r = a.request(json!({"type": "unpublish", "streamId": stream_id})).await;
    assert_eq!(r["type"], "ok");
    let r = a.request(json!({"type": "leave"})).await;
    assert_eq!(r["type"], "ok");
    assert!(a.next(SECS).await.is_none(), "closed after leave");
    publisher.stop().await;
    subscriber.stop().await;

    // What other crates saw, in order.
    let mut kinds = Vec::new();
    while let Ok(e) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        let Some(e) = e else { break };
        kinds.push(match &e.kind {
            EventKind::ConnectionCreated(c) => format!("connectionCreated {}", c.data),
            EventKind::ConnectionDestroyed { connection, reason } => {
                format!("connectionDestroyed {} {}", connection.data, reason.as_wire())
            }
            EventKind::StreamCreated { stream, .. } => format!("streamCreated {}", stream.name),
            EventKind::StreamDestroyed { stream, reason, .. } => {
                format!("streamDestroyed {} {}", stream.name, reason.as_wire())
            }
            EventKind::Signal { signal_type, .. } => format!("signal {signal_type}"),
            other => format!("{other:?}").replace(&stream_id, "STREAM"),
        });
    }
    assert_eq!(
        kinds,
        [
            "connectionCreated alice",
            "connectionCreated bob",
            "streamCreated alice-cam",
            "MuteForced { target: Stream(StreamId(\"STREAM\")), muted: [StreamId(\"STREAM\")] }",
            "signal chat",
            "connectionDestroyed bob forceDisconnected",
            "streamDestroyed alice-cam clientDisconnected",
            "connectionDestroyed alice clientDisconnected",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_participant_is_network_disconnected_and_the_session_ends() {
    let rooms = RoomsConfig { empty_timeout: Duration::from_millis(300), ..RoomsConfig::default() };
    let (service, port) = start(rooms).await;
    let mut events = service.subscribe();
    let (sid, token) = demo_token(port, json!({}));
    let (mut a, _) = join(port, &sid, &token).await;
    let (b, _) = join(port, &sid, &token).await;
    let offer = Offer::new(Mode::Publish, true, false).await;
    let reply = {
        let mut b = b;
        let r = b.request(json!({"type": "publish", "sdp": offer.sdp})).await;
        drop(b); // the socket goes away without `leave`
        r
    };
    assert_eq!(reply["stream"]["hasVideo"], false);
    assert!(reply["stream"].get("videoType").is_none(), "no videoType without video");
    let s = a.event("streamDestroyed", SECS).await;
    assert_eq!(s["reason"], "networkDisconnected");
    let c = a.event("connectionDestroyed", SECS).await;
    assert_eq!(c["reason"], "networkDisconnected");
    let r = a.request(json!({"type": "leave"})).await;
    assert_eq!(r["type"], "ok");
    let ended = tokio::time::timeout(SECS, async {
        while let Some(e) = events.recv().await {
            if e.kind == EventKind::SessionEnded {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "the empty session ended");
    assert!(!service.is_live(&session::SessionId::parse(&sid).expect("sid")));
    let _ = DisconnectReason::ClientDisconnected;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_create_nothing() {
    let (service, port) = start(RoomsConfig::default()).await;
    let (sid, token) = demo_token(port, json!({}));
    let (_, sub_token) = demo_token(port, json!({"sessionId": sid, "role": "subscriber"}));
    let mut s = Signal::connect(port).await;
    let check = |m: &Value, code: u64, needle: &str| {
        assert_eq!((m["type"].as_str(), m["code"].as_u64()), (Some("error"), Some(code)), "{m}");
        assert!(m["message"].as_str().is_some_and(|t| t.contains(needle)), "{m} should say {needle:?}");
    };
    s.send_raw("not json").await;
    let m = s.next(SECS).await.expect("reply");
    check(&m, 400, "not JSON");
    assert!(m["id"].is_null());
    check(&s.request(json!({"type": "publish", "sdp": "v=0"})).await, 400, "join first");
    check(&s.request(json!({"type": "join", "sessionId": sid, "token": "T1==garbage"})).await, 403, "token refused");
    // Flip one character in the middle of the signature (the last one may only carry padding bits).
    let at = token.len() - 10;
    let flipped = if &token[at..at + 1] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    check(&s.request(json!({"type": "join", "sessionId": sid, "token": forged})).await, 403, "token refused");
    check(&s.request(json!({"type": "join", "sessionId": "1_nope", "token": token})).await, 404, "session");
    check(&s.request(json!({"type": "join", "sessionId": sid})).await, 400, "token");
    let sid_parsed = session::SessionId::parse(&sid).expect("sid");
    assert!(!service.is_live(&sid_parsed), "refused joins created no connection");

    let ok = s.request(json!({"type": "join", "sessionId": sid, "token": sub_token})).await;
    assert_eq!(ok["type"], "ok");
    check(&s.request(json!({"type": "join", "sessionId": sid, "token": sub_token})).await, 409, "already");
    check(&s.request(json!({"type": "publish", "sdp": "v=0"})).await, 403, "subscriber");
    check(&s.request(json!({"type": "subscribe", "streamId": "nope", "sdp": "v=0"})).await, 404, "stream");
    check(&s.request(json!({"type": "forceDisconnect", "connectionId": "x"})).await, 403, "moderator");
    check(&s.request(json!({"type": "signal", "signalType": "t".repeat(129)})).await, 413, "128");
    check(&s.request(json!({"type": "dance"})).await, 400, "unknown request type");
    assert!(service.streams(&sid_parsed).is_empty());

    let (mut p, _) = join(port, &sid, &token).await;
    check(&p.request(json!({"type": "publish", "sdp": "garbage"})).await, 400, "audio or video");
    let broken = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n";
    check(&p.request(json!({"type": "publish", "sdp": broken})).await, 400, "SDP");
    let recv = Offer::new(Mode::Subscribe, true, false).await;
    check(&p.request(json!({"type": "publish", "sdp": recv.sdp})).await, 400, "recvonly");
    check(
        &p.request(json!({"type": "publish", "sdp": "m=audio 9 x 0", "videoType": "hologram"})).await,
        400,
        "videoType",
    );
    assert!(service.streams(&sid_parsed).is_empty(), "no stream from refused publishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_is_forwarded_and_external_sources_reach_subscribers() {
    let (service, port) = start(RoomsConfig::default()).await;
    let (sid, token) = demo_token(port, json!({}));
    let session = session::SessionId::parse(&sid).expect("sid");
    let (mut a, _) = join(port, &sid, &token).await;
    let (mut b, _) = join(port, &sid, &token).await;

    // H.264 from a WebRTC publisher: FU-A fragments reassembled into the same access units.
    let offer = Offer::with_video_codec(Mode::Publish, false, true, str0m::format::Codec::H264).await;
    let reply = a.request(json!({"type": "publish", "sdp": offer.sdp, "videoType": "screen"})).await;
    assert_eq!(reply["stream"]["videoType"], "screen", "{reply}");
    let h264_stream = reply["stream"]["id"].as_str().expect("id").to_owned();
    let publisher = offer.answer(reply["sdp"].as_str().expect("sdp"));
    let offer = Offer::new(Mode::Subscribe, false, true).await;
    let reply = b.request(json!({"type": "subscribe", "streamId": h264_stream, "sdp": offer.sdp})).await;
    let subscriber = offer.answer(reply["sdp"].as_str().expect("sdp"));
    assert!(subscriber.wait(SECS, |l| l.video_frames.len() >= 20).await, "H.264 frames reached the subscriber");
    let sent = publisher.with(|l| l.sent_video.clone());
    subscriber.with(|l| {
        for f in &l.video_frames {
            assert_eq!(Some(f), sent.get(seq(f) as usize), "H.264 access unit altered");
        }
    });

    // An external source (what the SIP bridge does): a SIP connection publishes, we write frames.
    let sip =
        service.connect_external(&session, session::ConnectionKind::Sip, "sip:alice@example.com".into()).expect("sip");
    let spec = session::StreamSpec { name: "SIP".into(), has_audio: true, has_video: true, video_type: None };
    let ext_id = StreamId::from_wire("0b3f6c8e-1d2a-4c5b-8e9f-a0b1c2d3e4f5");
    let (stream, mut keyframes) =
        service.publish_external(&sip.id, ext_id.clone(), spec, Vec::new()).expect("external stream");
    let mut created = b.event("streamCreated", SECS).await;
    if created["stream"]["id"] == h264_stream.as_str() {
        created = b.event("streamCreated", SECS).await;
    }
    assert_eq!(created["stream"]["id"], stream.id.as_str());
    assert_eq!(created["stream"]["name"], "SIP");
    let offer = Offer::new(Mode::Subscribe, true, true).await;
    let reply = b.request(json!({"type": "subscribe", "streamId": stream.id.as_str(), "sdp": offer.sdp})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let listener = offer.answer(reply["sdp"].as_str().expect("sdp"));
    assert!(listener.wait(SECS, |l| l.connected).await);
    assert!(
        tokio::time::timeout(SECS, keyframes.recv()).await.is_ok_and(|k| k.is_some()),
        "a new subscriber asks the external source for a keyframe"
    );
    let writer = {
        let service = service.clone();
        let id = ext_id.clone();
        tokio::spawn(async move {
            for n in 0..150u32 {
                let audio = session::router::MediaFrame {
                    codec: session::router::FrameCodec::Opus,
                    rtp_time: u64::from(n) * 960,
                    data: peer::frame(b'A', n, 60).into(),
                    contiguous: true,
                    audio_level: None,
                    arrival: std::time::Instant::now(),
                };
                let _ = service.write_frame(&id, audio);
                if n % 2 == 0 {
                    let video = session::router::MediaFrame {
                        codec: session::router::FrameCodec::Vp8,
                        rtp_time: u64::from(n) * 1800,
                        data: peer::frame(b'V', n / 2, 2500).into(),
                        contiguous: true,
                        audio_level: None,
                        arrival: std::time::Instant::now(),
                    };
                    let _ = service.write_frame(&id, video);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    assert!(
        listener.wait(SECS, |l| l.audio_frames.len() >= 50 && l.video_frames.len() >= 20).await,
        "external frames arrived"
    );
    listener.with(|l| {
        for f in &l.audio_frames {
            assert_eq!(*f, peer::frame(b'A', seq(f), 60));
        }
        for f in &l.video_frames {
            assert_eq!(*f, peer::frame(b'V', seq(f), 2500));
        }
    });
    writer.abort();
    // Ending the SIP connection ends its stream for the subscribers.
    service.disconnect_as(&session, &sip.id, DisconnectReason::ClientDisconnected).expect("hang up");
    let gone = b.event("streamDestroyed", SECS).await;
    assert_eq!(gone["stream"]["id"], stream.id.as_str());
    assert!(
        service
            .write_frame(
                &ext_id,
                session::router::MediaFrame {
                    codec: session::router::FrameCodec::Opus,
                    rtp_time: 0,
                    data: vec![1u8].into(),
                    contiguous: true,
                    audio_level: None,
                    arrival: std::time::Instant::now()
                }
            )
            .is_err(),
        "no writing to an ended stream"
    );
    publisher.stop().await;
    subscriber.stop().await;
    listener.stop().await;
}

/// A request's reply comes before the events it causes: a stream published while a session-wide
/// mute is in force is muted at once, and its `muteForced` follows the publish reply that names
/// the stream (a client could not tell which stream it meant otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_reply_comes_before_the_events_about_its_stream() {
    let (_service, port) = start(RoomsConfig::default()).await;
    let (sid, token) = demo_token(port, json!({}));
    let (mut a, _) = join(port, &sid, &token).await;
    let r = a.request(json!({"type": "forceMuteAll", "active": true})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let offer = Offer::new(Mode::Publish, true, false).await;
    let reply = a.request(json!({"type": "publish", "sdp": offer.sdp})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let stream = reply["stream"]["id"].as_str().expect("stream id").to_owned();
    assert!(
        !a.pending.iter().any(|e| e["event"] == "muteForced" && e["streamId"] == stream.as_str()),
        "the mute of the new stream came before the reply naming it: {:?}",
        a.pending
    );
    let muted = loop {
        let e = a.event("muteForced", SECS).await;
        if e["streamId"].is_string() {
            break e;
        }
    };
    assert_eq!(muted["streamId"], stream.as_str(), "{muted}");
}
