//! RFC 5626 keep-alives on a TCP connection we opened: we ping (CRLFCRLF)
//! when idle, and answer the peer's ping with a pong (CRLF).

mod common;

use common::wire::{dial_over_tcp, read_message};
use sip_signaling::driver::DriverConfig;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn pings_when_idle_and_pongs_to_pings() {
    let cfg = DriverConfig { keepalive_interval: Some(Duration::from_millis(200)), ..DriverConfig::default() };
    let (ua, _call, mut conn, _listener) = dial_over_tcp(cfg).await;
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
    let (ua, _call, mut conn, _listener) =
        dial_over_tcp(DriverConfig { keepalive_interval: None, ..DriverConfig::default() }).await;
    let _invite = read_message(&mut conn).await;
    conn.write_all(b"\r\n\r\n").await.expect("ping");
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await.expect("a pong").expect("read");
    assert_eq!(&buf[..n], b"\r\n", "a single CRLF pong");
    ua.shutdown().await;
}
