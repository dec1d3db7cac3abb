//! A callback receiver for the tests: a hyper server on 127.0.0.1:0 that records every request and
//! answers as the test's policy says.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callbacks::{CallbackConfig, Delivery};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// This status, at once.
    Status(u16),
    /// Wait this long, then 200 (the client should have given up).
    Hang(Duration),
    /// Close the connection without answering.
    Close,
    /// 200 at once, then a body that never ends.
    EndlessBody,
}

/// A response body that never ends (and never wakes its reader).
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}

type ReplyBody = http_body_util::Either<Full<Bytes>, Endless>;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
    pub reply: Reply,
}

impl Recorded {
    pub fn key(&self) -> String {
        self.json["call"]["id"].as_str().unwrap_or_default().to_string()
    }
    pub fn n(&self) -> u64 {
        self.json["n"].as_u64().unwrap_or(u64::MAX)
    }
    pub fn project(&self) -> String {
        self.json["projectId"].as_str().unwrap_or_default().to_string()
    }
    pub fn delivered(&self) -> bool {
        matches!(self.reply, Reply::Status(s) if (200..300).contains(&s))
    }
}

type Policy = Box<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

struct State {
    requests: Mutex<Vec<Recorded>>,
    policy: Mutex<Policy>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A plain-HTTP receiver answering 200 until told otherwise.
    pub async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// With `tls`, the receiver speaks HTTPS.
    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            policy: Mutex::new(Box::new(|_: &Recorded, _: usize| Reply::Status(200))),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets how the following requests are answered: `policy(request, requests before it)`.
    pub fn set_policy(&self, policy: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) {
        *self.state.policy.lock().expect("policy") = Box::new(policy);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Waits until no request has arrived for 50 ms (bounded), so a request sent just before its
    /// client stopped is answered under the current policy, not the next one.
    pub async fn settle(&self) {
        let end = Instant::now() + Duration::from_secs(5);
        let mut seen = self.requests().len();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.requests().len();
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    /// Polls until `done(requests)` holds; false after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Recorded]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done(&self.requests()) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<ReplyBody>, std::io::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let mut rec = Recorded { method, path, headers, body, json, reply: Reply::Status(0) };
    let reply = {
        let n = state.requests.lock().expect("requests").len();
        (state.policy.lock().expect("policy"))(&rec, n)
    };
    rec.reply = reply;
    state.requests.lock().expect("requests").push(rec);
    let status = match reply {
        Reply::Status(s) => s,
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            200
        }
        // An error from the service makes hyper close the connection without a response.
        Reply::Close => return Err(std::io::Error::other("closing without an answer")),
        Reply::EndlessBody => return Ok(Response::new(http_body_util::Either::Right(Endless))),
    };
    let mut resp = Response::new(http_body_util::Either::Left(Full::new(Bytes::from_static(b"ok"))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok::<_, std::io::Error>(resp)
}

/// A store path in a fresh directory under the system temp dir; the directory is removed on drop
/// (redb preallocates a few MiB per file).
pub struct TempStore {
    dir: PathBuf,
    path: PathBuf,
}

impl std::ops::Deref for TempStore {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for TempStore {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory under the system temp dir, and the store path inside it.
pub fn temp_store(name: &str) -> TempStore {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "callbacks-it-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempStore { path: dir.join("callbacks.redb"), dir }
}

/// Small backoffs so retries happen within milliseconds.
pub fn fast_config() -> CallbackConfig {
    CallbackConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        jitter: 0.5,
        request_timeout: Duration::from_secs(2),
        ..CallbackConfig::default()
    }
}

/// Event `n` of call `key` in `project`.
pub fn event(project: &str, key: &str, n: u64) -> Delivery {
    Delivery {
        project: project.to_string(),
        order_key: key.to_string(),
        body: serde_json::json!({
            "sessionId": "1_test", "projectId": project, "event": "callUpdated", "timestamp": 1_700_000_000_000u64 + n,
            "call": {"id": key, "connectionId": "conn", "createdAt": 1_700_000_000_000u64},
            "n": n,
        }),
    }
}

/// The `n` of every delivered (2xx) request, per (project, key), in arrival order.
pub fn delivered_by_key(requests: &[Recorded]) -> BTreeMap<(String, String), Vec<u64>> {
    let mut out: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.delivered()) {
        out.entry((r.project(), r.key())).or_default().push(r.n());
    }
    out
}

/// Every attempt's `n` per (project, key), in arrival order, with whether it was delivered.
pub fn attempts_by_key(requests: &[Recorded]) -> BTreeMap<(String, String), Vec<(u64, bool)>> {
    let mut out: BTreeMap<(String, String), Vec<(u64, bool)>> = BTreeMap::new();
    for r in requests {
        out.entry((r.project(), r.key())).or_default().push((r.n(), r.delivered()));
    }
    out
}

/// Asserts the per-key ordering law on every attempt: a key's first attempt is event 0, and each
/// attempt is either the same event again (after a failure) or the next one (after a success).
pub fn assert_attempts_ordered(requests: &[Recorded]) {
    for (key, attempts) in attempts_by_key(requests) {
        let mut expected = 0;
        for (n, ok) in attempts {
            assert_eq!(n, expected, "{key:?}: attempted event {n} while {expected} was due");
            if ok {
                expected += 1;
            }
        }
    }
}

/// Opens the store, retrying while a dropped handle's task still holds it (bounded).
pub async fn open_when_free(path: &std::path::Path, config: CallbackConfig) -> callbacks::Callbacks {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match callbacks::Callbacks::open(path, config.clone()).await {
            Ok(c) => return c,
            Err(callbacks::CallbackError::AlreadyOpen { .. }) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("reopen {}: {e}", path.display()),
        }
    }
}
