//! The gateway binary end to end: a REST dial answered by sipp, and every call event and session
//! event at the project's callback URL, in order per call, through failures, a restart and a
//! shutdown with a call in progress.

mod common;

use std::time::{Duration, Instant};

use common::*;
use session::jwt::UnverifiedJwt;

/// A call answered and hung up by the far end: five call events and the SIP connection's four
/// session events arrive, in order, signed; the metrics count the call.
#[test]
fn call_events_reach_the_callback_url_in_order() {
    let started = Instant::now();
    let receiver = Receiver::start(0);
    let dir = temp_dir("events");
    let mut gw = Gateway::start(&config(&dir, &receiver.url(), "41000-41199", &[]));
    let session = gw.create_session();
    let _sipp = Sipp::start("remote_bye");
    let answer = gw.dial(&session, &_sipp.uri("alice"));
    let (id, connection) = (answer["id"].as_str().expect("id"), answer["connectionId"].as_str().expect("cid"));
    let got =
        receiver.wait_for(Duration::from_secs(30), "every event of the call", |g| call_complete(g, id, connection));
    assert_eq!(call_events(&got, id), CALL_EVENTS, "call events in order");
    assert_eq!(connection_events(&got, connection), CONNECTION_EVENTS, "session events in order");
    for r in &got {
        let b = &r.body;
        assert_eq!(b["sessionId"], session.as_str(), "{b}");
        assert_eq!(b["projectId"], KEY, "{b}");
        assert!(b["timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "timestamp in ms: {b}");
        // Signed with the project's callback secret.
        let auth = r.authorization.as_deref().expect("Authorization on a signed callback");
        UnverifiedJwt::decode(auth).and_then(|j| j.verify_hs256(CALLBACK_SECRET.as_bytes())).expect("valid signature");
    }
    let created = got.iter().find(|r| r.body["event"] == "callCreated").expect("callCreated");
    assert_eq!(created.body["call"]["connectionId"], connection);
    let conn = got.iter().find(|r| r.body["event"] == "connectionCreated").expect("connectionCreated");
    assert_eq!(conn.body["connection"]["data"], "dialled-by-test");
    let stream = got.iter().find(|r| r.body["event"] == "streamCreated").expect("streamCreated");
    assert_eq!(stream.body["stream"]["id"], answer["streamId"]);
    assert_eq!(gw.metric("gateway_call_setups_total"), Some(1.0));
    assert_eq!(gw.metric("gateway_calls_ended_total{reason_code=\"700\"}"), Some(1.0));
    eventually(Duration::from_secs(5), "no active call, an empty backlog, nine events delivered", || {
        let idle = gw.metric("gateway_calls_active") == Some(0.0);
        let empty = gw.metric("gateway_callbacks_backlog") == Some(0.0);
        let delivered = gw.metric("gateway_callbacks_delivered_total").is_some_and(|n| n >= 9.0);
        (idle && empty && delivered).then_some(())
    });
    let status = gw.terminate();
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
    let logs = gw.logs();
    assert!(!logs.contains(SECRET) && !logs.contains(CALLBACK_SECRET), "a secret in the logs:\n{logs}");
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("call_events_reach_the_callback_url_in_order: {:?}", started.elapsed());
}

/// A receiver that answers 500 to its first requests still gets every event, once, in order.
#[test]
fn a_failing_receiver_gets_every_event_in_the_end() {
    let started = Instant::now();
    let receiver = Receiver::start(6);
    let dir = temp_dir("retries");
    let mut gw = Gateway::start(&config(&dir, &receiver.url(), "41200-41399", &[]));
    let session = gw.create_session();
    let sipp = Sipp::start("remote_bye");
    let answer = gw.dial(&session, &sipp.uri("bob"));
    let (id, connection) = (answer["id"].as_str().expect("id"), answer["connectionId"].as_str().expect("cid"));
    let got = receiver
        .wait_for(Duration::from_secs(30), "every event despite the 500s", |g| call_complete(g, id, connection));
    assert_eq!(call_events(&got, id), CALL_EVENTS);
    assert_eq!(connection_events(&got, connection), CONNECTION_EVENTS);
    assert_eq!(receiver.refused(), 6, "the first six requests were refused");
    assert!(gw.metric("gateway_callbacks_failed_attempts_total").is_some_and(|n| n >= 6.0));
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.logs());
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("a_failing_receiver_gets_every_event_in_the_end: {:?}", started.elapsed());
}

/// Events not delivered when the gateway stops (the receiver refuses connections) stay in the
/// store; the next start with the same store delivers every one of them, none lost, none twice.
#[test]
fn undelivered_events_survive_a_restart() {
    let started = Instant::now();
    let port = free_port(); // nothing listens here yet: connection refused
    let url = format!("http://127.0.0.1:{port}/callbacks");
    let dir = temp_dir("restart");
    let cfg = config(&dir, &url, "41400-41599", &[]);
    let mut first = Gateway::start(&cfg);
    let session = first.create_session();
    let sipp = Sipp::start("remote_bye");
    let answer = first.dial(&session, &sipp.uri("carol"));
    let (id, connection) = (answer["id"].as_str().expect("id"), answer["connectionId"].as_str().expect("cid"));
    eventually(Duration::from_secs(30), "the call's end", || {
        (first.metric("gateway_calls_ended_total{reason_code=\"700\"}") == Some(1.0)).then_some(())
    });
    eventually(Duration::from_secs(10), "nine events queued", || {
        (first.metric("gateway_callbacks_backlog") == Some(9.0)).then_some(())
    });
    eventually(Duration::from_secs(5), "a failed delivery attempt", || {
        first.metric("gateway_callbacks_failed_attempts_total").filter(|n| *n >= 1.0)
    });
    assert_eq!(first.terminate().code(), Some(0), "{}", first.logs());
    assert!(first.output().contains("9 callback event(s) stay queued"), "{}", first.output());

    let receiver = Receiver::start_on(port, 0);
    let mut second = Gateway::start(&cfg);
    let got =
        receiver.wait_for(Duration::from_secs(30), "the events of the first run", |g| call_complete(g, id, connection));
    assert_eq!(call_events(&got, id), CALL_EVENTS);
    assert_eq!(connection_events(&got, connection), CONNECTION_EVENTS);
    // Nothing else arrives (no duplicates).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.accepted().len(), 9, "{:?}", receiver.accepted());
    eventually(Duration::from_secs(5), "an empty backlog", || {
        (second.metric("gateway_callbacks_backlog") == Some(0.0)).then_some(())
    });
    assert_eq!(second.terminate().code(), Some(0), "{}", second.logs());
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("undelivered_events_survive_a_restart: {:?}", started.elapsed());
}

/// SIGTERM with a call in progress: the far end gets a BYE (sipp's `answer` scenario needs it to
/// succeed), the call's last events are delivered, and the gateway exits 0.
#[test]
fn sigterm_hangs_up_a_call_in_progress() {
    let started = Instant::now();
    let receiver = Receiver::start(0);
    let dir = temp_dir("sigterm");
    let mut gw = Gateway::start(&config(&dir, &receiver.url(), "41600-41799", &[]));
    let session = gw.create_session();
    let mut sipp = Sipp::start("answer");
    let answer = gw.dial(&session, &sipp.uri("dave"));
    let id = answer["id"].as_str().expect("id").to_owned();
    receiver.wait_for(Duration::from_secs(20), "the call answered", |g| {
        call_events(g, &id).iter().any(|e| e == "callUpdated:ACTIVE")
    });
    assert_eq!(gw.metric("gateway_calls_active"), Some(1.0));
    let stopping = Instant::now();
    let status = gw.terminate();
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
    let sipp_status = sipp.wait(Duration::from_secs(10)).expect("sipp ends after the BYE");
    assert!(sipp_status.success(), "sipp did not see its BYE: {sipp_status:?}");
    let got = receiver.accepted();
    assert_eq!(call_events(&got, &id), CALL_EVENTS, "the last events were flushed before the exit");
    assert!(gw.output().contains("shutting down (SIGTERM)"), "{}", gw.output());
    eprintln!("sigterm_hangs_up_a_call_in_progress: {:?} (shutdown {:?})", started.elapsed(), stopping.elapsed());
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGTERM while a call waits for its far end's first answer: its CANCEL must wait for a
/// provisional response (RFC 3261 §9.1), which never comes. The shutdown does not wait Timer B's
/// 32 s for it: after `timeouts.shutdown_calls` the call ends as the shutdown's, and its last
/// events are delivered before the exit.
#[test]
fn sigterm_ends_a_call_whose_far_end_never_answers() {
    let receiver = Receiver::start(0);
    let dir = temp_dir("sigterm-silent");
    // A far end that takes the INVITE and says nothing.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let port = silent.local_addr().expect("addr").port();
    let cfg = config(&dir, &receiver.url(), "42100-42199", &[("timeouts.shutdown_calls", "\"1s\"")]);
    let mut gw = Gateway::start(&cfg);
    let session = gw.create_session();
    let answer = gw.dial(&session, &format!("sip:mute@127.0.0.1:{port}"));
    let id = answer["id"].as_str().expect("id").to_owned();
    let mut buf = [0u8; 4096];
    let (n, _) = silent.recv_from(&mut buf).expect("the INVITE");
    assert!(buf[..n].starts_with(b"INVITE "), "{}", String::from_utf8_lossy(&buf[..n]));
    let stopping = Instant::now();
    assert_eq!(gw.terminate().code(), Some(0), "{}", gw.logs());
    assert!(stopping.elapsed() < Duration::from_secs(15), "no wait for Timer B: {:?}", stopping.elapsed());
    let events = call_events(&receiver.accepted(), &id);
    assert_eq!(events.first().map(String::as_str), Some("callCreated"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
    let _ = std::fs::remove_dir_all(dir);
}
