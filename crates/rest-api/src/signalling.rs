//! `GET /rtc/v1/signal`: the WebSocket upgrade for participants' signalling
//! (`docs/signalling.md`). Frames are pumped between the socket and
//! `session::signalling::run_participant`.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use session::service::SessionService;
use session::signalling::{channel, run_participant, JOIN_TIMEOUT, MAX_MESSAGE};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::error::ApiError;

/// Where participants connect.
pub(crate) const PATH: &str = "/rtc/v1/signal";

fn header_has(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// Answers the upgrade request and, once upgraded, serves the participant.
/// Upgrades `req` to the signalling WebSocket. `permit` (a place among the HTTP front's
/// connections) is held until the participant has had [`JOIN_TIMEOUT`] to join, or leaves: a
/// socket that never joins counts like any other connection.
pub(crate) fn upgrade(
    service: SessionService,
    permit: OwnedSemaphorePermit,
    req: &mut Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET
        || !header_has(req, UPGRADE, "websocket")
        || !header_has(req, CONNECTION, "upgrade")
        || req.headers().get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13")
    {
        return ApiError::new(400, "this is a WebSocket endpoint: GET with Upgrade: websocket, version 13")
            .into_response();
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return ApiError::new(400, "Sec-WebSocket-Key missing").into_response();
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE);
        config.max_frame_size = Some(MAX_MESSAGE);
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        let served = pump(service, ws, LIVENESS);
        tokio::pin!(served);
        tokio::select! {
            _ = &mut served => return,
            _ = tokio::time::sleep(JOIN_TIMEOUT) => {}
        }
        drop(permit);
        served.await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// How long one WebSocket write may take.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How the server tells a participant that vanished without closing (a laptop that slept, a NAT
/// that forgot the connection: no FIN ever comes) from a quiet one.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    /// How often the server pings (browsers answer pings on their own).
    ping_every: std::time::Duration,
    /// How long a participant may send nothing, not even the answer to a ping.
    silent_for: std::time::Duration,
}

const LIVENESS: Liveness =
    Liveness { ping_every: std::time::Duration::from_secs(20), silent_for: std::time::Duration::from_secs(60) };

async fn pump<S>(service: SessionService, ws: WebSocketStream<S>, liveness: Liveness)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = channel();
    let (out_tx, mut out_rx) = channel();
    let mut participant = tokio::spawn(run_participant(service, in_rx, out_tx));
    // A browser that stops reading fails its writes after WRITE_TIMEOUT: the writer ends, the
    // participant's next message finds it gone and the participant leaves.
    let writer = tokio::spawn(async move {
        let every = liveness.ping_every;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let message = tokio::select! {
                text = out_rx.recv() => match text {
                    Some(text) => Message::text(text),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Bytes::new()),
            };
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(None))).await;
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    });
    let reader = async {
        loop {
            let frame = match tokio::time::timeout(liveness.silent_for, stream.next()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    debug!(silent_for = ?liveness.silent_for, "participant silent, pings unanswered: taken for gone");
                    break;
                }
            };
            let text = match frame {
                Ok(Message::Text(t)) => t.as_str().to_owned(),
                Ok(Message::Binary(_)) => r#"{"type":"binary"}"#.to_owned(),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            if in_tx.send(text).await.is_err() {
                break;
            }
        }
        // Dropping the sender tells the participant its transport is gone.
        drop(in_tx);
    };
    let mut writer = writer;
    let finished = tokio::select! {
        _ = reader => false,
        _ = &mut participant => true,
        // The browser stopped reading (a write timed out): the participant's transport is gone
        // (its receiver, held by the reader, is dropped with the reader here).
        _ = &mut writer => false,
    };
    if !finished {
        let _ = participant.await;
    }
    // The writer ends once the participant's last sender is gone, after sending what is queued.
    if !writer.is_finished() {
        let _ = writer.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::DemoConfig;
    use serde_json::{json, Value};
    use session::service::ServiceConfig;
    use session::{ApiSecret, Project, ProjectId, Projects, SessionId};
    use std::time::{Duration, SystemTime};

    async fn socket(service: &SessionService) -> WebSocketStream<tokio::io::DuplexStream> {
        let (client, server) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let liveness = Liveness { ping_every: Duration::from_millis(250), silent_for: Duration::from_millis(1500) };
        tokio::spawn(pump(service.clone(), server, liveness));
        WebSocketStream::from_raw_socket(client, Role::Client, None).await
    }

    async fn join(ws: &mut WebSocketStream<tokio::io::DuplexStream>, sid: &str, token: &str) {
        let join = json!({"type": "join", "id": 1, "sessionId": sid, "token": token}).to_string();
        ws.send(Message::text(join)).await.expect("send");
        loop {
            let m = ws.next().await.expect("open").expect("frame");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                assert_eq!(v["type"], "ok", "{v}");
                return;
            }
        }
    }

    /// A participant that goes silent without closing (no FIN: a laptop asleep, a NAT that
    /// forgot it) is taken for gone once its pings go unanswered for long enough (a minute in
    /// service; 1.5 s here), so its session can end and its SIP calls be hung up; one that
    /// answers the pings stays however quiet it is.
    #[tokio::test]
    async fn a_silent_participant_is_taken_for_gone_and_a_quiet_one_stays() {
        let secret = "0123456789abcdef0123456789abcdef01234567";
        let mut projects = Projects::new();
        projects.insert(Project::legacy("4615003", ApiSecret::new(secret).expect("secret")).expect("project"));
        let service = SessionService::start(ServiceConfig::default(), projects).await.expect("service");
        let demo = DemoConfig {
            project: ProjectId::api_key("4615003").expect("key"),
            secret: ApiSecret::new(secret).expect("s"),
        };
        let made = crate::demo::token(&demo, &service, b"", SystemTime::now()).expect("token");
        let body = http_body_util::BodyExt::collect(made.into_body()).await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&body).expect("json");
        let (sid, token) = (v["sessionId"].as_str().expect("sid"), v["token"].as_str().expect("token"));

        // One reads all the time (tungstenite answers pings while reading), one never reads.
        let mut quiet = socket(&service).await;
        join(&mut quiet, sid, token).await;
        let mut silent = socket(&service).await;
        join(&mut silent, sid, token).await;
        let quiet_reader = tokio::spawn(async move {
            let mut pings = 0;
            while let Some(Ok(m)) = quiet.next().await {
                pings += usize::from(matches!(m, Message::Ping(_)));
            }
            pings
        });
        let session = SessionId::parse(sid).expect("sid");
        assert_eq!(service.connections(&session).len(), 2);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(service.connections(&session).len(), 2, "nobody gone yet");
        tokio::time::sleep(Duration::from_millis(3300)).await;
        assert_eq!(service.connections(&session).len(), 1, "the silent one is gone, the quiet one stays");
        drop(silent);
        assert!(!quiet_reader.is_finished());
        quiet_reader.abort();
    }
}
