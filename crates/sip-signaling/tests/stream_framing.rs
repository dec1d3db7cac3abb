//! A stream connection that sends what cannot be framed (a Content-Length beyond the message
//! limit) is closed (on a stream, RFC 3261 §18.3 leaves Content-Length the only boundary), and
//! nothing it sends afterwards is read as a message: the "body" of a lying Content-Length can
//! never be smuggled in as a message of its own.

mod common;

use common::wire::{dial_over_tcp, read_message, response};
use common::{ok_with_sdp, respond, Harness};
use sip_signaling::driver::DriverConfig;
use sip_signaling::{CallEvent, Transport};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A provisional response whose Content-Length is beyond any message we take.
fn unframeable(invite: &sip_signaling::Message) -> Vec<u8> {
    let mut trying = respond(invite, 100, "Trying", None).to_bytes();
    let head = String::from_utf8_lossy(&trying).replace("Content-Length: 0", "Content-Length: 99999999");
    trying = head.into_bytes();
    trying
}

#[test]
fn an_unframeable_stream_is_closed_and_what_follows_on_it_is_ignored() {
    let mut h = Harness::new(Transport::Tcp);
    let _call = h.dial("sip:far@example.com;transport=tcp");
    let invite = h.sent_one();
    let peer = h.peer();
    let bad = unframeable(&invite);
    assert!(String::from_utf8_lossy(&bad).contains("Content-Length: 99999999"));
    h.ua.handle_stream_input(h.now, peer.clone(), 9, &bad);
    assert_eq!(h.ua.poll_close(), Some((peer.clone(), 9)), "the connection is to be closed");
    assert_eq!(h.ua.poll_close(), None);

    // What would have been that response's "body": a 200 of its own. Ignored.
    let ok = ok_with_sdp(&invite, "far1").to_bytes();
    h.ua.handle_stream_input(h.now, peer.clone(), 9, &ok);
    assert!(h.events().iter().all(|e| !matches!(e, CallEvent::Answered { .. })), "nothing read from a refused stream");
    assert!(h.sent().is_empty(), "no ACK for a smuggled 200");

    // Once the connection is gone, the same bytes on a new one are a message like any other.
    h.ua.forget_stream(&peer, 9);
    h.ua.handle_stream_input(h.now, peer.clone(), 10, &ok);
    assert!(h.events().iter().any(|e| matches!(e, CallEvent::Answered { .. })), "a new connection is read");
}

/// The same through `handle_input` (connection 0): the address is heard again once its
/// connection is reported closed.
#[test]
fn handle_input_streams_are_heard_again_after_their_close() {
    let mut h = Harness::new(Transport::Tcp);
    let _call = h.dial("sip:far@example.com;transport=tcp");
    let invite = h.sent_one();
    let peer = h.peer();
    h.deliver_raw(&unframeable(&invite));
    assert_eq!(h.ua.poll_close(), Some((peer.clone(), 0)));
    let ok = ok_with_sdp(&invite, "far1");
    h.deliver(&ok);
    assert!(h.events().iter().all(|e| !matches!(e, CallEvent::Answered { .. })), "ignored until closed");
    h.ua.handle_connection_closed(h.now, &peer);
    h.events();
    h.sent();
    h.deliver(&ok);
    assert!(h.events().iter().any(|e| matches!(e, CallEvent::Answered { .. })), "heard again after the close");
}

#[tokio::test]
async fn the_driver_closes_a_connection_that_sent_an_unframeable_message() {
    let (ua, _call, mut conn, _listener) =
        dial_over_tcp(DriverConfig { keepalive_interval: None, ..DriverConfig::default() }).await;
    let invite = read_message(&mut conn).await;
    let lying = response(&invite, "100 Trying", None, "", 99_999_999);
    conn.write_all(lying.as_bytes()).await.expect("write");
    // Whatever was still on its way, then the end of the stream.
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway kept the connection open");
    ua.shutdown().await;
}
