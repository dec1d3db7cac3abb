//! The session routes of contract §5 (streams, signals, force disconnect, force mute) against
//! sessions populated through the service API, their effects observed through the service's
//! events: raw requests for every status the contract names, and the real Python SDK.

mod common;

use common::{
    app_private_key_file, request, rest_jwt, sdk_script, start, Reply, APP_ID, KEY, OTHER_KEY, OTHER_SECRET, SECRET,
};
use rand::thread_rng;
use serde_json::{json, Value};
use session::room::unix_ms;
use session::service::SessionService;
use session::{
    Connection, ConnectionKind, DisconnectReason, Event, EventKind, MediaMode, MuteTarget, SessionId, Stream,
    StreamEndReason, StreamId, StreamSpec, VideoType,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

/// A routed session with Alice (a client publishing a camera with audio) and Bob (a SIP call
/// publishing audio only).
struct Live {
    sid: SessionId,
    alice: Connection,
    bob: Connection,
    camera: Stream,
    mic: Stream,
}

/// A routed session of `project` created here, with nobody in it.
fn new_session(service: &SessionService, project: &str) -> SessionId {
    let project = service.with_projects(|p| p.get(project).map(|p| p.id().clone())).expect("configured project");
    service.create_session(&project, MediaMode::Routed, None, SystemTime::now())
}

fn publish(service: &SessionService, connection: &Connection, id: StreamId, name: &str, video: bool) -> Stream {
    let spec = StreamSpec {
        name: name.into(),
        has_audio: true,
        has_video: video,
        video_type: video.then_some(VideoType::Camera),
    };
    service.publish_external(&connection.id, id, spec, Vec::new()).expect("publish").0
}

fn live(service: &SessionService, project: &str) -> Live {
    let sid = new_session(service, project);
    let alice = service.connect_external(&sid, ConnectionKind::Client, "alice".into()).expect("alice");
    let bob = service.connect_external(&sid, ConnectionKind::Sip, "bob".into()).expect("bob");
    let camera = publish(service, &alice, StreamId::random(&mut thread_rng()), "Alice", true);
    let mic = publish(service, &bob, StreamId::random(&mut thread_rng()), "Bob", false);
    Live { sid, alice, bob, camera, mic }
}

/// `/v2/project/{KEY}/session/{sid}{rest}`.
fn path(sid: &SessionId, rest: &str) -> String {
    format!("/v2/project/{KEY}/session/{sid}{rest}")
}

/// An authenticated request for KEY; with a body, labelled `application/json`.
async fn send(port: u16, method: &str, path: &str, body: Option<&str>) -> Reply {
    let token = rest_jwt(SECRET, KEY);
    let mut headers = vec![("X-OPENTOK-AUTH", token.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(port, method, path, &headers, body.unwrap_or("")).await
}

/// Asserts a JSON answer with this status and a Content-Type of exactly `application/json`.
fn json_of(reply: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"), "{what}: {reply:?}");
    reply.json()
}

/// Asserts a 204 with no body and no Content-Type.
fn assert_no_content(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 204, "{what}: {reply:?}");
    assert!(reply.head.starts_with("HTTP/1.1 204 No Content"), "{what}: {reply:?}");
    assert_eq!(reply.header("content-type"), None, "{what}: {reply:?}");
    assert!(reply.header("content-length").is_none_or(|l| l == "0"), "{what}: {reply:?}");
    assert_eq!(reply.body, "", "{what}: {reply:?}");
}

/// Asserts the project JSON of the mute answers, `createdAt` within `[since, now]`.
fn assert_project_json(reply: &Reply, since_ms: u64, what: &str) {
    let v = json_of(reply, 200, what);
    let created = v["createdAt"].as_u64().unwrap_or_else(|| panic!("{what}: createdAt is a number: {v}"));
    assert!(since_ms <= created && created <= unix_ms(SystemTime::now()), "{what}: createdAt {created}");
    assert_eq!(
        v,
        json!({"id": KEY, "secret": "", "status": "ACTIVE", "name": "", "environment": "standard", "createdAt": created}),
        "{what}"
    );
}

/// The next event `keep` accepts (others are skipped); fails after 5 s.
async fn next_event(
    rx: &mut UnboundedReceiver<Arc<Event>>,
    what: &str,
    mut keep: impl FnMut(&Event) -> bool,
) -> Arc<Event> {
    let wait = async {
        loop {
            let e = rx.recv().await.expect("the service is running");
            if keep(&e) {
                return e;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap_or_else(|_| panic!("no {what} event"))
}

/// Every event received so far.
fn drain(rx: &mut UnboundedReceiver<Arc<Event>>) -> Vec<Arc<Event>> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// What the tests compare of an event: signals, force mutes and departures, as JSON.
fn summary(e: &Event) -> Option<Value> {
    let ids = |v: &[StreamId]| v.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>();
    Some(match &e.kind {
        EventKind::Signal { from, to, signal_type, data } => json!({"signal": {
            "from": from.as_ref().map(|f| f.as_str()), "to": to.as_ref().map(|t| t.as_str()),
            "type": signal_type, "data": data}}),
        EventKind::MuteForced { target: MuteTarget::Stream(s), muted } => {
            json!({"mute_stream": s.as_str(), "muted": ids(muted)})
        }
        EventKind::MuteForced { target: MuteTarget::Session { active, excluded }, muted } => {
            json!({"mute_all": active, "excluded": ids(excluded), "muted": ids(muted)})
        }
        EventKind::StreamDestroyed { stream, reason, .. } => {
            json!({"stream_destroyed": stream.id.as_str(), "reason": reason.as_wire()})
        }
        EventKind::ConnectionDestroyed { connection, reason } => {
            json!({"connection_destroyed": connection.id.as_str(), "reason": reason.as_wire()})
        }
        _ => return None,
    })
}

/// The summaries of the session's events received so far.
fn summaries(rx: &mut UnboundedReceiver<Arc<Event>>, sid: &SessionId) -> Vec<Value> {
    drain(rx).iter().filter(|e| &e.session == sid).filter_map(|e| summary(e)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_listed_and_fetched() {
    let (api, port) = start().await;
    let service = api.service();
    let s = live(service, KEY);
    let camera = json!({"id": s.camera.id.as_str(), "videoType": "camera", "name": "Alice", "layoutClassList": []});
    let mic = json!({"id": s.mic.id.as_str(), "name": "Bob", "layoutClassList": []});

    let list = send(port, "GET", &path(&s.sid, "/stream"), None).await;
    assert_eq!(json_of(&list, 200, "list"), json!({"count": 2, "items": [camera, mic]}));
    let list = send(port, "GET", &path(&s.sid, "/stream/"), None).await;
    assert_eq!(json_of(&list, 200, "trailing slash")["count"], 2);
    let one = send(port, "GET", &path(&s.sid, &format!("/stream/{}", s.camera.id)), None).await;
    assert_eq!(json_of(&one, 200, "camera"), camera);
    let one = send(port, "GET", &path(&s.sid, &format!("/stream/{}", s.mic.id)), None).await;
    assert_eq!(json_of(&one, 200, "audio-only: no videoType"), mic);

    // A session created here with nobody in it has no streams.
    let empty = new_session(service, KEY);
    let list = send(port, "GET", &path(&empty, "/stream"), None).await;
    assert_eq!(json_of(&list, 200, "empty session"), json!({"count": 0, "items": []}));

    // Unknown streams and sessions, and those of another session or project.
    let other = live(service, KEY);
    let foreign = new_session(service, OTHER_KEY);
    let never_created = {
        let project = service.with_projects(|p| p.get(KEY).map(|p| p.id().clone())).expect("project");
        SessionId::mint(&project, None, SystemTime::now(), &mut thread_rng())
    };
    for (p, what) in [
        (path(&s.sid, "/stream/00000000-0000-4000-8000-000000000000"), "unknown stream"),
        (path(&s.sid, &format!("/stream/{}", other.camera.id)), "a stream of another session"),
        (path(&empty, &format!("/stream/{}", s.camera.id)), "a stream in an empty session"),
        (path(&never_created, "/stream"), "a session never created here"),
        (path(&foreign, "/stream"), "a session of another project"),
        (format!("/v2/project/{KEY}/session/not-a-session-id/stream"), "garbage session id"),
    ] {
        send(port, "GET", &p, None).await.assert_error(404, what);
    }
    // The other project sees its own session, not ours.
    let token = rest_jwt(OTHER_SECRET, OTHER_KEY);
    let as_other = |p: String| {
        let token = token.clone();
        async move { request(port, "GET", &p, &[("X-OPENTOK-AUTH", token.as_str())], "").await }
    };
    let r = as_other(format!("/v2/project/{OTHER_KEY}/session/{foreign}/stream")).await;
    assert_eq!(json_of(&r, 200, "own session")["count"], 0);
    as_other(format!("/v2/project/{OTHER_KEY}/session/{}/stream", s.sid)).await.assert_error(404, "KEY's session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_their_addressees_within_the_limits() {
    let (api, port) = start().await;
    let service = api.service();
    let s = live(service, KEY);
    let other = live(service, KEY);
    let mut rx = service.subscribe();
    let signal = path(&s.sid, "/signal");
    let to_alice = path(&s.sid, &format!("/connection/{}/signal", s.alice.id));

    let r = send(port, "POST", &signal, Some(r#"{"type": "chat", "data": "hello everyone"}"#)).await;
    assert_no_content(&r, "signal to all");
    let r = send(port, "POST", &to_alice, Some(r#"{"type": "private", "data": "hello alice"}"#)).await;
    assert_no_content(&r, "signal to one");
    // The limits are in bytes, inclusive: 128 bytes of type (64 two-byte characters), 8 KiB of data.
    let (t128, d8192) = ("é".repeat(64), "x".repeat(8192));
    let body = json!({"type": t128, "data": d8192}).to_string();
    assert_no_content(&send(port, "POST", &signal, Some(&body)).await, "at the limits");
    // No type at all is an empty type.
    assert_no_content(&send(port, "POST", &to_alice, Some(r#"{"data": "untyped"}"#)).await, "no type");
    assert_eq!(
        summaries(&mut rx, &s.sid),
        vec![
            json!({"signal": {"from": null, "to": null, "type": "chat", "data": "hello everyone"}}),
            json!({"signal": {"from": null, "to": s.alice.id.as_str(), "type": "private", "data": "hello alice"}}),
            json!({"signal": {"from": null, "to": null, "type": t128, "data": d8192}}),
            json!({"signal": {"from": null, "to": s.alice.id.as_str(), "type": "", "data": "untyped"}}),
        ]
    );

    // Too large: 413, whichever route.
    for (body, target, what) in [
        (json!({"type": "a".repeat(129), "data": "x"}), &signal, "type of 129 bytes"),
        (json!({"type": "é".repeat(65), "data": "x"}), &signal, "type of 65 two-byte characters"),
        (json!({"type": "t", "data": "x".repeat(8193)}), &signal, "data of 8193 bytes"),
        (json!({"type": "t", "data": "x".repeat(8193)}), &to_alice, "data of 8193 bytes to one"),
    ] {
        send(port, "POST", target, Some(&body.to_string())).await.assert_error(413, what);
    }
    // Not JSON, or the wrong types: 400.
    for (body, what) in [
        ("{", "invalid JSON"),
        ("", "empty body"),
        ("[]", "not an object"),
        (r#"{"type": 1, "data": "x"}"#, "numeric type"),
        (r#"{"type": "t"}"#, "no data"),
        (r#"{"type": "t", "data": null}"#, "null data"),
        (r#"{"type": "t", "data": {"a": 1}}"#, "object data"),
        ("{\"type\": \"a\\nb\", \"data\": \"x\"}", "control character in type"),
    ] {
        send(port, "POST", &signal, Some(body)).await.assert_error(400, what);
    }
    // Unknown addressees: 404.
    let empty = new_session(service, KEY);
    for (p, what) in [
        (path(&s.sid, "/connection/00000000-0000-4000-8000-000000000000/signal"), "unknown connection"),
        (path(&s.sid, &format!("/connection/{}/signal", other.alice.id)), "a connection of another session"),
        (path(&empty, &format!("/connection/{}/signal", s.alice.id)), "a connection in an empty session"),
        (format!("/v2/project/{KEY}/session/1_bm9wZQ/signal"), "unknown session"),
    ] {
        send(port, "POST", &p, Some(r#"{"type": "t", "data": "x"}"#)).await.assert_error(404, what);
    }
    // A session that exists but has nobody in it: the signal reaches nobody, which is fine.
    let r = send(port, "POST", &path(&empty, "/signal"), Some(r#"{"type": "t", "data": "x"}"#)).await;
    assert_no_content(&r, "signal to an empty session");
    assert_eq!(summaries(&mut rx, &s.sid), Vec::<Value>::new(), "refused signals were not sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_disconnect_is_204_with_no_body() {
    let (api, port) = start().await;
    let service = api.service();
    let s = live(service, KEY);
    let other = live(service, KEY);
    let mut rx = service.subscribe();
    let bob = path(&s.sid, &format!("/connection/{}", s.bob.id));

    // A connection of another session is not found through this one.
    send(port, "DELETE", &path(&other.sid, &format!("/connection/{}", s.bob.id)), None)
        .await
        .assert_error(404, "a connection of another session");
    // As the SDKs send it: empty body, JSON Content-Type.
    // A tap on Bob's stream (as the bridge's video hub holds one) ends with the stream.
    let (_, mut tap) = service.tap(&s.mic.id).expect("tap");
    let token = rest_jwt(SECRET, KEY);
    let headers = [("X-OPENTOK-AUTH", token.as_str()), ("Content-Type", "application/json")];
    let r = request(port, "DELETE", &bob, &headers, "").await;
    assert_no_content(&r, "force disconnect");
    let ended = tokio::time::timeout(Duration::from_secs(2), tap.recv()).await;
    assert!(matches!(ended, Ok(None)), "the tap's channel closes with its stream");
    assert_eq!(
        summaries(&mut rx, &s.sid),
        vec![
            json!({"stream_destroyed": s.mic.id.as_str(), "reason": "forceDisconnected"}),
            json!({"connection_destroyed": s.bob.id.as_str(), "reason": "forceDisconnected"}),
        ]
    );
    assert!(service.connection(&s.sid, &s.bob.id).is_none());
    assert_eq!(service.streams(&s.sid).len(), 1);
    assert!(service.connection(&other.sid, &other.bob.id).is_some(), "the other session is untouched");

    send(port, "DELETE", &bob, None).await.assert_error(404, "already gone");
    send(port, "DELETE", &path(&s.sid, "/connection/00000000-0000-4000-8000-000000000000"), None)
        .await
        .assert_error(404, "unknown connection");
    // Without a Content-Type too.
    let r = send(port, "DELETE", &path(&s.sid, &format!("/connection/{}", s.alice.id)), None).await;
    assert_no_content(&r, "no Content-Type");
    let e = next_event(&mut rx, "alice leaving", |e| matches!(e.kind, EventKind::ConnectionDestroyed { .. })).await;
    assert!(
        matches!(&e.kind, EventKind::ConnectionDestroyed { connection, reason: DisconnectReason::ForceDisconnected }
        if connection.id == s.alice.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_mute_of_one_stream() {
    let since = unix_ms(SystemTime::now());
    let (api, port) = start().await;
    let service = api.service();
    let s = live(service, KEY);
    let mut rx = service.subscribe();

    // Empty body with a JSON Content-Type, as the Python SDK sends it.
    let token = rest_jwt(SECRET, KEY);
    let headers = [("X-OPENTOK-AUTH", token.as_str()), ("Content-Type", "application/json")];
    let r = request(port, "POST", &path(&s.sid, &format!("/stream/{}/mute", s.camera.id)), &headers, "").await;
    assert_project_json(&r, since, "mute the camera");
    let r = send(port, "POST", &path(&s.sid, &format!("/stream/{}/mute", s.mic.id)), Some("{}")).await;
    assert_project_json(&r, since, "mute the mic with {}");
    assert_eq!(
        summaries(&mut rx, &s.sid),
        vec![
            json!({"mute_stream": s.camera.id.as_str(), "muted": [s.camera.id.as_str()]}),
            json!({"mute_stream": s.mic.id.as_str(), "muted": [s.mic.id.as_str()]}),
        ]
    );
    assert!(service.streams(&s.sid).iter().all(|st| st.audio_muted));

    let empty = new_session(service, KEY);
    for (p, what) in [
        (path(&s.sid, "/stream/00000000-0000-4000-8000-000000000000/mute"), "unknown stream"),
        (path(&empty, &format!("/stream/{}/mute", s.camera.id)), "a stream in an empty session"),
        (format!("/v2/project/{KEY}/session/1_bm9wZQ/stream/{}/mute", s.camera.id), "unknown session"),
    ] {
        send(port, "POST", &p, Some("{}")).await.assert_error(404, what);
    }
    for body in ["{", "[1]", "\"x\""] {
        send(port, "POST", &path(&s.sid, &format!("/stream/{}/mute", s.camera.id)), Some(body))
            .await
            .assert_error(400, body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_all_accepts_every_spelling_and_holds_for_later_streams() {
    let since = unix_ms(SystemTime::now());
    let (api, port) = start().await;
    let service = api.service();
    for key in ["excludedStreamIds", "excludedStreams", "excudedStreamIds"] {
        let s = live(service, KEY);
        let mut rx = service.subscribe();
        // A stream excluded before it is published stays unmuted when it is.
        let later_excluded = StreamId::random(&mut thread_rng());
        let body = json!({"active": true, key: [s.camera.id.as_str(), later_excluded.as_str()]}).to_string();
        assert_project_json(&send(port, "POST", &path(&s.sid, "/mute"), Some(&body)).await, since, key);
        let excluded = [s.camera.id.as_str(), later_excluded.as_str()];
        assert_eq!(
            summaries(&mut rx, &s.sid),
            vec![json!({"mute_all": true, "excluded": excluded, "muted": [s.mic.id.as_str()]})],
            "{key}"
        );
        let muted = |id: &StreamId| service.stream(&s.sid, id).map(|st| st.audio_muted);
        assert_eq!((muted(&s.camera.id), muted(&s.mic.id)), (Some(false), Some(true)), "{key}");

        // While active, a stream published later is muted at once.
        let later = publish(service, &s.alice, StreamId::random(&mut thread_rng()), "later", false);
        assert!(later.audio_muted, "{key}");
        let spared = publish(service, &s.bob, later_excluded.clone(), "spared", false);
        assert!(!spared.audio_muted, "{key}");
        assert_eq!(
            summaries(&mut rx, &s.sid),
            vec![json!({"mute_stream": later.id.as_str(), "muted": [later.id.as_str()]})],
            "{key}"
        );

        // `active: false` ends that (and unmutes nobody).
        let body = json!({"active": false, key: null}).to_string();
        assert_project_json(&send(port, "POST", &path(&s.sid, "/mute"), Some(&body)).await, since, key);
        let after = publish(service, &s.alice, StreamId::random(&mut thread_rng()), "after", false);
        assert!(!after.audio_muted, "{key}");
        assert_eq!(
            summaries(&mut rx, &s.sid),
            vec![json!({"mute_all": false, "excluded": [], "muted": []})],
            "{key}: no mute for the stream published after"
        );
        assert_eq!(muted(&s.mic.id), Some(true), "{key}: still muted");
    }

    // `active` absent means on; the excluded list absent or null means none.
    for body in [r#"{}"#, r#"{"excludedStreamIds": null}"#, r#"{"active": true}"#, ""] {
        let s = live(service, KEY);
        let mut rx = service.subscribe();
        let r = send(port, "POST", &path(&s.sid, "/mute"), Some(body)).await;
        assert_project_json(&r, since, body);
        assert_eq!(
            summaries(&mut rx, &s.sid),
            vec![json!({"mute_all": true, "excluded": [], "muted": [s.camera.id.as_str(), s.mic.id.as_str()]})],
            "{body}"
        );
    }

    let s = live(service, KEY);
    for body in [r#"{"active": "yes"}"#, r#"{"excludedStreams": "x"}"#, r#"{"excludedStreamIds": [1]}"#, "{", "[]"] {
        send(port, "POST", &path(&s.sid, "/mute"), Some(body)).await.assert_error(400, body);
    }
    assert!(service.streams(&s.sid).iter().all(|st| !st.audio_muted), "refused mutes muted nothing");
    // A session with nobody in it: the mute waits for those who join later.
    let empty = new_session(service, KEY);
    let r = send(port, "POST", &path(&empty, "/mute"), Some(r#"{"active": false}"#)).await;
    assert_project_json(&r, since, "ending the mute of an empty session");
    let r = send(port, "POST", &path(&empty, "/mute"), Some(r#"{"active": true}"#)).await;
    assert_project_json(&r, since, "muting an empty session");
    let late = service.connect_external(&empty, ConnectionKind::Sip, "late".into()).expect("join");
    let spec = StreamSpec { name: "late".into(), has_audio: true, has_video: false, video_type: None };
    let (stream, _) =
        service.publish_external(&late.id, StreamId::from_wire("late-stream"), spec, Vec::new()).expect("publish");
    assert!(stream.audio_muted, "a mute set before anyone joined applies to a later stream");
    send(port, "POST", &format!("/v2/project/{KEY}/session/1_bm9wZQ/mute"), Some(r#"{"active": true}"#))
        .await
        .assert_error(404, "unknown session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authentication_failure_is_403() {
    let (api, port) = start().await;
    let service = api.service();
    let s = live(service, KEY);
    let mut rx = service.subscribe();
    let routes = [
        ("GET", path(&s.sid, "/stream"), ""),
        ("GET", path(&s.sid, &format!("/stream/{}", s.camera.id)), ""),
        ("POST", path(&s.sid, "/signal"), r#"{"type": "t", "data": "x"}"#),
        ("POST", path(&s.sid, &format!("/connection/{}/signal", s.alice.id)), r#"{"type": "t", "data": "x"}"#),
        ("DELETE", path(&s.sid, &format!("/connection/{}", s.bob.id)), ""),
        ("POST", path(&s.sid, "/mute"), r#"{"active": true}"#),
        ("POST", path(&s.sid, &format!("/stream/{}/mute", s.mic.id)), ""),
    ];
    let wrong_secret = rest_jwt("not-the-secret-0123456789abcdef0123", KEY);
    let other_project = rest_jwt(OTHER_SECRET, OTHER_KEY);
    let expired = {
        let now = unix_ms(SystemTime::now()) as i64 / 1000;
        let claims = json!({"iss": KEY, "ist": "project", "iat": now - 600, "exp": now - 300});
        let Value::Object(claims) = claims else { unreachable!() };
        session::jwt::sign_hs256(&claims, SECRET.as_bytes())
    };
    let good = rest_jwt(SECRET, KEY);
    let bearer_hs = format!("Bearer {good}");
    let failures: [(&str, Vec<(&str, &str)>); 8] = [
        ("no credentials", vec![]),
        // Ambiguous: a proxy in front may have checked the other one.
        ("the good token twice", vec![("X-OPENTOK-AUTH", good.as_str()), ("X-OPENTOK-AUTH", good.as_str())]),
        ("wrong secret", vec![("X-OPENTOK-AUTH", wrong_secret.as_str())]),
        ("another project's token", vec![("X-OPENTOK-AUTH", other_project.as_str())]),
        ("expired", vec![("X-OPENTOK-AUTH", expired.as_str())]),
        ("garbage", vec![("X-OPENTOK-AUTH", "garbage")]),
        ("HS256 as Bearer for a legacy project", vec![("Authorization", bearer_hs.as_str())]),
        ("Basic", vec![("Authorization", "Basic dTpw")]),
    ];
    for (method, p, body) in &routes {
        for (what, headers) in &failures {
            let mut headers = headers.clone();
            headers.push(("Content-Type", "application/json"));
            request(port, method, p, &headers, body).await.assert_error(403, &format!("{what}: {method} {p}"));
        }
        // A good token for the path's project, on another project's path: 403 there too.
        let on_other = p.replacen(KEY, OTHER_KEY, 1);
        request(port, method, &on_other, &[("X-OPENTOK-AUTH", good.as_str())], body)
            .await
            .assert_error(403, &format!("path names another project: {method} {on_other}"));
        let on_app = p.replacen(KEY, APP_ID, 1);
        request(port, method, &on_app, &[("X-OPENTOK-AUTH", good.as_str())], body)
            .await
            .assert_error(403, &format!("HS256 for an application: {method} {on_app}"));
        let on_unknown = p.replacen(KEY, "999999", 1);
        request(port, method, &on_unknown, &[("X-OPENTOK-AUTH", good.as_str())], body)
            .await
            .assert_error(403, &format!("unknown project: {method} {on_unknown}"));
    }
    assert_eq!(summaries(&mut rx, &s.sid), Vec::<Value>::new(), "refused requests changed nothing");
    assert!(service.connection(&s.sid, &s.bob.id).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_and_unknown_paths_404() {
    let (api, port) = start().await;
    let s = live(api.service(), KEY);
    let stream = format!("/stream/{}", s.camera.id);
    let connection = format!("/connection/{}", s.alice.id);
    for (method, rest, allow) in [
        ("POST", "/stream".to_owned(), "GET"),
        ("DELETE", stream.clone(), "GET"),
        ("GET", format!("{stream}/mute"), "POST"),
        ("GET", "/mute".to_owned(), "POST"),
        ("PUT", "/signal".to_owned(), "POST"),
        ("GET", format!("{connection}/signal"), "POST"),
        ("GET", connection.clone(), "DELETE"),
        ("POST", connection.clone(), "DELETE"),
    ] {
        let r = send(port, method, &path(&s.sid, &rest), Some("{}")).await;
        r.assert_error(405, &format!("{method} {rest}"));
        assert_eq!(r.header("allow"), Some(allow), "{method} {rest}");
    }
    for rest in ["", "/stream/x/unmute", "/connection", "/archive"] {
        send(port, "POST", &path(&s.sid, rest), Some("{}")).await.assert_error(404, rest);
    }
    // play-dtmf is routed: its digits are checked (400), and with no SIP bridge there is no call.
    for rest in ["/play-dtmf".to_owned(), format!("{connection}/play-dtmf")] {
        send(port, "POST", &path(&s.sid, &rest), Some(r#"{"digits": "12x"}"#)).await.assert_error(400, &rest);
        send(port, "POST", &path(&s.sid, &rest), Some(r#"{"digits": "12#"}"#)).await.assert_error(404, &rest);
        let r = send(port, "GET", &path(&s.sid, &rest), None).await;
        r.assert_error(405, &rest);
    }
    send(port, "GET", &format!("/v2/project/{KEY}/session//stream"), None).await.assert_error(404, "empty id");
    send(port, "GET", "/v2/project", None).await.assert_error(404, "no project");
    // Outside demo mode the demo page, the test page and the token endpoint do not exist; the
    // JavaScript client is always served.
    send(port, "POST", "/demo/token", Some("{}")).await.assert_error(404, "demo token");
    send(port, "GET", "/demo", None).await.assert_error(404, "demo page");
    send(port, "GET", "/demo/test", None).await.assert_error(404, "test page");
    let js = send(port, "GET", "/client/gateway-client.js", None).await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").is_some_and(|t| t.starts_with("text/javascript")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_in_paths_may_arrive_escaped_or_re_encoded() {
    let (api, port) = start().await;
    let s = live(api.service(), KEY);
    // The same ID in the standard base64 alphabet with padding (as an SDK that re-encodes sends
    // it), then percent-escaped.
    let body = s.sid.as_str().strip_prefix("1_").expect("1_");
    let mut standard = body.replace('-', "+").replace('_', "/");
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    let escaped = standard.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    for sid in [format!("1%5F{escaped}"), format!("1_{escaped}"), format!("1_{}", standard.replace('/', "%2f"))] {
        let r = send(port, "GET", &format!("/v2/project/{KEY}/session/{sid}/stream"), None).await;
        assert_eq!(json_of(&r, 200, &sid)["count"], 2, "{sid}");
    }
    let stream = s.camera.id.as_str().replace('-', "%2D");
    let r = send(port, "GET", &path(&s.sid, &format!("/stream/{stream}")), None).await;
    assert_eq!(json_of(&r, 200, "escaped stream id")["id"], s.camera.id.as_str());
    let r = send(port, "GET", &format!("/v2/project/%34{}/session/{}/stream", &KEY[1..], s.sid), None).await;
    assert_eq!(json_of(&r, 200, "escaped project id")["count"], 2);
    send(port, "GET", &path(&s.sid, "/stream/%ff"), None).await.assert_error(400, "not UTF-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_moderates_a_session() {
    let (api, port) = start().await;
    let service = api.service();
    let s = live(service, KEY);
    let empty = new_session(service, KEY);
    let app_session = new_session(service, APP_ID);
    let carol = service.connect_external(&app_session, ConnectionKind::Client, "carol".into()).expect("carol");
    publish(service, &carol, StreamId::random(&mut thread_rng()), "Carol", true);
    let mut rx = service.subscribe();

    let plan = json!({
        "session": s.sid.as_str(), "camera": s.camera.id.as_str(), "mic": s.mic.id.as_str(),
        "alice": s.alice.id.as_str(), "bob": s.bob.id.as_str(), "empty_session": empty.as_str(),
        "app": {"id": APP_ID, "key_file": app_private_key_file(), "session": app_session.as_str()},
    });
    let url = format!("http://127.0.0.1:{port}");
    let out = sdk_script("moderate.py", vec![url, KEY.into(), SECRET.into(), plan.to_string()]).await;

    let camera = json!({"id": s.camera.id.as_str(), "videoType": "camera", "name": "Alice", "layoutClassList": []});
    let mic = json!({"id": s.mic.id.as_str(), "videoType": null, "name": "Bob", "layoutClassList": []});
    assert_eq!(out["list"], json!({"ok": {"count": 2, "items": [camera, mic]}}), "{out}");
    assert_eq!(out["camera"], json!({"ok": camera}));
    assert_eq!(out["mic"], json!({"ok": mic}));
    assert_eq!(out["empty_list"], json!({"ok": {"count": 0, "items": []}}));
    assert_eq!(out["signal_all"], json!({"ok": null}), "{out}");
    assert_eq!(out["signal_alice"], json!({"ok": null}), "{out}");
    for k in ["mute_all", "mute_camera", "disable_force_mute"] {
        let r = &out[k]["ok"];
        assert_eq!(r["status"], 200, "{k}: {out}");
        assert_eq!(r["content_type"], "application/json", "{k}");
        assert_eq!(r["json"]["id"], KEY, "{k}");
        assert_eq!(r["json"]["secret"], "", "{k}: never the real secret");
        assert_eq!(r["json"]["status"], "ACTIVE", "{k}");
        assert!(r["json"]["createdAt"].is_u64(), "{k}");
    }
    assert_eq!(out["kick_bob"], json!({"ok": null}), "{out}");
    // 404s, as the SDK reports them.
    assert_eq!(out["kick_bob_again"]["error"], "ForceDisconnectError", "{out}");
    assert_eq!(out["signal_bob"]["error"], "RequestError", "{out}");
    assert_eq!(out["signal_bob"]["args"][1], 404, "{out}");
    assert_eq!(out["unknown_stream"]["args"][1], 404, "{out}");
    // 403: the SDK's AuthError.
    assert_eq!(out["wrong_secret"]["error"], "AuthError", "{out}");
    // An application authenticates with `Authorization: Bearer` (RS256).
    assert_eq!(out["app_list"]["ok"]["count"], 1, "{out}");
    assert_eq!(out["app_list"]["ok"]["items"][0]["name"], "Carol", "{out}");
    assert_eq!(out["app_kick_unknown"]["error"], "ForceDisconnectError", "authenticated, then not found: {out}");

    let (alice, camera, mic, bob) = (s.alice.id.as_str(), s.camera.id.as_str(), s.mic.id.as_str(), s.bob.id.as_str());
    assert_eq!(
        summaries(&mut rx, &s.sid),
        vec![
            json!({"signal": {"from": null, "to": null, "type": "chat", "data": "hello everyone"}}),
            json!({"signal": {"from": null, "to": alice, "type": "private", "data": "hello alice"}}),
            json!({"mute_all": true, "excluded": [camera], "muted": [mic]}),
            json!({"mute_stream": camera, "muted": [camera]}),
            json!({"mute_all": false, "excluded": [], "muted": []}),
            json!({"stream_destroyed": mic, "reason": StreamEndReason::Connection(DisconnectReason::ForceDisconnected).as_wire()}),
            json!({"connection_destroyed": bob, "reason": "forceDisconnected"}),
        ]
    );
    assert!(service.connection(&s.sid, &s.alice.id).is_some(), "alice stays");
}
