//! What the gateway's end-to-end tests share: the real binary started on loopback with a
//! temporary configuration, a callback receiver (a hyper server on its own thread), sipp as the
//! far end, raw HTTP/1.1 requests and the JWTs an SDK would send. Every wait is bounded; every
//! child process is killed when its handle is dropped.
#![allow(dead_code)] // Each test crate uses its own subset.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use session::jwt::sign_hs256;

/// The legacy project the tests configure.
pub const KEY: &str = "4615011";
/// Its API secret.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
/// The secret its callbacks are signed with.
pub const CALLBACK_SECRET: &str = "callback-signing-secret";

/// A fresh directory under the temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let d = std::env::temp_dir().join(format!("gateway-test-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Ports from the interop suite's allocator: blocks below the kernel's ephemeral range, each
/// handed out once per process, so a sipp or a gateway started later still finds its port free.
pub use interop_tests::free_port;

/// A configuration for [`KEY`] on loopback, ephemeral ports everywhere, fast callback retries,
/// callbacks to `callback_url` (signed with [`CALLBACK_SECRET`]), the store in `dir`, RTP on
/// `rtp_ports`. `overrides` are `("table.key", "TOML value")` pairs that replace or add settings.
pub fn config(dir: &Path, callback_url: &str, rtp_ports: &str, overrides: &[(&str, &str)]) -> PathBuf {
    let store = format!("{:?}", dir.join("callbacks.redb").display().to_string());
    let rtp_ports = format!("{rtp_ports:?}");
    let mut tables: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    let defaults = [
        ("log.level", "\"info\""),
        ("rest.listen", "\"127.0.0.1:0\""),
        ("sip.udp_bind", "\"127.0.0.1:0\""),
        ("media.bind_ip", "\"127.0.0.1\""),
        ("media.rtp_ports", rtp_ports.as_str()),
        ("webrtc.bind", "\"127.0.0.1:0\""),
        ("timeouts.shutdown_calls", "\"5s\""),
        ("timeouts.shutdown_callbacks", "\"1s\""),
        ("callbacks.store", store.as_str()),
        ("callbacks.initial_backoff", "\"50ms\""),
        ("callbacks.max_backoff", "\"300ms\""),
        ("callbacks.request_timeout", "\"2s\""),
    ];
    for (name, value) in defaults.iter().chain(overrides) {
        let (table, key) = name.split_once('.').expect("table.key");
        let entries = tables.entry(table).or_default();
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_owned(), value.to_string()));
    }
    let mut text = String::from("# written by the gateway tests\n");
    for (table, entries) in tables {
        text.push_str(&format!("\n[{table}]\n"));
        for (k, v) in entries {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    text.push_str(&format!(
        "\n[[projects]]\napi_key = \"{KEY}\"\napi_secret = \"{SECRET}\"\ncallback_url = \"{callback_url}\"\ncallback_secret = \"{CALLBACK_SECRET}\"\n"
    ));
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The gateway binary under test, running.
pub struct Gateway {
    child: Child,
    /// The REST port.
    pub port: u16,
    /// Its stdout so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Its stderr so far (the logs).
    pub stderr: Arc<Mutex<String>>,
}

/// The binary, with no `GATEWAY_*` variable inherited from the test's environment.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GATEWAY_") {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c
}

impl Gateway {
    /// Starts the binary with `--config config` and waits (30 s at most) until it is ready.
    pub fn start(config: &Path) -> Gateway {
        let mut c = command();
        c.arg("--config").arg(config);
        Gateway::spawn(c)
    }

    /// Starts `command` and waits (30 s at most) for its "Ready." line.
    pub fn spawn(mut command: Command) -> Gateway {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the gateway binary");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = log.lock().expect("lock");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut port = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.trim().strip_prefix("REST API:") {
                        port = url.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                    }
                    if line.starts_with("Ready.") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the gateway did not get ready within 30 s\nstdout:\n{}\nstderr:\n{}",
                        stdout.lock().expect("lock").join("\n"),
                        stderr.lock().expect("lock")
                    );
                }
            }
        }
        Gateway { child, port: port.expect("a REST API line"), stdout, stderr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (20 s at most) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait(Duration::from_secs(20))
    }

    /// Waits at most `limit` for the exit (panics after it).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the gateway did not exit within {limit:?}\nstderr:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The logs so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// The stdout lines so far.
    pub fn output(&self) -> String {
        self.stdout.lock().expect("lock").join("\n")
    }

    /// One request to the gateway.
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Response {
        http(self.port, method, path, headers, body)
    }

    /// A metric's value in `/metrics` (the line starting with `name_and_labels `).
    pub fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let r = self.http("GET", "/metrics", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Creates a routed session (as an SDK does); its id.
    pub fn create_session(&self) -> String {
        let r = self.http("POST", "/session/create", &[("X-OPENTOK-AUTH", rest_auth())], "p2p.preference=disabled");
        assert_eq!(r.status, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("json");
        v[0]["session_id"].as_str().expect("session_id").to_owned()
    }

    /// Dials `uri` into `session`; the dial answer.
    pub fn dial(&self, session: &str, uri: &str) -> Value {
        let body = json!({"sessionId": session, "token": client_token(session),
            "sip": {"uri": uri, "from": "gateway-test@example.com", "secure": false}});
        let r = self.http(
            "POST",
            &format!("/v2/project/{KEY}/dial"),
            &[("X-OPENTOK-AUTH", rest_auth()), ("Content-Type", "application/json".into())],
            &body.to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("json")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gateway stdout:\n{}\n--- gateway logs:\n{}", self.output(), self.logs());
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The head, lower-cased.
    pub head: String,
    /// The body.
    pub body: String,
}

/// One HTTP/1.1 request on loopback (`Connection: close`).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Response {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    parse_response(&out)
}

/// Splits a raw HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Response { status, head: head.to_ascii_lowercase(), body: body.to_owned() }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An HS256 JWT signed with `secret`.
pub fn jwt(claims: Value, secret: &str) -> String {
    let Value::Object(map) = claims else { unreachable!("claims are an object") };
    sign_hs256(&map, secret.as_bytes())
}

/// `X-OPENTOK-AUTH` for [`KEY`].
pub fn rest_auth() -> String {
    rest_auth_for(KEY, SECRET)
}

/// `X-OPENTOK-AUTH` for any legacy project.
pub fn rest_auth_for(key: &str, secret: &str) -> String {
    let t = now_s();
    jwt(json!({"iss": key, "ist": "project", "iat": t, "exp": t + 180, "jti": "test"}), secret)
}

/// A client token of [`KEY`] for `session`.
pub fn client_token(session: &str) -> String {
    client_token_for(KEY, SECRET, session)
}

/// A client token for `session`, any legacy project.
pub fn client_token_for(key: &str, secret: &str, session: &str) -> String {
    let t = now_s();
    jwt(
        json!({"iss": key, "scope": "session.connect", "session_id": session, "iat": t, "exp": t + 600,
            "role": "publisher", "connection_data": "dialled-by-test"}),
        secret,
    )
}

/// One callback the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `Authorization` header, when sent.
    pub authorization: Option<String>,
    /// The JSON body.
    pub body: Value,
}

/// A callback receiver: a hyper server on its own thread and runtime, answering 500 to the
/// first `fail_first` requests and 200 afterwards, recording what it accepted.
pub struct Receiver {
    /// Its port.
    pub port: u16,
    accepted: Arc<Mutex<Vec<Received>>>,
    refused: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Starts on an ephemeral port.
    pub fn start(fail_first: usize) -> Receiver {
        Receiver::start_on(0, fail_first)
    }

    /// Starts on `port` (0: ephemeral).
    pub fn start_on(port: u16, fail_first: usize) -> Receiver {
        let listener = StdTcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (acc, refs) = (accepted.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(serve_receiver(listener, acc, refs, fail_first, stopped));
        });
        Receiver { port, accepted, refused, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:{port}/callbacks`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/callbacks", self.port)
    }

    /// What it accepted so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().expect("lock").clone()
    }

    /// How many requests it answered with 500.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits (at most `limit`) until `done` holds for the accepted events; panics otherwise.
    pub fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.accepted();
            if done(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let names: Vec<String> = got.iter().map(|r| describe(&r.body)).collect();
                panic!("{what}: not within {limit:?}; received {names:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_receiver(
    listener: StdTcpListener,
    accepted: Arc<Mutex<Vec<Received>>>,
    refused: Arc<AtomicUsize>,
    fail_first: usize,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let seen = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = &mut stop => return,
        };
        let (accepted, refused, seen) = (accepted.clone(), refused.clone(), seen.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (accepted, refused, seen) = (accepted.clone(), refused.clone(), seen.clone());
                async move {
                    let authorization =
                        req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let status = if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                        refused.fetch_add(1, Ordering::SeqCst);
                        500
                    } else {
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        accepted.lock().expect("lock").push(Received { authorization, body });
                        200
                    };
                    let mut r = hyper::Response::new(Full::new(bytes::Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// `event[:state|:reason_code]`.
pub fn describe(body: &Value) -> String {
    let name = body["event"].as_str().unwrap_or("?");
    let detail = body["state"].as_str().or(body["reason_code"].as_str()).or(body["reason"].as_str());
    match detail {
        Some(d) => format!("{name}:{d}"),
        None => name.to_owned(),
    }
}

/// The call events of call `id`, described, in arrival order.
pub fn call_events(got: &[Received], id: &str) -> Vec<String> {
    got.iter().filter(|r| r.body["call"]["id"] == id).map(|r| describe(&r.body)).collect()
}

/// The session events about connection `connection` (its own and its streams'), described.
pub fn connection_events(got: &[Received], connection: &str) -> Vec<String> {
    got.iter()
        .filter(|r| r.body.get("call").is_none())
        .filter(|r| r.body["connection"]["id"] == connection || r.body["stream"]["connection"]["id"] == connection)
        .map(|r| describe(&r.body))
        .collect()
}

/// What a dialled call into sipp's `remote_bye` produces, per call and per connection.
pub const CALL_EVENTS: [&str; 5] =
    ["callCreated", "callUpdated:DIALING", "callUpdated:ACTIVE", "callUpdated:HANGUP", "callDestroyed:700"];
/// The session events of the SIP connection of such a call.
pub const CONNECTION_EVENTS: [&str; 4] = [
    "connectionCreated",
    "streamCreated",
    "streamDestroyed:clientDisconnected",
    "connectionDestroyed:clientDisconnected",
];

/// Whether a call's and its connection's events have all arrived.
pub fn call_complete(got: &[Received], id: &str, connection: &str) -> bool {
    call_events(got, id).len() >= CALL_EVENTS.len()
        && connection_events(got, connection).len() >= CONNECTION_EVENTS.len()
}

/// sipp running one scenario of `crates/sip-signaling/tests/sipp`; killed on drop.
pub struct Sipp {
    child: Child,
    /// Its SIP port.
    pub port: u16,
}

impl Sipp {
    /// Starts `scenario` on a free port (25 s limit of its own).
    pub fn start(scenario: &str) -> Sipp {
        require("sipp", "sip-tester");
        let port = free_port();
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../crates/sip-signaling/tests/sipp")
            .join(format!("{scenario}.xml"));
        assert!(file.exists(), "no scenario {}", file.display());
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(&file)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-timeout", "25s", "-nostdin"])
            .args(["-mi", "127.0.0.1", "-mp", &free_port().to_string()])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp");
        let mut sipp = Sipp { child, port };
        // Ready once its UDP port is taken (an INVITE sent earlier meets ICMP unreachable).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if let Some(status) = sipp.child.try_wait().expect("try_wait") {
                panic!("sipp exited at start: {status:?}");
            }
            assert!(Instant::now() < deadline, "sipp did not bind 127.0.0.1:{port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        sipp
    }

    /// `sip:{user}@127.0.0.1:{port}`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    /// Waits (at most `limit`) for sipp to exit; its status, `None` if it is still running.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails, naming the Debian package, when `tool` is not installed.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is missing: install the Debian package `{package}` (scripts/test-all does)");
}

/// Polls `f` every 50 ms until it returns `Some`, at most `limit`; panics with `what` otherwise.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The environment a test sets for the binary, for [`command`].
pub fn with_env(c: &mut Command, vars: &BTreeMap<&str, String>) {
    for (k, v) in vars {
        c.env(k, v);
    }
}
