//! Connections far ends open to our TCP listener: one IP address gets so many of them at most,
//! so one host cannot take every slot; a place given back is taken again.

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
