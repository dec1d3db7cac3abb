//! RFC 5626 keep-alives on a TCP connection we opened: we ping (CRLFCRLF)
//! when idle, and answer the peer's ping with a pong (CRLF).

use bytes::Bytes;
use sip_signaling::driver::{self, Dial, DriverConfig};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn pings_when_idle_and_pongs_to_pings() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cfg = DriverConfig { keepalive_interval: Some(Duration::from_millis(200)), ..DriverConfig::default() };
    let ua = driver::start(cfg).await.expect("driver");
    let _call = ua
        .call(Dial {
            uri: format!("sip:peer@127.0.0.1:{port};transport=tcp"),
            sdp: Some(Bytes::from_static(b"v=0\r\n")),
            ..Dial::default()
        })
        .await
        .expect("dial");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connection").expect("accept");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The INVITE, then (nothing else to send) a ping after ~200 ms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !seen.ends_with(b"\r\n\r\n\r\n\r\n") && !String::from_utf8_lossy(&seen).contains("\r\n\r\n\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf)).await.expect("a ping within 3 s").expect("read");
        assert!(n > 0, "connection closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"INVITE sip:peer@127.0.0.1"), "{}", String::from_utf8_lossy(&seen));
    ua.shutdown().await;

    // Without our own pings (so nothing else is sent), their ping gets
    // exactly one CRLF back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ua = driver::start(DriverConfig { keepalive_interval: None, ..DriverConfig::default() }).await.expect("driver");
    let _call = ua
        .call(Dial {
            uri: format!("sip:peer@127.0.0.1:{port};transport=tcp"),
            sdp: Some(Bytes::from_static(b"v=0\r\n")),
            ..Dial::default()
        })
        .await
        .expect("dial");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connection").expect("accept");
    let mut invite = Vec::new();
    while !invite.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await.expect("INVITE").expect("read");
        invite.extend_from_slice(&buf[..n]);
    }
    let body_len = 5; // "v=0\r\n"
    let head_end = invite.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
    while invite.len() < head_end + body_len {
        let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await.expect("body").expect("read");
        invite.extend_from_slice(&buf[..n]);
    }
    conn.write_all(b"\r\n\r\n").await.expect("ping");
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await.expect("a pong").expect("read");
    assert_eq!(&buf[..n], b"\r\n", "a single CRLF pong");
    ua.shutdown().await;
}
