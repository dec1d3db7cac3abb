//! What the end-to-end dial tests share: a gateway on loopback (session service, SIP stack,
//! bridge, REST API) with its call events, REST requests as an SDK sends them, and the usual waits.
#![allow(dead_code)]

pub mod uas;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge::{Bridge, BridgeConfig, CallReporter};
use rest_api::{serve, ApiConfig, RestApi};
use serde_json::{json, Value};
use session::jwt::sign_hs256;
use session::service::{ServiceConfig, SessionService};
use session::{ApiSecret, MediaMode, Project, ProjectId, Projects, SessionId};
use sip_signaling::driver::{self, DriverConfig};
use srtp_transport::driver::PortAllocator;
use tokio::sync::mpsc;

pub const KEY: &str = "4615005";

pub const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

pub struct Reporter(
    pub mpsc::UnboundedSender<Value>,
    pub mpsc::UnboundedSender<bridge::CallQuality>,
    pub mpsc::UnboundedSender<bridge::VideoQuality>,
);

impl CallReporter for Reporter {
    fn report(&self, _project: &ProjectId, _key: &str, body: Value) {
        let _ = self.0.send(body);
    }

    fn video_quality(&self, _project: &ProjectId, quality: &bridge::VideoQuality) {
        let _ = self.2.send(*quality);
    }

    fn call_quality(&self, _project: &ProjectId, quality: &bridge::CallQuality) {
        let _ = self.1.send(*quality);
    }
}

pub struct Gateway {
    pub service: SessionService,
    pub bridge: Bridge,
    pub port: u16,
    pub calls: mpsc::UnboundedReceiver<Value>,
    /// How each call's audio went, as its media ended.
    pub quality: mpsc::UnboundedReceiver<bridge::CallQuality>,
    /// How each call's video went, as its video ended.
    pub video_quality: mpsc::UnboundedReceiver<bridge::VideoQuality>,
}

pub async fn gateway(config: BridgeConfig) -> Gateway {
    gateway_with(config, ServiceConfig::default()).await
}

pub async fn gateway_with(config: BridgeConfig, service_config: ServiceConfig) -> Gateway {
    gateway_sip(config, service_config, DriverConfig::default()).await
}

pub async fn gateway_sip(config: BridgeConfig, service_config: ServiceConfig, sip_config: DriverConfig) -> Gateway {
    // The gateway's own logs, shown with a failing test (RUST_LOG overrides the filter).
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "bridge=info,srtp_transport=warn".into());
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
    let mut projects = Projects::new();
    projects.insert(Project::legacy(KEY, ApiSecret::new(SECRET).expect("secret")).expect("project"));
    let service = SessionService::start(service_config, projects).await.expect("service");
    let sip = driver::start(sip_config).await.expect("sip");
    // Each gateway of this test process gets its own media ports, so that a far end of another
    // test still sending to a port just freed never reaches a new call on it.
    static NEXT_RANGE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let first = 42000 + 200 * (NEXT_RANGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 40);
    let ports = PortAllocator::new("127.0.0.1".parse().expect("ip"), first, first + 199).expect("ports");
    let (tx, calls) = mpsc::unbounded_channel();
    let (quality_tx, quality) = mpsc::unbounded_channel();
    let (video_tx, video_quality) = mpsc::unbounded_channel();
    let bridge = Bridge::new(service.clone(), sip, ports, config, Arc::new(Reporter(tx, quality_tx, video_tx)));
    let api = RestApi::new(service.clone(), ApiConfig::default()).with_dialer(Arc::new(bridge.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(serve(listener, api));
    Gateway { service, bridge, port, calls, quality, video_quality }
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn jwt(claims: Value) -> String {
    let Value::Object(map) = claims else { unreachable!() };
    sign_hs256(&map, SECRET.as_bytes())
}

pub fn rest_auth() -> String {
    let t = now_s();
    jwt(json!({"iss": KEY, "ist": "project", "iat": t, "exp": t + 180, "jti": "j"}))
}

pub fn client_token(sid: &SessionId) -> String {
    let t = now_s();
    jwt(json!({"iss": KEY, "scope": "session.connect", "session_id": sid.as_str(), "iat": t, "exp": t + 600,
        "role": "publisher", "connection_data": "from-dial-token", "initial_layout_class_list": ["focus", "sip"]}))
}

/// One HTTP/1.1 request; (status, body).
pub async fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nX-OPENTOK-AUTH: {}\r\nContent-Length: {}\r\n\r\n{body}",
        rest_auth(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_owned())
}

pub async fn dial(g: &Gateway, sid: &SessionId, sip: Value) -> (u16, Value) {
    let body = json!({"sessionId": sid.as_str(), "token": client_token(sid), "sip": sip});
    let (status, text) = http(g.port, "POST", &format!("/v2/project/{KEY}/dial"), Some(&body)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The call events until `callDestroyed` (bounded), as `event[:state|:reason_code]`.
pub async fn call_events(g: &mut Gateway, limit: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, g.calls.recv()).await {
        let name = e["event"].as_str().unwrap_or("?").to_owned();
        let detail = e["state"].as_str().or(e["reason_code"].as_str()).map(|d| format!(":{d}")).unwrap_or_default();
        out.push(format!("{name}{detail}"));
        if name == "callDestroyed" {
            break;
        }
    }
    out
}

pub fn routed(g: &Gateway) -> SessionId {
    g.service.create_session(&ProjectId::api_key(KEY).expect("key"), MediaMode::Routed, None, SystemTime::now())
}

/// Force disconnect of the call's SIP connection through REST (204 with no body, as the contract
/// says); returns the call's remaining events (up to `callDestroyed`).
pub async fn force_disconnect(g: &mut Gateway, sid: &SessionId, cid: &str) -> Vec<String> {
    let path = format!("/v2/project/{KEY}/session/{}/connection/{cid}", sid.as_str());
    let (status, body) = http(g.port, "DELETE", &path, None).await;
    assert_eq!((status, body.as_str()), (204, ""), "force disconnect");
    call_events(g, Duration::from_secs(20)).await
}

/// Events until `callUpdated:ACTIVE` or the call's end (bounded).
pub async fn until_active(g: &mut Gateway) -> Vec<String> {
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &String| e == "callUpdated:ACTIVE" || e.starts_with("callDestroyed")) {
        let more = call_events_until(g, "callUpdated", Duration::from_secs(10)).await;
        if more.is_empty() {
            break;
        }
        seen.extend(more);
    }
    seen
}

/// Events until one named `name` (inclusive), bounded.
pub async fn call_events_until(g: &mut Gateway, name: &str, limit: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, g.calls.recv()).await {
        let n = e["event"].as_str().unwrap_or("?").to_owned();
        let detail = e["state"].as_str().or(e["reason_code"].as_str()).map(|d| format!(":{d}")).unwrap_or_default();
        out.push(format!("{n}{detail}"));
        if n == name {
            break;
        }
    }
    out
}

/// Force-disconnects a call's SIP connection (`answer` is the dial's response) and checks that the
/// call ended normally (700).
pub async fn hang_up(g: &mut Gateway, sid: &SessionId, answer: &Value) {
    let cid = answer["connectionId"].as_str().expect("cid");
    let events = force_disconnect(g, sid, cid).await;
    assert_eq!(events.last().map(String::as_str), Some("callDestroyed:700"), "{events:?}");
}
