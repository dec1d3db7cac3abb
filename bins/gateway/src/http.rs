//! The HTTP front: HTTP/1.1 or HTTPS on the REST port. `GET /health` and `GET /metrics` are
//! answered here; every other request goes to the REST API (`RestApi::handle`, WebSocket
//! upgrades included). Stopping it stops accepting and lets each connection finish the request it
//! is serving.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use rest_api::RestApi;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::metrics::{Metrics, Readings};

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/health` and `/metrics` read.
pub struct Operations {
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The bridge (active calls).
    pub bridge: bridge::Bridge,
    /// The callback queue.
    pub callbacks: callbacks::Callbacks,
}

impl Operations {
    fn readings(&self, api: &RestApi) -> Readings {
        let service = api.service();
        Readings {
            active_calls: self.bridge.active_calls(),
            webrtc_peers: service.peer_count(),
            sessions_known: service.session_count(),
            callbacks: self.callbacks.stats(),
        }
    }
}

/// Serves `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    api: RestApi,
    ops: Arc<Operations>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off a little instead of spinning.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = api.admit() else {
            // Plain HTTP gets a 503 first; a TLS client only sees the connection close.
            if tls.is_none() {
                rest_api::refuse_busy(&stream, peer);
            }
            continue;
        };
        let (api, ops, stop) = (api.clone(), ops.clone(), stop.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(stream, api, ops, stop).await,
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => connection(s, api, ops, stop).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    debug!("the REST port stopped accepting");
}

async fn connection<S>(stream: S, api: RestApi, ops: Arc<Operations>, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let http = api.http1();
    let service = hyper::service::service_fn(move |req| {
        let (api, ops) = (api.clone(), ops.clone());
        async move { Ok::<_, Infallible>(answer(&api, &ops, req).await) }
    });
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Returns once `stop` is true (at once if it already is).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn answer(api: &RestApi, ops: &Operations, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/health" if get => {
            let r = ops.readings(api);
            let body = json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptimeSeconds": ops.metrics.uptime_seconds(),
                "activeCalls": r.active_calls,
                "webrtcPeers": r.webrtc_peers,
                "callbackBacklog": r.callbacks.backlog,
            });
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        "/metrics" if get => {
            let text = ops.metrics.render(&ops.readings(api));
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        _ => api.handle(req).await,
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
