//! A far end over real loopback TCP for the driver's tests: it accepts the connection a dial
//! opens, reads whole messages and answers them.

use bytes::Bytes;
use sip_signaling::driver::{self, Call, Dial, DriverConfig, SipHandle};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A driver started with `config` dialling a far end on a loopback TCP port (its INVITE offering
/// `v=0`), and the connection that far end accepted.
pub async fn dial_over_tcp(config: DriverConfig) -> (SipHandle, Call, TcpStream, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ua = driver::start(config).await.expect("driver");
    let call = ua.call(tcp_dial(port)).await.expect("dial");
    let (conn, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("connection").expect("accept");
    (ua, call, conn, listener)
}

/// A dial of `sip:peer@127.0.0.1:{port};transport=tcp` with a minimal offer.
pub fn tcp_dial(port: u16) -> Dial {
    Dial {
        uri: format!("sip:peer@127.0.0.1:{port};transport=tcp"),
        sdp: Some(Bytes::from_static(b"v=0\r\n")),
        ..Dial::default()
    }
}

/// Reads one whole SIP message (head and `Content-Length` body) from `conn`.
pub async fn read_message(conn: &mut TcpStream) -> String {
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

/// A response to `request` (its Via, From, To with `tag` when given, Call-ID and CSeq), with
/// `extra` header lines and the `Content-Length` given.
pub fn response(request: &str, status: &str, tag: Option<&str>, extra: &str, content_length: u64) -> String {
    let header =
        |name: &str| request.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap_or_default().to_owned();
    let to = match tag {
        Some(tag) => format!("{};tag={tag}", header("To")),
        None => header("To"),
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {content_length}\r\n\r\n",
        header("Via"),
        header("From"),
        header("Call-ID"),
        header("CSeq"),
    )
}
