//! The gateway's HTTP surface: the Vonage Video (OpenTok) REST API, so the
//! official server SDKs work against it unchanged. This crate routes,
//! authenticates, validates and shapes answers; the state it acts on lives
//! in the crates below (`session` today).
//!
//! Implemented so far: `POST /session/create` with every quirk of the
//! contract (form body whatever the Content-Type says, empty bodies,
//! `location=null`, an exact `application/json` array answer).

mod error;
mod session_create;

pub use error::{json_response, ApiError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use session::{Projects, RestAuthConfig, Sessions};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The state the API works on.
#[derive(Debug, Default)]
pub struct ApiState {
    /// Configured projects.
    pub projects: Projects,
    /// Sessions created here.
    pub sessions: Sessions,
    /// REST JWT time rules.
    pub auth: RestAuthConfig,
}

/// The API, cheap to clone.
#[derive(Debug, Clone)]
pub struct RestApi {
    state: Arc<Mutex<ApiState>>,
}

impl RestApi {
    /// An API over this state.
    pub fn new(state: ApiState) -> RestApi {
        RestApi { state: Arc::new(Mutex::new(state)) }
    }

    /// Runs `f` with the state locked.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut ApiState) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return ApiError::new(413, "request body too large").into_response(),
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
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let result = match (method, path.trim_end_matches('/')) {
            (&Method::POST, "/session/create") => self.with_state(|s| {
                session_create::create(s, header("x-opentok-auth"), header("authorization"), body, now)
            }),
            (_, "/session/create") => Err(ApiError::new(405, "use POST for /session/create")),
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

/// Serves HTTP/1.1 on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, api: RestApi) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let api = api.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
