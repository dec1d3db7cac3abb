//! RFC 4733 events from a real peer: sipp replays captured telephone-event
//! packets (Debian `sip-tester`'s dtmf_2833_*.pcap) into our call, and
//! dtmf-rfc4733's receiver must report exactly the digits pressed.

use bytes::Bytes;
use dtmf_rfc4733::{Receiver, ReceiverConfig};
use interop_tests::{free_port, require};
use sdp_negotiation::{Codec, LocalSession, OfferOptions};
use sip_signaling::driver::{self, Dial, DriverConfig};
use sip_signaling::{CallEvent, EndReason};
use srtp_transport::RtpPacket;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn digits_from_sipp_captures() {
    require("sipp", "sip-tester");
    assert!(
        std::path::Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap").exists(),
        "sipp's DTMF captures are missing: install `sip-tester`"
    );
    let sip_port = free_port();
    let dir = std::env::temp_dir().join(format!("sipp-dtmf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/dtmf_uas.xml");
    let mut sipp = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", &sip_port.to_string(), "-mp", &free_port().to_string()])
        .args(["-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin", "-trace_err"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    std::thread::sleep(Duration::from_millis(400));

    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("media");
    let media_port = media.local_addr().expect("addr").port();
    let opts = OfferOptions {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        audio_port: media_port,
        audio_codecs: vec![Codec::Pcmu],
        ..OfferOptions::default()
    };
    let mut session = LocalSession::new(opts, 3);
    let offer = session.create_offer();
    let ua = driver::start(DriverConfig::default()).await.expect("driver");
    let mut call = ua
        .call(Dial {
            uri: format!("sip:dtmf@127.0.0.1:{sip_port}"),
            sdp: Some(Bytes::from(offer.to_bytes())),
            ..Dial::default()
        })
        .await
        .expect("dial");
    let te_pt = loop {
        match tokio::time::timeout(Duration::from_secs(10), call.events.recv()).await.expect("event").expect("open") {
            CallEvent::Answered { sdp } => {
                let a = session.process_answer(&sdp.expect("sdp")).expect("agreement");
                break a.audio.expect("audio").telephone_event.expect("telephone-event agreed").0;
            }
            CallEvent::Trying | CallEvent::Ringing { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut digits = String::new();
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ended = false;
    while Instant::now() < deadline && !ended {
        tokio::select! {
            r = media.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { continue };
                let Ok(p) = RtpPacket::parse(&buf[..n]) else { continue };
                if p.payload_type().0 == te_pt {
                    rx.handle_packet(Instant::now(), p.seq(), p.timestamp(), p.marker(), p.payload()).expect("valid event");
                }
            }
            ev = call.events.recv() => {
                assert_eq!(ev, Some(CallEvent::Ended { reason: EndReason::RemoteHangup }));
                ended = true;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        rx.handle_timeout(Instant::now());
        while let Some(d) = rx.poll_event() {
            digits.push(d.digit.to_char());
        }
    }
    rx.handle_timeout(Instant::now() + Duration::from_secs(1));
    while let Some(d) = rx.poll_event() {
        digits.push(d.digit.to_char());
    }
    ua.shutdown().await;
    let status = sipp.wait().expect("sipp exit");
    assert!(ended, "sipp hung up");
    assert_eq!(digits, "15902", "each captured key press reported once, in order");
    assert!(status.success(), "sipp failed: {status}");
}
