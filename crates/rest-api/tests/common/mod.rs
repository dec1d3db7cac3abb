//! What the REST integration tests share: a running API on loopback with known projects, REST
//! JWTs, raw HTTP/1.1 requests and the Python SDK scripts under `tests/sdk/`.
#![allow(dead_code)] // Each test crate uses its own subset.

use rest_api::{serve, ApiConfig, RestApi};
use session::jwt::sign_hs256;
use session::service::{ServiceConfig, SessionService};
use session::{ApiSecret, Project, Projects};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The legacy project every test acts for.
pub const KEY: &str = "4615002";
/// Its secret.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
/// A second legacy project, for "the path names another project" cases.
pub const OTHER_KEY: &str = "4615003";
/// Its secret.
pub const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210fedcba98";
/// An application (RS256), keyed with the session crate's test key pair.
pub const APP_ID: &str = "9f2b4c1e-0a1b-4c2d-8e3f-123456789abc";
const APP_PUBLIC_PEM: &str = include_str!("../../../session/tests/data/test-rsa-public.pem");

/// The application's private key file (for an SDK that signs RS256 itself).
pub fn app_private_key_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../session/tests/data/test-rsa-private.pem")
}

/// A session service with the three projects, and an API over it.
pub async fn api() -> RestApi {
    api_with(ApiConfig::default()).await
}

/// [`api`] with this configuration.
pub async fn api_with(config: ApiConfig) -> RestApi {
    let mut projects = Projects::new();
    projects.insert(Project::legacy(KEY, ApiSecret::new(SECRET).expect("secret")).expect("project"));
    projects.insert(Project::legacy(OTHER_KEY, ApiSecret::new(OTHER_SECRET).expect("secret")).expect("project"));
    projects.insert(Project::application(APP_ID, APP_PUBLIC_PEM).expect("application"));
    let service = SessionService::start(ServiceConfig::default(), projects).await.expect("service");
    RestApi::new(service, config)
}

/// [`api`], served on a loopback port.
pub async fn start() -> (RestApi, u16) {
    start_with(ApiConfig::default()).await
}

/// [`api_with`], served on a loopback port.
pub async fn start_with(config: ApiConfig) -> (RestApi, u16) {
    let api = api_with(config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(serve(listener, api.clone()));
    (api, port)
}

/// An `X-OPENTOK-AUTH` token as the Python SDK makes it (HS256, 180 s, `ist` and `jti`).
pub fn rest_jwt(secret: &str, iss: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs() as i64;
    let claims = serde_json::json!({"iss": iss, "ist": "project", "iat": now, "exp": now + 180, "jti": "x"});
    let serde_json::Value::Object(map) = claims else { unreachable!() };
    sign_hs256(&map, secret.as_bytes())
}

/// One raw HTTP/1.1 request (it should say `Connection: close`); returns (status, head, body).
pub fn raw(port: u16, request: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// An answer to [`request`].
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// A header's value (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as JSON; panics (with the reply) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts a `{code, message}` error answer with this status and an exact JSON Content-Type.
    pub fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"), "{what}: {self:?}");
        let v = self.json();
        assert_eq!(v["code"], status, "{what}: {self:?}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {self:?}");
        assert!(!self.body.contains(SECRET), "{what}: never echo a secret");
    }
}

/// One request with the given headers (`Host`, `Connection: close` and, with a body or a
/// `Content-Type`, `Content-Length` are added).
pub async fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    let (status, head, body) = tokio::task::spawn_blocking(move || raw(port, &text)).await.expect("join");
    Reply { status, head, body }
}

/// Runs `tests/sdk/{script}` with `python3`; fails naming the package when `opentok` (exit 3) or
/// `python3` is missing, and when the script fails. Returns what it printed, as JSON.
pub async fn sdk_script(script: &str, args: Vec<String>) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    let output = tokio::task::spawn_blocking(move || Command::new("python3").arg(path).args(args).output())
        .await
        .expect("join")
        .expect("python3 (Debian package python3) must be installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(3), "the Python package opentok is missing: {stderr}");
    assert!(output.status.success(), "SDK script {script} failed:\n{stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}
