//! How long stream connections last and how many there are: one IP address gets so many inbound
//! connections at most (one host cannot take every slot; a place given back is taken again), and a
//! connection we opened is closed once nothing uses its address.

mod common;

use common::wire::{dial_over_tcp, read_message, response, tcp_dial};
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

/// A connection we opened is closed once nothing uses its address (the call it carried failed),
/// and kept while a dialog goes through it, pings or not.
#[tokio::test]
async fn a_connection_we_opened_is_closed_once_nothing_uses_it() {
    use tokio::io::AsyncWriteExt;
    let cfg =
        DriverConfig { keepalive_interval: None, outbound_idle: Duration::from_millis(400), ..DriverConfig::default() };

    // A call refused: its connection is closed soon after.
    let (ua, _refused, mut conn, listener) = dial_over_tcp(cfg).await;
    let port = listener.local_addr().expect("addr").port();
    let invite = read_message(&mut conn).await;
    conn.write_all(response(&invite, "486 Busy Here", Some("busy"), "", 0).as_bytes()).await.expect("486");
    let ack = read_message(&mut conn).await;
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(closed_within(&mut conn, Duration::from_secs(3)).await, "an unused connection stays open");

    // An answered call: its connection stays while the dialog lasts.
    let _answered = ua.call(tcp_dial(port)).await.expect("dial");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connection").expect("accept");
    let invite = read_message(&mut conn).await;
    let contact = format!("Contact: <sip:peer@127.0.0.1:{port};transport=tcp>\r\n");
    conn.write_all(response(&invite, "200 OK", Some("ok"), &contact, 0).as_bytes()).await.expect("200");
    let ack = read_message(&mut conn).await;
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(!closed_within(&mut conn, Duration::from_millis(1500)).await, "a dialog's connection was closed");
    ua.shutdown().await;
}
