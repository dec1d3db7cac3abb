//! The gateway's HTTP surface: the Vonage Video (OpenTok) REST API, so the
//! official server SDKs work against it unchanged. This crate routes,
//! authenticates, validates and shapes answers; the state it acts on lives
//! in the crates below (`session` today).
//!
//! Implemented so far: `POST /session/create` with every quirk of the
//! contract (form body whatever the Content-Type says, empty bodies,
//! `location=null`, an exact `application/json` array answer), and the
//! session routes of contract §5 under `/v2/project/{projectId}/session/{sessionId}`:
//! `GET stream`, `GET stream/{streamId}`, `POST signal`,
//! `POST connection/{connectionId}/signal`, `DELETE connection/{connectionId}`,
//! `POST mute` and `POST stream/{streamId}/mute`. Every authenticated route
//! goes through one function (`auth.rs`); every refusal is a `{code, message}` body.

mod auth;
mod demo;
mod dial;
mod error;
mod moderation;
mod route;
mod session_create;
mod signalling;

pub use demo::DemoConfig;
pub use dial::{DialAnswer, DialRequest, Dialer, SipOptions};
pub use error::{json_response, ApiError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use session::service::SessionService;
use session::RestAuthConfig;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The JavaScript client, served at `/client/gateway-client.js`.
pub const CLIENT_JS: &str = include_str!("../../session/js/gateway-client.js");

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// REST JWT time rules.
    pub auth: RestAuthConfig,
    /// Demo mode: the demo page, the test page and `POST /demo/token` exist only when set.
    pub demo: Option<DemoConfig>,
    /// Longest wait for a request's head (the first request's, and the next one's on an idle
    /// keep-alive connection: the connection is closed) and for its body (408). A client that
    /// sends a byte a minute must not hold a connection for ever. 30 s by default, hyper's own
    /// header timeout; shorter, clients that keep idle connections longer (most HTTP libraries)
    /// more often send a request just as theirs is closed.
    pub request_timeout: Duration,
    /// Most HTTP connections served at once ([`RestApi::admit`]); beyond it, new ones get a 503
    /// (plain HTTP; over TLS they are only closed). Upgraded WebSocket connections leave the
    /// count after their first [`session::signalling::JOIN_TIMEOUT`] (their time to join;
    /// signalling bounds them after), and while their upgrade is answered a WebSocket holds two
    /// places (its HTTP connection's and its own): at least 2 make sense.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            auth: RestAuthConfig::default(),
            demo: None,
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// What a connection refused by [`RestApi::admit`] is sent before it is closed.
pub const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";

/// The API, cheap to clone.
#[derive(Debug, Clone)]
pub struct RestApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: SessionService,
    config: ApiConfig,
    dialer: Option<Arc<dyn Dialer>>,
    /// When the API was built, ms since the epoch: the projects' `createdAt`.
    started_ms: u64,
    /// One permit per HTTP connection served.
    connections: Arc<Semaphore>,
}

impl RestApi {
    /// An API over this session service.
    pub fn new(service: SessionService, config: ApiConfig) -> RestApi {
        let started_ms = session::room::unix_ms(SystemTime::now());
        let connections = Arc::new(Semaphore::new(config.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
        RestApi { inner: Arc::new(Inner { service, config, dialer: None, started_ms, connections }) }
    }

    /// The same API, placing calls for `POST /v2/project/{id}/dial` through `dialer` (without
    /// one, dial answers 501 after its checks).
    pub fn with_dialer(self, dialer: Arc<dyn Dialer>) -> RestApi {
        let inner = Inner {
            service: self.inner.service.clone(),
            config: self.inner.config.clone(),
            dialer: Some(dialer),
            started_ms: self.inner.started_ms,
            connections: self.inner.connections.clone(),
        };
        RestApi { inner: Arc::new(inner) }
    }

    /// A permit to serve one more HTTP connection, held while it is served; `None` when
    /// [`ApiConfig::max_connections`] are (answer it with [`refuse_busy`]).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.connections.clone().try_acquire_owned().ok()
    }

    /// The HTTP/1.1 connection settings to serve this API with: the head of every request, and
    /// an idle keep-alive connection's next one, within [`ApiConfig::request_timeout`].
    pub fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(self.inner.config.request_timeout);
        http
    }

    /// The session service behind it.
    pub fn service(&self) -> &SessionService {
        &self.inner.service
    }

    /// Answers one request (the WebSocket upgrade of `/rtc/v1/signal` included).
    pub async fn handle(&self, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() == signalling::PATH {
            let Some(permit) = self.admit() else {
                return ApiError::new(503, "too many connections").into_response();
            };
            return signalling::upgrade(self.inner.service.clone(), permit, &mut req);
        }
        let (parts, body) = req.into_parts();
        let bytes =
            match tokio::time::timeout(self.inner.config.request_timeout, Limited::new(body, MAX_BODY).collect()).await
            {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(_)) => return ApiError::new(413, "request body too large").into_response(),
                Err(_) => {
                    debug!(path = parts.uri.path(), "request body not received in time");
                    return ApiError::new(408, "request body not received in time").into_response();
                }
            };
        self.answer(&parts.method, parts.uri.path(), &parts.headers, &bytes, SystemTime::now())
    }

    /// Answers a request given as parts (used by `handle`, and by tests).
    pub fn answer(
        &self,
        method: &Method,
        path: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Response<Full<Bytes>> {
        let service = &self.inner.service;
        let demo = self.inner.config.demo.as_ref();
        let result = match (method, path.trim_end_matches('/')) {
            (&Method::POST, "/session/create") => {
                auth::authenticate(service, &self.inner.config.auth, headers, None, now)
                    .and_then(|project| session_create::create(service, &project, body, now))
            }
            (_, "/session/create") => Err(ApiError::new(405, "use POST for /session/create")),
            (m, p) if p.starts_with(route::PREFIX) && p.ends_with("/dial") && p.matches('/').count() == 4 => {
                let dialer = self.inner.dialer.as_deref();
                let auth = &self.inner.config.auth;
                route::percent_decode(&p[route::PREFIX.len()..p.len() - "/dial".len()]).and_then(|project| {
                    if *m == Method::POST {
                        dial::answer(service, auth, dialer, &project, headers, body, now)
                    } else {
                        Err(ApiError::new(405, "use POST for dial"))
                    }
                })
            }
            (m, p) if p.starts_with(route::PREFIX) && p.ends_with("/play-dtmf") => {
                let dialer = self.inner.dialer.as_deref();
                if *m == Method::POST {
                    self.play_dtmf(dialer, p, headers, body, now)
                } else {
                    Err(ApiError::new(405, "use POST for play-dtmf"))
                }
            }
            (m, p) if p.starts_with(route::PREFIX) => {
                let cx = moderation::Context {
                    service,
                    auth: &self.inner.config.auth,
                    project_created_ms: self.inner.started_ms,
                };
                moderation::answer(&cx, m, p, headers, body, now)
            }
            (&Method::GET, "/client/gateway-client.js") => Ok(asset("text/javascript; charset=utf-8", CLIENT_JS)),
            (m, p) if demo.is_some() && p.starts_with("/demo") => match demo {
                Some(d) => demo::answer(d, service, m, p, body, now),
                None => Err(ApiError::new(404, format!("no such resource: {path}"))),
            },
            _ => Err(ApiError::new(404, format!("no such resource: {path}"))),
        };
        match result {
            Ok(r) => r,
            Err(e) => {
                if e.status == 403 {
                    warn!(path, reason = %e.message, "authentication refused");
                } else {
                    debug!(path, status = e.status, reason = %e.message, "request refused");
                }
                e.into_response()
            }
        }
    }
}

impl RestApi {
    /// `POST .../session/{sid}/play-dtmf` and `.../session/{sid}/connection/{cid}/play-dtmf`.
    fn play_dtmf(
        &self,
        dialer: Option<&dyn Dialer>,
        path: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let segments: Vec<&str> = path[route::PREFIX.len()..].split('/').collect();
        let (project, session, connection) = match segments.as_slice() {
            [p, "session", s, "play-dtmf"] => (*p, *s, None),
            [p, "session", s, "connection", c, "play-dtmf"] => (*p, *s, Some(*c)),
            _ => return Err(ApiError::new(404, format!("no such resource: {path}"))),
        };
        let project = route::percent_decode(project)?;
        let service = &self.inner.service;
        let project = auth::authenticate(service, &self.inner.config.auth, headers, Some(&project), now)?;
        let session = route::percent_decode(session)?;
        let (session, _) = service
            .session(&session)
            .filter(|(_, info)| info.project == project)
            .ok_or_else(|| ApiError::new(404, "session not found"))?;
        let digits = dial::dtmf_digits(body)?;
        let connection =
            connection.map(route::percent_decode).transpose()?.map(|c| session::ConnectionId::from_wire(&c));
        let dialer = dialer.ok_or_else(|| ApiError::new(404, "no SIP call in this session"))?;
        dialer.play_dtmf(&session, connection.as_ref(), &digits)?;
        Ok(json_response(200, String::new()))
    }
}

/// A static asset.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-cache"));
    r
}

/// Serves HTTP/1.1 on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, api: RestApi) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let Some(permit) = api.admit() else {
            refuse_busy(&stream, peer);
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let http = api.http1();
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
            });
            let _ = http.serve_connection(io, service).with_upgrades().await;
            drop(permit);
        });
    }
}

/// Answers a connection [`RestApi::admit`] refused with [`BUSY_RESPONSE`], without waiting (it
/// fits any fresh socket's send buffer), before it is dropped.
pub fn refuse_busy(stream: &tokio::net::TcpStream, peer: std::net::SocketAddr) {
    debug!(%peer, "HTTP connection refused: too many open");
    let _ = stream.try_write(BUSY_RESPONSE);
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
