//! How long stream connections last and how many there are: one IP address gets so many inbound
//! connections at most (one host cannot take every slot; a place given back is taken again), and a
//! connection we opened is closed once nothing uses its address.

use sip_signaling::driver::{self, DriverConfig};
use sip_signaling::Transport;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Whether the gateway closed `conn` within `wait` (rather than keeping it open).
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(wait, conn.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn one_address_gets_so_many_inbound_connections_at_most() {
    let cfg = DriverConfig { max_inbound_per_address: 2, ..DriverConfig::default() };
    let ua = driver::start(cfg).await.expect("driver");
    let (_, tcp) = *ua.local_addrs().iter().find(|(t, _)| *t == Transport::Tcp).expect("a TCP listener");
    let mut first = TcpStream::connect(tcp).await.expect("connect");
    let mut second = TcpStream::connect(tcp).await.expect("connect");
    let mut third = TcpStream::connect(tcp).await.expect("connect");
    assert!(closed_within(&mut third, Duration::from_secs(3)).await, "the third from one address is closed");
    assert!(!closed_within(&mut first, Duration::from_millis(300)).await, "the first stays");
    assert!(!closed_within(&mut second, Duration::from_millis(300)).await, "the second stays");

    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(tcp).await.expect("connect");
        if !closed_within(&mut again, Duration::from_millis(300)).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed place was never given again");
    }
    ua.shutdown().await;
}

/// Reads one whole SIP message (head and `Content-Length` body) from `conn`.
async fn read_message(conn: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + len {
                return text;
            }
        }
        let n =
            tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await.expect("a message").expect("read");
        assert!(n > 0, "closed mid-message");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A response to `request` (its Via, From, To with `tag`, Call-ID and CSeq).
fn response(request: &str, status: &str, tag: &str, extra: &str) -> String {
    let header =
        |name: &str| request.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap_or_default().to_owned();
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        header("CSeq"),
    )
}

/// A connection we opened is closed once nothing uses its address (the call it carried failed),
/// and kept while a dialog goes through it, pings or not.
#[tokio::test]
async fn a_connection_we_opened_is_closed_once_nothing_uses_it() {
    use sip_signaling::driver::Dial;
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cfg =
        DriverConfig { keepalive_interval: None, outbound_idle: Duration::from_millis(400), ..DriverConfig::default() };
    let ua = driver::start(cfg).await.expect("driver");
    let dial = || Dial {
        uri: format!("sip:peer@127.0.0.1:{port};transport=tcp"),
        sdp: Some(bytes::Bytes::from_static(b"v=0\r\n")),
        ..Dial::default()
    };

    // A call refused: its connection is closed soon after.
    let _refused = ua.call(dial()).await.expect("dial");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connection").expect("accept");
    let invite = read_message(&mut conn).await;
    conn.write_all(response(&invite, "486 Busy Here", "busy", "").as_bytes()).await.expect("486");
    let ack = read_message(&mut conn).await;
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(closed_within(&mut conn, Duration::from_secs(3)).await, "an unused connection stays open");

    // An answered call: its connection stays while the dialog lasts.
    let _answered = ua.call(dial()).await.expect("dial");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connection").expect("accept");
    let invite = read_message(&mut conn).await;
    let contact = format!("Contact: <sip:peer@127.0.0.1:{port};transport=tcp>\r\n");
    conn.write_all(response(&invite, "200 OK", "ok", &contact).as_bytes()).await.expect("200");
    let ack = read_message(&mut conn).await;
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(!closed_within(&mut conn, Duration::from_millis(1500)).await, "a dialog's connection was closed");
    ua.shutdown().await;
}
