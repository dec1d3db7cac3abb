//! The HTTP front's own limits, over real connections: a request's head and body must arrive in
//! time (a client sending a byte a minute cannot hold a connection), and only so many connections
//! are served at once (the next one is answered 503 and closed).

mod common;

use rest_api::ApiConfig;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads until the server closes the connection (or `limit` passes: then `None`).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<String> {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        // A reset is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_or_body_or_an_idle_connection_is_not_kept() {
    let config = ApiConfig { request_timeout: Duration::from_millis(300), ..ApiConfig::default() };
    let (_api, port) = common::start_with(config).await;
    tokio::task::spawn_blocking(move || {
        // Half a request head, then nothing: closed at the timeout.
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /v2/project/4615002 HTTP/1.1\r\nHost: x\r\n").expect("write");
        let out = read_until_closed(&mut s, Duration::from_secs(5)).expect("the half-sent head is closed");
        assert!(!out.starts_with("HTTP/1.1 2"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

        // A whole head, part of its body: 408.
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"POST /session/create HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\np2p").expect("write");
        let out = read_until_closed(&mut s, Duration::from_secs(5)).expect("the slow body is answered");
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");

        // Nothing at all on a fresh connection, or after a first request on a kept-alive one.
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        read_until_closed(&mut s, Duration::from_secs(5)).expect("an idle new connection is closed");
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let out = read_until_closed(&mut s, Duration::from_secs(5)).expect("an idle kept-alive connection is closed");
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    })
    .await
    .expect("client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_a_503_and_a_freed_place_is_taken_again() {
    let config = ApiConfig { max_connections: 2, ..ApiConfig::default() };
    let (_api, port) = common::start_with(config).await;
    tokio::task::spawn_blocking(move || {
        let first = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _second = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut third = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let out = read_until_closed(&mut third, Duration::from_secs(5)).expect("the third is closed");
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.contains("Retry-After: 1"), "{out}");

        // The first leaves: its place is served again (once the server has seen it go).
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
            let out = read_until_closed(&mut s, Duration::from_secs(5)).expect("answered");
            if out.starts_with("HTTP/1.1 404") {
                break;
            }
            assert!(out.starts_with("HTTP/1.1 503"), "{out}");
            assert!(Instant::now() < deadline, "the freed place was never served again");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("client");
}

/// A signalling WebSocket counts among the connections until its participant has had its time to
/// join: sockets that never join cannot be opened without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_yet_to_join_count_among_the_connections() {
    let config = ApiConfig { max_connections: 3, ..ApiConfig::default() };
    let (_api, port) = common::start_with(config).await;
    tokio::task::spawn_blocking(move || {
        let upgrade = b"GET /rtc/v1/signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut sockets = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(upgrade).expect("write");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut head = [0u8; 12];
            s.read_exact(&mut head).expect("the upgrade's answer");
            assert_eq!(&head, b"HTTP/1.1 101", "{}", String::from_utf8_lossy(&head));
            sockets.push(s);
        }
        // Two sockets that have not joined hold two places: one connection more is served, the
        // next is refused (once the upgrades' own HTTP connections are gone).
        std::thread::sleep(Duration::from_millis(200));
        let deadline = Instant::now() + Duration::from_secs(5);
        let _third = loop {
            let third = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let mut fourth = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            match read_until_closed(&mut fourth, Duration::from_millis(500)) {
                Some(out) if out.starts_with("HTTP/1.1 503") => break third,
                _ => assert!(Instant::now() < deadline, "a fourth connection was served"),
            }
        };
        let mut fifth = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let out = read_until_closed(&mut fifth, Duration::from_secs(5)).expect("refused");
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    })
    .await
    .expect("client");
}
