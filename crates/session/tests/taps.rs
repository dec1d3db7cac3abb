//! A stream's taps (what the SIP bridge mixes and composes from): a consumer that falls behind
//! never grows memory. Past `TAP_QUEUE` frames held, the newest are dropped, and the next frame
//! it gets says frames were lost before it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use session::router::{FrameCodec, MediaFrame};
use session::service::{ServiceConfig, SessionService, TAP_QUEUE};
use session::{ApiSecret, ConnectionKind, MediaMode, Project, ProjectId, Projects, StreamId, StreamSpec};

fn frame(n: usize) -> MediaFrame {
    MediaFrame {
        codec: FrameCodec::Opus,
        rtp_time: n as u64 * 960,
        data: Arc::from([0xf8u8, 0xff, 0xfe].as_slice()),
        contiguous: true,
        audio_level: None,
        arrival: Instant::now(),
    }
}

#[tokio::test]
async fn a_tap_whose_consumer_falls_behind_drops_frames_and_says_so() {
    let mut projects = Projects::new();
    let secret = ApiSecret::new("0123456789abcdef0123456789abcdef01234567").expect("secret");
    projects.insert(Project::legacy("4615003", secret).expect("project"));
    let service = SessionService::start(ServiceConfig::default(), projects).await.expect("service");
    let project = ProjectId::api_key("4615003").expect("key");
    let session = service.create_session(&project, MediaMode::Routed, None, SystemTime::now());
    let source = service.connect_external(&session, ConnectionKind::Sip, String::new()).expect("source");
    let spec = StreamSpec { name: String::new(), has_audio: true, has_video: false, video_type: None };
    let (stream, _) =
        service.publish_external(&source.id, StreamId::from_wire("st"), spec, Vec::new()).expect("stream");
    let (_, mut tap) = service.tap(&stream.id).expect("tap");

    for n in 0..TAP_QUEUE + 50 {
        service.write_frame(&stream.id, frame(n)).expect("write");
    }
    let mut held = Vec::new();
    while let Ok(f) = tap.try_recv() {
        held.push(f);
    }
    assert_eq!(held.len(), TAP_QUEUE, "the queue holds so many frames, no more");
    assert!(held.iter().enumerate().all(|(n, f)| f.contiguous && f.rtp_time == n as u64 * 960), "the oldest are kept");

    service.write_frame(&stream.id, frame(TAP_QUEUE + 50)).expect("write");
    service.write_frame(&stream.id, frame(TAP_QUEUE + 51)).expect("write");
    let after = tap.try_recv().expect("the next frame");
    assert!(!after.contiguous, "the first frame after the drop says frames were lost");
    assert!(tap.try_recv().expect("and the one after").contiguous);
}
