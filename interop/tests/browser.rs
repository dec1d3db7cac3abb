//! Headless Chromium as WebRTC participants: one page publishes its fake camera and microphone
//! through our router, another subscribes and measures what it really decodes (audio energy,
//! video frames), and reports it back through the session's signals; the events the pages saw
//! are checked in order, and a force disconnect ends the subscriber with the right reason.
//!
//! Needs Debian's `chromium` (scripts/test-all installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rest_api::{serve, ApiConfig, DemoConfig, RestApi};
use serde_json::{json, Value};
use session::jwt::sign_hs256;
use session::service::{ServiceConfig, SessionService};
use session::{ApiSecret, DisconnectReason, Event, EventKind, MediaMode, Project, ProjectId, Projects};

const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const KEY: &str = "4615004";
const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

/// A Chromium process (its whole process group is killed on drop) and its stderr log.
struct Browser {
    child: Child,
    log: PathBuf,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("gw-browser-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    fn open(url: &str, tag: &str) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} missing: install the Debian package chromium (scripts/test-all does)"
        );
        let profile = TempDir::new(tag);
        let log = profile.0.join("stderr.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        use std::os::unix::process::CommandExt;
        let child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("start chromium");
        Browser { child, log, _profile: profile }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-s", "KILL", "--"]).arg(format!("-{}", self.child.id())).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_token(sid: &str, role: &str, data: &str) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = json!({"iss": KEY, "ist": "project", "iat": t, "exp": t + 600, "scope": "session.connect",
        "session_id": sid, "role": role, "connection_data": data, "nonce": "n"});
    let Value::Object(map) = claims else { unreachable!() };
    sign_hs256(&map, SECRET.as_bytes())
}

/// The latest `report` signal from the connection whose data is `name`, as JSON.
fn latest_report(events: &[Arc<Event>], from: &str, service: &SessionService) -> Option<Value> {
    let _ = service;
    events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Signal { from: Some(f), signal_type, data, .. } if signal_type == "report" && f.as_str() == from => {
            serde_json::from_str(data).ok()
        }
        _ => None,
    })
}

/// The session service and the REST API in demo mode (the pages and the test page are served) on
/// loopback, an event subscription, and one routed session.
async fn demo_gateway() -> (SessionService, u16, tokio::sync::mpsc::UnboundedReceiver<Arc<Event>>, session::SessionId) {
    let mut projects = Projects::new();
    projects.insert(Project::legacy(KEY, ApiSecret::new(SECRET).expect("secret")).expect("project"));
    let service = SessionService::start(ServiceConfig::default(), projects).await.expect("service");
    let demo =
        DemoConfig { project: ProjectId::api_key(KEY).expect("key"), secret: ApiSecret::new(SECRET).expect("secret") };
    let api = RestApi::new(service.clone(), ApiConfig { demo: Some(demo), ..ApiConfig::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(serve(listener, api));
    let rx = service.subscribe();
    let sid =
        service.create_session(&ProjectId::api_key(KEY).expect("key"), MediaMode::Routed, None, SystemTime::now());
    (service, port, rx, sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_and_another_chromium_decodes_it() {
    let (service, port, mut rx, sid) = demo_gateway().await;
    let page = |mode: &str, name: &str| {
        format!(
            "http://127.0.0.1:{port}/demo/test?ws=ws://127.0.0.1:{port}/rtc/v1/signal&sessionId={}&token={}&mode={mode}&name={name}",
            sid.as_str(),
            client_token(sid.as_str(), "publisher", name)
        )
    };

    let conn_of = |events: &[Arc<Event>], data: &str| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::ConnectionCreated(c) if c.data == data => Some(c.id.clone()),
            _ => None,
        })
    };
    // The subscriber first, so that it sees the publisher arrive as events.
    let subscriber = Browser::open(&page("subscribe", "sub"), "sub");
    let mut events: Vec<Arc<Event>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while conn_of(&events, "sub").is_none() {
        assert!(Instant::now() < deadline, "the subscriber page never joined:\n{}", subscriber.console());
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            events.push(e);
        }
    }
    let publisher = Browser::open(&page("publish", "pub"), "pub");

    // Follow the session until the subscriber reports real media from the publisher's stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream_of_pub = |events: &[Arc<Event>], pub_conn: &session::ConnectionId| {
        events.iter().find_map(|e| match &e.kind {
            EventKind::StreamCreated { stream, .. } if &stream.connection == pub_conn => Some(stream.clone()),
            _ => None,
        })
    };
    let verdict = loop {
        if Instant::now() > deadline {
            break None;
        }
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            events.push(e);
        }
        let (Some(pub_conn), Some(sub_conn)) = (conn_of(&events, "pub"), conn_of(&events, "sub")) else { continue };
        let Some(stream) = stream_of_pub(&events, &pub_conn) else { continue };
        let Some(report) = latest_report(&events, sub_conn.as_str(), &service) else { continue };
        let m = &report["streams"][stream.id.as_str()];
        let rms = m["audioRms"].as_f64().unwrap_or(0.0);
        let frames = m["videoFrames"].as_u64().unwrap_or(0);
        if rms > 0.01 && frames >= 30 {
            break Some((pub_conn, sub_conn, stream, report));
        }
    };
    let Some((pub_conn, sub_conn, stream, report)) = verdict else {
        panic!(
            "no decoded media within 60 s; last report {:?}\npublisher console:\n{}\nsubscriber console:\n{}",
            conn_of(&events, "sub").and_then(|s| latest_report(&events, s.as_str(), &service)),
            publisher
                .console()
                .lines()
                .filter(|l| l.contains("CONSOLE") || l.contains("TEST"))
                .collect::<Vec<_>>()
                .join("\n"),
            subscriber
                .console()
                .lines()
                .filter(|l| l.contains("CONSOLE") || l.contains("TEST"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    assert!(stream.has_audio && stream.has_video, "the fake devices give audio and video: {stream:?}");
    let m = &report["streams"][stream.id.as_str()];
    assert!(
        m["width"].as_u64().unwrap_or(0) > 0 && m["height"].as_u64().unwrap_or(0) > 0,
        "decoded frames have a size: {m}"
    );
    assert!(m["packetsAudio"].as_u64().unwrap_or(0) > 0 && m["packetsVideo"].as_u64().unwrap_or(0) > 0, "{m}");

    // The subscriber saw the session's events in order: the publisher's connection, then its stream.
    let seen: Vec<(String, String)> = report["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let what = e["streamId"].as_str().or(e["connectionId"].as_str()).unwrap_or("").to_owned();
                    (e["event"].as_str().unwrap_or("").to_owned(), what)
                })
                .collect()
        })
        .unwrap_or_default();
    let pos = |ev: &str, id: &str| seen.iter().position(|(e, w)| e == ev && w == id);
    let created_conn =
        pos("connectionCreated", pub_conn.as_str()).unwrap_or_else(|| panic!("connectionCreated: {seen:?}"));
    let created_stream = pos("streamCreated", stream.id.as_str()).unwrap_or_else(|| panic!("streamCreated: {seen:?}"));
    assert!(created_conn < created_stream, "the connection before its stream: {seen:?}");

    // Force disconnect the subscriber: it is told why, and everyone sees the reason.
    service.force_disconnect(&sid, &sub_conn).expect("force disconnect");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut told = false;
    while Instant::now() < deadline && !told {
        told = subscriber.console().contains("TEST-DISCONNECTED forceDisconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let destroyed = events.iter().any(|e| {
        matches!(&e.kind, EventKind::ConnectionDestroyed { connection, reason: DisconnectReason::ForceDisconnected } if connection.id == sub_conn)
    });
    assert!(destroyed, "connectionDestroyed forceDisconnected for the subscriber");
    assert!(told, "the page learnt it was force-disconnected:\n{}", subscriber.console());
    assert!(service.connection(&sid, &sub_conn).is_none());
    assert!(service.connection(&sid, &pub_conn).is_some(), "the publisher stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_joins_publishes_and_subscribes() {
    let (service, port, mut rx, sid) = demo_gateway().await;
    let url = format!("http://127.0.0.1:{port}/demo?sessionId={}&autojoin=1", sid.as_str());
    let first = Browser::open(&url, "demo1");
    let second = Browser::open(&url, "demo2");
    // Both tabs join through POST /demo/token and publish camera and microphone.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streams = Vec::new();
    while streams.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the demo pages did not both publish: {streams:?}\n{}\n{}",
            first.console(),
            second.console()
        );
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            if let EventKind::StreamCreated { stream, .. } = &e.kind {
                assert_eq!(e.session, sid);
                streams.push(stream.clone());
            }
        }
    }
    assert!(streams.iter().all(|s| s.has_audio && s.has_video), "{streams:?}");
    assert_ne!(streams[0].connection, streams[1].connection);
    // Each tab subscribes to the other's stream: the router serves four peer connections.
    let mut peers = 0;
    while Instant::now() < deadline && peers < 4 {
        peers = service.peer_count();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(peers, 4, "two publishers and two subscriptions");
    assert!(!first.console().contains("Uncaught") && !second.console().contains("Uncaught"), "no script errors");
}
