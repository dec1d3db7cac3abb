//! The driver under a flood of requests that belong to nothing of ours:
//! every one is answered statelessly or dropped, and no state grows.

use sip_signaling::driver::{self, DriverConfig};
use sip_signaling::Transport;
use std::time::Duration;

#[tokio::test]
async fn stray_flood_creates_no_state() {
    let ua = driver::start(DriverConfig::default()).await.expect("driver");
    let addr = ua.local_addrs().iter().find(|(t, _)| *t == Transport::Udp).map(|(_, a)| *a).expect("udp");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let methods = ["INVITE", "OPTIONS", "BYE", "REGISTER", "SUBSCRIBE", "FOO"];
    let total = 20_000u64;
    for n in 0..total {
        let m = methods[(n % 6) as usize];
        let msg = if n % 10 == 9 {
            format!("{m} garbage {n}\r\n\r\n")
        } else {
            format!(
                "{m} sip:gw@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKf{n}\r\nFrom: <sip:x@y>;tag=f{n}\r\n\
To: <sip:gw@{addr}>\r\nCall-ID: flood{n}\r\nCSeq: {n} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        sock.send_to(msg.as_bytes(), addr).await.expect("send");
        if n % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Let the driver drain its socket buffer.
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = ua.stats().await.expect("stats");
        let seen = s.ua.rejected + s.ua.dropped + s.ua.malformed;
        if seen == last && seen > 0 {
            break;
        }
        last = seen;
    }
    let s = ua.stats().await.expect("stats");
    assert_eq!(s.calls, 0);
    assert_eq!(s.transactions, 0, "stray requests must not create transactions: {s:?}");
    assert!(s.ua.malformed > 0 && s.ua.rejected > 0, "{s:?}");
    // Datagrams beyond the socket buffer may be lost by the kernel, but
    // everything that arrived was accounted for.
    assert!(s.ua.rejected + s.ua.dropped + s.ua.malformed <= total);
    ua.shutdown().await;
}
