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
use session::signalling::{channel, run_participant, MAX_MESSAGE};
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
pub(crate) fn upgrade(service: SessionService, req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
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
        pump(service, ws).await;
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

async fn pump<S>(service: SessionService, ws: WebSocketStream<S>)
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
        while let Some(text) = out_rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::text(text))).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(None))).await;
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    });
    let reader = async {
        while let Some(frame) = stream.next().await {
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
