//! `sip-signaling` against sipp (Debian package `sip-tester`) as the
//! answering side, over UDP, TCP and TLS (sipp's TCP behind a `socat`
//! TLS terminator with a test CA made at test time), and through a lossy
//! UDP relay. Each test starts real processes on loopback and bounds them
//! in time; ports come from the suite's allocator (`free_port`), which
//! keeps them out of the kernel's ephemeral range. The scenarios live with
//! the crate, in `crates/sip-signaling/tests/sipp`.

use bytes::Bytes;
use interop_tests::{free_port, require, TlsFront};
use sip_signaling::digest::Credentials;
use sip_signaling::driver::{self, Dial, DriverConfig, SipHandle};
use sip_signaling::{CallEvent, EndReason};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tp {
    Udp,
    Tcp,
    Tls,
    /// sipp on TCP only, dialled by a plain `sip:` URI (UDP) with an offer too large for UDP: the
    /// INVITE, its CANCEL and ACK must go over TCP (RFC 3261 §18.1.1).
    LargeOverTcp,
}

/// An offer of about 1.6 kB: [`SDP`] with attributes a far end ignores.
fn large_sdp() -> String {
    let mut s = SDP.to_owned();
    for i in 0..40 {
        s.push_str(&format!("a=x-filler:{i:02} {}\r\n", "f".repeat(24)));
    }
    s
}

/// A child process killed on drop.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits for the process to exit on its own; its status must be 0.
    fn expect_success(mut self, within: Duration, log: &Path) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                let errors = std::fs::read_to_string(log).unwrap_or_default();
                assert!(status.success(), "{} exited with {status}; its error log:\n{errors}", self.1);
                return;
            }
            assert!(start.elapsed() < within, "{} did not finish within {within:?}", self.1);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/sip-signaling/tests/sipp").join(format!("{name}.xml"))
}

fn start_sipp(name: &str, port: u16, tp: Tp, dir: &Path) -> (Proc, PathBuf) {
    require("sipp", "sip-tester");
    let log = dir.join(format!("{name}-errors.log"));
    let t = if tp == Tp::Udp { "u1" } else { "t1" };
    let child = Command::new("sipp")
        .args(["-sf"])
        .arg(scenario(name))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            t,
            "-m",
            "1",
            "-timeout",
            "25s",
            "-timeout_error",
            "-nostdin",
        ])
        .args(["-trace_err", "-error_file"])
        .arg(&log)
        .args(["-mp", &free_port().to_string()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    (Proc(child, "sipp"), log)
}

fn wait_tcp(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("nothing listens on TCP port {port}");
}

async fn driver_with(ca: Option<&Path>) -> SipHandle {
    let mut cfg = DriverConfig::default();
    cfg.tls.ca_file = ca.map(Path::to_path_buf);
    cfg.tls.only_ca_file = ca.is_some();
    driver::start(cfg).await.expect("driver")
}

async fn next_event(call: &mut driver::Call) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(20), call.events.recv())
        .await
        .expect("event within 20 s")
        .expect("event channel open")
}

/// Runs one sipp scenario over one transport, with `script` playing our side.
async fn run<F, Fut>(name: &str, tp: Tp, credentials: Option<Credentials>, script: F)
where
    F: FnOnce(SipHandle, driver::Call) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempdir(&format!("{name}-{tp:?}"));
    let sipp_port = free_port();
    let (sipp, log) = start_sipp(name, sipp_port, tp, &dir);
    let (uri, tls) = match tp {
        Tp::Udp => {
            std::thread::sleep(Duration::from_millis(300));
            (format!("sip:service@127.0.0.1:{sipp_port}"), None)
        }
        Tp::Tcp => {
            wait_tcp(sipp_port);
            (format!("sip:service@127.0.0.1:{sipp_port};transport=tcp"), None)
        }
        Tp::Tls => {
            wait_tcp(sipp_port);
            let tls_port = free_port();
            let tls = TlsFront::start(&dir, tls_port, sipp_port);
            (format!("sip:service@127.0.0.1:{tls_port};transport=tls"), Some(tls))
        }
        Tp::LargeOverTcp => {
            wait_tcp(sipp_port);
            (format!("sip:service@127.0.0.1:{sipp_port}"), None)
        }
    };
    let sdp = if tp == Tp::LargeOverTcp { large_sdp() } else { SDP.to_owned() };
    assert!(tp != Tp::LargeOverTcp || sdp.len() > 1300);
    let ua = driver_with(tls.as_ref().map(|t| t.ca.as_path())).await;
    let call = ua
        .call(Dial { uri, from: Some("+15550100".into()), credentials, sdp: Some(Bytes::from(sdp)), ..Dial::default() })
        .await
        .expect("dial");
    script(ua.clone(), call).await;
    let log2 = log.clone();
    tokio::task::spawn_blocking(move || sipp.expect_success(Duration::from_secs(20), &log2)).await.expect("join");
    ua.shutdown().await;
    drop(tls);
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sip-interop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

async fn script_answered_then_hangup(ua: SipHandle, mut call: driver::Call) {
    loop {
        match next_event(&mut call).await {
            CallEvent::Answered { sdp } => {
                assert!(sdp.is_some_and(|s| s.starts_with(b"v=0")));
                break;
            }
            CallEvent::Trying | CallEvent::Ringing { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ua.hangup(call.handle).await.expect("hangup");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::LocalHangup });
}

async fn script_busy(_: SipHandle, mut call: driver::Call) {
    loop {
        match next_event(&mut call).await {
            CallEvent::Failed { code, reason } => {
                assert_eq!((code, reason.as_str()), (486, "Busy Here"));
                break;
            }
            CallEvent::Trying => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn script_ring_then_answer(ua: SipHandle, mut call: driver::Call) {
    let mut rang = false;
    loop {
        match next_event(&mut call).await {
            CallEvent::Ringing { code: 180 } => rang = true,
            CallEvent::Answered { .. } => break,
            CallEvent::Trying => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(rang);
    ua.hangup(call.handle).await.expect("hangup");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::LocalHangup });
}

async fn script_hold_reinvite(ua: SipHandle, mut call: driver::Call) {
    loop {
        match next_event(&mut call).await {
            CallEvent::Answered { .. } => {}
            CallEvent::RemoteOffer { sdp, .. } => {
                assert!(String::from_utf8_lossy(&sdp).contains("a=sendonly"));
                let answer = SDP.replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:0 PCMU/8000\r\na=recvonly\r\n");
                ua.answer(call.handle, answer.into()).await.expect("answer");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Give the ACK time to arrive, then hang up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ua.hangup(call.handle).await.expect("hangup");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::LocalHangup });
}

async fn script_remote_bye(_: SipHandle, mut call: driver::Call) {
    assert!(matches!(next_event(&mut call).await, CallEvent::Answered { .. }));
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::RemoteHangup });
}

async fn script_cancel(ua: SipHandle, mut call: driver::Call) {
    assert_eq!(next_event(&mut call).await, CallEvent::Ringing { code: 180 });
    ua.hangup(call.handle).await.expect("hangup");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::Cancelled });
}

/// Early media sent reliably: its 183 is reported once (our PRACK stops the retransmissions),
/// then the answer.
async fn script_reliable_early_media(ua: SipHandle, mut call: driver::Call) {
    let mut progress = 0;
    loop {
        match next_event(&mut call).await {
            CallEvent::Trying => {}
            CallEvent::Progress { sdp: Some(_) } => progress += 1,
            CallEvent::Answered { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(progress, 1, "the reliable 183 once");
    ua.hangup(call.handle).await.expect("hangup");
    assert_eq!(next_event(&mut call).await, CallEvent::Ended { reason: EndReason::LocalHangup });
}

fn creds() -> Option<Credentials> {
    Some(Credentials { username: "alice".into(), password: "s3cret".into() })
}

macro_rules! interop {
    ($($name:ident: $scenario:literal, $creds:expr, $script:ident;)*) => {
        mod udp { use super::*; $( #[tokio::test] async fn $name() { run($scenario, Tp::Udp, $creds, $script).await } )* }
        mod tcp { use super::*; $( #[tokio::test] async fn $name() { run($scenario, Tp::Tcp, $creds, $script).await } )* }
        mod tls { use super::*; $( #[tokio::test] async fn $name() { run($scenario, Tp::Tls, $creds, $script).await } )* }
        mod large_offer_over_tcp {
            use super::*;
            $( #[tokio::test] async fn $name() { run($scenario, Tp::LargeOverTcp, $creds, $script).await } )*
        }
    };
}

interop! {
    answer: "answer", None, script_answered_then_hangup;
    busy_486: "busy", None, script_busy;
    ring_then_answer: "ring_answer", None, script_ring_then_answer;
    digest_401: "auth401", creds(), script_answered_then_hangup;
    digest_407: "auth407", creds(), script_answered_then_hangup;
    reinvite_hold: "reinvite", None, script_hold_reinvite;
    bye_from_far_end: "remote_bye", None, script_remote_bye;
    cancel_while_ringing: "cancel", None, script_cancel;
    reliable_early_media_is_pracked: "prack", None, script_reliable_early_media;
}

/// A wrong password ends with the final 403 from the far end, not a loop.
#[tokio::test]
async fn wrong_password_fails_cleanly() {
    let wrong = Some(Credentials { username: "alice".into(), password: "wrong".into() });
    run("auth401", Tp::Udp, wrong, |_, mut call| async move {
        loop {
            match next_event(&mut call).await {
                CallEvent::Failed { code, .. } => {
                    assert_eq!(code, 403);
                    break;
                }
                CallEvent::Trying => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
}

/// TLS with a CA we do not trust fails the call with 503, never connects.
#[tokio::test]
async fn tls_untrusted_certificate_is_refused() {
    let dir = tempdir("untrusted");
    let tcp_port = free_port();
    // A plain TCP sink stands in for sipp: the handshake must fail first.
    let sink = TcpListener::bind(("127.0.0.1", tcp_port)).expect("sink");
    let tls_port = free_port();
    let _tls = TlsFront::start(&dir, tls_port, tcp_port);
    let other_dir = tempdir("untrusted-other");
    let other = TlsFront::start(&other_dir, free_port(), tcp_port);
    let ua = driver_with(Some(&other.ca)).await;
    let mut call = ua
        .call(Dial {
            uri: format!("sip:service@127.0.0.1:{tls_port};transport=tls"),
            sdp: Some(Bytes::from_static(SDP.as_bytes())),
            ..Dial::default()
        })
        .await
        .expect("dial");
    match next_event(&mut call).await {
        CallEvent::Failed { code: 503, .. } => {}
        other => panic!("expected a 503 transport failure, got {other:?}"),
    }
    drop(sink);
    ua.shutdown().await;
}

/// A UDP path that loses the first INVITE and the first 200 OK: the
/// retransmissions (ours and sipp's) carry the call through.
#[tokio::test]
async fn lossy_udp_path() {
    let dir = tempdir("lossy");
    let sipp_port = free_port();
    let (sipp, log) = start_sipp("answer", sipp_port, Tp::Udp, &dir);
    std::thread::sleep(Duration::from_millis(300));
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("relay");
    let relay_addr = relay.local_addr().expect("addr");
    let sipp_addr: SocketAddr = format!("127.0.0.1:{sipp_port}").parse().expect("addr");
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dropped2 = dropped.clone();
    let relay_task = tokio::spawn(async move {
        let mut ua_addr: Option<SocketAddr> = None;
        let (mut dropped_invite, mut dropped_ok) = (false, false);
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = relay.recv_from(&mut buf).await else { return };
            let pkt = &buf[..n];
            if from == sipp_addr {
                if !dropped_ok && pkt.starts_with(b"SIP/2.0 200") {
                    dropped_ok = true;
                    dropped2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
                if let Some(a) = ua_addr {
                    let _ = relay.send_to(pkt, a).await;
                }
            } else {
                ua_addr = Some(from);
                if !dropped_invite && pkt.starts_with(b"INVITE") {
                    dropped_invite = true;
                    dropped2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
                let _ = relay.send_to(pkt, sipp_addr).await;
            }
        }
    });
    let ua = driver_with(None).await;
    let call = ua
        .call(Dial {
            uri: format!("sip:service@{relay_addr}"),
            sdp: Some(Bytes::from_static(SDP.as_bytes())),
            ..Dial::default()
        })
        .await
        .expect("dial");
    script_answered_then_hangup(ua.clone(), call).await;
    tokio::task::spawn_blocking(move || sipp.expect_success(Duration::from_secs(20), &log)).await.expect("join");
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 2, "both losses happened");
    relay_task.abort();
    ua.shutdown().await;
}

/// IPv6 end to end: sipp on ::1, our sockets on ::1, over UDP and TCP.
#[tokio::test]
async fn ipv6_loopback_udp_and_tcp() {
    for tp in [Tp::Udp, Tp::Tcp] {
        require("sipp", "sip-tester");
        let dir = tempdir(&format!("v6-{tp:?}"));
        let port = free_port();
        let log = dir.join("errors.log");
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(scenario("answer"))
            .args(["-i", "::1", "-p", &port.to_string(), "-t", if tp == Tp::Udp { "u1" } else { "t1" }])
            .args(["-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin", "-trace_err", "-error_file"])
            .arg(&log)
            .args(["-mp", &free_port().to_string()])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp");
        let sipp = Proc(child, "sipp");
        std::thread::sleep(Duration::from_millis(400));
        let cfg = DriverConfig {
            udp_bind: "[::1]:0".parse().expect("addr"),
            tcp_bind: Some("[::1]:0".parse().expect("addr")),
            ..DriverConfig::default()
        };
        let ua = driver::start(cfg).await.expect("IPv6 loopback must be available");
        let suffix = if tp == Tp::Tcp { ";transport=tcp" } else { "" };
        let call = ua
            .call(Dial {
                uri: format!("sip:service@[::1]:{port}{suffix}"),
                sdp: Some(Bytes::from_static(SDP.as_bytes())),
                ..Dial::default()
            })
            .await
            .expect("dial");
        script_answered_then_hangup(ua.clone(), call).await;
        let log2 = log.clone();
        tokio::task::spawn_blocking(move || sipp.expect_success(Duration::from_secs(20), &log2)).await.expect("join");
        ua.shutdown().await;
    }
}
